//! Status (pure part): the next `Pgpool.status` from the current one and what a reconcile
//! found, plus the events that the change deserves.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use pgpool_api::conditions::{self, FALSE, NewCondition, TRUE, UNKNOWN, pgpool as types};
use pgpool_api::{PgpoolPhase, PgpoolStatus};

use super::validate::{Note, Problem};

pub mod notes;
pub mod observe;
pub mod write;

/// Reason of the `Paused` condition once acknowledged.
pub const REASON_PAUSE_ACKNOWLEDGED: &str = "PauseAcknowledged";
/// Reason of conditions while `spec.halted` is true.
pub const REASON_HALTED: &str = "Halted";
/// Reason of a False `PodsUpToDate` condition (and of its Warning event).
pub const REASON_OUTDATED_PODS: &str = "OutdatedPods";
/// Reason of a True `PodsUpToDate` condition.
pub const REASON_PODS_UP_TO_DATE: &str = "AllPodsUpToDate";

/// The Pgpool's pods against its PetSet's revisions: the PetSet's `status.currentRevision`
/// and `status.updateRevision`, and each pod's `controller-revision-hash` label.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodRevisions {
    /// `status.currentRevision` of the PetSet.
    pub current_revision: Option<String>,
    /// `status.updateRevision` of the PetSet: the revision of its template now.
    pub update_revision: String,
    /// The pods: (name, revision label).
    pub pods: Vec<(String, Option<String>)>,
}

impl PodRevisions {
    /// Pods that do not run the update revision, by name: (name, revision they run).
    pub fn outdated(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .pods
            .iter()
            .filter(|(_, rev)| rev.as_deref() != Some(self.update_revision.as_str()))
            .map(|(name, rev)| (name.as_str(), rev.as_deref().unwrap_or("none")))
            .collect();
        out.sort_unstable();
        out
    }
}

/// The `PodsUpToDate` condition `revisions` call for: (true, reason, message).
pub fn pods_up_to_date(revisions: &PodRevisions) -> (bool, &'static str, String) {
    let outdated = revisions.outdated();
    if outdated.is_empty() {
        return (
            true,
            REASON_PODS_UP_TO_DATE,
            format!(
                "every pod runs the PetSet's update revision {}",
                revisions.update_revision
            ),
        );
    }
    let pods: Vec<String> = outdated
        .iter()
        .map(|(name, rev)| format!("{name} (revision {rev})"))
        .collect();
    let current = revisions
        .current_revision
        .as_deref()
        .map(|c| format!(", current revision {c}"))
        .unwrap_or_default();
    (
        false,
        REASON_OUTDATED_PODS,
        format!(
            "{} of {} pods run an outdated template: {}; the PetSet's update revision is {}{current}. \
             The PetSet replaces pods only when they are deleted (OnDelete): create a PgpoolOpsRequest of type Restart to roll them",
            outdated.len(),
            revisions.pods.len(),
            pods.join(", "),
            revisions.update_revision,
        ),
    )
}

/// Pods of the Pgpool as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    /// Desired replicas.
    pub replicas: i32,
    /// Pods that are Ready (and not terminating).
    pub ready: i32,
}

/// What a reconcile found.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// A problem the user must fix; nothing was written.
    Problem(&'a Problem, Health),
    /// `spec.halted`: the pooler is stopped.
    Halted,
    /// The children are applied; the pods are as observed.
    Running {
        /// Pods.
        health: Health,
        /// Remarks for the `ProvisioningStarted` message.
        notes: &'a [Note],
        /// The pods' revisions against the PetSet's, once the PetSet reports them.
        revisions: Option<&'a PodRevisions>,
    },
    /// Paused by an ops request: nothing was written; the pods are as observed.
    Paused(Health),
}

/// An event to publish about the Pgpool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

/// True when `Paused` asks for one render of the children before holding still again
/// ([`types::REASON_RENDER_REQUESTED`]).
pub fn render_requested(status: Option<&PgpoolStatus>) -> bool {
    status
        .and_then(|s| conditions::get(&s.conditions, types::PAUSED))
        .is_some_and(|c| c.status == UNKNOWN && c.reason == types::REASON_RENDER_REQUESTED)
}

/// The reason, message and event of `Paused=True` acknowledging `asked` (the Unknown
/// condition) after a reconcile that came to `outcome`: a plain pause, or a render asked for.
fn acknowledgement(asked: &Condition, outcome: &Outcome<'_>) -> (&'static str, String, EventNote) {
    let note = |reason: &'static str, warning: bool, message: String| {
        let event = EventNote {
            warning,
            reason: reason.into(),
            message: message.clone(),
        };
        (reason, message, event)
    };
    if asked.reason != types::REASON_RENDER_REQUESTED {
        let event = EventNote {
            warning: false,
            reason: REASON_PAUSE_ACKNOWLEDGED.into(),
            message: format!(
                "paused: no changes to the children until resumed ({})",
                asked.message
            ),
        };
        return (REASON_PAUSE_ACKNOWLEDGED, asked.message.clone(), event);
    }
    match outcome {
        Outcome::Running { .. } => note(
            types::REASON_RENDERED,
            false,
            format!(
                "rendered the children from the spec, the PetSet's template included (pods \
                 unchanged), and paused again ({})",
                asked.message
            ),
        ),
        Outcome::Problem(problem, _) => note(
            types::REASON_RENDER_FAILED,
            true,
            format!(
                "could not render the children: {} ({})",
                problem.message, asked.message
            ),
        ),
        Outcome::Halted | Outcome::Paused(_) => note(
            types::REASON_RENDER_FAILED,
            true,
            format!(
                "rendered nothing: the Pgpool is halted or being deleted ({})",
                asked.message
            ),
        ),
    }
}

/// True when `Paused` asks the provisioner to hold still (Unknown: asked; True: acknowledged).
pub fn is_paused(status: Option<&PgpoolStatus>) -> bool {
    status.is_some_and(|s| {
        conditions::has_status(&s.conditions, types::PAUSED, UNKNOWN)
            || conditions::has_status(&s.conditions, types::PAUSED, TRUE)
    })
}

fn cond<'a>(
    type_: &'a str,
    ok: bool,
    reason: &'a str,
    message: String,
    generation: Option<i64>,
) -> NewCondition<'a> {
    NewCondition {
        type_,
        status: if ok { TRUE } else { FALSE },
        reason,
        message,
        observed_generation: generation,
    }
}

fn set_health(cs: &mut Vec<Condition>, h: Health, generation: Option<i64>, now: DateTime<Utc>) {
    let all = h.ready >= h.replicas && h.replicas > 0;
    conditions::set(
        cs,
        cond(
            types::REPLICA_READY,
            all,
            if all {
                "AllReplicasReady"
            } else {
                "ReplicasNotReady"
            },
            format!("{} of {} pods are ready", h.ready, h.replicas),
            generation,
        ),
        now,
    );
    let accepting = h.ready >= 1;
    conditions::set(
        cs,
        cond(
            types::ACCEPTING_CONNECTION,
            accepting,
            if accepting {
                "AcceptingConnection"
            } else {
                "NotAcceptingConnection"
            },
            if accepting {
                format!("{} pods accept connections", h.ready)
            } else {
                "no pod is ready to accept connections".to_string()
            },
            generation,
        ),
        now,
    );
    let ready = all && accepting;
    conditions::set(
        cs,
        cond(
            types::READY,
            ready,
            if ready {
                "ReadinessCheckSucceeded"
            } else {
                "ReadinessCheckFailed"
            },
            if ready {
                "all pods are ready and accept connections".to_string()
            } else {
                format!(
                    "{} of {} pods are ready; waiting for the rest",
                    h.ready, h.replicas
                )
            },
            generation,
        ),
        now,
    );
    if ready {
        conditions::set(
            cs,
            cond(
                types::PROVISIONED,
                true,
                "Provisioned",
                "the pooler was provisioned".to_string(),
                generation,
            ),
            now,
        );
    }
}

/// The next status and the events to publish. `generation` is the Pgpool's
/// `metadata.generation`; it becomes `observedGeneration` unless the Pgpool is paused.
pub fn next_status(
    current: Option<&PgpoolStatus>,
    generation: Option<i64>,
    halted: bool,
    outcome: &Outcome<'_>,
    now: DateTime<Utc>,
) -> (PgpoolStatus, Vec<EventNote>) {
    let mut status = current.cloned().unwrap_or_default();
    let old_phase = current.and_then(|s| s.phase);
    let old_ready = conditions::get(&status.conditions, types::READY).cloned();
    let old_started = conditions::get(&status.conditions, types::PROVISIONING_STARTED).cloned();
    let old_up_to_date = conditions::get(&status.conditions, types::PODS_UP_TO_DATE).cloned();
    let mut events = Vec::new();
    let cs = &mut status.conditions;

    // Paused is the ops-manager's; only Unknown -> True is ours.
    if let Some(paused) = conditions::get(cs, types::PAUSED).cloned()
        && paused.status == UNKNOWN
    {
        let (reason, message, event) = acknowledgement(&paused, outcome);
        conditions::set(
            cs,
            NewCondition {
                type_: types::PAUSED,
                status: TRUE,
                reason,
                message,
                observed_generation: paused.observed_generation,
            },
            now,
        );
        events.push(event);
    }

    let started = conditions::is_true(cs, types::PROVISIONING_STARTED);
    match outcome {
        Outcome::Problem(problem, health) => {
            if !started {
                conditions::set(
                    cs,
                    cond(
                        types::PROVISIONING_STARTED,
                        false,
                        problem.reason,
                        problem.message.clone(),
                        generation,
                    ),
                    now,
                );
            } else {
                set_health(cs, *health, generation, now);
            }
            conditions::set(
                cs,
                cond(
                    types::READY,
                    false,
                    problem.reason,
                    problem.message.clone(),
                    generation,
                ),
                now,
            );
        }
        Outcome::Halted => {
            let message = "spec.halted is true: PetSet and Services are removed, Secrets kept; set spec.halted to false to start the pooler again".to_string();
            for type_ in [
                types::REPLICA_READY,
                types::ACCEPTING_CONNECTION,
                types::READY,
            ] {
                conditions::set(
                    cs,
                    cond(type_, false, REASON_HALTED, message.clone(), generation),
                    now,
                );
            }
        }
        Outcome::Running {
            health,
            notes,
            revisions,
        } => {
            conditions::set(
                cs,
                cond(
                    types::PROVISIONING_STARTED,
                    true,
                    notes::started_reason(notes),
                    notes::started_message(notes),
                    generation,
                ),
                now,
            );
            set_health(cs, *health, generation, now);
            if let Some(revisions) = revisions {
                let (ok, reason, message) = pods_up_to_date(revisions);
                conditions::set(
                    cs,
                    cond(types::PODS_UP_TO_DATE, ok, reason, message, generation),
                    now,
                );
            }
        }
        Outcome::Paused(health) => {
            let keep = |c: Option<&Condition>| c.and_then(|c| c.observed_generation);
            let g = keep(conditions::get(cs, types::READY)).or(status.observed_generation);
            if started {
                set_health(cs, *health, g, now);
            }
        }
    }

    if !matches!(outcome, Outcome::Paused(_)) {
        status.observed_generation = generation;
    }
    let phase = conditions::pgpool_phase(&status.conditions, halted);
    status.phase = Some(phase);

    // events: problems, remarks, phase changes
    let new_ready = conditions::get(&status.conditions, types::READY);
    if let Outcome::Problem(problem, _) = outcome {
        let changed = old_ready
            .as_ref()
            .is_none_or(|c| c.reason != problem.reason || c.message != problem.message);
        if changed {
            events.push(EventNote {
                warning: true,
                reason: problem.reason.into(),
                message: problem.message.clone(),
            });
        }
    }
    if let Outcome::Running { notes, .. } = outcome {
        let old_message = old_started.as_ref().map(|c| c.message.as_str());
        events.extend(notes::note_events(notes, old_message));
    }
    // outdated pods: a Warning when they appear, a Normal event when they are gone
    if let Some(new) = conditions::get(&status.conditions, types::PODS_UP_TO_DATE) {
        let was = old_up_to_date.as_ref().map(|c| c.status.as_str());
        if new.status == FALSE && was != Some(FALSE) {
            events.push(EventNote {
                warning: true,
                reason: REASON_OUTDATED_PODS.into(),
                message: new.message.clone(),
            });
        } else if new.status == TRUE && was == Some(FALSE) {
            events.push(EventNote {
                warning: false,
                reason: REASON_PODS_UP_TO_DATE.into(),
                message: new.message.clone(),
            });
        }
    }
    if old_phase != Some(phase) {
        events.push(EventNote {
            warning: matches!(phase, PgpoolPhase::Critical | PgpoolPhase::NotReady),
            // the recorder folds events with the same reason into one series, so the reason
            // names the new phase
            reason: format!("Phase{phase}"),
            message: format!(
                "phase {} -> {phase}{}",
                old_phase.map_or("(none)".to_string(), |p| p.to_string()),
                new_ready
                    .filter(|c| c.status != TRUE)
                    .map(|c| format!(": {}", c.message))
                    .unwrap_or_default()
            ),
        });
    }
    (status, events)
}

#[cfg(test)]
mod tests;
