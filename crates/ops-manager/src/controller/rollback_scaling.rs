//! The rollback of the scaling types: HorizontalScaling puts the PetSet back on the Pgpool's
//! `spec.replicas` (the PetSet controller creates or removes the pods); VerticalScaling puts
//! the recorded resources back into the PetSet and restarts, one at a time, the pods that run
//! other resources (a pod that never got Ready is not Ready, so its eviction is allowed).

use pgpool_api::conditions::ops;
use pgpool_api::{OpsRequestType, names};

use super::error::Result;
use super::rollback::RollbackState;
use super::run::Run;
use crate::plan;

impl Run<'_> {
    /// Undo a scaling request; `None` for the other types.
    pub(super) async fn rollback_scaling(
        &mut self,
        rb: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
    ) -> Result<Option<RollbackState>> {
        match self.t {
            OpsRequestType::HorizontalScaling => Ok(Some(self.rollback_replicas().await?)),
            OpsRequestType::VerticalScaling => Ok(Some(self.rollback_resources(rb).await?)),
            _ => Ok(None),
        }
    }

    async fn rollback_replicas(&mut self) -> Result<RollbackState> {
        let Some(pp) = self.fetch_pgpool().await? else {
            return Ok(RollbackState::Finished(format!(
                "Pgpool {} no longer exists",
                self.pgpool
            )));
        };
        let replicas = pp.spec.replicas();
        let petset = names::petset(&self.pgpool);
        Ok(RollbackState::Finished(
            if self.set_petset_replicas(replicas).await? {
                format!("PetSet {petset} is back to {replicas} replicas")
            } else {
                format!("PetSet {petset} no longer exists")
            },
        ))
    }

    async fn rollback_resources(
        &mut self,
        rb: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
    ) -> Result<RollbackState> {
        let petset = names::petset(&self.pgpool);
        let Some(old) = self
            .cond(ops::UPDATE_PETSETS)
            .and_then(|c| plan::recorded_resources(&c.message))
        else {
            return Ok(RollbackState::Finished(
                "the PetSet's resources were not changed".to_string(),
            ));
        };
        if self.set_petset_resources(&old).await?.is_none() {
            return Ok(RollbackState::Finished(format!(
                "PetSet {petset} no longer exists"
            )));
        }
        loop {
            let gave_up = |limit| {
                format!(
                    "put the previous resources back into PetSet {petset}, but not all pods ran \
                     them and were Ready within {limit:?}"
                )
            };
            let (ps, left) = match self.rollback_window(rb, gave_up).await? {
                Ok(window) => window,
                Err(state) => return Ok(state),
            };
            let replicas = ps.spec.replicas();
            let pods = self.list_pods().await?;
            let mut acted = false;
            for i in 0..replicas {
                let name = names::pod(&petset, i);
                let Some(pod) = pods.get(&name) else {
                    return Ok(RollbackState::Wait(self.wait_dur(left)));
                };
                if plan::pod_terminating(pod) {
                    return Ok(RollbackState::Wait(self.wait_dur(left)));
                }
                if plan::pod_on_resources(pod, &old) {
                    if plan::pod_ready(pod) {
                        continue;
                    }
                    return Ok(RollbackState::Wait(self.wait_dur(left)));
                }
                if !plan::petset_observed(&ps) {
                    return Ok(RollbackState::Wait(self.wait_dur(left)));
                }
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let note = "to bring back its previous resources";
                let ready = plan::pod_ready(pod);
                if let Some(d) = self
                    .evict_for_rollback(&name, &uid, ready, note, left)
                    .await?
                {
                    return Ok(RollbackState::Wait(d));
                }
                acted = true;
                break;
            }
            if !acted {
                return Ok(RollbackState::Finished(format!(
                    "rolled back: PetSet {petset} and its pods have the previous resources again"
                )));
            }
        }
    }
}
