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

mod apply;
pub mod cache;
mod config;
mod context;
mod controller;
mod error;
pub mod expectations;
pub mod plan;
pub mod pods;
mod reconcile;
pub mod revision;
pub mod selector;

#[cfg(test)]
mod plan_tests;

/// The controller's name in `/readyz` and in the reconcile metrics' `controller` label.
pub const CONTROLLER: &str = "petset";

pub use config::{FIELD_MANAGER, PetSetConfig};
pub use controller::{Wiring, is_petset_pod, pod_feed, run, run_wired};
pub use error::Error;
