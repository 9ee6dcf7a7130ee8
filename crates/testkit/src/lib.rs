//! Test bed for the pgpool operators: an in-memory Kubernetes API server that `kube::Client`
//! talks to, a simulated kubelet, fault injection and a request log.
//!
//! # The server
//!
//! [`TestServer::new`] serves the built-in kinds the operators use (core v1 Pods, Secrets,
//! Services, ServiceAccounts, ConfigMaps, PersistentVolumeClaims, Events, Endpoints,
//! Namespaces, Nodes; events.k8s.io/v1 Events; discovery.k8s.io/v1 EndpointSlices;
//! apps/v1 ControllerRevisions, StatefulSets,
//! Deployments; policy/v1 PodDisruptionBudgets; coordination.k8s.io/v1 Leases;
//! apiextensions.k8s.io/v1 CustomResourceDefinitions). Custom kinds come from the caller:
//! [`TestServer::with_crds`] (e.g. `TestServer::with_crds(pgpool_api::crds::all())`),
//! [`TestServer::builder`], [`TestServer::register_crd`] or creating a
//! CustomResourceDefinition object through the API.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, PostParams};
//! let server = testkit::TestServer::new();
//! let client = server.client();
//! let cms: Api<ConfigMap> = Api::namespaced(client, "default");
//! cms.create(&PostParams::default(), &testkit::fixtures::config_map("default", "c", [("k", "v")])).await?;
//! let mark = server.requests().mark();
//! // ... run a controller ...
//! assert_eq!(server.requests().since(&mark).writes_excluding(&["kubelet"]), 0);
//! # Ok(()) }
//! ```
//!
//! Semantics (what the operators depend on):
//! - one global resourceVersion; it (and `generation`) moves only when a stored object
//!   actually changes: a write that changes nothing returns the stored object unchanged and
//!   emits no watch event;
//! - `generation` starts at 1 and bumps when anything outside `metadata` (and outside
//!   `status` for kinds with the status subresource) changes;
//! - status subresource: writes to the object keep the stored status, writes to `/status`
//!   keep everything else; on create, status is dropped (pods get `phase: Pending`);
//! - list with label selectors (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`) and
//!   field selectors (`metadata.name`, `metadata.namespace`, any dotted path), `limit` and
//!   `continue`;
//! - watch: `resourceVersion` unset or `"0"` starts with ADDED events for the current state;
//!   a resourceVersion resumes from the kind's bounded event history
//!   ([`ServerConfig::history_limit`]) or gets an ERROR event with `410 Gone` if too old
//!   (see [`TestServer::compact_history`]); `allowWatchBookmarks`, `sendInitialEvents`
//!   (streaming lists), `timeoutSeconds`; objects entering/leaving a selector are sent as
//!   ADDED/DELETED;
//! - create: `generateName`, uid, creationTimestamp, 409 AlreadyExists; replace: 409
//!   Conflict on a stale resourceVersion; patch: JSON merge, JSON patch, strategic merge
//!   (treated as a JSON merge patch), a resourceVersion in a patch is a precondition;
//! - server-side apply: `fieldManager` required, apiVersion/kind required, creates if absent,
//!   merges applied fields; fields a manager applied before and no longer applies are removed
//!   unless another manager owns them too; applying a different value to a field another
//!   manager owns is a 409 conflict unless `force=true`. Writes other than apply (create,
//!   update, patch; manager = `fieldManager` or the agent) take ownership of the fields they
//!   change; fields removed by any write are owned by nobody (kube-lease-manager relies on
//!   this). Lists are atomic except `metadata.finalizers` (set) and
//!   `metadata.ownerReferences` (keyed by uid). `metadata.managedFields` is not exposed;
//! - delete: finalizers set deletionTimestamp, the object goes when the last finalizer is
//!   removed; pods bound to a node (`spec.nodeName`) terminate gracefully (deletionTimestamp,
//!   the [`Kubelet`] finishes), unbound pods go at once; `propagationPolicy` Background
//!   (default), Foreground (`foregroundDeletion` finalizer until dependents are gone), Orphan;
//!   preconditions; deleting a namespace deletes its contents;
//! - owner-reference garbage collection: when an owner is removed, dependents whose other
//!   owners are all gone are deleted (the others lose the reference);
//! - pods' `eviction` (429 TooManyRequests when a matching PodDisruptionBudget would be
//!   violated, counted from Ready pods against minAvailable / maxUnavailable, int or percent;
//!   pods of a controller with a scale subresource, e.g. a PetSet, count as its replicas) and
//!   `binding` subresources; PodDisruptionBudget status is kept up to date like the
//!   disruption controller does (`disruptionsAllowed`, `currentHealthy`, ...); `scale`
//!   subresource for kinds that declare it (PetSet, StatefulSet, Deployment);
//! - validation of names (DNS-1123 subdomain; DNS-1035 label for Services) and labels,
//!   and pod spec immutability (only images, activeDeadlineSeconds, tolerations and binding
//!   may change), with `422 Invalid`; Services get a clusterIP (absent or empty; headless
//!   `None` stays) that updates keep;
//! - errors are `metav1.Status` bodies with code and reason.
//!
//! Not modelled: authentication/authorization, CRD schema validation and pruning,
//! admission, conversion between versions (objects are served as stored), namespace
//! existence checks, `resourceVersionMatch=Exact`.
//!
//! # Kubelet
//!
//! [`Kubelet::start`] watches pods, binds them to a node, marks them Running/Ready with
//! `containerStatuses[].image` equal to the spec's image (per-image behaviours in
//! [`KubeletConfig`]) and finishes graceful deletions.
//!
//! # Observation and faults
//!
//! [`TestServer::requests`] counts requests by verb, resource and agent (see
//! [`TestServer::client_as`]); [`TestServer::faults`] fails requests, adds latency and closes
//! watches. [`ServerConfig::latency`] models a real API server's round trips ([`Latency`]:
//! reads, writes and watch events each wait their own time; off by default).
//!
//! # Listening
//!
//! [`TestServer::listen`] serves plain HTTP on 127.0.0.1 and writes a kubeconfig, so that
//! separate processes can use the server; [`TestServer::listen_as`] logs every request
//! through that listener under one agent name. The `testkit-apiserver` binary runs a server
//! with a kubelet for local demos.

mod apply;
pub mod cert_manager;
mod error;
mod faults;
pub mod fixtures;
mod handlers;
pub mod harness;
mod kubelet;
mod kubelet_capacity;
mod latency;
mod listen;
mod log;
pub mod log_capture;
mod pdb;
mod registry;
mod revision;
mod routing;
pub mod selector;
mod server;
mod shared;
mod state;
mod validate;
mod watch;

pub use faults::{FaultRule, Faults};
pub use kubelet::{ImageBehavior, Kubelet, KubeletConfig, KubeletHandle};
pub use kubelet_capacity::{Allocatable, Usage};
pub use latency::Latency;
pub use listen::Listening;
pub use log::{LogMark, RequestCounts, RequestKey, RequestLog, RequestRecord, Verb, Wake};
pub use server::{Body, TestServer, TestServerBuilder, TestService};
pub use shared::ServerConfig;
