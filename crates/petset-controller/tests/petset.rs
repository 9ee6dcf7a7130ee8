//! The PetSet controller against the testkit API server and simulated kubelet: creation
//! order, scaling, update strategies, revisions, claims, status and steady state.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, EvictParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Client, Resource, ResourceExt as _};
use operator_kit::reconcile_metrics::RECONCILE_TOTAL;
use operator_kit::{ControllerHandle, Phase, Readiness};
use petset_controller::{self as petset, PetSetConfig};
use pgpool_api::PetSet;
use prometheus::Registry;
use serde::de::DeserializeOwned;
use serde_json::json;
use testkit::harness::{Controller, Harness};
use testkit::{ImageBehavior, Kubelet, KubeletConfig, KubeletHandle, TestServer, Verb};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NS: &str = "default";
/// Longest wait for any condition.
const TIMEOUT: Duration = Duration::from_secs(20);
/// The agent the controller's requests are logged under.
const AGENT: &str = "petset-controller";

struct Env {
    server: TestServer,
    client: Client,
    registry: Registry,
    controller: Controller<Result<(), petset::Error>>,
    _kubelet: KubeletHandle,
}

impl Env {
    async fn start() -> Env {
        Self::start_with(KubeletConfig::default().ready_delay(Duration::from_millis(30))).await
    }

    async fn start_with(kubelet: KubeletConfig) -> Env {
        let Harness { server, client } =
            Harness::new(TestServer::with_crds(pgpool_api::crds::all()));
        let kubelet = Kubelet::start(server.client_as("kubelet"), kubelet);
        let registry = Registry::new();
        let controller_client = server.client_as(AGENT);
        let reg = registry.clone();
        let controller = Controller::spawn_ready(TIMEOUT, |stop, ready| async move {
            let readiness = Readiness::new();
            readiness.set_phase(Phase::Running);
            let handle = ControllerHandle::new(&readiness, petset::CONTROLLER, stop);
            let _signal = tokio::spawn(async move {
                readiness.wait_until_ready().await;
                ready.signal();
            });
            petset::run(
                controller_client,
                PetSetConfig {
                    namespace: None,
                    concurrency: 2,
                    ..PetSetConfig::default()
                },
                &reg,
                handle,
            )
            .await
        })
        .await;
        Env {
            client,
            server,
            registry,
            controller,
            _kubelet: kubelet,
        }
    }

    fn petsets(&self) -> Api<PetSet> {
        Api::namespaced(self.client.clone(), NS)
    }
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }
    fn revisions(&self) -> Api<ControllerRevision> {
        Api::namespaced(self.client.clone(), NS)
    }
    fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Reconciles counted so far with `result` (`success` / `error`).
    fn reconciles(&self, result: &str) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == RECONCILE_TOTAL)
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| {
                let label = |name: &str, value: &str| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == name && l.value() == value)
                };
                label("controller", petset::CONTROLLER) && label("result", result)
            })
            .map(|m| m.get_counter().value())
            .sum()
    }

    /// Stops the controller and checks that it ends cleanly.
    async fn stop(self) {
        let result = self.controller.stop(TIMEOUT).await;
        assert!(result.is_ok(), "controller ended with {result:?}");
    }

    async fn create(&self, ps: &PetSet) -> PetSet {
        self.petsets()
            .create(&PostParams::default(), ps)
            .await
            .expect("create PetSet")
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.petsets()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("patch PetSet");
    }

    async fn set_image(&self, name: &str, image: &str) {
        self.patch_spec(
            name,
            json!({"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}),
        )
        .await;
    }

    /// Waits until the PetSet's status satisfies `pred`; returns it.
    async fn wait_status(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&PetSet, &pgpool_api::PetSetStatus) -> bool,
    ) -> PetSet {
        let name = name.to_string();
        let found = wait_list(&self.petsets(), what, |sets: &[Arc<PetSet>]| {
            sets.iter()
                .any(|ps| ps.name_any() == name && ps.status.as_ref().is_some_and(|s| pred(ps, s)))
        })
        .await;
        found
            .iter()
            .find(|ps| ps.name_any() == name)
            .map(|ps| (**ps).clone())
            .expect("the PetSet")
    }

    /// Waits until the PetSet reports `replicas` pods, all Ready and on the update revision,
    /// with the rollout complete, for the current generation.
    async fn wait_settled(&self, name: &str, replicas: i32) -> PetSet {
        self.wait_status(name, &format!("{name} settled at {replicas}"), |ps, s| {
            s.observed_generation == ps.metadata.generation
                && s.replicas == replicas
                && s.ready_replicas == Some(replicas)
                && s.available_replicas == Some(replicas)
                && s.updated_replicas == Some(replicas)
                && s.current_replicas == Some(replicas)
                && s.current_revision.is_some()
                && s.current_revision == s.update_revision
        })
        .await
    }

    /// Finished reconciles (successful or not).
    fn finished(&self) -> f64 {
        self.reconciles("success") + self.reconciles("error")
    }

    /// Runs `write` (a change that triggers a reconcile) and waits until a reconcile has
    /// finished after it. Used where nothing is running, so that reconcile is the one the
    /// write triggered. (Reconciles of settled PetSets make no requests, so the request log
    /// cannot tell.)
    async fn reconciled_after<F: Future<Output = ()>>(&self, write: F) {
        let before = self.finished();
        write.await;
        until("a reconcile after the write", || self.finished() > before).await;
    }

    async fn pod(&self, name: &str) -> Pod {
        self.pods().get(name).await.expect("get pod")
    }
}

/// Waits (watching, no polling) until the objects of `api` satisfy `pred`; returns them.
async fn wait_list<K>(api: &Api<K>, what: &str, pred: impl Fn(&[Arc<K>]) -> bool) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let mut stream = pin!(
        watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
    );
    let mut synced = false;
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            match stream.next().await {
                Some(Ok(watcher::Event::InitDone)) => synced = true,
                Some(_) => {}
                None => panic!("watch ended while waiting for {what}"),
            }
            if synced {
                let state = reader.state();
                if pred(&state) {
                    return state;
                }
            }
        }
    })
    .await;
    match waited {
        Ok(state) => state,
        Err(_) => {
            let names: Vec<String> = reader.state().iter().map(|o| o.name_any()).collect();
            panic!("timed out waiting for {what}; objects: {names:?}");
        }
    }
}

/// Polls `cond` (in-process state such as metrics) every 10 ms until it holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    tokio::time::timeout(TIMEOUT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// What the pod history records about a pod.
#[derive(Clone, Debug, PartialEq)]
struct PodView {
    uid: String,
    ready: bool,
    terminating: bool,
    revision: String,
    image: String,
}

fn view(p: &Pod) -> PodView {
    PodView {
        uid: p.uid().unwrap_or_default(),
        ready: p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        terminating: p.metadata.deletion_timestamp.is_some(),
        revision: p
            .labels()
            .get("controller-revision-hash")
            .cloned()
            .unwrap_or_default(),
        image: p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
    }
}

type Snapshot = BTreeMap<String, PodView>;

/// Every state the pods of the namespace went through, in watch order (the server has one
/// resourceVersion sequence, so this is the order in which things happened).
struct PodHistory {
    snapshots: Arc<Mutex<Vec<Snapshot>>>,
    task: JoinHandle<()>,
}

impl PodHistory {
    async fn start(api: Api<Pod>) -> PodHistory {
        let snapshots = Arc::new(Mutex::new(Vec::new()));
        let shared = snapshots.clone();
        let (synced_tx, synced_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut synced_tx = Some(synced_tx);
            let mut current = Snapshot::new();
            // Objects of a (re)list, swapped in whole at InitDone so that no partial
            // state is recorded.
            let mut listing = Snapshot::new();
            let mut stream = pin!(watcher(api, watcher::Config::default()).default_backoff());
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Apply(p)) => {
                        current.insert(p.name_any(), view(&p));
                    }
                    Ok(watcher::Event::Delete(p)) => {
                        current.remove(&p.name_any());
                    }
                    Ok(watcher::Event::Init) => {
                        listing.clear();
                        continue;
                    }
                    Ok(watcher::Event::InitApply(p)) => {
                        listing.insert(p.name_any(), view(&p));
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => {
                        current = std::mem::take(&mut listing);
                        if let Some(tx) = synced_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Err(_) => continue,
                }
                shared.lock().unwrap().push(current.clone());
            }
        });
        tokio::time::timeout(TIMEOUT, synced_rx)
            .await
            .expect("pod history synced")
            .expect("pod history running");
        PodHistory { snapshots, task }
    }

    fn snapshots(&self) -> Vec<Snapshot> {
        self.snapshots.lock().unwrap().clone()
    }

    /// Index of the first snapshot where `pred` holds.
    fn first(&self, pred: impl Fn(&Snapshot) -> bool) -> Option<usize> {
        self.snapshots().iter().position(pred)
    }
}

impl Drop for PodHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn petset_object(
    name: &str,
    replicas: i32,
    policy: &str,
    strategy: serde_json::Value,
    image: &str,
) -> PetSet {
    serde_json::from_value(json!({
        "apiVersion": "apps.k8s.appscode.com/v1",
        "kind": "PetSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "serviceName": format!("{name}-pods"),
            "podManagementPolicy": policy,
            "updateStrategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name, "team": "a"}, "annotations": {"note": "x"}},
                "spec": {"containers": [{"name": "main", "image": image}]}
            }
        }
    }))
    .expect("PetSet JSON")
}

fn pod_names(n: i32, set: &str) -> Vec<String> {
    (0..n).map(|i| format!("{set}-{i}")).collect()
}

fn ready_pods(s: &Snapshot, names: &[String]) -> bool {
    names.iter().all(|n| s.get(n).is_some_and(|p| p.ready))
}

#[tokio::test]
async fn ordered_ready_creates_each_pod_after_the_previous_is_ready() {
    let env =
        Env::start_with(KubeletConfig::default().ready_delay(Duration::from_millis(100))).await;
    let history = PodHistory::start(env.pods()).await;
    let mut ps = petset_object(
        "web",
        3,
        "OrderedReady",
        json!({"type": "RollingUpdate"}),
        "img:1",
    );
    ps.spec.volume_claim_templates = vec![
        serde_json::from_value(json!({
            "metadata": {"name": "data", "labels": {"disk": "fast"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .unwrap(),
    ];
    let created = env.create(&ps).await;
    let settled = env.wait_settled("web", 3).await;

    // Creation order: pod i appears only once pods 0..i are all Ready.
    for i in 1..3 {
        let appears = history
            .first(|s| s.contains_key(&format!("web-{i}")))
            .expect("pod appears");
        let snapshot = &history.snapshots()[appears];
        assert!(
            ready_pods(snapshot, &pod_names(i, "web")),
            "web-{i} created before its predecessors were Ready: {snapshot:?}"
        );
    }

    // Identity of a pod.
    let pod = env.pod("web-1").await;
    let labels = pod.labels();
    let status = settled.status.clone().unwrap();
    let revision = status.update_revision.clone().unwrap();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels["team"], "a");
    assert_eq!(labels["controller-revision-hash"], revision);
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(pod.annotations()["note"], "x");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("web-pods"));
    let owner = &pod.owner_references()[0];
    assert_eq!(owner.kind, "PetSet");
    assert_eq!(owner.api_version, "apps.k8s.appscode.com/v1");
    assert_eq!(owner.uid, created.uid().unwrap());
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
    let claim_volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "data")
        .expect("claim volume");
    assert_eq!(
        claim_volume
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data-web-1"
    );

    // Claims exist, labelled, and each was created before its pod.
    for i in 0..3 {
        let claim = env.claims().get(&format!("data-web-{i}")).await.unwrap();
        assert_eq!(claim.labels()["disk"], "fast");
        assert_eq!(claim.labels()["app"], "web");
    }
    let creates: Vec<String> = env
        .server
        .requests()
        .records()
        .into_iter()
        .filter(|r| r.key.verb == Verb::Create && r.key.agent == AGENT && r.code < 300)
        .filter(|r| r.key.resource == "pods" || r.key.resource == "persistentvolumeclaims")
        .map(|r| r.key.resource)
        .collect();
    let expected: Vec<String> = (0..3)
        .flat_map(|_| ["persistentvolumeclaims".to_string(), "pods".to_string()])
        .collect();
    assert_eq!(creates, expected, "each claim is created before its pod");

    // Status.
    assert_eq!(status.observed_generation, settled.metadata.generation);
    assert_eq!(status.selector.as_deref(), Some("app=web"));
    assert_eq!(status.current_revision, status.update_revision);
    assert!(revision.starts_with("web-"));
    env.stop().await;
}

#[tokio::test]
async fn parallel_creates_all_pods_without_waiting_for_readiness() {
    let env = Env::start_with(
        KubeletConfig::default()
            .ready_delay(Duration::from_millis(30))
            .image("broken:1", ImageBehavior::NeverReady),
    )
    .await;
    env.create(&petset_object(
        "par",
        3,
        "Parallel",
        json!({"type": "RollingUpdate"}),
        "broken:1",
    ))
    .await;
    let pods = wait_list(&env.pods(), "three pods", |pods: &[Arc<Pod>]| {
        pods.len() == 3
    })
    .await;
    let mut names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    names.sort();
    assert_eq!(names, pod_names(3, "par"));
    let ps = env
        .wait_status("par", "status with 3 replicas", |_, s| s.replicas == 3)
        .await;
    let s = ps.status.unwrap();
    assert_eq!(s.ready_replicas, Some(0));
    assert_eq!(s.available_replicas, Some(0));
    assert_eq!(s.updated_replicas, Some(3));

    // With OrderedReady the same image stops at the first pod.
    env.create(&petset_object(
        "ord",
        3,
        "OrderedReady",
        json!({"type": "RollingUpdate"}),
        "broken:1",
    ))
    .await;
    env.wait_status("ord", "ord reports its first pod", |_, s| s.replicas == 1)
        .await;
    // The first pod is Running but never Ready; trigger a reconcile and look again.
    env.reconciled_after(async {
        env.pods()
            .patch(
                "ord-0",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"poke": "1"}}})),
            )
            .await
            .unwrap();
    })
    .await;
    assert!(env.pods().get_opt("ord-1").await.unwrap().is_none());
    env.stop().await;
}

#[tokio::test]
async fn scale_down_goes_from_the_highest_ordinal_one_at_a_time_and_keeps_claims() {
    let env = Env::start_with(
        KubeletConfig::default()
            .ready_delay(Duration::from_millis(30))
            .max_grace(Duration::from_millis(100)),
    )
    .await;
    let mut ps = petset_object(
        "db",
        4,
        "OrderedReady",
        json!({"type": "RollingUpdate"}),
        "img:1",
    );
    ps.spec.volume_claim_templates = vec![
        serde_json::from_value(json!({
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"]}
        }))
        .unwrap(),
    ];
    env.create(&ps).await;
    env.wait_settled("db", 4).await;
    let history = PodHistory::start(env.pods()).await;
    let uid0 = env.pod("db-0").await.uid();

    env.patch_spec("db", json!({"replicas": 1})).await;
    env.wait_settled("db", 1).await;

    // db-3 goes first; db-2 starts terminating only after db-3 is gone, and so on.
    let term = |name: &str| {
        history
            .first(|s| s.get(name).is_some_and(|p| p.terminating))
            .unwrap_or_else(|| panic!("{name} terminated"))
    };
    let gone = |name: &str| {
        history
            .first(|s| !s.contains_key(name))
            .unwrap_or_else(|| panic!("{name} gone"))
    };
    assert!(
        gone("db-3") < term("db-2"),
        "db-2 deleted before db-3 was gone"
    );
    assert!(
        gone("db-2") < term("db-1"),
        "db-1 deleted before db-2 was gone"
    );
    assert_eq!(env.pod("db-0").await.uid(), uid0, "db-0 untouched");

    // Claims stay.
    for i in 0..4 {
        assert!(
            env.claims()
                .get_opt(&format!("data-db-{i}"))
                .await
                .unwrap()
                .is_some(),
            "claim data-db-{i} kept"
        );
    }

    // Scaling up again reuses the claims.
    let mark = env.server.requests().mark();
    env.patch_spec("db", json!({"replicas": 3})).await;
    env.wait_settled("db", 3).await;
    let since = env.server.requests().since(&mark);
    assert_eq!(
        since.count(Verb::Create, "persistentvolumeclaims"),
        0,
        "existing claims reused"
    );
    assert_eq!(since.count(Verb::Create, "pods"), 2);
    env.stop().await;
}

#[tokio::test]
async fn parallel_scale_down_deletes_all_extra_pods_at_once() {
    let env = Env::start_with(
        KubeletConfig::default()
            .ready_delay(Duration::from_millis(30))
            .max_grace(Duration::from_millis(300)),
    )
    .await;
    env.create(&petset_object(
        "p",
        3,
        "Parallel",
        json!({"type": "RollingUpdate"}),
        "img:1",
    ))
    .await;
    env.wait_settled("p", 3).await;
    let history = PodHistory::start(env.pods()).await;
    env.patch_spec("p", json!({"replicas": 1})).await;
    env.wait_settled("p", 1).await;
    // Both were terminating at the same time at some point.
    assert!(
        history
            .first(|s| {
                s.get("p-1").is_some_and(|p| p.terminating)
                    && s.get("p-2").is_some_and(|p| p.terminating)
            })
            .is_some(),
        "p-1 and p-2 deleted together"
    );
    env.stop().await;
}

#[tokio::test]
async fn on_delete_replaces_only_deleted_pods_from_the_current_template() {
    let env = Env::start().await;
    env.create(&petset_object(
        "od",
        2,
        "OrderedReady",
        json!({"type": "OnDelete"}),
        "img:1",
    ))
    .await;
    let before = env.wait_settled("od", 2).await;
    let old_rev = before.status.unwrap().update_revision.unwrap();
    let uid0 = env.pod("od-0").await.uid();
    let uid1 = env.pod("od-1").await.uid();

    let mark = env.server.requests().mark();
    env.set_image("od", "img:2").await;
    let ps = env
        .wait_status("od", "new update revision", |ps, s| {
            s.observed_generation == ps.metadata.generation
                && s.update_revision.as_deref() != Some(old_rev.as_str())
        })
        .await;
    let s = ps.status.unwrap();
    let new_rev = s.update_revision.clone().unwrap();
    assert_eq!(s.current_revision.as_deref(), Some(old_rev.as_str()));
    assert_eq!(s.current_replicas, Some(2));
    assert_eq!(s.updated_replicas, Some(0));
    let since = env.server.requests().since(&mark);
    assert_eq!(
        since.sum(|k| k.agent == AGENT && k.resource == "pods" && k.verb.is_write()),
        0,
        "existing pods are not touched"
    );
    for (name, uid) in [("od-0", &uid0), ("od-1", &uid1)] {
        let p = env.pod(name).await;
        assert_eq!(&p.uid(), uid);
        assert_eq!(view(&p).image, "img:1");
    }

    // An evicted pod (what the ops-manager does) comes back from the current template.
    env.pods()
        .evict("od-1", &EvictParams::default())
        .await
        .unwrap();
    let ps = env
        .wait_status("od", "od-1 replaced and Ready", |_, s| {
            s.updated_replicas == Some(1) && s.ready_replicas == Some(2)
        })
        .await;
    let s = ps.status.unwrap();
    assert_eq!(s.current_replicas, Some(1));
    assert_eq!(s.current_revision.as_deref(), Some(old_rev.as_str()));
    let p1 = env.pod("od-1").await;
    assert_ne!(p1.uid(), uid1);
    assert_eq!(view(&p1).image, "img:2");
    assert_eq!(view(&p1).revision, new_rev);
    let p0 = env.pod("od-0").await;
    assert_eq!(p0.uid(), uid0);
    assert_eq!(view(&p0).image, "img:1");

    // Once every pod runs the new revision, it is the current one.
    env.pods()
        .delete("od-0", &DeleteParams::default())
        .await
        .unwrap();
    let ps = env.wait_settled("od", 2).await;
    assert_eq!(
        ps.status.unwrap().current_revision.as_deref(),
        Some(new_rev.as_str())
    );
    assert_eq!(view(&env.pod("od-0").await).image, "img:2");
    env.stop().await;
}

#[tokio::test]
async fn rolling_update_goes_highest_first_one_at_a_time_and_honours_the_partition() {
    let env = Env::start().await;
    env.create(&petset_object(
        "ru",
        3,
        "OrderedReady",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
        "img:1",
    ))
    .await;
    let before = env.wait_settled("ru", 3).await;
    let old_rev = before.status.unwrap().update_revision.unwrap();
    let uid0 = env.pod("ru-0").await.uid();
    let history = PodHistory::start(env.pods()).await;
    let mark = env.server.requests().mark();

    env.set_image("ru", "img:2").await;
    let ps = env
        .wait_status("ru", "pods above the partition updated", |ps, s| {
            s.observed_generation == ps.metadata.generation
                && s.updated_replicas == Some(2)
                && s.ready_replicas == Some(3)
        })
        .await;
    let s = ps.status.unwrap();
    let new_rev = s.update_revision.clone().unwrap();
    assert_ne!(new_rev, old_rev);
    assert_eq!(s.current_revision.as_deref(), Some(old_rev.as_str()));
    assert_eq!(s.current_replicas, Some(1));

    // Deletions by the controller: ru-2 then ru-1, never ru-0.
    let deleted: Vec<String> = env
        .server
        .requests()
        .records_since(&mark)
        .into_iter()
        .filter(|r| r.key.agent == AGENT && r.key.verb == Verb::Delete && r.key.resource == "pods")
        .filter_map(|r| r.name)
        .collect();
    assert_eq!(deleted, vec!["ru-2", "ru-1"]);
    // ru-1 went only after the new ru-2 was Ready.
    let ru1_down = history
        .first(|s| s.get("ru-1").is_none_or(|p| p.terminating))
        .expect("ru-1 replaced");
    let snap = &history.snapshots()[ru1_down];
    let ru2 = snap.get("ru-2").unwrap_or_else(|| {
        panic!(
            "ru-2 missing when ru-1 went down: {:#?}",
            &history.snapshots()[..=ru1_down]
        )
    });
    assert!(
        ru2.ready && ru2.revision == new_rev,
        "ru-2 not updated and Ready: {snap:?}"
    );
    let p0 = env.pod("ru-0").await;
    assert_eq!(p0.uid(), uid0);
    assert_eq!(view(&p0).image, "img:1");

    // Partition 0 finishes the rollout.
    env.patch_spec(
        "ru",
        json!({"updateStrategy": {"rollingUpdate": {"partition": 0}}}),
    )
    .await;
    let ps = env.wait_settled("ru", 3).await;
    assert_eq!(
        ps.status.unwrap().current_revision.as_deref(),
        Some(new_rev.as_str())
    );
    assert_eq!(view(&env.pod("ru-0").await).image, "img:2");
    env.stop().await;
}

#[tokio::test]
async fn revisions_are_stored_reused_and_trimmed_to_the_history_limit() {
    let env = Env::start().await;
    let mut ps = petset_object(
        "rev",
        0,
        "Parallel",
        json!({"type": "RollingUpdate"}),
        "img:0",
    );
    ps.spec.revision_history_limit = Some(2);
    let created = env.create(&ps).await;
    let mut names = Vec::new();
    for i in 0..5 {
        if i > 0 {
            env.set_image("rev", &format!("img:{i}")).await;
        }
        let ps = env
            .wait_status("rev", &format!("revision {i}"), |ps, s| {
                s.observed_generation == ps.metadata.generation
            })
            .await;
        names.push(ps.status.unwrap().update_revision.unwrap());
    }
    // Five templates, five names.
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{names:?}");

    // Current (= update) plus two older ones are kept: the newest.
    let revs = wait_list(
        &env.revisions(),
        "history trimmed",
        |r: &[Arc<ControllerRevision>]| r.len() == 3,
    )
    .await;
    let mut kept: Vec<(i64, String)> = revs.iter().map(|r| (r.revision, r.name_any())).collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![
            (3, names[2].clone()),
            (4, names[3].clone()),
            (5, names[4].clone())
        ]
    );
    let latest = revs.iter().find(|r| r.name_any() == names[4]).unwrap();
    assert_eq!(latest.labels()["app"], "rev");
    assert_eq!(latest.labels()["controller-revision-hash"], names[4]);
    let owner = &latest.owner_references()[0];
    assert_eq!(owner.uid, created.uid().unwrap());
    assert_eq!(owner.controller, Some(true));
    let data = &latest.data.as_ref().unwrap().0;
    assert_eq!(
        data["spec"]["template"]["spec"]["containers"][0]["image"],
        "img:4"
    );

    // Going back to a kept template reuses its revision (same name, newest number).
    env.set_image("rev", "img:3").await;
    let ps = env
        .wait_status("rev", "back to img:3", |ps, s| {
            s.observed_generation == ps.metadata.generation
        })
        .await;
    assert_eq!(
        ps.status.unwrap().update_revision.as_deref(),
        Some(names[3].as_str())
    );
    let revs = wait_list(
        &env.revisions(),
        "renumbered",
        |r: &[Arc<ControllerRevision>]| {
            r.iter()
                .any(|r| r.name_any() == names[3] && r.revision == 6)
        },
    )
    .await;
    assert_eq!(revs.len(), 3);
    env.stop().await;
}

#[tokio::test]
async fn min_ready_seconds_delays_availability() {
    let env = Env::start().await;
    let mut ps = petset_object(
        "mr",
        1,
        "OrderedReady",
        json!({"type": "RollingUpdate"}),
        "img:1",
    );
    // Two seconds: the Ready condition's transition time has a resolution of one second.
    ps.spec.min_ready_seconds = Some(2);
    env.create(&ps).await;
    let early = env
        .wait_status("mr", "ready", |_, s| s.ready_replicas == Some(1))
        .await;
    assert_eq!(early.status.unwrap().available_replicas, Some(0));
    // Nothing but the passing time (a requeue) makes it available.
    env.wait_status("mr", "available", |_, s| s.available_replicas == Some(1))
        .await;
    env.stop().await;
}

#[tokio::test]
async fn a_pod_in_a_terminal_phase_is_replaced() {
    let env = Env::start().await;
    env.create(&petset_object(
        "t",
        1,
        "OrderedReady",
        json!({"type": "OnDelete"}),
        "img:1",
    ))
    .await;
    env.wait_settled("t", 1).await;
    let uid = env.pod("t-0").await.uid();
    env.pods()
        .patch_status(
            "t-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed", "conditions": []}})),
        )
        .await
        .unwrap();
    wait_list(&env.pods(), "t-0 replaced", |pods: &[Arc<Pod>]| {
        pods.iter()
            .any(|p| p.name_any() == "t-0" && p.uid() != uid && view(p).ready)
    })
    .await;
    env.wait_settled("t", 1).await;
    env.stop().await;
}

#[tokio::test]
async fn steady_state_makes_no_writes() {
    let env = Env::start().await;
    env.create(&petset_object(
        "s",
        2,
        "OrderedReady",
        json!({"type": "RollingUpdate"}),
        "img:1",
    ))
    .await;
    env.wait_settled("s", 2).await;

    let mark = env.server.requests().mark();
    // Changes that trigger reconciles but need no work: PetSet metadata, a pod label.
    env.reconciled_after(async {
        env.petsets()
            .patch(
                "s",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"touched": "1"}}})),
            )
            .await
            .unwrap();
    })
    .await;
    env.reconciled_after(async {
        env.pods()
            .patch(
                "s-1",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"touched": "1"}}})),
            )
            .await
            .unwrap();
    })
    .await;
    let since = env.server.requests().since(&mark);
    assert_eq!(
        since.writes_by(AGENT),
        0,
        "writes in steady state: {:?}",
        env.server
            .requests()
            .records_since(&mark)
            .iter()
            .filter(|r| r.key.agent == AGENT && r.key.verb.is_write())
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
    );
    let reads = since.sum(|k| k.agent == AGENT && matches!(k.verb, Verb::Get | Verb::List));
    assert_eq!(
        reads,
        0,
        "a settled PetSet is reconciled from the caches: {:?}",
        env.server
            .requests()
            .records_since(&mark)
            .iter()
            .filter(|r| r.key.agent == AGENT && matches!(r.key.verb, Verb::Get | Verb::List))
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(env.reconciles("error"), 0.0);
    env.stop().await;
}

#[tokio::test]
async fn api_errors_are_retried() {
    let env = Env::start().await;
    env.server.faults().fail_next(2, Verb::Create, "pods", 500);
    env.server
        .faults()
        .fail_next(1, Verb::Patch, "petsets/status", 409);
    env.create(&petset_object(
        "e",
        2,
        "OrderedReady",
        json!({"type": "RollingUpdate"}),
        "img:1",
    ))
    .await;
    env.wait_settled("e", 2).await;
    assert!(env.reconciles("error") >= 2.0);
    assert_eq!(env.server.faults().pending(), 0);
    env.stop().await;
}

#[tokio::test]
async fn an_invalid_petset_gets_no_pods() {
    let env = Env::start().await;
    let mut ps = petset_object(
        "bad",
        1,
        "OrderedReady",
        json!({"type": "RollingUpdate"}),
        "img:1",
    );
    ps.spec.selector.match_labels = Some(BTreeMap::from([("app".into(), "other".into())]));
    env.create(&ps).await;
    until("a failed reconcile", || env.reconciles("error") >= 1.0).await;
    assert!(
        env.pods()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    env.stop().await;
}

#[tokio::test]
async fn deleting_a_petset_leaves_its_pods_to_the_garbage_collector() {
    let env = Env::start().await;
    env.create(&petset_object(
        "g",
        2,
        "Parallel",
        json!({"type": "RollingUpdate"}),
        "img:1",
    ))
    .await;
    env.wait_settled("g", 2).await;
    env.petsets()
        .delete("g", &DeleteParams::default())
        .await
        .unwrap();
    wait_list(&env.pods(), "pods collected", |pods: &[Arc<Pod>]| {
        pods.is_empty()
    })
    .await;
    wait_list(
        &env.revisions(),
        "revisions collected",
        |revs: &[Arc<ControllerRevision>]| revs.is_empty(),
    )
    .await;
    assert_eq!(env.reconciles("error"), 0.0);
    env.stop().await;
}
