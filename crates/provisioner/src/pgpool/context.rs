//! The shared state of the Pgpool controller: its watch caches, its clients and what it
//! remembers between reconciles.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};
use operator_kit::EventRecorder;
use operator_kit::backoff::{ErrorBackoff, EventPolicy};
use operator_kit::cache::{PodLite, Synced};
use operator_kit::reconcile_metrics::ControllerMetrics;
use pgpool_api::{AppBinding, PgpoolVersion};

use super::cached::CachedPgpool;
use super::dereference::{SecretCache, ServiceMonitorDiscovery, Sources};
use super::index::MetaIndex;
use super::memo::Memos;
use super::status::write::StatusWrites;
use crate::metrics::PhaseGauge;

/// Longest wait between retries of a failing Pgpool.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

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
    /// When each Pgpool's next built-in certificate is due.
    pub tls_renewals: super::tls::Renewals,
}

/// Shared state of the Pgpool controller.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Events as `pgpool-provisioner`.
    pub recorder: EventRecorder,
    /// Reconcile counters and durations (`controller="pgpool"`).
    pub metrics: ControllerMetrics,
    /// Pgpools by phase.
    pub phases: PhaseGauge,
    /// Resync interval (every Pgpool is looked at once per interval; see
    /// [`operator_kit::cache::resync`]).
    pub resync: Duration,
    /// The watch caches.
    pub caches: Caches,
    /// Failures in a row per Pgpool: the retry delay (the first one `error_backoff`,
    /// doubling up to [`MAX_BACKOFF`]) and the Warning event on the first failure of a run.
    pub(super) backoff: ErrorBackoff<ObjectRef<CachedPgpool>>,
    warned_do_not_terminate: Mutex<HashSet<String>>,
    /// Status writes the Pgpool cache may not show yet.
    pub(super) status_writes: StatusWrites,
}

impl Context {
    /// A context; failed reconciles are retried after `error_backoff`, doubling per failure
    /// in a row up to [`MAX_BACKOFF`].
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
            caches,
            backoff: ErrorBackoff::new(error_backoff, MAX_BACKOFF)
                .with_event_policy(EventPolicy::First),
            warned_do_not_terminate: Mutex::default(),
            status_writes: StatusWrites::default(),
        }
    }

    /// True the first time it is asked for the Pgpool with `uid` (until [`Self::forget`]):
    /// whether its refused deletion still needs a Warning event.
    pub(super) fn first_deletion_refusal(&self, uid: &str) -> bool {
        self.warned_do_not_terminate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_string())
    }

    /// Drops what the context remembers of the deleted Pgpool with `uid`.
    pub(super) fn forget(&self, uid: &str) {
        self.phases.forget(uid);
        self.status_writes.forget(uid);
        self.warned_do_not_terminate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// The sources the dereference step reads.
    pub(super) fn sources(&self) -> Sources<'_> {
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
