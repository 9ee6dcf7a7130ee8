//! Before the first step: the request's place in its Pgpool's queue, and the start (which
//! takes the Pgpool's slot).

use std::time::Instant;

use kube::api::ListParams;
use kube::runtime::controller::Action;
use pgpool_api::conditions;
use pgpool_api::{OpsRequestPhase, PgpoolOpsRequest};

use super::error::Result;
use super::run::Run;
use crate::plan::{self, Verdict};

impl Run<'_> {
    /// Queue handling of a request that has not started. `Some(action)` when it must wait or
    /// has ended; `None` when it has just started and should be driven on.
    pub(super) async fn queue(&mut self) -> Result<Option<Action>> {
        let ctx = self.ctx;
        let _guard = ctx.queue_lock.lock().await;
        let first_sight = self.req.status.as_ref().and_then(|s| s.phase).is_none();
        let all = self.reqs.list(&ListParams::default()).await?;
        let siblings: Vec<PgpoolOpsRequest> = all
            .items
            .into_iter()
            .filter(|r| r.spec.database_ref.name == self.pgpool)
            .collect();
        let decision = plan::queue_decision(&self.req, &siblings);
        tracing::debug!(request = %self.name, ?decision, "queue");
        match decision {
            plan::QueueDecision::Start => {
                self.start().await?;
                // a request that validation ended is finished: driving it would finish it again
                if plan::phase_of(&self.req).is_final() {
                    return Ok(Some(Action::await_change()));
                }
                Ok(None)
            }
            plan::QueueDecision::Wait { behind } => {
                if first_sight {
                    self.set_phase(OpsRequestPhase::Pending);
                    self.save().await?;
                    let msg = format!(
                        "waiting for PgpoolOpsRequest {behind} on Pgpool {} to finish",
                        self.pgpool
                    );
                    self.event("Pending", &msg);
                }
                Ok(Some(Action::requeue(ctx.max_requeue)))
            }
            plan::QueueDecision::Skip { newer } => {
                let msg = format!(
                    "skipped: the newer {} request {newer} for Pgpool {} supersedes this one",
                    self.t.as_str(),
                    self.pgpool
                );
                self.set(
                    plan::SKIPPED,
                    conditions::TRUE,
                    "SupersededByNewerRequest",
                    &msg,
                );
                self.set_phase(OpsRequestPhase::Skipped);
                self.save().await?;
                self.remove_finalizer().await?;
                self.event("Skipped", &msg);
                Ok(Some(Action::await_change()))
            }
        }
    }

    /// Take the Pgpool's slot: validate; a request that goes on gets the finalizer first (so a
    /// deletion cannot skip the resume); the first status write marks it Progressing (or ends
    /// it at once when validation fails or there is nothing to do).
    pub(super) async fn start(&mut self) -> Result<()> {
        let verdict = self.verdict().await?;
        if matches!(
            verdict,
            Verdict::Proceed { .. } | Verdict::WaitForReady { .. }
        ) {
            self.add_finalizer().await?;
        }
        self.set_phase(OpsRequestPhase::Progressing);
        if let Some(m) = self.ctx.marks.lock().ok().as_mut() {
            m.insert(
                self.req.metadata.uid.clone().unwrap_or_default(),
                Instant::now(),
            );
        }
        // Every outcome of validation writes the status (Progressing, or final).
        self.apply_verdict(verdict).await?;
        Ok(())
    }
}
