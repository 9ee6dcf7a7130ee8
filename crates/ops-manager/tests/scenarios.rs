//! Scenarios of issue 5: the ops-manager and a provisioner run together against the testkit API
//! server with the simulated kubelet.

mod common;

use std::time::Duration;

use common::{
    EXPORTER, Env, NS, OPS_AGENT, OpsManager, condition, condition_types, failed_message, image,
    phase, uids, version,
};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};
use pgpool_api::conditions::{self, ops};
use pgpool_api::{OpsRequestPhase, names};
use serde_json::json;
use testkit::{FaultRule, ImageBehavior, KubeletConfig, Verb, Wake};

const LIMIT: Duration = Duration::from_secs(60);

fn kubelet() -> KubeletConfig {
    KubeletConfig::default().ready_delay(Duration::from_millis(30))
}

/// The condition types a successful UpdateVersion of `pods` pods ends with.
fn update_story(pgpool: &str, replicas: i32) -> Vec<String> {
    let mut v = vec![
        ops::UPDATE_VERSION.to_string(),
        ops::DATABASE_PAUSE_SUCCEEDED.to_string(),
        ops::UPDATE_PETSETS.to_string(),
    ];
    for i in 0..replicas {
        let pod = names::pod(pgpool, i);
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

async fn example_update(replicas: i32, monitor: bool) {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool("pp-update", "4.5.3", replicas, monitor)
        .await;
    let before = uids(&env.pods_of("pp-update").await);
    let ops = OpsManager::start(&env.server).await;
    let mark = env.server.requests().mark();
    env.update_request("pgpool-version-update", "pp-update", "4.6.0", json!({}))
        .await;
    let req = env.wait_final("pgpool-version-update", LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    assert_eq!(condition_types(&req), update_story("pp-update", replicas));
    for c in &req.status.as_ref().expect("status").conditions {
        assert_eq!(c.status, conditions::TRUE, "{c:?}");
    }
    env.wait_settled_on("pp-update", "4.6.0", replicas as usize)
        .await;
    let pods = env.pods_of("pp-update").await;
    for (name, p) in &pods {
        assert_ne!(
            before.get(name),
            p.uid().as_ref(),
            "pod {name} was replaced"
        );
        for c in p.spec.as_ref().expect("spec").containers.iter() {
            let want = if c.name == names::CONTAINER_EXPORTER {
                EXPORTER.to_string()
            } else {
                image("4.6.0")
            };
            assert_eq!(c.image.as_deref(), Some(want.as_str()), "{name}/{}", c.name);
        }
        assert_eq!(
            p.spec.as_ref().expect("spec").containers.len(),
            if monitor { 2 } else { 1 }
        );
    }
    let evictions = env.evictions_since(&mark);
    assert_eq!(evictions.len(), replicas as usize, "{evictions:?}");
    assert!(evictions.values().all(|n| *n == 1), "{evictions:?}");
    let metrics = ops.metrics();
    assert!(
        metrics.contains(
            "pgpool_operator_ops_requests{phase=\"Successful\",type=\"UpdateVersion\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgpool_operator_ops_request_duration_seconds_count{result=\"Successful\",type=\"UpdateVersion\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgpool_operator_ops_step_duration_seconds_count{step=\"CheckPodRunning\",type=\"UpdateVersion\"}"),
        "{metrics}"
    );
    // The finalizer is gone once the request ended.
    let req = env
        .requests()
        .get("pgpool-version-update")
        .await
        .expect("get");
    assert!(req.finalizers().is_empty(), "{:?}", req.finalizers());
    ops.stop().await;
}

#[tokio::test]
async fn example_update_with_one_replica_succeeds() {
    example_update(1, false).await;
}

#[tokio::test]
async fn example_update_with_three_replicas_and_monitoring_succeeds() {
    example_update(3, true).await;
}

#[tokio::test]
async fn killed_mid_restart_finishes_without_evicting_a_pod_twice() {
    // Pods take a while to become Ready, so the ops-manager is killed while it waits.
    let env = Env::new(KubeletConfig::default().ready_delay(Duration::from_millis(400))).await;
    env.ready_pgpool("pp-update", "4.5.3", 3, false).await;
    let mark = env.server.requests().mark();
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd", "pp-update", "4.6.0", json!({}))
        .await;
    let pod1 = names::pod("pp-update", 1);
    let evicted = ops::evict_pod(&pod1);
    env.wait_request("upd", LIMIT, "pod 1 evicted", move |r| {
        condition(r, &evicted).is_some_and(|c| c.status == conditions::TRUE)
    })
    .await;
    ops.kill().await;

    let ops = OpsManager::start(&env.server).await;
    let req = env.wait_final("upd", LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    assert_eq!(condition_types(&req), update_story("pp-update", 3));
    env.wait_settled_on("pp-update", "4.6.0", 3).await;
    let evictions = env.evictions_since(&mark);
    assert_eq!(evictions.len(), 3, "{evictions:?}");
    assert!(
        evictions.values().all(|n| *n == 1),
        "a pod was evicted twice: {evictions:?}"
    );
    ops.stop().await;
}

#[tokio::test]
async fn stopped_gracefully_mid_restart_finishes() {
    let env = Env::new(KubeletConfig::default().ready_delay(Duration::from_millis(300))).await;
    env.ready_pgpool("pp-update", "4.5.3", 2, false).await;
    let mark = env.server.requests().mark();
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd", "pp-update", "4.6.0", json!({}))
        .await;
    let check = ops::check_pod_running(&names::pod("pp-update", 0));
    env.wait_request("upd", LIMIT, "pod 0 being checked", move |r| {
        condition(r, &check).is_some()
    })
    .await;
    ops.stop().await;
    let ops = OpsManager::start(&env.server).await;
    let req = env.wait_final("upd", LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    assert_eq!(condition_types(&req), update_story("pp-update", 2));
    let evictions = env.evictions_since(&mark);
    assert!(evictions.values().all(|n| *n == 1), "{evictions:?}");
    assert_eq!(evictions.len(), 2, "{evictions:?}");
    ops.stop().await;
}

async fn broken_target(behavior: ImageBehavior, replicas: i32) {
    let env = Env::new(kubelet().image(&image("4.6.0"), behavior)).await;
    env.ready_pgpool("pp-update", "4.5.3", replicas, false)
        .await;
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd", "pp-update", "4.6.0", json!({"timeout": "3s"}))
        .await;
    let req = env.wait_final("upd", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let msg = failed_message(&req);
    assert!(msg.starts_with("PodNotReady"), "{msg}");
    assert!(msg.contains(&names::pod("pp-update", 0)), "{msg}");
    let rollback = condition(&req, ops::ROLLBACK).expect("Rollback condition");
    assert_eq!(rollback.status, conditions::TRUE);
    assert!(rollback.message.contains("rolled back"), "{rollback:?}");
    // Pod 1 was never touched: the update stopped at pod 0.
    assert!(condition(&req, &ops::evict_pod(&names::pod("pp-update", 1))).is_none());
    env.wait_settled_on("pp-update", "4.5.3", replicas as usize)
        .await;
    let metrics = ops.metrics();
    assert!(
        metrics.contains("pgpool_operator_ops_request_duration_seconds_count{result=\"Failed\",type=\"UpdateVersion\"} 1"),
        "{metrics}"
    );
    ops.stop().await;
}

#[tokio::test]
async fn never_ready_target_rolls_back_and_fails() {
    broken_target(ImageBehavior::NeverReady, 2).await;
}

#[tokio::test]
async fn crashing_target_rolls_back_and_fails() {
    broken_target(ImageBehavior::Crash, 1).await;
}

/// Runs one request that must fail validation; returns the Failed message.
async fn validation_failure(
    env: &Env,
    name: &str,
    pgpool: &str,
    target: &str,
    extra: serde_json::Value,
) -> String {
    env.update_request(name, pgpool, target, extra).await;
    let req = env.wait_final(name, LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Failed),
        "{:?}",
        req.status
    );
    let first = condition(&req, ops::UPDATE_VERSION).expect("UpdateVersion condition");
    assert_eq!(first.status, conditions::FALSE);
    assert!(
        condition(&req, ops::DATABASE_PAUSE_SUCCEEDED).is_none(),
        "nothing was paused"
    );
    assert!(req.finalizers().is_empty());
    failed_message(&req)
}

#[tokio::test]
async fn validation_failures_have_their_own_messages() {
    let env = Env::new(kubelet().image(&image("4.5.2"), ImageBehavior::NeverReady)).await;
    env.add_version(version("4.4.8", ">= 4.4.8, <= 4.6.0", true))
        .await;
    env.add_version(version("4.5.2", ">= 4.5.2, <= 4.6.0", false))
        .await;
    env.ready_pgpool("pp-update", "4.5.3", 1, false).await;
    env.ready_pgpool("pp-new", "4.6.0", 1, false).await;
    env.create_pgpool("pp-sick", "4.5.2", 1, false).await;
    env.create_pgpool("pp-halted", "4.5.3", 1, false).await;
    env.pgpools()
        .patch(
            "pp-halted",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"halted": true}})),
        )
        .await
        .expect("halt");
    env.wait_pgpool("pp-halted", "Halted", |p| {
        p.status.as_ref().and_then(|s| s.phase) == Some(pgpool_api::PgpoolPhase::Halted)
    })
    .await;
    let mark = env.server.requests().mark();
    let ops = OpsManager::start(&env.server).await;

    let m = validation_failure(&env, "no-pgpool", "nope", "4.6.0", json!({})).await;
    assert!(
        m.starts_with("PgpoolNotFound") && m.contains("demo/nope not found"),
        "{m}"
    );
    let m = validation_failure(&env, "no-version", "pp-update", "9.9.9", json!({})).await;
    assert!(
        m.starts_with("VersionNotFound") && m.contains("\"9.9.9\" not found"),
        "{m}"
    );
    let m = validation_failure(&env, "deprecated", "pp-update", "4.4.8", json!({})).await;
    assert!(
        m.starts_with("VersionDeprecated") && m.contains("deprecated"),
        "{m}"
    );
    let m = validation_failure(&env, "downgrade", "pp-new", "4.5.3", json!({})).await;
    assert!(m.starts_with("UpdateNotAllowed"), "{m}");
    assert!(
        m.contains("from 4.6.0 to 4.5.3") && m.contains(">= 4.6.0, <= 4.6.0"),
        "{m}"
    );
    let m = validation_failure(&env, "halted", "pp-halted", "4.6.0", json!({})).await;
    assert!(
        m.starts_with("PgpoolHalted") && m.contains("spec.halted"),
        "{m}"
    );
    let m = validation_failure(
        &env,
        "not-ready",
        "pp-sick",
        "4.6.0",
        json!({"timeout": "2s"}),
    )
    .await;
    assert!(m.starts_with("PgpoolNotReady"), "{m}");
    assert!(
        m.contains("did not become Ready within 2s") && m.contains("apply: Always"),
        "{m}"
    );

    // The same version: Successful at once, nothing restarted.
    env.update_request("same", "pp-new", "4.6.0", json!({}))
        .await;
    let req = env.wait_final("same", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Successful));
    assert_eq!(
        condition_types(&req),
        vec![ops::UPDATE_VERSION, ops::SUCCESSFUL]
    );
    assert!(
        condition(&req, ops::SUCCESSFUL)
            .expect("ok")
            .message
            .contains("already runs version 4.6.0")
    );

    // None of this wrote anything but the requests (status; the finalizer of the request that
    // waited for Ready) and events.
    let counts = env.server.requests().since(&mark);
    let writes: u64 = counts.sum(|k| {
        k.agent == OPS_AGENT
            && k.verb.is_write()
            && k.resource != "pgpoolopsrequests"
            && k.resource != "events"
    });
    assert_eq!(writes, 0, "unexpected writes:\n{counts}");
    ops.stop().await;
}

#[tokio::test]
async fn older_pending_update_is_skipped_for_the_newer_one() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool("pp-update", "4.5.3", 1, false).await;
    env.add_version(version("4.5.4", ">= 4.5.4, <= 4.6.0", false))
        .await;
    // Both exist before the ops-manager starts: both are Pending at once.
    env.update_request("upd-a", "pp-update", "4.5.4", json!({}))
        .await;
    env.update_request("upd-b", "pp-update", "4.6.0", json!({}))
        .await;
    let ops = OpsManager::start(&env.server).await;
    let a = env.wait_final("upd-a", LIMIT).await;
    assert_eq!(phase(&a), Some(OpsRequestPhase::Skipped), "{:?}", a.status);
    let skipped = condition(&a, "Skipped").expect("Skipped condition");
    assert!(skipped.message.contains("upd-b"), "{skipped:?}");
    let b = env.wait_final("upd-b", LIMIT).await;
    assert_eq!(
        phase(&b),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&b)
    );
    env.wait_settled_on("pp-update", "4.6.0", 1).await;
    ops.stop().await;
}

#[tokio::test]
async fn a_second_request_waits_pending_and_other_pgpools_run_in_parallel() {
    let env = Env::new(KubeletConfig::default().ready_delay(Duration::from_millis(300))).await;
    env.ready_pgpool("pp-a", "4.5.3", 2, false).await;
    env.ready_pgpool("pp-b", "4.5.3", 2, false).await;
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd-a", "pp-a", "4.6.0", json!({}))
        .await;
    env.update_request("upd-b", "pp-b", "4.6.0", json!({}))
        .await;
    env.wait_request("upd-a", LIMIT, "Progressing", |r| {
        phase(r) == Some(OpsRequestPhase::Progressing)
    })
    .await;
    // A restart of pp-a waits behind its update.
    env.create_request(
        "restart-a",
        json!({"type": "Restart", "databaseRef": {"name": "pp-a"}}),
    )
    .await;
    env.wait_request("restart-a", LIMIT, "Pending", |r| {
        phase(r) == Some(OpsRequestPhase::Pending)
    })
    .await;
    // Both updates progress at the same time.
    let b = env.requests().get("upd-b").await.expect("get");
    let a = env.requests().get("upd-a").await.expect("get");
    assert_eq!(
        phase(&a),
        Some(OpsRequestPhase::Progressing),
        "{:?}",
        a.status
    );
    assert_eq!(
        phase(&b),
        Some(OpsRequestPhase::Progressing),
        "{:?}",
        b.status
    );
    let restart = env.requests().get("restart-a").await.expect("get");
    assert_eq!(phase(&restart), Some(OpsRequestPhase::Pending));

    for n in ["upd-a", "upd-b"] {
        let r = env.wait_final(n, LIMIT).await;
        assert_eq!(
            phase(&r),
            Some(OpsRequestPhase::Successful),
            "{}",
            failed_message(&r)
        );
    }
    let r = env.wait_final("restart-a", LIMIT).await;
    assert_eq!(
        phase(&r),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&r)
    );
    assert_eq!(
        condition_types(&r),
        vec![
            ops::RESTART.to_string(),
            ops::DATABASE_PAUSE_SUCCEEDED.to_string(),
            ops::evict_pod("pp-a-0"),
            ops::check_pod_running("pp-a-0"),
            ops::evict_pod("pp-a-1"),
            ops::check_pod_running("pp-a-1"),
            ops::RESTART_PODS.to_string(),
            ops::SUCCESSFUL.to_string(),
        ]
    );
    env.wait_settled_on("pp-a", "4.6.0", 2).await;
    // Each pod was replaced: its UID differs from the one recorded when it was evicted.
    let after = uids(&env.pods_of("pp-a").await);
    for (name, uid) in &after {
        let evicted = condition(&r, &ops::evict_pod(name)).expect("evicted");
        let old = pgpool_ops_manager::plan::recorded_uid(&evicted.message).expect("uid");
        assert_ne!(old, uid, "pod {name} was restarted");
    }
    ops.stop().await;
}

#[tokio::test]
async fn refused_evictions_are_retried_until_they_pass() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool("pp-update", "4.5.3", 3, false).await;
    // The provisioner keeps a PodDisruptionBudget for more than one replica; the fake does not.
    let pdbs: kube::Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        kube::Api::namespaced(env.client.clone(), NS);
    if pdbs
        .get_opt(&names::pdb("pp-update"))
        .await
        .expect("get pdb")
        .is_none()
    {
        env.create_pdb(&names::pdb("pp-update"), "pp-update", 2)
            .await;
    }
    env.server.faults().inject(
        FaultRule::new(429)
            .verb(Verb::Create)
            .resource("pods/eviction")
            .times(4)
            .message("Cannot evict pod as it would violate the pod's disruption budget."),
    );
    let mark = env.server.requests().mark();
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd", "pp-update", "4.6.0", json!({"timeout": "30s"}))
        .await;
    let req = env.wait_final("upd", LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    assert_eq!(env.server.faults().pending(), 0, "all refusals were met");
    let evictions: u64 = env.evictions_since(&mark).values().sum();
    assert_eq!(
        evictions,
        3 + 4,
        "three evictions plus four refused attempts"
    );
    env.wait_settled_on("pp-update", "4.6.0", 3).await;
    ops.stop().await;
}

#[tokio::test]
async fn eviction_refused_until_the_timeout_fails_and_rolls_back() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool("pp-update", "4.5.3", 2, false).await;
    env.server.faults().inject(
        FaultRule::new(429)
            .verb(Verb::Create)
            .resource("pods/eviction")
            .times(1000),
    );
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd", "pp-update", "4.6.0", json!({"timeout": "2s"}))
        .await;
    let req = env.wait_final("upd", LIMIT).await;
    env.server.faults().clear();
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let m = failed_message(&req);
    assert!(
        m.starts_with("EvictionTimeout") && m.contains("could not be evicted within 2s"),
        "{m}"
    );
    env.wait_settled_on("pp-update", "4.5.3", 2).await;
    ops.stop().await;
}

#[tokio::test]
async fn deleting_a_running_request_rolls_back_and_resumes() {
    let env = Env::new(KubeletConfig::default().ready_delay(Duration::from_millis(300))).await;
    env.ready_pgpool("pp-update", "4.5.3", 3, false).await;
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd", "pp-update", "4.6.0", json!({}))
        .await;
    let evicted = ops::evict_pod(&names::pod("pp-update", 0));
    env.wait_request("upd", LIMIT, "pod 0 evicted", move |r| {
        condition(r, &evicted).is_some_and(|c| c.status == conditions::TRUE)
    })
    .await;
    env.delete_request("upd").await;
    common::within(
        LIMIT,
        "the request to go",
        kube::runtime::wait::await_condition(
            env.requests(),
            "upd",
            |r: Option<&pgpool_api::PgpoolOpsRequest>| r.is_none(),
        ),
    )
    .await
    .expect("watch");
    env.wait_settled_on("pp-update", "4.5.3", 3).await;
    ops.stop().await;
}

#[tokio::test]
async fn unacknowledged_pause_fails_and_leaves_the_pgpool_unpaused() {
    // No provisioner: nobody acknowledges the pause.
    let env = Env::without_provisioner(kubelet()).await;
    env.create_pgpool("pp-update", "4.5.3", 1, false).await;
    let api = env.pgpools();
    let mut pp = api.get("pp-update").await.expect("get");
    pp.status = Some(serde_json::from_value(json!({"phase": "Ready"})).expect("status"));
    api.replace_status("pp-update", &PostParams::default(), &pp)
        .await
        .expect("status");
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd", "pp-update", "4.6.0", json!({"timeout": "2s"}))
        .await;
    let req = env.wait_final("upd", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let m = failed_message(&req);
    assert!(
        m.starts_with("PauseNotAcknowledged") && m.contains("did not acknowledge"),
        "{m}"
    );
    let pp = api.get("pp-update").await.expect("get");
    let conds = pp.status.map(|s| s.conditions).unwrap_or_default();
    assert!(
        conditions::get(&conds, conditions::pgpool::PAUSED).is_none(),
        "{conds:?}"
    );
    assert_eq!(pp.spec.version, "4.5.3");
    ops.stop().await;
}

#[tokio::test]
async fn deleting_a_request_that_waits_for_ready_lets_it_go_without_pausing() {
    let env = Env::new(kubelet().image(&image("4.5.2"), ImageBehavior::NeverReady)).await;
    env.add_version(version("4.5.2", ">= 4.5.2, <= 4.6.0", false))
        .await;
    env.create_pgpool("pp-sick", "4.5.2", 1, false).await;
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd", "pp-sick", "4.6.0", json!({}))
        .await;
    let req = env
        .wait_request("upd", LIMIT, "waiting for Ready", |r| {
            condition(r, ops::UPDATE_VERSION).is_some_and(|c| c.status == conditions::UNKNOWN)
        })
        .await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Progressing));
    assert!(
        req.finalizers()
            .iter()
            .any(|f| f == pgpool_ops_manager::REQUEST_FINALIZER),
        "a request that holds the Pgpool's slot has the finalizer"
    );
    env.delete_request("upd").await;
    common::within(
        LIMIT,
        "the request to go",
        kube::runtime::wait::await_condition(
            env.requests(),
            "upd",
            |r: Option<&pgpool_api::PgpoolOpsRequest>| r.is_none(),
        ),
    )
    .await
    .expect("watch");
    let pp = env.pgpools().get("pp-sick").await.expect("get");
    let conds = pp.status.map(|s| s.conditions).unwrap_or_default();
    assert!(
        conditions::get(&conds, conditions::pgpool::PAUSED).is_none(),
        "{conds:?}"
    );
    ops.stop().await;
}

#[tokio::test]
async fn an_eviction_refused_by_a_budget_says_which_budget_why_and_until_when() {
    let env = Env::new(kubelet()).await;
    // One replica: the provisioner keeps no budget of its own, so this one is the only one
    // covering the pod. It allows no disruption: every eviction is refused (429).
    env.ready_pgpool("pp-update", "4.5.3", 1, false).await;
    let pdbs: kube::Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        kube::Api::namespaced(env.client.clone(), NS);
    let pdb_name = "pp-update-maintenance";
    env.create_pdb(pdb_name, "pp-update", 1).await;
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd", "pp-update", "4.6.0", json!({"timeout": "60s"}))
        .await;
    let evict = ops::evict_pod(&names::pod("pp-update", 0));
    let watched = evict.clone();
    let req = env
        .wait_request("upd", LIMIT, "the refusal in EvictPod", move |r| {
            condition(r, &watched).is_some_and(|c| c.reason == "EvictionRefused")
        })
        .await;
    let c = condition(&req, &evict).expect("EvictPod condition");
    assert_eq!(c.status, conditions::UNKNOWN);
    let m = &c.message;
    assert!(
        m.contains(&format!("PodDisruptionBudget {pdb_name}")),
        "names the budget: {m}"
    );
    assert!(
        m.contains("DisruptionAllowed=False") && m.contains("reason InsufficientPods"),
        "gives its DisruptionAllowed condition: {m}"
    );
    assert!(
        m.contains("disruption budget"),
        "gives the API's answer: {m}"
    );
    // until when: the step's start plus its timeout (and the second of rounding the wait has)
    let until = chrono::DateTime::from_timestamp(c.last_transition_time.0.as_second() + 61, 0)
        .expect("time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(m.contains(&format!("retrying until {until}")), "{m}");
    assert_eq!(
        pgpool_ops_manager::plan::recorded_uid(m),
        env.pods_of("pp-update")
            .await
            .get(&names::pod("pp-update", 0))
            .and_then(|p| p.metadata.uid.as_deref()),
        "still records the pod's UID"
    );

    // Retries go on without rewriting the unchanged condition.
    let mark = env.server.requests().mark();
    let (env_ref, mark_ref) = (&env, &mark);
    env.server
        .requests()
        .wait_for(
            Wake::Request,
            LIMIT,
            "three more refused evictions",
            move || async move {
                (env_ref.evictions_since(mark_ref).values().sum::<u64>() >= 3).then_some(())
            },
        )
        .await;
    let status_writes = env.server.requests().since(&mark).sum(|k| {
        k.agent == OPS_AGENT
            && k.verb.is_write()
            && k.resource == "pgpoolopsrequests"
            && k.subresource.as_deref() == Some("status")
    });
    assert_eq!(status_writes, 0, "a status write per retry");

    // Once the budget allows it, the update goes through.
    let allow = json!({"spec": {"minAvailable": 0}});
    pdbs.patch(pdb_name, &PatchParams::default(), &Patch::Merge(&allow))
        .await
        .expect("patch pdb");
    let req = env.wait_final("upd", LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    assert_eq!(condition_types(&req), update_story("pp-update", 1));
    ops.stop().await;
}

/// The requests are watched once: the controller, the mappers and the metrics share one cache.
#[tokio::test]
async fn requests_are_listed_and_watched_once() {
    let env = Env::new(kubelet()).await;
    let log = env.server.requests();
    let mark = log.mark();
    let ops = OpsManager::start(&env.server).await;
    let by_ops = |verb: Verb, resource: &'static str| {
        move |k: &testkit::RequestKey| {
            k.agent == OPS_AGENT && k.verb == verb && k.matches_resource(resource)
        }
    };
    // The watches of the other kinds are opened with the controller's: once they are all open,
    // every watch the ops-manager opens at start is open.
    log.wait_for(Wake::Request, LIMIT, "the ops-manager's watches", || {
        let counts = log.since(&mark);
        let open = ["pgpools", "petsets", "pods", "pgpoolopsrequests"]
            .into_iter()
            .all(|r| counts.sum(by_ops(Verb::Watch, r)) >= 1);
        async move { open.then_some(()) }
    })
    .await;
    let counts = log.since(&mark);
    assert_eq!(
        counts.sum(by_ops(Verb::List, "pgpoolopsrequests")),
        1,
        "{counts:?}"
    );
    assert_eq!(
        counts.sum(by_ops(Verb::Watch, "pgpoolopsrequests")),
        1,
        "{counts:?}"
    );
    ops.stop().await;
}
