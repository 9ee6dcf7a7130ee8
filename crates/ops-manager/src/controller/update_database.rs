//! Step UpdateDatabase: set the Pgpool's `spec.version` to the target.

use pgpool_api::conditions::ops;
use serde_json::json;

use super::error::Result;
use super::run::{Flow, Run};
use crate::plan;

impl Run<'_> {
    /// Step UpdateDatabase: set the Pgpool's `spec.version` to the target version.
    pub(super) async fn step_update_database(&mut self) -> Result<Flow> {
        let to = plan::target_version(&self.req).unwrap_or("").to_string();
        let patch = json!({ "spec": { "version": to } });
        if self.patch_pgpool(&patch).await?.is_none() {
            return self.fail_pgpool_gone().await;
        }
        let msg = format!("Pgpool {} spec.version is now {to}", self.pgpool);
        // Patching spec.version again after a crash changes nothing: written with the final
        // status.
        self.complete_named(ops::UPDATE_DATABASE, &msg);
        Ok(Flow::Next)
    }
}
