//! The real `pgpool-provisioner` binary, as a process, against the testkit API server on
//! 127.0.0.1 (with the simulated kubelet in this process): the example Pgpool becomes Ready,
//! and SIGTERM stops the binary within 5 s.

mod common;

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kube::api::{Api, PostParams};
use pgpool_api::{Pgpool, PgpoolPhase};
use testkit::{Kubelet, KubeletConfig, TestServer, Verb};

const BIN: &str = env!("CARGO_BIN_EXE_pgpool-provisioner");

struct Process {
    child: Child,
    dir: tempfile::TempDir,
}

impl Process {
    fn output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            read("stdout"),
            read("stderr")
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(kubeconfig: &std::path::Path) -> Process {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = File::create(dir.path().join("stdout")).expect("stdout file");
    let stderr = File::create(dir.path().join("stderr")).expect("stderr file");
    let child = Command::new(BIN)
        .env("KUBECONFIG", kubeconfig)
        .env("LOG_LEVEL", "info")
        .env("LOG_FORMAT", "text")
        .env("POD_NAME", "provisioner-test")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("WATCH_NAMESPACE")
        .args(["--metrics-bind-address", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn pgpool-provisioner");
    Process { child, dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_provisions_the_example_and_stops_on_sigterm() {
    let server = TestServer::with_crds(pgpool_api::crds::all());
    let listening = server.listen_as(AGENT).await.expect("listen");
    let _kubelet = Kubelet::start(
        server.client_as("kubelet"),
        KubeletConfig::default().ready_delay(Duration::from_millis(20)),
    );
    let client = server.client_as("test");
    install_catalog_and_backend(&client).await;

    let mut process = spawn(listening.kubeconfig_path());
    let pgpools: Api<Pgpool> = Api::namespaced(client.clone(), NS);
    pgpools
        .create(&PostParams::default(), &example_pgpool())
        .await
        .expect("create Pgpool");

    let ready = tokio::time::timeout(TIMEOUT, async {
        loop {
            let phase = pgpools
                .get_opt(NAME)
                .await
                .ok()
                .flatten()
                .and_then(|p| p.status)
                .and_then(|s| s.phase);
            if phase == Some(PgpoolPhase::Ready) {
                return;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("binary exited with {status}:\n{}", process.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        ready.is_ok(),
        "Pgpool not Ready in time:\n{}",
        process.output()
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    let pod = pods.get("pp-update-0").await.expect("pod pp-update-0");
    assert_eq!(
        pod.spec.unwrap().containers[0].image.as_deref(),
        Some(IMAGE_453)
    );
    let applies = server
        .requests()
        .snapshot()
        .sum(|k| k.agent == AGENT && k.verb == Verb::Apply);
    assert!(applies > 0, "the children came from the binary");

    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let exited = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(status) = process.child.try_wait().expect("try_wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let status = match exited {
        Ok(status) => status,
        Err(_) => panic!("still running 5 s after SIGTERM:\n{}", process.output()),
    };
    assert!(sent.elapsed() < Duration::from_secs(5));
    assert!(status.success(), "exit {status}:\n{}", process.output());
    drop(listening);
}
