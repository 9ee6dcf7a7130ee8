//! Run-time pieces both pgpool operator binaries share.
//!
//! A binary flattens [`CommonArgs`] into its clap parser, parses with [`parse_args`]
//! and hands its controllers to [`run`]:
//!
//! ```no_run
//! use operator_kit::{CommonArgs, OperatorInfo, RunContext};
//!
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     common: CommonArgs,
//! }
//!
//! const INFO: OperatorInfo = OperatorInfo {
//!     name: "pgpool-provisioner",
//!     version: env!("CARGO_PKG_VERSION"),
//!     default_lease: "pgpool-provisioner-leader",
//! };
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let cli: Cli = operator_kit::parse_args(&INFO);
//!     let result = operator_kit::run(INFO, cli.common, |ctx: RunContext| async move {
//!         let ready = ctx.readiness.controller("example");
//!         ready.set_synced();
//!         ctx.shutdown.cancelled().await;
//!         Ok(())
//!     })
//!     .await;
//!     operator_kit::report(&INFO, result)
//! }
//! ```
//!
//! What [`run`] does, in order:
//! 1. installs the tracing subscriber (`--log-level`, `--log-format`; logs on stdout);
//! 2. starts listening for SIGTERM and SIGINT (a second signal exits at once);
//! 3. serves `/metrics`, `/healthz` and `/readyz` on `--metrics-bind-address`;
//! 4. builds the client from `KUBECONFIG` / `~/.kube/config` / in-cluster config and
//!    checks that the API server answers within 10 s;
//! 5. with `--leader-elect` (the default), waits until this replica holds the Lease
//!    (a standby answers `/readyz` with 200 "standby: not leader");
//! 6. runs the controllers until a shutdown signal, then gives them
//!    [`SHUTDOWN_GRACE`] to stop, releases the Lease and returns `Ok(())`.
//!
//! **Losing leadership** (another replica took the Lease, or renewing it failed) stops
//! the controllers and makes [`run`] return [`Error::LeadershipLost`]; the binary then
//! exits non-zero and Kubernetes restarts the container, which comes back as a standby.
//! Exiting is the safe choice: a replica that may no longer be leader must not keep
//! writing, and a fresh process has no state left over from its time as leader.
//!
//! Pieces the controllers share:
//! - [`bootstrap`]: the binary's `main` (malloc arenas, runtime, [`run`], exit code);
//! - [`RunContext::controller`]: a [`ControllerHandle`] per controller, with its `/readyz`
//!   entry and the shutdown token in the forms kube-runtime wants;
//! - [`backoff`]: per-object error backoff and when a failure deserves a Warning event;
//! - [`reconcile_metrics`]: `pgpool_operator_reconcile_*{controller}` metrics;
//! - [`api`]: namespaced-or-all `Api`, API error tests, get-modify-replace with retry;
//! - [`finalizers`]: adding and removing a finalizer guarded by the read resourceVersion.

mod args;
pub mod cache;
mod client;
pub mod events;
mod http;
mod leader;
mod readiness;
mod telemetry;

pub mod api;
pub mod backoff;
pub mod bootstrap;
mod error;
pub mod finalizers;
mod info;
pub mod reconcile_metrics;
mod runner;
mod runtime;
mod signals;

pub use args::{
    CommonArgs, LogFormat, command, parse_args, resolve_lease_namespace, try_parse_args_from,
};
pub use client::{CONNECT_TIMEOUT, check, connect};
pub use events::{EventRecorder, EventType};
pub use http::{router, serve};
pub use readiness::{ControllerReadiness, Phase, Readiness, ReadinessStatus};
pub use telemetry::{BUILD_INFO_GAUGE, LEADER_GAUGE, init_tracing, new_registry};
pub use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use info::OperatorInfo;
pub use runner::{ControllerHandle, TaskGuard};
pub use runtime::{Operator, RunContext, SHUTDOWN_GRACE, report, run};
