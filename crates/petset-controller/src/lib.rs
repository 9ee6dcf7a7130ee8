//! The PetSet controller (`apps.k8s.appscode.com/v1` PetSet): StatefulSet semantics for
//! AppsCode's PetSet, so the operator runs its pods without KubeDB's PetSet operator.
//!
//! A library of its own: nothing in it knows about Pgpool. `pgpool-provisioner` runs it next
//! to its Pgpool controller (sharing one pod cache through [`run_wired`]); any other binary
//! can run it alone with [`run`].
//!
//! - Pods are `<petset>-<ordinal>`, host name = pod name, subdomain = `serviceName`, with
//!   the template's labels plus `controller-revision-hash`,
//!   `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`, and a
//!   controller owner reference to the PetSet (`blockOwnerDeletion`).
//! - Claims from `volumeClaimTemplates` are named `<claim>-<pod>`, created before the pod
//!   and never deleted by the controller.
//! - Template revisions are ControllerRevisions `<petset>-<hash>` owned by the PetSet; the
//!   history is trimmed to `revisionHistoryLimit` (default 10).
//! - `OrderedReady` and `Parallel` pod management, `RollingUpdate` (highest ordinal first,
//!   one at a time, `partition`) and `OnDelete` update strategies; pods in a terminal phase
//!   are replaced. [`plan`] documents the exact rules.
//! - The status (`observedGeneration`, replica counts, revisions, selector) is written
//!   through the status subresource only when it changed; a reconcile of a PetSet whose
//!   pods are all in place writes nothing.
//!
//! Writes use the field manager [`FIELD_MANAGER`]. [`run`] drives it all; the pure core
//! ([`plan::plan`]) decides and the controller only executes.

pub mod cache;
mod controller;
pub mod expectations;
pub mod metrics;
pub mod plan;
pub mod pods;
pub mod revision;
pub mod selector;

#[cfg(test)]
mod plan_tests;

pub use controller::{Wiring, is_petset_pod, pod_feed, run, run_wired};

/// Field manager (and event reporter) of every write the controller makes.
pub const FIELD_MANAGER: &str = "petset-controller";

/// Settings of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PetSetConfig {
    /// Namespace to watch; `None` for all namespaces.
    pub namespace: Option<String>,
    /// PetSets reconciled at the same time; 0 means no limit.
    pub concurrency: u16,
    /// How often a PetSet is looked at again when nothing happens (a safety net: watches
    /// trigger every reconcile; a look at a settled PetSet reads only the caches).
    pub resync: std::time::Duration,
}

impl Default for PetSetConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            concurrency: 0,
            resync: std::time::Duration::from_secs(300),
        }
    }
}

/// Errors of the PetSet controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, e.g. `create pod ns/web-0`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The PetSet cannot be acted on until the user fixes it.
    #[error("invalid PetSet: {0}")]
    Invalid(#[from] plan::PlanError),
    /// A pod name the PetSet needs is taken by a pod it does not control.
    #[error(
        "pod {0} exists but is not controlled by this PetSet (or does not match its selector); delete it or fix its labels"
    )]
    PodNameTaken(String),
    /// A revision could not be serialised.
    #[error("cannot serialise: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The metrics could not be created.
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}
