//! The rollback of the scaling types: HorizontalScaling puts the PetSet back on the Pgpool's
//! `spec.replicas` (the PetSet controller creates or removes the pods); VerticalScaling puts
//! the recorded resources back into the PetSet and restarts, one at a time, the pods that run
//! other resources (a pod that never got Ready is not Ready, so its eviction is allowed).

use kube::api::{DeleteParams, Preconditions};
use operator_kit::api::{is_conflict, is_not_found};
use pgpool_api::conditions::ops;
use pgpool_api::{OpsRequestType, names};

use super::cluster::Eviction;
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
            let Some(ps) = self.petsets().get_opt(&petset).await? else {
                return Ok(RollbackState::Finished(format!(
                    "PetSet {petset} no longer exists"
                )));
            };
            let replicas = ps.spec.replicas();
            let limit = self
                .timeout()
                .saturating_mul(u32::try_from(replicas).unwrap_or(1).saturating_add(1));
            let Some(left) = Self::remaining(rb, limit) else {
                return Ok(RollbackState::Finished(format!(
                    "put the previous resources back into PetSet {petset}, but not all pods ran \
                     them and were Ready within {limit:?}"
                )));
            };
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
                self.event(
                    "EvictPod",
                    &format!("rollback: evicting pod {name} to bring back its previous resources"),
                );
                match self.evict(&name, &uid).await? {
                    Eviction::Done => {}
                    Eviction::Refused(why) if plan::pod_ready(pod) => {
                        tracing::info!(pod = name, reason = %why, "rollback eviction refused; will retry");
                        return Ok(RollbackState::Wait(
                            std::time::Duration::from_secs(1).min(left),
                        ));
                    }
                    Eviction::Refused(_) => {
                        // A pod that is not Ready serves nothing: delete it.
                        let dp = DeleteParams {
                            preconditions: Some(Preconditions {
                                uid: Some(uid).filter(|u| !u.is_empty()),
                                resource_version: None,
                            }),
                            ..DeleteParams::default()
                        };
                        match self.pods().delete(&name, &dp).await {
                            Ok(_) => {}
                            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
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
