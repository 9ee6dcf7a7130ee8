//! `pgpool-provisioner`: turns `Pgpool` objects into running Pgpool-II poolers (DESIGN.md §4),
//! and runs the PetSet controller unless another one is installed.
//!
//! [`run`] is the entry point for the binary and for tests.

pub mod catalog;
pub mod config;
pub mod metrics;
pub mod pgpool;
pub mod render;

/// The watch caches and the event recorder live in operator-kit; these paths keep the
/// controllers' `crate::cache` and `crate::events` imports short.
pub use operator_kit::{cache, events};

use petset_controller as petset;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::Client;
use operator_kit::CancellationToken;

use crate::events::EventRecorder;
use prometheus::Registry;

use crate::metrics::{ControllerMetrics, PhaseGauge};

/// Reporting controller name of the provisioner's events.
pub const REPORTER: &str = "pgpool-provisioner";

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// Namespace to watch; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Objects reconciled at the same time, per controller.
    pub concurrency: u16,
    /// Also run the PetSet controller (PetSet -> Pods).
    pub petset_controller: bool,
    /// Requeue interval of a Pgpool that reconciled fine (a safety net: changes are watched).
    pub resync: Duration,
    /// Event reporting instance (the pod name).
    pub instance: String,
    /// First retry delay after a failed reconcile; doubles per failure, up to 5 minutes.
    pub error_backoff: Duration,
}

impl Default for ProvisionerConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            concurrency: 4,
            petset_controller: true,
            resync: Duration::from_secs(300),
            instance: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| REPORTER.to_string()),
            error_backoff: Duration::from_secs(1),
        }
    }
}

/// Errors that stop [`run`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The metrics could not be registered (for example registered twice in one registry).
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The PetSet controller could not run.
    #[error("PetSet controller: {0}")]
    PetSet(#[source] petset::Error),
}

/// Runs the provisioner's controllers until `shutdown` resolves: the Pgpool controller, and
/// the PetSet controller when `config.petset_controller` is set. Calls `ready` once the caches
/// are filled. Metrics go into `registry` (register once per registry).
pub async fn run(
    client: Client,
    config: ProvisionerConfig,
    registry: &Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl Fn() + Send + Sync + 'static,
) -> Result<(), Error> {
    let metrics = ControllerMetrics::register(registry)?;
    let phases = PhaseGauge::register(registry)?;

    let token = CancellationToken::new();
    let watcher_task = {
        let token = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            token.cancel();
        })
    };

    let recorder = EventRecorder::new(client.clone(), REPORTER, config.instance.clone());
    let settings = pgpool::ControllerSettings {
        namespace: config.namespace.clone(),
        concurrency: config.concurrency,
        resync: config.resync,
        error_backoff: config.error_backoff,
    };

    // One pod cache for both controllers: the PetSet controller's pods (which include the
    // Pgpools' pods), or the Pgpools' pods alone when another PetSet controller runs.
    let ns = config.namespace.as_deref();
    let wiring = petset::Wiring::default();
    let mut pods = if config.petset_controller {
        let mut feed = petset::pod_feed(&client, ns);
        feed.subscribe(wiring.pod_subscriber());
        feed
    } else {
        let api = match ns {
            Some(ns) => kube::Api::namespaced(client.clone(), ns),
            None => kube::Api::all(client.clone()),
        };
        cache::Feed::new(
            api,
            kube::runtime::watcher::Config::default().labels(&pgpool::managed_selector()),
            cache::PodLite::trim,
        )
    };
    let (pod_tx, pod_rx) = futures::channel::mpsc::unbounded();
    pods.subscribe(pgpool::pod_subscriber(pod_tx));
    let (pod_store, pods_synced) = (pods.store(), pods.synced());
    let pod_feed = tokio::spawn(pods.run());

    // `ready` once every controller has filled its caches
    let parts = if config.petset_controller { 2 } else { 1 };
    let synced = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(ready);
    let part_ready = move || {
        let n = synced.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::debug!(n, parts, "controller caches synced");
        if n == parts {
            ready();
        }
    };

    let pgpool_ready = part_ready.clone();
    let pgpools = pgpool::run_controller(
        client.clone(),
        recorder,
        metrics,
        phases,
        settings,
        pgpool::PodInput {
            store: pod_store.clone(),
            synced: pods_synced.clone(),
            triggers: pod_rx,
        },
        token.clone(),
        pgpool_ready,
    );
    let result = if config.petset_controller {
        let petset_config = petset::PetSetConfig {
            namespace: config.namespace.clone(),
            concurrency: config.concurrency,
            resync: config.resync,
        };
        let stop = token.clone();
        let failed = token.clone();
        let petsets = async move {
            let result = petset::run_wired(
                client,
                petset_config,
                registry,
                async move { stop.cancelled().await },
                part_ready,
                wiring,
                pod_store,
                pods_synced,
            )
            .await;
            if result.is_err() {
                // one controller failing stops the other, so that `run` reports it at once
                failed.cancel();
            }
            result
        };
        let ((), petsets) = tokio::join!(pgpools, petsets);
        petsets.map_err(Error::PetSet)
    } else {
        tracing::info!("the PetSet controller is off");
        pgpools.await;
        Ok(())
    };
    pod_feed.abort();
    watcher_task.abort();
    result
}
