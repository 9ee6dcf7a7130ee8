//! The PetSet controller's glue: watch caches, executing the plan, expectations, backoff,
//! metrics and events.
//!
//! Reconciles read PetSets, pods and revisions from watch caches in compact form (see
//! [`crate::cache`] and [`operator_kit::cache::PodLite`]), so a PetSet whose pods are in place costs
//! no request. A step that creates a pod or a revision reads the PetSet from the API server
//! first (the new pod must come from the newest template), and every write is recorded in
//! [`Expectations`] until the caches show it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource, ResourceExt as _};
use pgpool_api::PetSet;
use pgpool_api::names::{LABEL_POD_NAME, LABEL_REVISION_HASH};
use prometheus::Registry;
use tokio::sync::oneshot;

use crate::cache::{PetSetLite, RevisionLite};
use crate::expectations::Expectations;
use crate::metrics::Metrics;
use crate::plan::{self, DeleteReason, Input, Plan, PlanError, PodAction};
use crate::{Error, FIELD_MANAGER, PetSetConfig, pods, revision, selector};
use operator_kit::cache::{Feed, PodLite, Synced};
use operator_kit::{EventRecorder, EventType};

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
    pods: Store<PodLite>,
    revisions: Store<RevisionLite>,
    /// The pod and revision caches are filled.
    synced: Synced,
    expectations: Arc<Mutex<Expectations>>,
}

impl Context {
    async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let reference = obj.object_ref(&());
        if let Err(e) = self
            .recorder
            .publish(&reference, type_, reason, message)
            .await
        {
            tracing::debug!(error = %e, reason, "cannot publish event");
        }
    }

    fn expectations(&self) -> MutexGuard<'_, Expectations> {
        self.expectations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The PetSet controlling an object, from its controller owner reference.
fn controller_of(meta: &ObjectMeta) -> Option<ObjectRef<PetSetLite>> {
    let owner = meta.owner_references.as_ref()?.iter().find(|o| {
        o.controller == Some(true)
            && o.kind == PetSet::kind(&())
            && o.api_version == PetSet::api_version(&())
    })?;
    Some(ObjectRef::new(&owner.name).within(meta.namespace.as_deref().unwrap_or_default()))
}

/// Whether a pod belongs in the PetSet controller's cache: controlled by some PetSet.
pub fn is_petset_pod(pod: &PodLite) -> bool {
    controller_of(&pod.metadata).is_some()
}

/// What connects the controller to a pod feed it may share with other controllers: the
/// expectations the feed's events satisfy and the triggers they cause.
pub struct Wiring {
    expectations: Arc<Mutex<Expectations>>,
    tx: mpsc::UnboundedSender<ObjectRef<PetSetLite>>,
    rx: mpsc::UnboundedReceiver<ObjectRef<PetSetLite>>,
}

impl Default for Wiring {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded();
        Self {
            expectations: Arc::default(),
            tx,
            rx,
        }
    }
}

impl Wiring {
    /// The subscriber to put on the pod feed: records what the cache saw, then triggers the
    /// pod's PetSet.
    pub fn pod_subscriber(&self) -> impl Fn(&PodLite, bool) + Send + Sync + 'static {
        let (expectations, tx) = (self.expectations.clone(), self.tx.clone());
        move |pod: &PodLite, gone: bool| {
            let Some(owner) = controller_of(&pod.metadata) else {
                return;
            };
            let key = format!(
                "{}/{}",
                owner.namespace.as_deref().unwrap_or_default(),
                owner.name
            );
            expectations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pod_seen(
                    &key,
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.uid.as_deref().unwrap_or_default(),
                    pod.metadata.deletion_timestamp.is_some(),
                    gone,
                );
            let _ = tx.unbounded_send(owner);
        }
    }
}

/// The feed of the pods the PetSet controller reads: pods with the pod-name label (which it
/// puts on every pod) that a PetSet controls.
pub fn pod_feed(client: &Client, namespace: Option<&str>) -> Feed<PodLite> {
    Feed::filtered(
        scoped::<PodLite>(client, namespace),
        watcher::Config::default().labels(LABEL_POD_NAME),
        PodLite::trim,
        is_petset_pod,
    )
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the PetSet controller until `shutdown` resolves: watches PetSets and the Pods and
/// ControllerRevisions they own (in `cfg.namespace`, or everywhere), and drives each
/// PetSet's pods towards its spec. Calls `ready` once its caches are filled.
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
    let wiring = Wiring::default();
    let mut pods = pod_feed(&client, cfg.namespace.as_deref());
    pods.subscribe(wiring.pod_subscriber());
    let (store, synced) = (pods.store(), pods.synced());
    let feed = tokio::spawn(pods.run());
    let result = run_wired(
        client, cfg, registry, shutdown, ready, wiring, store, synced,
    )
    .await;
    feed.abort();
    result
}

/// [`run`] with a pod feed set up by the caller (subscribed with
/// [`Wiring::pod_subscriber`]) and running.
#[allow(clippy::too_many_arguments)]
pub async fn run_wired(
    client: Client,
    cfg: PetSetConfig,
    registry: &Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl Fn() + Send + Sync + 'static,
    wiring: Wiring,
    pods: Store<PodLite>,
    pods_synced: Synced,
) -> Result<(), Error> {
    let metrics = Metrics::register(registry)?;
    let ns = cfg.namespace.as_deref();
    let Wiring {
        expectations,
        tx,
        rx: triggers,
    } = wiring;

    // revisions: the feed records what it saw and triggers the owner
    let mut revisions = Feed::new(
        scoped::<RevisionLite>(&client, ns),
        watcher::Config::default().labels(LABEL_REVISION_HASH),
        RevisionLite::trim,
    );
    {
        let (expectations, tx) = (expectations.clone(), tx.clone());
        revisions.subscribe(move |rev: &RevisionLite, gone: bool| {
            let Some(owner) = controller_of(&rev.metadata) else {
                return;
            };
            let key = format!(
                "{}/{}",
                owner.namespace.as_deref().unwrap_or_default(),
                owner.name
            );
            expectations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .revision_seen(&key, rev.metadata.name.as_deref().unwrap_or_default(), gone);
            let _ = tx.unbounded_send(owner);
        });
    }
    let revisions_synced = revisions.synced();
    let revision_store = revisions.store();
    let revision_feed = tokio::spawn(revisions.run());

    // PetSets, compact; their events tell the expectations which version the cache holds
    let (petset_store, writer) = reflector::store::<PetSetLite>();
    let (petsets_synced_tx, petsets_synced_rx) = tokio::sync::watch::channel(false);
    let petset_events = {
        let expectations = expectations.clone();
        watcher(
            scoped::<PetSetLite>(&client, ns),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(PetSetLite::trim)
        .reflect(writer)
        .inspect(move |event| {
            let mut e = expectations.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                Ok(watcher::Event::Apply(ps)) => {
                    e.petset_seen(
                        &key_of(&ps.metadata),
                        ps.metadata.resource_version.as_deref(),
                    );
                }
                Ok(watcher::Event::Delete(ps)) => e.petset_gone(&key_of(&ps.metadata)),
                Ok(watcher::Event::InitDone) => {
                    petsets_synced_tx.send_replace(true);
                }
                _ => {}
            }
        })
        .applied_objects()
    };
    let petsets_synced = Synced::from_receiver(petsets_synced_rx);

    let instance = std::env::var("POD_NAME").unwrap_or_else(|_| FIELD_MANAGER.to_string());
    let ctx = Arc::new(Context {
        recorder: EventRecorder::new(client.clone(), FIELD_MANAGER, instance),
        client,
        metrics,
        failures: Mutex::new(HashMap::new()),
        pods,
        revisions: revision_store,
        synced: Synced::all([pods_synced.clone(), revisions_synced.clone()]),
        expectations,
    });

    // `graceful_shutdown_on` wants a Sync future; relay the caller's through a channel.
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let relay = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });

    let ticker = tokio::spawn(operator_kit::cache::resync(
        petset_store.clone(),
        tx.clone(),
        cfg.resync,
    ));
    let controller = Controller::for_stream(petset_events, petset_store)
        .reconcile_on(triggers)
        .with_config(controller::Config::default().concurrency(cfg.concurrency))
        .graceful_shutdown_on(stop_rx.map(|_| ()));

    let all_synced = Synced::all([petsets_synced, pods_synced, revisions_synced]);
    let readiness = tokio::spawn(async move {
        if all_synced.wait().await {
            tracing::debug!("PetSet controller caches synced");
            ready();
        }
    });

    tracing::info!(namespace = ?cfg.namespace, concurrency = cfg.concurrency, "PetSet controller started");
    let gone = ctx.clone();
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            match result {
                Ok(_) => {}
                Err(controller::Error::ReconcilerFailed(..)) => {} // logged by error_policy
                // A trigger for a PetSet deleted meanwhile: forget its backoff.
                Err(controller::Error::ObjectNotFound(obj)) => {
                    let key = format!(
                        "{}/{}",
                        obj.namespace.as_deref().unwrap_or_default(),
                        obj.name
                    );
                    tracing::trace!(petset = %key, "PetSet gone");
                    if let Ok(mut f) = gone.failures.lock() {
                        f.remove(&key);
                    }
                    gone.expectations().petset_gone(&key);
                }
                Err(e) => tracing::warn!(error = %e, "PetSet controller"),
            }
            futures::future::ready(())
        })
        .await;
    drop(tx);
    ticker.abort();
    relay.abort();
    readiness.abort();
    revision_feed.abort();
    tracing::info!("PetSet controller stopped");
    Ok(())
}

async fn reconcile(ps: Arc<PetSetLite>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_petset(&ps, &ctx).await;
    ctx.metrics
        .observe(result.is_ok(), started.elapsed().as_secs_f64());
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&key_of(&ps.metadata));
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

fn error_policy(ps: Arc<PetSetLite>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = key_of(&ps.metadata);
    let failures = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let delay = backoff(failures);
    tracing::warn!(petset = %key, error = %error, retry_in = ?delay, "PetSet reconcile failed");
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

/// Look again when a pod becomes available; otherwise when something changes (or the
/// resync comes round, see [`operator_kit::cache::resync`]).
fn next_action(plan: &Plan) -> Action {
    match plan.requeue_after {
        // A little past the moment, so the pod is surely available by then.
        Some(d) => Action::requeue(d + Duration::from_millis(100)),
        None => Action::await_change(),
    }
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

/// The pods the PetSet with `uid` controls, from the cache.
fn cached_pods(ctx: &Context, ns: &str, uid: &str) -> Vec<Pod> {
    ctx.pods
        .state()
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == Some(ns) && pods::is_controlled_by(&p.metadata, uid)
        })
        .map(|p| p.to_pod())
        .collect()
}

fn cached_revisions(ctx: &Context, ns: &str, uid: &str) -> Vec<ControllerRevision> {
    ctx.revisions
        .state()
        .iter()
        .filter(|r| {
            r.metadata.namespace.as_deref() == Some(ns) && pods::is_controlled_by(&r.metadata, uid)
        })
        .map(|r| r.to_revision())
        .collect()
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

/// Writes what `plan` says for `ps`, recording each write in the expectations first.
/// `cached` is the cache's copy (its version is what a status write is remembered against).
async fn act(ps: &PetSet, cached: &PetSetLite, plan: Plan, ctx: &Context) -> Result<Action, Error> {
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
            Err(e) if api_code(&e) == Some(409) => {
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
                    Err(e) if api_code(&e) == Some(409) => {
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
                    Err(e) if matches!(api_code(&e), Some(404 | 409)) => forget(),
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
            Err(e) if api_code(&e) == Some(404) => {
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
async fn renumber_revision(
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
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => {}
        Err(e) => {
            forget();
            return Err(Error::kube(format!("delete revision {ns}/{rev_name}"))(e));
        }
    }
    match api.create(&post_params(), &renumbered).await {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(409) => {
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
