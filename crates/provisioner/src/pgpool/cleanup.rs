//! The end of a Pgpool's children: `spec.halted` ([`halt`]), and the deletion of the Pgpool
//! under its finalizer and deletion policy ([`finalize`]).

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use operator_kit::api::is_not_found;
use operator_kit::finalizers;
use pgpool_api::pgpool::DeletionPolicy;
use pgpool_api::{Pgpool, names};
use serde_json::json;
use tracing::info;

use super::apply::{Apis, delete_owned, owned_by};
use super::context::Context;
use super::dereference::{self, Children};
use super::error::ReconcileError;
use super::validate::is_ours;

/// Adds the provisioner's finalizer to `p`, with its cached resourceVersion (a 409 when a
/// newer version exists: [`ReconcileError::Conflict`]).
pub async fn add_finalizer(api: &Api<Pgpool>, p: &Pgpool) -> Result<(), ReconcileError> {
    finalizers::add(api, p, names::FINALIZER)
        .await
        .map_err(ReconcileError::from_write)?;
    Ok(())
}

/// The deletion of `pgpool` (which carries the finalizer): nothing with `DoNotTerminate`
/// (a Warning event, once); otherwise [`cleanup`] per the policy, then the finalizer goes.
pub async fn finalize(
    ctx: &Context,
    api: &Api<Pgpool>,
    pgpool: &Pgpool,
) -> Result<(), ReconcileError> {
    let uid = pgpool.uid().unwrap_or_default();
    let policy = pgpool.spec.deletion_policy();
    if policy == DeletionPolicy::DoNotTerminate {
        if ctx.first_deletion_refusal(&uid) {
            ctx.recorder
                .warning(
                    pgpool,
                    "DeletionRefused",
                    "deletionPolicy is DoNotTerminate: nothing is deleted and the Pgpool stays Terminating; set spec.deletionPolicy to Delete, Halt or WipeOut to let it go",
                )
                .await;
        }
        return Ok(());
    }
    cleanup(ctx, pgpool, policy == DeletionPolicy::WipeOut).await?;
    finalizers::remove(api, pgpool, names::FINALIZER)
        .await
        .map_err(ReconcileError::from_write)?;
    ctx.forget(&uid);
    info!(pgpool = %pgpool.name_any(), namespace = %pgpool.namespace().unwrap_or_default(), ?policy, "Pgpool deleted");
    Ok(())
}

/// The children that exist now (read from the API server), with their APIs.
async fn existing_children(
    ctx: &Context,
    pgpool: &Pgpool,
) -> Result<(Children, Apis, Option<Api<DynamicObject>>), ReconcileError> {
    let ns = pgpool.namespace().unwrap_or_default();
    let src = ctx.sources();
    let api = ctx.caches.discovery.api(&ctx.client).await?;
    let (sm_api, _, sm) = dereference::read_service_monitor(&ctx.client, pgpool, api).await?;
    let children = dereference::children(&src, pgpool, |_, _| false, sm).await?;
    let sm = sm_api.map(|ar| Api::namespaced_with(ctx.client.clone(), &ns, &ar));
    Ok((children, Apis::new(&ctx.client, &ns), sm))
}

/// `spec.halted`: remove the PetSet (and so the pods), the Services, the PDB and the
/// ServiceMonitor; keep the Secrets.
pub async fn halt(ctx: &Context, pgpool: &Pgpool) -> Result<(), ReconcileError> {
    let uid = pgpool.uid().unwrap_or_default();
    let (c, apis, sm) = existing_children(ctx, pgpool).await?;
    delete_owned(&apis.petsets, c.petset.as_ref(), &uid).await?;
    delete_owned(&apis.pdbs, c.pdb.as_ref(), &uid).await?;
    for s in [&c.primary_service, &c.pods_service, &c.stats_service] {
        delete_owned(&apis.services, s.as_ref(), &uid).await?;
    }
    if let Some(sm) = sm {
        delete_owned(&sm, c.service_monitor.as_ref(), &uid).await?;
    }
    Ok(())
}

/// Deletion of the Pgpool (Delete, Halt, WipeOut): everything `halt` removes plus the config
/// Secret; the auth Secret goes with WipeOut, otherwise it loses its owner reference so that
/// a re-created Pgpool finds the same credentials. A user's Secret is never touched.
async fn cleanup(ctx: &Context, pgpool: &Pgpool, wipe_out: bool) -> Result<(), ReconcileError> {
    let uid = pgpool.uid().unwrap_or_default();
    halt(ctx, pgpool).await?;
    let (c, apis, _) = existing_children(ctx, pgpool).await?;
    delete_owned(&apis.secrets, c.config_secret.as_ref(), &uid).await?;
    let Some(auth) = &c.auth_secret else {
        return Ok(());
    };
    if pgpool.spec.auth_externally_managed() || !is_ours(auth, &pgpool.name_any()) {
        return Ok(());
    }
    if wipe_out {
        if auth.metadata.deletion_timestamp.is_none() {
            match apis
                .secrets
                .delete(&auth.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    } else if owned_by(&auth.metadata, &uid) {
        let kept: Vec<_> = auth
            .owner_references()
            .iter()
            .filter(|o| o.uid != uid)
            .cloned()
            .collect();
        let patch = json!({"metadata": {
            "ownerReferences": kept,
            "resourceVersion": auth.resource_version(),
        }});
        apis.secrets
            .patch(
                &auth.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(())
}
