//! The Pgpool controller (DESIGN.md §4): Pgpool -> Secrets, Services, PetSet, PDB,
//! ServiceMonitor, and the Pgpool's status.
//!
//! Pipeline per reconcile ([`reconcile`], the orchestrator): [`dereference`] (reads) ->
//! [`validate`] (pure) -> [`build`] (pure, one file per child object) -> [`apply`] (server-side
//! apply, skipped when nothing differs, see [`diff`]) -> [`status`]. Around it: [`cleanup`]
//! (`spec.halted`, the finalizer and the deletion policy), [`fast_path`] (skip to the status
//! when nothing changed), [`context`] (caches and shared state) and [`error`].
//!
//! Reads come from watch caches: Pgpools, PgpoolVersions and AppBindings in full, pods in
//! compact form, and the metadata of every Secret and Service and of its PetSets and PDBs in
//! an [`index`]. A reconcile whose inputs did not change since the last full one (see
//! [`memo`]) only computes the status, without a request; otherwise the children that exist
//! are read from the API server before they are compared.

pub mod apply;
pub mod build;
pub mod cached;
pub mod cleanup;
pub mod context;
pub mod dereference;
pub mod diff;
pub mod error;
pub mod fast_path;
pub mod index;
pub mod memo;
pub mod paused;
pub mod reconcile;
pub mod status;
pub mod tls;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use operator_kit::api::namespaced_or_all;
use operator_kit::cache::{Feed, PodLite, Synced, trim_meta};
use operator_kit::reconcile_metrics::ControllerMetrics;
use operator_kit::{ControllerHandle, EventRecorder, TaskGuard};
use pgpool_api::{AppBinding, PgpoolVersion, names};
use tracing::{debug, warn};

pub use apply::FIELD_MANAGER;
pub use cached::CachedPgpool;
pub use context::{Caches, Context};
pub use error::ReconcileError;

use crate::metrics::PhaseGauge;
use dereference::{SecretCache, ServiceMonitorDiscovery};
use index::{Change, KindIndex, MetaIndex, PetSetReplicas};
use memo::Memos;

/// Label selector of the objects the provisioner labels (children and pods).
pub fn managed_selector() -> String {
    format!("{}={}", names::LABEL_NAME, names::LABEL_NAME_VALUE)
}

/// Pgpools named in `meta`'s owner references.
fn owners(meta: &ObjectMeta) -> Vec<ObjectRef<CachedPgpool>> {
    let ns = meta.namespace.clone().unwrap_or_default();
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == "Pgpool" && o.api_version.starts_with("kubedb.com/"))
        .map(|o| ObjectRef::new(&o.name).within(&ns))
        .collect()
}

fn pgpools_using_appbindings(
    pgpools: &Store<CachedPgpool>,
    matches: impl Fn(&(String, String)) -> bool,
) -> Vec<ObjectRef<CachedPgpool>> {
    pgpools
        .state()
        .iter()
        .filter(|p| p.refs.appbindings.iter().any(&matches))
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// Secret -> Pgpools: its owners; for a Secret no Pgpool owns, the Pgpools that read it
/// (auth, user config, AppBinding Secret).
fn map_secret(
    s: &ObjectMeta,
    pgpools: &Store<CachedPgpool>,
    appbindings: &Store<AppBinding>,
) -> Vec<ObjectRef<CachedPgpool>> {
    let out = owners(s);
    if !out.is_empty() {
        return out;
    }
    let ns = s.namespace.clone().unwrap_or_default();
    let name = s.name.clone().unwrap_or_default();
    let referring = appbindings_in(appbindings, &ns, |ab| {
        ab.spec.secret.as_ref().is_some_and(|r| r.name == name)
    });
    pgpools
        .state()
        .iter()
        .filter(|p| {
            let same_ns = p.namespace().as_deref() == Some(ns.as_str());
            let reads = same_ns
                && (p.refs.auth_secret == name
                    || p.refs.config_secret.as_deref() == Some(name.as_str())
                    || p.refs.tls_secrets.contains(&name));
            reads || p.refs.appbindings.iter().any(|r| referring.contains(r))
        })
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// Service -> Pgpools: its owners; for a Service no Pgpool owns, the Pgpools whose
/// AppBinding's standby Service it is.
fn map_service(
    s: &ObjectMeta,
    pgpools: &Store<CachedPgpool>,
    appbindings: &Store<AppBinding>,
) -> Vec<ObjectRef<CachedPgpool>> {
    let out = owners(s);
    if !out.is_empty() {
        return out;
    }
    let ns = s.namespace.clone().unwrap_or_default();
    let name = s.name.clone().unwrap_or_default();
    let standby_of = appbindings_in(appbindings, &ns, |ab| {
        ab.spec
            .client_config
            .service
            .as_ref()
            .is_some_and(|svc| names::standby_service(&svc.name) == name)
    });
    if standby_of.is_empty() {
        return out;
    }
    pgpools_using_appbindings(pgpools, |r| standby_of.contains(r))
}

/// The AppBindings in namespace `ns` for which `uses` holds, as (namespace, name).
fn appbindings_in(
    appbindings: &Store<AppBinding>,
    ns: &str,
    uses: impl Fn(&AppBinding) -> bool,
) -> Vec<(String, String)> {
    appbindings
        .state()
        .iter()
        .filter(|ab| ab.namespace().as_deref() == Some(ns) && uses(ab))
        .map(|ab| (ns.to_string(), ab.name_any()))
        .collect()
}

/// Pod -> its Pgpool, by the instance label.
fn map_pod(p: &PodLite) -> Option<ObjectRef<CachedPgpool>> {
    let labels = p.labels();
    if labels.get(names::LABEL_NAME).map(String::as_str) != Some(names::LABEL_NAME_VALUE) {
        return None;
    }
    let instance = labels.get(names::LABEL_INSTANCE)?;
    Some(ObjectRef::new(instance).within(&p.namespace().unwrap_or_default()))
}

/// Where the Pgpool controller gets its pods: a (possibly shared) feed's store and whether it
/// is filled, and the triggers its [`pod_subscriber`] sends.
pub struct PodInput {
    /// The pods.
    pub store: Store<PodLite>,
    /// Whether the store is filled.
    pub synced: Synced,
    /// Pgpools whose pods changed.
    pub triggers: mpsc::UnboundedReceiver<ObjectRef<CachedPgpool>>,
}

/// The subscriber to put on a pod feed: triggers the pod's Pgpool through `tx`.
pub fn pod_subscriber(
    tx: mpsc::UnboundedSender<ObjectRef<CachedPgpool>>,
) -> impl Fn(&PodLite, bool) + Send + Sync + 'static {
    move |pod: &PodLite, _gone: bool| {
        if let Some(p) = map_pod(pod) {
            let _ = tx.unbounded_send(p);
        }
    }
}

/// Settings of the Pgpool controller.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// Namespace to watch; all when `None`.
    pub namespace: Option<String>,
    /// Reconciles at the same time.
    pub concurrency: u16,
    /// Requeue interval of a healthy Pgpool.
    pub resync: Duration,
    /// First retry delay after an error.
    pub error_backoff: Duration,
}

/// Runs the Pgpool controller until `handle` says stop. Marks `handle` synced once its
/// caches are filled.
pub async fn run_controller(
    client: Client,
    recorder: EventRecorder,
    metrics: ControllerMetrics,
    phases: PhaseGauge,
    settings: ControllerSettings,
    pods: PodInput,
    handle: ControllerHandle,
) {
    let ns = settings.namespace.as_deref();
    let managed = watcher::Config::default().labels(&managed_selector());
    let (tx, triggers) = mpsc::unbounded::<ObjectRef<CachedPgpool>>();
    let mut tasks: Vec<TaskGuard> = Vec::new();

    // Pgpools: the controller's own store
    let (pgpools, writer) = reflector::store::<CachedPgpool>();
    let (pgpools_synced_tx, pgpools_synced) = index::sync_pair();
    let pgpool_events = watcher(
        namespaced_or_all::<CachedPgpool>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .inspect(move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            pgpools_synced_tx.send_replace(true);
        }
    })
    .applied_objects();

    // catalog entries and AppBindings, in full
    let mut versions = Feed::new(
        Api::<PgpoolVersion>::all(client.clone()),
        watcher::Config::default(),
        |v: &mut PgpoolVersion| trim_meta(&mut v.metadata),
    );
    {
        let (pgpools, tx) = (pgpools.clone(), tx.clone());
        versions.subscribe(move |v: &PgpoolVersion, _| {
            let name = v.name_any();
            for p in pgpools.state().iter().filter(|p| p.refs.version == name) {
                let _ = tx.unbounded_send(ObjectRef::from_obj(&**p));
            }
        });
    }
    let mut appbindings = Feed::new(
        namespaced_or_all::<AppBinding>(&client, ns),
        watcher::Config::default(),
        |ab: &mut AppBinding| trim_meta(&mut ab.metadata),
    );
    {
        let (pgpools, tx) = (pgpools.clone(), tx.clone());
        appbindings.subscribe(move |ab: &AppBinding, _| {
            let key = (ab.namespace().unwrap_or_default(), ab.name_any());
            for p in pgpools_using_appbindings(&pgpools, |r| *r == key) {
                let _ = tx.unbounded_send(p);
            }
        });
    }

    // metadata of Secrets, Services (all: children and the objects Pgpools point at),
    // PetSets and PDBs (ours)
    let index = Arc::new(MetaIndex::default());
    let memos = Arc::new(Memos::default());
    let secrets = Arc::new(SecretCache::default());
    let notifier = {
        let (pgpools, appbindings_store, tx, memos, secrets) = (
            pgpools.clone(),
            appbindings.store(),
            tx.clone(),
            memos.clone(),
            secrets.clone(),
        );
        move |kind: index::Kind, change: Change<'_>| {
            let (meta, deleted) = match change {
                Change::Applied(m) => (m, false),
                Change::Deleted(m) => (m, true),
                Change::Relisted => {
                    // anything may have changed while the watch was down
                    memos.invalidate_all();
                    for p in pgpools.state() {
                        let _ = tx.unbounded_send(ObjectRef::from_obj(&*p));
                    }
                    return;
                }
            };
            let targets = match kind {
                index::Kind::Secret => map_secret(meta, &pgpools, &appbindings_store),
                index::Kind::Service => map_service(meta, &pgpools, &appbindings_store),
                _ => owners(meta),
            };
            if deleted {
                let keys: Vec<String> = targets
                    .iter()
                    .map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name))
                    .collect();
                memos.invalidate(keys.iter().map(String::as_str));
                if kind == index::Kind::Secret {
                    secrets.evict(
                        meta.namespace.as_deref().unwrap_or_default(),
                        meta.name.as_deref().unwrap_or_default(),
                    );
                }
            }
            for r in targets {
                let _ = tx.unbounded_send(r);
            }
        }
    };
    let notifier = Arc::new(notifier);
    let mut synced_parts = vec![versions.synced(), appbindings.synced(), pods.synced.clone()];
    fn meta_parts<K>(o: &PartialObjectMeta<K>) -> (&ObjectMeta, index::Record) {
        (&o.metadata, index::Record::of(&o.metadata, None))
    }
    macro_rules! index_feed {
        ($kind:expr, $field:ident, $events:expr, $parts:expr) => {{
            let (sync_tx, synced) = index::sync_pair();
            synced_parts.push(synced);
            let (index, notifier) = (index.clone(), notifier.clone());
            let events = $events;
            tasks.push(TaskGuard::spawn(async move {
                let target: &KindIndex = &index.$field;
                index::run_feed(events, target, $parts, sync_tx, |c| notifier($kind, c)).await;
            }));
        }};
    }
    index_feed!(
        index::Kind::Secret,
        secrets,
        watcher(
            namespaced_or_all::<PartialObjectMeta<Secret>>(&client, ns),
            watcher::Config::default()
        )
        .default_backoff(),
        meta_parts::<Secret>
    );
    index_feed!(
        index::Kind::Service,
        services,
        watcher(
            namespaced_or_all::<PartialObjectMeta<Service>>(&client, ns),
            watcher::Config::default()
        )
        .default_backoff(),
        meta_parts::<Service>
    );
    index_feed!(
        index::Kind::PetSet,
        petsets,
        watcher(
            namespaced_or_all::<PetSetReplicas>(&client, ns),
            managed.clone()
        )
        .default_backoff(),
        |p: &PetSetReplicas| (&p.metadata, p.record())
    );
    index_feed!(
        index::Kind::Pdb,
        pdbs,
        watcher(
            namespaced_or_all::<PartialObjectMeta<PodDisruptionBudget>>(&client, ns),
            managed.clone()
        )
        .default_backoff(),
        meta_parts::<PodDisruptionBudget>
    );

    let caches = Caches {
        versions: versions.store(),
        appbindings: appbindings.store(),
        pods: pods.store,
        index,
        secrets,
        discovery: ServiceMonitorDiscovery::new(settings.resync),
        memos,
        synced: Synced::all(synced_parts.iter().cloned()),
        namespace: settings.namespace.clone(),
        tls_renewals: Default::default(),
    };
    tasks.push(TaskGuard::spawn(versions.run()));
    tasks.push(TaskGuard::spawn(appbindings.run()));

    let all_synced = Synced::all(synced_parts.into_iter().chain([pgpools_synced]));
    let _readiness = handle.set_synced_when(async move {
        let synced = all_synced.wait().await;
        if synced {
            debug!("Pgpool controller caches filled");
        }
        synced
    });

    let ctx = Arc::new(Context::new(
        client,
        recorder,
        metrics,
        phases,
        settings.resync,
        settings.error_backoff,
        caches,
    ));
    // the resync: every Pgpool once per period
    tasks.push(TaskGuard::spawn(operator_kit::cache::resync(
        pgpools.clone(),
        tx.clone(),
        settings.resync,
    )));
    let gone = ctx.clone();
    Controller::for_stream(pgpool_events, pgpools)
        .reconcile_on(futures::stream::select(triggers, pods.triggers))
        .with_config(controller::Config::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(handle.shutdown_signal())
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| {
            match result {
                Ok((obj, _)) => debug!(pgpool = %obj.name, "reconciled"),
                Err(controller::Error::ReconcilerFailed(_, _)) => {}
                Err(controller::Error::ObjectNotFound(obj)) => {
                    let key = format!(
                        "{}/{}",
                        obj.namespace.as_deref().unwrap_or_default(),
                        obj.name
                    );
                    gone.caches.memos.forget(&key);
                    gone.caches.tls_renewals.forget(&key);
                }
                Err(e) => warn!("Pgpool controller: {e}"),
            }
            futures::future::ready(())
        })
        .await;
    drop(tx);
    drop(tasks);
}
