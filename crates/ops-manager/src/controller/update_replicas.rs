//! Step UpdateReplicas (condition `UpdateDatabase`): set the Pgpool's `spec.replicas` to the
//! scaled count, so that the provisioner renders the same PetSet (and a budget for that count)
//! once the Pgpool is resumed.

use pgpool_api::conditions::ops;
use serde_json::json;

use super::error::Result;
use super::run::{Flow, Run};
use crate::plan;

impl Run<'_> {
    /// Step UpdateReplicas.
    pub(super) async fn step_update_replicas(&mut self) -> Result<Flow> {
        let to = plan::target_replicas(&self.req).unwrap_or_default();
        let patch = json!({ "spec": { "replicas": to } });
        if self.patch_pgpool(&patch).await?.is_none() {
            return self.fail_pgpool_gone().await;
        }
        let msg = format!("Pgpool {} spec.replicas is now {to}", self.pgpool);
        // Patching again after a crash changes nothing: written with the final status.
        self.complete_named(ops::UPDATE_DATABASE, &msg);
        Ok(Flow::Next)
    }
}
