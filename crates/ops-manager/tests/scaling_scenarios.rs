//! Scenarios of the HorizontalScaling and VerticalScaling types: the ops-manager and the
//! provisioner (with its PetSet controller) against the testkit API server and kubelet.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    Env, NS, OpsManager, condition, condition_types, failed_message, phase, pod_ready, uids,
};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;
use pgpool_api::conditions::{self, ops};
use pgpool_api::{OpsRequestPhase, PgpoolOpsRequest, names};
use serde_json::json;
use testkit::{KubeletConfig, Wake};

const LIMIT: Duration = Duration::from_secs(60);
const PP: &str = "pp-update";

fn kubelet() -> KubeletConfig {
    KubeletConfig::default().ready_delay(Duration::from_millis(30))
}

/// Create the request of example manifest `file` (under `examples/`), changed by `edit`.
async fn apply_example(env: &Env, file: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let path = format!("{}/../../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("example");
    let mut v: serde_json::Value = serde_yaml::from_str(&text).expect("yaml");
    edit(&mut v);
    let r: PgpoolOpsRequest = serde_json::from_value(v).expect("request");
    let name = r.metadata.name.clone().expect("name");
    env.requests()
        .create(&PostParams::default(), &r)
        .await
        .expect("create request");
    name
}

fn horizontal(node: i32, timeout: Option<&str>) -> impl FnOnce(&mut serde_json::Value) {
    let timeout = timeout.map(str::to_string);
    move |v| {
        v["spec"]["horizontalScaling"]["node"] = json!(node);
        if let Some(t) = timeout {
            v["spec"]["timeout"] = json!(t);
        }
    }
}

async fn successful(env: &Env, name: &str) -> PgpoolOpsRequest {
    let req = env.wait_final(name, LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    for c in &req.status.as_ref().expect("status").conditions {
        assert_eq!(c.status, conditions::TRUE, "{c:?}");
    }
    req
}

/// Wait until spec, PetSet and pods agree on `replicas` Ready pods and the Pgpool is not
/// paused; with `budget`, also until the PodDisruptionBudget is the provisioner's for that
/// count (`None`: no budget).
async fn wait_scaled(env: &Env, replicas: i32, budget: Option<i32>) {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(env.client.clone(), NS);
    let pdbs = &pdbs;
    env.server
        .requests()
        .wait_for(
            Wake::Change,
            Duration::from_secs(30),
            &format!("Pgpool {PP} settled on {replicas} replicas"),
            move || async move {
                let pp = env.pgpools().get(PP).await.ok()?;
                let paused = pp
                    .status
                    .as_ref()
                    .and_then(|s| conditions::get(&s.conditions, conditions::pgpool::PAUSED));
                let ps = env.petsets().get(PP).await.ok()?;
                let pods = env.pods_of(PP).await;
                let pdb = pdbs.get_opt(&names::pdb(PP)).await.ok()?;
                let min = pdb
                    .and_then(|p| p.spec)
                    .and_then(|s| s.min_available)
                    .map(|m| match m {
                        IntOrString::Int(i) => i,
                        IntOrString::String(_) => -1,
                    });
                (pp.spec.replicas() == replicas
                    && paused.is_none()
                    && ps.spec.replicas() == replicas
                    && pods.len() == replicas as usize
                    && pods.values().all(pod_ready)
                    && min == budget)
                    .then_some(())
            },
        )
        .await;
}

fn up_story(from: i32, to: i32) -> Vec<String> {
    let mut v = vec![
        ops::HORIZONTAL_SCALING.to_string(),
        ops::DATABASE_PAUSE_SUCCEEDED.to_string(),
        ops::HORIZONTAL_SCALE_UP.to_string(),
    ];
    for i in from..to {
        v.push(ops::check_pod_running(&names::pod(PP, i)));
    }
    v.extend([
        ops::UPDATE_DATABASE.to_string(),
        ops::SUCCESSFUL.to_string(),
    ]);
    v
}

fn down_story(from: i32, to: i32) -> Vec<String> {
    let mut v = vec![
        ops::HORIZONTAL_SCALING.to_string(),
        ops::DATABASE_PAUSE_SUCCEEDED.to_string(),
        ops::HORIZONTAL_SCALE_DOWN.to_string(),
    ];
    for i in (to..from).rev() {
        v.push(ops::evict_pod(&names::pod(PP, i)));
    }
    v.extend([
        ops::UPDATE_DATABASE.to_string(),
        ops::SUCCESSFUL.to_string(),
    ]);
    v
}

#[tokio::test]
async fn example_horizontal_scale_up_from_2_to_3_succeeds() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool(PP, "4.5.3", 2, false).await;
    let before = uids(&env.pods_of(PP).await);
    let ops = OpsManager::start(&env.server).await;
    let name = apply_example(&env, "horizontal-scaling.yaml", |_| {}).await;
    let req = successful(&env, &name).await;
    assert_eq!(condition_types(&req), up_story(2, 3));
    wait_scaled(&env, 3, Some(2)).await;
    let after = uids(&env.pods_of(PP).await);
    for (pod, uid) in &before {
        assert_eq!(after.get(pod), Some(uid), "pod {pod} was left alone");
    }
    let metrics = ops.metrics();
    assert!(
        metrics.contains(
            "pgpool_operator_ops_requests{phase=\"Successful\",type=\"HorizontalScaling\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgpool_operator_ops_step_duration_seconds_count{step=\"HorizontalScaleUp\",type=\"HorizontalScaling\"} 1"),
        "{metrics}"
    );
    ops.stop().await;
}

#[tokio::test]
async fn scale_down_evicts_the_highest_pods_and_a_budget_for_the_old_count_does_not_block_it() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool(PP, "4.5.3", 3, false).await;
    // The provisioner's budget for three pods (minAvailable 2) is in place.
    wait_scaled(&env, 3, Some(2)).await;
    let before = uids(&env.pods_of(PP).await);
    let mark = env.server.requests().mark();
    let ops = OpsManager::start(&env.server).await;
    let name = apply_example(&env, "horizontal-scaling.yaml", horizontal(1, Some("20s"))).await;
    let req = successful(&env, &name).await;
    assert_eq!(condition_types(&req), down_story(3, 1));
    // One pod left: the provisioner removes the budget.
    wait_scaled(&env, 1, None).await;
    let evictions = env.evictions_since(&mark);
    let want: BTreeMap<String, u64> = [(names::pod(PP, 1), 1), (names::pod(PP, 2), 1)].into();
    assert_eq!(
        evictions, want,
        "the highest pods, once each, through eviction"
    );
    let after = uids(&env.pods_of(PP).await);
    assert_eq!(
        after.get(&names::pod(PP, 0)),
        before.get(&names::pod(PP, 0))
    );
    ops.stop().await;
}

#[tokio::test]
async fn killed_mid_scale_up_finishes_without_recreating_pods() {
    let env = Env::new(KubeletConfig::default().ready_delay(Duration::from_millis(400))).await;
    env.ready_pgpool(PP, "4.5.3", 1, false).await;
    let ops = OpsManager::start(&env.server).await;
    let name = apply_example(&env, "horizontal-scaling.yaml", |_| {}).await;
    let first = ops::check_pod_running(&names::pod(PP, 1));
    env.wait_request(&name, LIMIT, "pod 1 Ready", move |r| {
        condition(r, &first).is_some_and(|c| c.status == conditions::TRUE)
    })
    .await;
    ops.kill().await;
    let mid = uids(&env.pods_of(PP).await);
    let ops = OpsManager::start(&env.server).await;
    let req = successful(&env, &name).await;
    assert_eq!(condition_types(&req), up_story(1, 3));
    wait_scaled(&env, 3, Some(2)).await;
    let after = uids(&env.pods_of(PP).await);
    for (pod, uid) in &mid {
        assert_eq!(after.get(pod), Some(uid), "pod {pod} was left alone");
    }
    ops.stop().await;
}

#[tokio::test]
async fn killed_mid_scale_down_finishes_without_evicting_a_pod_twice() {
    // Evicted pods take a while to go away, so the ops-manager is killed while it waits.
    let env = Env::new(kubelet().max_grace(Duration::from_millis(500))).await;
    env.ready_pgpool(PP, "4.5.3", 3, false).await;
    let mark = env.server.requests().mark();
    let ops = OpsManager::start(&env.server).await;
    let name = apply_example(&env, "horizontal-scaling.yaml", horizontal(1, None)).await;
    let evict = ops::evict_pod(&names::pod(PP, 2));
    env.wait_request(&name, LIMIT, "pod 2 evicted", move |r| {
        condition(r, &evict).is_some()
    })
    .await;
    ops.kill().await;
    let ops = OpsManager::start(&env.server).await;
    let req = successful(&env, &name).await;
    assert_eq!(condition_types(&req), down_story(3, 1));
    wait_scaled(&env, 1, None).await;
    let evictions = env.evictions_since(&mark);
    assert!(evictions.values().all(|n| *n == 1), "{evictions:?}");
    assert_eq!(evictions.len(), 2, "{evictions:?}");
    ops.stop().await;
}

#[tokio::test]
async fn scale_to_zero_fails_with_the_fix_and_changes_nothing() {
    // The CRD refuses node 0 at admission (tested with the schema in pgpool-api); the testkit
    // API server does not run CEL, so this is the ops-manager's own check.
    let env = Env::new(kubelet()).await;
    env.ready_pgpool(PP, "4.5.3", 2, false).await;
    let ops = OpsManager::start(&env.server).await;
    let name = apply_example(&env, "horizontal-scaling.yaml", horizontal(0, None)).await;
    let req = env.wait_final(&name, LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let msg = failed_message(&req);
    assert!(
        msg.starts_with("InvalidReplicas") && msg.contains("between 1 and 9"),
        "{msg}"
    );
    assert!(condition(&req, ops::DATABASE_PAUSE_SUCCEEDED).is_none());
    wait_scaled(&env, 2, Some(1)).await;
    ops.stop().await;
}

#[tokio::test]
async fn a_scale_up_whose_pod_never_gets_ready_rolls_back() {
    // The node has room for two pgpool pods only (the provisioner's default requests are
    // 100m CPU and 256Mi, plus the init container's).
    let env = Env::new(kubelet().allocatable("250m", "8Gi")).await;
    env.ready_pgpool(PP, "4.5.3", 2, false).await;
    let ops = OpsManager::start(&env.server).await;
    let name = apply_example(&env, "horizontal-scaling.yaml", horizontal(3, Some("3s"))).await;
    let req = env.wait_final(&name, LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let msg = failed_message(&req);
    assert!(msg.starts_with("ScaleTimeout"), "{msg}");
    assert!(msg.contains("back to 2 replicas"), "{msg}");
    assert!(condition(&req, ops::ROLLBACK).is_some_and(|c| c.status == conditions::TRUE));
    wait_scaled(&env, 2, Some(1)).await;
    ops.stop().await;
}

fn resources(v: serde_json::Value) -> ResourceRequirements {
    serde_json::from_value(v).expect("resources")
}

fn example_resources() -> ResourceRequirements {
    resources(json!({
        "requests": {"memory": "1200Mi", "cpu": "0.7"},
        "limits": {"memory": "1200Mi", "cpu": "0.7"}
    }))
}

fn pgpool_resources(
    spec: Option<&k8s_openapi::api::core::v1::PodSpec>,
) -> Option<ResourceRequirements> {
    spec?
        .containers
        .iter()
        .find(|c| c.name == names::CONTAINER_PGPOOL)?
        .resources
        .clone()
}

/// Wait until the PetSet and every (Ready) pod run `want` and the Pgpool is not paused.
async fn wait_resources(env: &Env, replicas: usize, want: &ResourceRequirements) {
    env.server
        .requests()
        .wait_for(
            Wake::Change,
            Duration::from_secs(30),
            "PetSet and pods on the resources",
            move || async move {
                let pp = env.pgpools().get(PP).await.ok()?;
                let paused = pp
                    .status
                    .as_ref()
                    .and_then(|s| conditions::get(&s.conditions, conditions::pgpool::PAUSED));
                let ps = env.petsets().get(PP).await.ok()?;
                let pods = env.pods_of(PP).await;
                (paused.is_none()
                    && pgpool_resources(ps.spec.template.spec.as_ref()).as_ref() == Some(want)
                    && pods.len() == replicas
                    && pods.values().all(|p| {
                        pod_ready(p) && pgpool_resources(p.spec.as_ref()).as_ref() == Some(want)
                    }))
                .then_some(())
            },
        )
        .await;
}

fn vertical_story(replicas: i32) -> Vec<String> {
    let mut v = vec![
        ops::VERTICAL_SCALING.to_string(),
        ops::DATABASE_PAUSE_SUCCEEDED.to_string(),
        ops::UPDATE_PETSETS.to_string(),
    ];
    for i in 0..replicas {
        let pod = names::pod(PP, i);
        v.push(ops::evict_pod(&pod));
        v.push(ops::check_pod_running(&pod));
    }
    v.extend([
        ops::RESTART_PODS.to_string(),
        ops::UPDATE_DATABASE.to_string(),
        ops::SUCCESSFUL.to_string(),
    ]);
    v
}

/// The resources the Pgpool's spec records for the pgpool container.
async fn spec_resources(env: &Env) -> Option<ResourceRequirements> {
    let pp = env.pgpools().get(PP).await.expect("pgpool");
    pp.spec
        .pod_template?
        .spec?
        .containers
        .into_iter()
        .find(|c| c.name == names::CONTAINER_PGPOOL)?
        .resources
}

#[tokio::test]
async fn example_vertical_scaling_succeeds_and_the_provisioner_keeps_the_resources() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool(PP, "4.5.3", 2, false).await;
    let mark = env.server.requests().mark();
    let ops = OpsManager::start(&env.server).await;
    let name = apply_example(&env, "vertical-scaling.yaml", |_| {}).await;
    let req = successful(&env, &name).await;
    assert_eq!(condition_types(&req), vertical_story(2));
    let want = example_resources();
    assert_eq!(spec_resources(&env).await, Some(want.clone()));
    wait_resources(&env, 2, &want).await;
    // After the resume the provisioner renders the PetSet from the spec: it must be the one
    // the pods run (no second rollout, no change of the template).
    let ps = env.petsets().get(PP).await.expect("petset");
    let generation = ps.metadata.generation;
    let pods = uids(&env.pods_of(PP).await);
    env.server
        .requests()
        .wait_for(
            Wake::Change,
            Duration::from_secs(30),
            "the provisioner to observe the Pgpool's new spec",
            || async {
                let pp = env.pgpools().get(PP).await.ok()?;
                let observed = pp.status.as_ref().and_then(|s| s.observed_generation);
                (observed == pp.metadata.generation && common::plan_ready(&pp)).then_some(())
            },
        )
        .await;
    let ps = env.petsets().get(PP).await.expect("petset");
    assert_eq!(
        ps.metadata.generation, generation,
        "the PetSet did not change on resume"
    );
    assert_eq!(uids(&env.pods_of(PP).await), pods);
    let evictions = env.evictions_since(&mark);
    assert_eq!(evictions.len(), 2, "{evictions:?}");
    let metrics = ops.metrics();
    assert!(
        metrics.contains(
            "pgpool_operator_ops_requests{phase=\"Successful\",type=\"VerticalScaling\"} 1"
        ),
        "{metrics}"
    );
    ops.stop().await;
}

#[tokio::test]
async fn killed_mid_vertical_scaling_finishes_without_restarting_a_pod_twice() {
    let env = Env::new(KubeletConfig::default().ready_delay(Duration::from_millis(400))).await;
    env.ready_pgpool(PP, "4.5.3", 3, false).await;
    let mark = env.server.requests().mark();
    let ops = OpsManager::start(&env.server).await;
    let name = apply_example(&env, "vertical-scaling.yaml", |_| {}).await;
    let first = ops::check_pod_running(&names::pod(PP, 0));
    env.wait_request(&name, LIMIT, "pod 0 restarted", move |r| {
        condition(r, &first).is_some_and(|c| c.status == conditions::TRUE)
    })
    .await;
    ops.kill().await;
    let ops = OpsManager::start(&env.server).await;
    let req = successful(&env, &name).await;
    assert_eq!(condition_types(&req), vertical_story(3));
    wait_resources(&env, 3, &example_resources()).await;
    let evictions = env.evictions_since(&mark);
    assert!(evictions.values().all(|n| *n == 1), "{evictions:?}");
    assert_eq!(evictions.len(), 3, "{evictions:?}");
    ops.stop().await;
}

#[tokio::test]
async fn vertical_scaling_no_node_fits_rolls_back_to_the_previous_resources() {
    let env = Env::new(kubelet().allocatable("4", "16Gi")).await;
    env.ready_pgpool(PP, "4.5.3", 2, false).await;
    let ps = env.petsets().get(PP).await.expect("petset");
    let old = pgpool_resources(ps.spec.template.spec.as_ref()).expect("resources");
    let ops = OpsManager::start(&env.server).await;
    let name = apply_example(&env, "vertical-scaling.yaml", |v| {
        v["spec"]["timeout"] = json!("3s");
        v["spec"]["verticalScaling"]["node"]["resources"] =
            json!({"requests": {"cpu": "64", "memory": "1Gi"}});
    })
    .await;
    let req = env.wait_final(&name, LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let msg = failed_message(&req);
    assert!(msg.starts_with("PodNotReady"), "{msg}");
    assert!(msg.contains("previous resources again"), "{msg}");
    assert!(condition(&req, ops::ROLLBACK).is_some_and(|c| c.status == conditions::TRUE));
    wait_resources(&env, 2, &old).await;
    assert_eq!(spec_resources(&env).await, None, "the spec was not changed");
    ops.stop().await;
}

#[tokio::test]
async fn vertical_scaling_without_resources_fails_with_the_fix() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool(PP, "4.5.3", 1, false).await;
    let ops = OpsManager::start(&env.server).await;
    let name = apply_example(&env, "vertical-scaling.yaml", |v| {
        v["spec"]["verticalScaling"]["node"]["resources"] = json!({"requests": {}});
    })
    .await;
    let req = env.wait_final(&name, LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let msg = failed_message(&req);
    assert!(
        msg.starts_with("ResourcesMissing") && msg.contains("set the requests and limits"),
        "{msg}"
    );
    assert!(condition(&req, ops::DATABASE_PAUSE_SUCCEEDED).is_none());
    ops.stop().await;
}
