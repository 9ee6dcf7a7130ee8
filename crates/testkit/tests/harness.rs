//! The controller harness: ready waits for the signal, stop cancels and returns the output,
//! drop cancels the controller, kill aborts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use testkit::harness::{Controller, Harness};
use testkit::{TestServer, Verb, fixtures};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn spawn_ready_waits_for_the_signal_and_stop_returns_the_output() {
    let h = Harness::new(TestServer::new());
    let signalled = Arc::new(AtomicBool::new(false));
    let seen = signalled.clone();
    let ctl = h
        .spawn_ready("ctl", LIMIT, |client, stop, ready| async move {
            let cms: Api<ConfigMap> = Api::namespaced(client, "default");
            cms.create(
                &PostParams::default(),
                &fixtures::config_map("default", "c", [("k", "v")]),
            )
            .await
            .expect("create");
            seen.store(true, Ordering::SeqCst);
            ready.signal();
            stop.cancelled().await;
            7
        })
        .await;
    assert!(signalled.load(Ordering::SeqCst), "ready before the signal");
    assert!(ctl.is_running());
    let creates = h
        .server
        .requests()
        .snapshot()
        .sum(|k| k.verb == Verb::Create && k.resource == "configmaps" && k.agent == "ctl");
    assert_eq!(creates, 1);
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    assert!(cms.get_opt("c").await.expect("get").is_some());
    assert_eq!(ctl.stop(LIMIT).await, 7);
}

#[tokio::test]
async fn drop_cancels_and_kill_aborts() {
    let ctl = Controller::spawn(|stop| async move { stop.cancelled().await });
    let token = ctl.token();
    assert!(!token.is_cancelled());
    drop(ctl);
    assert!(token.is_cancelled());

    let ctl = Controller::spawn(|_stop| std::future::pending::<()>());
    assert!(ctl.is_running());
    tokio::time::timeout(LIMIT, ctl.kill())
        .await
        .expect("kill returns once the task is gone");
}

#[tokio::test]
#[should_panic(expected = "ended before it was ready")]
async fn a_controller_that_ends_before_ready_fails_the_test() {
    Controller::spawn_ready(LIMIT, |_stop, _ready| async {}).await;
}
