//! Step Rollback: after a failure past the pause, put the PetSet and its pods back on the
//! source version (UpdateVersion), then end the request Failed.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, Preconditions};
use operator_kit::api::{is_conflict, is_not_found};
use pgpool_api::conditions::{self, ops};
use pgpool_api::{OpsRequestPhase, OpsRequestType, PetSet, names};

use super::cluster::Eviction;
use super::error::Result;
use super::run::{Flow, Run};
use crate::plan::{self, Images, RollbackPodStep};

impl Run<'_> {
    /// Step Rollback: undo what can be undone, then end the request Failed.
    pub(super) async fn step_rollback(&mut self) -> Result<Flow> {
        let Some(rb) = self.cond(ops::ROLLBACK).cloned() else {
            return Ok(Flow::Next);
        };
        let mut message = rb.message.clone();
        let paused = conditions::is_true(self.conds(), ops::DATABASE_PAUSE_SUCCEEDED);
        if paused && let Some(state) = self.rollback_scaling(&rb).await? {
            match state {
                RollbackState::Wait(d) => return Ok(Flow::Wait(d)),
                RollbackState::Finished(note) => {
                    message = format!("{message}; {note}");
                }
            }
        }
        if self.t == OpsRequestType::UpdateVersion && paused {
            match self.rollback_update(&rb).await? {
                RollbackState::Wait(d) => return Ok(Flow::Wait(d)),
                RollbackState::Finished(note) => {
                    message = format!("{message}; {note}");
                }
            }
        }
        if matches!(
            self.t,
            OpsRequestType::Reconfigure | OpsRequestType::RotateAuth
        ) && paused
        {
            match self.rollback_config(&rb).await? {
                RollbackState::Wait(d) => return Ok(Flow::Wait(d)),
                RollbackState::Finished(note) => {
                    message = format!("{message}; {note}");
                }
            }
        }
        if self.t == OpsRequestType::ReconfigureTls && paused {
            match self.rollback_tls(&rb).await? {
                RollbackState::Wait(d) => return Ok(Flow::Wait(d)),
                RollbackState::Finished(note) => {
                    message = format!("{message}; {note}");
                }
            }
        }
        self.finish(OpsRequestPhase::Failed, &rb.reason, message)
            .await?;
        Ok(Flow::Next)
    }

    /// Put the PetSet back on the source images and restart the pods on other images, one at a
    /// time. Gives up (and says so) when `timeout * (replicas + 1)` has passed.
    pub(super) async fn rollback_update(&mut self, rb: &Condition) -> Result<RollbackState> {
        let Some(pp) = self.fetch_pgpool().await? else {
            return Ok(RollbackState::Finished(format!(
                "Pgpool {} no longer exists",
                self.pgpool
            )));
        };
        let source_name = pp.spec.version.clone();
        let Some(source) = self
            .fetch_version(&source_name)
            .await?
            .map(|v| Images::of(&v))
        else {
            return Ok(RollbackState::Finished(format!(
                "cannot roll back: PgpoolVersion {source_name} not found"
            )));
        };
        if !self.set_petset_images(&source).await? {
            return Ok(RollbackState::Finished(format!(
                "PetSet {} no longer exists",
                names::petset(&self.pgpool)
            )));
        }
        let petset = names::petset(&self.pgpool);
        loop {
            let gave_up = |limit| {
                format!(
                    "rolled the PetSet back to {source_name}, but not all pods were back on it \
                     and Ready within {limit:?}"
                )
            };
            let (ps, left) = match self.rollback_window(rb, gave_up).await? {
                Ok(window) => window,
                Err(state) => return Ok(state),
            };
            let pods = self.list_pods().await?;
            let names: Vec<String> = (0..ps.spec.replicas())
                .map(|i| names::pod(&petset, i))
                .collect();
            let steps: Vec<RollbackPodStep> = names
                .iter()
                .map(|n| plan::rollback_pod_step(n, pods.get(n), &source))
                .collect();
            let Some(i) = plan::rollback_pick(&steps) else {
                return Ok(RollbackState::Finished(format!(
                    "rolled back: PetSet and pods are on version {source_name} again"
                )));
            };
            let RollbackPodStep::Evict { ready } = steps[i] else {
                return Ok(RollbackState::Wait(self.wait_dur(left)));
            };
            let pod = pods.get(&names[i]);
            let uid = pod.and_then(|p| p.metadata.uid.clone()).unwrap_or_default();
            let note = format!("to bring it back on {source_name}");
            if let Some(d) = self
                .evict_for_rollback(&names[i], &uid, ready, &note, left)
                .await?
            {
                return Ok(RollbackState::Wait(d));
            }
        }
    }
}

impl Run<'_> {
    /// The Pgpool's PetSet and the time the rollback (started with condition `rb`) has left
    /// for its pods: a step timeout per pod, and one more. `Err`: the rollback ends here,
    /// because the PetSet is gone or the time is up (`gave_up` says what was and was not put
    /// back, given the limit).
    pub(super) async fn rollback_window(
        &self,
        rb: &Condition,
        gave_up: impl FnOnce(Duration) -> String,
    ) -> Result<std::result::Result<(PetSet, Duration), RollbackState>> {
        let petset = names::petset(&self.pgpool);
        let Some(ps) = self.petsets().get_opt(&petset).await? else {
            let note = format!("PetSet {petset} no longer exists");
            return Ok(Err(RollbackState::Finished(note)));
        };
        let replicas = u32::try_from(ps.spec.replicas()).unwrap_or(1);
        let limit = self.timeout().saturating_mul(replicas.saturating_add(1));
        Ok(match Self::remaining(rb, limit) {
            Some(left) => Ok((ps, left)),
            None => Err(RollbackState::Finished(gave_up(limit))),
        })
    }

    /// Evicts pod `pod` (with its `uid`) so that it comes back with what the rollback put
    /// back (`note` says what, in the event). A Ready pod whose eviction is refused is tried
    /// again later: `Some(wait)`; one that is not Ready serves nothing and is deleted. `None`:
    /// the pod is on its way out, look again.
    pub(super) async fn evict_for_rollback(
        &self,
        pod: &str,
        uid: &str,
        ready: bool,
        note: &str,
        left: Duration,
    ) -> Result<Option<Duration>> {
        self.event("EvictPod", &format!("rollback: evicting pod {pod} {note}"));
        match self.evict(pod, uid).await? {
            Eviction::Done => Ok(None),
            Eviction::Refused(why) if ready => {
                tracing::info!(pod, reason = %why, "rollback eviction refused; will retry");
                Ok(Some(Duration::from_secs(1).min(left)))
            }
            Eviction::Refused(_) => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid.to_string()).filter(|u| !u.is_empty()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match self.pods().delete(pod, &dp).await {
                    Ok(_) => Ok(None),
                    Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

/// Where a rollback stands.
pub(super) enum RollbackState {
    /// Wait for the pods, at most this long.
    Wait(Duration),
    /// Ended (done, or given up): this note goes into the Failed message.
    Finished(String),
}
