//! Pods that cannot run (root only): an image the map does not know fails with
//! `ErrImagePull`; a container that exits at once is restarted with back-off
//! (`CrashLoopBackOff`, restartCount and lastState as a kubelet writes them).

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::{Api, DeleteParams, PostParams};

use common::*;

const IMAGES: &str = "images:\n  test/crash:1:\n    command: [\"sh\", \"-c\", \"exit 3\"]\n";

fn pod(name: &str, image: &str) -> Pod {
    Pod {
        metadata: testkit::fixtures::meta("default", name),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                command: Some(vec!["/never/run".into()]),
                ..Container::default()
            }],
            termination_grace_period_seconds: Some(1),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

#[tokio::test]
async fn unmapped_images_fail_with_err_image_pull_and_crashing_ones_back_off() {
    if !root_or_skip("failures") {
        return;
    }
    let server = testkit::TestServer::new();
    let client = server.client();
    let state = tempfile::tempdir().unwrap();
    let node = node(client.clone(), "ltf", 2, IMAGES, state.path()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &pod("pull", "example.com/unknown:1"))
        .await
        .unwrap();
    pods.create(&pp, &pod("crash", "test/crash:1"))
        .await
        .unwrap();

    let pulled = wait_pod(
        &pods,
        "pull",
        "ErrImagePull",
        Duration::from_secs(30),
        |p| waiting_reason(p).as_deref() == Some("ErrImagePull"),
    )
    .await;
    assert_eq!(pulled.status.unwrap().phase.as_deref(), Some("Pending"));

    let crashed = wait_pod(
        &pods,
        "crash",
        "a restart then CrashLoopBackOff",
        Duration::from_secs(30),
        |p| {
            let cs = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref());
            let restarted = cs.is_some_and(|c| c[0].restart_count >= 1);
            restarted && waiting_reason(p).as_deref() == Some("CrashLoopBackOff")
        },
    )
    .await;
    let cs = &crashed.status.unwrap().container_statuses.unwrap()[0];
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert!(!cs.ready);

    for name in ["pull", "crash"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    wait_for("both pods removed", Duration::from_secs(30), || async {
        let left = pods.list(&Default::default()).await.unwrap().items.len();
        (left == 0).then_some(())
    })
    .await;
    node.stop().await;
    assert!(netns_with_prefix("ltf").is_empty());
    assert!(!link_exists("ltfbr"));
}
