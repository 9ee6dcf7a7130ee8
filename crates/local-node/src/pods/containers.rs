//! One container of a pod: starting it (with its probes), its exit, its restarts.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::status::{ContainerView, State};
use crate::container::{self, ContainerExec, Launch};
use crate::images::ImageRuntime;
use crate::probes::{self, Action, Exec, ProbeSpec};

/// Which probe reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// startupProbe.
    Startup,
    /// readinessProbe.
    Readiness,
    /// livenessProbe.
    Liveness,
}

/// Identifies a report: container index, run number, probe.
pub type Tag = (usize, u64, ProbeKind);

/// A container exited: index, run number, exit code.
pub type Exit = (usize, u64, i32);

/// A running container.
pub struct Run {
    /// Host PID of its PID 1.
    pub pid: i32,
    /// Runs commands inside it.
    pub exec: Arc<ContainerExec>,
    /// Becomes true when it exited.
    pub exited: watch::Receiver<bool>,
    /// When it started.
    pub started: Timestamp,
    probes: Vec<JoinHandle<()>>,
}

impl Run {
    /// Stops its probes.
    pub fn stop_probes(&mut self) {
        for p in self.probes.drain(..) {
            p.abort();
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop_probes();
    }
}

/// A container and what the node knows about it.
pub struct Ctr {
    /// Its spec.
    pub spec: Container,
    /// Its image's runtime.
    pub runtime: ImageRuntime,
    /// What the status says.
    pub view: ContainerView,
    /// Current run number (runs so far).
    pub run_no: u64,
    /// The current run.
    pub run: Option<Run>,
    /// Next back-off.
    pub backoff: Duration,
    /// When the next restart is due.
    pub restart_at: Option<tokio::time::Instant>,
}

impl Ctr {
    /// A container waiting to be created.
    pub fn new(spec: Container, runtime: ImageRuntime, initial_backoff: Duration) -> Self {
        let image = spec.image.clone().unwrap_or_default();
        Ctr {
            view: ContainerView {
                name: spec.name.clone(),
                image_id: format!("local://{image}"),
                image,
                state: State::waiting("ContainerCreating", None),
                last: None,
                ready: false,
                started: false,
                restart_count: 0,
                container_id: None,
            },
            spec,
            runtime,
            run_no: 0,
            run: None,
            backoff: initial_backoff,
            restart_at: None,
        }
    }

    /// Starts a run with `launch`; its exit and probe results arrive on the channels.
    pub async fn start(
        &mut self,
        idx: usize,
        uid: &str,
        launch: Launch,
        pod_ip: std::net::IpAddr,
        exits: mpsc::UnboundedSender<Exit>,
        reports: mpsc::UnboundedSender<(Tag, bool)>,
    ) -> anyhow::Result<()> {
        self.run_no += 1;
        let run_no = self.run_no;
        let running = container::start(&launch).await?;
        let pid = running.pid;
        let mut child = running.child;
        let (exit_tx, exit_rx) = watch::channel(false);
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))
                }
                Err(_) => 255,
            };
            exit_tx.send_replace(true);
            let _ = exits.send((idx, run_no, code));
        });
        let exec = Arc::new(ContainerExec {
            pid,
            user: launch.user.clone(),
            env: launch.env.clone(),
            log: Some(launch.log.clone()),
        });
        let now = Timestamp::now();
        self.view.state = State::Running(now);
        self.view.ready = false;
        self.view.container_id = Some(format!("local://{uid}/{}/{run_no}", self.spec.name));
        let mut run = Run {
            pid,
            exec,
            exited: exit_rx,
            started: now,
            probes: Vec::new(),
        };
        if let Some(p) = self.spec.startup_probe.as_ref() {
            self.view.started = false;
            run.probes.extend(spawn_probe(
                p,
                &self.spec,
                pod_ip,
                &run.exec,
                (idx, run_no, ProbeKind::Startup),
                &reports,
            ));
        } else {
            self.view.started = true;
            self.spawn_after_startup(&mut run, idx, pod_ip, &reports);
        }
        self.run = Some(run);
        Ok(())
    }

    /// Starts the readiness and liveness probes (after the startup probe passed). A container
    /// without a readiness probe is ready at once.
    pub fn spawn_after_startup(
        &mut self,
        run: &mut Run,
        idx: usize,
        pod_ip: std::net::IpAddr,
        reports: &mpsc::UnboundedSender<(Tag, bool)>,
    ) {
        let run_no = self.run_no;
        match self.spec.readiness_probe.as_ref() {
            Some(p) => run.probes.extend(spawn_probe(
                p,
                &self.spec,
                pod_ip,
                &run.exec,
                (idx, run_no, ProbeKind::Readiness),
                reports,
            )),
            None => self.view.ready = true,
        }
        if let Some(p) = self.spec.liveness_probe.as_ref() {
            run.probes.extend(spawn_probe(
                p,
                &self.spec,
                pod_ip,
                &run.exec,
                (idx, run_no, ProbeKind::Liveness),
                reports,
            ));
        }
    }
}

fn spawn_probe(
    probe: &k8s_openapi::api::core::v1::Probe,
    spec: &Container,
    pod_ip: std::net::IpAddr,
    exec: &Arc<ContainerExec>,
    tag: Tag,
    reports: &mpsc::UnboundedSender<(Tag, bool)>,
) -> Option<JoinHandle<()>> {
    let probe_spec = ProbeSpec::from_probe(probe, spec, pod_ip)?;
    let initial = tag.2 == ProbeKind::Liveness;
    let exec: Arc<dyn Exec> = exec.clone();
    Some(tokio::spawn(probes::run_loop(
        probe_spec,
        exec,
        initial,
        tag,
        reports.clone(),
    )))
}

/// Runs a lifecycle handler (exec, httpGet, tcpSocket, sleep) to its end; `false` when it
/// failed (a non-zero exit, a refused connection), as the kubelet's `FailedPreStopHook`.
pub async fn run_handler(
    handler: &LifecycleHandler,
    spec: &Container,
    pod_ip: std::net::IpAddr,
    exec: &ContainerExec,
) -> bool {
    const LONG: Duration = Duration::from_secs(3600);
    if let Some(s) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return true;
    }
    let probe = k8s_openapi::api::core::v1::Probe {
        exec: handler.exec.clone(),
        http_get: handler.http_get.clone(),
        tcp_socket: handler.tcp_socket.clone(),
        ..Default::default()
    };
    match ProbeSpec::from_probe(&probe, spec, pod_ip) {
        Some(p) => match &p.action {
            Action::Exec(cmd) => exec.run(cmd, LONG).await,
            action => probes::check(action, exec, LONG).await,
        },
        None => false,
    }
}

/// The pod's restart policy allows a restart after exit `code`.
pub fn should_restart(pod: &Pod, code: i32) -> bool {
    match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
        Some("Never") => false,
        Some("OnFailure") => code != 0,
        _ => true,
    }
}
