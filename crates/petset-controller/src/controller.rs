//! Running the PetSet controller: its watch caches, the wiring of their events to the
//! expectations and triggers, and kube's [`Controller`] driving [`crate::reconcile`].
//!
//! Reconciles read PetSets, pods and revisions from watch caches in compact form (see
//! [`crate::cache`] and [`operator_kit::cache::PodLite`]), so a PetSet whose pods are in place costs
//! no request. A step that creates a pod or a revision reads the PetSet from the API server
//! first (the new pod must come from the newest template), and every write is recorded in
//! [`Expectations`] until the caches show it.

use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use futures::channel::mpsc;
use kube::Client;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use operator_kit::api::namespaced_or_all;
use operator_kit::cache::{Feed, PodLite, Synced};
use operator_kit::reconcile_metrics::{ControllerMetrics, ReconcileMetrics};
use operator_kit::{ControllerHandle, EventRecorder, TaskGuard};
use pgpool_api::names::{LABEL_POD_NAME, LABEL_REVISION_HASH};
use prometheus::Registry;

use crate::CONTROLLER;
use crate::cache::{PetSetLite, RevisionLite};
use crate::config::{FIELD_MANAGER, PetSetConfig};
use crate::context::{Context, controller_of, key_of, new_backoff};
use crate::error::Error;
use crate::expectations::Expectations;
use crate::reconcile::{error_policy, reconcile};

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
            let key = owner_key(&owner);
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
        namespaced_or_all::<PodLite>(client, namespace),
        watcher::Config::default().labels(LABEL_POD_NAME),
        PodLite::trim,
        is_petset_pod,
    )
}

/// Runs the PetSet controller until `handle` says stop: watches PetSets and the Pods and
/// ControllerRevisions they own (in `cfg.namespace`, or everywhere), and drives each
/// PetSet's pods towards its spec. Marks `handle` synced once its caches are filled.
/// Registers operator-kit's reconcile metrics in `registry` and reports under
/// `controller="petset"` ([`CONTROLLER`]); a binary that runs other controllers too
/// registers them once and calls [`run_wired`].
///
/// Reconcile failures are retried with a per-PetSet exponential backoff (1 s doubling up to
/// 5 min); they never end the controller.
pub async fn run(
    client: Client,
    cfg: PetSetConfig,
    registry: &Registry,
    handle: ControllerHandle,
) -> Result<(), Error> {
    let metrics = ReconcileMetrics::register(registry)?.controller(CONTROLLER);
    let wiring = Wiring::default();
    let mut pods = pod_feed(&client, cfg.namespace.as_deref());
    pods.subscribe(wiring.pod_subscriber());
    let (store, synced) = (pods.store(), pods.synced());
    let _feed = TaskGuard::spawn(pods.run());
    run_wired(client, cfg, metrics, handle, wiring, store, synced).await
}

/// [`run`] with the reconcile metrics and a pod feed set up by the caller (subscribed with
/// [`Wiring::pod_subscriber`]) and running.
pub async fn run_wired(
    client: Client,
    cfg: PetSetConfig,
    metrics: ControllerMetrics,
    handle: ControllerHandle,
    wiring: Wiring,
    pods: Store<PodLite>,
    pods_synced: Synced,
) -> Result<(), Error> {
    let ns = cfg.namespace.as_deref();
    let Wiring {
        expectations,
        tx,
        rx: triggers,
    } = wiring;

    // revisions: the feed records what it saw and triggers the owner
    let mut revisions = Feed::new(
        namespaced_or_all::<RevisionLite>(&client, ns),
        watcher::Config::default().labels(LABEL_REVISION_HASH),
        RevisionLite::trim,
    );
    {
        let (expectations, tx) = (expectations.clone(), tx.clone());
        revisions.subscribe(move |rev: &RevisionLite, gone: bool| {
            let Some(owner) = controller_of(&rev.metadata) else {
                return;
            };
            let key = owner_key(&owner);
            expectations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .revision_seen(&key, rev.metadata.name.as_deref().unwrap_or_default(), gone);
            let _ = tx.unbounded_send(owner);
        });
    }
    let revisions_synced = revisions.synced();
    let revision_store = revisions.store();
    let _revision_feed = TaskGuard::spawn(revisions.run());

    // PetSets, compact; their events tell the expectations which version the cache holds
    let (petset_store, writer) = reflector::store::<PetSetLite>();
    let (petsets_synced_tx, petsets_synced_rx) = tokio::sync::watch::channel(false);
    let petset_events = {
        let expectations = expectations.clone();
        watcher(
            namespaced_or_all::<PetSetLite>(&client, ns),
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
        backoff: new_backoff(),
        pods,
        revisions: revision_store,
        synced: Synced::all([pods_synced.clone(), revisions_synced.clone()]),
        expectations,
    });

    let _ticker = TaskGuard::spawn(operator_kit::cache::resync(
        petset_store.clone(),
        tx.clone(),
        cfg.resync,
    ));
    let controller = Controller::for_stream(petset_events, petset_store)
        .reconcile_on(triggers)
        .with_config(controller::Config::default().concurrency(cfg.concurrency))
        .graceful_shutdown_on(handle.shutdown_signal());

    let all_synced = Synced::all([petsets_synced, pods_synced, revisions_synced]);
    let _readiness = handle.set_synced_when(async move {
        let synced = all_synced.wait().await;
        if synced {
            tracing::debug!("PetSet controller caches synced");
        }
        synced
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
                    gone.backoff.forget(&key);
                    gone.expectations().petset_gone(&key);
                }
                Err(e) => tracing::warn!(error = %e, "PetSet controller"),
            }
            futures::future::ready(())
        })
        .await;
    drop(tx);
    tracing::info!("PetSet controller stopped");
    Ok(())
}

/// The expectations key of a PetSet: `<namespace>/<name>`.
fn owner_key(owner: &ObjectRef<PetSetLite>) -> String {
    format!(
        "{}/{}",
        owner.namespace.as_deref().unwrap_or_default(),
        owner.name
    )
}
