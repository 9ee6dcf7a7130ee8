//! The objects Reconfigure and RotateAuth read and write besides those of [`super::cluster`]:
//! Secrets, the request's record of what it changed, the Pgpool spec (merge patches) and the
//! config hash of the PetSet's pod template.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use operator_kit::api::{Change, Target, modify, status_code};
use pgpool_api::conditions;
use pgpool_api::{PetSet, Pgpool, names};
use serde_json::{Value, json};

use super::error::{ReconcileError, Result};
use super::run::Run;
use crate::plan;

/// How often a step looks again at the config Secret while the provisioner renders (Secrets
/// are not watched by the ops-manager).
pub(super) const RENDER_POLL: Duration = Duration::from_secs(1);

/// Reason of a spec-changing step's condition once the spec is changed and the render is
/// awaited.
pub(super) const WAITING_FOR_RENDER: &str = "WaitingForRender";

impl Run<'_> {
    /// Secrets of the request's namespace.
    pub(super) fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    /// Secret `name`, if it exists.
    pub(super) async fn fetch_secret(&self, name: &str) -> Result<Option<Secret>> {
        Ok(self.secrets().get_opt(name).await?)
    }

    /// The Pgpool's rendered config Secret, if it exists.
    pub(super) async fn config_secret(&self) -> Result<Option<Secret>> {
        self.fetch_secret(&names::config_secret(&self.pgpool)).await
    }

    /// What this request recorded (on itself) about the change it made: `{"undo": ...}`.
    pub(super) fn previous(&self) -> Option<Value> {
        self.req
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(plan::ANNOTATION_PREVIOUS))
            .and_then(|v| serde_json::from_str(v).ok())
    }

    /// Record what the change replaces, before making it, on the request's metadata (the
    /// status keeps what was set locally).
    pub(super) async fn store_previous(&mut self, value: &Value) -> Result<()> {
        let patch = json!({ "metadata": { "annotations": {
            plan::ANNOTATION_PREVIOUS: value.to_string(),
        }}});
        let written = self
            .reqs
            .patch_metadata(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.req.metadata = written.metadata;
        Ok(())
    }

    /// The start of a step that changes the Pgpool's spec and waits for the provisioner to
    /// render it (UpdateConfiguration, UpdateCredential): records condition `step` as Unknown
    /// with `reason` the first time, then reads the Pgpool. `None` when the Pgpool is gone;
    /// else the Pgpool and whether the spec was changed already (the condition says
    /// [`WAITING_FOR_RENDER`]).
    pub(super) async fn begin_spec_change(
        &mut self,
        step: &str,
        reason: &str,
        message: &str,
    ) -> Result<Option<(Pgpool, bool)>> {
        if self.cond(step).is_none() {
            self.record(step, conditions::UNKNOWN, reason, message, Some(step))
                .await?;
        }
        let Some(pp) = self.fetch_pgpool().await? else {
            return Ok(None);
        };
        let changed = self
            .cond(step)
            .is_some_and(|c| c.reason == WAITING_FOR_RENDER);
        Ok(Some((pp, changed)))
    }

    /// Create an Opaque Secret owned by the Pgpool with `pgpool.conf` = `text`, unless it
    /// exists already (a restarted request wrote it before).
    pub(super) async fn create_config_source(
        &self,
        pp: &Pgpool,
        name: &str,
        text: &str,
    ) -> Result<()> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.ns.clone()),
                labels: Some(names::labels(&self.pgpool)),
                owner_references: pp.controller_owner_ref(&()).map(|mut o| {
                    o.controller = Some(false);
                    vec![o]
                }),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(
                [(
                    pgpool_config::KEY_PGPOOL_CONF.to_string(),
                    ByteString(text.as_bytes().to_vec()),
                )]
                .into(),
            ),
            ..Secret::default()
        };
        match self.secrets().create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Set the config hash of the PetSet's pod template. Returns false when the PetSet does
    /// not exist.
    pub(super) async fn set_petset_config_hash(&self, hash: &str) -> Result<bool> {
        let name = names::petset(&self.pgpool);
        let found = modify(&self.petsets(), &name, Target::Object, |ps: &mut PetSet| {
            let meta = ps
                .spec
                .template
                .metadata
                .get_or_insert_with(Default::default);
            let annotations = meta.annotations.get_or_insert_with(Default::default);
            if annotations
                .get(names::ANNOTATION_CONFIG_HASH)
                .map(String::as_str)
                == Some(hash)
            {
                return Change::Keep(());
            }
            annotations.insert(names::ANNOTATION_CONFIG_HASH.into(), hash.to_string());
            Change::Write(())
        })
        .await
        .map_err(ReconcileError::from_modify(|| format!("PetSet {name}")))?;
        Ok(found.is_some())
    }
}

/// The config hash a pod was created with.
pub(super) fn pod_config_hash(pod: &k8s_openapi::api::core::v1::Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ANNOTATION_CONFIG_HASH))
        .map(String::as_str)
}
