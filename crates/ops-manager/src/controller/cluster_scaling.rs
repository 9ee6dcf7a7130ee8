//! The objects the scaling steps write: the PetSet's replica count and `pgpool` resources,
//! and the Pgpool's own PodDisruptionBudget during a scale-down.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{Patch, PatchParams};
use operator_kit::api::{Change, Target, is_not_found, modify};
use pgpool_api::{PetSet, names};
use serde_json::json;

use super::error::{ReconcileError, Result};
use super::run::Run;
use crate::plan;

impl Run<'_> {
    /// Set the PetSet's `spec.replicas`. Returns false when the PetSet does not exist.
    pub(super) async fn set_petset_replicas(&self, replicas: i32) -> Result<bool> {
        let name = names::petset(&self.pgpool);
        let found = modify(&self.petsets(), &name, Target::Object, |ps: &mut PetSet| {
            if ps.spec.replicas() == replicas {
                Change::Keep(())
            } else {
                ps.spec.replicas = Some(replicas);
                Change::Write(())
            }
        })
        .await
        .map_err(ReconcileError::from_modify(|| format!("PetSet {name}")))?;
        Ok(found.is_some())
    }

    /// Set the resources of the PetSet's `pgpool` container. Returns the resources it had
    /// (`None` inside when it had none), or `None` when the PetSet does not exist.
    pub(super) async fn set_petset_resources(
        &self,
        resources: &ResourceRequirements,
    ) -> Result<Option<Option<ResourceRequirements>>> {
        let name = names::petset(&self.pgpool);
        let found = modify(&self.petsets(), &name, Target::Object, |ps: &mut PetSet| {
            let Some(spec) = ps.spec.template.spec.as_mut() else {
                return Change::Keep(None);
            };
            let old = plan::spec_resources(spec).cloned();
            if plan::set_spec_resources(spec, resources) {
                Change::Write(old)
            } else {
                Change::Keep(old)
            }
        })
        .await
        .map_err(ReconcileError::from_modify(|| format!("PetSet {name}")))?;
        Ok(found)
    }

    /// Lower the Pgpool's PodDisruptionBudget to what `replicas` pods get from the provisioner,
    /// when it asks for more (see [`plan::lowered_budget`]). The provisioner renders the same
    /// budget again from `spec.replicas` once the Pgpool is resumed.
    pub(super) async fn lower_budget(&self, replicas: i32) -> Result<()> {
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let name = names::pdb(&self.pgpool);
        let Some(pdb) = api.get_opt(&name).await? else {
            return Ok(());
        };
        let Some(min) = plan::lowered_budget(&pdb, replicas) else {
            return Ok(());
        };
        let patch = json!({ "spec": { "minAvailable": min } });
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.event(
                    "UpdatePodDisruptionBudget",
                    &format!("PodDisruptionBudget {name}: minAvailable {min} for {replicas} pods"),
                );
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
