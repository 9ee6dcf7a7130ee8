//! A separately spawned kube-rs process lists and watches through a listening server.

mod common;

use std::process::Stdio;

use common::{server, within};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use testkit::{Verb, fixtures};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn separate_process_lists_and_watches() {
    let s = server();
    let listening = s.listen_as("probe").await.unwrap();
    let kubeconfig = std::fs::read_to_string(listening.kubeconfig_path()).unwrap();
    assert!(kubeconfig.contains(&listening.url()));

    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    cms.create(
        &PostParams::default(),
        &fixtures::config_map("default", "before", [("k", "v")]),
    )
    .await
    .unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_testkit-probe"))
        .args(["default", "after"])
        .env("KUBECONFIG", listening.kubeconfig_path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = within(lines.next_line()).await.unwrap().unwrap();
    assert_eq!(first, "LIST before");

    // Wait until the probe's watch is open, then create the object it waits for.
    let log = s.requests();
    common::eventually(|| async {
        log.snapshot()
            .sum(|k| k.verb == Verb::Watch && k.agent != "client")
            > 0
    })
    .await;
    cms.create(
        &PostParams::default(),
        &fixtures::config_map("default", "after", [("k", "v")]),
    )
    .await
    .unwrap();
    let seen = within(lines.next_line()).await.unwrap().unwrap();
    assert_eq!(seen, "SEEN after");
    let status = within(child.wait()).await.unwrap();
    assert!(status.success());

    let remote = log.snapshot();
    assert!(remote.sum(|k| k.verb == Verb::List && k.agent == "probe") >= 2);
    assert_eq!(remote.writes_by("probe"), 0);

    // After shutdown, the port no longer answers.
    let addr = listening.addr();
    drop(listening);
    common::eventually(|| async { tokio::net::TcpStream::connect(addr).await.is_err() }).await;
}
