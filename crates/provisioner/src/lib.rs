//! `pgpool-provisioner`: turns `Pgpool` objects into running Pgpool-II poolers (DESIGN.md §4),
//! and runs the PetSet controller unless another one is installed.
//!
//! [`run`] is the entry point for the binary and for tests.

pub mod cache;
pub mod config;
pub mod metrics;
pub mod petset;
pub mod pgpool;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::Client;
use operator_kit::{CancellationToken, EventRecorder};
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
    let ctx = Arc::new(pgpool::Context::new(
        client.clone(),
        recorder,
        metrics.clone(),
        phases,
        config.resync,
        config.error_backoff,
    ));
    let settings = pgpool::ControllerSettings {
        namespace: config.namespace.clone(),
        concurrency: config.concurrency,
    };

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
    let pgpools = pgpool::run_controller(ctx, settings, token.clone(), pgpool_ready);
    let result = if config.petset_controller {
        let petset_config = petset::PetSetConfig {
            namespace: config.namespace.clone(),
            concurrency: config.concurrency,
            resync: config.resync,
        };
        let stop = token.clone();
        // The PetSet part counts as synced when the PetSet controller says so, or when a
        // list+watch of PetSets has delivered its initial state, whichever comes first: the
        // controller's own signal can be lost (see `pgpool::store_ready`).
        let once = Arc::new(std::sync::Once::new());
        let petset_ready = {
            let (once, part_ready) = (once.clone(), part_ready.clone());
            move || once.call_once(&part_ready)
        };
        let fallback = tokio::spawn(petsets_listed(
            client.clone(),
            config.namespace.clone(),
            move || once.call_once(&part_ready),
        ));
        let failed = token.clone();
        let petsets = async move {
            let result = petset::run(
                client,
                petset_config,
                registry,
                async move { stop.cancelled().await },
                petset_ready,
            )
            .await;
            if result.is_err() {
                // one controller failing stops the other, so that `run` reports it at once
                failed.cancel();
            }
            result
        };
        let ((), petsets) = tokio::join!(pgpools, petsets);
        fallback.abort();
        petsets.map_err(Error::PetSet)
    } else {
        tracing::info!("the PetSet controller is off");
        pgpools.await;
        Ok(())
    };
    watcher_task.abort();
    result
}

/// Calls `done` once a list+watch of PetSets has delivered the initial state.
async fn petsets_listed(client: Client, namespace: Option<String>, done: impl FnOnce()) {
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};
    let api: kube::Api<pgpool_api::PetSet> = match &namespace {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::all(client),
    };
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            done();
            return;
        }
    }
}
