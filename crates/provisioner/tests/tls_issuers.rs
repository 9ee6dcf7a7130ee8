//! TLS beyond the basics, against the testkit API server: an issuer that writes no `ca.crt`
//! (ACME and the like), the metrics exporter's own certificate, and the reason of the wait
//! for cert-manager. The pod's volumes are laid out as the kubelet does (`local-node`) from the
//! Secrets that exist, and the init container's script runs on them, so a key the pod cannot
//! mount or a file the script cannot find fails here as it would on a node.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use common::*;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use local_node::volumes::{Sources, VolumePlan, plan_volume, write_volume};
use pgpool_api::conditions::{self, pgpool as types};
use pgpool_api::{PetSet, Pgpool, PgpoolPhase};
use pgpool_provisioner::pgpool::tls::ca::{self, CertPair, LeafRequest, Usage};
use serde_json::json;
use testkit::cert_manager;

const CERTS: [&str; 3] = [
    "pp-update-server-cert",
    "pp-update-client-cert",
    "pp-update-metrics-exporter-cert",
];

fn tls_pgpool(tls: serde_json::Value, ssl_mode: &str, auth: &str) -> Pgpool {
    let mut p = example_pgpool();
    p.spec.tls = Some(serde_json::from_value(tls).expect("tls"));
    p.spec.ssl_mode = Some(serde_json::from_value(json!(ssl_mode)).expect("ssl mode"));
    p.spec.client_auth_mode = Some(serde_json::from_value(json!(auth)).expect("auth mode"));
    p.spec.monitor = serde_json::from_value(json!({"agent": "prometheus.io/builtin"})).unwrap();
    p
}

/// cert-manager's CRDs and a ClusterIssuer `letsencrypt` (an ACME issuer).
async fn install_acme_issuer(env: &Env) {
    cert_manager::install_crds(&env.server);
    let ar = cert_manager::api_resource("ClusterIssuer");
    let api: Api<DynamicObject> = Api::all_with(env.client.clone(), &ar);
    let mut issuer = DynamicObject::new("letsencrypt", &ar);
    issuer.data = json!({"spec": {"acme": {"server": "https://acme.invalid/directory"}}});
    api.create(&PostParams::default(), &issuer)
        .await
        .expect("create ClusterIssuer");
}

fn acme_tls() -> serde_json::Value {
    json!({"issuerRef": {"apiGroup": "cert-manager.io", "kind": "ClusterIssuer", "name": "letsencrypt"}})
}

fn certificates(env: &Env) -> Api<DynamicObject> {
    Api::namespaced_with(
        env.client.clone(),
        NS,
        &cert_manager::api_resource("Certificate"),
    )
}

/// Plays an ACME issuer: fills the Secret of each Certificate with `tls.crt` and `tls.key`
/// of `issuer`, and no `ca.crt`.
async fn issue_without_ca(env: &Env, issuer: &CertPair) {
    let api = certificates(env);
    for name in CERTS {
        let certificate = api.get(name).await.expect("Certificate");
        let spec = &certificate.data["spec"];
        let request = LeafRequest {
            common_name: spec["commonName"].as_str().unwrap_or("x").into(),
            organizations: Vec::new(),
            dns_names: vec!["localhost".into()],
            ip_addresses: Vec::new(),
            usage: Usage::Server,
            lifetime: Duration::from_secs(3600),
        };
        let pair = ca::sign(issuer, &request, Utc::now()).unwrap();
        let secret = testkit::fixtures::secret(
            NS,
            spec["secretName"].as_str().unwrap(),
            [
                ("tls.crt", pair.cert_pem.as_str()),
                ("tls.key", pair.key_pem.0.as_str()),
            ],
        );
        env.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .expect("create Secret");
    }
}

async fn condition(env: &Env, type_: &str) -> Option<(String, String, String)> {
    let status = env.pgpool(NAME).await?.status?;
    conditions::get(&status.conditions, type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// (reason, type, note) of every event.
async fn events(env: &Env) -> Vec<(String, String, String)> {
    env.api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.type_.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

async fn pod_of_template(env: &Env) -> Pod {
    let ps = env.api::<PetSet>().get(NAME).await.expect("PetSet");
    Pod {
        metadata: ps.spec.template.metadata.unwrap_or_default(),
        spec: ps.spec.template.spec,
        ..Pod::default()
    }
}

/// Lays out the volumes `container` (an init container or container of `pod`) mounts, as the
/// kubelet does from the Secrets that exist: mount path -> folder under `root`. A volume the
/// kubelet could not set up fails.
async fn mount_volumes(
    env: &Env,
    pod: &Pod,
    container: &str,
    root: &Path,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let spec = pod.spec.as_ref().expect("pod spec");
    let c = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .find(|c| c.name == container)
        .expect("container");
    let mut sources = Sources::default();
    for secret in env
        .api::<Secret>()
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        sources.add_secret(&secret);
    }
    let mut out = BTreeMap::new();
    for m in c.volume_mounts.iter().flatten() {
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .expect("volume of a mount");
        let plan = plan_volume(pod, volume, &sources, None)
            .map_err(|e| format!("volume {}: {e}", volume.name))?;
        let dir = root.join(&volume.name);
        write_volume(&dir, &plan).expect("write volume");
        if let VolumePlan::HostPath(_) = plan {
            panic!("no hostPath expected");
        }
        out.insert(m.mount_path.clone(), dir);
    }
    Ok(out)
}

/// Runs the init container's script of `pod` with its volumes laid out under `root`; returns
/// where each mount path went.
async fn run_init(env: &Env, pod: &Pod, root: &Path) -> BTreeMap<String, PathBuf> {
    let mounts = mount_volumes(env, pod, "pgpool-init", root)
        .await
        .expect("the init container's volumes mount");
    let spec = pod.spec.as_ref().unwrap();
    let init = &spec.init_containers.as_ref().unwrap()[0];
    let mut script = init.command.as_ref().unwrap()[2].clone();
    let mut paths: Vec<(&String, &PathBuf)> = mounts.iter().collect();
    paths.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    for (mount, dir) in paths {
        script = script.replace(mount.as_str(), &dir.display().to_string());
    }
    let out = Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "init script failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    mounts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_without_ca_crt_serves_tls_after_waiting_with_its_own_reason() {
    let env = Env::start().await;
    install_acme_issuer(&env).await;
    env.create(&tls_pgpool(acme_tls(), "verify-full", "md5"))
        .await;

    // three Certificates; while they are not issued the wait has its own reason
    wait_until("three Certificates", || async {
        certificates(&env)
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
            == 3
    })
    .await;
    wait_until("ProvisioningStarted WaitingForCertificates", || async {
        condition(&env, types::PROVISIONING_STARTED)
            .await
            .is_some_and(|(s, reason, message)| {
                s == "True"
                    && reason == "WaitingForCertificates"
                    && message.contains("pp-update-metrics-exporter-cert")
            })
    })
    .await;
    wait_until("a WaitingForCertificates event", || async {
        events(&env).await.iter().any(|(reason, type_, note)| {
            reason == "WaitingForCertificates"
                && type_ == "Normal"
                && note.contains("waiting for cert-manager")
        })
    })
    .await;
    assert!(
        !events(&env)
            .await
            .iter()
            .any(|(reason, _, _)| reason == "MonitoringIncomplete"),
        "the wait is not a MonitoringIncomplete"
    );
    let exporter = certificates(&env)
        .get("pp-update-metrics-exporter-cert")
        .await
        .unwrap();
    assert_eq!(exporter.data["spec"]["commonName"], "postgres");
    assert_eq!(exporter.data["spec"]["issuerRef"]["name"], "letsencrypt");

    let issuer = ca::new_ca("acme-ca", Utc::now(), ca::CA_LIFETIME).unwrap();
    issue_without_ca(&env, &issuer).await;
    wait_until("ProvisioningStarted without the wait", || async {
        condition(&env, types::PROVISIONING_STARTED)
            .await
            .is_some_and(|(s, reason, message)| {
                s == "True"
                    && reason == "ProvisioningStarted"
                    && !message.contains("waiting for cert-manager")
            })
    })
    .await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;

    // pgpool serves the issuer's certificate and names no CA file
    wait_until("pgpool.conf without ssl_ca_cert", || async {
        env.secret_value("pp-update-config", "pgpool.conf")
            .await
            .is_some_and(|c| c.contains("ssl_cert") && !c.contains("ssl_ca_cert"))
    })
    .await;
    let conf = env
        .secret_value("pp-update-config", "pgpool.conf")
        .await
        .unwrap();
    assert!(conf.contains("ssl = on"), "{conf}");

    // the pod mounts what exists and the init step copies it
    let pod = pod_of_template(&env).await;
    let root = tempfile::tempdir().unwrap();
    let mounts = run_init(&env, &pod, root.path()).await;
    let key_dir = &mounts["/var/run/pgpool-key"];
    let served = std::fs::read_to_string(key_dir.join("tls.crt")).unwrap();
    assert_eq!(
        served,
        env.secret_value("pp-update-server-cert", "tls.crt")
            .await
            .unwrap()
    );
    let key_mode = std::fs::metadata(key_dir.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(key_dir.join("ca.crt")).unwrap(),
        "",
        "no CA: the CA file is empty (and pgpool.conf does not name it)"
    );
    // the exporter mounts its own certificate
    let exporter_mounts = mount_volumes(&env, &pod, "exporter", root.path())
        .await
        .expect("the exporter's volumes mount");
    let dir = &exporter_mounts["/etc/pgpool-tls-client"];
    assert_eq!(
        std::fs::read_to_string(dir.join("tls.crt")).unwrap(),
        env.secret_value("pp-update-metrics-exporter-cert", "tls.crt")
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_authentication_with_an_issuer_without_ca_crt_names_the_fix() {
    let env = Env::start().await;
    install_acme_issuer(&env).await;
    env.create(&tls_pgpool(acme_tls(), "require", "cert")).await;
    wait_until("three Certificates", || async {
        certificates(&env)
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
            == 3
    })
    .await;
    let issuer = ca::new_ca("acme-ca", Utc::now(), ca::CA_LIFETIME).unwrap();
    issue_without_ca(&env, &issuer).await;
    wait_until("Ready False: CACertificateMissing", || async {
        condition(&env, types::READY)
            .await
            .is_some_and(|(s, reason, message)| {
                s == "False"
                    && reason == "CACertificateMissing"
                    && message.contains("Secret demo/pp-update-server-cert")
                    && message.contains("no key ca.crt")
                    && message.contains("cert-manager CA issuer")
            })
    })
    .await;
    wait_until("a CACertificateMissing Warning", || async {
        events(&env)
            .await
            .iter()
            .any(|(reason, type_, _)| reason == "CACertificateMissing" && type_ == "Warning")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_ca_issues_the_metrics_exporter_certificate() {
    let env = Env::start().await;
    let tls = json!({"certificates": [
        {"alias": "metrics-exporter", "subject": {"organizations": ["monitoring"]}}
    ]});
    env.create(&tls_pgpool(tls, "require", "cert")).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;

    let ca_pem = env.secret_value("pp-update-ca", "tls.crt").await.unwrap();
    let pem = env
        .secret_value("pp-update-metrics-exporter-cert", "tls.crt")
        .await
        .expect("the exporter's certificate");
    let info = ca::inspect(&pem).unwrap();
    // CN: the user the exporter logs in as (monitor-username of the config Secret)
    let user = env
        .secret_value("pp-update-config", "monitor-username")
        .await
        .unwrap();
    assert!(info.subject.contains(&format!("CN={user}")), "{info:?}");
    assert!(info.subject.contains("O=monitoring"), "{info:?}");
    assert_eq!(info.issuer, ca::inspect(&ca_pem).unwrap().subject);
    assert_ne!(
        pem,
        env.secret_value("pp-update-client-cert", "tls.crt")
            .await
            .unwrap()
    );

    let pod = pod_of_template(&env).await;
    let root = tempfile::tempdir().unwrap();
    let mounts = run_init(&env, &pod, root.path()).await;
    assert_eq!(
        std::fs::read_to_string(mounts["/var/run/pgpool-key"].join("ca.crt")).unwrap(),
        ca_pem,
        "the built-in CA's ca.crt is the CA file"
    );
    let exporter_mounts = mount_volumes(&env, &pod, "exporter", root.path())
        .await
        .expect("the exporter's volumes mount");
    let dir = &exporter_mounts["/etc/pgpool-tls-client"];
    assert_eq!(std::fs::read_to_string(dir.join("tls.crt")).unwrap(), pem);
}
