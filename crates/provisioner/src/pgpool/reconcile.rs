//! One reconcile of a Pgpool: dereference -> validate -> build -> apply -> status, plus the
//! finalizer (deletion policies), `spec.halted` and the pause handshake.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use pgpool_api::pgpool::DeletionPolicy;
use pgpool_api::{AppBinding, PetSet, Pgpool, PgpoolStatus, PgpoolVersion, names};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, info, warn};

use super::build::{Desired, build};
use super::cached::CachedPgpool;
use super::dereference::{
    self, Children, Observed, SecretCache, ServiceMonitorDiscovery, Sources, child_slots,
};
use super::diff::{is_subset, stamp_hash};
use super::index::{Kind, MetaIndex, fingerprint_of};
use super::memo::{ChildMemo, Memo, MemoOutcome, Memos};
use super::status::{EventNote, Health, Outcome, PodRevisions, is_paused, next_status};
use super::validate::{
    AuthPlan, Plan, RandomGenerator, auth_externally_managed, is_ours, validate,
};
use crate::cache::{PodLite, Synced};
use crate::events::EventRecorder;
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
    /// A write carried the resourceVersion of a cached copy that is no longer the newest; the
    /// newer version's watch event triggers the next reconcile.
    #[error("the Pgpool changed since it was cached (409 Conflict); will look again")]
    Conflict,
}

impl ReconcileError {
    fn from_write(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 409 => ReconcileError::Conflict,
            e => ReconcileError::Kube(e),
        }
    }
}

/// The watch caches the Pgpool controller reads.
pub struct Caches {
    /// Catalog entries.
    pub versions: Store<PgpoolVersion>,
    /// AppBindings.
    pub appbindings: Store<AppBinding>,
    /// Pods (compact).
    pub pods: Store<PodLite>,
    /// Metadata of Secrets, Services, PetSets and PDBs.
    pub index: Arc<MetaIndex>,
    /// Contents of Secrets the Pgpools point at but do not own.
    pub secrets: Arc<SecretCache>,
    /// The ServiceMonitor API.
    pub discovery: ServiceMonitorDiscovery,
    /// What the last full reconcile of each Pgpool saw.
    pub memos: Arc<Memos>,
    /// Whether the caches above are filled.
    pub synced: Synced,
    /// The namespace the caches cover; `None`: all.
    pub namespace: Option<String>,
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
    /// Resync interval (every Pgpool is looked at once per interval; see
    /// [`crate::cache::resync`]).
    pub resync: Duration,
    /// First retry delay after an error; doubles per failure up to [`MAX_BACKOFF`].
    pub error_backoff: Duration,
    /// The watch caches.
    pub caches: Caches,
    failures: Mutex<HashMap<ObjectRef<CachedPgpool>, u32>>,
    warned_do_not_terminate: Mutex<HashSet<String>>,
    /// Status writes the Pgpool cache may not show yet, by uid.
    written: Mutex<HashMap<String, WrittenStatus>>,
}

/// This controller's last status write of a Pgpool: the version it made and the status, and
/// the versions before it that the cache may still show (the one written over and those of
/// earlier writes of this controller).
struct WrittenStatus {
    older: Vec<Option<String>>,
    made: Option<String>,
    status: PgpoolStatus,
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
        caches: Caches,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            phases,
            resync,
            error_backoff,
            caches,
            failures: Mutex::default(),
            warned_do_not_terminate: Mutex::default(),
            written: Mutex::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<CachedPgpool>, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sources(&self) -> Sources<'_> {
        Sources {
            client: &self.client,
            versions: &self.caches.versions,
            appbindings: &self.caches.appbindings,
            index: &self.caches.index,
            secrets: &self.caches.secrets,
            discovery: &self.caches.discovery,
            namespace: self.caches.namespace.as_deref(),
        }
    }
}

/// The delay before retry number `failures` (1-based).
pub fn backoff_delay(base: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Entry point for the controller runtime.
pub async fn reconcile(
    obj: Arc<CachedPgpool>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = match obj.to_pgpool() {
        Ok(pgpool) => reconcile_inner(&pgpool, &ctx).await,
        Err(e) => Err(e.into()),
    };
    ctx.metrics
        .observe(CONTROLLER_LABEL, result.is_ok(), started.elapsed());
    if result.is_ok() {
        ctx.failures().remove(&ObjectRef::from_obj(&*obj));
    }
    result
}

/// Retry with exponential backoff per Pgpool; a Warning event on the first failure in a row.
pub fn error_policy(obj: Arc<CachedPgpool>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*obj);
    let failures = {
        let mut map = ctx.failures();
        let n = map.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff_delay(ctx.error_backoff, failures);
    if matches!(err, ReconcileError::Conflict) {
        debug!(pgpool = %obj.name_any(), failures, "{err}");
    } else {
        warn!(
            pgpool = %obj.name_any(),
            namespace = obj.namespace().unwrap_or_default(),
            failures,
            retry_in_ms = delay.as_millis() as u64,
            "reconcile failed: {err}"
        );
    }
    if failures == 1 && !matches!(err, ReconcileError::Conflict) {
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
    .await
    .map_err(ReconcileError::from_write)?;
    Ok(())
}

/// One reconcile of the cached `pgpool`. Every write of the Pgpool carries the cached
/// resourceVersion, so acting on a copy that is not the newest ends in a 409 (and the newer
/// copy's event triggers the next reconcile): in particular, the Paused handshake holds, as a
/// reconcile never acknowledges or writes past a pause it has not seen.
async fn reconcile_inner(pgpool: &Pgpool, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = pgpool.name_any();
    let ns = pgpool.namespace().unwrap_or_default();
    let key = format!("{ns}/{name}");
    let api: Api<Pgpool> = Api::namespaced(ctx.client.clone(), &ns);
    if !ctx.caches.synced.is_synced() {
        ctx.caches.synced.wait().await;
    }
    let uid = pgpool.uid().unwrap_or_default();
    let paused = is_paused(pgpool.status.as_ref());

    if pgpool.meta().deletion_timestamp.is_some() {
        ctx.caches.memos.forget(&key);
        if !has_finalizer(pgpool) {
            return Ok(Action::await_change());
        }
        if paused {
            let health = observe_health(ctx, pgpool, true);
            write_status(ctx, &api, pgpool, &Outcome::Paused(health)).await?;
            return Ok(Action::await_change());
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
                        pgpool,
                        "DeletionRefused",
                        "deletionPolicy is DoNotTerminate: nothing is deleted and the Pgpool stays Terminating; set spec.deletionPolicy to Delete, Halt or WipeOut to let it go",
                    )
                    .await;
            }
            return Ok(Action::await_change());
        }
        cleanup(ctx, pgpool, policy == DeletionPolicy::WipeOut).await?;
        let rest: Vec<String> = pgpool
            .finalizers()
            .iter()
            .filter(|f| *f != names::FINALIZER)
            .cloned()
            .collect();
        set_finalizers(&api, pgpool, rest).await?;
        ctx.phases.forget(&uid);
        ctx.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid);
        ctx.warned_do_not_terminate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&uid);
        info!(pgpool = %name, namespace = %ns, ?policy, "Pgpool deleted");
        return Ok(Action::await_change());
    }

    if paused {
        let health = observe_health(ctx, pgpool, true);
        write_status(ctx, &api, pgpool, &Outcome::Paused(health)).await?;
        return Ok(Action::await_change());
    }

    if !has_finalizer(pgpool) {
        let mut finalizers = pgpool.finalizers().to_vec();
        finalizers.push(names::FINALIZER.to_string());
        set_finalizers(&api, pgpool, finalizers).await?;
        // the patch changed the Pgpool: its event brings the next reconcile
        return Ok(Action::await_change());
    }

    if pgpool.spec.is_halted() {
        ctx.caches.memos.forget(&key);
        halt(ctx, pgpool).await?;
        write_status(ctx, &api, pgpool, &Outcome::Halted).await?;
        return Ok(Action::await_change());
    }

    // Nothing it depends on changed since the last full reconcile: only the status.
    let src = ctx.sources();
    // (a ServiceMonitor CRD may have been installed since: looked up once per resync)
    ctx.caches.discovery.api(&ctx.client).await?;
    let deps = dereference::dependencies(&src, pgpool);
    let memo = ctx.caches.memos.get(&key);
    if let Some(memo) = &memo {
        let sm = match memo.child(Kind::ServiceMonitor, &names::stats_service(&name)) {
            // not watched: read it (only Pgpools that have one)
            Some(_) => current_service_monitor(ctx, pgpool).await?,
            None => None,
        };
        let index = &ctx.caches.index;
        let valid = memo.still_valid(&uid, deps, Instant::now(), |kind, child| match kind {
            Kind::ServiceMonitor => sm,
            _ => index.fingerprint(kind, &ns, child),
        });
        if valid.is_none() && tracing::enabled!(tracing::Level::DEBUG) {
            let why = memo.changed(&uid, deps, Instant::now(), |kind, child| match kind {
                Kind::ServiceMonitor => sm,
                _ => index.fingerprint(kind, &ns, child),
            });
            debug!(pgpool = %name, namespace = %ns, changed = why.as_deref().unwrap_or("?"), "full reconcile");
        }
        if let Some(outcome) = valid {
            let health = observe_health(ctx, pgpool, false);
            let revisions = observe_revisions(ctx, pgpool);
            let outcome = match outcome {
                MemoOutcome::Running { notes } => Outcome::Running {
                    health,
                    notes: notes.as_slice(),
                    revisions: revisions.as_ref(),
                },
                MemoOutcome::Problem(problem) => Outcome::Problem(problem, health),
            };
            write_status(ctx, &api, pgpool, &outcome).await?;
            return Ok(Action::await_change());
        }
    }

    // Full reconcile: read what changed, apply what differs, remember what was seen.
    let ticket = ctx.caches.memos.ticket();
    let slots = child_slots(pgpool, true);
    let before: Vec<Option<u64>> = slots
        .iter()
        .map(|(kind, child)| ctx.caches.index.fingerprint(*kind, &ns, child))
        .collect();
    let known = |kind: Kind, child: &str| {
        memo.as_ref()
            .and_then(|m| m.child(kind, child))
            .is_some_and(|c| c.value.is_some())
    };
    let observed = dereference::dereference(&src, pgpool, known).await?;
    let (outcome, after) = match validate(pgpool, &observed, &mut RandomGenerator) {
        Err(problem) => {
            debug!(pgpool = %name, namespace = %ns, reason = problem.reason, "cannot provision");
            (
                MemoOutcome::Problem(problem),
                observed_fingerprints(&observed),
            )
        }
        Ok(plan) => {
            let desired = build(pgpool, &plan);
            let (writes, after) = apply(ctx, pgpool, &plan, &desired, &observed).await?;
            if writes > 0 {
                debug!(pgpool = %name, namespace = %ns, writes, "children applied");
            }
            (
                MemoOutcome::Running {
                    notes: plan.notes.clone(),
                },
                after,
            )
        }
    };
    let has_sm_api = observed.service_monitor_api.is_some();
    let children = slots
        .into_iter()
        .zip(before)
        .filter(|((kind, _), _)| *kind != Kind::ServiceMonitor || has_sm_api)
        .map(|((kind, child), prev)| ChildMemo {
            value: after.get(&(kind, child.clone())).copied().flatten(),
            prev: if kind == Kind::ServiceMonitor {
                None
            } else {
                prev
            },
            kind,
            name: child,
        })
        .collect();
    let health = observe_health(ctx, pgpool, false);
    let revisions = observe_revisions(ctx, pgpool);
    let status_outcome = match &outcome {
        MemoOutcome::Running { notes } => Outcome::Running {
            health,
            notes: notes.as_slice(),
            revisions: revisions.as_ref(),
        },
        MemoOutcome::Problem(problem) => Outcome::Problem(problem, health),
    };
    write_status(ctx, &api, pgpool, &status_outcome).await?;
    let memo = Memo {
        uid,
        deps,
        children,
        outcome,
        at: Instant::now(),
    };
    ctx.caches.memos.store(&key, memo, ticket);
    Ok(Action::await_change())
}

/// Fingerprints of the children as observed, by (kind, name).
type Fingerprints = HashMap<(Kind, String), Option<u64>>;

fn fingerprint<K: Resource>(kind: Kind, obj: Option<&K>) -> Option<u64> {
    obj.map(|o| fingerprint_of(kind, o.meta()))
}

fn observed_fingerprints(observed: &Observed) -> Fingerprints {
    let c = &observed.children;
    let mut out = Fingerprints::new();
    let mut add = |kind: Kind, meta: Option<&kube::core::ObjectMeta>| {
        if let Some(m) = meta
            && let Some(name) = &m.name
        {
            out.insert((kind, name.clone()), Some(fingerprint_of(kind, m)));
        }
    };
    add(Kind::Secret, c.auth_secret.as_ref().map(|o| o.meta()));
    add(Kind::Secret, c.config_secret.as_ref().map(|o| o.meta()));
    add(Kind::Service, c.primary_service.as_ref().map(|o| o.meta()));
    add(Kind::Service, c.pods_service.as_ref().map(|o| o.meta()));
    add(Kind::Service, c.stats_service.as_ref().map(|o| o.meta()));
    add(Kind::PetSet, c.petset.as_ref().map(|o| o.meta()));
    add(Kind::Pdb, c.pdb.as_ref().map(|o| o.meta()));
    add(
        Kind::ServiceMonitor,
        c.service_monitor.as_ref().map(|o| o.meta()),
    );
    out
}

/// The fingerprint of the Pgpool's ServiceMonitor now (read from the API server).
async fn current_service_monitor(
    ctx: &Context,
    pgpool: &Pgpool,
) -> Result<Option<u64>, ReconcileError> {
    let api = ctx.caches.discovery.api(&ctx.client).await?;
    let (_, _, sm) = dereference::read_service_monitor(&ctx.client, pgpool, api).await?;
    Ok(fingerprint(Kind::ServiceMonitor, sm.as_ref()))
}

/// Whether `p` is one of the pods of `pgpool` (`name` in `ns`).
fn is_pod_of(p: &PodLite, ns: &str, name: &str) -> bool {
    let labels = p.labels();
    p.metadata.namespace.as_deref() == Some(ns)
        && labels.get(names::LABEL_INSTANCE).map(String::as_str) == Some(name)
        && labels.get(names::LABEL_NAME).map(String::as_str) == Some(names::LABEL_NAME_VALUE)
}

/// The revisions the pods run against the PetSet's (from the caches; a terminating pod
/// counts until it is gone); `None` until the PetSet reports an update revision.
fn observe_revisions(ctx: &Context, pgpool: &Pgpool) -> Option<PodRevisions> {
    let name = pgpool.name_any();
    let ns = pgpool.namespace().unwrap_or_default();
    let record = ctx.caches.index.petsets.get(&ns, &names::petset(&name))?;
    let rollout = record.rollout?;
    let mut pods: Vec<(String, Option<String>)> = ctx
        .caches
        .pods
        .state()
        .iter()
        .filter(|p| is_pod_of(p, &ns, &name))
        .map(|p| {
            (
                p.name_any(),
                p.labels().get(names::LABEL_REVISION_HASH).cloned(),
            )
        })
        .collect();
    pods.sort_unstable();
    Some(PodRevisions {
        current_revision: rollout.current_revision.clone(),
        update_revision: rollout.update_revision.clone()?,
        pods,
    })
}

/// Counts Ready pods (from the cache). `from_petset`: take the desired count from the PetSet
/// (while paused the Pgpool's replicas may not have reached it).
fn observe_health(ctx: &Context, pgpool: &Pgpool, from_petset: bool) -> Health {
    let name = pgpool.name_any();
    let ns = pgpool.namespace().unwrap_or_default();
    let ready = ctx
        .caches
        .pods
        .state()
        .iter()
        .filter(|p| is_pod_of(p, &ns, &name) && p.is_ready())
        .count();
    let mut replicas = pgpool.spec.replicas();
    if from_petset && let Some(ps) = ctx.caches.index.petsets.get(&ns, &names::petset(&name)) {
        replicas = ps.replicas.unwrap_or(1);
    }
    Health {
        replicas,
        ready: i32::try_from(ready).unwrap_or(i32::MAX),
    }
}

/// Writes the status `outcome` leads to over the cached `pgpool`'s, if it differs, with the
/// cached resourceVersion (a newer Pgpool makes it a [`ReconcileError::Conflict`]). When the
/// cache still holds the version this controller's last status write was made over, that write
/// is the base instead (its status and the version it made): nobody else wrote in between, or
/// the write fails with a conflict.
async fn write_status(
    ctx: &Context,
    api: &Api<Pgpool>,
    pgpool: &Pgpool,
    outcome: &Outcome<'_>,
) -> Result<(), ReconcileError> {
    let uid = pgpool.uid().unwrap_or_default();
    let cached_rv = pgpool.resource_version();
    // the versions the next write's base is newer than
    let (base_rv, base_status, mut older) = {
        let mut written = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
        match written.get(&uid) {
            Some(w) if w.older.contains(&cached_rv) => {
                let mut older = w.older.clone();
                older.push(w.made.clone());
                (w.made.clone(), Some(w.status.clone()), older)
            }
            _ => {
                written.remove(&uid);
                (cached_rv.clone(), pgpool.status.clone(), vec![cached_rv])
            }
        }
    };
    if older.len() > 8 {
        older.remove(0);
    }
    let (status, events) = next_status(
        base_status.as_ref(),
        pgpool.metadata.generation,
        pgpool.spec.is_halted(),
        outcome,
        Utc::now(),
    );
    if let Some(phase) = status.phase {
        ctx.phases.set(&uid, phase);
    }
    if base_status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut updated = pgpool.clone();
    updated.metadata.resource_version = base_rv.clone();
    updated.status = Some(status.clone());
    match api
        .replace_status(&pgpool.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(made) => {
            ctx.written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    uid,
                    WrittenStatus {
                        older,
                        made: made.resource_version(),
                        status,
                    },
                );
            publish(ctx, pgpool, events).await;
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => {
            ctx.written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&uid);
            Err(ReconcileError::from_write(e))
        }
    }
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
/// Returns the object written, if a write was made.
async fn ensure<K>(
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

/// Applies the children that differ and deletes those no longer wanted. Returns the number
/// of writes and the fingerprints of the children as they are now.
async fn apply(
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
