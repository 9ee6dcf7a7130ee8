//! Carrying out a [`Plan`]: the writes of one step, each recorded in the expectations before
//! it is made, and the events that report them.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt as _};
use operator_kit::EventType;
use operator_kit::api::{is_conflict, is_not_found};
use pgpool_api::PetSet;

use crate::cache::PetSetLite;
use crate::config::FIELD_MANAGER;
use crate::context::{Context, key_of};
use crate::error::Error;
use crate::plan::{DeleteReason, Plan, PodAction};
use crate::{pods, revision};

/// Retry delay after a revision name collision (the status write triggers one anyway).
const COLLISION_RETRY: Duration = Duration::from_secs(1);

/// Create options with this controller's field manager.
fn post_params() -> PostParams {
    PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_string()),
    }
}

/// Patch options with this controller's field manager.
fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Look again when a pod becomes available; otherwise when something changes (or the
/// resync comes round, see [`operator_kit::cache::resync`]).
pub(crate) fn next_action(plan: &Plan) -> Action {
    match plan.requeue_after {
        // A little past the moment, so the pod is surely available by then.
        Some(d) => Action::requeue(d + Duration::from_millis(100)),
        None => Action::await_change(),
    }
}

/// Writes what `plan` says for `ps`, recording each write in the expectations first.
/// `cached` is the cache's copy (its version is what a status write is remembered against).
pub(crate) async fn act(
    ps: &PetSet,
    cached: &PetSetLite,
    plan: Plan,
    ctx: &Context,
) -> Result<Action, Error> {
    let ns = ps.metadata.namespace.clone().unwrap_or_default();
    let name = ps.name_any();
    let key = key_of(&ps.metadata);
    let status_changed =
        plan.status_changed && !ctx.expectations().status_written(&key, &plan.status);
    if plan.revisions.create.is_none()
        && plan.revisions.renumber.is_none()
        && plan.actions.is_empty()
        && !status_changed
        && plan.history_deletes.is_empty()
    {
        return Ok(next_action(&plan));
    }
    tracing::debug!(
        petset = %key,
        actions = plan.actions.len(),
        status_changed,
        update_revision = %plan.revisions.update_name,
        "PetSet step"
    );
    let client = ctx.client.clone();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let ps_api: Api<PetSet> = Api::namespaced(client, &ns);

    // 1. The update revision.
    if let Some(created) = &plan.revisions.create {
        let rev_name = created.name_any();
        ctx.expectations()
            .expect_revision_created(&key, &rev_name, Instant::now());
        match rev_api.create(&post_params(), created).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {
                ctx.expectations().forget_revision_created(&key, &rev_name);
                let existing = rev_api
                    .get_opt(&rev_name)
                    .await
                    .map_err(Error::kube(format!("get revision {ns}/{rev_name}")))?;
                let ours = existing.as_ref().is_some_and(|r| {
                    ps.metadata
                        .uid
                        .as_deref()
                        .is_some_and(|uid| pods::is_controlled_by(&r.metadata, uid))
                        && revision::stored_canonical(r)
                            == revision::template_canonical(&ps.spec.template).ok()
                });
                if !ours {
                    // Another object holds the name: hash again with the next counter.
                    let count = plan.revisions.collision_count.saturating_add(1);
                    tracing::info!(petset = %key, revision = %rev_name, count, "revision name collision");
                    ps_api
                        .patch_status(
                            &name,
                            &patch_params(),
                            &Patch::Merge(serde_json::json!({"status": {"collisionCount": count}})),
                        )
                        .await
                        .map_err(Error::kube(format!("patch status of PetSet {ns}/{name}")))?;
                    return Ok(Action::requeue(COLLISION_RETRY));
                }
            }
            Err(e) => {
                ctx.expectations().forget_revision_created(&key, &rev_name);
                return Err(Error::kube(format!("create revision {ns}/{rev_name}"))(e));
            }
        }
    }
    // A failed renumbering only leaves the history order stale: pods are planned from the
    // template, not from revision numbers, so they go on and the error comes back at the end.
    let mut deferred = None;
    if let Some((rev_name, number)) = &plan.revisions.renumber
        && let Err(e) = renumber_revision(&rev_api, ctx, &key, &ns, rev_name, *number).await
    {
        let msg = format!("renumber ControllerRevision {rev_name} of PetSet {name} failed: {e}");
        ctx.event(ps, EventType::Warning, "FailedRenumberRevision", &msg)
            .await;
        deferred = Some(e);
    }

    // 2. Pods (claims before their pod).
    for action in &plan.actions {
        let pod_name = action.pod_name().to_string();
        match action {
            PodAction::Create { pod, claims } => {
                for claim in claims {
                    ensure_claim(&claim_api, claim).await?;
                }
                ctx.expectations()
                    .expect_pod_created(&key, &pod_name, Instant::now());
                match pod_api.create(&post_params(), pod).await {
                    Ok(_) => {
                        let msg = format!("create Pod {pod_name} in PetSet {name} successful");
                        ctx.event(ps, EventType::Normal, "SuccessfulCreate", &msg)
                            .await;
                    }
                    Err(e) if is_conflict(&e) => {
                        ctx.expectations().forget_pod_created(&key, &pod_name);
                        return Err(Error::PodNameTaken(format!("{ns}/{pod_name}")));
                    }
                    Err(e) => {
                        ctx.expectations().forget_pod_created(&key, &pod_name);
                        let msg = format!("create Pod {pod_name} in PetSet {name} failed: {e}");
                        ctx.event(ps, EventType::Warning, "FailedCreate", &msg)
                            .await;
                        return Err(Error::kube(format!("create pod {ns}/{pod_name}"))(e));
                    }
                }
            }
            PodAction::Delete { uid, reason, .. } => {
                if let Some(uid) = uid {
                    ctx.expectations()
                        .expect_pod_deleted(&key, uid, Instant::now());
                }
                let forget = || {
                    if let Some(uid) = uid {
                        ctx.expectations().forget_pod_deleted(&key, uid);
                    }
                };
                let dp = DeleteParams {
                    preconditions: uid.as_ref().map(|uid| Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match pod_api.delete(&pod_name, &dp).await {
                    Ok(_) => {
                        let msg = format!(
                            "delete Pod {pod_name} in PetSet {name} successful ({})",
                            reason.as_str()
                        );
                        ctx.event(ps, EventType::Normal, "SuccessfulDelete", &msg)
                            .await;
                        if *reason == DeleteReason::Terminal {
                            tracing::info!(pod = %format!("{ns}/{pod_name}"), "deleted pod in a terminal phase; it will be created again");
                        }
                    }
                    // Gone already, or replaced by a pod with another uid.
                    Err(e) if is_not_found(&e) || is_conflict(&e) => forget(),
                    Err(e) => {
                        forget();
                        let msg = format!("delete Pod {pod_name} in PetSet {name} failed: {e}");
                        ctx.event(ps, EventType::Warning, "FailedDelete", &msg)
                            .await;
                        return Err(Error::kube(format!("delete pod {ns}/{pod_name}"))(e));
                    }
                }
            }
        }
    }

    // 3. Status, through the status subresource, only when it changed.
    if status_changed {
        ctx.expectations().expect_status(
            &key,
            plan.status.clone(),
            cached.metadata.resource_version.clone(),
            Instant::now(),
        );
        if let Err(e) = ps_api
            .patch_status(
                &name,
                &patch_params(),
                &Patch::Merge(serde_json::json!({ "status": plan.status })),
            )
            .await
        {
            ctx.expectations().forget_status(&key);
            return Err(Error::kube(format!("patch status of PetSet {ns}/{name}"))(
                e,
            ));
        }
    }

    // 4. History beyond the limit.
    for rev_name in &plan.history_deletes {
        ctx.expectations()
            .expect_revision_deleted(&key, rev_name, Instant::now());
        match rev_api.delete(rev_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                ctx.expectations().forget_revision_deleted(&key, rev_name);
            }
            Err(e) => {
                ctx.expectations().forget_revision_deleted(&key, rev_name);
                return Err(Error::kube(format!("delete revision {ns}/{rev_name}"))(e));
            }
        }
    }
    match deferred {
        Some(e) => Err(e),
        None => Ok(next_action(&plan)),
    }
}

/// Makes the existing revision `rev_name` (equal to the PetSet's template, a roll-back) the
/// newest one by deleting it and creating it again with revision number `number`.
///
/// A ControllerRevision's `data` is immutable, and a real API server compares it byte for byte
/// after applying a patch to its own JSON encoding of the object: a revision whose stored data
/// is not exactly what Go's encoder writes (compact, with `&`, `<`, `>` escaped) refuses every
/// patch, even one of `revision` alone (seen on kube-apiserver 1.36 with `&&` in a container
/// command). Re-creating it under the same name keeps the pods' `controller-revision-hash`
/// labels valid and needs no byte-exact round trip of `data`.
pub(crate) async fn renumber_revision(
    api: &Api<ControllerRevision>,
    ctx: &Context,
    key: &str,
    ns: &str,
    rev_name: &str,
    number: i64,
) -> Result<(), Error> {
    let Some(existing) = api
        .get_opt(rev_name)
        .await
        .map_err(Error::kube(format!("get revision {ns}/{rev_name}")))?
    else {
        // Gone already: the next plan creates it with the next number.
        return Ok(());
    };
    if existing.revision == number {
        return Ok(());
    }
    let renumbered = revision::renumbered(&existing, number);
    ctx.expectations()
        .expect_revision_created(key, rev_name, Instant::now());
    let forget = || ctx.expectations().forget_revision_created(key, rev_name);
    let dp = DeleteParams {
        preconditions: existing.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(rev_name, &dp).await {
        Ok(_) => {}
        // Gone, or already replaced by another writer: create below, or find it there.
        Err(e) if is_not_found(&e) || is_conflict(&e) => {}
        Err(e) => {
            forget();
            return Err(Error::kube(format!("delete revision {ns}/{rev_name}"))(e));
        }
    }
    match api.create(&post_params(), &renumbered).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => {
            forget();
            Ok(())
        }
        Err(e) => {
            forget();
            Err(Error::kube(format!("re-create revision {ns}/{rev_name}"))(
                e,
            ))
        }
    }
}

/// Creates `claim` unless a claim of that name exists (an existing claim is used as is).
pub(crate) async fn ensure_claim(
    api: &Api<PersistentVolumeClaim>,
    claim: &PersistentVolumeClaim,
) -> Result<(), Error> {
    let claim_name = claim.name_any();
    let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
    let existing = api
        .get_opt(&claim_name)
        .await
        .map_err(Error::kube(format!("get claim {ns}/{claim_name}")))?;
    if existing.is_some() {
        return Ok(());
    }
    match api.create(&post_params(), claim).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::kube(format!("create claim {ns}/{claim_name}"))(e)),
    }
}
