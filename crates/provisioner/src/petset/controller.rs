//! The PetSet controller's glue: watches, reading what exists, executing the plan,
//! backoff, metrics and events.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource as _, ResourceExt as _};
use operator_kit::{EventRecorder, EventType};
use pgpool_api::PetSet;
use pgpool_api::names::{LABEL_POD_NAME, LABEL_REVISION_HASH};
use prometheus::Registry;
use tokio::sync::oneshot;

use super::metrics::Metrics;
use super::plan::{self, DeleteReason, Input, Plan, PlanError, PodAction};
use super::{Error, FIELD_MANAGER, PetSetConfig, pods, revision, selector};

/// How often a PetSet is looked at again when nothing happens (a safety net; watches
/// normally trigger every reconcile).
const RESYNC: Duration = Duration::from_secs(300);
/// First retry delay after a failed reconcile; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Retry delay after a revision name collision (the status write triggers one anyway).
const COLLISION_RETRY: Duration = Duration::from_secs(1);

struct Context {
    client: Client,
    metrics: Metrics,
    recorder: EventRecorder,
    /// Consecutive failures per PetSet (`namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    async fn event(&self, ps: &PetSet, type_: EventType, reason: &str, message: &str) {
        let reference = ps.object_ref(&());
        if let Err(e) = self
            .recorder
            .publish(&reference, type_, reason, message)
            .await
        {
            tracing::debug!(error = %e, reason, "cannot publish event");
        }
    }
}

fn key(ps: &PetSet) -> String {
    format!(
        "{}/{}",
        ps.metadata.namespace.as_deref().unwrap_or_default(),
        ps.name_any()
    )
}

/// Runs the PetSet controller until `shutdown` resolves: watches PetSets and the Pods and
/// ControllerRevisions they own (in `cfg.namespace`, or everywhere), and drives each
/// PetSet's pods towards its spec. Calls `ready` once the PetSet cache has synced.
/// Registers `pgpool_operator_petset_reconcile_total{result}` and
/// `pgpool_operator_petset_reconcile_duration_seconds` in `registry`.
///
/// Reconcile failures are retried with a per-PetSet exponential backoff (1 s doubling up to
/// 5 min); they never end the controller.
pub async fn run(
    client: Client,
    cfg: PetSetConfig,
    registry: &Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl Fn() + Send + Sync + 'static,
) -> Result<(), Error> {
    let metrics = Metrics::register(registry)?;
    let (petsets, pods, revisions) = match cfg.namespace.as_deref() {
        Some(ns) => (
            Api::<PetSet>::namespaced(client.clone(), ns),
            Api::<Pod>::namespaced(client.clone(), ns),
            Api::<ControllerRevision>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<PetSet>::all(client.clone()),
            Api::<Pod>::all(client.clone()),
            Api::<ControllerRevision>::all(client.clone()),
        ),
    };
    let instance = std::env::var("POD_NAME").unwrap_or_else(|_| FIELD_MANAGER.to_string());
    let ctx = Arc::new(Context {
        recorder: EventRecorder::new(client.clone(), FIELD_MANAGER, instance),
        client,
        metrics,
        failures: Mutex::new(HashMap::new()),
    });

    // `graceful_shutdown_on` wants a Sync future; relay the caller's through a channel.
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let relay = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });

    // Only pods and revisions that carry the labels this controller puts on them: the
    // watches then skip the other pods of the cluster. (Reconciles list by the PetSet's
    // selector, so a pod whose labels were edited away is still seen there.)
    let controller = Controller::new(petsets, watcher::Config::default())
        .owns(pods, watcher::Config::default().labels(LABEL_POD_NAME))
        .owns(
            revisions,
            watcher::Config::default().labels(LABEL_REVISION_HASH),
        )
        .with_config(controller::Config::default().concurrency(cfg.concurrency))
        .graceful_shutdown_on(stop_rx.map(|_| ()));

    let store = controller.store();
    let readiness = tokio::spawn(async move {
        match store.wait_until_ready().await {
            Ok(()) => {
                tracing::debug!("PetSet cache synced");
                ready();
            }
            Err(e) => tracing::debug!(error = %e, "PetSet cache never synced"),
        }
    });

    tracing::info!(namespace = ?cfg.namespace, concurrency = cfg.concurrency, "PetSet controller started");
    let failures = ctx.clone();
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            match result {
                Ok(_) => {}
                Err(controller::Error::ReconcilerFailed(..)) => {} // logged by error_policy
                // A requeue for a PetSet deleted meanwhile: forget its backoff.
                Err(controller::Error::ObjectNotFound(obj)) => {
                    let key = format!(
                        "{}/{}",
                        obj.namespace.as_deref().unwrap_or_default(),
                        obj.name
                    );
                    tracing::debug!(petset = %key, "PetSet gone");
                    if let Ok(mut f) = failures.failures.lock() {
                        f.remove(&key);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "PetSet controller"),
            }
            futures::future::ready(())
        })
        .await;
    relay.abort();
    readiness.abort();
    tracing::info!("PetSet controller stopped");
    Ok(())
}

async fn reconcile(ps: Arc<PetSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_petset(&ps, &ctx).await;
    ctx.metrics
        .observe(result.is_ok(), started.elapsed().as_secs_f64());
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&key(&ps));
    }
    if let Err(e) = &result {
        let (reason, message) = match e {
            Error::Invalid(_) => ("InvalidSpec", e.to_string()),
            _ => ("ReconcileFailed", e.to_string()),
        };
        ctx.event(&ps, EventType::Warning, reason, &message).await;
    }
    result
}

fn error_policy(ps: Arc<PetSet>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(&ps)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let delay = backoff(failures);
    tracing::warn!(petset = %key(&ps), error = %error, retry_in = ?delay, "PetSet reconcile failed");
    Action::requeue(delay)
}

/// Delay before retry number `failures` (1-based): 1 s, 2 s, 4 s, ... at most 5 min.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX)
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn post_params() -> PostParams {
    PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_string()),
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

fn next_action(plan: &Plan) -> Action {
    match plan.requeue_after {
        // A little past the moment, so the pod is surely available by then.
        Some(d) => Action::requeue(d + Duration::from_millis(100)),
        None => Action::requeue(RESYNC),
    }
}

async fn reconcile_petset(ps: &PetSet, ctx: &Context) -> Result<Action, Error> {
    if ps.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the pods and revisions.
        return Ok(Action::await_change());
    }
    let ns = ps
        .metadata
        .namespace
        .clone()
        .ok_or(PlanError::Incomplete("namespace"))?;
    let name = ps.name_any();
    let selector = selector::to_string(&ps.spec.selector).map_err(PlanError::from)?;
    let client = ctx.client.clone();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let ps_api: Api<PetSet> = Api::namespaced(client, &ns);

    // Read fresh lists (not the watch caches): a step must see its previous step's writes.
    let lp = ListParams::default().labels(&selector);
    let pod_list = pod_api
        .list(&lp)
        .await
        .map_err(Error::kube(format!("list pods of PetSet {ns}/{name}")))?;
    let rev_list = rev_api
        .list(&lp)
        .await
        .map_err(Error::kube(format!("list revisions of PetSet {ns}/{name}")))?;

    let plan = plan::plan(&Input {
        petset: ps,
        pods: &pod_list.items,
        revisions: &rev_list.items,
        now: Timestamp::now(),
    })?;
    if plan.is_noop() {
        return Ok(next_action(&plan));
    }
    tracing::debug!(
        petset = %format!("{ns}/{name}"),
        actions = plan.actions.len(),
        status_changed = plan.status_changed,
        update_revision = %plan.revisions.update_name,
        "PetSet step"
    );

    // 1. The update revision.
    if let Some(created) = &plan.revisions.create {
        let rev_name = created.name_any();
        match rev_api.create(&post_params(), created).await {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some(409) => {
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
                    tracing::info!(petset = %format!("{ns}/{name}"), revision = %rev_name, count, "revision name collision");
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
            Err(e) => return Err(Error::kube(format!("create revision {ns}/{rev_name}"))(e)),
        }
    }
    if let Some((rev_name, number)) = &plan.revisions.renumber {
        rev_api
            .patch(
                rev_name,
                &patch_params(),
                &Patch::Merge(serde_json::json!({ "revision": number })),
            )
            .await
            .map_err(Error::kube(format!("renumber revision {ns}/{rev_name}")))?;
    }

    // 2. Pods (claims before their pod).
    for action in &plan.actions {
        let pod_name = action.pod_name().to_string();
        match action {
            PodAction::Create { pod, claims } => {
                for claim in claims {
                    ensure_claim(&claim_api, claim).await?;
                }
                match pod_api.create(&post_params(), pod).await {
                    Ok(_) => {
                        let msg = format!("create Pod {pod_name} in PetSet {name} successful");
                        ctx.event(ps, EventType::Normal, "SuccessfulCreate", &msg)
                            .await;
                    }
                    Err(e) if api_code(&e) == Some(409) => {
                        return Err(Error::PodNameTaken(format!("{ns}/{pod_name}")));
                    }
                    Err(e) => {
                        let msg = format!("create Pod {pod_name} in PetSet {name} failed: {e}");
                        ctx.event(ps, EventType::Warning, "FailedCreate", &msg)
                            .await;
                        return Err(Error::kube(format!("create pod {ns}/{pod_name}"))(e));
                    }
                }
            }
            PodAction::Delete { uid, reason, .. } => {
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
                    Err(e) if matches!(api_code(&e), Some(404 | 409)) => {}
                    Err(e) => {
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
    if plan.status_changed {
        ps_api
            .patch_status(
                &name,
                &patch_params(),
                &Patch::Merge(serde_json::json!({ "status": plan.status })),
            )
            .await
            .map_err(Error::kube(format!("patch status of PetSet {ns}/{name}")))?;
    }

    // 4. History beyond the limit.
    for rev_name in &plan.history_deletes {
        match rev_api.delete(rev_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => return Err(Error::kube(format!("delete revision {ns}/{rev_name}"))(e)),
        }
    }
    Ok(next_action(&plan))
}

/// Creates `claim` unless a claim of that name exists (an existing claim is used as is).
async fn ensure_claim(
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
        Err(e) if api_code(&e) == Some(409) => Ok(()),
        Err(e) => Err(Error::kube(format!("create claim {ns}/{claim_name}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
