//! `pgpool-provisioner`: turns `Pgpool` objects into running Pgpool-II poolers (DESIGN.md §4),
//! and runs the PetSet controller unless another one is installed.
//!
//! [`run`] is the entry point for the binary and for tests.

pub mod catalog;
pub mod metrics;
pub mod pgpool;
pub mod render;

use petset_controller as petset;

use std::time::Duration;

use kube::Client;
use operator_kit::api::namespaced_or_all;
use operator_kit::cache::{Feed, PodLite};
use operator_kit::reconcile_metrics::ReconcileMetrics;
use operator_kit::{ControllerHandle, EventRecorder, TaskGuard};
use prometheus::Registry;

use crate::metrics::PhaseGauge;

/// The Pgpool controller's name in `/readyz` and in the reconcile metrics' `controller`
/// label.
pub const PGPOOL_CONTROLLER: &str = pgpool::reconcile::CONTROLLER_LABEL;

/// The PetSet controller's name in `/readyz` and in the reconcile metrics' `controller`
/// label.
pub const PETSET_CONTROLLER: &str = petset::CONTROLLER;

/// Reporting controller name of the provisioner's events.
pub const REPORTER: &str = "pgpool-provisioner";

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// Namespace to watch; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Objects reconciled at the same time, per controller.
    pub concurrency: u16,
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

/// The handles of the provisioner's controllers: the Pgpool controller's, and the PetSet
/// controller's when it runs (`None`: another PetSet controller is installed). Each is
/// registered in `/readyz` under its own name ([`PGPOOL_CONTROLLER`], [`PETSET_CONTROLLER`])
/// and marked synced when its own caches are filled.
#[derive(Debug, Clone)]
pub struct Controllers {
    /// The Pgpool controller.
    pub pgpool: ControllerHandle,
    /// The PetSet controller, when it runs.
    pub petset: Option<ControllerHandle>,
}

impl Controllers {
    /// Handles registered in `readiness` that stop with `shutdown`: the Pgpool controller's,
    /// and the PetSet controller's when `petset_controller` is set.
    pub fn new(
        readiness: &operator_kit::Readiness,
        shutdown: &operator_kit::CancellationToken,
        petset_controller: bool,
    ) -> Self {
        Self {
            pgpool: ControllerHandle::new(readiness, PGPOOL_CONTROLLER, shutdown.clone()),
            petset: petset_controller
                .then(|| ControllerHandle::new(readiness, PETSET_CONTROLLER, shutdown.clone())),
        }
    }
}

/// Runs the provisioner's controllers until their handles say stop: the Pgpool controller,
/// and the PetSet controller when `controllers.petset` is set. Each controller marks its
/// handle synced once its caches are filled. The reconcile metrics (operator-kit's, under
/// `controller="pgpool"` and `controller="petset"`) and the phase gauge go into `registry`
/// (register once per registry).
pub async fn run(
    client: Client,
    config: ProvisionerConfig,
    registry: &Registry,
    controllers: Controllers,
) -> Result<(), Error> {
    let reconciles = ReconcileMetrics::register(registry)?;
    let phases = PhaseGauge::register(registry)?;
    let Controllers {
        pgpool: pgpool_handle,
        petset: petset_handle,
    } = controllers;

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
    let mut pods = if petset_handle.is_some() {
        let mut feed = petset::pod_feed(&client, ns);
        feed.subscribe(wiring.pod_subscriber());
        feed
    } else {
        Feed::new(
            namespaced_or_all(&client, ns),
            kube::runtime::watcher::Config::default().labels(&pgpool::managed_selector()),
            PodLite::trim,
        )
    };
    let (pod_tx, pod_rx) = futures::channel::mpsc::unbounded();
    pods.subscribe(pgpool::pod_subscriber(pod_tx));
    let (pod_store, pods_synced) = (pods.store(), pods.synced());
    let _pod_feed = TaskGuard::spawn(pods.run());

    let pgpools = pgpool::run_controller(
        client.clone(),
        recorder,
        reconciles.controller(PGPOOL_CONTROLLER),
        phases,
        settings,
        pgpool::PodInput {
            store: pod_store.clone(),
            synced: pods_synced.clone(),
            triggers: pod_rx,
        },
        pgpool_handle.clone(),
    );
    let Some(petset_handle) = petset_handle else {
        tracing::info!("the PetSet controller is off");
        pgpools.await;
        return Ok(());
    };
    let petset_config = petset::PetSetConfig {
        namespace: config.namespace.clone(),
        concurrency: config.concurrency,
        resync: config.resync,
    };
    let petsets = async move {
        let result = petset::run_wired(
            client,
            petset_config,
            reconciles.controller(PETSET_CONTROLLER),
            petset_handle.clone(),
            wiring,
            pod_store,
            pods_synced,
        )
        .await;
        if result.is_err() {
            // one controller failing stops the other, so that `run` reports it at once
            petset_handle.token().cancel();
            pgpool_handle.token().cancel();
        }
        result
    };
    let ((), petsets) = tokio::join!(pgpools, petsets);
    petsets.map_err(Error::PetSet)
}
