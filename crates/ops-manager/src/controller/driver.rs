//! The request driver: load the request, queue it, then run the step the planner names
//! ([`plan::next_step`]) until the request waits or ends.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use pgpool_api::conditions::{self, ops};
use pgpool_api::{OpsRequestPhase, PgpoolOpsRequest};

use super::context::Ctx;
use super::error::Result;
use super::run::{Flow, Run};
use crate::plan::{self, Step};

/// Reconcile one request: read it fresh (the cache may be behind our own writes), run it,
/// and count the outcome; a success clears its error backoff.
pub(super) async fn reconcile(obj: Arc<PgpoolOpsRequest>, ctx: Arc<Ctx>) -> Result<Action> {
    let key = ObjectRef::from_obj(obj.as_ref());
    let timer = ctx.metrics.reconcile.start();
    let result = async {
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let reqs: Api<PgpoolOpsRequest> = Api::namespaced(ctx.client.clone(), &ns);
        let Some(req) = reqs.get_opt(&name).await? else {
            return Ok(Action::await_change());
        };
        Run::new(&ctx, reqs, req).reconcile().await
    }
    .await;
    timer.observe(&result);
    if result.is_ok() {
        ctx.errors.succeeded(&key);
    }
    let state = ctx.store.state();
    ctx.metrics.count_requests(state.iter().map(|r| r.as_ref()));
    result
}

impl Run<'_> {
    /// End a final request's business, queue one that has not started, drive one that has.
    pub(super) async fn reconcile(mut self) -> Result<Action> {
        let phase = plan::phase_of(&self.req);
        if phase.is_final() {
            if self.has_finalizer() {
                self.remove_finalizer().await?;
            }
            return Ok(Action::await_change());
        }
        if phase != OpsRequestPhase::Progressing {
            if self.req.metadata.deletion_timestamp.is_some() {
                self.remove_finalizer().await?;
                return Ok(Action::await_change());
            }
            if let Some(action) = self.queue().await? {
                return Ok(action);
            }
        }
        self.drive().await
    }

    /// Run the steps the planner names until the request waits or ends.
    pub(super) async fn drive(&mut self) -> Result<Action> {
        loop {
            let step = plan::next_step(self.t, self.conds());
            tracing::debug!(request = %self.name, ?step, "step");
            if self.req.metadata.deletion_timestamp.is_some()
                && !matches!(step, Step::Rollback | Step::Done)
                && !conditions::is_true(self.conds(), ops::RESTART_PODS)
            {
                let msg = format!(
                    "the request was deleted while {} was in progress",
                    self.t.as_str()
                );
                self.fail("RequestDeleted", msg).await?;
                if plan::phase_of(&self.req).is_final() {
                    return Ok(Action::await_change());
                }
                continue;
            }
            let flow = match step {
                Step::Validate => self.step_validate().await?,
                Step::Pause => self.step_pause().await?,
                Step::UpdatePetSets => self.step_update_petsets().await?,
                Step::RestartPods => self.step_restart_pods().await?,
                Step::UpdateDatabase => self.step_update_database().await?,
                Step::Resume => self.step_resume().await?,
                Step::Rollback => self.step_rollback().await?,
                Step::HorizontalScale => self.step_horizontal_scale().await?,
                Step::UpdateReplicas => self.step_update_replicas().await?,
                Step::UpdatePetSetResources => self.step_update_petset_resources().await?,
                Step::UpdateResources => self.step_update_resources().await?,
                Step::UpdateConfiguration => self.step_update_configuration().await?,
                Step::UpdateCredential => self.step_update_credential().await?,
                Step::UpdatePetSetConfig => self.step_update_petset_config().await?,
                Step::UpdateTls => self.step_update_tls().await?,
                Step::SyncCertificates => self.step_sync_certificates().await?,
                Step::UpdatePetSetTls => self.step_update_petset_tls().await?,
                Step::Done => {
                    // A final condition exists but the phase was not written: finish again.
                    let (phase, reason, message) = self.final_from_conditions();
                    self.finish(phase, &reason, message).await?;
                    return Ok(Action::await_change());
                }
            };
            match flow {
                Flow::Next => {
                    if plan::phase_of(&self.req).is_final() {
                        return Ok(Action::await_change());
                    }
                }
                Flow::Wait(d) => {
                    self.flush().await?;
                    return Ok(Action::requeue(d));
                }
            }
        }
    }
}
