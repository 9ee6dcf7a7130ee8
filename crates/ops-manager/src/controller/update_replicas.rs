//! Step UpdateReplicas (condition `UpdateDatabase`): set the Pgpool's `spec.replicas` to the
//! scaled count, so that the provisioner renders the same PetSet (and a budget for that count)
//! once the Pgpool is resumed.

use kube::api::{Patch, PatchParams};
use operator_kit::api::is_not_found;
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
        match self
            .pgpools()
            .patch(&self.pgpool, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                let msg = format!("Pgpool {} was deleted", self.pgpool);
                return self.fail_step("PgpoolNotFound", msg).await;
            }
            Err(e) => return Err(e.into()),
        }
        let msg = format!("Pgpool {} spec.replicas is now {to}", self.pgpool);
        // Patching again after a crash changes nothing: written with the final status.
        self.complete(
            ops::UPDATE_DATABASE,
            "UpdateDatabase",
            ops::UPDATE_DATABASE,
            "UpdateDatabase",
            &msg,
        );
        Ok(Flow::Next)
    }
}
