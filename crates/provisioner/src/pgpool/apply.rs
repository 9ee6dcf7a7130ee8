//! The apply step: server-side apply of the children that differ from the desired set,
//! deletion of those no longer wanted. Writes are skipped when the observed object already
//! holds everything desired (see [`super::diff`]).

use operator_kit::api::is_not_found;
use std::fmt::Debug;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use pgpool_api::{PetSet, Pgpool, names};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::build::Desired;
use super::context::Context;
use super::dereference::Observed;
use super::diff::{is_subset, stamp_hash};
use super::error::ReconcileError;
use super::fast_path::{Fingerprints, observed_fingerprints};
use super::index::{Kind, fingerprint_of};
use super::validate::{AuthPlan, Plan};

/// Field manager of every server-side apply of the provisioner.
pub const FIELD_MANAGER: &str = "pgpool-provisioner";

/// Server-side applies `desired` unless `observed` already has everything it says.
/// Returns the object written, if a write was made.
pub(super) async fn ensure<K>(
    api: &Api<K>,
    desired: &K,
    observed: Option<&K>,
) -> Result<Option<K>, ReconcileError>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let mut value = serde_json::to_value(desired)?;
    stamp_hash(&mut value);
    if let Some(o) = observed {
        if o.meta().deletion_timestamp.is_some() {
            // wait until it is gone; its deletion triggers the next reconcile
            return Ok(None);
        }
        if is_subset(&value, &serde_json::to_value(o)?) {
            return Ok(None);
        }
    }
    let name = desired.meta().name.clone().unwrap_or_default();
    let written = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&value),
        )
        .await?;
    Ok(Some(written))
}

/// Whether `meta` has an owner reference to `uid`.
pub(super) fn owned_by(meta: &kube::core::ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.uid == uid)
}

/// Deletes `observed` when it exists, is not being deleted already and belongs to `uid`.
pub(super) async fn delete_owned<K>(
    api: &Api<K>,
    observed: Option<&K>,
    uid: &str,
) -> Result<bool, ReconcileError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let Some(o) = observed else { return Ok(false) };
    if o.meta().deletion_timestamp.is_some() || !owned_by(o.meta(), uid) {
        return Ok(false);
    }
    match api.delete(&o.name_any(), &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The APIs of the children's kinds in one namespace.
pub(super) struct Apis {
    pub(super) secrets: Api<Secret>,
    pub(super) services: Api<Service>,
    pub(super) petsets: Api<PetSet>,
    pub(super) pdbs: Api<PodDisruptionBudget>,
}

impl Apis {
    /// The APIs in namespace `ns`.
    pub(super) fn new(client: &Client, ns: &str) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), ns),
            services: Api::namespaced(client.clone(), ns),
            petsets: Api::namespaced(client.clone(), ns),
            pdbs: Api::namespaced(client.clone(), ns),
        }
    }
}

/// Applies the children that differ and deletes those no longer wanted. Returns the number
/// of writes and the fingerprints of the children as they are now.
pub async fn apply(
    ctx: &Context,
    pgpool: &Pgpool,
    plan: &Plan,
    desired: &Desired,
    observed: &Observed,
) -> Result<(usize, Fingerprints), ReconcileError> {
    let apis = Apis::new(&ctx.client, &plan.namespace);
    let uid = plan.owner.uid.as_str();
    let c = &observed.children;
    let mut after = observed_fingerprints(observed);
    let mut writes = 0usize;
    // records a write: the object written, or `None` for a deletion of `name`
    let mut wrote = |kind: Kind, name: String, obj: Option<&kube::core::ObjectMeta>| {
        writes += 1;
        after.insert((kind, name), obj.map(|m| fingerprint_of(kind, m)));
    };

    if let Some(auth) = &desired.auth_secret {
        match &plan.auth {
            AuthPlan::Managed { exists: false, .. } => {
                // create, never overwrite: a Secret that appeared meanwhile keeps its password
                let mut value = serde_json::to_value(auth)?;
                stamp_hash(&mut value);
                let secret: Secret = serde_json::from_value(value)?;
                let created = apis
                    .secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .map_err(ReconcileError::from_write)?;
                ctx.recorder
                    .normal(
                        pgpool,
                        "AuthSecretCreated",
                        &format!(
                            "created auth Secret {} with a generated pcp password",
                            plan.auth.name()
                        ),
                    )
                    .await;
                wrote(Kind::Secret, created.name_any(), Some(created.meta()));
            }
            _ => {
                if let Some(w) = ensure(&apis.secrets, auth, c.auth_secret.as_ref()).await? {
                    wrote(Kind::Secret, w.name_any(), Some(w.meta()));
                }
            }
        }
    }
    if let Some(w) = ensure(
        &apis.secrets,
        &desired.config_secret,
        c.config_secret.as_ref(),
    )
    .await?
    {
        wrote(Kind::Secret, w.name_any(), Some(w.meta()));
    }
    for (want, have) in [
        (&desired.primary_service, c.primary_service.as_ref()),
        (&desired.pods_service, c.pods_service.as_ref()),
    ] {
        if let Some(w) = ensure(&apis.services, want, have).await? {
            wrote(Kind::Service, w.name_any(), Some(w.meta()));
        }
    }
    match &desired.stats_service {
        Some(s) => {
            if let Some(w) = ensure(&apis.services, s, c.stats_service.as_ref()).await? {
                wrote(Kind::Service, w.name_any(), Some(w.meta()));
            }
        }
        None => {
            if delete_owned(&apis.services, c.stats_service.as_ref(), uid).await? {
                wrote(Kind::Service, names::stats_service(&plan.name), None);
            }
        }
    }
    if let Some(w) = ensure(&apis.petsets, &desired.petset, c.petset.as_ref()).await? {
        wrote(Kind::PetSet, w.name_any(), Some(w.meta()));
    }
    match &desired.pdb {
        Some(p) => {
            if let Some(w) = ensure(&apis.pdbs, p, c.pdb.as_ref()).await? {
                wrote(Kind::Pdb, w.name_any(), Some(w.meta()));
            }
        }
        None => {
            if delete_owned(&apis.pdbs, c.pdb.as_ref(), uid).await? {
                wrote(Kind::Pdb, names::pdb(&plan.name), None);
            }
        }
    }
    if let Some(ar) = &observed.service_monitor_api {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &plan.namespace, ar);
        match &desired.service_monitor {
            Some(sm) => {
                if let Some(w) = ensure(&api, sm, c.service_monitor.as_ref()).await? {
                    wrote(Kind::ServiceMonitor, w.name_any(), Some(w.meta()));
                }
            }
            None => {
                if delete_owned(&api, c.service_monitor.as_ref(), uid).await? {
                    wrote(Kind::ServiceMonitor, names::stats_service(&plan.name), None);
                }
            }
        }
    }
    Ok((writes, after))
}
