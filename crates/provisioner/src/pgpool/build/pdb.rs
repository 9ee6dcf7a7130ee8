//! The PodDisruptionBudget, when the Pgpool has more than one replica.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgpool_api::{Pgpool, names};

use super::common::meta;
use crate::pgpool::validate::Plan;

/// `<name>` PodDisruptionBudget when replicas > 1: an integer `minAvailable: replicas - 1`
/// and `unhealthyPodEvictionPolicy: AlwaysAllow`.
///
/// With `maxUnavailable` (or a percentage) the disruption controller must look up the owner's
/// scale through discovery; on a cluster whose PetSet CRD is younger than its discovery cache
/// (every fresh install) the budget stays `SyncFailed` and refuses every eviction until some
/// pod changes (seen on a real kube-apiserver 1.36). An integer `minAvailable` needs no owner
/// lookup: the controller counts the pods it selects. `AlwaysAllow` lets a pod that is not
/// Ready (a broken image mid-rollback) be evicted whatever the budget says.
pub fn pdb(pgpool: &Pgpool, plan: &Plan) -> Option<PodDisruptionBudget> {
    let replicas = pgpool.spec.replicas();
    (replicas > 1).then(|| PodDisruptionBudget {
        metadata: meta(plan, names::pdb(&plan.name)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(replicas - 1)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
            selector: Some(LabelSelector {
                match_labels: Some(names::selector(&plan.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}
