//! Step UpdatePetSets (ReconfigureTLS): the certificates are issued; ask the provisioner, which
//! keeps holding the pause, to render the children once from the changed spec (the PetSet's
//! template gets the new TLS volumes and certificate hash; its `OnDelete` strategy keeps every
//! pod as it is), then check the template. RestartPods moves the pods next, still paused, so
//! the provisioner's own certificate restarts never overlap the request's.

use pgpool_api::conditions::{self, ops};

use super::config_objects::RENDER_POLL;
use super::error::Result;
use super::run::{Flow, Run};
use crate::plan::{self, RenderState};

impl Run<'_> {
    /// Step UpdatePetSets of ReconfigureTLS.
    pub(super) async fn step_update_petset_tls(&mut self) -> Result<Flow> {
        let step = ops::UPDATE_PETSETS;
        if self.cond(step).is_none() {
            let msg = format!(
                "asking the provisioner to render the PetSet of Pgpool {} for the new TLS \
                 settings (the pods stay as they are)",
                self.pgpool
            );
            self.record(step, conditions::UNKNOWN, "RenderingPetSet", &msg, None)
                .await?;
        }
        let Some(pp) = self.fetch_pgpool().await? else {
            return self.fail_pgpool_gone().await;
        };
        let generation = pp.metadata.generation.unwrap_or_default();
        let conds = pp.status.as_ref().map(|s| s.conditions.as_slice());
        match plan::render_state(conds.unwrap_or_default(), generation) {
            RenderState::NotPaused => {
                let msg = format!(
                    "the pause of Pgpool {} was lifted before its PetSet was rendered",
                    self.pgpool
                );
                return self.fail_step("NotPaused", msg).await;
            }
            RenderState::Failed(why) => {
                let msg = format!("Pgpool {}: {why}", self.pgpool);
                return self.fail_step("RenderFailed", msg).await;
            }
            RenderState::NotAsked => {
                if !self.ask_render(generation).await? {
                    return self.fail_pgpool_gone().await;
                }
            }
            RenderState::Asked => {}
            RenderState::Rendered => {
                let previous = self.previous().unwrap_or_default();
                let rotated = previous["rotate"].as_array().is_some_and(|a| !a.is_empty());
                let old = previous["tlsHash"].as_str();
                let hash = self.petset_tls_hash().await?;
                if plan::tls_template_ok(pp.spec.tls.is_some(), rotated, old, hash.as_deref()) {
                    let msg = format!(
                        "the provisioner rendered the PetSet of Pgpool {} for the new TLS \
                         settings",
                        self.pgpool
                    );
                    self.complete_named(step, &msg);
                    return Ok(Flow::Next);
                }
                let msg = format!(
                    "the provisioner rendered generation {generation} of Pgpool {}, but the \
                     PetSet's template does not carry the new certificates (were certificate \
                     Secrets removed meanwhile?)",
                    self.pgpool
                );
                return self.fail_step("PetSetNotRendered", msg).await;
            }
        }
        let msg = format!(
            "the provisioner did not render the PetSet of Pgpool {} within {} (its Paused \
             condition stayed Unknown): check that pgpool-provisioner runs",
            self.pgpool,
            self.timeout_text()
        );
        match self.time_left(step) {
            Some(left) => Ok(self.wait(left.min(RENDER_POLL))),
            None => self.fail_step("RenderNotAcknowledged", msg).await,
        }
    }
}
