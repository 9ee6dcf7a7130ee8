//! The `local-node` binary (root only): runs a pod against an API server it reaches through
//! a kubeconfig, logs pod events on stderr, and on SIGTERM kills its pods and removes their
//! namespaces and its bridge.

mod common;

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::{Api, PostParams};

use common::*;

#[tokio::test]
async fn binary_runs_a_pod_and_cleans_up_on_sigterm() {
    if !root_or_skip("binary") {
        return;
    }
    if link_exists("lnbr0") {
        say("skipping binary: another local-node (bridge lnbr0) runs on this machine");
        return;
    }
    let server = testkit::TestServer::new();
    let listening = server.listen().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.yaml");
    std::fs::write(&images, "images:\n  test/sleep:1: {}\n").unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_local-node"))
        .arg("--kubeconfig")
        .arg(listening.kubeconfig_path())
        .arg("--images")
        .arg(&images)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--propagation-delay", "200ms"])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(server.client(), "default");
    let pod = Pod {
        metadata: testkit::fixtures::meta("default", "sleeper"),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some("test/sleep:1".into()),
                command: Some(vec!["sleep".into(), "1000".into()]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_pod(
        &pods,
        "sleeper",
        "sleeper Ready",
        Duration::from_secs(30),
        ready,
    )
    .await;
    assert_eq!(netns_with_prefix("ln").len(), 1);

    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("local-node stops within 15 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("pod bound"), "{stderr}");
    assert!(stderr.contains("pod removed from the node"), "{stderr}");
    assert!(netns_with_prefix("ln").is_empty());
    assert!(!link_exists("lnbr0"));
}
