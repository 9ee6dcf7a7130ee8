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
        ops::UPDATE_PETSETS,
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
        format!("{name}-metrics-exporter-cert"),
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
    // killed once the spec changed, and again once the render was asked for
    log_buffer();
    let env = Env::new(kubelet()).await;
    ready_pgpool(&env, "pp", Some(json!({}))).await;
    let old_cert = text(&env, "pp-server-cert", "tls.crt").await.expect("cert");
    let mark = env.server.requests().mark();
    let mut ops = OpsManager::start(&env.server).await;
    env.create_request(
        "rotate",
        reconfigure_tls("pp", json!({"rotateCertificates": true})),
    )
    .await;
    for (step, done) in [(ops::UPDATE_TLS, true), (ops::UPDATE_PETSETS, false)] {
        env.wait_request("rotate", LIMIT, step, move |r| {
            let st = r.status.clone().unwrap_or_default();
            match done {
                true => conditions::is_true(&st.conditions, step),
                false => conditions::get(&st.conditions, step).is_some(),
            }
        })
        .await;
        ops.kill().await;
        ops = OpsManager::start(&env.server).await;
    }
    let req = env.wait_final("rotate", LIMIT).await;
    successful(&req);
    assert_ne!(
        text(&env, "pp-server-cert", "tls.crt").await.expect("cert"),
        old_cert
    );
    settled(&env, "pp").await;
    let evictions = env.evictions_since(&mark);
    assert_eq!(evictions.len(), 2, "{evictions:?}");
    assert!(evictions.values().all(|n| *n == 1), "{evictions:?}");
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
        failed.contains("rolled back: the previous TLS settings are rendered"),
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

/// The request's condition `type_`, if it has it.
fn request_condition(r: &PgpoolOpsRequest, type_: &str) -> Option<(String, String)> {
    let st = r.status.as_ref()?;
    conditions::get(&st.conditions, type_).map(|c| (c.status.clone(), c.message.clone()))
}

/// The `pgpool.kubedb.com/tls-hash` of the PetSet's template and of each pod.
async fn tls_hashes(env: &Env, name: &str) -> (Option<String>, Vec<(String, Option<String>)>) {
    let key = "pgpool.kubedb.com/tls-hash";
    let ps = env.petsets().get(name).await.expect("petset");
    let template = ps
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(key).cloned());
    let pods = env
        .pods_of(name)
        .await
        .into_iter()
        .map(|(n, p)| (n, p.metadata.annotations.and_then(|a| a.get(key).cloned())))
        .collect();
    (template, pods)
}

async fn events_with_reason(env: &Env, reason: &str) -> usize {
    let events: Api<Event> = Api::all(env.client.clone());
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_restart_while_the_pgpool_stays_paused_and_only_for_the_request() {
    log_buffer();
    let env = Env::new(kubelet()).await;
    ready_pgpool(&env, "pp", Some(json!({}))).await;
    let (old_hash, _) = tls_hashes(&env, "pp").await;
    let before = common::uids(&env.pods_of("pp").await);
    // A second budget: every eviction is refused while it exists.
    env.create_pdb("no-disruption", "pp", 2).await;
    let ops = OpsManager::start(&env.server).await;
    env.create_request(
        "rotate",
        reconfigure_tls("pp", json!({"rotateCertificates": true})),
    )
    .await;
    let evict = ops::evict_pod("pp-0");
    env.wait_request("rotate", LIMIT, "the first eviction refused", move |r| {
        request_condition(r, &evict).is_some_and(|(status, _)| status == conditions::UNKNOWN)
    })
    .await;
    // the template moved while paused; the provisioner holds still while pods restart
    let pp = env.pgpools().get("pp").await.expect("pgpool");
    let paused = pp
        .status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, pc::PAUSED).cloned())
        .expect("paused while the request restarts pods");
    assert_eq!(
        (paused.status.as_str(), paused.reason.as_str()),
        (conditions::TRUE, pc::REASON_RENDERED)
    );
    let (template, pods) = tls_hashes(&env, "pp").await;
    assert!(template.is_some() && template != old_hash, "{template:?}");
    assert!(pods.iter().all(|(_, h)| *h == old_hash), "{pods:?}");
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(env.client.clone(), NS);
    pdbs.delete("no-disruption", &Default::default())
        .await
        .expect("delete pdb");
    let req = env.wait_final("rotate", LIMIT).await;
    successful(&req);
    settled(&env, "pp").await;
    let (template, pods) = tls_hashes(&env, "pp").await;
    assert!(pods.iter().all(|(_, h)| *h == template), "{pods:?}");
    let after = common::uids(&env.pods_of("pp").await);
    for (pod, uid) in &before {
        assert_ne!(after.get(pod), Some(uid), "pod {pod} was restarted");
    }
    assert_eq!(
        events_with_reason(&env, "RestartedForCertificate").await,
        0,
        "the provisioner restarted no pod of its own"
    );
    ops.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_removal_restarts_the_pods_it_moved_with_tls_again() {
    log_buffer();
    // slow enough readiness for the test to block the second eviction after the first
    let env = Env::new(KubeletConfig::default().ready_delay(Duration::from_millis(1500))).await;
    ready_pgpool(&env, "pp", Some(json!({}))).await;
    let (old_hash, _) = tls_hashes(&env, "pp").await;
    assert!(old_hash.is_some());
    let ops = OpsManager::start(&env.server).await;
    let mut spec = reconfigure_tls("pp", json!({"remove": true}));
    spec["timeout"] = json!("3s");
    env.create_request("remove", spec).await;
    let evict = ops::evict_pod("pp-0");
    env.wait_request("remove", LIMIT, "pp-0 evicted", move |r| {
        request_condition(r, &evict).is_some_and(|(status, _)| status == conditions::TRUE)
    })
    .await;
    // pp-0 comes back without TLS; pp-1 may not go
    env.create_pdb("no-disruption", "pp", 2).await;
    env.wait_request("remove", LIMIT, "rolling back", |r| {
        request_condition(r, ops::ROLLBACK).is_some()
    })
    .await;
    let (template, pods) = tls_hashes(&env, "pp").await;
    assert!(
        pods.iter().any(|(_, h)| h.is_none()),
        "a pod moved: {template:?} {pods:?}"
    );
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(env.client.clone(), NS);
    pdbs.delete("no-disruption", &Default::default())
        .await
        .expect("delete pdb");
    let req = env.wait_final("remove", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let pp = settled(&env, "pp").await;
    assert!(pp.spec.tls.is_some());
    let (template, pods) = tls_hashes(&env, "pp").await;
    assert!(template.is_some(), "TLS is back in the template");
    assert!(pods.iter().all(|(_, h)| *h == template), "{pods:?}");
    let failed = failed_message(&req);
    assert!(
        failed.contains(
            "rolled back: the previous TLS settings are rendered and every pod runs them"
        ),
        "{failed}"
    );
    ops.stop().await;
}

/// Plays cert-manager with a CA of its own: every Certificate gets a Secret signed by it.
fn cert_manager(env: &Env) -> testkit::cert_manager::FakeCertManager {
    use pgpool_provisioner::pgpool::tls::ca::{self, LeafRequest, Usage};
    let issuer = ca::new_ca("cert-manager-ca", chrono::Utc::now(), ca::CA_LIFETIME).expect("CA");
    testkit::cert_manager::FakeCertManager::start(
        env.client.clone(),
        NS,
        Box::new(move |certificate| {
            let spec = &certificate.data["spec"];
            let dns_names = spec["dnsNames"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let request = LeafRequest {
                common_name: spec["commonName"].as_str().unwrap_or("pgpool").into(),
                organizations: Vec::new(),
                dns_names,
                ip_addresses: Vec::new(),
                usage: Usage::Server,
                lifetime: Duration::from_secs(3600),
            };
            let pair = ca::sign(&issuer, &request, chrono::Utc::now()).expect("sign");
            vec![
                ("tls.crt".into(), pair.cert_pem),
                ("tls.key".into(), pair.key_pem.0),
                ("ca.crt".into(), issuer.cert_pem.clone()),
            ]
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cert_manager_rotation_gets_new_certificates_from_the_issuer() {
    log_buffer();
    let env = Env::new(kubelet()).await;
    testkit::cert_manager::install_crds(&env.server);
    let issuers: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &testkit::cert_manager::api_resource("Issuer"),
    );
    let mut issuer =
        kube::api::DynamicObject::new("pgpool-ca", &testkit::cert_manager::api_resource("Issuer"));
    issuer.data = json!({"spec": {"ca": {"secretName": "pgpool-ca"}}});
    issuers
        .create(&PostParams::default(), &issuer)
        .await
        .expect("create Issuer");
    let cm = cert_manager(&env);
    let issuer_ref = json!({"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "pgpool-ca"}});
    ready_pgpool(&env, "pp", Some(issuer_ref)).await;
    let issued = cm.issued();
    assert!(issued >= 2, "cert-manager issued the Secrets: {issued}");
    let old_cert = text(&env, "pp-server-cert", "tls.crt").await.expect("cert");
    let (old_hash, _) = tls_hashes(&env, "pp").await;
    let before = common::uids(&env.pods_of("pp").await);
    let ops = OpsManager::start(&env.server).await;
    env.create_request(
        "rotate",
        reconfigure_tls("pp", json!({"rotateCertificates": true})),
    )
    .await;
    let req = env.wait_final("rotate", LIMIT).await;
    successful(&req);
    assert!(cm.issued() >= issued + 2, "issued again: {}", cm.issued());
    let new_cert = text(&env, "pp-server-cert", "tls.crt").await.expect("cert");
    assert_ne!(old_cert, new_cert, "the server certificate changed");
    assert_eq!(
        text(&env, "pp-ca", "tls.crt").await,
        None,
        "no built-in CA with an issuer"
    );
    settled(&env, "pp").await;
    let (template, pods) = tls_hashes(&env, "pp").await;
    assert!(template.is_some() && template != old_hash, "{template:?}");
    assert!(pods.iter().all(|(_, h)| *h == template), "{pods:?}");
    let after = common::uids(&env.pods_of("pp").await);
    for (pod, uid) in &before {
        assert_ne!(after.get(pod), Some(uid), "pod {pod} was restarted");
    }
    ops.stop().await;
}
