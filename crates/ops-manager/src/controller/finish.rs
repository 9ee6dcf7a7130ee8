//! The end of a request: success (the Resume step), failure (which starts a rollback once
//! the Pgpool may be paused), and the final status.

use std::time::Duration;

use chrono::Utc;
use operator_kit::api::is_not_found;
use pgpool_api::conditions::{self, ops};
use pgpool_api::{OpsRequestPhase, OpsRequestType};

use super::error::{ReconcileError, Result};
use super::run::{Flow, Run};
use crate::plan;

impl Run<'_> {
    /// Step Resume: every step is done; end the request Successful (resuming the Pgpool).
    pub(super) async fn step_resume(&mut self) -> Result<Flow> {
        let message = match self.t {
            OpsRequestType::UpdateVersion => format!(
                "Pgpool {} was updated to version {}",
                self.pgpool,
                plan::target_version(&self.req).unwrap_or("")
            ),
            OpsRequestType::Restart => format!("the pods of Pgpool {} were restarted", self.pgpool),
            OpsRequestType::HorizontalScaling => format!(
                "Pgpool {} was scaled to {} replicas",
                self.pgpool,
                plan::target_replicas(&self.req).unwrap_or_default()
            ),
            OpsRequestType::VerticalScaling => format!(
                "the pods of Pgpool {} run with the new resources",
                self.pgpool
            ),
            OpsRequestType::Reconfigure => {
                format!("Pgpool {} runs its new configuration", self.pgpool)
            }
            OpsRequestType::RotateAuth => {
                format!("Pgpool {} runs its new pcp credentials", self.pgpool)
            }
            OpsRequestType::ReconfigureTls => {
                format!("Pgpool {} runs its new TLS settings", self.pgpool)
            }
        };
        self.finish(OpsRequestPhase::Successful, "Successful", message)
            .await?;
        Ok(Flow::Next)
    }

    /// [`Self::fail`], then go on with the next step (the rollback, or nothing).
    pub(super) async fn fail_step(&mut self, reason: &str, message: String) -> Result<Flow> {
        self.fail(reason, message).await?;
        Ok(Flow::Next)
    }

    /// [`Self::fail_step`] because the Pgpool was deleted while the request ran.
    pub(super) async fn fail_pgpool_gone(&mut self) -> Result<Flow> {
        let msg = format!("Pgpool {} was deleted", self.pgpool);
        self.fail_step("PgpoolNotFound", msg).await
    }

    /// Wait for a change, at most `left` (see [`Run::time_left`]); when no time is left, the
    /// step's deadline has passed: fail with `reason` and `message`.
    pub(super) async fn wait_or_fail(
        &mut self,
        left: Option<Duration>,
        reason: &str,
        message: String,
    ) -> Result<Flow> {
        match left {
            Some(left) => Ok(self.wait(left)),
            None => self.fail_step(reason, message).await,
        }
    }

    /// A step failed. Before the pause nothing changed: end Failed now. Otherwise start the
    /// rollback, which ends Failed with this reason.
    pub(super) async fn fail(&mut self, reason: &str, message: String) -> Result<()> {
        let start = plan::start_condition(self.t);
        if self.cond(start).is_none() {
            self.set(start, conditions::FALSE, reason, &message);
        }
        let in_progress: Vec<String> = self
            .conds()
            .iter()
            .filter(|c| c.status == conditions::UNKNOWN)
            .map(|c| c.type_.clone())
            .collect();
        for t in in_progress {
            self.set(&t, conditions::FALSE, reason, &message);
        }
        self.warning(reason, &message);
        if self.cond(ops::DATABASE_PAUSE_SUCCEEDED).is_none() {
            return self.finish(OpsRequestPhase::Failed, reason, message).await;
        }
        self.set(ops::ROLLBACK, conditions::UNKNOWN, reason, &message);
        self.save().await?;
        self.event("RollingBack", &format!("rolling back: {message}"));
        Ok(())
    }

    /// End the request: resume the Pgpool if this request may have paused it, write the final
    /// status, drop the finalizer, wake the next request.
    pub(super) async fn finish(
        &mut self,
        phase: OpsRequestPhase,
        reason: &str,
        message: String,
    ) -> Result<()> {
        if self.cond(ops::DATABASE_PAUSE_SUCCEEDED).is_some() {
            if self.resume_pgpool().await? {
                self.event("Resumed", &format!("resumed Pgpool {}", self.pgpool));
            }
            self.step_done("Resume");
        }
        if self.cond(ops::ROLLBACK).is_some() {
            self.set(ops::ROLLBACK, conditions::TRUE, reason, &message);
        }
        match phase {
            OpsRequestPhase::Successful => {
                self.set(ops::SUCCESSFUL, conditions::TRUE, "Successful", &message);
            }
            OpsRequestPhase::Skipped => {
                self.set(plan::SKIPPED, conditions::TRUE, reason, &message);
            }
            _ => {
                self.set(ops::FAILED, conditions::TRUE, reason, &message);
            }
        }
        self.set_phase(phase);
        // The finalizer goes first, so that a final phase means the request is done with; a
        // deleted request may then vanish before its final status is written.
        self.remove_finalizer().await?;
        match self.save().await {
            Err(ReconcileError::Kube(e)) if is_not_found(&e) => {}
            other => other?,
        }
        {
            let started = self
                .cond(plan::start_condition(self.t))
                .map(|c| c.last_transition_time.0.as_second())
                .or_else(|| {
                    self.req
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.as_second())
                })
                .unwrap_or_else(|| Utc::now().timestamp());
            let seconds = (Utc::now().timestamp() - started).max(0) as f64;
            self.ctx.metrics.finished(self.t, phase, seconds);
            if let Ok(mut m) = self.ctx.marks.lock() {
                m.remove(self.req.metadata.uid.as_deref().unwrap_or_default());
            }
        }
        if phase == OpsRequestPhase::Successful {
            self.event("Successful", &message);
        } else {
            self.warning(phase.as_str(), &message);
        }
        Ok(())
    }

    /// Phase, reason and message of the final condition that is already there.
    pub(super) fn final_from_conditions(&self) -> (OpsRequestPhase, String, String) {
        for (t, phase) in [
            (ops::SUCCESSFUL, OpsRequestPhase::Successful),
            (ops::FAILED, OpsRequestPhase::Failed),
            (plan::SKIPPED, OpsRequestPhase::Skipped),
        ] {
            if let Some(c) = self.cond(t).filter(|c| c.status == conditions::TRUE) {
                return (phase, c.reason.clone(), c.message.clone());
            }
        }
        (OpsRequestPhase::Failed, "Unknown".into(), String::new())
    }
}
