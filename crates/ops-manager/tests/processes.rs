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

/// A child process that is killed when dropped.
struct Proc {
    name: &'static str,
    child: Option<Child>,
}

impl Proc {
    fn spawn(name: &'static str, bin: &Path, kubeconfig: &Path) -> Self {
        let child = Command::new(bin)
            .env("KUBECONFIG", kubeconfig)
            .env("LEADER_ELECT", "false")
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
    async fn terminate(mut self) {
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
        let status = common::within(
            Duration::from_secs(10),
            &format!("{name} to exit after SIGTERM"),
            async {
                loop {
                    if let Some(status) = child.try_wait().expect("try_wait") {
                        return status;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;
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
    let env =
        Env::without_provisioner(KubeletConfig::default().ready_delay(Duration::from_millis(30)))
            .await;
    let listening = env.server.listen().await.expect("listen");
    let kubeconfig = listening.kubeconfig_path().to_path_buf();
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
