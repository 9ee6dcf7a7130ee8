//! Decisions of the HorizontalScaling and VerticalScaling types (where their steps come in a
//! request's sequence is [`super::steps::next_scaling_step`]): their validation, the next
//! action of a scale, the budget the scale-down needs, and the `pgpool` container's resources.
//!
//! Scale-down removes the highest ordinal first, one pod at a time: the pod is evicted (the
//! Eviction API checks the PodDisruptionBudget, and the kubelet's graceful stop lets pgpool's
//! smart shutdown drain its clients), then the PetSet's `spec.replicas` is lowered to that
//! ordinal so that the PetSet controller does not create it again. A replacement the
//! controller created in between is deleted by the controller once the count is lowered.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, ResourceRequirements};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgpool_api::conditions::{self, ops};
use pgpool_api::ops_scaling::MAX_REPLICAS;
use pgpool_api::{OpsRequestType, Pgpool, PgpoolOpsRequest, names};

use super::pods::{pod_broken, pod_ready, pod_terminating, recorded_uid};

/// `spec.horizontalScaling.node`, if given.
pub fn target_replicas(req: &PgpoolOpsRequest) -> Option<i32> {
    req.spec.horizontal_scaling.as_ref().and_then(|h| h.node())
}

/// `spec.verticalScaling.node.resources`, if given and not empty.
pub fn target_resources(req: &PgpoolOpsRequest) -> Option<&ResourceRequirements> {
    req.spec
        .vertical_scaling
        .as_ref()
        .and_then(|v| v.resources())
        .filter(|r| {
            r.requests.as_ref().is_some_and(|m| !m.is_empty())
                || r.limits.as_ref().is_some_and(|m| !m.is_empty())
        })
}

/// The outcome of the type-specific checks of a scaling request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScalingCheck {
    /// Go on with the common checks (halted, `apply`). For HorizontalScaling `from` and `to`
    /// are replica counts; for VerticalScaling both are the Pgpool's version.
    Go {
        /// What the Pgpool has now.
        from: String,
        /// What it ends with.
        to: String,
    },
    /// Nothing to do.
    AlreadyDone(String),
    /// The request cannot be carried out: reason and message.
    Fail(&'static str, String),
}

/// The type-specific part of validation for the scaling types.
pub fn validate_scaling(req: &PgpoolOpsRequest, pp: &Pgpool) -> ScalingCheck {
    let pp_name = &req.spec.database_ref.name;
    match req.spec.type_ {
        OpsRequestType::HorizontalScaling => {
            let node = match target_replicas(req) {
                Some(n) if (1..=MAX_REPLICAS).contains(&n) => n,
                other => {
                    let got = other.map_or("missing".to_string(), |n| n.to_string());
                    return ScalingCheck::Fail(
                        "InvalidReplicas",
                        format!(
                            "spec.horizontalScaling.node is {got}: set it to the number of pods \
                             wanted, between 1 and {MAX_REPLICAS}"
                        ),
                    );
                }
            };
            let now = pp.spec.replicas();
            if node == now {
                return ScalingCheck::AlreadyDone(format!(
                    "Pgpool {pp_name} already has {now} replicas: nothing to scale"
                ));
            }
            ScalingCheck::Go {
                from: now.to_string(),
                to: node.to_string(),
            }
        }
        _ => {
            if target_resources(req).is_none() {
                return ScalingCheck::Fail(
                    "ResourcesMissing",
                    "spec.verticalScaling.node.resources has neither requests nor limits: set \
                     the requests and limits of the pgpool container"
                        .to_string(),
                );
            }
            ScalingCheck::Go {
                from: pp.spec.version.clone(),
                to: pp.spec.version.clone(),
            }
        }
    }
}

/// The next action of the HorizontalScale step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScaleAction {
    /// Set the PetSet's `spec.replicas`.
    SetReplicas(i32),
    /// Evict the highest pod; `record`: its `EvictPod--<pod>` condition is not written yet.
    Evict {
        /// The pod.
        pod: String,
        /// Its UID (the eviction's precondition).
        uid: String,
        /// Whether to record the eviction before evicting.
        record: bool,
    },
    /// A new pod of a scale-up became Ready: record it.
    PodReady {
        /// The pod.
        pod: String,
    },
    /// Wait for the cluster.
    Wait {
        /// What is being waited for.
        why: String,
    },
    /// A new pod will not become Ready.
    Broken {
        /// Why.
        why: String,
    },
    /// The PetSet has `target` pods, all Ready, and no pod above them.
    Done,
}

/// The ordinal of pod `pod` of PetSet `petset`.
pub fn ordinal_of(petset: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(petset)?.strip_prefix('-')?.parse().ok()
}

/// Decide the next action of a scale to `target` pods. `from` is the Pgpool's
/// `spec.replicas` (pods below it existed before the request), `replicas` the PetSet's
/// `spec.replicas` now, `pods` the Pgpool's pods by name.
pub fn scale_action(
    petset: &str,
    from: i32,
    target: i32,
    replicas: i32,
    pods: &HashMap<String, Pod>,
    conds: &[Condition],
) -> ScaleAction {
    if replicas < target {
        return ScaleAction::SetReplicas(target);
    }
    if replicas > target {
        let k = replicas - 1;
        let name = names::pod(petset, k);
        let live = pods.get(&name).filter(|p| !pod_terminating(p));
        let evict = conditions::get(conds, &ops::evict_pod(&name));
        return match (live, evict) {
            (Some(p), None) => ScaleAction::Evict {
                pod: name,
                uid: uid(p),
                record: true,
            },
            (Some(p), Some(c))
                if c.status != conditions::TRUE && recorded_uid(&c.message) == Some(&uid(p)) =>
            {
                ScaleAction::Evict {
                    pod: name,
                    uid: uid(p),
                    record: false,
                }
            }
            // Evicted (or gone, or created again after the eviction): lower the count so
            // that the PetSet controller removes it for good.
            _ => ScaleAction::SetReplicas(k),
        };
    }
    let mut above: Vec<(i32, &String)> = pods
        .keys()
        .filter_map(|n| ordinal_of(petset, n).map(|o| (o, n)))
        .filter(|(o, _)| *o >= target)
        .collect();
    above.sort();
    if let Some((_, name)) = above.last() {
        return ScaleAction::Wait {
            why: format!("waiting for pod {name} to go away"),
        };
    }
    for i in 0..target {
        let name = names::pod(petset, i);
        let Some(p) = pods.get(&name) else {
            return ScaleAction::Wait {
                why: format!("waiting for pod {name} to be created"),
            };
        };
        if pod_ready(p) {
            let check = ops::check_pod_running(&name);
            if i >= from && !conditions::is_true(conds, &check) {
                return ScaleAction::PodReady { pod: name };
            }
            continue;
        }
        if let Some(why) = pod_broken(p) {
            return ScaleAction::Broken {
                why: format!("pod {name}: {why}"),
            };
        }
        return ScaleAction::Wait {
            why: format!("waiting for pod {name} to be Running and Ready"),
        };
    }
    ScaleAction::Done
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

/// The `minAvailable` the provisioner gives the Pgpool's budget for `replicas` pods.
pub fn budget_min_available(replicas: i32) -> i32 {
    (replicas - 1).max(0)
}

/// The Pgpool's own budget lowered to what `replicas` pods need, when it asks for more (a
/// budget computed for the count before the scale-down would refuse every eviction after the
/// first). `None`: leave it as it is.
pub fn lowered_budget(pdb: &PodDisruptionBudget, replicas: i32) -> Option<i32> {
    let want = budget_min_available(replicas);
    match pdb.spec.as_ref().and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(n)) if *n > want => Some(want),
        _ => None,
    }
}

/// The resources of the `pgpool` container of a pod spec.
pub fn spec_resources(spec: &PodSpec) -> Option<&ResourceRequirements> {
    spec.containers
        .iter()
        .find(|c| c.name == names::CONTAINER_PGPOOL)
        .and_then(|c| c.resources.as_ref())
}

/// Set the resources of the `pgpool` container. Returns true when anything changed.
pub fn set_spec_resources(spec: &mut PodSpec, resources: &ResourceRequirements) -> bool {
    match spec
        .containers
        .iter_mut()
        .find(|c| c.name == names::CONTAINER_PGPOOL)
    {
        Some(c) if c.resources.as_ref() != Some(resources) => {
            c.resources = Some(resources.clone());
            true
        }
        _ => false,
    }
}

/// True when the pod's `pgpool` container has these resources (quantities compared by
/// value: the API server writes a pod's `0.5` CPU as `500m`).
pub fn pod_on_resources(pod: &Pod, resources: &ResourceRequirements) -> bool {
    let empty = ResourceRequirements::default();
    let have = pod.spec.as_ref().and_then(spec_resources).unwrap_or(&empty);
    pgpool_api::quantity::same_resources(have, resources)
}

/// The message of the `UpdatePetSets` condition of a VerticalScaling request. It records the
/// resources the PetSet had, so that a rollback (also after a restart) can put them back.
pub fn resources_message(
    petset: &str,
    new: &ResourceRequirements,
    old: Option<&ResourceRequirements>,
) -> String {
    let json = |r: Option<&ResourceRequirements>| {
        r.and_then(|r| serde_json::to_string(r).ok())
            .unwrap_or_else(|| "{}".to_string())
    };
    format!(
        "resources of container pgpool of PetSet {petset}: {} (were {})",
        json(Some(new)),
        json(old)
    )
}

/// The resources recorded by [`resources_message`].
pub fn recorded_resources(message: &str) -> Option<ResourceRequirements> {
    let start = message.rfind("(were ")? + "(were ".len();
    let end = message.rfind(')')?;
    serde_json::from_str(message.get(start..end)?).ok()
}

#[cfg(test)]
#[path = "scaling_tests.rs"]
mod tests;
