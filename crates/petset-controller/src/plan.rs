//! The pure core of the PetSet controller: from a PetSet, the pods and the
//! ControllerRevisions that exist, decide what to write.
//!
//! One call of [`plan`] is one step of StatefulSet semantics:
//! - pods `0..replicas` are wanted; a missing one is created (its claims first), from the
//!   current revision when `RollingUpdate` keeps it below `partition`, otherwise from the
//!   update revision (the spec's template);
//! - a pod in a terminal phase (Failed, Succeeded) is deleted, and created again on a later
//!   step once it is gone;
//! - pods with an ordinal `>= replicas` are deleted, highest ordinal first;
//! - with `OrderedReady` each step does at most one creation or deletion, and only when
//!   every lower pod is Running and Ready (for `minReadySeconds`) and nothing is
//!   terminating; with `Parallel` all creations and deletions happen at once;
//! - with `RollingUpdate`, once every pod exists and is healthy, the highest-ordinal pod
//!   (at or above `partition`) that is not on the update revision is deleted, one at a time;
//!   with `OnDelete` existing pods are never touched;
//! - the status is computed from the pods seen, and marked changed only when it differs;
//! - revisions that are not live beyond `revisionHistoryLimit` are deleted, oldest first.
//!
//! The PetSet and its revisions may be *compact* (kept in a watch cache without templates,
//! see [`revision::compact_template`]): such input is enough to decide that nothing needs
//! creating, to delete pods and to compute the status; a step that creates a revision or a
//! pod fails with an error for which [`PlanError::needs_full_objects`] is true, and the caller
//! plans again with the full objects.
//!
//! Deviation from the StatefulSet controller: with `OnDelete` too, `currentRevision` moves
//! to the update revision once every pod runs it and is Ready (the StatefulSet controller
//! only does that for `RollingUpdate`), so the status says what the pods run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use pgpool_api::PetSet;
use pgpool_api::petset::{PetSetStatus, PodManagementPolicy, UpdateStrategyType};

use crate::pods::{self, Availability};
use crate::revision::{self, RevisionError, Revisions};
use crate::selector::{self, SelectorError};

/// Default of `spec.revisionHistoryLimit`.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// At most this many pod writes are planned in one step (a guard for huge `Parallel` sets).
pub const MAX_ACTIONS_PER_STEP: usize = 256;

/// What the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The PetSet.
    pub petset: &'a PetSet,
    /// Pods matching its selector (pods it does not control are ignored).
    pub pods: &'a [Pod],
    /// ControllerRevisions matching its selector (those it does not control are ignored).
    pub revisions: &'a [ControllerRevision],
    /// The time now (for `minReadySeconds`).
    pub now: Timestamp,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// It ended (phase Failed or Succeeded) and will be created again.
    Terminal,
    /// Its ordinal is at or above `replicas`.
    ScaleDown,
    /// It is not on the update revision (`RollingUpdate`).
    Update,
}

impl DeleteReason {
    /// A short lower-case word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteReason::Terminal => "terminal",
            DeleteReason::ScaleDown => "scale-down",
            DeleteReason::Update => "update",
        }
    }
}

/// One pod write.
#[derive(Debug, Clone, PartialEq)]
pub enum PodAction {
    /// Create the claims that do not exist yet, then the pod.
    Create {
        /// The pod to create.
        pod: Box<Pod>,
        /// Its claims (created only if missing; never updated).
        claims: Vec<PersistentVolumeClaim>,
    },
    /// Delete a pod (with its uid as precondition).
    Delete {
        /// Pod name.
        name: String,
        /// Pod uid.
        uid: Option<String>,
        /// Why.
        reason: DeleteReason,
    },
}

impl PodAction {
    /// The name of the pod the action is about.
    pub fn pod_name(&self) -> &str {
        match self {
            PodAction::Create { pod, .. } => pod.metadata.name.as_deref().unwrap_or_default(),
            PodAction::Delete { name, .. } => name,
        }
    }
}

/// What to write for a PetSet, in this order: revisions, pods, status, history.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The update and current revisions, and the revision writes they need.
    pub revisions: Revisions,
    /// Pod writes, in order.
    pub actions: Vec<PodAction>,
    /// The status computed from the pods seen.
    pub status: PetSetStatus,
    /// Whether `status` differs from the PetSet's status.
    pub status_changed: bool,
    /// Revisions to delete (history beyond the limit).
    pub history_deletes: Vec<String>,
    /// Look again after this long (a pod becomes available after minReadySeconds).
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// Whether the plan writes nothing.
    pub fn is_noop(&self) -> bool {
        self.revisions.create.is_none()
            && self.revisions.renumber.is_none()
            && self.actions.is_empty()
            && !self.status_changed
            && self.history_deletes.is_empty()
    }
}

/// Why no plan can be made; the user has to fix the PetSet.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The PetSet lacks something every object has (name, namespace, uid).
    #[error("the PetSet has no {0}")]
    Incomplete(&'static str),
    /// The selector cannot be used.
    #[error("spec.selector: {0}")]
    Selector(#[from] SelectorError),
    /// The template's labels do not match the selector, so its pods would not be found.
    #[error("spec.template.metadata.labels do not match spec.selector")]
    TemplateLabels,
    /// The revisions cannot be worked out.
    #[error(transparent)]
    Revision(#[from] RevisionError),
    /// A pod must be created but its template is a compact one: plan again with full
    /// objects.
    #[error("the full pod template is needed")]
    Compact,
}

impl PlanError {
    /// Whether planning again with the full PetSet (and full revisions) can succeed: the
    /// step needs a template that the compact input does not carry.
    pub fn needs_full_objects(&self) -> bool {
        matches!(
            self,
            PlanError::Compact | PlanError::Revision(RevisionError::Compact)
        )
    }
}

/// Decides the next step for `input.petset` (see the module documentation).
pub fn plan(input: &Input<'_>) -> Result<Plan, PlanError> {
    let ps = input.petset;
    let spec = &ps.spec;
    let name = ps
        .metadata
        .name
        .as_deref()
        .ok_or(PlanError::Incomplete("name"))?;
    let namespace = ps
        .metadata
        .namespace
        .as_deref()
        .ok_or(PlanError::Incomplete("namespace"))?;
    let uid = ps
        .metadata
        .uid
        .as_deref()
        .ok_or(PlanError::Incomplete("uid"))?;
    let owner = pods::owner_reference(ps).ok_or(PlanError::Incomplete("uid"))?;
    let selector_string = selector::to_string(&spec.selector)?;
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let labels_match = revision::compact_labels_match(&spec.template)
        .unwrap_or_else(|| selector::matches(&spec.selector, &template_labels));
    if !labels_match {
        return Err(PlanError::TemplateLabels);
    }
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();

    let replicas = spec.replicas().max(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0).max(0);
    let monotonic = spec.pod_management_policy() == PodManagementPolicy::OrderedReady;
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy
        .and_then(|s| s.type_)
        .unwrap_or(UpdateStrategyType::RollingUpdate)
        == UpdateStrategyType::RollingUpdate;
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0);
    let old_status = ps.status.clone().unwrap_or_default();
    let now = input.now;

    // Revisions.
    let owned_revisions: Vec<ControllerRevision> = input
        .revisions
        .iter()
        .filter(|r| pods::is_controlled_by(&r.metadata, uid))
        .cloned()
        .collect();
    let mut revisions = revision::resolve(
        name,
        namespace,
        &template_labels,
        &spec.template,
        &owned_revisions,
        old_status.current_revision.as_deref(),
        old_status.collision_count.unwrap_or(0),
    )?;
    if let Some(created) = revisions.create.as_mut() {
        created.metadata.owner_references = Some(vec![owner.clone()]);
    }

    // Pods by ordinal.
    let mut all: Vec<&Pod> = Vec::new();
    let mut wanted: BTreeMap<i32, &Pod> = BTreeMap::new();
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for pod in input.pods {
        if !pods::is_controlled_by(&pod.metadata, uid) {
            continue;
        }
        let Some(ordinal) = pod
            .metadata
            .name
            .as_deref()
            .and_then(|n| pods::ordinal_of(name, n))
        else {
            continue;
        };
        all.push(pod);
        if ordinal < replicas {
            wanted.insert(ordinal, pod);
        } else {
            condemned.push((ordinal, pod));
        }
    }
    condemned.sort_by_key(|(o, _)| *o);

    let status = compute_status(&StatusInput {
        pods: &all,
        current_revision: &revisions.current_name,
        update_revision: &revisions.update_name,
        min_ready_seconds: min_ready,
        now,
        observed_generation: ps.metadata.generation,
        collision_count: revisions.collision_count,
        keep_collision_count: old_status.collision_count.is_some(),
        selector: &selector_string,
    });

    let requeue_after = all
        .iter()
        .filter(|p| !pods::is_terminating(p))
        .filter_map(|p| match pods::availability(p, min_ready, now) {
            Availability::ReadyFor(d) => Some(d),
            _ => None,
        })
        .min();

    let delete = |pod: &Pod, reason| PodAction::Delete {
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone(),
        reason,
    };

    let mut actions = Vec::new();
    let mut blocked = false;

    // Wanted pods, lowest ordinal first.
    for ordinal in 0..replicas {
        if actions.len() >= MAX_ACTIONS_PER_STEP {
            blocked = true;
            break;
        }
        match wanted.get(&ordinal) {
            None => {
                let (rev_name, template) = if rolling && ordinal < partition {
                    (&revisions.current_name, &revisions.current_template)
                } else {
                    (&revisions.update_name, &spec.template)
                };
                if revision::is_compact(template) {
                    return Err(PlanError::Compact);
                }
                let pod = pods::build_pod(ps, &owner, template, rev_name, ordinal);
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                actions.push(PodAction::Create {
                    pod: Box::new(pod),
                    claims: pods::build_claims(ps, &selector_labels, &pod_name),
                });
                if monotonic {
                    blocked = true;
                    break;
                }
            }
            Some(pod) => {
                if pods::is_terminal(pod) {
                    if !pods::is_terminating(pod) {
                        actions.push(delete(pod, DeleteReason::Terminal));
                    }
                    if monotonic {
                        blocked = true;
                        break;
                    }
                    continue;
                }
                if monotonic && !pods::is_healthy(pod, min_ready, now) {
                    blocked = true;
                    break;
                }
            }
        }
    }

    // Pods beyond replicas, highest ordinal first.
    if !blocked {
        for (_, pod) in condemned.iter().rev() {
            if actions.len() >= MAX_ACTIONS_PER_STEP {
                blocked = true;
                break;
            }
            if pods::is_terminating(pod) {
                if monotonic {
                    blocked = true;
                    break;
                }
                continue;
            }
            if monotonic
                && all.iter().any(|other| {
                    other.metadata.uid != pod.metadata.uid
                        && !pods::is_healthy(other, min_ready, now)
                })
            {
                blocked = true;
                break;
            }
            actions.push(delete(pod, DeleteReason::ScaleDown));
            if monotonic {
                blocked = true;
                break;
            }
        }
    }

    // Rolling update: one pod at a time, only when every pod is there and healthy.
    if !blocked && rolling && actions.is_empty() && condemned.is_empty() {
        let all_healthy = (0..replicas).all(|o| {
            wanted
                .get(&o)
                .is_some_and(|p| pods::is_healthy(p, min_ready, now))
        });
        if all_healthy {
            let outdated = (partition..replicas).rev().find_map(|o| {
                let pod = wanted.get(&o)?;
                (pods::revision_of(pod) != Some(revisions.update_name.as_str())).then_some(*pod)
            });
            if let Some(pod) = outdated {
                actions.push(delete(pod, DeleteReason::Update));
            }
        }
    }

    // History.
    let mut live: BTreeSet<String> = BTreeSet::new();
    live.insert(revisions.current_name.clone());
    live.insert(revisions.update_name.clone());
    live.extend(
        all.iter()
            .filter_map(|p| pods::revision_of(p).map(str::to_string)),
    );
    let limit = spec
        .revision_history_limit
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    let history_deletes = revision::history_to_delete(&owned_revisions, &live, limit);

    let status_changed = ps.status.as_ref() != Some(&status);
    Ok(Plan {
        revisions,
        actions,
        status,
        status_changed,
        history_deletes,
        requeue_after,
    })
}

/// What the status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct StatusInput<'a> {
    /// The PetSet's pods (all ordinals, terminating ones included).
    pub pods: &'a [&'a Pod],
    /// Name of the current revision.
    pub current_revision: &'a str,
    /// Name of the update revision.
    pub update_revision: &'a str,
    /// `spec.minReadySeconds`.
    pub min_ready_seconds: i32,
    /// The time now.
    pub now: Timestamp,
    /// `metadata.generation` of the PetSet.
    pub observed_generation: Option<i64>,
    /// The collision counter in use.
    pub collision_count: i32,
    /// Whether the old status had a collision counter (then it is kept even when 0).
    pub keep_collision_count: bool,
    /// The selector string.
    pub selector: &'a str,
}

/// The status of a PetSet with these pods.
pub fn compute_status(input: &StatusInput<'_>) -> PetSetStatus {
    let count = |f: &dyn Fn(&Pod) -> bool| -> i32 {
        i32::try_from(input.pods.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let on = |p: &Pod, rev: &str| !pods::is_terminating(p) && pods::revision_of(p) == Some(rev);
    let replicas = count(&|_| true);
    let ready = count(&pods::is_running_and_ready);
    let available = count(&|p| {
        pods::availability(p, input.min_ready_seconds, input.now) == Availability::Available
    });
    let updated = count(&|p| on(p, input.update_revision));
    let (current_revision, current) = if updated == replicas && ready == replicas {
        (input.update_revision, updated)
    } else {
        (
            input.current_revision,
            count(&|p| on(p, input.current_revision)),
        )
    };
    PetSetStatus {
        observed_generation: input.observed_generation,
        replicas,
        ready_replicas: Some(ready),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        available_replicas: Some(available),
        current_revision: Some(current_revision.to_string()),
        update_revision: Some(input.update_revision.to_string()),
        collision_count: (input.collision_count > 0 || input.keep_collision_count)
            .then_some(input.collision_count),
        selector: Some(input.selector.to_string()),
    }
}
