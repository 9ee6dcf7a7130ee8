//! CRUD, status, apply, watch, selectors, deletion, garbage collection, eviction, request log
//! and faults of the in-memory API server, exercised through `kube::Client`.

mod common;

use std::time::Duration;

use common::{Widget, WidgetStatus, eventually, server, widget, within};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy,
    WatchEvent, WatchParams,
};
use kube::{Resource, ResourceExt};
use serde_json::json;
use testkit::{FaultRule, ServerConfig, TestServer, Verb, fixtures};

fn api_err(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_replace_conflict() {
    let s = server();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let created = cms
        .create(
            &PostParams::default(),
            &fixtures::config_map("default", "c", [("k", "v")]),
        )
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let rv1 = created.resource_version().unwrap();

    let again = cms
        .create(
            &PostParams::default(),
            &fixtures::config_map("default", "c", [("k", "v")]),
        )
        .await
        .unwrap_err();
    assert_eq!(api_err(again), (409, "AlreadyExists".into()));

    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "v2".to_string())].into());
    let replaced = cms
        .replace("c", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(replaced.resource_version().unwrap(), rv1);
    assert_eq!(replaced.metadata.generation, Some(2));

    // `changed` still carries rv1: a stale replace is a 409 Conflict.
    changed.data = Some([("k".to_string(), "v3".to_string())].into());
    let stale = cms
        .replace("c", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(api_err(stale), (409, "Conflict".into()));
    let got = cms.get("c").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v2");

    let missing = cms.get("nope").await.unwrap_err();
    assert_eq!(api_err(missing), (404, "NotFound".into()));
}

#[tokio::test]
async fn generate_name_and_validation() {
    let s = server();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let mut cm = fixtures::config_map("default", "", [("a", "b")]);
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("gen-".into());
    let c = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(c.name_any().starts_with("gen-") && c.name_any().len() == 9);

    let bad = cms
        .create(
            &PostParams::default(),
            &fixtures::config_map("default", "Bad_Name", [("a", "b")]),
        )
        .await
        .unwrap_err();
    assert_eq!(api_err(bad), (422, "Invalid".into()));
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let s = server();
    let ws: Api<Widget> = Api::namespaced(s.client(), "default");
    let mut w = widget("default", "w", 1);
    w.status = Some(WidgetStatus {
        ready: true,
        ..Default::default()
    });
    let created = ws.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.status, None, "status is dropped on create");
    assert_eq!(created.metadata.generation, Some(1));

    // Status write: rv moves, generation does not, spec in the body is ignored.
    let st = ws
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}, "status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.as_ref().map(|s| s.ready), Some(true));
    assert_eq!(st.spec.replicas, 1);
    assert_eq!(st.metadata.generation, Some(1));
    assert_ne!(st.resource_version(), created.resource_version());

    // Main write: status in the body is ignored, spec change bumps generation.
    let main = ws
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"ready": false}})),
        )
        .await
        .unwrap();
    assert_eq!(main.spec.replicas, 3);
    assert_eq!(main.status.as_ref().map(|s| s.ready), Some(true));
    assert_eq!(main.metadata.generation, Some(2));

    // Metadata-only change: no generation bump.
    let labelled = ws
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(2));

    // A write that changes nothing keeps the resourceVersion.
    let same = ws
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(same.resource_version(), labelled.resource_version());
    let same_status = ws
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(same_status.resource_version(), labelled.resource_version());
}

#[tokio::test]
async fn scale_subresource() {
    let s = server();
    let ws: Api<Widget> = Api::namespaced(s.client(), "default");
    ws.create(&PostParams::default(), &widget("default", "w", 2))
        .await
        .unwrap();
    ws.patch_status(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"replicas": 2, "selector": "app=w"}})),
    )
    .await
    .unwrap();
    let scale = ws.get_scale("w").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.as_ref().unwrap().replicas, 2);
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=w"));
    ws.patch_scale(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    assert_eq!(ws.get("w").await.unwrap().spec.replicas, 5);
}

#[tokio::test]
async fn json_patch_and_rv_precondition_in_patch() {
    let s = server();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let c = cms
        .create(
            &PostParams::default(),
            &fixtures::config_map("default", "c", [("k", "v")]),
        )
        .await
        .unwrap();
    let p: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "replace", "path": "/data/k", "value": "w"}
    ]))
    .unwrap();
    let out = cms
        .patch("c", &PatchParams::default(), &Patch::Json::<()>(p))
        .await
        .unwrap();
    assert_eq!(out.data.unwrap()["k"], "w");
    // A failing test op is rejected.
    let p: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/k", "value": "v"}])).unwrap();
    let err = cms
        .patch("c", &PatchParams::default(), &Patch::Json::<()>(p))
        .await
        .unwrap_err();
    assert_eq!(api_err(err).0, 422);
    // A merge patch carrying an old resourceVersion is a conflict.
    let err = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"resourceVersion": c.resource_version()}, "data": {"k": "x"}}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(api_err(err), (409, "Conflict".into()));
}

#[tokio::test]
async fn server_side_apply() {
    let s = server();
    let ws: Api<Widget> = Api::namespaced(s.client(), "default");
    let log = s.requests();
    let mut desired = widget("default", "w", 1);
    desired.spec.color = Some("red".into());
    desired.metadata.labels = Some([("owner".to_string(), "op".to_string())].into());
    let pp = PatchParams::apply("op").force();

    let created = ws.patch("w", &pp, &Patch::Apply(&desired)).await.unwrap();
    assert_eq!(created.spec.color.as_deref(), Some("red"));
    assert_eq!(created.metadata.generation, Some(1));

    // Identical re-apply: counted as a write, but no change and no new resourceVersion.
    let mark = log.mark();
    let again = ws.patch("w", &pp, &Patch::Apply(&desired)).await.unwrap();
    assert_eq!(again.resource_version(), created.resource_version());
    assert_eq!(log.writes_since(&mark), 1);
    assert_eq!(log.changes_since(&mark), 0);

    // A second manager sets another field; both survive.
    let other =
        json!({"apiVersion": "test.testkit.io/v1", "kind": "Widget", "spec": {"size": "xl"}});
    let both = ws
        .patch("w", &PatchParams::apply("other"), &Patch::Apply(&other))
        .await
        .unwrap();
    assert_eq!(both.spec.size.as_deref(), Some("xl"));
    assert_eq!(both.spec.color.as_deref(), Some("red"));

    // The first manager stops applying color and the label: they are removed, size stays.
    let mut less = widget("default", "w", 1);
    less.spec.color = None;
    let after = ws.patch("w", &pp, &Patch::Apply(&less)).await.unwrap();
    assert_eq!(after.spec.color, None);
    assert_eq!(after.spec.size.as_deref(), Some("xl"));
    assert!(after.labels().get("owner").is_none());

    // Changing a field owned by another manager conflicts without force, succeeds with it.
    let steal = json!({"apiVersion": "test.testkit.io/v1", "kind": "Widget", "spec": {"replicas": 1, "size": "s"}});
    let err = ws
        .patch("w", &PatchParams::apply("op"), &Patch::Apply(&steal))
        .await
        .unwrap_err();
    assert_eq!(api_err(err), (409, "Conflict".into()));
    let forced = ws.patch("w", &pp, &Patch::Apply(&steal)).await.unwrap();
    assert_eq!(forced.spec.size.as_deref(), Some("s"));
    assert_eq!(forced.spec.replicas, 1);

    // Applying status goes through the status subresource only.
    let st =
        json!({"apiVersion": "test.testkit.io/v1", "kind": "Widget", "status": {"ready": true}});
    let with_status = ws.patch_status("w", &pp, &Patch::Apply(&st)).await.unwrap();
    assert_eq!(with_status.status.map(|s| s.ready), Some(true));

    // fieldManager is required; apiVersion/kind are required.
    let err = ws
        .patch("w", &PatchParams::default(), &Patch::Apply(&desired))
        .await
        .unwrap_err();
    assert_eq!(api_err(err).0, 400);
    let err = ws
        .patch("w", &pp, &Patch::Apply(json!({"spec": {"replicas": 1}})))
        .await
        .unwrap_err();
    assert_eq!(api_err(err).0, 400);
}

#[tokio::test]
async fn list_selectors_and_pagination() {
    let s = server();
    let client = s.client();
    for (ns, name, tier) in [
        ("a", "x1", "db"),
        ("a", "x2", "web"),
        ("b", "x3", "db"),
        ("b", "x4", ""),
    ] {
        let mut cm = fixtures::config_map(ns, name, [("k", "v")]);
        if !tier.is_empty() {
            cm.metadata.labels = Some([("tier".to_string(), tier.to_string())].into());
        }
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }
    let all: Api<ConfigMap> = Api::all(client.clone());
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        let mut v: Vec<String> = l.items.iter().map(|c| c.name_any()).collect();
        v.sort();
        v.join(",")
    };
    let q = |sel: &str| ListParams::default().labels(sel);
    assert_eq!(names(all.list(&q("tier=db")).await.unwrap()), "x1,x3");
    assert_eq!(names(all.list(&q("tier!=db")).await.unwrap()), "x2,x4");
    assert_eq!(
        names(all.list(&q("tier in (web,db)")).await.unwrap()),
        "x1,x2,x3"
    );
    assert_eq!(
        names(all.list(&q("tier notin (db)")).await.unwrap()),
        "x2,x4"
    );
    assert_eq!(names(all.list(&q("tier")).await.unwrap()), "x1,x2,x3");
    assert_eq!(names(all.list(&q("!tier")).await.unwrap()), "x4");
    let by_name = ListParams::default().fields("metadata.name=x3");
    assert_eq!(names(all.list(&by_name).await.unwrap()), "x3");
    let by_ns = ListParams::default().fields("metadata.namespace=a");
    assert_eq!(names(all.list(&by_ns).await.unwrap()), "x1,x2");
    let in_b: Api<ConfigMap> = Api::namespaced(client.clone(), "b");
    assert_eq!(
        names(in_b.list(&ListParams::default()).await.unwrap()),
        "x3,x4"
    );
    let err = all.list(&q("tier in (db")).await.unwrap_err();
    assert_eq!(api_err(err).0, 400);

    // Pagination.
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = all.list(&lp).await.unwrap();
        seen.extend(page.items.iter().map(|c| c.name_any()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["x1", "x2", "x3", "x4"]);
}

#[tokio::test]
async fn watch_resume_and_gone() {
    let s = server();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let c = cms
        .create(
            &PostParams::default(),
            &fixtures::config_map("default", "c", [("k", "0")]),
        )
        .await
        .unwrap();
    let from = c.resource_version().unwrap();
    for i in 1..=3 {
        cms.patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    // Resume from the creation: the three modifications are replayed in order.
    let stream = cms.watch(&WatchParams::default(), &from).await.unwrap();
    let events: Vec<_> = within(stream.take(3).try_collect::<Vec<_>>())
        .await
        .unwrap();
    let values: Vec<String> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Modified(cm) => cm.data.as_ref().unwrap()["k"].clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(values, ["1", "2", "3"]);

    // After compaction the old resourceVersion is gone: ERROR 410.
    s.compact_history();
    let mut stream = cms
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    match within(stream.next()).await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 error event, got {other:?}"),
    }
    // Watching from the current resourceVersion still works.
    let now = cms.get("c").await.unwrap().resource_version().unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &now)
        .await
        .unwrap()
        .boxed();
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "4"}})),
    )
    .await
    .unwrap();
    match within(stream.next()).await {
        Some(Ok(WatchEvent::Modified(cm))) => assert_eq!(cm.data.unwrap()["k"], "4"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn history_limit_gives_gone() {
    let s = TestServer::with_config(ServerConfig {
        history_limit: 2,
        ..ServerConfig::default()
    });
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let c = cms
        .create(
            &PostParams::default(),
            &fixtures::config_map("default", "c", [("k", "0")]),
        )
        .await
        .unwrap();
    let from = c.resource_version().unwrap();
    for i in 1..=3 {
        cms.patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let mut stream = cms
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    match within(stream.next()).await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_initial_state_selectors_bookmarks_timeout() {
    let s = TestServer::with_config(ServerConfig {
        bookmark_interval: Duration::from_millis(20),
        ..ServerConfig::default()
    });
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let mut a = fixtures::config_map("default", "a", [("k", "v")]);
    a.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
    cms.create(&PostParams::default(), &a).await.unwrap();
    cms.create(
        &PostParams::default(),
        &fixtures::config_map("default", "b", [("k", "v")]),
    )
    .await
    .unwrap();

    // rv "0": synthetic ADDED for matching objects only.
    let wp = WatchParams::default().labels("app=x").timeout(2);
    let mut stream = cms.watch(&wp, "0").await.unwrap().boxed();
    match within(stream.next()).await {
        Some(Ok(WatchEvent::Added(cm))) => assert_eq!(cm.name_any(), "a"),
        other => panic!("unexpected {other:?}"),
    }
    // b starts matching: ADDED; then stops: DELETED.
    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match within(stream.next()).await {
            Some(Ok(WatchEvent::Added(cm))) => kinds.push(format!("ADDED {}", cm.name_any())),
            Some(Ok(WatchEvent::Deleted(cm))) => kinds.push(format!("DELETED {}", cm.name_any())),
            Some(Ok(WatchEvent::Bookmark(_))) => kinds.push("BOOKMARK".into()),
            other => panic!("unexpected {other:?}"),
        }
        kinds.dedup();
        if kinds.first().map(String::as_str) == Some("BOOKMARK") {
            kinds.remove(0);
        }
    }
    assert_eq!(kinds[0], "ADDED b");
    assert_eq!(kinds[1], "DELETED b");
    assert_eq!(kinds[2], "BOOKMARK");
    // timeoutSeconds=2 ends the stream.
    within(async {
        while let Some(ev) = stream.next().await {
            assert!(matches!(ev, Ok(WatchEvent::Bookmark(_))));
        }
    })
    .await;
}

#[tokio::test]
async fn streaming_list_watcher() {
    let s = server();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    cms.create(
        &PostParams::default(),
        &fixtures::config_map("default", "a", [("k", "v")]),
    )
    .await
    .unwrap();
    let cfg = kube::runtime::watcher::Config::default().streaming_lists();
    let mut stream = kube::runtime::watcher(cms.clone(), cfg).boxed();
    let mut saw_a = false;
    within(async {
        while let Some(ev) = stream.next().await {
            match ev.unwrap() {
                kube::runtime::watcher::Event::InitApply(cm) => saw_a |= cm.name_any() == "a",
                kube::runtime::watcher::Event::InitDone => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(saw_a);
}

#[tokio::test]
async fn noop_write_emits_no_event() {
    let s = server();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let c = cms
        .create(
            &PostParams::default(),
            &fixtures::config_map("default", "c", [("k", "v")]),
        )
        .await
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &c.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    // No-op writes of several kinds.
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    cms.replace("c", &PostParams::default(), &c).await.unwrap();
    let mut applied = fixtures::config_map("default", "c", [("k", "v")]);
    applied.metadata.namespace = None;
    cms.patch("c", &PatchParams::apply("m"), &Patch::Apply(&applied))
        .await
        .unwrap();
    cms.patch("c", &PatchParams::apply("m"), &Patch::Apply(&applied))
        .await
        .unwrap();
    // A real change: it must be the first event seen.
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await
    .unwrap();
    match within(stream.next()).await {
        Some(Ok(WatchEvent::Modified(cm))) => assert_eq!(cm.data.unwrap()["k"], "changed"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn finalizers_delay_deletion() {
    let s = server();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let mut cm = fixtures::config_map("default", "c", [("k", "v")]);
    cm.metadata.finalizers = Some(vec!["test/hold".into()]);
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let res = cms.delete("c", &DeleteParams::default()).await.unwrap();
    let pending = res.left().expect("deletion is pending");
    assert!(pending.metadata.deletion_timestamp.is_some());
    let still = cms.get("c").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_err(cms.get("c").await.unwrap_err()).0, 404);

    // Without finalizers, deletion is immediate and returns a Status.
    cms.create(
        &PostParams::default(),
        &fixtures::config_map("default", "d", [("k", "v")]),
    )
    .await
    .unwrap();
    assert!(
        cms.delete("d", &DeleteParams::default())
            .await
            .unwrap()
            .is_right()
    );
    assert_eq!(api_err(cms.get("d").await.unwrap_err()).0, 404);
}

async fn owner_and_children(s: &TestServer) -> (Api<ConfigMap>, Api<Secret>, ConfigMap) {
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    let secrets: Api<Secret> = Api::namespaced(s.client(), "default");
    let owner = cms
        .create(
            &PostParams::default(),
            &fixtures::config_map("default", "owner", [("k", "v")]),
        )
        .await
        .unwrap();
    let oref = fixtures::owner_ref(&owner).unwrap();
    for n in ["s1", "s2"] {
        let mut sec = fixtures::secret("default", n, [("p", "x")]);
        sec.metadata.owner_references = Some(vec![oref.clone()]);
        secrets.create(&PostParams::default(), &sec).await.unwrap();
    }
    (cms, secrets, owner)
}

#[tokio::test]
async fn garbage_collection_background() {
    let s = server();
    let (cms, secrets, _) = owner_and_children(&s).await;
    // s2 has a second owner that stays.
    let other = cms
        .create(
            &PostParams::default(),
            &fixtures::config_map("default", "other", [("k", "v")]),
        )
        .await
        .unwrap();
    let mut s2 = secrets.get("s2").await.unwrap();
    s2.metadata.owner_references.as_mut().unwrap().push(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            controller: None,
            ..fixtures::owner_ref(&other).unwrap()
        },
    );
    secrets
        .replace("s2", &PostParams::default(), &s2)
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(|| async { secrets.get_opt("s1").await.unwrap().is_none() }).await;
    let s2 = secrets.get("s2").await.unwrap();
    let refs = s2.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "other");
}

#[tokio::test]
async fn garbage_collection_foreground_and_orphan() {
    let s = server();
    let (cms, secrets, _) = owner_and_children(&s).await;
    // A child with a finalizer holds a foreground deletion of its owner.
    secrets
        .patch(
            "s1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["hold"]}})),
        )
        .await
        .unwrap();
    let res = cms
        .delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    assert!(res.is_left());
    let owner = cms.get("owner").await.unwrap();
    assert!(
        owner
            .finalizers()
            .contains(&"foregroundDeletion".to_string())
    );
    assert!(secrets.get_opt("s2").await.unwrap().is_none());
    secrets
        .patch(
            "s1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    eventually(|| async { cms.get_opt("owner").await.unwrap().is_none() }).await;

    // Orphan: children survive without the owner reference.
    let (cms, secrets, _) = owner_and_children(&s).await;
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    cms.delete("owner", &dp).await.unwrap();
    assert!(cms.get_opt("owner").await.unwrap().is_none());
    for n in ["s1", "s2"] {
        assert!(
            secrets
                .get(n)
                .await
                .unwrap()
                .metadata
                .owner_references
                .is_none()
        );
    }
}

async fn ready_pod(pods: &Api<Pod>, name: &str, ready: bool) {
    make_pod(pods, name, ready, "db", None).await;
}

async fn make_pod(pods: &Api<Pod>, name: &str, ready: bool, app: &str, owner: Option<&Widget>) {
    let mut pod = fixtures::pod("default", name, "img:1", [("app", app)]);
    pod.metadata.owner_references = owner
        .and_then(|o| o.controller_owner_ref(&()))
        .map(|r| vec![r]);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let status = if ready { "True" } else { "False" };
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": status}]}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn eviction_respects_pod_disruption_budget() {
    let s = server();
    let pods: Api<Pod> = Api::namespaced(s.client(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(s.client(), "default");
    ready_pod(&pods, "p0", true).await;
    ready_pod(&pods, "p1", true).await;
    pdbs.create(
        &PostParams::default(),
        &fixtures::pdb_min_available("default", "budget", [("app", "db")], IntOrString::Int(2)),
    )
    .await
    .unwrap();

    // The budget's status is kept up to date, as by the disruption controller.
    let st = pdbs.get("budget").await.unwrap().status.unwrap();
    assert_eq!(
        (
            st.current_healthy,
            st.desired_healthy,
            st.expected_pods,
            st.disruptions_allowed
        ),
        (2, 2, 2, 0)
    );
    let err = pods.evict("p0", &EvictParams::default()).await.unwrap_err();
    match err {
        kube::Error::Api(st) => {
            assert_eq!(st.code, 429);
            assert_eq!(st.reason, "TooManyRequests");
            assert!(st.message.contains("disruption budget"), "{}", st.message);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(pods.get_opt("p0").await.unwrap().is_some());

    // Pods of a controller with a scale subresource: the expected count is its replicas, so
    // an evicted (not yet replaced) pod still counts. maxUnavailable 50% of 2 allows one.
    let ws: Api<Widget> = Api::namespaced(s.client(), "default");
    let owner = ws
        .create(&PostParams::default(), &widget("default", "web", 2))
        .await
        .unwrap();
    make_pod(&pods, "w0", true, "web", Some(&owner)).await;
    make_pod(&pods, "w1", true, "web", Some(&owner)).await;
    pdbs.create(
        &PostParams::default(),
        &fixtures::pdb_max_unavailable(
            "default",
            "web",
            [("app", "web")],
            IntOrString::String("50%".into()),
        ),
    )
    .await
    .unwrap();
    // The disruption controller finds a custom kind's scale through discovery; until its
    // discovery cache knows the kind, the budget is SyncFailed and allows nothing.
    let st = pdbs.get("web").await.unwrap().status.unwrap();
    assert_eq!(st.disruptions_allowed, 0);
    let cond = &st.conditions.unwrap()[0];
    assert_eq!(
        (cond.reason.as_str(), cond.status.as_str()),
        ("SyncFailed", "False")
    );
    assert_eq!(
        cond.message,
        r#"no matches for kind "Widget" in version "test.testkit.io/v1""#
    );
    assert_eq!(
        api_err(pods.evict("w0", &EvictParams::default()).await.unwrap_err()).0,
        429
    );
    s.disruption_controller_knows("test.testkit.io", "Widget");
    assert_eq!(
        pdbs.get("web")
            .await
            .unwrap()
            .status
            .unwrap()
            .disruptions_allowed,
        1
    );
    pods.evict("w0", &EvictParams::default()).await.unwrap();
    assert!(pods.get_opt("w0").await.unwrap().is_none());
    let st = pdbs.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (
            st.current_healthy,
            st.desired_healthy,
            st.expected_pods,
            st.disruptions_allowed
        ),
        (1, 1, 2, 0)
    );
    let err = pods.evict("w1", &EvictParams::default()).await.unwrap_err();
    assert_eq!(api_err(err).0, 429);
    // An unready pod can go while the budget is healthy (1 healthy, needs 1).
    make_pod(&pods, "w2", false, "web", Some(&owner)).await;
    pods.evict("w2", &EvictParams::default()).await.unwrap();

    // Pods not covered by any budget are evicted freely.
    pods.create(
        &PostParams::default(),
        &fixtures::pod("default", "free", "img:1", [("app", "free")]),
    )
    .await
    .unwrap();
    pods.evict("free", &EvictParams::default()).await.unwrap();
    assert!(pods.get_opt("free").await.unwrap().is_none());
}

#[tokio::test]
async fn graceful_pod_deletion_waits_for_kubelet() {
    let s = server();
    let pods: Api<Pod> = Api::namespaced(s.client(), "default");
    let mut p = fixtures::pod("default", "bound", "img:1", []);
    p.spec.as_mut().unwrap().node_name = Some("n1".into());
    pods.create(&PostParams::default(), &p).await.unwrap();
    pods.delete("bound", &DeleteParams::default())
        .await
        .unwrap();
    let got = pods.get("bound").await.unwrap();
    assert!(got.metadata.deletion_timestamp.is_some());
    assert_eq!(got.metadata.deletion_grace_period_seconds, Some(30));
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    pods.delete("bound", &dp).await.unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());
}

#[tokio::test]
async fn request_log_counts_writes_over_an_interval() {
    let s = server();
    let log = s.requests();
    let cms: Api<ConfigMap> = Api::namespaced(s.client_as("tester"), "default");
    let other: Api<ConfigMap> = Api::namespaced(s.client_as("other"), "default");
    cms.create(
        &PostParams::default(),
        &fixtures::config_map("default", "c", [("k", "v")]),
    )
    .await
    .unwrap();

    let mark = log.mark();
    cms.get("c").await.unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(log.writes_since(&mark), 0, "reads are not writes");
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    other
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "z"}})),
        )
        .await
        .unwrap();
    let since = log.since(&mark);
    assert_eq!(since.writes(), 3);
    assert_eq!(since.changes(), 2);
    assert_eq!(since.writes_by("tester"), 2);
    assert_eq!(since.writes_excluding(&["other"]), 2);
    assert_eq!(since.count(Verb::Patch, "configmaps"), 3);
    assert_eq!(since.count(Verb::Get, "configmaps"), 1);
    assert_eq!(since.count(Verb::List, "configmaps"), 1);
    let records = log.records_since(&mark);
    assert_eq!(records.len(), 5);
    assert!(records.iter().filter(|r| r.changed).count() == 2);

    // An empty interval.
    let quiet = log.mark();
    assert_eq!(log.writes_since(&quiet), 0);
}

#[tokio::test]
async fn faults_fail_requests_and_close_watches() {
    let s = server();
    let faults = s.faults();
    let cms: Api<ConfigMap> = Api::namespaced(s.client(), "default");
    cms.create(
        &PostParams::default(),
        &fixtures::config_map("default", "c", [("k", "v")]),
    )
    .await
    .unwrap();
    faults.fail_next(2, Verb::Patch, "configmaps", 503);
    let patch = Patch::Merge(json!({"data": {"k": "w"}}));
    for _ in 0..2 {
        let err = cms
            .patch("c", &PatchParams::default(), &patch)
            .await
            .unwrap_err();
        assert_eq!(api_err(err), (503, "ServiceUnavailable".into()));
    }
    cms.patch("c", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(faults.pending(), 0);

    faults.inject(FaultRule::new(409).verb(Verb::Update).name("c"));
    let c = cms.get("c").await.unwrap();
    let err = cms
        .replace("c", &PostParams::default(), &c)
        .await
        .unwrap_err();
    assert_eq!(api_err(err), (409, "Conflict".into()));
    // Gets are not affected by a rule for updates.
    faults.inject(FaultRule::new(500).verb(Verb::Update));
    cms.get("c").await.unwrap();
    faults.clear();

    let mut stream = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        within(stream.next()).await,
        Some(Ok(WatchEvent::Added(_)))
    ));
    faults.close_watches();
    assert!(within(stream.next()).await.is_none(), "stream ends");

    faults.set_latency(Duration::from_millis(30));
    let t = std::time::Instant::now();
    cms.get("c").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn discovery_and_crd_through_api() {
    let s = TestServer::new();
    let client = s.client();
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.has_group("policy"));
    assert!(discovery.has_group("apps"));
    // Creating a CRD through the API serves its kind.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.create(
        &PostParams::default(),
        &<Widget as kube::CustomResourceExt>::crd(),
    )
    .await
    .unwrap();
    let ws: Api<Widget> = Api::namespaced(client.clone(), "default");
    ws.create(&PostParams::default(), &widget("default", "w", 1))
        .await
        .unwrap();
    assert_eq!(
        ws.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let crd = crds
        .get(&format!("widgets.{}", Widget::group(&())))
        .await
        .unwrap();
    use kube::runtime::wait::Condition;
    assert!(kube::runtime::conditions::is_crd_established().matches_object(Some(&crd)));
}

#[tokio::test]
async fn serves_only_the_crds_it_is_given() {
    let plain = TestServer::new();
    let ws: Api<Widget> = Api::namespaced(plain.client(), "default");
    let err = ws
        .create(&PostParams::default(), &widget("default", "w", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err:?}"
    );

    let s = TestServer::builder()
        .crds([<Widget as kube::CustomResourceExt>::crd()])
        .build();
    let ws: Api<Widget> = Api::namespaced(s.client(), "default");
    ws.create(&PostParams::default(), &widget("default", "w", 1))
        .await
        .unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(s.client());
    crds.get(&format!("widgets.{}", Widget::group(&())))
        .await
        .unwrap();
}

#[tokio::test]
async fn serves_every_api_crd() {
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let crds = pgpool_api::crds::all();
    assert!(!crds.is_empty());
    let s = TestServer::with_crds(crds.clone());
    let client = s.client();
    for crd in crds {
        let version = crd
            .spec
            .versions
            .iter()
            .find(|v| v.storage)
            .expect("a storage version");
        let gvk = GroupVersionKind::gvk(&crd.spec.group, &version.name, &crd.spec.names.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
        let namespaced = crd.spec.scope == "Namespaced";
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client.clone(), "default", &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let mut obj = DynamicObject::new("x", &ar);
        obj.data = json!({"spec": {}});
        let created = api.create(&PostParams::default(), &obj).await.unwrap();
        assert_eq!(
            created.metadata.namespace.is_some(),
            namespaced,
            "{}",
            ar.plural
        );
        assert_eq!(
            api.list(&ListParams::default()).await.unwrap().items.len(),
            1
        );
        let has_status = version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some());
        let status = api
            .patch_status(
                "x",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"observedGeneration": 1}})),
            )
            .await;
        assert_eq!(
            status.is_ok(),
            has_status,
            "{} status subresource",
            ar.plural
        );
        let has_scale = version
            .subresources
            .as_ref()
            .is_some_and(|s| s.scale.is_some());
        if has_scale {
            let path = format!(
                "/apis/{}/{}/namespaces/default/{}/x/scale",
                crd.spec.group, version.name, crd.spec.names.plural
            );
            let req = http::Request::get(path).body(Vec::new()).unwrap();
            let scale: serde_json::Value = client.request(req).await.unwrap();
            assert_eq!(scale["kind"], "Scale");
        }
    }
}

#[tokio::test]
async fn pod_spec_is_immutable_except_images() {
    let s = server();
    let pods: Api<Pod> = Api::namespaced(s.client(), "default");
    pods.create(
        &PostParams::default(),
        &fixtures::pod("default", "p", "img:1", []),
    )
    .await
    .unwrap();
    let image = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"containers": [{"name": "main", "image": "img:2"}]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        image.spec.unwrap().containers[0].image.as_deref(),
        Some("img:2")
    );
    let err = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"restartPolicy": "Never"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_err(err), (422, "Invalid".into()));
}

#[tokio::test]
async fn service_keeps_cluster_ip_on_replace() {
    let s = server();
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(s.client(), "default");
    let created = svcs
        .create(
            &PostParams::default(),
            &fixtures::service("default", "db", [("app", "db")], 5432),
        )
        .await
        .unwrap();
    let ip = created.spec.as_ref().unwrap().cluster_ip.clone();
    assert!(ip.is_some());
    let mut desired = fixtures::service("default", "db", [("app", "db")], 5433);
    desired.metadata.resource_version = created.metadata.resource_version.clone();
    let replaced = svcs
        .replace("db", &PostParams::default(), &desired)
        .await
        .unwrap();
    assert_eq!(replaced.spec.unwrap().cluster_ip, ip);
}

#[tokio::test]
async fn secret_string_data_is_stored_as_data() {
    let s = server();
    let secrets: Api<Secret> = Api::namespaced(s.client(), "default");
    let created = secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "creds"},
                "stringData": {"username": "postgres"},
                "data": {"password": "c2VjcmV0"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(created.string_data.is_none(), "stringData is not stored");
    let data = created.data.unwrap();
    assert_eq!(data["username"].0, b"postgres");
    assert_eq!(data["password"].0, b"secret");
    let patched = secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "changed"}})),
        )
        .await
        .unwrap();
    assert!(patched.string_data.is_none());
    assert_eq!(patched.data.unwrap()["password"].0, b"changed");
}

/// As a real API server: an empty clusterIP gets a distinct address, a headless Service keeps
/// `None` (mirrored into clusterIPs), and EndpointSlices (discovery.k8s.io/v1) are served.
#[tokio::test]
async fn services_get_distinct_cluster_ips_headless_keeps_none_and_slices_are_served() {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
    let s = server();
    let svcs: Api<Service> = Api::namespaced(s.client(), "default");
    let pp = PostParams::default();
    let mut empty = fixtures::service("default", "a", [("app", "a")], 80);
    empty.spec.as_mut().unwrap().cluster_ip = Some(String::new());
    let a = svcs.create(&pp, &empty).await.unwrap().spec.unwrap();
    let b = svcs
        .create(&pp, &fixtures::service("default", "b", [("app", "b")], 80))
        .await
        .unwrap()
        .spec
        .unwrap();
    let ip_a = a.cluster_ip.clone().unwrap();
    assert!(ip_a.parse::<std::net::Ipv4Addr>().is_ok(), "{ip_a:?}");
    assert_ne!(a.cluster_ip, b.cluster_ip);
    assert_eq!(a.cluster_ips, Some(vec![ip_a]));
    let mut headless = fixtures::service("default", "h", [("app", "h")], 80);
    headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    let h = svcs.create(&pp, &headless).await.unwrap().spec.unwrap();
    assert_eq!(h.cluster_ip.as_deref(), Some("None"));
    assert_eq!(h.cluster_ips, Some(vec!["None".to_string()]));

    let slices: Api<EndpointSlice> = Api::namespaced(s.client(), "default");
    let slice = EndpointSlice {
        metadata: kube::api::ObjectMeta {
            name: Some("pg-1".into()),
            labels: Some([("kubernetes.io/service-name".to_string(), "pg".to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec!["127.0.0.1".into()],
            ..Default::default()
        }],
        ports: None,
    };
    slices.create(&pp, &slice).await.unwrap();
    let listed = slices
        .list(&kube::api::ListParams::default().labels("kubernetes.io/service-name=pg"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
}
