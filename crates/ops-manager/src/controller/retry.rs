//! Backoff after a failed reconcile, and between refused evictions of a pod.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use operator_kit::backoff::{ErrorBackoff, EventPolicy};
use pgpool_api::PgpoolOpsRequest;

use super::context::Ctx;
use super::error::ReconcileError;

/// The backoff of failed reconciles per request: 0.5 s, doubling with each consecutive
/// failure, up to 5 min. It emits no events: a failed reconcile is only logged (the request's
/// conditions and events tell the user what the request does).
pub(super) fn error_backoff() -> ErrorBackoff<ObjectRef<PgpoolOpsRequest>> {
    quiet(Duration::from_millis(500), Duration::from_secs(300))
}

/// The backoff between refused evictions of one pod (by UID): 200 ms, doubling with each
/// refusal in a row, up to 10 s. The `EvictPod--<pod>` condition and its event say why.
pub(super) fn eviction_backoff() -> ErrorBackoff<String> {
    quiet(Duration::from_millis(200), Duration::from_secs(10))
}

/// An [`ErrorBackoff`] that never asks for an event: the ops-manager emits its own.
fn quiet<K: Eq + Hash>(base: Duration, cap: Duration) -> ErrorBackoff<K> {
    ErrorBackoff::new(base, cap).with_event_policy(EventPolicy::Never)
}

/// After a failed reconcile: retry after the request's [`error_backoff`].
pub(super) fn error_policy(
    obj: Arc<PgpoolOpsRequest>,
    error: &ReconcileError,
    ctx: Arc<Ctx>,
) -> Action {
    let failure = ctx.errors.failed(ObjectRef::from_obj(obj.as_ref()), None);
    tracing::warn!(
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        %error,
        retry_in = ?failure.delay,
        "reconcile failed"
    );
    Action::requeue(failure.delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays<K: Eq + Hash + Clone>(backoff: &ErrorBackoff<K>, key: K, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|_| {
                let failure = backoff.failed(key.clone(), Some("failed"));
                assert!(!failure.emit_event, "the ops-manager emits its own events");
                failure.delay
            })
            .collect()
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let ms = Duration::from_millis;
        let errors = error_backoff();
        let key = ObjectRef::new("r").within("demo");
        let got = delays(&errors, key.clone(), 40);
        assert_eq!(got[..4], [ms(500), ms(1000), ms(2000), ms(4000)]);
        assert_eq!(got[39], Duration::from_secs(300));
        errors.succeeded(&key);
        assert_eq!(delays(&errors, key, 1), [ms(500)], "a success starts over");

        let refusals = eviction_backoff();
        let got = delays(&refusals, "uid".to_string(), 10);
        assert_eq!(got[..3], [ms(200), ms(400), ms(800)]);
        assert_eq!(got[9], Duration::from_secs(10));
        refusals.forget(&"uid".to_string());
        assert!(refusals.is_empty());
    }
}
