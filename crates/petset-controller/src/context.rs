//! The state every PetSet reconcile shares ([`Context`]) and what it reads from the caches.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use operator_kit::backoff::{ErrorBackoff, EventPolicy};
use operator_kit::cache::{PodLite, Synced};
use operator_kit::reconcile_metrics::ControllerMetrics;
use operator_kit::{EventRecorder, EventType};
use pgpool_api::PetSet;

use crate::cache::{PetSetLite, RevisionLite};
use crate::expectations::Expectations;
use crate::pods;

/// What every reconcile shares: the client, the caches, the expectations, metrics and events.
pub(crate) struct Context {
    pub(crate) client: Client,
    /// Reconcile metrics under `controller="petset"`.
    pub(crate) metrics: ControllerMetrics,
    pub(crate) recorder: EventRecorder,
    /// Consecutive failures per PetSet (`namespace/name`), for the retry delay.
    pub(crate) backoff: ErrorBackoff<String>,
    pub(crate) pods: Store<PodLite>,
    pub(crate) revisions: Store<RevisionLite>,
    /// The pod and revision caches are filled.
    pub(crate) synced: Synced,
    pub(crate) expectations: Arc<Mutex<Expectations>>,
}

impl Context {
    /// Publishes an event about `obj`; a failure is logged at debug level and ignored.
    pub(crate) async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let reference = obj.object_ref(&());
        if let Err(e) = self
            .recorder
            .publish(&reference, type_, reason, message)
            .await
        {
            tracing::debug!(error = %e, reason, "cannot publish event");
        }
    }

    /// The expectations, locked (a poisoned lock is taken over).
    pub(crate) fn expectations(&self) -> MutexGuard<'_, Expectations> {
        self.expectations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// First retry delay after a failed reconcile; doubles per failure in a row.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The per-PetSet retry delays: [`BACKOFF_BASE`] doubling up to [`BACKOFF_MAX`]. No event
/// decision: the reconcile publishes a Warning event for every failure itself.
pub(crate) fn new_backoff() -> ErrorBackoff<String> {
    ErrorBackoff::new(BACKOFF_BASE, BACKOFF_MAX).with_event_policy(EventPolicy::Never)
}

/// The key of an object in the expectations and the backoff: `namespace/name`.
pub(crate) fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The PetSet controlling an object, from its controller owner reference.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<ObjectRef<PetSetLite>> {
    let owner = meta.owner_references.as_ref()?.iter().find(|o| {
        o.controller == Some(true)
            && o.kind == PetSet::kind(&())
            && o.api_version == PetSet::api_version(&())
    })?;
    Some(ObjectRef::new(&owner.name).within(meta.namespace.as_deref().unwrap_or_default()))
}

/// The pods the PetSet with `uid` controls, from the cache.
pub(crate) fn cached_pods(ctx: &Context, ns: &str, uid: &str) -> Vec<Pod> {
    ctx.pods
        .state()
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns) && pods::is_controlled_by(&p.metadata, uid)
        })
        .map(|p| p.to_pod())
        .collect()
}

/// The revisions the PetSet with `uid` controls, from the cache (in compact form).
pub(crate) fn cached_revisions(ctx: &Context, ns: &str, uid: &str) -> Vec<ControllerRevision> {
    ctx.revisions
        .state()
        .iter()
        .filter(|r| {
            r.metadata.namespace.as_deref() == Some(ns) && pods::is_controlled_by(&r.metadata, uid)
        })
        .map(|r| r.to_revision())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let backoff = new_backoff();
        let delays: Vec<Duration> = (0..10)
            .map(|_| backoff.failed("ns/ps".to_string(), Some("failed")).delay)
            .collect();
        assert_eq!(delays[0], Duration::from_secs(1));
        assert_eq!(delays[1], Duration::from_secs(2));
        assert_eq!(delays[4], Duration::from_secs(16));
        assert_eq!(delays[8], Duration::from_secs(256));
        assert_eq!(delays[9], BACKOFF_MAX);
        assert!(
            !backoff
                .failed("ns/ps".to_string(), Some("failed"))
                .emit_event,
            "the reconcile publishes the event itself"
        );
        backoff.succeeded(&"ns/ps".to_string());
        assert_eq!(
            backoff.failed("ns/ps".to_string(), None).delay,
            BACKOFF_BASE
        );
    }
}
