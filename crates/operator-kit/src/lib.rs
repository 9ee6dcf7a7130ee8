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

mod args;
pub mod cache;
mod client;
pub mod events;
mod http;
mod leader;
mod readiness;
mod telemetry;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use kube::Client;
use prometheus::{IntGauge, Registry};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use args::{
    CommonArgs, LogFormat, command, parse_args, resolve_lease_namespace, try_parse_args_from,
};
pub use client::{CONNECT_TIMEOUT, check, connect};
pub use events::{EventRecorder, EventType};
pub use http::{router, serve};
pub use readiness::{ControllerReadiness, Phase, Readiness, ReadinessStatus};
pub use telemetry::{BUILD_INFO_GAUGE, LEADER_GAUGE, init_tracing, new_registry};
pub use tokio_util::sync::CancellationToken;

use leader::LeaderElection;

/// How long controllers get to stop after a shutdown signal or a loss of leadership; then
/// they are aborted. Short on purpose: every reconcile step is idempotent, so an aborted one
/// is no worse than a crash, and with the Lease release ([`leader`]'s timeout) the process
/// exits within 5 s of SIGTERM whatever a reconcile waits for, so a standby takes over at once.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Static facts about an operator binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorInfo {
    /// Binary name, e.g. `pgpool-provisioner`; used in logs, metrics labels, error
    /// lines and as the default event reporter.
    pub name: &'static str,
    /// Version, usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// Default name of the leader-election Lease.
    pub default_lease: &'static str,
}

/// Everything the controllers get from the runtime.
#[derive(Clone)]
pub struct RunContext {
    /// Client for the API server (already checked to answer).
    pub client: Client,
    /// Registry served at `/metrics`; register controller metrics here.
    pub registry: Registry,
    /// Readiness handle: register each controller and mark it synced.
    pub readiness: Readiness,
    /// Cancelled when the controllers must stop (shutdown signal or lost leadership).
    pub shutdown: CancellationToken,
    /// Namespace to watch; `None` for all namespaces.
    pub watch_namespace: Option<String>,
    /// Objects each controller may reconcile at the same time (`--concurrency`).
    pub concurrency: u16,
    /// This replica's identity (pod name), used as the event reporting instance.
    pub identity: String,
    /// The binary's static facts.
    pub info: OperatorInfo,
}

impl RunContext {
    /// An event recorder that reports as `controller` from this replica.
    pub fn recorder(&self, controller: &str) -> EventRecorder {
        EventRecorder::new(self.client.clone(), controller, self.identity.clone())
    }

    /// Resolves when the controllers must stop.
    pub async fn shutdown_requested(&self) {
        self.shutdown.cancelled().await;
    }
}

/// Errors that end [`run`]. Each prints as one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--log-level` is not a valid filter.
    #[error("invalid --log-level {filter:?}: {reason}")]
    LogFilter {
        /// The rejected filter.
        filter: String,
        /// Why it was rejected.
        reason: String,
    },
    /// No usable client configuration.
    #[error(
        "cannot load a Kubernetes client configuration: {0}; set KUBECONFIG to a valid kubeconfig file or run inside a cluster"
    )]
    KubeConfig(String),
    /// The API server did not answer.
    #[error(
        "cannot reach the Kubernetes API server at {url}: {reason}; check that the cluster is up and that KUBECONFIG points at it, or run inside a cluster"
    )]
    Unreachable {
        /// API server URL tried.
        url: String,
        /// Innermost cause.
        reason: String,
    },
    /// The API server answered with an error status.
    #[error(
        "the Kubernetes API server at {url} refused the request: {reason}; check the credentials in KUBECONFIG or the service account"
    )]
    Rejected {
        /// API server URL tried.
        url: String,
        /// Status message and code.
        reason: String,
    },
    /// The metrics/health address cannot be bound.
    #[error(
        "cannot listen on {addr} for metrics and health: {reason}; choose another --metrics-bind-address"
    )]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        reason: String,
    },
    /// Creating a metric failed.
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Signal handlers cannot be installed.
    #[error("cannot listen for termination signals: {0}")]
    Signals(String),
    /// The Lease cannot be set up.
    #[error(
        "leader election on Lease {namespace}/{name} failed: {reason}; check the RBAC rules for leases in that namespace, or run with --leader-elect=false"
    )]
    LeaderElection {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// Leadership was lost while the controllers ran.
    #[error(
        "lost leadership of Lease {lease}: {reason}; controllers stopped, exiting so that this replica restarts as a standby"
    )]
    LeadershipLost {
        /// `namespace/name` of the Lease.
        lease: String,
        /// Why.
        reason: String,
    },
    /// The controllers returned an error.
    #[error("controllers failed: {0}")]
    Controllers(String),
    /// The controllers returned before a shutdown was requested.
    #[error("controllers stopped without a shutdown request")]
    ControllersExited,
}

/// Runs an operator: see the crate documentation for the steps. Returns `Ok(())` after
/// a clean shutdown (SIGTERM/SIGINT), an error otherwise; pass the result to
/// [`report`] to print it as one line and get the exit code.
pub async fn run<F, Fut>(info: OperatorInfo, args: CommonArgs, controllers: F) -> Result<(), Error>
where
    F: FnOnce(RunContext) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Operator::new(info, args)?.run(controllers).await
}

/// Prints an error from [`run`] as one line on stderr (`<binary>: error: ...`) and
/// returns the process exit code (0 on success, 1 on error).
pub fn report(info: &OperatorInfo, result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: error: {}", info.name, client::one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// The runtime with its parts exposed, for tests and embedding; [`run`] is
/// `Operator::new(info, args)?.run(controllers)`.
pub struct Operator {
    info: OperatorInfo,
    args: CommonArgs,
    client: Option<Client>,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
    registry: Registry,
    readiness: Readiness,
    signals: bool,
    tracing: bool,
}

impl Operator {
    /// A runtime with a fresh registry (process metrics, leader gauge) and readiness.
    pub fn new(info: OperatorInfo, args: CommonArgs) -> Result<Self, Error> {
        let (registry, leader_gauge): (Registry, IntGauge) = new_registry(&info)?;
        Ok(Self {
            info,
            args,
            client: None,
            listener: None,
            shutdown: CancellationToken::new(),
            registry,
            readiness: Readiness::with_leader_gauge(leader_gauge),
            signals: true,
            tracing: true,
        })
    }

    /// Uses this client instead of building one from the environment (no connectivity
    /// check is made).
    pub fn with_client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Serves HTTP on this listener instead of binding `--metrics-bind-address`.
    pub fn with_listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Uses this token as the shutdown signal; cancelling it stops the operator like
    /// SIGTERM does.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// Whether to listen for SIGTERM/SIGINT (default true).
    pub fn with_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// Whether to install the global tracing subscriber (default true).
    pub fn with_tracing(mut self, on: bool) -> Self {
        self.tracing = on;
        self
    }

    /// The readiness handle `/readyz` reports.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// The shutdown token.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until shutdown, loss of leadership or an error; see [`run`].
    pub async fn run<F, Fut>(mut self, controllers: F) -> Result<(), Error>
    where
        F: FnOnce(RunContext) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = self.listener.take();
        if self.tracing {
            init_tracing(&self.args.log_level, self.args.log_format)?;
        }
        let signals = if self.signals {
            Some(spawn_signal_listener(self.info, self.shutdown.clone())?)
        } else {
            None
        };
        let http_stop = CancellationToken::new();
        let result = self.run_inner(controllers, listener, &http_stop).await;
        self.readiness.set_phase(Phase::ShuttingDown);
        http_stop.cancel();
        if let Some(handle) = signals {
            handle.abort();
        }
        match &result {
            Ok(()) => tracing::info!(binary = self.info.name, "stopped"),
            Err(error) => tracing::error!(binary = self.info.name, %error, "stopped"),
        }
        result
    }

    async fn run_inner<F, Fut>(
        &self,
        controllers: F,
        listener: Option<TcpListener>,
        http_stop: &CancellationToken,
    ) -> Result<(), Error>
    where
        F: FnOnce(RunContext) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let info = self.info;
        let args = &self.args;
        tracing::info!(binary = info.name, version = info.version, "starting");

        // HTTP first, so that /healthz answers while we connect.
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(args.metrics_bind_address)
                .await
                .map_err(|e| Error::Bind {
                    addr: args.metrics_bind_address.to_string(),
                    reason: e.to_string(),
                })?,
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        }
        let app = router(self.registry.clone(), self.readiness.clone());
        let stop = http_stop.clone();
        let http_task = tokio::spawn(async move {
            if let Err(error) = serve(listener, app, stop).await {
                tracing::error!(%error, "metrics and health server failed");
            }
        });
        let _http_guard = AbortOnDrop(http_task);

        let user_agent = format!("{}/{}", info.name, info.version);
        let client = match &self.client {
            Some(c) => c.clone(),
            None => tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                res = connect(CONNECT_TIMEOUT, &user_agent) => res?,
            },
        };

        let identity = args.identity();
        let election = if args.leader_elect {
            let namespace = args.lease_namespace(client.default_namespace());
            let name = args.lease_name(&info);
            let election = tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                res = LeaderElection::new(
                    client.clone(),
                    &namespace,
                    &name,
                    &identity,
                    args.lease_duration_seconds,
                    args.lease_renew_grace_seconds,
                ) => res?,
            };
            self.readiness.set_phase(Phase::Standby);
            if !election.acquire(&self.shutdown).await {
                election.release().await;
                return Ok(());
            }
            tracing::info!(lease = %election.lease(), %identity, "became leader");
            Some(election)
        } else {
            tracing::info!("leader election is off: starting controllers");
            None
        };

        self.readiness.set_leader(true);
        self.readiness.set_phase(Phase::Running);
        let token = self.shutdown.child_token();
        let ctx = RunContext {
            client,
            registry: self.registry.clone(),
            readiness: self.readiness.clone(),
            shutdown: token.clone(),
            watch_namespace: args.watch_namespace(),
            concurrency: args.concurrency,
            identity,
            info,
        };
        let mut task = tokio::spawn(controllers(ctx));

        let lost = async {
            match &election {
                Some(e) => e.lost().await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            res = &mut task => Outcome::Exited(res),
            () = self.shutdown.cancelled() => Outcome::Shutdown,
            reason = lost => Outcome::Lost(reason),
        };

        self.readiness.set_phase(Phase::ShuttingDown);
        token.cancel();
        let result = match outcome {
            Outcome::Exited(res) => match res {
                Ok(Ok(())) if self.shutdown.is_cancelled() => Ok(()),
                Ok(Ok(())) => Err(Error::ControllersExited),
                Ok(Err(e)) => Err(Error::Controllers(client::one_line(&format!("{e:#}")))),
                Err(join) => Err(Error::Controllers(client::one_line(&join.to_string()))),
            },
            Outcome::Shutdown => {
                tracing::info!("shutdown requested: stopping controllers");
                stop_controllers(task).await;
                Ok(())
            }
            Outcome::Lost(reason) => {
                tracing::error!(%reason, "lost leadership: stopping controllers");
                stop_controllers(task).await;
                Err(Error::LeadershipLost {
                    lease: election
                        .as_ref()
                        .map(LeaderElection::lease)
                        .unwrap_or_default(),
                    reason,
                })
            }
        };
        self.readiness.set_leader(false);
        self.readiness.clear_controllers();
        if let Some(election) = &election {
            election.release().await;
        }
        result
    }
}

enum Outcome {
    Exited(Result<anyhow::Result<()>, tokio::task::JoinError>),
    Shutdown,
    Lost(String),
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits up to [`SHUTDOWN_GRACE`] for the controllers' task, then aborts it.
async fn stop_controllers(mut task: JoinHandle<anyhow::Result<()>>) {
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
        Ok(Ok(Ok(()))) => tracing::info!("controllers stopped"),
        Ok(Ok(Err(error))) => {
            tracing::warn!(error = %format!("{error:#}"), "controllers stopped with an error")
        }
        Ok(Err(error)) => tracing::warn!(%error, "controllers task failed"),
        Err(_) => {
            tracing::warn!(
                "controllers did not stop within {} s; aborting them",
                SHUTDOWN_GRACE.as_secs()
            );
            task.abort();
        }
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT; exits the process at once on a second.
fn spawn_signal_listener(
    info: OperatorInfo,
    token: CancellationToken,
) -> Result<JoinHandle<()>, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::Signals(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::Signals(e.to_string()))?;
    Ok(tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        token.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        eprintln!("{}: {name} again: exiting at once", info.name);
        std::process::exit(1);
    }))
}
