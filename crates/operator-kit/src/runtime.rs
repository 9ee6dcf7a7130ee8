//! The operator runtime: HTTP, client, leader election, and the controllers' life cycle
//! (see the crate documentation for the steps of [`run`]).

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use kube::Client;
use prometheus::{IntGauge, Registry};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::args::CommonArgs;
use crate::client::{self, CONNECT_TIMEOUT, connect};
use crate::error::Error;
use crate::events::EventRecorder;
use crate::http::{router, serve};
use crate::info::OperatorInfo;
use crate::leader::LeaderElection;
use crate::readiness::{Phase, Readiness};
use crate::runner::{ControllerHandle, TaskGuard};
use crate::signals::spawn_signal_listener;
use crate::telemetry::{init_tracing, new_registry};

/// How long controllers get to stop after a shutdown signal or a loss of leadership; then
/// they are aborted. Short on purpose: every reconcile step is idempotent, so an aborted one
/// is no worse than a crash, and with the Lease release (the `leader` module's timeout) the process
/// exits within 5 s of SIGTERM whatever a reconcile waits for, so a standby takes over at once.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

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

    /// Registers controller `name` for `/readyz` (not ready until it reports its caches
    /// synced) and returns its handle with the stop signal; see [`ControllerHandle`].
    pub fn controller(&self, name: &str) -> ControllerHandle {
        ControllerHandle::new(&self.readiness, name, self.shutdown.clone())
    }
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
        let _http_guard = TaskGuard::new(http_task);

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
