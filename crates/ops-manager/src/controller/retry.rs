//! Backoff after a failed reconcile.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use pgpool_api::PgpoolOpsRequest;

use super::context::Ctx;
use super::error::ReconcileError;

/// After a failed reconcile: retry after a backoff that doubles with each consecutive
/// failure of the request (0.5 s up to 5 min).
pub(super) fn error_policy(
    obj: Arc<PgpoolOpsRequest>,
    error: &ReconcileError,
    ctx: Arc<Ctx>,
) -> Action {
    let key = ObjectRef::from_obj(obj.as_ref());
    let n = match ctx.errors.lock() {
        Ok(mut errors) => {
            let n = errors.entry(key).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    let delay = backoff(Duration::from_millis(500), n, Duration::from_secs(300));
    tracing::warn!(
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// `base * 2^(n-1)`, at most `cap`.
pub(super) fn backoff(base: Duration, n: u32, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
    base.saturating_mul(factor).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(300);
        assert_eq!(backoff(base, 1, cap), Duration::from_millis(500));
        assert_eq!(backoff(base, 2, cap), Duration::from_secs(1));
        assert_eq!(backoff(base, 4, cap), Duration::from_secs(4));
        assert_eq!(backoff(base, 40, cap), cap);
    }
}
