//! Step UpdateCredential (RotateAuth): point the Pgpool to the user's new auth Secret, or write
//! a new generated password into its auth Secret (the old one kept under KubeDB's `.prev`
//! keys); then wait for the provisioner to render `pcp.conf` with it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use operator_kit::api::{Change, Target, modify};
use pgpool_api::conditions::{self, ops};
use serde_json::json;

use super::config_objects::WAITING_FOR_RENDER;
use super::error::{ReconcileError, Result};
use super::run::{Flow, Run};
use crate::plan;

impl Run<'_> {
    /// The Secret name of `spec.authentication.secretRef`, if given.
    pub(super) fn new_auth_secret(&self) -> Option<String> {
        self.req
            .spec
            .authentication
            .as_ref()
            .and_then(|a| a.secret_ref.as_ref())
            .map(|r| r.name.clone())
    }

    /// Step UpdateCredential.
    pub(super) async fn step_update_credential(&mut self) -> Result<Flow> {
        let step = ops::UPDATE_CREDENTIAL;
        let msg = format!("rotating the pcp credentials of Pgpool {}", self.pgpool);
        let Some((pp, changed)) = self
            .begin_spec_change(step, "UpdatingCredential", &msg)
            .await?
        else {
            return self.fail_pgpool_gone().await;
        };
        if !changed {
            match self.new_auth_secret() {
                Some(name) => {
                    if self.previous().is_none() {
                        let undo = json!({ "spec": { "authSecret": pp.spec.auth_secret } });
                        self.store_previous(&json!({ "undo": undo })).await?;
                    }
                    let patch = json!({ "spec": { "authSecret": { "name": name } } });
                    if self.patch_pgpool(&patch).await?.is_none() {
                        return self.fail_pgpool_gone().await;
                    }
                }
                None => {
                    if !self.rotate_password(&pp.auth_secret_name()).await? {
                        let msg = format!(
                            "auth Secret {} of Pgpool {} not found",
                            pp.auth_secret_name(),
                            self.pgpool
                        );
                        return self.fail_step("AuthSecretNotFound", msg).await;
                    }
                }
            }
            let msg = format!(
                "changed the pcp credentials of Pgpool {}; waiting for the provisioner to \
                 render pcp.conf",
                self.pgpool
            );
            self.record(step, conditions::UNKNOWN, WAITING_FOR_RENDER, &msg, None)
                .await?;
        }
        let Some(pp) = self.fetch_pgpool().await? else {
            return self.fail_pgpool_gone().await;
        };
        let auth = self.fetch_secret(&pp.auth_secret_name()).await?;
        let Some((user, password)) = auth.as_ref().and_then(plan::credentials) else {
            let msg = format!(
                "auth Secret {} of Pgpool {} has no password",
                pp.auth_secret_name(),
                self.pgpool
            );
            return self.fail_step("AuthSecretInvalid", msg).await;
        };
        let generation = pp.metadata.generation.unwrap_or_default();
        let rendered = self.config_secret().await?.is_some_and(|s| {
            plan::rendered_since(&s, generation) && plan::pcp_rendered(&s, &user, &password)
        });
        if !rendered {
            return self.wait_for_render(step).await;
        }
        let msg = format!(
            "the provisioner rendered the new pcp credentials of Pgpool {} (auth Secret {})",
            self.pgpool,
            pp.auth_secret_name()
        );
        self.complete_named(step, &msg);
        Ok(Flow::Next)
    }

    /// Write a new generated password into auth Secret `name`, once per request (the Secret
    /// remembers the request that rotated it). Returns false when the Secret does not exist.
    async fn rotate_password(&self, name: &str) -> Result<bool> {
        let uid = self.req.metadata.uid.clone().unwrap_or_default();
        let password = pgpool_config::generate_pool_key();
        let found = modify(&self.secrets(), name, Target::Object, |s: &mut Secret| {
            if s.annotations().get(plan::ANNOTATION_ROTATED_BY) == Some(&uid) {
                return Change::Keep(());
            }
            let data: BTreeMap<String, ByteString> = plan::rotated_auth_data(s, &password)
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect();
            s.data = Some(data);
            s.string_data = None;
            s.annotations_mut()
                .insert(plan::ANNOTATION_ROTATED_BY.into(), uid.clone());
            Change::Write(())
        })
        .await
        .map_err(ReconcileError::from_modify(|| format!("Secret {name}")))?;
        Ok(found.is_some())
    }
}
