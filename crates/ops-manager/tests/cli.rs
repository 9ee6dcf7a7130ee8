//! The `pgpool-ops-manager` binary: flags, and behaviour without a reachable cluster.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pgpool-ops-manager");
const LIMIT: Duration = Duration::from_secs(30);

fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    namespace: ops\n\
         current-context: c\nusers:\n- name: u\n  user:\n    token: not-a-secret\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

fn command(kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("KUBECONFIG", kubeconfig)
        .env("RUST_BACKTRACE", "1")
        .env("LOG_FORMAT", "text")
        .env("LOG_LEVEL", "info")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .args(["--metrics-bind-address", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for the child to exit, polling every 50 ms; kills it and fails after `limit`.
fn wait_with_limit(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        std::io::Read::read_to_string(&mut err, &mut text).expect("read stderr");
    }
    text
}

/// A port on which nothing listens.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Runs the binary against `server` and checks it fails in time with one clear line.
fn assert_fails_with_one_line(server: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), server);
    let start = Instant::now();
    let mut child = command(&config).spawn().expect("spawn");
    let status = wait_with_limit(&mut child, LIMIT);
    let elapsed = start.elapsed();
    let stderr = stderr_of(&mut child);
    assert!(!status.success(), "must fail; stderr: {stderr}");
    assert!(elapsed < LIMIT, "took {elapsed:?}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    for needle in expected {
        assert!(
            lines[0].contains(needle),
            "missing {needle:?} in: {}",
            lines[0]
        );
    }
}

#[test]
fn help_lists_the_flags() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("utf-8");
    for flag in [
        "--log-level",
        "LOG_LEVEL",
        "--log-format",
        "LOG_FORMAT",
        "--metrics-bind-address",
        "METRICS_BIND_ADDRESS",
        "0.0.0.0:8080",
        "--leader-elect",
        "LEADER_ELECT",
        "--lease-name",
        "pgpool-ops-manager-leader",
        "--lease-namespace",
        "LEASE_NAMESPACE",
        "--namespace",
        "WATCH_NAMESPACE",
        "--concurrency",
        "RECONCILE_CONCURRENCY",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_flag_value_is_rejected_by_the_parser() {
    let out = Command::new(BIN)
        .args(["--concurrency=0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--concurrency"), "{stderr}");
}

#[test]
fn silent_api_server_fails_after_the_connect_timeout_with_one_line() {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = format!("http://{}", silent.local_addr().expect("addr"));
    assert_fails_with_one_line(
        &server,
        &[
            "cannot reach the Kubernetes API server",
            &server,
            "no answer within 10 s",
        ],
    );
    drop(silent);
}

#[test]
fn closed_port_fails_fast_with_one_line_naming_the_server() {
    let port = closed_port();
    let server = format!("http://127.0.0.1:{port}");
    assert_fails_with_one_line(
        &server,
        &[
            "pgpool-ops-manager: error:",
            "cannot reach the Kubernetes API server",
            &format!("127.0.0.1:{port}"),
            "KUBECONFIG",
        ],
    );
}

#[test]
fn missing_kubeconfig_fails_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-kubeconfig");
    let mut child = command(&missing).spawn().expect("spawn");
    let status = wait_with_limit(&mut child, LIMIT);
    let stderr = stderr_of(&mut child);
    assert!(!status.success());
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("no-such-kubeconfig"), "{stderr}");
    assert!(lines[0].contains("set KUBECONFIG"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn sigterm_while_connecting_exits_zero_quickly() {
    // A listener that accepts connections but never answers: the binary waits for the
    // API server, and SIGTERM must still stop it at once.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = format!("http://{}", silent.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), &server);
    let mut child = command(&config).spawn().expect("spawn");

    // The HTTP server starts after the signal handlers; wait for its log line.
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let serving = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("serving /metrics"));
    assert!(serving, "binary did not start its HTTP server");

    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let status = wait_with_limit(&mut child, Duration::from_secs(5));
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        stderr_of(&mut child)
    );
    assert!(sent.elapsed() < Duration::from_secs(5));
    drop(silent);
}
