//! Scenarios of ReconfigureTLS: the ops-manager and the real provisioner (built-in CA, with its
//! PetSet controller) against the testkit API server and the simulated kubelet. Every test
//! captures both operators' log (debug level) and checks that no private key appears in it or
//! in any event.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, NS, OpsManager, condition_types, failed_message, phase};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use pgpool_api::conditions::{self, ops, pgpool as pc};
use pgpool_api::{OpsRequestPhase, Pgpool, PgpoolOpsRequest, names};
use serde_json::json;
use testkit::KubeletConfig;

const LIMIT: Duration = Duration::from_secs(90);

/// Everything both operators logged in this test process.
fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    // the operators' own code at debug (more than they log in production)
    testkit::log_capture::capture(
        "info,pgpool_ops_manager=debug,pgpool_provisioner=debug,operator_kit=debug",
    )
}

/// Wait until the ops-manager's metrics hold `line` (the status is written before the metric).
async fn wait_metric(ops: &OpsManager, line: &str) {
    let found = tokio::time::timeout(LIMIT, async {
        loop {
            if ops.metrics().contains(line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "{line} in\n{}", ops.metrics());
}

fn kubelet() -> KubeletConfig {
    KubeletConfig::default().ready_delay(Duration::from_millis(30))
}

fn secrets(env: &Env) -> Api<Secret> {
    Api::namespaced(env.client.clone(), NS)
}

async fn text(env: &Env, name: &str, key: &str) -> Option<String> {
    let s = secrets(env).get_opt(name).await.expect("get secret")?;
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

/// Fails when the log or an event holds a PEM key header or a line of one of `keys`.
async fn assert_no_private_key(env: &Env, keys: &[String]) {
    let log = testkit::log_capture::text(&log_buffer());
    assert!(
        log.contains("pgpool_ops_manager"),
        "the ops-manager's log was captured"
    );
    let events: Api<Event> = Api::all(env.client.clone());
    let notes: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{} {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect();
    let key_lines: Vec<&str> = keys
        .iter()
        .flat_map(|k| k.lines())
        .filter(|l| l.len() > 20 && !l.starts_with("-----"))
        .collect();
    assert!(!key_lines.is_empty(), "keys to look for");
    for (what, text) in [("log", log), ("events", notes.join("\n"))] {
        assert!(!text.contains("PRIVATE KEY"), "a private key in the {what}");
        for line in &key_lines {
            assert!(!text.contains(line), "a private key line in the {what}");
        }
    }
}

/// Create Pgpool `name` (2 replicas) with `tls` (None: without TLS) and wait until Ready.
async fn ready_pgpool(env: &Env, name: &str, tls: Option<serde_json::Value>) {
    let mut pp = pgpool_api::fixtures::pgpool(NS, name, "4.5.3", 2);
    if let Some(tls) = tls {
        pp.spec.tls = Some(serde_json::from_value(tls).expect("tls"));
        pp.spec.ssl_mode = Some(serde_json::from_value(json!("require")).expect("ssl mode"));
    }
    env.pgpools()
        .create(&PostParams::default(), &pp)
        .await
        .expect("create pgpool");
    env.wait_pgpool(name, "Ready", common::plan_ready).await;
}

/// The provisioner caught up: not paused, its generation observed, Ready, pods up to date.
async fn settled(env: &Env, name: &str) -> Pgpool {
    env.wait_pgpool(name, "resumed, observed, Ready, pods up to date", |pp| {
        let st = pp.status.clone().unwrap_or_default();
        conditions::get(&st.conditions, pc::PAUSED).is_none()
            && st.observed_generation == pp.metadata.generation
            && conditions::is_true(&st.conditions, pc::PODS_UP_TO_DATE)
            && common::plan_ready(pp)
    })
    .await
}

fn reconfigure_tls(pgpool: &str, tls: serde_json::Value) -> serde_json::Value {
    json!({"type": "ReconfigureTLS", "databaseRef": {"name": pgpool}, "tls": tls})
}

fn successful(req: &PgpoolOpsRequest) {
    assert_eq!(
        phase(req),
        Some(OpsRequestPhase::Successful),
        "{}",
        failed_message(req)
    );
    let types = condition_types(req);
    for t in [
        ops::RECONFIGURE_TLS,
        ops::DATABASE_PAUSE_SUCCEEDED,
        ops::UPDATE_TLS,
        ops::CERTIFICATE_SYNCED,
        ops::RESTART_PODS,
        ops::SUCCESSFUL,
    ] {
        assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }
}

async fn keys(env: &Env, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in [
        format!("{name}-ca"),
        format!("{name}-server-cert"),
        format!("{name}-client-cert"),
    ] {
        out.extend(text(env, &s, "tls.key").await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_issues_a_new_server_certificate_and_restarts_the_pods() {
    log_buffer();
    let env = Env::new(kubelet()).await;
    ready_pgpool(&env, "pp", Some(json!({}))).await;
    let old_cert = text(&env, "pp-server-cert", "tls.crt").await.expect("cert");
    let old_keys = keys(&env, "pp").await;
    let before = common::uids(&env.pods_of("pp").await);
    let ops = OpsManager::start(&env.server).await;
    env.create_request(
        "rotate",
        reconfigure_tls("pp", json!({"rotateCertificates": true})),
    )
    .await;
    let req = env.wait_final("rotate", LIMIT).await;
    successful(&req);
    let new_cert = text(&env, "pp-server-cert", "tls.crt").await.expect("cert");
    assert_ne!(old_cert, new_cert, "the server certificate changed");
    settled(&env, "pp").await;
    let after = common::uids(&env.pods_of("pp").await);
    for (pod, uid) in &before {
        assert_ne!(after.get(pod), Some(uid), "pod {pod} was restarted");
    }
    wait_metric(&ops, "pgpool_operator_ops_request_duration_seconds_count{result=\"Successful\",type=\"ReconfigureTLS\"} 1").await;
    wait_metric(
        &ops,
        "pgpool_operator_ops_requests{phase=\"Successful\",type=\"ReconfigureTLS\"} 1",
    )
    .await;
    let mut all = old_keys;
    all.extend(keys(&env, "pp").await);
    assert_no_private_key(&env, &all).await;
    ops.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_leaves_the_pgpool_without_tls() {
    log_buffer();
    let env = Env::new(kubelet()).await;
    ready_pgpool(&env, "pp", Some(json!({}))).await;
    let old_keys = keys(&env, "pp").await;
    let ops = OpsManager::start(&env.server).await;
    env.create_request("remove", reconfigure_tls("pp", json!({"remove": true})))
        .await;
    let req = env.wait_final("remove", LIMIT).await;
    successful(&req);
    let pp = settled(&env, "pp").await;
    assert!(pp.spec.tls.is_none(), "{:?}", pp.spec.tls);
    assert_eq!(pp.spec.ssl_mode(), pgpool_api::pgpool::SslMode::Disable);
    let conf = text(&env, &names::config_secret("pp"), "pgpool.conf")
        .await
        .expect("pgpool.conf");
    assert!(conf.contains("\nssl = off\n"), "{conf}");
    assert_no_private_key(&env, &old_keys).await;
    ops.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_tls_issues_certificates_and_turns_ssl_on() {
    log_buffer();
    let env = Env::new(kubelet()).await;
    ready_pgpool(&env, "pp", None).await;
    let ops = OpsManager::start(&env.server).await;
    env.create_request("add", reconfigure_tls("pp", json!({"sslMode": "require"})))
        .await;
    let req = env.wait_final("add", LIMIT).await;
    successful(&req);
    let pp = settled(&env, "pp").await;
    assert!(pp.spec.tls.is_some());
    assert!(text(&env, "pp-server-cert", "tls.crt").await.is_some());
    let conf = text(&env, &names::config_secret("pp"), "pgpool.conf")
        .await
        .expect("pgpool.conf");
    assert!(conf.contains("\nssl = on\n"), "{conf}");
    assert_no_private_key(&env, &keys(&env, "pp").await).await;
    ops.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_ops_manager_finishes_a_rotation() {
    log_buffer();
    let env = Env::new(kubelet()).await;
    ready_pgpool(&env, "pp", Some(json!({}))).await;
    let old_cert = text(&env, "pp-server-cert", "tls.crt").await.expect("cert");
    let ops = OpsManager::start(&env.server).await;
    env.create_request(
        "rotate",
        reconfigure_tls("pp", json!({"rotateCertificates": true})),
    )
    .await;
    env.wait_request("rotate", LIMIT, "certificates changed", |r| {
        conditions::is_true(
            &r.status.clone().unwrap_or_default().conditions,
            ops::UPDATE_TLS,
        )
    })
    .await;
    ops.kill().await;
    let ops = OpsManager::start(&env.server).await;
    let req = env.wait_final("rotate", LIMIT).await;
    successful(&req);
    assert_ne!(
        text(&env, "pp-server-cert", "tls.crt").await.expect("cert"),
        old_cert
    );
    settled(&env, "pp").await;
    assert_no_private_key(&env, &keys(&env, "pp").await).await;
    ops.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_asks_for_nothing_fails_before_anything_changes() {
    log_buffer();
    let env = Env::new(kubelet()).await;
    ready_pgpool(&env, "pp", Some(json!({}))).await;
    let cert = text(&env, "pp-server-cert", "tls.crt").await.expect("cert");
    let ops = OpsManager::start(&env.server).await;
    env.create_request("nothing", reconfigure_tls("pp", json!({})))
        .await;
    let req = env.wait_final("nothing", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let failed = failed_message(&req);
    assert!(failed.starts_with("NothingToChange: "), "{failed}");
    assert!(
        !condition_types(&req)
            .iter()
            .any(|t| t == ops::DATABASE_PAUSE_SUCCEEDED)
    );
    assert_eq!(text(&env, "pp-server-cert", "tls.crt").await, Some(cert));
    wait_metric(&ops, "pgpool_operator_ops_request_duration_seconds_count{result=\"Failed\",type=\"ReconfigureTLS\"} 1").await;
    wait_metric(
        &ops,
        "pgpool_operator_ops_requests{phase=\"Failed\",type=\"ReconfigureTLS\"} 1",
    )
    .await;
    ops.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_whose_pods_cannot_restart_puts_tls_back() {
    log_buffer();
    let env = Env::new(kubelet()).await;
    ready_pgpool(&env, "pp", Some(json!({}))).await;
    // A budget that allows no disruption: the eviction is refused until the timeout.
    env.create_pdb("no-disruption", "pp", 2).await;
    let ops = OpsManager::start(&env.server).await;
    let mut spec = reconfigure_tls("pp", json!({"remove": true}));
    spec["timeout"] = json!("3s");
    env.create_request("remove", spec).await;
    let req = env.wait_final("remove", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let failed = failed_message(&req);
    assert!(failed.starts_with("EvictionTimeout: "), "{failed}");
    assert!(
        failed.contains("put the previous TLS settings back"),
        "{failed}"
    );
    let pp = env
        .wait_pgpool("pp", "resumed with TLS", |pp| {
            let st = pp.status.clone().unwrap_or_default();
            conditions::get(&st.conditions, pc::PAUSED).is_none() && pp.spec.tls.is_some()
        })
        .await;
    assert_eq!(pp.spec.ssl_mode(), pgpool_api::pgpool::SslMode::Require);
    assert_no_private_key(&env, &keys(&env, "pp").await).await;
    ops.stop().await;
}
