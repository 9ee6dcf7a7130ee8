//! Step UpdateResources (condition `UpdateDatabase`): record the new resources in the Pgpool's
//! `spec.podTemplate.spec.containers[pgpool].resources`, the override the provisioner renders
//! as the container's resources, so that the PetSet it renders after the resume is the one
//! the pods run.

use operator_kit::api::{Change, Target, modify};
use pgpool_api::Pgpool;
use pgpool_api::conditions::ops;
use pgpool_api::names;
use pgpool_api::pgpool::ContainerOverride;

use super::error::{ReconcileError, Result};
use super::run::{Flow, Run};
use crate::plan;

impl Run<'_> {
    /// Step UpdateResources.
    pub(super) async fn step_update_resources(&mut self) -> Result<Flow> {
        let Some(new) = plan::target_resources(&self.req).cloned() else {
            let msg = "spec.verticalScaling.node.resources is empty".to_string();
            return self.fail_step("ResourcesMissing", msg).await;
        };
        let found = modify(
            &self.pgpools(),
            &self.pgpool,
            Target::Object,
            |pp: &mut Pgpool| {
                let spec = pp
                    .spec
                    .pod_template
                    .get_or_insert_with(Default::default)
                    .spec
                    .get_or_insert_with(Default::default);
                let containers = &mut spec.containers;
                match containers
                    .iter_mut()
                    .find(|c| c.name == names::CONTAINER_PGPOOL)
                {
                    Some(c) if c.resources.as_ref() == Some(&new) => return Change::Keep(()),
                    Some(c) => c.resources = Some(new.clone()),
                    None => containers.push(ContainerOverride {
                        name: names::CONTAINER_PGPOOL.to_string(),
                        resources: Some(new.clone()),
                        ..ContainerOverride::default()
                    }),
                }
                Change::Write(())
            },
        )
        .await
        .map_err(ReconcileError::from_modify(|| {
            format!("Pgpool {}", self.pgpool)
        }))?;
        if found.is_none() {
            return self.fail_pgpool_gone().await;
        }
        let msg = format!(
            "Pgpool {} spec.podTemplate.spec.containers[pgpool].resources now holds the new \
             resources",
            self.pgpool
        );
        self.complete_named(ops::UPDATE_DATABASE, &msg);
        Ok(Flow::Next)
    }
}
