//! `pgpool-ops-manager`: carries out day-2 operations requested with `PgpoolOpsRequest`
//! objects (DESIGN.md §5 and §6).
//!
//! Each request type is a state machine whose only state is the request's status conditions
//! and the cluster's objects, so the ops-manager can be stopped at any moment and started
//! again: it continues where it stopped without repeating finished work.
//!
//! Entry point: [`run`]. The pure rules (validation, queue, per-pod decisions) are in
//! [`plan`]; the metrics in [`metrics`].

use std::time::Duration;

use operator_kit::ControllerHandle;
use prometheus::Registry;

mod controller;
mod events;
pub mod metrics;
pub mod plan;

/// Finalizer the ops-manager puts on a request while it is Progressing, so that a deleted
/// request still resumes (and, if needed, rolls back) its Pgpool before it goes.
pub const REQUEST_FINALIZER: &str = "ops.kubedb.com/pgpool-ops-manager";

/// The controller's name in `/readyz` and in the reconcile metrics' `controller` label.
pub const CONTROLLER: &str = metrics::CONTROLLER;

/// Event reporter (controller) name.
pub const REPORTER: &str = "pgpool-ops-manager";

/// Settings of [`run`].
#[derive(Clone, Debug)]
pub struct OpsManagerConfig {
    /// Namespace to watch; `None` for all namespaces.
    pub namespace: Option<String>,
    /// Requests reconciled at the same time (at least 1).
    pub concurrency: u16,
    /// This replica's identity (pod name), the reporting instance of events.
    pub instance: String,
    /// Longest wait before a waiting request is looked at again although nothing changed.
    /// Progress is driven by watch events; this is only a safety net (default 60 s).
    pub max_requeue: Duration,
}

impl Default for OpsManagerConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            concurrency: 4,
            instance: REPORTER.to_string(),
            max_requeue: Duration::from_secs(60),
        }
    }
}

/// Errors that stop [`run`] before the controller starts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The metrics could not be registered (for example, registered twice in one registry).
    #[error("cannot register the ops-manager metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Run the PgpoolOpsRequest controller until `handle` says stop; then stop taking new work,
/// drop the reconciles still running (every step is idempotent) and return.
///
/// Registers its metrics in `registry` (once per registry). Marks `handle` synced once the
/// request cache holds the first list. The binary gets `handle` from
/// [`operator_kit::RunContext::controller`] with the name [`CONTROLLER`].
pub async fn run(
    client: kube::Client,
    config: OpsManagerConfig,
    registry: &Registry,
    handle: ControllerHandle,
) -> Result<(), Error> {
    let metrics = metrics::Metrics::register(registry)?;
    controller::run(client, config, metrics, handle).await;
    Ok(())
}
