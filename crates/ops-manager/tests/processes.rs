//! Both real binaries, as separate processes, against the testkit API server on 127.0.0.1 (with
//! the simulated kubelet in this process): the example update 4.5.3 -> 4.6.0 completes.
//!
//! The provisioner binary is looked up next to the ops-manager's (`cargo test --workspace`
//! builds both; with `-p pgpool-ops-manager` alone, build it first with
//! `cargo build -p pgpool-provisioner`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Env, condition_types, failed_message, phase};
use pgpool_api::OpsRequestPhase;
use pgpool_api::conditions::ops;
use serde_json::json;
use testkit::KubeletConfig;

const OPS_BIN: &str = env!("CARGO_BIN_EXE_pgpool-ops-manager");

fn provisioner_bin() -> PathBuf {
    let path = Path::new(OPS_BIN).with_file_name("pgpool-provisioner");
    assert!(
        path.exists(),
        "{} not found: build it with `cargo build -p pgpool-provisioner` (cargo test --workspace \
         builds it)",
        path.display()
    );
    path
}

/// An environment whose API server also listens on 127.0.0.1 (for the binaries), with the
/// in-process provisioner or without; the kubeconfig path for the binaries.
async fn listening_env(provisioner: bool) -> (Env, testkit::Listening, PathBuf) {
    let kubelet = KubeletConfig::default().ready_delay(Duration::from_millis(30));
    let env = if provisioner {
        Env::new(kubelet).await
    } else {
        Env::without_provisioner(kubelet).await
    };
    let listening = env.server.listen().await.expect("listen");
    let kubeconfig = listening.kubeconfig_path().to_path_buf();
    (env, listening, kubeconfig)
}

/// A child process that is killed when dropped.
struct Proc {
    name: &'static str,
    child: Option<Child>,
}

impl Proc {
    fn spawn(name: &'static str, bin: &Path, kubeconfig: &Path) -> Self {
        Self::spawn_with(name, bin, kubeconfig, &[("LEADER_ELECT", "false")])
    }

    /// Like [`Proc::spawn`] with extra environment variables.
    fn spawn_with(name: &'static str, bin: &Path, kubeconfig: &Path, env: &[(&str, &str)]) -> Self {
        let child = Command::new(bin)
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().copied())
            .env("METRICS_BIND_ADDRESS", "127.0.0.1:0")
            .env("LOG_FORMAT", "text")
            .env("LOG_LEVEL", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Self {
            name,
            child: Some(child),
        }
    }

    /// SIGTERM, then wait (at most 10 s) for a clean exit.
    async fn terminate(self) {
        self.terminate_within(Duration::from_secs(10)).await;
    }

    /// SIGTERM, then wait at most `limit` for a clean exit.
    async fn terminate_within(mut self, limit: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let name = self.name;
        // Wait for the exit itself (no polling); past the limit, kill it and fail.
        let waiting = tokio::task::spawn_blocking(move || child.wait());
        let status = match tokio::time::timeout(limit, waiting).await {
            Ok(joined) => joined.expect("join").expect("wait"),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("timed out after {limit:?} waiting for {name} to exit after SIGTERM");
            }
        };
        assert!(status.success(), "{name} exited with {status:?}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_binaries_complete_the_example_update() {
    let provisioner = provisioner_bin();
    let (env, _listening, kubeconfig) = listening_env(false).await;
    let prov = Proc::spawn("pgpool-provisioner", &provisioner, &kubeconfig);
    let opsm = Proc::spawn("pgpool-ops-manager", Path::new(OPS_BIN), &kubeconfig);

    env.ready_pgpool("pp-update", "4.5.3", 2, false).await;
    env.update_request("pgpool-version-update", "pp-update", "4.6.0", json!({}))
        .await;
    let req = env
        .wait_final("pgpool-version-update", Duration::from_secs(90))
        .await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    let types = condition_types(&req);
    assert_eq!(types.first().map(String::as_str), Some(ops::UPDATE_VERSION));
    assert_eq!(types.last().map(String::as_str), Some(ops::SUCCESSFUL));
    env.wait_settled_on("pp-update", "4.6.0", 2).await;

    opsm.terminate().await;
    prov.terminate().await;
}

/// The Lease's holder, if any.
async fn lease_holder(env: &Env, name: &str) -> Option<String> {
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(env.client.clone(), "default");
    leases
        .get_opt(name)
        .await
        .expect("get lease")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Both binaries, leader election on, an update waiting on refused evictions: SIGTERM stops
/// each within 5 s, and each gives up its Lease so that a standby takes over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_update_stops_both_within_5s_and_releases_the_leases() {
    let provisioner = provisioner_bin();
    let (env, _listening, kubeconfig) = listening_env(false).await;
    let leader = [("LEADER_ELECT", "true"), ("LEASE_NAMESPACE", "default")];
    let prov = Proc::spawn_with("pgpool-provisioner", &provisioner, &kubeconfig, &leader);
    let opsm = Proc::spawn_with(
        "pgpool-ops-manager",
        Path::new(OPS_BIN),
        &kubeconfig,
        &leader,
    );

    env.ready_pgpool("pp-update", "4.5.3", 2, false).await;
    env.server.faults().inject(
        testkit::FaultRule::new(429)
            .verb(testkit::Verb::Create)
            .resource("pods/eviction")
            .times(10_000)
            .message("Cannot evict pod as it would violate the pod's disruption budget."),
    );
    env.update_request("upd", "pp-update", "4.6.0", json!({"timeout": "5m"}))
        .await;
    let evict = ops::evict_pod("pp-update-0");
    env.wait_request(
        "upd",
        Duration::from_secs(60),
        "waiting to evict pp-update-0",
        move |r| common::condition(r, &evict).is_some(),
    )
    .await;
    for lease in ["pgpool-ops-manager-leader", "pgpool-provisioner-leader"] {
        assert!(lease_holder(&env, lease).await.is_some(), "{lease} is held");
    }

    opsm.terminate_within(Duration::from_secs(5)).await;
    prov.terminate_within(Duration::from_secs(5)).await;
    for lease in ["pgpool-ops-manager-leader", "pgpool-provisioner-leader"] {
        assert_eq!(lease_holder(&env, lease).await, None, "{lease} released");
    }
}

/// SIGTERM while every API request hangs (a reconcile waits on an answer that does not come)
/// still stops the ops-manager within 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_api_server_hangs_stops_within_5s() {
    let (env, _listening, kubeconfig) = listening_env(true).await;
    let opsm = Proc::spawn_with(
        "pgpool-ops-manager",
        Path::new(OPS_BIN),
        &kubeconfig,
        &[("LEADER_ELECT", "true"), ("LEASE_NAMESPACE", "default")],
    );
    env.ready_pgpool("pp-update", "4.5.3", 2, false).await;
    env.update_request("upd", "pp-update", "4.6.0", json!({}))
        .await;
    env.wait_request("upd", Duration::from_secs(60), "progressing", |r| {
        common::condition(r, ops::UPDATE_VERSION).is_some()
    })
    .await;
    env.server.faults().set_latency(Duration::from_secs(60));
    opsm.terminate_within(Duration::from_secs(5)).await;
    env.server.faults().set_latency(Duration::ZERO);
}
