//! Step Validate: check the request against the cluster; with `apply: IfReady`, wait for the
//! Pgpool to be Ready. A request that goes on asks for the pause in the same status write.

use pgpool_api::conditions::{self, ops};
use pgpool_api::{OpsRequestPhase, OpsRequestType};

use super::error::Result;
use super::run::{Flow, Run};
use crate::plan::{self, Verdict};

impl Run<'_> {
    /// Validate the request against the Pgpool and the catalog as they are now.
    pub(super) async fn verdict(&self) -> Result<Verdict> {
        let pp = self.fetch_pgpool().await?;
        let (current, target) = match (&pp, self.t) {
            (Some(pp), OpsRequestType::UpdateVersion) => (
                self.fetch_version(&pp.spec.version).await?,
                self.fetch_version(plan::target_version(&self.req).unwrap_or(""))
                    .await?,
            ),
            _ => (None, None),
        };
        let verdict = plan::validate(plan::ValidationInput {
            request: &self.req,
            pgpool: pp.as_ref(),
            current: current.as_ref(),
            target: target.as_ref(),
        });
        self.config_verdict(pp.as_ref(), verdict).await
    }

    /// Step Validate: validate again (a request that waited for Ready, or after a restart).
    pub(super) async fn step_validate(&mut self) -> Result<Flow> {
        let verdict = self.verdict().await?;
        self.apply_verdict(verdict).await
    }

    /// Act on a validation verdict: fail, succeed at once, wait for Ready, or start (asking for
    /// the pause in the same status write).
    pub(super) async fn apply_verdict(&mut self, verdict: Verdict) -> Result<Flow> {
        let start = plan::start_condition(self.t);
        match verdict {
            Verdict::Fail { reason, message } => self.fail_step(reason, message).await,
            Verdict::AlreadyDone { message } => {
                self.set(start, conditions::TRUE, "AlreadyOnTargetVersion", &message);
                self.finish(OpsRequestPhase::Successful, "Successful", message)
                    .await?;
                Ok(Flow::Next)
            }
            Verdict::WaitForReady { message } => {
                self.record(
                    start,
                    conditions::UNKNOWN,
                    "WaitingForReady",
                    &message,
                    Some("WaitingForReady"),
                )
                .await?;
                let msg = plan::not_ready_message(&self.pgpool, &message, &self.timeout_text());
                self.wait_or_fail(self.time_left(start), "PgpoolNotReady", msg)
                    .await
            }
            Verdict::Proceed { from, to } => {
                let message = match self.t {
                    OpsRequestType::UpdateVersion => {
                        format!(
                            "updating Pgpool {} from version {from} to {to}",
                            self.pgpool
                        )
                    }
                    OpsRequestType::Restart => {
                        format!(
                            "restarting the pods of Pgpool {} (version {from})",
                            self.pgpool
                        )
                    }
                    OpsRequestType::HorizontalScaling => {
                        format!(
                            "scaling Pgpool {} from {from} to {to} replicas",
                            self.pgpool
                        )
                    }
                    OpsRequestType::VerticalScaling => {
                        format!(
                            "changing the resources of the pgpool container of Pgpool {}",
                            self.pgpool
                        )
                    }
                    OpsRequestType::Reconfigure => {
                        format!("reconfiguring Pgpool {} (version {from})", self.pgpool)
                    }
                    OpsRequestType::RotateAuth => {
                        format!(
                            "rotating the pcp credentials of Pgpool {} (version {from})",
                            self.pgpool
                        )
                    }
                    OpsRequestType::ReconfigureTls => {
                        format!("reconfiguring the TLS of Pgpool {}", self.pgpool)
                    }
                };
                self.set(start, conditions::TRUE, self.t.as_str(), &message);
                // The pause handshake starts right away: record it in the same write (before
                // asking, so the timeout survives restarts and a failure knows there is a
                // pause to undo).
                let pause = self.pause_requested_message();
                self.set(
                    ops::DATABASE_PAUSE_SUCCEEDED,
                    conditions::UNKNOWN,
                    "PauseRequested",
                    &pause,
                );
                self.save().await?;
                self.step_done(start);
                self.event("Starting", &message);
                self.event("Pausing", &pause);
                Ok(Flow::Next)
            }
        }
    }
}
