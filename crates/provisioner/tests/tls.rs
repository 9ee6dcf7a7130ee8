//! TLS of a Pgpool against the testkit API server: the built-in CA (Secrets, mounts,
//! `pgpool.conf`/`pool_hba.conf`, renewal with an event), cert-manager (Certificates, a missing
//! Issuer, cert-manager not installed). Every test captures the provisioner's log (debug level)
//! and checks that no private key appears in it or in any event.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use pgpool_api::conditions::{self, pgpool as types};
use pgpool_api::{PetSet, Pgpool, PgpoolPhase};
use pgpool_provisioner::pgpool::tls::ca::{self, LeafRequest, Usage};
use serde_json::json;
use testkit::cert_manager;

/// Everything the provisioner logged in this test process.
fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    // the operators' own code at debug (more than they log in production)
    testkit::log_capture::capture(
        "info,pgpool_provisioner=debug,operator_kit=debug,petset_controller=debug",
    )
}

/// Fails when the log or an event holds a PEM key header or a line of one of `keys`.
async fn assert_no_private_key(env: &Env, keys: &[String]) {
    let log = testkit::log_capture::text(&log_buffer());
    assert!(!log.is_empty(), "the provisioner's log was captured");
    let events: Api<Event> = env.api();
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
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .collect();
    assert!(!key_lines.is_empty(), "the keys to look for");
    for (what, text) in [("log", log.as_str()), ("events", &notes.join("\n"))] {
        assert!(!text.contains("PRIVATE KEY"), "a private key in the {what}");
        for line in &key_lines {
            assert!(!text.contains(line), "key material in the {what}");
        }
    }
}

const TLS_HASH: &str = "pgpool.kubedb.com/tls-hash";

async fn events_with_reason(env: &Env, reason: &str) -> usize {
    env.api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .count()
}

fn tls_pgpool(tls: serde_json::Value, ssl_mode: &str) -> Pgpool {
    let mut p = example_pgpool();
    p.spec.tls = Some(serde_json::from_value(tls).expect("tls"));
    p.spec.ssl_mode = Some(serde_json::from_value(json!(ssl_mode)).expect("ssl mode"));
    p
}

async fn secret_text(env: &Env, name: &str, key: &str) -> String {
    env.secret_value(name, key)
        .await
        .unwrap_or_else(|| panic!("Secret {name} key {key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_ca_makes_a_verify_full_pgpool_ready() {
    log_buffer();
    let env = Env::start().await;
    env.create(&tls_pgpool(json!({}), "verify-full")).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;

    // the CA and two certificates in KubeDB's naming; the server's names the Services
    let ca_pem = secret_text(&env, "pp-update-ca", "tls.crt").await;
    let server_pem = secret_text(&env, "pp-update-server-cert", "tls.crt").await;
    assert_eq!(
        secret_text(&env, "pp-update-server-cert", "ca.crt").await,
        ca_pem
    );
    let server = ca::inspect(&server_pem).unwrap();
    assert_eq!(server.issuer, ca::inspect(&ca_pem).unwrap().subject);
    for name in [
        "pp-update.demo.svc",
        "*.pp-update-pods.demo.svc",
        "localhost",
    ] {
        assert!(
            server.dns_names.iter().any(|n| n == name),
            "{name}: {server:?}"
        );
    }
    let client = ca::inspect(&secret_text(&env, "pp-update-client-cert", "tls.crt").await).unwrap();
    assert!(client.subject.contains("CN=postgres"), "{client:?}");
    let secret = env
        .api::<Secret>()
        .get("pp-update-server-cert")
        .await
        .unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));

    // pgpool.conf and pool_hba.conf
    let conf = secret_text(&env, "pp-update-config", "pgpool.conf").await;
    assert!(conf.contains("\nssl = on\n"), "{conf}");
    assert!(
        conf.contains("ssl_cert = '/var/run/pgpool-key/tls.crt'"),
        "{conf}"
    );
    let hba = secret_text(&env, "pp-update-config", "pool_hba.conf").await;
    assert!(hba.contains("hostssl all"), "{hba}");
    assert!(!hba.lines().any(|l| l.starts_with("host ")), "{hba}");

    // the pod template mounts the server certificate for the init container's copy
    let petset = env.api::<PetSet>().get(NAME).await.unwrap();
    let pod = petset.spec.template.spec.unwrap();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "pgpool-tls")
        .expect("pgpool-tls volume");
    let sources = volume.projected.unwrap().sources.unwrap();
    assert!(
        sources
            .iter()
            .all(|s| s.secret.as_ref().unwrap().name == "pp-update-server-cert")
    );
    let init = &pod.init_containers.unwrap()[0];
    let script = &init.command.as_ref().unwrap()[2];
    assert!(
        script.contains("/etc/pgpool-tls/tls.key /var/run/pgpool-key/tls.key"),
        "{script}"
    );
    assert!(
        init.volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.name == "pgpool-tls")
    );

    let keys = vec![
        secret_text(&env, "pp-update-ca", "tls.key").await,
        secret_text(&env, "pp-update-server-cert", "tls.key").await,
        secret_text(&env, "pp-update-client-cert", "tls.key").await,
    ];
    assert_no_private_key(&env, &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_certificates_are_renewed_before_expiry_with_an_event() {
    log_buffer();
    let env = Env::start().await;
    // 45 s certificates renewed 30 s before expiry: due 15 s after issue
    let tls =
        json!({"certificates": [{"alias": "server", "duration": "45s", "renewBefore": "30s"}]});
    env.create(&tls_pgpool(tls, "require")).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let first = secret_text(&env, "pp-update-server-cert", "tls.crt").await;
    let first_hash = env
        .api::<PetSet>()
        .get(NAME)
        .await
        .unwrap()
        .spec
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()[TLS_HASH]
        .clone();
    let mut keys = vec![secret_text(&env, "pp-update-server-cert", "tls.key").await];
    // watched, not polled: the Secret's tls.crt is no longer the first certificate
    let other_cert = |s: Option<&Secret>| {
        s.and_then(|s| s.data.as_ref()?.get("tls.crt"))
            .is_some_and(|crt| crt.0 != first.as_bytes())
    };
    let renewed = tokio::time::timeout(
        Duration::from_secs(90),
        kube::runtime::wait::await_condition(
            env.api::<Secret>(),
            "pp-update-server-cert",
            other_cert,
        ),
    )
    .await;
    assert!(
        renewed.is_ok_and(|r| r.is_ok()),
        "the server certificate was not renewed"
    );
    let second = ca::inspect(&secret_text(&env, "pp-update-server-cert", "tls.crt").await).unwrap();
    assert!(second.not_after > ca::inspect(&first).unwrap().not_after);
    assert!(second.not_after > Utc::now());
    keys.push(secret_text(&env, "pp-update-server-cert", "tls.key").await);
    wait_until("a CertificateRenewed event", || async {
        env.api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("CertificateRenewed"))
    })
    .await;
    // the provisioner restarts the pod (no ops request): it carries the new hash
    wait_until("a pod with the new certificates", || async {
        let ps = env.api::<PetSet>().get(NAME).await.unwrap();
        let want = ps
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .unwrap()[TLS_HASH]
            .clone();
        let pods = env.pods(NAME).await;
        want != first_hash
            && pods.len() == 1
            && pods[0].metadata.deletion_timestamp.is_none()
            && pods[0].metadata.annotations.as_ref().unwrap()[TLS_HASH] == want
    })
    .await;
    assert!(events_with_reason(&env, "RestartedForCertificate").await > 0);
    assert_no_private_key(&env, &keys).await;
}

fn issuer_tls() -> serde_json::Value {
    json!({"issuerRef": {"apiGroup": "cert-manager.io", "kind": "Issuer", "name": "pgpool-ca"}})
}

async fn create_issuer(env: &Env) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &cert_manager::api_resource("Issuer"),
    );
    let mut issuer = DynamicObject::new("pgpool-ca", &cert_manager::api_resource("Issuer"));
    issuer.data = json!({"spec": {"ca": {"secretName": "pgpool-ca"}}});
    api.create(&PostParams::default(), &issuer)
        .await
        .expect("create Issuer");
}

async fn ready_message(env: &Env) -> (String, String, String) {
    let status = env
        .pgpool(NAME)
        .await
        .and_then(|p| p.status)
        .unwrap_or_default();
    conditions::get(&status.conditions, types::READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

/// Plays cert-manager: fills the Secret a Certificate names with certificates of `issuer`.
async fn issue(env: &Env, issuer: &ca::CertPair, certificate: &DynamicObject) -> String {
    let spec = &certificate.data["spec"];
    let secret_name = spec["secretName"].as_str().unwrap().to_string();
    let dns: Vec<String> = spec["dnsNames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let request = LeafRequest {
        common_name: spec["commonName"].as_str().unwrap_or("x").into(),
        organizations: Vec::new(),
        dns_names: dns,
        ip_addresses: Vec::new(),
        usage: Usage::Server,
        lifetime: Duration::from_secs(3600),
    };
    let pair = ca::sign(issuer, &request, Utc::now()).unwrap();
    let secret = testkit::fixtures::secret(
        NS,
        &secret_name,
        [
            ("tls.crt", pair.cert_pem.as_str()),
            ("tls.key", pair.key_pem.0.as_str()),
            ("ca.crt", issuer.cert_pem.as_str()),
        ],
    );
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
    pair.key_pem.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_ref_gets_certificates_and_is_ready_once_they_are_issued() {
    log_buffer();
    let env = Env::start().await;
    cert_manager::install_crds(&env.server);
    create_issuer(&env).await;
    env.create(&tls_pgpool(issuer_tls(), "verify-full")).await;

    let certificates: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &cert_manager::api_resource("Certificate"),
    );
    wait_until("three Certificates", || async {
        certificates
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
            == 3
    })
    .await;
    let server = certificates.get("pp-update-server-cert").await.unwrap();
    assert_eq!(server.data["spec"]["issuerRef"]["name"], "pgpool-ca");
    assert_eq!(server.data["spec"]["secretName"], "pp-update-server-cert");
    assert!(
        server.data["spec"]["dnsNames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "pp-update.demo.svc")
    );
    // not issued yet: the status says so
    wait_until("a condition naming the pending Secrets", || async {
        env.pgpool(NAME)
            .await
            .and_then(|p| p.status)
            .and_then(|s| conditions::get(&s.conditions, types::PROVISIONING_STARTED).cloned())
            .is_some_and(|c| {
                c.message.contains("waiting for cert-manager")
                    && c.message.contains("pp-update-server-cert")
            })
    })
    .await;

    let issuer = ca::new_ca("cert-manager-ca", Utc::now(), ca::CA_LIFETIME).unwrap();
    let mut keys = Vec::new();
    for name in [
        "pp-update-server-cert",
        "pp-update-client-cert",
        "pp-update-metrics-exporter-cert",
    ] {
        let c = certificates.get(name).await.unwrap();
        keys.push(issue(&env, &issuer, &c).await);
    }
    wait_until("the pending note gone", || async {
        env.pgpool(NAME)
            .await
            .and_then(|p| p.status)
            .and_then(|s| conditions::get(&s.conditions, types::PROVISIONING_STARTED).cloned())
            .is_some_and(|c| c.status == "True" && !c.message.contains("waiting for cert-manager"))
    })
    .await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    // no built-in CA with an issuer
    assert!(env.secret_value("pp-update-ca", "tls.crt").await.is_none());
    let ps = env.api::<PetSet>().get(NAME).await.unwrap();
    assert!(
        ps.spec
            .template
            .spec
            .unwrap()
            .volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "pgpool-tls")
    );
    assert_no_private_key(&env, &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_issuer_is_a_false_condition_naming_it() {
    log_buffer();
    let env = Env::start().await;
    // without cert-manager's CRDs: said so
    env.create(&tls_pgpool(issuer_tls(), "require")).await;
    wait_until("Ready False: cert-manager not installed", || async {
        let (status, reason, message) = ready_message(&env).await;
        status == "False" && reason == "CertManagerNotInstalled" && message.contains("pgpool-ca")
    })
    .await;
    // the CRDs, but no Issuer: the condition names it
    cert_manager::install_crds(&env.server);
    wait_until("Ready False: Issuer not found", || async {
        let (status, reason, message) = ready_message(&env).await;
        status == "False" && reason == "IssuerNotFound" && message.contains("Issuer \"pgpool-ca\"")
    })
    .await;
    // the Issuer appears: Certificates are made without another change to the Pgpool
    create_issuer(&env).await;
    let certificates: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &cert_manager::api_resource("Certificate"),
    );
    wait_until("Certificates after the Issuer appeared", || async {
        certificates
            .get_opt("pp-update-server-cert")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_provisioner_keeps_the_certificates_and_writes_nothing() {
    log_buffer();
    let mut env = Env::start().await;
    env.create(&tls_pgpool(json!({}), "require")).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let names = [
        "pp-update-ca",
        "pp-update-server-cert",
        "pp-update-client-cert",
        "pp-update-metrics-exporter-cert",
    ];
    let mut before = Vec::new();
    for name in names {
        before.push(secret_text(&env, name, "tls.crt").await);
    }

    env.stop_operator().await;
    let mark = env.server.requests().mark();
    env.start_operator().await;
    env.wait_reconciles(5).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    for (name, pem) in names.iter().zip(&before) {
        assert_eq!(
            &secret_text(&env, name, "tls.crt").await,
            pem,
            "{name} kept"
        );
    }
    let writes = env.server.requests().since(&mark).writes_by(AGENT);
    assert_eq!(writes, 0, "a restart on a Ready TLS Pgpool writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_talks_tls_with_its_own_certificate() {
    log_buffer();
    let env = Env::start().await;
    let mut p = tls_pgpool(json!({}), "require");
    p.spec.client_auth_mode = Some(serde_json::from_value(json!("cert")).unwrap());
    p.spec.monitor = serde_json::from_value(json!({"agent": "prometheus.io/builtin"})).unwrap();
    env.create(&p).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let hba = secret_text(&env, "pp-update-config", "pool_hba.conf").await;
    assert!(
        hba.contains("hostssl all       all   0.0.0.0/0  cert"),
        "{hba}"
    );
    let ps = env.api::<PetSet>().get(NAME).await.unwrap();
    let pod = ps.spec.template.spec.unwrap();
    let exporter = pod
        .containers
        .iter()
        .find(|c| c.name == "exporter")
        .expect("exporter");
    let uri = exporter
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "DATA_SOURCE_URI")
        .and_then(|e| e.value.clone())
        .unwrap();
    assert!(uri.contains("sslmode=require"), "{uri}");
    assert!(
        uri.contains("sslcert=/etc/pgpool-tls-client/tls.crt"),
        "{uri}"
    );
    assert!(
        exporter
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.name == "pgpool-tls-client")
    );
    let client_volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "pgpool-tls-client")
        .expect("client certificate volume");
    assert_eq!(
        client_volume.secret.unwrap().secret_name.as_deref(),
        Some("pp-update-metrics-exporter-cert")
    );
}
