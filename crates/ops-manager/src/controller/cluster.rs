//! The objects a request acts on, read and written for the steps: the Pgpool (pause and
//! resume), the catalog, the PetSet's images, the pods (list, evict) and their budgets.

use std::collections::HashMap;

use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Resource, ResourceExt};
use operator_kit::api::{
    Change, Target, api_message, is_conflict, is_not_found, modify, status_code,
};
use pgpool_api::conditions::{self, NewCondition};
use pgpool_api::{PetSet, Pgpool, PgpoolVersion, names};
use serde_json::Value;

use super::error::{ReconcileError, Result};
use super::run::Run;
use crate::plan::{self, Images};

impl Run<'_> {
    /// Pgpools of the request's namespace.
    pub(super) fn pgpools(&self) -> Api<Pgpool> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    /// PetSets of the request's namespace.
    pub(super) fn petsets(&self) -> Api<PetSet> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    /// Pods of the request's namespace.
    pub(super) fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    /// The PgpoolVersion catalog (cluster-scoped).
    pub(super) fn versions(&self) -> Api<PgpoolVersion> {
        Api::all(self.ctx.client.clone())
    }

    /// The request's Pgpool, if it exists.
    pub(super) async fn fetch_pgpool(&self) -> Result<Option<Pgpool>> {
        Ok(self.pgpools().get_opt(&self.pgpool).await?)
    }

    /// Merge-patch the Pgpool; its generation afterwards, or `None` when it is gone.
    pub(super) async fn patch_pgpool(&self, patch: &Value) -> Result<Option<i64>> {
        match self
            .pgpools()
            .patch(&self.pgpool, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(pp) => Ok(Some(pp.meta().generation.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// PgpoolVersion `name`, if it exists (`None` for an empty name).
    pub(super) async fn fetch_version(&self, name: &str) -> Result<Option<PgpoolVersion>> {
        if name.is_empty() {
            return Ok(None);
        }
        Ok(self.versions().get_opt(name).await?)
    }

    /// The images of the target version, if it exists.
    pub(super) async fn target_images(&self) -> Result<Option<Images>> {
        let name = plan::target_version(&self.req).unwrap_or("");
        Ok(self.fetch_version(name).await?.map(|v| Images::of(&v)))
    }

    /// Ask for the pause: add `Paused=Unknown` to the Pgpool's status unless it is there.
    pub(super) async fn pause_pgpool(&self) -> Result<PauseState> {
        let request = &self.name;
        let state = modify(
            &self.pgpools(),
            &self.pgpool,
            Target::Status,
            |pp: &mut Pgpool| {
                let st = pp.status.get_or_insert_with(Default::default);
                match conditions::get(&st.conditions, conditions::pgpool::PAUSED) {
                    Some(c) if c.status == conditions::TRUE => {
                        return Change::Keep(PauseState::Acknowledged);
                    }
                    Some(c) if c.status == conditions::UNKNOWN => {
                        return Change::Keep(PauseState::Requested);
                    }
                    _ => {}
                }
                conditions::set(
                    &mut st.conditions,
                    NewCondition {
                        type_: conditions::pgpool::PAUSED,
                        status: conditions::UNKNOWN,
                        reason: conditions::pgpool::REASON_PAUSE_REQUESTED,
                        message: format!("paused for PgpoolOpsRequest {request}"),
                        observed_generation: pp.metadata.generation,
                    },
                    Utc::now(),
                );
                Change::Write(PauseState::Requested)
            },
        )
        .await
        .map_err(ReconcileError::from_modify(|| {
            format!("Pgpool {} status", self.pgpool)
        }))?;
        Ok(state.unwrap_or(PauseState::Gone))
    }

    /// Ask the provisioner, which holds the pause for this request, to render the children
    /// once from generation `generation` of the Pgpool (`Paused=Unknown`, reason
    /// `RenderRequested`). False when the Pgpool is gone or not paused.
    pub(super) async fn ask_render(&self, generation: i64) -> Result<bool> {
        let request = &self.name;
        let asked = modify(
            &self.pgpools(),
            &self.pgpool,
            Target::Status,
            |pp: &mut Pgpool| {
                let st = pp.status.get_or_insert_with(Default::default);
                if conditions::get(&st.conditions, conditions::pgpool::PAUSED).is_none() {
                    return Change::Keep(false);
                }
                conditions::set(
                    &mut st.conditions,
                    NewCondition {
                        type_: conditions::pgpool::PAUSED,
                        status: conditions::UNKNOWN,
                        reason: conditions::pgpool::REASON_RENDER_REQUESTED,
                        message: format!(
                            "paused for PgpoolOpsRequest {request}, which asks for a render of \
                             generation {generation}"
                        ),
                        observed_generation: Some(generation),
                    },
                    Utc::now(),
                );
                Change::Write(true)
            },
        )
        .await
        .map_err(ReconcileError::from_modify(|| {
            format!("Pgpool {} status", self.pgpool)
        }))?;
        Ok(asked.unwrap_or(false))
    }

    /// Remove `Paused` from the Pgpool's status (if the Pgpool and the condition exist).
    pub(super) async fn resume_pgpool(&self) -> Result<bool> {
        let resumed = modify(
            &self.pgpools(),
            &self.pgpool,
            Target::Status,
            |pp: &mut Pgpool| {
                let st = pp.status.get_or_insert_with(Default::default);
                if conditions::remove(&mut st.conditions, conditions::pgpool::PAUSED) {
                    Change::Write(true)
                } else {
                    Change::Keep(false)
                }
            },
        )
        .await
        .map_err(ReconcileError::from_modify(|| {
            format!("Pgpool {} status", self.pgpool)
        }))?;
        Ok(resumed.unwrap_or(false))
    }

    /// Set the images of the PetSet's pgpool, exporter and pgpool-init containers by GET,
    /// modify and replace (retrying conflicts, [`operator_kit::api::modify`]). Returns false when the PetSet does not exist.
    pub(super) async fn set_petset_images(&self, images: &Images) -> Result<bool> {
        let name = names::petset(&self.pgpool);
        let found = modify(&self.petsets(), &name, Target::Object, |ps: &mut PetSet| {
            let spec = ps.spec.template.spec.as_mut();
            if spec.is_some_and(|spec| plan::set_spec_images(spec, images)) {
                Change::Write(())
            } else {
                Change::Keep(())
            }
        })
        .await
        .map_err(ReconcileError::from_modify(|| format!("PetSet {name}")))?;
        Ok(found.is_some())
    }

    /// The Pgpool's pods by name.
    pub(super) async fn list_pods(&self) -> Result<HashMap<String, Pod>> {
        let lp = ListParams::default().labels(&names::selector_string(&self.pgpool));
        let list = self.pods().list(&lp).await?;
        Ok(list.items.into_iter().map(|p| (p.name_any(), p)).collect())
    }

    /// Evict pod `name` if it still has `uid`.
    pub(super) async fn evict(&self, name: &str, uid: &str) -> Result<Eviction> {
        let params = EvictParams {
            delete_options: Some(DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_string()).filter(|u| !u.is_empty()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            }),
            ..EvictParams::default()
        };
        match self.pods().evict(name, &params).await {
            Ok(_) => Ok(Eviction::Done),
            // Gone already, or replaced by a pod with another UID.
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(Eviction::Done),
            // 429: a PodDisruptionBudget says no for now. Other API answers (500 for a pod
            // with two budgets, 403 without RBAC) are retried the same way until the step's
            // timeout, which then fails the request with the API's message.
            Err(e) if status_code(&e).is_some() => Ok(Eviction::Refused(api_message(&e))),
            Err(e) => Err(e.into()),
        }
    }

    /// The PodDisruptionBudget covering `pod`, if one can be read (a failure to read only
    /// makes the refusal's message shorter).
    pub(super) async fn budget_of(&self, pod: &Pod) -> Option<PodDisruptionBudget> {
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        match api.list(&ListParams::default()).await {
            Ok(list) => plan::budget_of(pod, &list.items).cloned(),
            Err(error) => {
                tracing::debug!(%error, "cannot read PodDisruptionBudgets");
                None
            }
        }
    }
}

/// Where the pause handshake stands.
pub(super) enum PauseState {
    /// The Pgpool does not exist.
    Gone,
    /// Asked for (`Paused=Unknown`); the provisioner has not answered yet.
    Requested,
    /// The provisioner paused the Pgpool (`Paused=True`).
    Acknowledged,
}

/// The outcome of one eviction.
pub(super) enum Eviction {
    /// Evicted, or the pod (with that UID) is gone already.
    Done,
    /// The API server said no (usually a PodDisruptionBudget); its message.
    Refused(String),
}
