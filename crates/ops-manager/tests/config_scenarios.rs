//! Scenarios of Reconfigure and RotateAuth: the ops-manager and the real provisioner (with
//! its PetSet controller) against the testkit API server and the simulated kubelet.

mod common;

use std::time::Duration;

use common::{Env, NS, OpsManager, condition, condition_types, failed_message, phase};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use pgpool_api::conditions::{self, ops, pgpool as pc};
use pgpool_api::{OpsRequestPhase, Pgpool, PgpoolOpsRequest, names};
use serde_json::json;
use testkit::KubeletConfig;

const LIMIT: Duration = Duration::from_secs(60);

fn kubelet() -> KubeletConfig {
    KubeletConfig::default().ready_delay(Duration::from_millis(30))
}

fn secrets(env: &Env) -> Api<Secret> {
    Api::namespaced(env.client.clone(), NS)
}

fn text(s: &Secret, key: &str) -> String {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

/// The condition types of a successful Reconfigure (`first` = Reconfigure) or RotateAuth.
fn story(first: &str, change: &str, pgpool: &str, replicas: i32) -> Vec<String> {
    let mut v = vec![
        first.to_string(),
        ops::DATABASE_PAUSE_SUCCEEDED.to_string(),
        change.to_string(),
        ops::UPDATE_PETSETS.to_string(),
    ];
    for i in 0..replicas {
        let pod = names::pod(pgpool, i);
        v.push(ops::evict_pod(&pod));
        v.push(ops::check_pod_running(&pod));
    }
    v.extend([ops::RESTART_PODS.to_string(), ops::SUCCESSFUL.to_string()]);
    v
}

fn reconfigure(pgpool: &str, conf: &str) -> serde_json::Value {
    json!({
        "type": "Reconfigure",
        "databaseRef": {"name": pgpool},
        "configuration": {"applyConfig": {"pgpool.conf": conf}},
    })
}

/// Once the provisioner has caught up with the Pgpool (not paused, Ready, its generation
/// observed), the PetSet template and every pod carry the same config hash; returns it.
async fn settled(env: &Env, pgpool: &str, replicas: usize) -> String {
    env.wait_pgpool(pgpool, "resumed, observed and Ready", |pp: &Pgpool| {
        let st = pp.status.clone().unwrap_or_default();
        conditions::get(&st.conditions, pc::PAUSED).is_none()
            && st.observed_generation == pp.metadata.generation
            && common::plan_ready(pp)
    })
    .await;
    let ps = env.petsets().get(pgpool).await.expect("petset");
    let hash = ps
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(names::ANNOTATION_CONFIG_HASH).cloned())
        .expect("template hash");
    let pods = env.pods_of(pgpool).await;
    assert_eq!(pods.len(), replicas);
    for (name, p) in &pods {
        let h = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::ANNOTATION_CONFIG_HASH));
        assert_eq!(h, Some(&hash), "pod {name}");
    }
    hash
}

#[tokio::test]
async fn reconfigure_apply_config_restarts_the_pods_on_the_new_configuration() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool("pgpool", "4.5.3", 2, false).await;
    let ops = OpsManager::start(&env.server).await;
    let mark = env.server.requests().mark();
    env.create_request("pgpool-reconfigure", reconfigure("pgpool", "max_pool = 7"))
        .await;
    let req = env.wait_final("pgpool-reconfigure", LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    assert_eq!(
        condition_types(&req),
        story(ops::RECONFIGURE, ops::UPDATE_CONFIGURATION, "pgpool", 2)
    );
    let pp = env.pgpools().get("pgpool").await.expect("pgpool");
    let source = pp.spec.config_secret.expect("spec.configSecret").name;
    assert_eq!(source, "pgpool-pgpool-reconfigure-config");
    let config = secrets(&env)
        .get(&names::config_secret("pgpool"))
        .await
        .expect("config");
    assert!(
        text(&config, "pgpool.conf").contains("max_pool = 7"),
        "{}",
        text(&config, "pgpool.conf")
    );
    settled(&env, "pgpool", 2).await;
    let evictions = env.evictions_since(&mark);
    assert_eq!(evictions.len(), 2, "{evictions:?}");
    let metrics = ops.metrics();
    assert!(
        metrics
            .contains("pgpool_operator_ops_requests{phase=\"Successful\",type=\"Reconfigure\"} 1"),
        "{metrics}"
    );
    ops.stop().await;
}

#[tokio::test]
async fn reconfigure_refuses_a_managed_parameter_with_the_provisioners_message() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool("pgpool", "4.5.3", 1, false).await;
    let ops = OpsManager::start(&env.server).await;
    env.create_request("bad", reconfigure("pgpool", "port = 5433"))
        .await;
    let req = env.wait_final("bad", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let msg = failed_message(&req);
    let provisioner = pgpool_config::render_problem(
        &pgpool_config::check_override("port", "5433").expect_err("managed"),
    );
    assert!(msg.contains(&provisioner), "{msg}");
    // nothing changed, and the Pgpool was never paused
    assert!(condition(&req, ops::DATABASE_PAUSE_SUCCEEDED).is_none());
    let pp = env.pgpools().get("pgpool").await.expect("pgpool");
    assert!(pp.spec.config_secret.is_none());
    // the provisioner says the same about the same override in the Pgpool spec
    let patch = json!({"spec": {"configuration": {"inline": {"pgpool.conf": "port = 5433"}}}});
    env.pgpools()
        .patch("pgpool", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let want = provisioner.clone();
    env.wait_pgpool("pgpool", "the provisioner's problem", move |pp: &Pgpool| {
        pp.status
            .iter()
            .flat_map(|s| s.conditions.iter())
            .any(|c| c.message.contains(&want))
    })
    .await;
    ops.stop().await;
}

#[tokio::test]
async fn reconfigure_killed_mid_way_finishes_without_evicting_a_pod_twice() {
    let env = Env::new(KubeletConfig::default().ready_delay(Duration::from_millis(400))).await;
    env.ready_pgpool("pgpool", "4.5.3", 3, false).await;
    let mark = env.server.requests().mark();
    let ops = OpsManager::start(&env.server).await;
    env.create_request("rc", reconfigure("pgpool", "max_pool = 7"))
        .await;
    let evicted = ops::evict_pod(&names::pod("pgpool", 1));
    env.wait_request("rc", LIMIT, "pod 1 evicted", move |r: &PgpoolOpsRequest| {
        condition(r, &evicted).is_some_and(|c| c.status == conditions::TRUE)
    })
    .await;
    ops.kill().await;
    let ops = OpsManager::start(&env.server).await;
    let req = env.wait_final("rc", LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    assert_eq!(
        condition_types(&req),
        story(ops::RECONFIGURE, ops::UPDATE_CONFIGURATION, "pgpool", 3)
    );
    settled(&env, "pgpool", 3).await;
    let evictions = env.evictions_since(&mark);
    assert_eq!(evictions.len(), 3, "{evictions:?}");
    assert!(evictions.values().all(|n| *n == 1), "{evictions:?}");
    ops.stop().await;
}

#[tokio::test]
async fn reconfigure_that_cannot_restart_a_pod_rolls_the_configuration_back() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool("pgpool", "4.5.3", 1, false).await;
    let before = settled(&env, "pgpool", 1).await;
    // A budget that allows no disruption: the eviction is refused until the timeout.
    env.create_pdb("no-disruption", "pgpool", 1).await;
    let ops = OpsManager::start(&env.server).await;
    let mut spec = reconfigure("pgpool", "max_pool = 7");
    spec["timeout"] = json!("3s");
    env.create_request("rc", spec).await;
    let req = env.wait_final("rc", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    assert_eq!(
        condition(&req, ops::FAILED).map(|c| c.reason.as_str()),
        Some("EvictionTimeout"),
        "{}",
        failed_message(&req)
    );
    assert!(
        condition(&req, ops::ROLLBACK).is_some_and(|c| c.status == conditions::TRUE),
        "{:?}",
        condition_types(&req)
    );
    let pp = env.pgpools().get("pgpool").await.expect("pgpool");
    assert!(
        pp.spec.config_secret.is_none(),
        "{:?}",
        pp.spec.config_secret
    );
    let after = settled(&env, "pgpool", 1).await;
    assert_eq!(after, before, "the previous configuration is back");
    ops.stop().await;
}

async fn auth_secret(env: &Env, name: &str) -> Secret {
    secrets(env).get(name).await.expect("auth secret")
}

#[tokio::test]
async fn rotate_auth_generates_a_new_pcp_password() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool("pgpool", "4.5.3", 2, false).await;
    let old = text(&auth_secret(&env, "pgpool-auth").await, "password");
    let ops = OpsManager::start(&env.server).await;
    env.create_request(
        "pgpool-rotate-auth",
        json!({"type": "RotateAuth", "databaseRef": {"name": "pgpool"}}),
    )
    .await;
    let req = env.wait_final("pgpool-rotate-auth", LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    assert_eq!(
        condition_types(&req),
        story(ops::ROTATE_AUTH, ops::UPDATE_CREDENTIAL, "pgpool", 2)
    );
    let auth = auth_secret(&env, "pgpool-auth").await;
    let new = text(&auth, "password");
    assert_ne!(new, old);
    assert_eq!(text(&auth, "password.prev"), old);
    let config = secrets(&env)
        .get(&names::config_secret("pgpool"))
        .await
        .expect("config");
    let pcp = text(&config, "pcp.conf");
    assert!(pcp.contains(&pgpool_config::pcp_md5(&new)), "{pcp}");
    assert!(!pcp.contains(&pgpool_config::pcp_md5(&old)), "{pcp}");
    settled(&env, "pgpool", 2).await;
    ops.stop().await;
}

#[tokio::test]
async fn rotate_auth_to_the_users_secret_and_refused_when_externally_managed() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool("pgpool", "4.5.3", 1, false).await;
    let ops = OpsManager::start(&env.server).await;
    let new: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pgpool-new-auth", "namespace": NS},
        "type": "kubernetes.io/basic-auth",
        "stringData": {"username": "pcp", "password": "new-pcp-password"},
    }))
    .expect("secret");
    secrets(&env)
        .create(&PostParams::default(), &new)
        .await
        .expect("create");
    env.create_request(
        "to-user-secret",
        json!({"type": "RotateAuth", "databaseRef": {"name": "pgpool"},
               "authentication": {"secretRef": {"name": "pgpool-new-auth"}}}),
    )
    .await;
    let req = env.wait_final("to-user-secret", LIMIT).await;
    assert_eq!(
        phase(&req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(&req)
    );
    let pp = env.pgpools().get("pgpool").await.expect("pgpool");
    assert_eq!(pp.auth_secret_name(), "pgpool-new-auth");
    let config = secrets(&env)
        .get(&names::config_secret("pgpool"))
        .await
        .expect("config");
    assert!(text(&config, "pcp.conf").contains(&pgpool_config::pcp_md5("new-pcp-password")));
    settled(&env, "pgpool", 1).await;

    // The user's Secret is theirs: a generated password is refused.
    let patch = json!({"spec": {"authSecret": {"externallyManaged": true}}});
    env.pgpools()
        .patch("pgpool", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    env.create_request(
        "generated",
        json!({"type": "RotateAuth", "databaseRef": {"name": "pgpool"}, "apply": "Always"}),
    )
    .await;
    let req = env.wait_final("generated", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    assert!(
        failed_message(&req).contains("spec.authentication.secretRef"),
        "{}",
        failed_message(&req)
    );
    assert_eq!(
        text(&auth_secret(&env, "pgpool-new-auth").await, "password"),
        "new-pcp-password"
    );
    ops.stop().await;
}

#[tokio::test]
async fn rotate_auth_that_cannot_restart_a_pod_puts_the_old_password_back() {
    let env = Env::new(kubelet()).await;
    env.ready_pgpool("pgpool", "4.5.3", 1, false).await;
    let before = settled(&env, "pgpool", 1).await;
    let old = text(&auth_secret(&env, "pgpool-auth").await, "password");
    env.create_pdb("no-disruption", "pgpool", 1).await;
    let ops = OpsManager::start(&env.server).await;
    env.create_request(
        "ra",
        json!({"type": "RotateAuth", "databaseRef": {"name": "pgpool"}, "timeout": "3s"}),
    )
    .await;
    let req = env.wait_final("ra", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    assert!(
        condition(&req, ops::UPDATE_CREDENTIAL).is_some_and(|c| c.status == conditions::TRUE),
        "the password was rotated before the failure: {:?}",
        condition_types(&req)
    );
    let auth = auth_secret(&env, "pgpool-auth").await;
    assert_eq!(text(&auth, "password"), old);
    assert!(
        auth.data
            .as_ref()
            .is_some_and(|d| !d.contains_key("password.prev"))
    );
    let after = settled(&env, "pgpool", 1).await;
    assert_eq!(after, before, "the previous pcp.conf is back");
    let config = secrets(&env)
        .get(&names::config_secret("pgpool"))
        .await
        .expect("config");
    assert!(text(&config, "pcp.conf").contains(&pgpool_config::pcp_md5(&old)));
    ops.stop().await;
}
