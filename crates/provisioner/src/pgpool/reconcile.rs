//! One reconcile of a Pgpool: dereference -> validate -> build -> apply -> status, plus the
//! finalizer (deletion policies), `spec.halted` and the pause handshake.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use operator_kit::EventRecorder;
use pgpool_api::pgpool::DeletionPolicy;
use pgpool_api::{PetSet, Pgpool, names};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, info, warn};

use super::build::{Desired, build};
use super::dereference::{self, Children, Observed};
use super::diff::{is_subset, stamp_hash};
use super::status::{EventNote, Health, Outcome, is_paused, next_status};
use super::validate::{
    AuthPlan, Plan, RandomGenerator, auth_externally_managed, is_ours, validate,
};
use crate::metrics::{ControllerMetrics, PhaseGauge};

/// Field manager of every server-side apply of the provisioner.
pub const FIELD_MANAGER: &str = "pgpool-provisioner";
/// The `controller` label of this controller's metrics.
pub const CONTROLLER_LABEL: &str = "pgpool";
/// Longest wait between retries of a failing Pgpool.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Errors of a reconcile; all are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A request to the API server failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be serialized.
    #[error("cannot serialize an object: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The status write kept meeting newer versions of the Pgpool.
    #[error("the Pgpool kept changing while its status was written")]
    StatusConflict,
}

/// Shared state of the Pgpool controller.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Events as `pgpool-provisioner`.
    pub recorder: EventRecorder,
    /// Reconcile counters and durations.
    pub metrics: ControllerMetrics,
    /// Pgpools by phase.
    pub phases: PhaseGauge,
    /// Requeue interval of a healthy Pgpool.
    pub resync: Duration,
    /// First retry delay after an error; doubles per failure up to [`MAX_BACKOFF`].
    pub error_backoff: Duration,
    failures: Mutex<HashMap<ObjectRef<Pgpool>, u32>>,
    warned_do_not_terminate: Mutex<HashSet<String>>,
}

impl Context {
    /// A context.
    pub fn new(
        client: Client,
        recorder: EventRecorder,
        metrics: ControllerMetrics,
        phases: PhaseGauge,
        resync: Duration,
        error_backoff: Duration,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            phases,
            resync,
            error_backoff,
            failures: Mutex::default(),
            warned_do_not_terminate: Mutex::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<Pgpool>, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The delay before retry number `failures` (1-based).
pub fn backoff_delay(base: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Entry point for the controller runtime.
pub async fn reconcile(obj: Arc<Pgpool>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = reconcile_inner(&obj, &ctx).await;
    ctx.metrics
        .observe(CONTROLLER_LABEL, result.is_ok(), started.elapsed());
    if result.is_ok() {
        ctx.failures().remove(&ObjectRef::from_obj(&*obj));
    }
    result
}

/// Retry with exponential backoff per Pgpool; a Warning event on the first failure in a row.
pub fn error_policy(obj: Arc<Pgpool>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*obj);
    let failures = {
        let mut map = ctx.failures();
        let n = map.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff_delay(ctx.error_backoff, failures);
    warn!(
        pgpool = %obj.name_any(),
        namespace = obj.namespace().unwrap_or_default(),
        failures,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed: {err}"
    );
    if failures == 1 {
        let ctx = ctx.clone();
        let message = format!("reconcile failed, retrying: {err}");
        tokio::spawn(async move {
            ctx.recorder
                .warning(&*obj, "ReconcileFailed", &message)
                .await;
        });
    }
    Action::requeue(delay)
}

fn has_finalizer(p: &Pgpool) -> bool {
    p.finalizers().iter().any(|f| f == names::FINALIZER)
}

async fn set_finalizers(
    api: &Api<Pgpool>,
    p: &Pgpool,
    finalizers: Vec<String>,
) -> Result<(), ReconcileError> {
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": p.resource_version(),
    }});
    api.patch(
        &p.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn reconcile_inner(obj: &Pgpool, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = obj.name_any();
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<Pgpool> = Api::namespaced(ctx.client.clone(), &ns);
    // Work from a fresh read: a cached copy may predate a pause request.
    let Some(pgpool) = api.get_opt(&name).await? else {
        if let Some(uid) = obj.uid() {
            ctx.phases.forget(&uid);
        }
        return Ok(Action::await_change());
    };
    let uid = pgpool.uid().unwrap_or_default();
    let paused = is_paused(pgpool.status.as_ref());

    if pgpool.meta().deletion_timestamp.is_some() {
        if !has_finalizer(&pgpool) {
            return Ok(Action::await_change());
        }
        if paused {
            let health = observe_health(ctx, &pgpool, true).await?;
            write_status(ctx, &api, &name, &Outcome::Paused(health)).await?;
            return Ok(Action::requeue(ctx.resync));
        }
        let policy = pgpool.spec.deletion_policy();
        if policy == DeletionPolicy::DoNotTerminate {
            let first = ctx
                .warned_do_not_terminate
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(uid.clone());
            if first {
                ctx.recorder
                    .warning(
                        &pgpool,
                        "DeletionRefused",
                        "deletionPolicy is DoNotTerminate: nothing is deleted and the Pgpool stays Terminating; set spec.deletionPolicy to Delete, Halt or WipeOut to let it go",
                    )
                    .await;
            }
            return Ok(Action::requeue(ctx.resync));
        }
        cleanup(ctx, &pgpool, policy == DeletionPolicy::WipeOut).await?;
        let rest: Vec<String> = pgpool
            .finalizers()
            .iter()
            .filter(|f| *f != names::FINALIZER)
            .cloned()
            .collect();
        set_finalizers(&api, &pgpool, rest).await?;
        ctx.phases.forget(&uid);
        ctx.warned_do_not_terminate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid);
        info!(pgpool = %name, namespace = %ns, ?policy, "Pgpool deleted");
        return Ok(Action::await_change());
    }

    if paused {
        let health = observe_health(ctx, &pgpool, true).await?;
        write_status(ctx, &api, &name, &Outcome::Paused(health)).await?;
        return Ok(Action::requeue(ctx.resync));
    }

    if !has_finalizer(&pgpool) {
        let mut finalizers = pgpool.finalizers().to_vec();
        finalizers.push(names::FINALIZER.to_string());
        set_finalizers(&api, &pgpool, finalizers).await?;
    }

    if pgpool.spec.is_halted() {
        halt(ctx, &pgpool).await?;
        write_status(ctx, &api, &name, &Outcome::Halted).await?;
        return Ok(Action::requeue(ctx.resync));
    }

    let observed = dereference::dereference(&ctx.client, &pgpool).await?;
    match validate(&pgpool, &observed, &mut RandomGenerator) {
        Err(problem) => {
            debug!(pgpool = %name, namespace = %ns, reason = problem.reason, "cannot provision");
            let health = observe_health(ctx, &pgpool, false).await?;
            write_status(ctx, &api, &name, &Outcome::Problem(&problem, health)).await?;
        }
        Ok(plan) => {
            let desired = build(&pgpool, &plan);
            let writes = apply(ctx, &pgpool, &plan, &desired, &observed).await?;
            if writes > 0 {
                debug!(pgpool = %name, namespace = %ns, writes, "children applied");
            }
            let health = observe_health(ctx, &pgpool, false).await?;
            let outcome = Outcome::Running {
                health,
                notes: &plan.notes,
            };
            write_status(ctx, &api, &name, &outcome).await?;
        }
    }
    Ok(Action::requeue(ctx.resync))
}

/// Counts Ready pods. `from_petset`: take the desired count from the PetSet (while paused the
/// Pgpool's replicas may not have reached it).
async fn observe_health(
    ctx: &Context,
    pgpool: &Pgpool,
    from_petset: bool,
) -> Result<Health, ReconcileError> {
    let name = pgpool.name_any();
    let ns = pgpool.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let list = pods
        .list(&ListParams::default().labels(&names::selector_string(&name)))
        .await?;
    let ready = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    let mut replicas = pgpool.spec.replicas();
    if from_petset {
        let petsets: Api<PetSet> = Api::namespaced(ctx.client.clone(), &ns);
        if let Some(ps) = petsets.get_opt(&names::petset(&name)).await? {
            replicas = ps.spec.replicas();
        }
    }
    Ok(Health {
        replicas,
        ready: i32::try_from(ready).unwrap_or(i32::MAX),
    })
}

/// Read-modify-write of the status with the resourceVersion just read; retried on 409.
async fn write_status(
    ctx: &Context,
    api: &Api<Pgpool>,
    name: &str,
    outcome: &Outcome<'_>,
) -> Result<(), ReconcileError> {
    for _ in 0..5 {
        let Some(fresh) = api.get_opt(name).await? else {
            return Ok(());
        };
        let (status, events) = next_status(
            fresh.status.as_ref(),
            fresh.metadata.generation,
            fresh.spec.is_halted(),
            outcome,
            Utc::now(),
        );
        let uid = fresh.uid().unwrap_or_default();
        if let Some(phase) = status.phase {
            ctx.phases.set(&uid, phase);
        }
        if fresh.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = fresh.clone();
        updated.status = Some(status);
        match api
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {
                publish(ctx, &fresh, events).await;
                return Ok(());
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReconcileError::StatusConflict)
}

async fn publish(ctx: &Context, pgpool: &Pgpool, events: Vec<EventNote>) {
    for e in events {
        if e.warning {
            ctx.recorder.warning(pgpool, &e.reason, &e.message).await;
        } else {
            ctx.recorder.normal(pgpool, &e.reason, &e.message).await;
        }
    }
}

/// Server-side applies `desired` unless `observed` already has everything it says.
/// Returns whether a write was made.
async fn ensure<K>(api: &Api<K>, desired: &K, observed: Option<&K>) -> Result<bool, ReconcileError>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let mut value = serde_json::to_value(desired)?;
    stamp_hash(&mut value);
    if let Some(o) = observed {
        if o.meta().deletion_timestamp.is_some() {
            // wait until it is gone; its deletion triggers the next reconcile
            return Ok(false);
        }
        if is_subset(&value, &serde_json::to_value(o)?) {
            return Ok(false);
        }
    }
    let name = desired.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&value),
    )
    .await?;
    Ok(true)
}

fn owned_by(meta: &kube::core::ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|o| o.uid == uid)
}

/// Deletes `observed` when it exists, is not being deleted already and belongs to `uid`.
async fn delete_owned<K>(
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
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

struct Apis {
    secrets: Api<Secret>,
    services: Api<Service>,
    petsets: Api<PetSet>,
    pdbs: Api<PodDisruptionBudget>,
}

impl Apis {
    fn new(client: &Client, ns: &str) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), ns),
            services: Api::namespaced(client.clone(), ns),
            petsets: Api::namespaced(client.clone(), ns),
            pdbs: Api::namespaced(client.clone(), ns),
        }
    }
}

async fn apply(
    ctx: &Context,
    pgpool: &Pgpool,
    plan: &Plan,
    desired: &Desired,
    observed: &Observed,
) -> Result<usize, ReconcileError> {
    let apis = Apis::new(&ctx.client, &plan.namespace);
    let uid = plan.owner.uid.as_str();
    let c = &observed.children;
    let mut writes = 0usize;
    let mut count = |written: bool| writes += usize::from(written);

    if let Some(auth) = &desired.auth_secret {
        match &plan.auth {
            AuthPlan::Managed { exists: false, .. } => {
                // create, never overwrite: a Secret that appeared meanwhile keeps its password
                let mut value = serde_json::to_value(auth)?;
                stamp_hash(&mut value);
                let secret: Secret = serde_json::from_value(value)?;
                apis.secrets.create(&PostParams::default(), &secret).await?;
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
                count(true);
            }
            _ => count(ensure(&apis.secrets, auth, c.auth_secret.as_ref()).await?),
        }
    }
    count(
        ensure(
            &apis.secrets,
            &desired.config_secret,
            c.config_secret.as_ref(),
        )
        .await?,
    );
    count(
        ensure(
            &apis.services,
            &desired.primary_service,
            c.primary_service.as_ref(),
        )
        .await?,
    );
    count(
        ensure(
            &apis.services,
            &desired.pods_service,
            c.pods_service.as_ref(),
        )
        .await?,
    );
    match &desired.stats_service {
        Some(s) => count(ensure(&apis.services, s, c.stats_service.as_ref()).await?),
        None => count(delete_owned(&apis.services, c.stats_service.as_ref(), uid).await?),
    }
    count(ensure(&apis.petsets, &desired.petset, c.petset.as_ref()).await?);
    match &desired.pdb {
        Some(p) => count(ensure(&apis.pdbs, p, c.pdb.as_ref()).await?),
        None => count(delete_owned(&apis.pdbs, c.pdb.as_ref(), uid).await?),
    }
    if let Some(ar) = &observed.service_monitor_api {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &plan.namespace, ar);
        match &desired.service_monitor {
            Some(sm) => count(ensure(&api, sm, c.service_monitor.as_ref()).await?),
            None => count(delete_owned(&api, c.service_monitor.as_ref(), uid).await?),
        }
    }
    Ok(writes)
}

async fn existing_children(
    ctx: &Context,
    pgpool: &Pgpool,
) -> Result<(Children, Apis, Option<Api<DynamicObject>>), ReconcileError> {
    let ns = pgpool.namespace().unwrap_or_default();
    let (sm_api, _) = dereference::usable_service_monitor_api(&ctx.client, pgpool).await?;
    let children = dereference::children(&ctx.client, pgpool, sm_api.as_ref()).await?;
    let sm = sm_api.map(|ar| Api::namespaced_with(ctx.client.clone(), &ns, &ar));
    Ok((children, Apis::new(&ctx.client, &ns), sm))
}

/// `spec.halted`: remove the PetSet (and so the pods), the Services, the PDB and the
/// ServiceMonitor; keep the Secrets.
async fn halt(ctx: &Context, pgpool: &Pgpool) -> Result<(), ReconcileError> {
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
    if auth_externally_managed(&pgpool.spec) || !is_ours(auth, &pgpool.name_any()) {
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
                Err(kube::Error::Api(e)) if e.code == 404 => {}
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
