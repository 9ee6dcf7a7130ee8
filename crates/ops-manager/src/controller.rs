//! The PgpoolOpsRequest controller: reads the cluster, asks [`crate::plan`] what to do, does
//! it, and records each step as a condition on the request before and after acting, so that
//! a restarted ops-manager continues from the conditions and the cluster's objects alone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{
    DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use operator_kit::EventRecorder;
use pgpool_api::conditions::{self, NewCondition, ops};
use pgpool_api::{
    OpsRequestPhase, OpsRequestType, PetSet, Pgpool, PgpoolOpsRequest, PgpoolVersion, names,
};
use serde_json::json;

use crate::events::EventQueue;
use crate::metrics::Metrics;
use crate::plan::{self, Images, PodStep, RollbackPodStep, Step, Verdict};
use crate::{OpsManagerConfig, REPORTER, REQUEST_FINALIZER};

/// Errors of one reconcile; the request is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconcileError {
    /// A call to the API server failed.
    #[error("API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// A write kept conflicting with other writers.
    #[error("{0} kept changing under us (409 Conflict): will retry")]
    Contended(String),
}

type Result<T, E = ReconcileError> = std::result::Result<T, E>;

/// Shared state of the controller. Everything that matters is in the cluster; the maps here
/// only hold backoff counters and timing marks for metrics.
struct Ctx {
    client: Client,
    store: Store<PgpoolOpsRequest>,
    metrics: Metrics,
    /// Events go out in the background: a reconcile never waits for one.
    events: EventQueue,
    /// Serialises queue decisions (read the queue, then mark one request Progressing).
    queue_lock: tokio::sync::Mutex<()>,
    /// Consecutive failed reconciles per request, for the error backoff.
    errors: Mutex<HashMap<ObjectRef<PgpoolOpsRequest>, u32>>,
    /// Refused evictions per pod UID, for the eviction backoff.
    refusals: Mutex<HashMap<String, u32>>,
    /// When the last step of a request (by UID) ended, for step durations.
    marks: Mutex<HashMap<String, Instant>>,
    max_requeue: Duration,
}

pub(crate) async fn run(
    client: Client,
    config: OpsManagerConfig,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl Fn() + Send + Sync + 'static,
) {
    let ns = config.namespace.clone();
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let controller = Controller::new(
        api::<PgpoolOpsRequest>(&client, &ns),
        watcher::Config::default(),
    );
    // The mappers and the metrics read requests from a reflector of our own: it is the only
    // store `ready` waits on (a kube store's readiness wakes only one waiter, and that one must
    // stay the controller's).
    let (store, writer) = reflector::store::<PgpoolOpsRequest>();
    let reflector_task = tokio::spawn(
        reflector(
            writer,
            watcher(
                api::<PgpoolOpsRequest>(&client, &ns),
                watcher::Config::default(),
            )
            .default_backoff(),
        )
        .for_each(|_| async {}),
    );
    let (events, events_task) = EventQueue::start(EventRecorder::new(
        client.clone(),
        REPORTER,
        config.instance.clone(),
    ));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        store: store.clone(),
        metrics,
        events,
        queue_lock: tokio::sync::Mutex::new(()),
        errors: Mutex::default(),
        refusals: Mutex::default(),
        marks: Mutex::default(),
        max_requeue: config.max_requeue.max(Duration::from_secs(1)),
    });

    let ready_store = store.clone();
    let ready_task = tokio::spawn(async move {
        if ready_store.wait_until_ready().await.is_ok() {
            ready();
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping = operator_kit::CancellationToken::new();
    let stop_task = {
        let stopping = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopping.cancel();
            let _ = stop_tx.send(());
        })
    };

    let (s1, s2, s3, s4) = (store.clone(), store.clone(), store.clone(), store.clone());
    let pod_selector = format!("{}={}", names::LABEL_NAME, names::LABEL_NAME_VALUE);
    controller
        .with_config(ControllerConfig::default().concurrency(config.concurrency.max(1)))
        .watches(
            api::<Pgpool>(&client, &ns),
            watcher::Config::default(),
            move |pp: Pgpool| {
                live_requests_for(&s1, &pp.namespace().unwrap_or_default(), &pp.name_any())
            },
        )
        .watches(
            api::<PetSet>(&client, &ns),
            watcher::Config::default(),
            move |ps: PetSet| {
                let owner = ps
                    .labels()
                    .get(names::LABEL_INSTANCE)
                    .cloned()
                    .unwrap_or_else(|| ps.name_any());
                live_requests_for(&s2, &ps.namespace().unwrap_or_default(), &owner)
            },
        )
        .watches(
            api::<Pod>(&client, &ns),
            watcher::Config::default().labels(&pod_selector),
            move |pod: Pod| match pod.labels().get(names::LABEL_INSTANCE) {
                Some(owner) => live_requests_for(&s3, &pod.namespace().unwrap_or_default(), owner),
                None => Vec::new(),
            },
        )
        // A request that arrives, waits or ends wakes the other live requests of its Pgpool, so
        // the queue moves on at once (writes of a Progressing request wake nobody).
        .watches(
            api::<PgpoolOpsRequest>(&client, &ns),
            watcher::Config::default(),
            move |r: PgpoolOpsRequest| {
                if plan::phase_of(&r) == OpsRequestPhase::Progressing
                    && r.metadata.deletion_timestamp.is_none()
                {
                    return Vec::new();
                }
                let name = r.name_any();
                live_requests_for(
                    &s4,
                    &r.namespace().unwrap_or_default(),
                    &r.spec.database_ref.name,
                )
                .into_iter()
                .filter(|o| o.name != name)
                .collect()
            },
        )
        .graceful_shutdown_on(async move {
            let _ = stop_rx.await;
        })
        // A reconcile still running at shutdown is dropped where it waits: every step is
        // idempotent, so that is no worse than a crash, and the process stops at once.
        .run(
            move |obj, ctx| {
                let stopping = stopping.clone();
                async move {
                    tokio::select! {
                        biased;
                        () = stopping.cancelled() => Ok(Action::await_change()),
                        result = reconcile(obj, ctx) => result,
                    }
                }
            },
            error_policy,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(error) = res {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
    ready_task.abort();
    stop_task.abort();
    reflector_task.abort();
    // The controller has dropped the context and with it the event queue: publish what is
    // still queued (bounded, so that an unreachable API server cannot hold up the exit: the
    // process must stop within 5 s of SIGTERM, see operator_kit::SHUTDOWN_GRACE).
    if tokio::time::timeout(Duration::from_secs(1), events_task)
        .await
        .is_err()
    {
        tracing::warn!("events still queued at exit were dropped");
    }
}

/// Requests of Pgpool `pgpool` in `ns` that have not ended, from the cache.
fn live_requests_for(
    store: &Store<PgpoolOpsRequest>,
    ns: &str,
    pgpool: &str,
) -> Vec<ObjectRef<PgpoolOpsRequest>> {
    store
        .state()
        .iter()
        .filter(|r| {
            r.metadata.namespace.as_deref() == Some(ns)
                && r.spec.database_ref.name == pgpool
                && !plan::phase_of(r).is_final()
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

async fn reconcile(obj: Arc<PgpoolOpsRequest>, ctx: Arc<Ctx>) -> Result<Action> {
    let key = ObjectRef::from_obj(obj.as_ref());
    let result = async {
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let reqs: Api<PgpoolOpsRequest> = Api::namespaced(ctx.client.clone(), &ns);
        let Some(req) = reqs.get_opt(&name).await? else {
            return Ok(Action::await_change());
        };
        Run::new(&ctx, reqs, req).reconcile().await
    }
    .await;
    ctx.metrics.reconciled(result.is_ok());
    if result.is_ok()
        && let Ok(mut errors) = ctx.errors.lock()
    {
        errors.remove(&key);
    }
    let state = ctx.store.state();
    ctx.metrics.count_requests(state.iter().map(|r| r.as_ref()));
    result
}

fn error_policy(obj: Arc<PgpoolOpsRequest>, error: &ReconcileError, ctx: Arc<Ctx>) -> Action {
    let key = ObjectRef::from_obj(obj.as_ref());
    let n = match ctx.errors.lock() {
        Ok(mut errors) => {
            let n = errors.entry(key).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    let delay = backoff(Duration::from_millis(500), n, Duration::from_secs(300));
    tracing::warn!(
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// `base * 2^(n-1)`, at most `cap`.
fn backoff(base: Duration, n: u32, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
    base.saturating_mul(factor).min(cap)
}

/// What a step tells the driver.
enum Flow {
    /// Go on with the next step now.
    Next,
    /// Wait for a change (watch events), at most this long.
    Wait(Duration),
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// One reconcile of one request.
struct Run<'a> {
    ctx: &'a Ctx,
    reqs: Api<PgpoolOpsRequest>,
    req: PgpoolOpsRequest,
    ns: String,
    name: String,
    t: OpsRequestType,
    pgpool: String,
    /// Conditions set on the local copy that record a step already done and are written with
    /// the next status write (at the latest before the reconcile waits). Losing them in a
    /// crash only repeats an idempotent check.
    unsaved: bool,
}

impl<'a> Run<'a> {
    fn new(ctx: &'a Ctx, reqs: Api<PgpoolOpsRequest>, req: PgpoolOpsRequest) -> Self {
        let ns = req.namespace().unwrap_or_default();
        let name = req.name_any();
        let t = req.spec.type_;
        let pgpool = req.spec.database_ref.name.clone();
        Self {
            ctx,
            reqs,
            req,
            ns,
            name,
            t,
            pgpool,
            unsaved: false,
        }
    }

    fn pgpools(&self) -> Api<Pgpool> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }
    fn petsets(&self) -> Api<PetSet> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }
    fn versions(&self) -> Api<PgpoolVersion> {
        Api::all(self.ctx.client.clone())
    }

    fn conds(&self) -> &[Condition] {
        self.req
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or(&[])
    }

    fn cond(&self, type_: &str) -> Option<&Condition> {
        conditions::get(self.conds(), type_)
    }

    /// Set a condition on the local copy; `save` writes it. Returns true when it changed.
    fn set(&mut self, type_: &str, status: &str, reason: &str, message: impl Into<String>) -> bool {
        let generation = self.req.metadata.generation;
        let st = self.req.status.get_or_insert_with(Default::default);
        conditions::set(
            &mut st.conditions,
            NewCondition {
                type_,
                status,
                reason,
                message: message.into(),
                observed_generation: generation,
            },
            Utc::now(),
        )
    }

    /// Like [`Self::set`] for a condition that records a finished step: it is written with
    /// the next status write, which saves one round trip per step.
    fn set_done(&mut self, type_: &str, reason: &str, message: impl Into<String>) {
        if self.set(type_, conditions::TRUE, reason, message) {
            self.unsaved = true;
        }
    }

    /// Write what [`Self::set_done`] left unwritten.
    async fn flush(&mut self) -> Result<()> {
        if self.unsaved {
            self.save().await?;
        }
        Ok(())
    }

    fn set_phase(&mut self, phase: OpsRequestPhase) {
        self.req.status.get_or_insert_with(Default::default).phase = Some(phase);
    }

    /// Write the status with the resourceVersion last read (a 409 ends the reconcile and the
    /// request is looked at again with fresh data).
    async fn save(&mut self) -> Result<()> {
        let generation = self.req.metadata.generation;
        self.req
            .status
            .get_or_insert_with(Default::default)
            .observed_generation = generation;
        self.req = self
            .reqs
            .replace_status(&self.name, &PostParams::default(), &self.req)
            .await?;
        self.unsaved = false;
        Ok(())
    }

    fn timeout(&self) -> Duration {
        self.req
            .spec
            .timeout()
            .unwrap_or(pgpool_api::ops::DEFAULT_TIMEOUT)
    }

    fn timeout_text(&self) -> String {
        self.req
            .spec
            .timeout
            .clone()
            .unwrap_or_else(|| "5m".to_string())
    }

    /// Time left before `deadline_after` has passed since condition `c` last changed. The
    /// transition time has whole seconds, so one second is added: the wait is never shorter.
    fn remaining(c: &Condition, deadline_after: Duration) -> Option<Duration> {
        let start_ms = i128::from(c.last_transition_time.0.as_second()) * 1000;
        let deadline_ms = start_ms + deadline_after.as_millis() as i128 + 1000;
        let now_ms = i128::from(Utc::now().timestamp_millis());
        let left = deadline_ms - now_ms;
        (left > 0).then(|| Duration::from_millis(left as u64))
    }

    /// When [`Self::remaining`] runs out, in RFC 3339 (whole seconds, UTC).
    fn deadline(c: &Condition, deadline_after: Duration) -> String {
        let start_ms = c.last_transition_time.0.as_second() * 1000;
        let ms = start_ms
            .saturating_add(i64::try_from(deadline_after.as_millis()).unwrap_or(i64::MAX / 2))
            .saturating_add(1000);
        chrono::DateTime::<Utc>::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }

    fn wait(&self, d: Duration) -> Flow {
        Flow::Wait(d.min(self.ctx.max_requeue).max(Duration::from_millis(50)))
    }

    fn event(&self, reason: &str, message: &str) {
        self.ctx.events.normal(&self.req, reason, message);
    }

    fn warning(&self, reason: &str, message: &str) {
        self.ctx.events.warning(&self.req, reason, message);
    }

    /// Record the end of a step for the step-duration metric.
    fn step_done(&self, step: &str) {
        let uid = self.req.metadata.uid.clone().unwrap_or_default();
        let now = Instant::now();
        let since = self
            .ctx
            .marks
            .lock()
            .ok()
            .and_then(|mut m| m.insert(uid, now));
        let seconds = match since {
            Some(t) => now.duration_since(t).as_secs_f64(),
            None => {
                // After a restart: since the latest recorded transition.
                let latest = self
                    .conds()
                    .iter()
                    .map(|c| c.last_transition_time.0.as_second())
                    .max();
                latest
                    .map(|s| (Utc::now().timestamp() - s).max(0) as f64)
                    .unwrap_or(0.0)
            }
        };
        self.ctx.metrics.step(self.t, step, seconds);
    }

    fn has_finalizer(&self) -> bool {
        self.req.finalizers().iter().any(|f| f == REQUEST_FINALIZER)
    }

    async fn set_finalizers(&mut self, finalizers: Vec<String>) -> Result<()> {
        let patch = json!({
            "metadata": {
                "finalizers": finalizers,
                "resourceVersion": self.req.resource_version(),
            }
        });
        // Keep the status being built locally; take the new resourceVersion.
        let status = self.req.status.take();
        let patched = self
            .reqs
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        self.req.status = status;
        let patched = patched?;
        self.req.metadata = patched.metadata;
        Ok(())
    }

    async fn add_finalizer(&mut self) -> Result<()> {
        if self.has_finalizer() {
            return Ok(());
        }
        let mut f = self.req.finalizers().to_vec();
        f.push(REQUEST_FINALIZER.to_string());
        self.set_finalizers(f).await
    }

    async fn remove_finalizer(&mut self) -> Result<()> {
        if !self.has_finalizer() {
            return Ok(());
        }
        let f: Vec<String> = self
            .req
            .finalizers()
            .iter()
            .filter(|f| *f != REQUEST_FINALIZER)
            .cloned()
            .collect();
        match self.set_finalizers(f).await {
            Err(ReconcileError::Kube(e)) if is_status(&e, 404) => Ok(()),
            other => other,
        }
    }

    async fn reconcile(mut self) -> Result<Action> {
        let phase = plan::phase_of(&self.req);
        if phase.is_final() {
            if self.has_finalizer() {
                self.remove_finalizer().await?;
            }
            return Ok(Action::await_change());
        }
        if phase != OpsRequestPhase::Progressing {
            if self.req.metadata.deletion_timestamp.is_some() {
                self.remove_finalizer().await?;
                return Ok(Action::await_change());
            }
            if let Some(action) = self.queue().await? {
                return Ok(action);
            }
        }
        self.drive().await
    }

    /// Queue handling of a request that has not started. `Some(action)` when it must wait or
    /// has ended; `None` when it has just started and should be driven on.
    async fn queue(&mut self) -> Result<Option<Action>> {
        let ctx = self.ctx;
        let _guard = ctx.queue_lock.lock().await;
        let first_sight = self.req.status.as_ref().and_then(|s| s.phase).is_none();
        let all = self.reqs.list(&ListParams::default()).await?;
        let siblings: Vec<PgpoolOpsRequest> = all
            .items
            .into_iter()
            .filter(|r| r.spec.database_ref.name == self.pgpool)
            .collect();
        let decision = plan::queue_decision(&self.req, &siblings);
        tracing::debug!(request = %self.name, ?decision, "queue");
        match decision {
            plan::QueueDecision::Start => {
                self.start().await?;
                Ok(None)
            }
            plan::QueueDecision::Wait { behind } => {
                if first_sight {
                    self.set_phase(OpsRequestPhase::Pending);
                    self.save().await?;
                    let msg = format!(
                        "waiting for PgpoolOpsRequest {behind} on Pgpool {} to finish",
                        self.pgpool
                    );
                    self.event("Pending", &msg);
                }
                Ok(Some(Action::requeue(ctx.max_requeue)))
            }
            plan::QueueDecision::Skip { newer } => {
                let msg = format!(
                    "skipped: the newer {} request {newer} for Pgpool {} supersedes this one",
                    self.t.as_str(),
                    self.pgpool
                );
                self.set(
                    plan::SKIPPED,
                    conditions::TRUE,
                    "SupersededByNewerRequest",
                    &msg,
                );
                self.set_phase(OpsRequestPhase::Skipped);
                self.save().await?;
                self.remove_finalizer().await?;
                self.event("Skipped", &msg);
                Ok(Some(Action::await_change()))
            }
        }
    }

    /// Take the Pgpool's slot: validate; a request that goes on gets the finalizer first (so a
    /// deletion cannot skip the resume); the first status write marks it Progressing (or ends
    /// it at once when validation fails or there is nothing to do).
    async fn start(&mut self) -> Result<()> {
        let verdict = self.verdict().await?;
        if matches!(
            verdict,
            Verdict::Proceed { .. } | Verdict::WaitForReady { .. }
        ) {
            self.add_finalizer().await?;
        }
        self.set_phase(OpsRequestPhase::Progressing);
        if let Some(m) = self.ctx.marks.lock().ok().as_mut() {
            m.insert(
                self.req.metadata.uid.clone().unwrap_or_default(),
                Instant::now(),
            );
        }
        // Every outcome of validation writes the status (Progressing, or final).
        self.apply_verdict(verdict).await?;
        Ok(())
    }

    async fn drive(&mut self) -> Result<Action> {
        loop {
            let step = plan::next_step(self.t, self.conds());
            tracing::debug!(request = %self.name, ?step, "step");
            if self.req.metadata.deletion_timestamp.is_some()
                && !matches!(step, Step::Rollback | Step::Done)
                && !conditions::is_true(self.conds(), ops::RESTART_PODS)
            {
                let msg = format!(
                    "the request was deleted while {} was in progress",
                    self.t.as_str()
                );
                self.fail("RequestDeleted", msg).await?;
                if plan::phase_of(&self.req).is_final() {
                    return Ok(Action::await_change());
                }
                continue;
            }
            let flow = match step {
                Step::Validate => self.step_validate().await?,
                Step::Pause => self.step_pause().await?,
                Step::UpdatePetSets => self.step_update_petsets().await?,
                Step::RestartPods => self.step_restart_pods().await?,
                Step::UpdateDatabase => self.step_update_database().await?,
                Step::Resume => self.step_resume().await?,
                Step::Rollback => self.step_rollback().await?,
                Step::Done => {
                    // A final condition exists but the phase was not written: finish again.
                    let (phase, reason, message) = self.final_from_conditions();
                    self.finish(phase, &reason, message).await?;
                    return Ok(Action::await_change());
                }
            };
            match flow {
                Flow::Next => {
                    if plan::phase_of(&self.req).is_final() {
                        return Ok(Action::await_change());
                    }
                }
                Flow::Wait(d) => {
                    self.flush().await?;
                    return Ok(Action::requeue(d));
                }
            }
        }
    }

    fn final_from_conditions(&self) -> (OpsRequestPhase, String, String) {
        for (t, phase) in [
            (ops::SUCCESSFUL, OpsRequestPhase::Successful),
            (ops::FAILED, OpsRequestPhase::Failed),
            (plan::SKIPPED, OpsRequestPhase::Skipped),
        ] {
            if let Some(c) = self.cond(t).filter(|c| c.status == conditions::TRUE) {
                return (phase, c.reason.clone(), c.message.clone());
            }
        }
        (OpsRequestPhase::Failed, "Unknown".into(), String::new())
    }

    async fn fetch_pgpool(&self) -> Result<Option<Pgpool>> {
        Ok(self.pgpools().get_opt(&self.pgpool).await?)
    }

    async fn fetch_version(&self, name: &str) -> Result<Option<PgpoolVersion>> {
        if name.is_empty() {
            return Ok(None);
        }
        Ok(self.versions().get_opt(name).await?)
    }

    async fn verdict(&self) -> Result<Verdict> {
        let pp = self.fetch_pgpool().await?;
        let (current, target) = match (&pp, self.t) {
            (Some(pp), OpsRequestType::UpdateVersion) => (
                self.fetch_version(&pp.spec.version).await?,
                self.fetch_version(plan::target_version(&self.req).unwrap_or(""))
                    .await?,
            ),
            _ => (None, None),
        };
        Ok(plan::validate(plan::ValidationInput {
            request: &self.req,
            pgpool: pp.as_ref(),
            current: current.as_ref(),
            target: target.as_ref(),
        }))
    }

    async fn step_validate(&mut self) -> Result<Flow> {
        let verdict = self.verdict().await?;
        self.apply_verdict(verdict).await
    }

    async fn apply_verdict(&mut self, verdict: Verdict) -> Result<Flow> {
        let start = plan::start_condition(self.t);
        match verdict {
            Verdict::Fail { reason, message } => {
                self.fail(reason, message).await?;
                Ok(Flow::Next)
            }
            Verdict::AlreadyDone { message } => {
                self.set(start, conditions::TRUE, "AlreadyOnTargetVersion", &message);
                self.finish(OpsRequestPhase::Successful, "Successful", message)
                    .await?;
                Ok(Flow::Next)
            }
            Verdict::WaitForReady { message } => {
                if self.set(start, conditions::UNKNOWN, "WaitingForReady", &message) {
                    self.save().await?;
                    self.event("WaitingForReady", &message);
                }
                let c = self.cond(start).cloned();
                match c.and_then(|c| Self::remaining(&c, self.timeout())) {
                    Some(left) => Ok(self.wait(left)),
                    None => {
                        let msg =
                            plan::not_ready_message(&self.pgpool, &message, &self.timeout_text());
                        self.fail("PgpoolNotReady", msg).await?;
                        Ok(Flow::Next)
                    }
                }
            }
            Verdict::Proceed { from, to } => {
                let message = match self.t {
                    OpsRequestType::UpdateVersion => {
                        format!(
                            "updating Pgpool {} from version {from} to {to}",
                            self.pgpool
                        )
                    }
                    OpsRequestType::Restart => {
                        format!(
                            "restarting the pods of Pgpool {} (version {from})",
                            self.pgpool
                        )
                    }
                };
                self.set(start, conditions::TRUE, self.t.as_str(), &message);
                // The pause handshake starts right away: record it in the same write (before
                // asking, so the timeout survives restarts and a failure knows there is a
                // pause to undo).
                let pause = self.pause_requested_message();
                self.set(
                    ops::DATABASE_PAUSE_SUCCEEDED,
                    conditions::UNKNOWN,
                    "PauseRequested",
                    &pause,
                );
                self.save().await?;
                self.step_done(start);
                self.event("Starting", &message);
                self.event("Pausing", &pause);
                Ok(Flow::Next)
            }
        }
    }

    fn pause_requested_message(&self) -> String {
        format!("asked the provisioner to pause Pgpool {}", self.pgpool)
    }

    async fn step_pause(&mut self) -> Result<Flow> {
        if self.cond(ops::DATABASE_PAUSE_SUCCEEDED).is_none() {
            // Record the start of the handshake before asking, so the timeout survives restarts
            // and a failure knows there is a pause to undo.
            let msg = self.pause_requested_message();
            self.set(
                ops::DATABASE_PAUSE_SUCCEEDED,
                conditions::UNKNOWN,
                "PauseRequested",
                &msg,
            );
            self.save().await?;
            self.event("Pausing", &msg);
        }
        match self.pause_pgpool().await? {
            PauseState::Gone => {
                let msg = format!("Pgpool {} was deleted", self.pgpool);
                self.fail("PgpoolNotFound", msg).await?;
                Ok(Flow::Next)
            }
            PauseState::Acknowledged => {
                let msg = format!("the provisioner paused Pgpool {}", self.pgpool);
                // Written with the next step's record: repeating the handshake after a crash
                // finds the pause acknowledged again.
                self.set_done(
                    ops::DATABASE_PAUSE_SUCCEEDED,
                    "DatabasePauseSucceeded",
                    &msg,
                );
                self.step_done(ops::DATABASE_PAUSE_SUCCEEDED);
                self.event("Paused", &msg);
                Ok(Flow::Next)
            }
            PauseState::Requested => {
                let c = self.cond(ops::DATABASE_PAUSE_SUCCEEDED).cloned();
                match c.and_then(|c| Self::remaining(&c, self.timeout())) {
                    Some(left) => Ok(self.wait(left)),
                    None => {
                        let msg = format!(
                            "the provisioner did not acknowledge the pause of Pgpool {} within \
                             {} (its Paused condition stayed Unknown): check that \
                             pgpool-provisioner is running and watching this namespace",
                            self.pgpool,
                            self.timeout_text()
                        );
                        self.fail("PauseNotAcknowledged", msg).await?;
                        Ok(Flow::Next)
                    }
                }
            }
        }
    }

    /// Ask for the pause: add `Paused=Unknown` to the Pgpool's status unless it is there.
    async fn pause_pgpool(&self) -> Result<PauseState> {
        let api = self.pgpools();
        for _ in 0..8 {
            let Some(mut pp) = api.get_opt(&self.pgpool).await? else {
                return Ok(PauseState::Gone);
            };
            let st = pp.status.get_or_insert_with(Default::default);
            match conditions::get(&st.conditions, conditions::pgpool::PAUSED) {
                Some(c) if c.status == conditions::TRUE => return Ok(PauseState::Acknowledged),
                Some(c) if c.status == conditions::UNKNOWN => return Ok(PauseState::Requested),
                _ => {}
            }
            conditions::set(
                &mut st.conditions,
                NewCondition {
                    type_: conditions::pgpool::PAUSED,
                    status: conditions::UNKNOWN,
                    reason: "PauseRequested",
                    message: format!("paused for PgpoolOpsRequest {}", self.name),
                    observed_generation: pp.metadata.generation,
                },
                Utc::now(),
            );
            match api
                .replace_status(&self.pgpool, &PostParams::default(), &pp)
                .await
            {
                Ok(_) => return Ok(PauseState::Requested),
                Err(e) if is_status(&e, 409) => continue,
                Err(e) if is_status(&e, 404) => return Ok(PauseState::Gone),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ReconcileError::Contended(format!(
            "Pgpool {} status",
            self.pgpool
        )))
    }

    /// Remove `Paused` from the Pgpool's status (if the Pgpool and the condition exist).
    async fn resume_pgpool(&self) -> Result<bool> {
        let api = self.pgpools();
        for _ in 0..8 {
            let Some(mut pp) = api.get_opt(&self.pgpool).await? else {
                return Ok(false);
            };
            let st = pp.status.get_or_insert_with(Default::default);
            if !conditions::remove(&mut st.conditions, conditions::pgpool::PAUSED) {
                return Ok(false);
            }
            match api
                .replace_status(&self.pgpool, &PostParams::default(), &pp)
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if is_status(&e, 409) => continue,
                Err(e) if is_status(&e, 404) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ReconcileError::Contended(format!(
            "Pgpool {} status",
            self.pgpool
        )))
    }

    async fn target_images(&self) -> Result<Option<Images>> {
        let name = plan::target_version(&self.req).unwrap_or("");
        Ok(self.fetch_version(name).await?.map(|v| Images::of(&v)))
    }

    /// Set the images of the PetSet's pgpool, exporter and pgpool-init containers by GET,
    /// modify and replace (retrying conflicts). Returns false when the PetSet does not exist.
    async fn set_petset_images(&self, images: &Images) -> Result<bool> {
        let api = self.petsets();
        let name = names::petset(&self.pgpool);
        for _ in 0..8 {
            let Some(mut ps) = api.get_opt(&name).await? else {
                return Ok(false);
            };
            let Some(spec) = ps.spec.template.spec.as_mut() else {
                return Ok(true);
            };
            if !plan::set_spec_images(spec, images) {
                return Ok(true);
            }
            match api.replace(&name, &PostParams::default(), &ps).await {
                Ok(_) => return Ok(true),
                Err(e) if is_status(&e, 409) => continue,
                Err(e) if is_status(&e, 404) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ReconcileError::Contended(format!("PetSet {name}")))
    }

    async fn step_update_petsets(&mut self) -> Result<Flow> {
        let Some(images) = self.target_images().await? else {
            let msg = format!(
                "target PgpoolVersion {:?} disappeared during the update",
                plan::target_version(&self.req).unwrap_or("")
            );
            self.fail("VersionNotFound", msg).await?;
            return Ok(Flow::Next);
        };
        if !self.set_petset_images(&images).await? {
            let msg = format!(
                "PetSet {} not found: the Pgpool is not provisioned",
                names::petset(&self.pgpool)
            );
            self.fail("PetSetNotFound", msg).await?;
            return Ok(Flow::Next);
        }
        let msg = format!(
            "PetSet {} now runs {}",
            names::petset(&self.pgpool),
            images.pgpool
        );
        // Setting the images again after a crash changes nothing: written with the next record.
        self.set_done(ops::UPDATE_PETSETS, "UpdatePetSets", &msg);
        self.step_done(ops::UPDATE_PETSETS);
        self.event("UpdatePetSets", &msg);
        Ok(Flow::Next)
    }

    async fn list_pods(&self) -> Result<HashMap<String, Pod>> {
        let lp = ListParams::default().labels(&names::selector_string(&self.pgpool));
        let list = self.pods().list(&lp).await?;
        Ok(list.items.into_iter().map(|p| (p.name_any(), p)).collect())
    }

    async fn step_restart_pods(&mut self) -> Result<Flow> {
        let target = match self.t {
            OpsRequestType::UpdateVersion => match self.target_images().await? {
                Some(images) => Some(images),
                None => {
                    let msg = format!(
                        "target PgpoolVersion {:?} disappeared during the update",
                        plan::target_version(&self.req).unwrap_or("")
                    );
                    self.fail("VersionNotFound", msg).await?;
                    return Ok(Flow::Next);
                }
            },
            OpsRequestType::Restart => None,
        };
        let petset = names::petset(&self.pgpool);
        // Each pass acts on the first pod that is not done; after acting, look again.
        'pass: loop {
            let Some(ps) = self.petsets().get_opt(&petset).await? else {
                let msg = format!("PetSet {petset} disappeared while restarting pods");
                self.fail("PetSetNotFound", msg).await?;
                return Ok(Flow::Next);
            };
            let pods = self.list_pods().await?;
            for i in 0..ps.spec.replicas() {
                let pod_name = names::pod(&petset, i);
                let pod = pods.get(&pod_name);
                let step = plan::pod_step(self.t, &pod_name, pod, self.conds(), target.as_ref());
                if matches!(step, PodStep::StartEvict { .. } | PodStep::Evict { .. })
                    && !plan::petset_observed(&ps)
                {
                    // The replacement pod must come from the new template: wait until the
                    // PetSet controller has seen it (its status write wakes this request).
                    // The eviction is recorded now, in the write made before waiting, so that
                    // the eviction itself is all that is left to do once it has.
                    if let PodStep::StartEvict { uid } = &step {
                        let msg = plan::evict_message(&pod_name, uid);
                        let evict = ops::evict_pod(&pod_name);
                        if self.set(&evict, conditions::UNKNOWN, "EvictingPod", &msg) {
                            self.unsaved = true;
                        }
                        self.event("EvictPod", &msg);
                    }
                    return self.wait_petset_observed(&petset).await;
                }
                match step {
                    PodStep::Done => continue,
                    PodStep::StartEvict { uid } => {
                        let msg = plan::evict_message(&pod_name, &uid);
                        self.set(
                            &ops::evict_pod(&pod_name),
                            conditions::UNKNOWN,
                            "EvictingPod",
                            &msg,
                        );
                        self.save().await?;
                        self.event("EvictPod", &msg);
                        match self.evict(&pod_name, &uid).await? {
                            Eviction::Done => {
                                self.evicted(&pod_name, &uid).await?;
                                continue 'pass;
                            }
                            Eviction::Refused(why) => {
                                return self.eviction_refused(&pod_name, pod, &uid, why).await;
                            }
                        }
                    }
                    PodStep::Evict { uid } => match self.evict(&pod_name, &uid).await? {
                        Eviction::Done => {
                            self.evicted(&pod_name, &uid).await?;
                            continue 'pass;
                        }
                        Eviction::Refused(why) => {
                            return self.eviction_refused(&pod_name, pod, &uid, why).await;
                        }
                    },
                    PodStep::Evicted => {
                        let uid = self
                            .cond(&ops::evict_pod(&pod_name))
                            .and_then(|c| plan::recorded_uid(&c.message).map(str::to_string))
                            .unwrap_or_default();
                        self.evicted(&pod_name, &uid).await?;
                        continue 'pass;
                    }
                    PodStep::Ready => {
                        let check = ops::check_pod_running(&pod_name);
                        let msg = format!("pod {pod_name} is running and Ready");
                        // Written with the next pod's EvictPod record (or the step's end);
                        // nothing changed in the cluster, so the next pod is decided from
                        // the same list.
                        self.set_done(&check, "PodRunning", &msg);
                        self.step_done("CheckPodRunning");
                        self.event("PodReady", &msg);
                        continue;
                    }
                    PodStep::Wait { why } => {
                        let check = ops::check_pod_running(&pod_name);
                        if self.cond(&check).is_none() {
                            self.set(&check, conditions::UNKNOWN, "WaitingForPod", &why);
                            self.save().await?;
                        }
                        let c = self.cond(&check).cloned();
                        return match c.and_then(|c| Self::remaining(&c, self.timeout())) {
                            Some(left) => Ok(self.wait(left)),
                            None => {
                                let msg = format!(
                                    "pod {pod_name} did not become Ready{} within {}: {why}",
                                    target
                                        .as_ref()
                                        .map(|t| format!(" on {}", t.pgpool))
                                        .unwrap_or_default(),
                                    self.timeout_text()
                                );
                                self.fail("PodNotReady", msg).await?;
                                Ok(Flow::Next)
                            }
                        };
                    }
                    PodStep::Broken { why } => {
                        let msg = format!("{why}: the new pod will not become Ready");
                        self.fail("PodNotReady", msg).await?;
                        return Ok(Flow::Next);
                    }
                }
            }
            break;
        }
        let msg = format!("all pods of Pgpool {} were restarted", self.pgpool);
        self.set_done(ops::RESTART_PODS, "RestartPods", &msg);
        self.step_done(ops::RESTART_PODS);
        self.event("RestartPods", &msg);
        Ok(Flow::Next)
    }

    /// Wait (until the step's timeout, counted from the last step) for the PetSet controller
    /// to observe the PetSet's current generation.
    async fn wait_petset_observed(&mut self, petset: &str) -> Result<Flow> {
        let since = [ops::UPDATE_PETSETS, plan::start_condition(self.t)]
            .iter()
            .find_map(|t| self.cond(t).cloned());
        match since.and_then(|c| Self::remaining(&c, self.timeout())) {
            Some(left) => Ok(self.wait(left)),
            None => {
                let msg = format!(
                    "the PetSet controller did not take up the new spec of PetSet {petset} within \
                     {} (status.observedGeneration stayed behind metadata.generation)",
                    self.timeout_text()
                );
                self.fail("PetSetNotObserved", msg).await?;
                Ok(Flow::Next)
            }
        }
    }

    /// Evict pod `name` if it still has `uid`.
    async fn evict(&self, name: &str, uid: &str) -> Result<Eviction> {
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
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(Eviction::Done),
            // 429: a PodDisruptionBudget says no for now. Other API answers (500 for a pod
            // with two budgets, 403 without RBAC) are retried the same way until the step's
            // timeout, which then fails the request with the API's message.
            Err(e @ kube::Error::Api(_)) => Ok(Eviction::Refused(api_message(&e))),
            Err(e) => Err(e.into()),
        }
    }

    async fn evicted(&mut self, pod: &str, uid: &str) -> Result<()> {
        if let Ok(mut r) = self.ctx.refusals.lock() {
            r.remove(uid);
        }
        self.set(
            &ops::evict_pod(pod),
            conditions::TRUE,
            "PodEvicted",
            format!("evicted pod {pod} (uid {uid})"),
        );
        self.set(
            &ops::check_pod_running(pod),
            conditions::UNKNOWN,
            "WaitingForPod",
            format!("waiting for the replacement of pod {pod} to be Ready"),
        );
        self.save().await?;
        self.step_done("EvictPod");
        Ok(())
    }

    /// A PodDisruptionBudget refused the eviction: retry with backoff until the step's timeout.
    /// The `EvictPod--<pod>` condition says why and until when (written only when that
    /// changes, not on every retry).
    async fn eviction_refused(
        &mut self,
        pod: &str,
        pod_obj: Option<&Pod>,
        uid: &str,
        why: String,
    ) -> Result<Flow> {
        let n = self
            .ctx
            .refusals
            .lock()
            .map(|mut r| {
                let n = r.entry(uid.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        let c = self.cond(&ops::evict_pod(pod)).cloned();
        match c.and_then(|c| Self::remaining(&c, self.timeout()).map(|left| (c, left))) {
            Some((c, left)) => {
                tracing::info!(pod, attempt = n, reason = %why, "eviction refused; will retry");
                let budget = match pod_obj {
                    Some(p) => self.budget_of(p).await,
                    None => None,
                };
                let message = plan::eviction_refused_message(
                    pod,
                    uid,
                    &why,
                    budget.as_ref(),
                    &Self::deadline(&c, self.timeout()),
                );
                if self.set(
                    &ops::evict_pod(pod),
                    conditions::UNKNOWN,
                    "EvictionRefused",
                    message,
                ) {
                    self.save().await?;
                }
                let delay = backoff(Duration::from_millis(200), n, Duration::from_secs(10));
                Ok(Flow::Wait(delay.min(left)))
            }
            None => {
                if let Ok(mut r) = self.ctx.refusals.lock() {
                    r.remove(uid);
                }
                let msg = format!(
                    "pod {pod} could not be evicted within {}: {why}",
                    self.timeout_text()
                );
                self.fail("EvictionTimeout", msg).await?;
                Ok(Flow::Next)
            }
        }
    }

    /// The PodDisruptionBudget covering `pod`, if one can be read (a failure to read only
    /// makes the refusal's message shorter).
    async fn budget_of(&self, pod: &Pod) -> Option<PodDisruptionBudget> {
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        match api.list(&ListParams::default()).await {
            Ok(list) => plan::budget_of(pod, &list.items).cloned(),
            Err(error) => {
                tracing::debug!(%error, "cannot read PodDisruptionBudgets");
                None
            }
        }
    }

    async fn step_update_database(&mut self) -> Result<Flow> {
        let to = plan::target_version(&self.req).unwrap_or("").to_string();
        let patch = json!({ "spec": { "version": to } });
        match self
            .pgpools()
            .patch(&self.pgpool, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {
                let msg = format!("Pgpool {} was deleted", self.pgpool);
                self.fail("PgpoolNotFound", msg).await?;
                return Ok(Flow::Next);
            }
            Err(e) => return Err(e.into()),
        }
        let msg = format!("Pgpool {} spec.version is now {to}", self.pgpool);
        // Patching spec.version again after a crash changes nothing: written with the final
        // status.
        self.set_done(ops::UPDATE_DATABASE, "UpdateDatabase", &msg);
        self.step_done(ops::UPDATE_DATABASE);
        self.event("UpdateDatabase", &msg);
        Ok(Flow::Next)
    }

    async fn step_resume(&mut self) -> Result<Flow> {
        let message = match self.t {
            OpsRequestType::UpdateVersion => format!(
                "Pgpool {} was updated to version {}",
                self.pgpool,
                plan::target_version(&self.req).unwrap_or("")
            ),
            OpsRequestType::Restart => format!("the pods of Pgpool {} were restarted", self.pgpool),
        };
        self.finish(OpsRequestPhase::Successful, "Successful", message)
            .await?;
        Ok(Flow::Next)
    }

    /// A step failed. Before the pause nothing changed: end Failed now. Otherwise start the
    /// rollback, which ends Failed with this reason.
    async fn fail(&mut self, reason: &str, message: String) -> Result<()> {
        let start = plan::start_condition(self.t);
        if self.cond(start).is_none() {
            self.set(start, conditions::FALSE, reason, &message);
        }
        let in_progress: Vec<String> = self
            .conds()
            .iter()
            .filter(|c| c.status == conditions::UNKNOWN)
            .map(|c| c.type_.clone())
            .collect();
        for t in in_progress {
            self.set(&t, conditions::FALSE, reason, &message);
        }
        self.warning(reason, &message);
        if self.cond(ops::DATABASE_PAUSE_SUCCEEDED).is_none() {
            return self.finish(OpsRequestPhase::Failed, reason, message).await;
        }
        self.set(ops::ROLLBACK, conditions::UNKNOWN, reason, &message);
        self.save().await?;
        self.event("RollingBack", &format!("rolling back: {message}"));
        Ok(())
    }

    async fn step_rollback(&mut self) -> Result<Flow> {
        let Some(rb) = self.cond(ops::ROLLBACK).cloned() else {
            return Ok(Flow::Next);
        };
        let mut message = rb.message.clone();
        let paused = conditions::is_true(self.conds(), ops::DATABASE_PAUSE_SUCCEEDED);
        if self.t == OpsRequestType::UpdateVersion && paused {
            match self.rollback_update(&rb).await? {
                RollbackState::Wait(d) => return Ok(Flow::Wait(d)),
                RollbackState::Finished(note) => {
                    message = format!("{message}; {note}");
                }
            }
        }
        self.finish(OpsRequestPhase::Failed, &rb.reason, message)
            .await?;
        Ok(Flow::Next)
    }

    /// Put the PetSet back on the source images and restart the pods on other images, one at a
    /// time. Gives up (and says so) when `timeout * (replicas + 1)` has passed.
    async fn rollback_update(&mut self, rb: &Condition) -> Result<RollbackState> {
        let Some(pp) = self.fetch_pgpool().await? else {
            return Ok(RollbackState::Finished(format!(
                "Pgpool {} no longer exists",
                self.pgpool
            )));
        };
        let source_name = pp.spec.version.clone();
        let Some(source) = self
            .fetch_version(&source_name)
            .await?
            .map(|v| Images::of(&v))
        else {
            return Ok(RollbackState::Finished(format!(
                "cannot roll back: PgpoolVersion {source_name} not found"
            )));
        };
        if !self.set_petset_images(&source).await? {
            return Ok(RollbackState::Finished(format!(
                "PetSet {} no longer exists",
                names::petset(&self.pgpool)
            )));
        }
        let petset = names::petset(&self.pgpool);
        loop {
            let Some(ps) = self.petsets().get_opt(&petset).await? else {
                return Ok(RollbackState::Finished(format!(
                    "PetSet {petset} no longer exists"
                )));
            };
            let replicas = ps.spec.replicas();
            let limit = self
                .timeout()
                .saturating_mul(u32::try_from(replicas).unwrap_or(1).saturating_add(1));
            let Some(left) = Self::remaining(rb, limit) else {
                return Ok(RollbackState::Finished(format!(
                    "rolled the PetSet back to {source_name}, but not all pods were back on it \
                     and Ready within {:?}",
                    limit
                )));
            };
            let pods = self.list_pods().await?;
            let mut acted = false;
            for i in 0..replicas {
                let pod_name = names::pod(&petset, i);
                let pod = pods.get(&pod_name);
                match plan::rollback_pod_step(&pod_name, pod, &source) {
                    RollbackPodStep::Done => continue,
                    RollbackPodStep::Wait { .. } => {
                        return Ok(RollbackState::Wait(self.wait_dur(left)));
                    }
                    RollbackPodStep::Evict { ready } => {
                        let uid = pod.and_then(|p| p.metadata.uid.clone()).unwrap_or_default();
                        self.event(
                            "EvictPod",
                            &format!("rollback: evicting pod {pod_name} to bring it back on {source_name}"),
                        );
                        match self.evict(&pod_name, &uid).await? {
                            Eviction::Done => {}
                            Eviction::Refused(why) if ready => {
                                tracing::info!(pod = pod_name, reason = %why, "rollback eviction refused; will retry");
                                return Ok(RollbackState::Wait(Duration::from_secs(1).min(left)));
                            }
                            Eviction::Refused(_) => {
                                // A pod that is not Ready serves nothing: delete it.
                                let dp = DeleteParams {
                                    preconditions: Some(Preconditions {
                                        uid: Some(uid).filter(|u| !u.is_empty()),
                                        resource_version: None,
                                    }),
                                    ..DeleteParams::default()
                                };
                                match self.pods().delete(&pod_name, &dp).await {
                                    Ok(_) => {}
                                    Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                                    Err(e) => return Err(e.into()),
                                }
                            }
                        }
                        acted = true;
                        break;
                    }
                }
            }
            if !acted {
                return Ok(RollbackState::Finished(format!(
                    "rolled back: PetSet and pods are on version {source_name} again"
                )));
            }
        }
    }

    fn wait_dur(&self, d: Duration) -> Duration {
        d.min(self.ctx.max_requeue).max(Duration::from_millis(50))
    }

    /// End the request: resume the Pgpool if this request may have paused it, write the final
    /// status, drop the finalizer, wake the next request.
    async fn finish(
        &mut self,
        phase: OpsRequestPhase,
        reason: &str,
        message: String,
    ) -> Result<()> {
        if self.cond(ops::DATABASE_PAUSE_SUCCEEDED).is_some() {
            if self.resume_pgpool().await? {
                self.event("Resumed", &format!("resumed Pgpool {}", self.pgpool));
            }
            self.step_done("Resume");
        }
        if self.cond(ops::ROLLBACK).is_some() {
            self.set(ops::ROLLBACK, conditions::TRUE, reason, &message);
        }
        match phase {
            OpsRequestPhase::Successful => {
                self.set(ops::SUCCESSFUL, conditions::TRUE, "Successful", &message);
            }
            OpsRequestPhase::Skipped => {
                self.set(plan::SKIPPED, conditions::TRUE, reason, &message);
            }
            _ => {
                self.set(ops::FAILED, conditions::TRUE, reason, &message);
            }
        }
        self.set_phase(phase);
        // The finalizer goes first, so that a final phase means the request is done with; a
        // deleted request may then vanish before its final status is written.
        self.remove_finalizer().await?;
        match self.save().await {
            Err(ReconcileError::Kube(e)) if is_status(&e, 404) => {}
            other => other?,
        }
        {
            let started = self
                .cond(plan::start_condition(self.t))
                .map(|c| c.last_transition_time.0.as_second())
                .or_else(|| {
                    self.req
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.as_second())
                })
                .unwrap_or_else(|| Utc::now().timestamp());
            let seconds = (Utc::now().timestamp() - started).max(0) as f64;
            self.ctx.metrics.finished(self.t, phase, seconds);
            if let Ok(mut m) = self.ctx.marks.lock() {
                m.remove(self.req.metadata.uid.as_deref().unwrap_or_default());
            }
        }
        if phase == OpsRequestPhase::Successful {
            self.event("Successful", &message);
        } else {
            self.warning(phase.as_str(), &message);
        }
        Ok(())
    }
}

enum PauseState {
    Gone,
    Requested,
    Acknowledged,
}

enum Eviction {
    Done,
    Refused(String),
}

enum RollbackState {
    Wait(Duration),
    Finished(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(300);
        assert_eq!(backoff(base, 1, cap), Duration::from_millis(500));
        assert_eq!(backoff(base, 2, cap), Duration::from_secs(1));
        assert_eq!(backoff(base, 4, cap), Duration::from_secs(4));
        assert_eq!(backoff(base, 40, cap), cap);
    }
}
