//! State shared by all reconciles of the controller.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};
use operator_kit::backoff::ErrorBackoff;
use pgpool_api::PgpoolOpsRequest;

use crate::events::EventQueue;
use crate::metrics::Metrics;

/// Shared state of the controller. Everything that matters is in the cluster; the maps here
/// only hold backoff counters and timing marks for metrics.
pub(super) struct Ctx {
    pub(super) client: Client,
    pub(super) store: Store<PgpoolOpsRequest>,
    pub(super) metrics: Metrics,
    /// Events go out in the background: a reconcile never waits for one.
    pub(super) events: EventQueue,
    /// Serialises queue decisions (read the queue, then mark one request Progressing).
    pub(super) queue_lock: tokio::sync::Mutex<()>,
    /// Consecutive failed reconciles per request, for the error backoff (0.5 s .. 5 min).
    pub(super) errors: ErrorBackoff<ObjectRef<PgpoolOpsRequest>>,
    /// Refused evictions in a row per pod UID, for the eviction backoff (200 ms .. 10 s).
    pub(super) refusals: ErrorBackoff<String>,
    /// When the last step of a request (by UID) ended, for step durations.
    pub(super) marks: Mutex<HashMap<String, Instant>>,
    pub(super) max_requeue: Duration,
}
