//! Mappers: which requests an event about another object wakes. They read the request cache
//! only, so they are cheap and decide from what the controller itself sees.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use pgpool_api::{OpsRequestPhase, PetSet, Pgpool, PgpoolOpsRequest, names};

use crate::plan;

/// Requests of Pgpool `pgpool` in `ns` that have not ended, from the cache.
pub(super) fn live_requests_for(
    store: &Store<PgpoolOpsRequest>,
    ns: &str,
    pgpool: &str,
) -> Vec<ObjectRef<PgpoolOpsRequest>> {
    store
        .state()
        .iter()
        .filter(|r| {
            r.metadata.namespace.as_deref() == Some(ns)
                && r.spec.database_ref.name == pgpool
                && !plan::phase_of(r).is_final()
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

/// A Pgpool changed: its live requests.
pub(super) fn for_pgpool(
    store: &Store<PgpoolOpsRequest>,
    pp: &Pgpool,
) -> Vec<ObjectRef<PgpoolOpsRequest>> {
    live_requests_for(store, &pp.namespace().unwrap_or_default(), &pp.name_any())
}

/// A PetSet changed: the live requests of the Pgpool that owns it (by its instance label).
pub(super) fn for_petset(
    store: &Store<PgpoolOpsRequest>,
    ps: &PetSet,
) -> Vec<ObjectRef<PgpoolOpsRequest>> {
    let owner = ps
        .labels()
        .get(names::LABEL_INSTANCE)
        .cloned()
        .unwrap_or_else(|| ps.name_any());
    live_requests_for(store, &ps.namespace().unwrap_or_default(), &owner)
}

/// A Pgpool pod changed: the live requests of its Pgpool.
pub(super) fn for_pod(
    store: &Store<PgpoolOpsRequest>,
    pod: &Pod,
) -> Vec<ObjectRef<PgpoolOpsRequest>> {
    match pod.labels().get(names::LABEL_INSTANCE) {
        Some(owner) => live_requests_for(store, &pod.namespace().unwrap_or_default(), owner),
        None => Vec::new(),
    }
}

/// A request arrived, waits or ended: the other live requests of its Pgpool, so the queue
/// moves on at once. Writes of a Progressing request wake nobody.
pub(super) fn for_sibling(
    store: &Store<PgpoolOpsRequest>,
    r: &PgpoolOpsRequest,
) -> Vec<ObjectRef<PgpoolOpsRequest>> {
    if plan::phase_of(r) == OpsRequestPhase::Progressing && r.metadata.deletion_timestamp.is_none()
    {
        return Vec::new();
    }
    let name = r.name_any();
    live_requests_for(
        store,
        &r.namespace().unwrap_or_default(),
        &r.spec.database_ref.name,
    )
    .into_iter()
    .filter(|o| o.name != name)
    .collect()
}
