//! Per-pod decisions: is the pod Ready, broken, done; what to do next with it during
//! RestartPods and during a rollback.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use pgpool_api::conditions::{self, ops};
use pgpool_api::{OpsRequestType, PetSet};

use super::images::{Images, pod_on_images};

/// True when the PetSet controller has seen the PetSet's current spec (its
/// `status.observedGeneration` is not behind `metadata.generation`). A pod evicted before that
/// may be created again from the previous template by a controller working from a stale cache.
/// A PetSet whose status carries no observedGeneration counts as observed (nothing to wait for).
pub fn petset_observed(ps: &PetSet) -> bool {
    match (
        ps.status.as_ref().and_then(|s| s.observed_generation),
        ps.metadata.generation,
    ) {
        (Some(observed), Some(generation)) => observed >= generation,
        _ => true,
    }
}

/// True when the pod is being deleted.
pub fn pod_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// True when the pod is Running, Ready and not being deleted.
pub fn pod_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    !pod_terminating(pod)
        && status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == conditions::TRUE)
}

/// Waiting reasons that mean a container will not start without a change of image or spec.
const BROKEN_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
];

/// Restarts after which a container counts as crash-looping even without the reason.
const CRASH_RESTARTS: i32 = 3;

/// Why the pod will not become Ready by itself, when its container statuses say so.
pub fn pod_broken(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in all {
        if let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = waiting.reason.as_deref()
            && BROKEN_REASONS.contains(&reason)
        {
            let detail = waiting.message.as_deref().unwrap_or("");
            return Some(if detail.is_empty() {
                format!("container {} is {reason} (image {})", cs.name, cs.image)
            } else {
                format!(
                    "container {} is {reason} (image {}): {detail}",
                    cs.name, cs.image
                )
            });
        }
        if cs.restart_count >= CRASH_RESTARTS && !cs.ready {
            return Some(format!(
                "container {} restarted {} times without becoming ready (image {})",
                cs.name, cs.restart_count, cs.image
            ));
        }
    }
    None
}
/// What to do next for one pod during RestartPods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodStep {
    /// Nothing: restarted already, or already on the target and Ready.
    Done,
    /// Record the eviction (with the pod's UID) and evict.
    StartEvict {
        /// UID of the pod to evict.
        uid: String,
    },
    /// The eviction is recorded but the pod is still there: evict it (again after a refusal).
    Evict {
        /// UID of the pod to evict.
        uid: String,
    },
    /// The evicted pod is gone or going: record the eviction as done.
    Evicted,
    /// Wait for the pod to run the target and be Ready.
    Wait {
        /// What is being waited for.
        why: String,
    },
    /// The replacement runs the target and is Ready.
    Ready,
    /// The replacement will not become Ready.
    Broken {
        /// Why.
        why: String,
    },
}

/// The message of an `EvictPod--<pod>` condition; it records the UID of the evicted pod, so
/// that a restarted ops-manager can tell the old pod from its replacement.
pub fn evict_message(pod: &str, uid: &str) -> String {
    format!("evicting pod {pod} (uid {uid})")
}

/// The pod UID recorded by [`evict_message`].
pub fn recorded_uid(message: &str) -> Option<&str> {
    let start = message.rfind("(uid ")? + "(uid ".len();
    let end = start + message[start..].find(')')?;
    Some(&message[start..end]).filter(|s| !s.is_empty())
}

fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// Decide the next action for pod `name` of a request of type `t`. `target` is the images the
/// pod must end on (None for Restart, which keeps them).
pub fn pod_step(
    t: OpsRequestType,
    name: &str,
    pod: Option<&Pod>,
    conds: &[Condition],
    target: Option<&Images>,
) -> PodStep {
    let check = conditions::get(conds, &ops::check_pod_running(name));
    if check.is_some_and(|c| c.status == conditions::TRUE) {
        return PodStep::Done;
    }
    let evict = conditions::get(conds, &ops::evict_pod(name));
    match evict {
        None if check.is_some() => replacement_step(name, pod, None, target),
        None => {
            let Some(p) = pod.filter(|p| !pod_terminating(p)) else {
                return replacement_step(name, pod, None, target);
            };
            let needs_restart = match (t, target) {
                (OpsRequestType::UpdateVersion, Some(images)) => !pod_on_images(p, images),
                _ => true,
            };
            if needs_restart {
                PodStep::StartEvict {
                    uid: uid_of(p).to_string(),
                }
            } else if pod_ready(p) {
                PodStep::Done
            } else {
                replacement_step(name, pod, None, target)
            }
        }
        Some(e) => {
            let old = recorded_uid(&e.message);
            if e.status != conditions::TRUE {
                match pod {
                    Some(p) if !pod_terminating(p) && Some(uid_of(p)) == old => PodStep::Evict {
                        uid: uid_of(p).to_string(),
                    },
                    _ => PodStep::Evicted,
                }
            } else {
                replacement_step(name, pod, old, target)
            }
        }
    }
}

fn replacement_step(
    name: &str,
    pod: Option<&Pod>,
    old_uid: Option<&str>,
    target: Option<&Images>,
) -> PodStep {
    let Some(p) = pod else {
        return PodStep::Wait {
            why: format!("waiting for pod {name} to be created again"),
        };
    };
    if pod_terminating(p) || (old_uid.is_some() && Some(uid_of(p)) == old_uid) {
        return PodStep::Wait {
            why: format!("waiting for the old pod {name} to go away"),
        };
    }
    if let Some(images) = target
        && !pod_on_images(p, images)
    {
        return PodStep::Wait {
            why: format!(
                "pod {name} was created with other images than {}",
                images.pgpool
            ),
        };
    }
    if pod_ready(p) {
        return PodStep::Ready;
    }
    if let Some(why) = pod_broken(p) {
        return PodStep::Broken {
            why: format!("pod {name}: {why}"),
        };
    }
    PodStep::Wait {
        why: format!("waiting for pod {name} to be Running and Ready"),
    }
}

/// What to do next for one pod during a rollback to `source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackPodStep {
    /// On the source images and Ready.
    Done,
    /// On other images: evict it so it comes back on the source images.
    Evict {
        /// Whether the pod is Ready (a refused eviction of a pod that is not Ready may be
        /// replaced by a deletion: it serves nothing).
        ready: bool,
    },
    /// Wait for it to be (re)created and Ready.
    Wait {
        /// What is being waited for.
        why: String,
    },
}

/// Decide the next action for pod `name` while rolling back to `source`.
pub fn rollback_pod_step(name: &str, pod: Option<&Pod>, source: &Images) -> RollbackPodStep {
    match pod {
        None => RollbackPodStep::Wait {
            why: format!("waiting for pod {name} to be created again"),
        },
        Some(p) if pod_terminating(p) => RollbackPodStep::Wait {
            why: format!("waiting for pod {name} to go away"),
        },
        Some(p) if !pod_on_images(p, source) => RollbackPodStep::Evict {
            ready: pod_ready(p),
        },
        Some(p) if pod_ready(p) => RollbackPodStep::Done,
        Some(_) => RollbackPodStep::Wait {
            why: format!("waiting for pod {name} to be Ready on {}", source.pgpool),
        },
    }
}

/// Of the pods' rollback steps (in ordinal order), the one to act on: a pod on other images
/// that is not Ready first (it serves nothing, and a budget counts on the Ready ones: evicting
/// a Ready pod first would be refused while the broken one holds the only disruption), else
/// the first that is not done. `None`: all are done.
pub fn rollback_pick(steps: &[RollbackPodStep]) -> Option<usize> {
    steps
        .iter()
        .position(|s| *s == RollbackPodStep::Evict { ready: false })
        .or_else(|| steps.iter().position(|s| *s != RollbackPodStep::Done))
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
