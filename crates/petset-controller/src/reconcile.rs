//! One reconcile of a PetSet: from the caches when the step creates nothing, otherwise from
//! the API server's PetSet ([`full_step`]); failures become events and a per-PetSet backoff.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt as _};
use operator_kit::EventType;
use pgpool_api::PetSet;

use crate::apply::act;
use crate::cache::PetSetLite;
use crate::context::{Context, cached_pods, cached_revisions, key_of};
use crate::error::Error;
use crate::plan::{self, Input, PlanError};
use crate::selector;

/// Reconciles one PetSet, with metrics, and a Warning event when it fails.
pub(crate) async fn reconcile(ps: Arc<PetSetLite>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.start();
    let result = reconcile_petset(&ps, &ctx).await;
    timer.observe(&result);
    if result.is_ok() {
        ctx.backoff.succeeded(&key_of(&ps.metadata));
    }
    if let Err(e) = &result {
        let (reason, message) = match e {
            Error::Invalid(_) => ("InvalidSpec", e.to_string()),
            _ => ("ReconcileFailed", e.to_string()),
        };
        ctx.event(&*ps, EventType::Warning, reason, &message).await;
    }
    result
}

/// Requeues a failed PetSet after its backoff (1 s doubling per failure in a row, at most
/// 5 min; see [`crate::context::new_backoff`]). The event was published by [`reconcile`].
pub(crate) fn error_policy(ps: Arc<PetSetLite>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = key_of(&ps.metadata);
    let delay = ctx.backoff.failed(key.clone(), None).delay;
    tracing::warn!(petset = %key, error = %error, retry_in = ?delay, "PetSet reconcile failed");
    Action::requeue(delay)
}

/// One step from the caches; when the step creates a pod or a revision, see [`full_step`].
async fn reconcile_petset(lite: &PetSetLite, ctx: &Context) -> Result<Action, Error> {
    if lite.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the pods and revisions.
        return Ok(Action::await_change());
    }
    let ns = lite
        .metadata
        .namespace
        .clone()
        .ok_or(PlanError::Incomplete("namespace"))?;
    let uid = lite
        .metadata
        .uid
        .clone()
        .ok_or(PlanError::Incomplete("uid"))?;
    let key = key_of(&lite.metadata);
    if !ctx.synced.is_synced() {
        ctx.synced.wait().await;
    }
    let waiting = ctx.expectations().wait(&key, Instant::now());
    if let Some(wait) = waiting {
        // earlier writes are not in the caches yet; their events trigger the next step
        tracing::trace!(petset = %key, ?wait, "waiting for the caches");
        return Ok(Action::requeue(wait));
    }

    let petset = lite.to_petset();
    let pod_list = cached_pods(ctx, &ns, &uid);
    let revisions = cached_revisions(ctx, &ns, &uid);
    let input = Input {
        petset: &petset,
        pods: &pod_list,
        revisions: &revisions,
        now: Timestamp::now(),
    };
    match plan::plan(&input) {
        Ok(plan) => act(&petset, lite, plan, ctx).await,
        Err(e) if e.needs_full_objects() => full_step(lite, ctx).await,
        Err(e) => Err(e.into()),
    }
}

/// A step that creates pods or revisions: planned from the API server's PetSet (the newest
/// template), the cached pods, and the cached revisions (the full ones, listed, when an older
/// template is needed).
async fn full_step(lite: &PetSetLite, ctx: &Context) -> Result<Action, Error> {
    let ns = lite.metadata.namespace.clone().unwrap_or_default();
    let name = lite.name_any();
    let ps_api: Api<PetSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(ps) = ps_api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get PetSet {ns}/{name}")))?
    else {
        return Ok(Action::await_change());
    };
    if ps.metadata.uid != lite.metadata.uid || ps.metadata.deletion_timestamp.is_some() {
        // replaced or going: the cache will say so
        return Ok(Action::await_change());
    }
    let uid = lite.metadata.uid.clone().unwrap_or_default();
    let selector = selector::to_string(&ps.spec.selector).map_err(PlanError::from)?;
    let lp = ListParams::default().labels(&selector);
    // the expectations make sure the cache shows this controller's earlier pod writes
    let pod_list = cached_pods(ctx, &ns, &uid);
    let mut revisions = cached_revisions(ctx, &ns, &uid);
    let mut full_revisions = false;
    let plan = loop {
        let input = Input {
            petset: &ps,
            pods: &pod_list,
            revisions: &revisions,
            now: Timestamp::now(),
        };
        match plan::plan(&input) {
            Err(e) if e.needs_full_objects() && !full_revisions => {
                let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
                revisions = rev_api
                    .list(&lp)
                    .await
                    .map_err(Error::kube(format!("list revisions of PetSet {ns}/{name}")))?
                    .items;
                full_revisions = true;
            }
            other => break other?,
        }
    };
    act(&ps, lite, plan, ctx).await
}
