//! Step UpdatePetSets of Reconfigure and RotateAuth: put the config hash the provisioner
//! rendered into the PetSet's pod template, so that the restarted pods are the PetSet's new
//! revision and the provisioner, once resumed, finds the template as it would write it.

use pgpool_api::conditions::ops;
use pgpool_api::names;

use super::error::Result;
use super::run::{Flow, Run};
use crate::plan;

impl Run<'_> {
    /// Step UpdatePetSets (configuration).
    pub(super) async fn step_update_petset_config(&mut self) -> Result<Flow> {
        let secret = self.config_secret().await?;
        let Some(hash) = secret.as_ref().and_then(plan::rendered_hash) else {
            let msg = format!(
                "config Secret {} carries no rendered config hash",
                names::config_secret(&self.pgpool)
            );
            return self.fail_step("ConfigNotRendered", msg).await;
        };
        let petset = names::petset(&self.pgpool);
        if !self.set_petset_config_hash(&hash).await? {
            let msg = format!("PetSet {petset} not found: the Pgpool is not provisioned");
            return self.fail_step("PetSetNotFound", msg).await;
        }
        let short: String = hash.chars().take(12).collect();
        let msg = format!("PetSet {petset} now runs configuration {short}");
        self.complete_named(ops::UPDATE_PETSETS, &msg);
        Ok(Flow::Next)
    }
}
