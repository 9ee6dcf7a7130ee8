//! The state every PetSet reconcile shares ([`Context`]) and what it reads from the caches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use operator_kit::cache::{PodLite, Synced};
use operator_kit::{EventRecorder, EventType};
use pgpool_api::PetSet;

use crate::cache::{PetSetLite, RevisionLite};
use crate::expectations::Expectations;
use crate::metrics::Metrics;
use crate::pods;

/// What every reconcile shares: the client, the caches, the expectations, metrics and events.
pub(crate) struct Context {
    pub(crate) client: Client,
    pub(crate) metrics: Metrics,
    pub(crate) recorder: EventRecorder,
    /// Consecutive failures per PetSet (`namespace/name`), for the backoff.
    pub(crate) failures: Mutex<HashMap<String, u32>>,
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
