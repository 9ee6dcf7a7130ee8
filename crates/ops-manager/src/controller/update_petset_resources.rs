//! Step UpdatePetSetResources (condition `UpdatePetSets`): put the requested resources into
//! the PetSet's `pgpool` container. The condition's message keeps the resources it had, for
//! the rollback.

use pgpool_api::conditions::{self, ops};
use pgpool_api::names;

use super::error::Result;
use super::run::{Flow, Run};
use crate::plan;

impl Run<'_> {
    /// Step UpdatePetSetResources.
    pub(super) async fn step_update_petset_resources(&mut self) -> Result<Flow> {
        let petset = names::petset(&self.pgpool);
        let Some(new) = plan::target_resources(&self.req).cloned() else {
            let msg = "spec.verticalScaling.node.resources is empty: set the requests and limits \
                       of the pgpool container"
                .to_string();
            return self.fail_step("ResourcesMissing", msg).await;
        };
        // Record the resources the PetSet has before changing them (once: after a restart
        // the PetSet already has the new ones, and the first record keeps the old).
        let recorded = self
            .cond(ops::UPDATE_PETSETS)
            .and_then(|c| plan::recorded_resources(&c.message));
        let old = match recorded {
            Some(old) => Some(old),
            None => {
                let Some(ps) = self.petsets().get_opt(&petset).await? else {
                    let msg = format!("PetSet {petset} not found: the Pgpool is not provisioned");
                    return self.fail_step("PetSetNotFound", msg).await;
                };
                let old = ps
                    .spec
                    .template
                    .spec
                    .as_ref()
                    .and_then(plan::spec_resources)
                    .cloned();
                let msg = plan::resources_message(&petset, &new, old.as_ref());
                self.record(
                    ops::UPDATE_PETSETS,
                    conditions::UNKNOWN,
                    "UpdatingPetSets",
                    &msg,
                    None,
                )
                .await?;
                old
            }
        };
        if self.set_petset_resources(&new).await?.is_none() {
            let msg = format!("PetSet {petset} not found: the Pgpool is not provisioned");
            return self.fail_step("PetSetNotFound", msg).await;
        }
        let msg = plan::resources_message(&petset, &new, old.as_ref());
        self.complete_named(ops::UPDATE_PETSETS, &msg);
        Ok(Flow::Next)
    }
}
