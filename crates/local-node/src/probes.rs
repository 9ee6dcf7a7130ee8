//! Probes, run for real: `exec` (through an [`Exec`] that enters the container), `tcpSocket`
//! and `httpGet` against the pod's IP, with the kubelet's timing and thresholds.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A boxed future, as the exec runners return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs a command for an exec probe or hook and says whether it exited 0 in time.
pub trait Exec: Send + Sync {
    /// Runs `command`; `false` on a non-zero exit, a failure to start, or after `timeout`.
    fn run<'a>(&'a self, command: &'a [String], timeout: Duration) -> BoxFuture<'a, bool>;
}

/// Runs commands on the host (tests, and host-network pods).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostExec;

impl Exec for HostExec {
    fn run<'a>(&'a self, command: &'a [String], timeout: Duration) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some((program, args)) = command.split_first() else {
                return false;
            };
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            run_with_timeout(cmd, timeout).await
        })
    }
}

/// Spawns `cmd` and waits at most `timeout` for a zero exit (the child is killed after).
pub async fn run_with_timeout(mut cmd: tokio::process::Command, timeout: Duration) -> bool {
    let Ok(mut child) = cmd.kill_on_drop(true).spawn() else {
        return false;
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            let _ = child.kill().await;
            false
        }
    }
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A command inside the container.
    Exec(Vec<String>),
    /// A TCP connect.
    Tcp(SocketAddr),
    /// An HTTP GET; 200-399 is a success.
    Http {
        /// Where to connect.
        addr: SocketAddr,
        /// Request path.
        path: String,
    },
}

/// A probe with its timing, resolved against the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The check.
    pub action: Action,
    /// `initialDelaySeconds`.
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `timeoutSeconds` (default 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

impl ProbeSpec {
    /// Resolves a pod's probe: named ports through the container's ports, no host means the
    /// pod's IP. `None` for a probe without a handler the node knows (gRPC).
    pub fn from_probe(probe: &Probe, container: &Container, pod_ip: IpAddr) -> Option<Self> {
        let action = if let Some(e) = &probe.exec {
            Action::Exec(e.command.clone().unwrap_or_default())
        } else if let Some(t) = &probe.tcp_socket {
            let ip = t
                .host
                .as_deref()
                .and_then(|h| h.parse().ok())
                .unwrap_or(pod_ip);
            Action::Tcp(SocketAddr::new(ip, resolve_port(&t.port, container)?))
        } else if let Some(h) = &probe.http_get {
            let ip = h
                .host
                .as_deref()
                .and_then(|h| h.parse().ok())
                .unwrap_or(pod_ip);
            Action::Http {
                addr: SocketAddr::new(ip, resolve_port(&h.port, container)?),
                path: h.path.clone().unwrap_or_else(|| "/".into()),
            }
        } else {
            return None;
        };
        Some(ProbeSpec {
            action,
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        })
    }
}

async fn tcp_check(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

async fn http_check(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    matches!(code, Some(200..=399))
}

/// Runs one check of `action` within `timeout`.
pub async fn check(action: &Action, exec: &dyn Exec, timeout: Duration) -> bool {
    match action {
        Action::Exec(command) => exec.run(command, timeout).await,
        Action::Tcp(addr) => tokio::time::timeout(timeout, tcp_check(*addr))
            .await
            .unwrap_or(false),
        Action::Http { addr, path } => tokio::time::timeout(timeout, http_check(*addr, path))
            .await
            .unwrap_or(false),
    }
}

/// Consecutive results against the thresholds (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    state: bool,
}

impl Tracker {
    /// A tracker starting at `initial` (readiness starts failed, liveness succeeded).
    pub fn new(spec: &ProbeSpec, initial: bool) -> Self {
        Tracker {
            success_threshold: spec.success_threshold,
            failure_threshold: spec.failure_threshold,
            successes: 0,
            failures: 0,
            state: initial,
        }
    }

    /// The current result.
    pub fn state(&self) -> bool {
        self.state
    }

    /// Records one check; returns the new state when it flips.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            if !self.state && self.successes >= self.success_threshold {
                self.state = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.state && self.failures >= self.failure_threshold {
                self.state = false;
                return Some(false);
            }
        }
        None
    }
}

/// Probes `spec` until the receiver goes away: waits `initialDelaySeconds`, then checks every
/// period and sends each flip of the tracker's state (starting from `initial`).
pub async fn run_loop<T: Clone + Send>(
    spec: ProbeSpec,
    exec: std::sync::Arc<dyn Exec>,
    initial: bool,
    tag: T,
    tx: mpsc::UnboundedSender<(T, bool)>,
) {
    let mut tracker = Tracker::new(&spec, initial);
    tokio::time::sleep(spec.initial_delay).await;
    let mut ticks = tokio::time::interval(spec.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let ok = check(&spec.action, exec.as_ref(), spec.timeout).await;
        if let Some(state) = tracker.record(ok)
            && tx.send((tag.clone(), state)).is_err()
        {
            return;
        }
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
#[path = "probes_tests.rs"]
mod tests;
