//! The latency model: with it on, a write takes at least the write delay and its watch event
//! reaches a watcher no sooner than the watch-event delay after the write took effect.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use testkit::{Latency, ServerConfig, TestServer, fixtures};

const READ: Duration = Duration::from_millis(20);
const WRITE: Duration = Duration::from_millis(60);
const WATCH_EVENT: Duration = Duration::from_millis(90);

fn server(latency: Latency) -> TestServer {
    TestServer::with_config(ServerConfig {
        latency,
        ..ServerConfig::default()
    })
}

#[tokio::test]
async fn writes_reads_and_watch_events_wait_their_delays() {
    let s = server(Latency {
        read: READ,
        write: WRITE,
        watch_event: WATCH_EVENT,
    });
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let mut events = cms
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();

    let sent = Instant::now();
    cms.create(
        &PostParams::default(),
        &fixtures::config_map("default", "c", [("k", "v")]),
    )
    .await
    .expect("create");
    let answered = sent.elapsed();
    assert!(answered >= WRITE, "create answered after {answered:?}");

    let ev = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .expect("no watch event within 10 s")
        .expect("watch stream")
        .expect("watch ended");
    let arrived = sent.elapsed();
    assert!(matches!(ev, WatchEvent::Added(_)), "got {ev:?}");
    // the change took effect at the end of the write's wait, the event came WATCH_EVENT later
    assert!(
        arrived >= WRITE + WATCH_EVENT,
        "event after {arrived:?}, expected at least {:?}",
        WRITE + WATCH_EVENT
    );

    let started = Instant::now();
    cms.get("c").await.expect("get");
    let read = started.elapsed();
    assert!(read >= READ, "get answered after {read:?}");
}

#[tokio::test]
async fn off_by_default() {
    assert_eq!(ServerConfig::default().latency, Latency::OFF);
    let s = TestServer::new();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let started = Instant::now();
    for i in 0..10 {
        cms.create(
            &PostParams::default(),
            &fixtures::config_map("default", &format!("c{i}"), [("k", "v")]),
        )
        .await
        .expect("create");
    }
    // ten writes under the kube-apiserver model would take 150 ms
    assert!(started.elapsed() < Latency::kube_apiserver().write * 10);
}
