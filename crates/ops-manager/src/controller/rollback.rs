//! Step Rollback: after a failure past the pause, put the PetSet and its pods back on the
//! source version (UpdateVersion), then end the request Failed.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, Preconditions};
use operator_kit::api::{is_conflict, is_not_found};
use pgpool_api::conditions::{self, ops};
use pgpool_api::{OpsRequestPhase, OpsRequestType, names};

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
            let Some(ps) = self.petsets().get_opt(&petset).await? else {
                return Ok(RollbackState::Finished(format!(
                    "PetSet {petset} no longer exists"
                )));
            };
            let replicas = ps.spec.replicas();
            let limit = self
                .timeout()
                .saturating_mul(u32::try_from(replicas).unwrap_or(1).saturating_add(1));
            let Some(left) = Self::remaining(rb, limit) else {
                return Ok(RollbackState::Finished(format!(
                    "rolled the PetSet back to {source_name}, but not all pods were back on it \
                     and Ready within {:?}",
                    limit
                )));
            };
            let pods = self.list_pods().await?;
            let mut acted = false;
            for i in 0..replicas {
                let pod_name = names::pod(&petset, i);
                let pod = pods.get(&pod_name);
                match plan::rollback_pod_step(&pod_name, pod, &source) {
                    RollbackPodStep::Done => continue,
                    RollbackPodStep::Wait { .. } => {
                        return Ok(RollbackState::Wait(self.wait_dur(left)));
                    }
                    RollbackPodStep::Evict { ready } => {
                        let uid = pod.and_then(|p| p.metadata.uid.clone()).unwrap_or_default();
                        self.event(
                            "EvictPod",
                            &format!("rollback: evicting pod {pod_name} to bring it back on {source_name}"),
                        );
                        match self.evict(&pod_name, &uid).await? {
                            Eviction::Done => {}
                            Eviction::Refused(why) if ready => {
                                tracing::info!(pod = pod_name, reason = %why, "rollback eviction refused; will retry");
                                return Ok(RollbackState::Wait(Duration::from_secs(1).min(left)));
                            }
                            Eviction::Refused(_) => {
                                // A pod that is not Ready serves nothing: delete it.
                                let dp = DeleteParams {
                                    preconditions: Some(Preconditions {
                                        uid: Some(uid).filter(|u| !u.is_empty()),
                                        resource_version: None,
                                    }),
                                    ..DeleteParams::default()
                                };
                                match self.pods().delete(&pod_name, &dp).await {
                                    Ok(_) => {}
                                    Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                                    Err(e) => return Err(e.into()),
                                }
                            }
                        }
                        acted = true;
                        break;
                    }
                }
            }
            if !acted {
                return Ok(RollbackState::Finished(format!(
                    "rolled back: PetSet and pods are on version {source_name} again"
                )));
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
