//! Pure decisions of the ops-manager: validation of a request, its place in the per-Pgpool
//! queue, what to do next for one pod, and image bookkeeping. Nothing here talks to the API
//! server, so every rule is table-tested.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::core::{Selector, SelectorExt};
use pgpool_api::conditions::{self, ops};
use pgpool_api::constraints::{self, Decision};
use pgpool_api::names;
use pgpool_api::ops::ApplyPolicy;
use pgpool_api::{
    OpsRequestPhase, OpsRequestType, PetSet, Pgpool, PgpoolOpsRequest, PgpoolPhase, PgpoolVersion,
};

/// Condition type of a request superseded by a newer one (our own; KubeDB has only the phase).
pub const SKIPPED: &str = "Skipped";

/// The images a Pgpool version runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// Image of the `pgpool` container (and of the `pgpool-init` init container).
    pub pgpool: String,
    /// Image of the `exporter` sidecar, when the catalog names one.
    pub exporter: Option<String>,
}

impl Images {
    /// The images of a catalog entry.
    pub fn of(version: &PgpoolVersion) -> Self {
        Self {
            pgpool: version.spec.pgpool.image.clone(),
            exporter: version.spec.exporter.as_ref().map(|e| e.image.clone()),
        }
    }

    /// The image container `name` should run, if this set says anything about it.
    fn for_container(&self, name: &str) -> Option<&str> {
        match name {
            names::CONTAINER_PGPOOL | names::CONTAINER_INIT => Some(&self.pgpool),
            names::CONTAINER_EXPORTER => self.exporter.as_deref(),
            _ => None,
        }
    }
}

/// True when the pod spec runs these images: the `pgpool` container exists and every
/// container these images speak of (pgpool, exporter, pgpool-init) runs its image.
pub fn spec_on_images(spec: &PodSpec, images: &Images) -> bool {
    let has_pgpool = spec
        .containers
        .iter()
        .any(|c| c.name == names::CONTAINER_PGPOOL);
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    has_pgpool
        && all
            .into_iter()
            .all(|c| match images.for_container(&c.name) {
                Some(want) => c.image.as_deref() == Some(want),
                None => true,
            })
}

/// Set the images of the pgpool, exporter and pgpool-init containers. Returns true when
/// anything changed.
pub fn set_spec_images(spec: &mut PodSpec, images: &Images) -> bool {
    let mut changed = false;
    let all = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in all {
        if let Some(want) = images.for_container(&c.name)
            && c.image.as_deref() != Some(want)
        {
            c.image = Some(want.to_string());
            changed = true;
        }
    }
    changed
}

/// True when the pod runs these images (by its spec).
pub fn pod_on_images(pod: &Pod, images: &Images) -> bool {
    pod.spec.as_ref().is_some_and(|s| spec_on_images(s, images))
}

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

/// A request's place in the queue of its Pgpool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueDecision {
    /// Its turn: start it.
    Start,
    /// Wait behind this request.
    Wait {
        /// Name of the request ahead.
        behind: String,
    },
    /// A newer request of the same type supersedes it.
    Skip {
        /// Name of the newest such request.
        newer: String,
    },
}

/// Phase of a request; no status yet counts as Pending.
pub fn phase_of(req: &PgpoolOpsRequest) -> OpsRequestPhase {
    req.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(OpsRequestPhase::Pending)
}

/// Queue order: creation time, then name.
pub fn queue_order(a: &PgpoolOpsRequest, b: &PgpoolOpsRequest) -> Ordering {
    let ts = |r: &PgpoolOpsRequest| {
        r.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_nanosecond())
            .unwrap_or(i128::MAX)
    };
    ts(a)
        .cmp(&ts(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn same(a: &PgpoolOpsRequest, b: &PgpoolOpsRequest) -> bool {
    a.metadata.name == b.metadata.name && a.metadata.namespace == b.metadata.namespace
}

/// Decide whether `me` (not Progressing, not final) may start. `siblings` are the requests for
/// the same Pgpool in the same namespace, fresh from the API server; `me` may be among them.
///
/// Rules (DESIGN.md §5): a request with a newer live (Pending or Progressing) request of the
/// same type is Skipped; otherwise it waits while another request is Progressing; the others
/// start oldest first.
pub fn queue_decision(me: &PgpoolOpsRequest, siblings: &[PgpoolOpsRequest]) -> QueueDecision {
    // Requests being deleted before they started go away without running.
    let live: Vec<&PgpoolOpsRequest> = siblings
        .iter()
        .filter(|r| !same(r, me) && !phase_of(r).is_final())
        .filter(|r| {
            r.metadata.deletion_timestamp.is_none() || phase_of(r) == OpsRequestPhase::Progressing
        })
        .collect();
    let newest_same_type = live
        .iter()
        .filter(|r| r.spec.type_ == me.spec.type_ && queue_order(r, me) == Ordering::Greater)
        .max_by(|a, b| queue_order(a, b));
    if let Some(newer) = newest_same_type {
        return QueueDecision::Skip {
            newer: newer.metadata.name.clone().unwrap_or_default(),
        };
    }
    if let Some(running) = live
        .iter()
        .find(|r| phase_of(r) == OpsRequestPhase::Progressing)
    {
        return QueueDecision::Wait {
            behind: running.metadata.name.clone().unwrap_or_default(),
        };
    }
    let waiting = live;
    let superseded = |r: &PgpoolOpsRequest| {
        waiting.iter().any(|o| {
            o.spec.type_ == r.spec.type_ && !same(o, r) && queue_order(o, r) == Ordering::Greater
        }) || (r.spec.type_ == me.spec.type_ && queue_order(me, r) == Ordering::Greater)
    };
    let ahead = waiting
        .iter()
        .filter(|r| queue_order(r, me) == Ordering::Less && !superseded(r))
        .min_by(|a, b| queue_order(a, b));
    match ahead {
        Some(r) => QueueDecision::Wait {
            behind: r.metadata.name.clone().unwrap_or_default(),
        },
        None => QueueDecision::Start,
    }
}

/// The outcome of validating a request against the cluster's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead. For Restart, `from` and `to` are both the current version.
    Proceed {
        /// The Pgpool's version now.
        from: String,
        /// The version it ends on.
        to: String,
    },
    /// The Pgpool already runs the target: the request succeeds without doing anything.
    AlreadyDone {
        /// Message for the Successful condition.
        message: String,
    },
    /// `apply: IfReady` and the Pgpool is not Ready: wait (up to `spec.timeout`).
    WaitForReady {
        /// What is being waited for.
        message: String,
    },
    /// The request cannot be carried out.
    Fail {
        /// CamelCase reason.
        reason: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// What validation looks at: the request and the objects it points to.
#[derive(Clone, Copy, Debug)]
pub struct ValidationInput<'a> {
    /// The request.
    pub request: &'a PgpoolOpsRequest,
    /// The Pgpool named by `spec.databaseRef`, if it exists.
    pub pgpool: Option<&'a Pgpool>,
    /// The PgpoolVersion named by the Pgpool's `spec.version`, if it exists.
    pub current: Option<&'a PgpoolVersion>,
    /// The PgpoolVersion named by `spec.updateVersion.targetVersion`, if it exists.
    pub target: Option<&'a PgpoolVersion>,
}

/// The target version's name of an UpdateVersion request.
pub fn target_version(req: &PgpoolOpsRequest) -> Option<&str> {
    req.spec
        .update_version
        .as_ref()
        .map(|u| u.target_version.as_str())
        .filter(|s| !s.is_empty())
}

/// True when the Pgpool reports phase Ready.
pub fn pgpool_ready(pp: &Pgpool) -> bool {
    pp.status.as_ref().and_then(|s| s.phase) == Some(PgpoolPhase::Ready)
}

fn phase_name(pp: &Pgpool) -> &'static str {
    match pp.status.as_ref().and_then(|s| s.phase) {
        None => "unknown",
        Some(PgpoolPhase::Provisioning) => "Provisioning",
        Some(PgpoolPhase::Ready) => "Ready",
        Some(PgpoolPhase::Critical) => "Critical",
        Some(PgpoolPhase::NotReady) => "NotReady",
        Some(PgpoolPhase::Halted) => "Halted",
        Some(PgpoolPhase::Unknown) => "Unknown",
    }
}

/// Validate a request (DESIGN.md §5 step 1). The order of the checks decides which message a
/// request with several problems gets: existence first, then the no-op case, then policy.
pub fn validate(input: ValidationInput<'_>) -> Verdict {
    let req = input.request;
    let ns = req.metadata.namespace.as_deref().unwrap_or("default");
    let pp_name = &req.spec.database_ref.name;
    if let Err(e) = req.spec.timeout() {
        return Verdict::Fail {
            reason: "InvalidTimeout",
            message: format!("spec.timeout: {e}"),
        };
    }
    let Some(pp) = input.pgpool else {
        return Verdict::Fail {
            reason: "PgpoolNotFound",
            message: format!(
                "Pgpool {ns}/{pp_name} not found: create it first, or set spec.databaseRef.name \
                 to a Pgpool in namespace {ns}"
            ),
        };
    };
    let current_name = pp.spec.version.as_str();
    let to = match req.spec.type_ {
        OpsRequestType::Restart => current_name.to_string(),
        OpsRequestType::UpdateVersion => {
            let Some(target_name) = target_version(req) else {
                return Verdict::Fail {
                    reason: "TargetVersionMissing",
                    message: "spec.updateVersion.targetVersion is empty: set it to the name of a \
                              PgpoolVersion"
                        .to_string(),
                };
            };
            let Some(target) = input.target else {
                return Verdict::Fail {
                    reason: "VersionNotFound",
                    message: format!(
                        "target PgpoolVersion {target_name:?} not found: set \
                         spec.updateVersion.targetVersion to one of the versions listed by \
                         `kubectl get pgpoolversions`"
                    ),
                };
            };
            if target_name == current_name {
                return Verdict::AlreadyDone {
                    message: format!(
                        "Pgpool {pp_name} already runs version {current_name}: nothing to update"
                    ),
                };
            }
            if pp.spec.is_halted() {
                return halted(pp_name);
            }
            if target.spec.is_deprecated() {
                return Verdict::Fail {
                    reason: "VersionDeprecated",
                    message: format!(
                        "target PgpoolVersion {target_name:?} is deprecated: choose a version \
                         that is not deprecated"
                    ),
                };
            }
            let Some(current) = input.current else {
                return Verdict::Fail {
                    reason: "CurrentVersionNotFound",
                    message: format!(
                        "PgpoolVersion {current_name:?}, the current version of Pgpool \
                         {pp_name}, not found: its update constraints cannot be checked; \
                         restore the catalog entry"
                    ),
                };
            };
            let empty = Default::default();
            let rules = current.spec.update_constraints.as_ref().unwrap_or(&empty);
            match constraints::evaluate(rules, &target.spec.version) {
                Ok(Decision::Allowed) => {}
                Ok(Decision::Denied(entry)) => {
                    return Verdict::Fail {
                        reason: "UpdateNotAllowed",
                        message: format!(
                            "update of Pgpool {pp_name} from {current_name} to {target_name} is \
                             not allowed: PgpoolVersion {current_name} denies {entry:?} in \
                             spec.updateConstraints.denylist; choose another target"
                        ),
                    };
                }
                Ok(Decision::NotAllowed(allow)) => {
                    return Verdict::Fail {
                        reason: "UpdateNotAllowed",
                        message: format!(
                            "update of Pgpool {pp_name} from {current_name} to {target_name} is \
                             not allowed: PgpoolVersion {current_name} allows only {} in \
                             spec.updateConstraints.allowlist; choose a target in that range",
                            allow.join(" or ")
                        ),
                    };
                }
                Err(e) => {
                    return Verdict::Fail {
                        reason: "InvalidUpdateConstraints",
                        message: format!(
                            "cannot check the update of Pgpool {pp_name} to {target_name}: {e}"
                        ),
                    };
                }
            }
            target_name.to_string()
        }
    };
    if pp.spec.is_halted() {
        return halted(pp_name);
    }
    if req.spec.apply() == ApplyPolicy::IfReady && !pgpool_ready(pp) {
        return Verdict::WaitForReady {
            message: format!(
                "waiting for Pgpool {pp_name} to be Ready (phase {}) because spec.apply is IfReady",
                phase_name(pp)
            ),
        };
    }
    Verdict::Proceed {
        from: current_name.to_string(),
        to,
    }
}

fn halted(pp_name: &str) -> Verdict {
    Verdict::Fail {
        reason: "PgpoolHalted",
        message: format!(
            "Pgpool {pp_name} is halted (spec.halted: true): set spec.halted to false and wait \
             for it to be Ready, then create the request again"
        ),
    }
}

/// The failure message when `apply: IfReady` waited the whole timeout.
pub fn not_ready_message(pp_name: &str, waiting: &str, timeout: &str) -> String {
    format!(
        "Pgpool {pp_name} did not become Ready within {timeout} ({waiting}): fix the Pgpool, or \
         create the request again with spec.apply: Always"
    )
}

/// The next step of a Progressing request, read from its conditions alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Validation (and, with IfReady, waiting for Ready).
    Validate,
    /// Pause handshake.
    Pause,
    /// Set the PetSet's images.
    UpdatePetSets,
    /// Pod-by-pod restart.
    RestartPods,
    /// Set `spec.version`.
    UpdateDatabase,
    /// Remove the pause and end Successful.
    Resume,
    /// A step failed: undo, resume, end Failed.
    Rollback,
    /// Nothing left (a final condition exists).
    Done,
}

/// The first condition type of a request of this type.
pub fn start_condition(t: OpsRequestType) -> &'static str {
    match t {
        OpsRequestType::UpdateVersion => ops::UPDATE_VERSION,
        OpsRequestType::Restart => ops::RESTART,
    }
}

/// The next step from the conditions of a request of type `t`.
pub fn next_step(t: OpsRequestType, conds: &[Condition]) -> Step {
    use conditions::is_true;
    if is_true(conds, ops::SUCCESSFUL) || is_true(conds, ops::FAILED) || is_true(conds, SKIPPED) {
        return Step::Done;
    }
    if conditions::get(conds, ops::ROLLBACK).is_some() {
        return Step::Rollback;
    }
    let update = t == OpsRequestType::UpdateVersion;
    if !is_true(conds, start_condition(t)) {
        Step::Validate
    } else if !is_true(conds, ops::DATABASE_PAUSE_SUCCEEDED) {
        Step::Pause
    } else if update && !is_true(conds, ops::UPDATE_PETSETS) {
        Step::UpdatePetSets
    } else if !is_true(conds, ops::RESTART_PODS) {
        Step::RestartPods
    } else if update && !is_true(conds, ops::UPDATE_DATABASE) {
        Step::UpdateDatabase
    } else {
        Step::Resume
    }
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

/// The PodDisruptionBudget that covers `pod` (the first whose selector matches its labels; the
/// Eviction API refuses pods with more than one). A budget without a selector covers nothing.
pub fn budget_of<'a>(
    pod: &Pod,
    budgets: &'a [PodDisruptionBudget],
) -> Option<&'a PodDisruptionBudget> {
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    budgets.iter().find(|b| {
        b.metadata.namespace == pod.metadata.namespace
            && b.spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .and_then(|sel| Selector::try_from(sel).ok())
                .is_some_and(|sel| sel.matches(labels))
    })
}

/// The message of an `EvictPod--<pod>` condition while the Eviction API refuses the eviction:
/// why (the API's answer and, when a budget covers the pod, its name, its `DisruptionAllowed`
/// condition and counts) and until when the ops-manager keeps trying (`until`, RFC 3339). It
/// ends with the pod's UID like [`evict_message`].
pub fn eviction_refused_message(
    pod: &str,
    uid: &str,
    why: &str,
    budget: Option<&PodDisruptionBudget>,
    until: &str,
) -> String {
    let mut m = format!(
        "eviction of pod {pod} refused: {}",
        why.trim_end_matches('.')
    );
    if let Some(b) = budget {
        let name = b.metadata.name.as_deref().unwrap_or_default();
        m.push_str(&format!("; PodDisruptionBudget {name}"));
        let status = b.status.as_ref();
        match status.and_then(|s| {
            s.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "DisruptionAllowed")
        }) {
            Some(c) => {
                m.push_str(&format!(": DisruptionAllowed={}", c.status));
                if !c.reason.is_empty() {
                    m.push_str(&format!(", reason {}", c.reason));
                }
                if !c.message.is_empty() {
                    m.push_str(&format!(", message {:?}", c.message));
                }
            }
            None => m.push_str(": no DisruptionAllowed condition yet"),
        }
        if let Some(s) = status {
            m.push_str(&format!(
                " ({} of {} pods healthy, {} disruptions allowed)",
                s.current_healthy, s.desired_healthy, s.disruptions_allowed
            ));
        }
    }
    m.push_str(&format!("; retrying until {until} (uid {uid})"));
    m
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

#[cfg(test)]
mod tests;
