//! What the status reports about the pods, read from the watch caches: how many are Ready
//! and which revisions they run.

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use pgpool_api::{Pgpool, names};

use super::{Health, PodRevisions};
use crate::pgpool::index::MetaIndex;
use operator_kit::cache::PodLite;

/// Whether `p` is one of the pods of `pgpool` (`name` in `ns`).
fn is_pod_of(p: &PodLite, ns: &str, name: &str) -> bool {
    let labels = p.labels();
    p.metadata.namespace.as_deref() == Some(ns)
        && labels.get(names::LABEL_INSTANCE).map(String::as_str) == Some(name)
        && labels.get(names::LABEL_NAME).map(String::as_str) == Some(names::LABEL_NAME_VALUE)
}

/// The revisions the pods run against the PetSet's (from the caches; a terminating pod
/// counts until it is gone); `None` until the PetSet reports an update revision.
pub fn revisions(
    pods: &Store<PodLite>,
    index: &MetaIndex,
    pgpool: &Pgpool,
) -> Option<PodRevisions> {
    let name = pgpool.name_any();
    let ns = pgpool.namespace().unwrap_or_default();
    let record = index.petsets.get(&ns, &pgpool.petset_name())?;
    let rollout = record.rollout?;
    let mut pods: Vec<(String, Option<String>)> = pods
        .state()
        .iter()
        .filter(|p| is_pod_of(p, &ns, &name))
        .map(|p| {
            (
                p.name_any(),
                p.labels().get(names::LABEL_REVISION_HASH).cloned(),
            )
        })
        .collect();
    pods.sort_unstable();
    Some(PodRevisions {
        current_revision: rollout.current_revision.clone(),
        update_revision: rollout.update_revision.clone()?,
        pods,
    })
}

/// Counts Ready pods (from the cache). `from_petset`: take the desired count from the PetSet
/// (while paused the Pgpool's replicas may not have reached it).
pub fn health(
    pods: &Store<PodLite>,
    index: &MetaIndex,
    pgpool: &Pgpool,
    from_petset: bool,
) -> Health {
    let name = pgpool.name_any();
    let ns = pgpool.namespace().unwrap_or_default();
    let ready = pods
        .state()
        .iter()
        .filter(|p| is_pod_of(p, &ns, &name) && p.is_ready())
        .count();
    let mut replicas = pgpool.spec.replicas();
    if from_petset && let Some(ps) = index.petsets.get(&ns, &pgpool.petset_name()) {
        replicas = ps.replicas.unwrap_or(1);
    }
    Health {
        replicas,
        ready: i32::try_from(ready).unwrap_or(i32::MAX),
    }
}
