//! Step UpdatePetSets: put the target version's images into the PetSet's pod template.

use pgpool_api::conditions::ops;
use pgpool_api::names;

use super::error::Result;
use super::run::{Flow, Run};
use crate::plan;

impl Run<'_> {
    /// Step UpdatePetSets: put the target images into the PetSet template.
    pub(super) async fn step_update_petsets(&mut self) -> Result<Flow> {
        let Some(images) = self.target_images().await? else {
            let msg = format!(
                "target PgpoolVersion {:?} disappeared during the update",
                plan::target_version(&self.req).unwrap_or("")
            );
            return self.fail_step("VersionNotFound", msg).await;
        };
        if !self.set_petset_images(&images).await? {
            let msg = format!(
                "PetSet {} not found: the Pgpool is not provisioned",
                names::petset(&self.pgpool)
            );
            return self.fail_step("PetSetNotFound", msg).await;
        }
        let msg = format!(
            "PetSet {} now runs {}",
            names::petset(&self.pgpool),
            images.pgpool
        );
        // Setting the images again after a crash changes nothing: written with the next record.
        self.complete_named(ops::UPDATE_PETSETS, &msg);
        Ok(Flow::Next)
    }
}
