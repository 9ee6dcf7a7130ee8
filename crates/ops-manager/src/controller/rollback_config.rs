//! Rollback of Reconfigure and RotateAuth: put back the Pgpool spec fields (or the auth
//! Secret's password) the request changed, wait for the provisioner to render them, put the
//! rendered hash back into the PetSet's template, and restart the pods that run another
//! configuration, one at a time.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use operator_kit::api::{Change, Target, modify};
use pgpool_api::{OpsRequestType, names};

use super::config_objects::{RENDER_POLL, pod_config_hash};
use super::error::{ReconcileError, Result};
use super::rollback::RollbackState;
use super::run::Run;
use crate::plan;

impl Run<'_> {
    /// One pass of the configuration rollback.
    pub(super) async fn rollback_config(&mut self, rb: &Condition) -> Result<RollbackState> {
        let Some(pp) = self.fetch_pgpool().await? else {
            return Ok(RollbackState::Finished(format!(
                "Pgpool {} no longer exists",
                self.pgpool
            )));
        };
        if let Some(undo) = self.previous().and_then(|p| p.get("undo").cloned())
            && self.patch_pgpool(&undo).await?.is_none()
        {
            return Ok(RollbackState::Finished(format!(
                "Pgpool {} no longer exists",
                self.pgpool
            )));
        }
        if self.t == OpsRequestType::RotateAuth && self.new_auth_secret().is_none() {
            self.restore_password(&pp.auth_secret_name()).await?;
        }
        let petset = names::petset(&self.pgpool);
        let gave_up = |limit| {
            format!(
                "put the previous configuration back, but not all pods ran it and were Ready \
                 within {limit:?}"
            )
        };
        let (ps, left) = match self.rollback_window(rb, gave_up).await? {
            Ok(window) => window,
            Err(state) => return Ok(state),
        };
        let replicas = ps.spec.replicas();
        let Some(pp) = self.fetch_pgpool().await? else {
            return Ok(RollbackState::Finished(format!(
                "Pgpool {} no longer exists",
                self.pgpool
            )));
        };
        let generation = pp.metadata.generation.unwrap_or_default();
        // a password put back changes no generation: wait for pcp.conf to hold it
        let credentials = match self.t {
            OpsRequestType::RotateAuth => self
                .fetch_secret(&pp.auth_secret_name())
                .await?
                .as_ref()
                .and_then(plan::credentials),
            _ => None,
        };
        let secret = self.config_secret().await?;
        let hash = secret
            .as_ref()
            .filter(|s| plan::rendered_since(s, generation))
            .filter(|s| {
                credentials
                    .as_ref()
                    .is_none_or(|(user, password)| plan::pcp_rendered(s, user, password))
            })
            .and_then(plan::rendered_hash);
        let Some(hash) = hash else {
            return Ok(RollbackState::Wait(left.min(RENDER_POLL)));
        };
        if !self.set_petset_config_hash(&hash).await? {
            return Ok(RollbackState::Finished(format!(
                "PetSet {petset} no longer exists"
            )));
        }
        let pods = self.list_pods().await?;
        for i in 0..replicas {
            let pod_name = names::pod(&petset, i);
            let Some(pod) = pods.get(&pod_name) else {
                return Ok(RollbackState::Wait(self.wait_dur(left)));
            };
            if plan::pod_terminating(pod) {
                return Ok(RollbackState::Wait(self.wait_dur(left)));
            }
            if pod_config_hash(pod) != Some(hash.as_str()) {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let note = "to bring back the previous configuration";
                let ready = plan::pod_ready(pod);
                let wait = self
                    .evict_for_rollback(&pod_name, &uid, ready, note, left)
                    .await?;
                return Ok(RollbackState::Wait(
                    wait.unwrap_or(Duration::from_millis(50)),
                ));
            }
            if !plan::pod_ready(pod) {
                return Ok(RollbackState::Wait(self.wait_dur(left)));
            }
        }
        Ok(RollbackState::Finished(
            "rolled back: the previous configuration is rendered and every pod runs it".into(),
        ))
    }

    /// Put the password this request replaced back into auth Secret `name`.
    async fn restore_password(&self, name: &str) -> Result<()> {
        let uid = self.req.metadata.uid.clone().unwrap_or_default();
        modify(&self.secrets(), name, Target::Object, |s: &mut Secret| {
            if s.annotations().get(plan::ANNOTATION_ROTATED_BY) != Some(&uid) {
                return Change::Keep(());
            }
            let data = s.data.get_or_insert_with(Default::default);
            let Some(old) = data.remove(plan::KEY_PREVIOUS_PASSWORD) else {
                return Change::Keep(());
            };
            if let Some(user) = data.remove(plan::KEY_PREVIOUS_USERNAME) {
                data.insert("username".into(), user);
            }
            data.insert("password".into(), ByteString(old.0));
            s.annotations_mut().remove(plan::ANNOTATION_ROTATED_BY);
            Change::Write(())
        })
        .await
        .map_err(ReconcileError::from_modify(|| format!("Secret {name}")))?;
        Ok(())
    }
}
