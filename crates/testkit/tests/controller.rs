//! A kube-runtime Controller with `.owns()` against the server, and the simulated kubelet.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Widget, eventually, server, widget, within};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{conditions, wait::await_condition, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use testkit::{ImageBehavior, Kubelet, KubeletConfig, TestServer, fixtures};

struct Ctx {
    client: kube::Client,
}

fn pod_is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Keeps one pod per Widget and mirrors the pod's readiness into the Widget's status.
async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let ns = w.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let widgets: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    let name = format!("{}-pod", w.name_any());
    let mut pod = fixtures::pod(&ns, &name, "app:1", [("widget", w.name_any().as_str())]);
    pod.metadata.namespace = None;
    pod.metadata.owner_references = w.controller_owner_ref(&()).map(|o| vec![o]);
    let pod = pods
        .patch(
            &name,
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(&pod),
        )
        .await?;
    let ready = pod_is_ready(&pod);
    if w.status.as_ref().map(|s| s.ready) != Some(ready) {
        widgets
            .patch_status(
                &w.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"ready": ready}})),
            )
            .await?;
    }
    Ok(Action::await_change())
}

fn error_policy(_w: Arc<Widget>, _e: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(50))
}

fn start_controller(s: &TestServer) -> tokio::task::JoinHandle<()> {
    let client = s.client_as("widget-controller");
    let widgets: Api<Widget> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    tokio::spawn(
        Controller::new(widgets, watcher::Config::default())
            .owns(pods, watcher::Config::default())
            .run(reconcile, error_policy, Arc::new(Ctx { client }))
            .for_each(|_| async {}),
    )
}

fn widget_ready(want: bool) -> impl Fn(Option<&Widget>) -> bool {
    move |w: Option<&Widget>| {
        w.and_then(|w| w.status.as_ref())
            .is_some_and(|s| s.ready == want)
    }
}

#[tokio::test]
async fn controller_owns_reacts_to_child_status_change() {
    let s = server();
    let ctrl = start_controller(&s);
    let widgets: Api<Widget> = Api::namespaced(s.client(), "default");
    let pods: Api<Pod> = Api::namespaced(s.client(), "default");
    widgets
        .create(&PostParams::default(), &widget("default", "w", 1))
        .await
        .unwrap();
    within(await_condition(widgets.clone(), "w", widget_ready(false)))
        .await
        .unwrap();
    let pod = pods.get("w-pod").await.unwrap();
    assert_eq!(pod.owner_references()[0].name, "w");

    // The child's status changes (as a kubelet would report it): the owner is reconciled.
    pods.patch_status(
        "w-pod",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .unwrap();
    within(await_condition(widgets.clone(), "w", widget_ready(true)))
        .await
        .unwrap();

    // And back.
    pods.patch_status(
        "w-pod",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
    )
    .await
    .unwrap();
    within(await_condition(widgets.clone(), "w", widget_ready(false)))
        .await
        .unwrap();

    // Steady state: once the controller has seen its last write, a no-op reconcile (triggered
    // by a widget label change) makes no change to the pod.
    let log = s.requests();
    let mark = log.mark();
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    eventually(|| async {
        log.since(&mark)
            .sum(|k| k.agent == "widget-controller" && k.verb == testkit::Verb::Apply)
            >= 1
    })
    .await;
    let since = log.since(&mark);
    assert_eq!(since.changes_excluding(&["client"]), 0, "{since}");
    ctrl.abort();
}

#[tokio::test]
async fn controller_with_kubelet_and_garbage_collection() {
    let s = server();
    let _kubelet = Kubelet::start(s.client_as("kubelet"), KubeletConfig::default());
    let ctrl = start_controller(&s);
    let widgets: Api<Widget> = Api::namespaced(s.client(), "default");
    let pods: Api<Pod> = Api::namespaced(s.client(), "default");
    widgets
        .create(&PostParams::default(), &widget("default", "w", 1))
        .await
        .unwrap();
    within(await_condition(widgets.clone(), "w", widget_ready(true)))
        .await
        .unwrap();
    let pod = pods.get("w-pod").await.unwrap();
    let uid = pod.uid().unwrap();

    // Deleting the owner garbage-collects the pod; the kubelet finishes its termination.
    widgets.delete("w", &DeleteParams::default()).await.unwrap();
    within(await_condition(
        pods.clone(),
        "w-pod",
        conditions::is_deleted(&uid),
    ))
    .await
    .unwrap();
    ctrl.abort();
}

#[tokio::test]
async fn kubelet_reports_images_readiness_crashes_and_deletes() {
    let s = server();
    let cfg = KubeletConfig {
        crash_interval: Duration::from_millis(30),
        ..KubeletConfig::default()
    }
    .ready_delay(Duration::from_millis(10))
    .image("broken:1", ImageBehavior::NeverReady)
    .image("crash:1", ImageBehavior::Crash);
    let _kubelet = Kubelet::start(s.client_as("kubelet"), cfg);
    let pods: Api<Pod> = Api::namespaced(s.client(), "default");

    let mut good = fixtures::pod("default", "good", "app:1", []);
    good.spec.as_mut().unwrap().init_containers =
        Some(vec![k8s_openapi::api::core::v1::Container {
            name: "init".into(),
            image: Some("init:1".into()),
            ..Default::default()
        }]);
    pods.create(&PostParams::default(), &good).await.unwrap();
    for (name, image) in [("broken", "broken:1"), ("crash", "crash:1")] {
        pods.create(
            &PostParams::default(),
            &fixtures::pod("default", name, image, []),
        )
        .await
        .unwrap();
    }

    let good = within(await_condition(pods.clone(), "good", |p: Option<&Pod>| {
        p.is_some_and(pod_is_ready)
    }))
    .await
    .unwrap()
    .unwrap();
    let spec = good.spec.unwrap();
    let status = good.status.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("testkit-node"));
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.pod_ip.is_some());
    let cs = &status.container_statuses.unwrap()[0];
    assert_eq!(
        (cs.name.as_str(), cs.image.as_str(), cs.ready),
        ("main", "app:1", true)
    );
    assert!(cs.state.as_ref().unwrap().running.is_some());
    let init = &status.init_container_statuses.unwrap()[0];
    assert_eq!(
        init.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );

    let broken = within(await_condition(
        pods.clone(),
        "broken",
        |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.phase.as_deref() == Some("Running"))
        },
    ))
    .await
    .unwrap()
    .unwrap();
    assert!(!pod_is_ready(&broken));
    assert!(!broken.status.unwrap().container_statuses.unwrap()[0].ready);

    let crash = within(await_condition(pods.clone(), "crash", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| cs[0].restart_count >= 2)
    }))
    .await
    .unwrap()
    .unwrap();
    let cs = &crash.status.unwrap().container_statuses.unwrap()[0];
    let waiting = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(!cs.ready);

    // An in-place image change is reported with the new image.
    pods.patch(
        "good",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(
                json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "app:2"}]),
            )
            .unwrap(),
        ),
    )
    .await
    .unwrap();
    within(await_condition(pods.clone(), "good", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| cs[0].image == "app:2")
    }))
    .await
    .unwrap();

    // Graceful deletion of bound pods is finished by the kubelet.
    for name in ["good", "broken", "crash"] {
        let uid = pods.get(name).await.unwrap().uid().unwrap();
        pods.delete(name, &DeleteParams::default()).await.unwrap();
        within(await_condition(
            pods.clone(),
            name,
            conditions::is_deleted(&uid),
        ))
        .await
        .unwrap();
    }
}
