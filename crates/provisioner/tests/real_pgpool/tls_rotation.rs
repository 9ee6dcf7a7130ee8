//! ReconfigureTLS `rotateCertificates` on the real binaries: the ops-manager removes the
//! certificate Secrets (keeping the CA), the provisioner's built-in CA (`tls::plan`, the same
//! code as in the controller) issues a new server certificate of the same CA, and a pgpool
//! started with it (a restarted pod) serves the new certificate: `openssl s_client` sees a
//! different certificate, and `psql sslmode=verify-full` against the unchanged CA logs in.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pgpool_api::{AppBinding, Pgpool};
use pgpool_config::ClientAuthMode;
use pgpool_provisioner::pgpool::tls::ca::{CertPair, KeyPem};
use pgpool_provisioner::pgpool::tls::observe::TlsObserved;
use pgpool_provisioner::pgpool::tls::plan;

use crate::binaries::{LINES, PgpoolBinary, find_binaries};
use crate::servers::{MD5_PASSWORD, MD5_USER, PgTools, Postgres, RunAs, in_ci, say, text};
use crate::tls::{
    Certs, HOST, check, conninfo, enable_postgres_ssl, make_certs, psql, start_tls_pgpool,
};

fn secret(name: &str, pair: &CertPair) -> Secret {
    let data = BTreeMap::from([
        (
            plan::KEY_TLS_CRT.to_string(),
            ByteString(pair.cert_pem.clone().into_bytes()),
        ),
        (
            plan::KEY_TLS_KEY.to_string(),
            ByteString(pair.key_pem.0.clone().into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    }
}

/// The provisioner's plan for the Pgpool of `tls::provisioner_certs` when only `existing`
/// Secrets are left: the server certificate it would write.
fn planned_server(existing: &[(&str, &CertPair)]) -> CertPair {
    let pgpool: Pgpool = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubedb.com/v1alpha2", "kind": "Pgpool",
        "metadata": {"name": "pp", "namespace": "demo"},
        "spec": {"version": "4.6.1", "postgresRef": {"name": "pg"}, "tls": {}, "sslMode": "verify-full"}
    }))
    .expect("Pgpool");
    let appbinding: AppBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
        "metadata": {"name": "pg", "namespace": "demo"},
        "spec": {"clientConfig": {"service": {"name": "pg", "query": "sslmode=verify-full"}}}
    }))
    .expect("AppBinding");
    let observed = TlsObserved {
        secrets: existing
            .iter()
            .map(|(name, pair)| (name.to_string(), secret(name, pair)))
            .collect(),
        ..TlsObserved::default()
    };
    let plan = plan::plan(&pgpool, &appbinding, &observed, MD5_USER, Utc::now())
        .expect("TLS plan")
        .expect("TLS wanted");
    let s = plan
        .secrets
        .iter()
        .find(|s| s.name == "pp-server-cert")
        .expect("server Secret");
    assert_eq!(
        s.data[plan::KEY_CA_CRT],
        existing[0].1.cert_pem,
        "the server certificate is of the kept CA"
    );
    CertPair {
        cert_pem: s.data[plan::KEY_TLS_CRT].clone(),
        key_pem: KeyPem(s.data[plan::KEY_TLS_KEY].clone()),
    }
}

/// The base64 body of the first certificate in `pem`.
fn body(pem: &str) -> String {
    pem.lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect()
}

/// The certificate pgpool on `port` presents (`openssl s_client -starttls postgres`).
fn served(port: u16) -> Result<String, String> {
    let out = Command::new("openssl")
        .args(["s_client", "-starttls", "postgres", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", HOST])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    let cert = body(&text(&out.stdout));
    if cert.is_empty() {
        return Err(format!(
            "no certificate from openssl: {}",
            text(&out.stderr)
        ));
    }
    Ok(cert)
}

/// Serve `certs`, check what is served and that verify-full logs in.
fn serve(
    binary: &PgpoolBinary,
    env: (&PgTools, &Postgres, RunAs),
    dir: &Path,
    certs: &Certs,
) -> Result<String, String> {
    let mut p = start_tls_pgpool(binary, env, dir, ClientAuthMode::Md5, certs, 0o600, true)?;
    let cert = served(p.port)?;
    if cert != body(&certs.server.cert_pem) {
        return Err(format!(
            "pgpool in {} serves another certificate",
            dir.display()
        ));
    }
    let root = dir.join("root.crt");
    std::fs::write(&root, &certs.ca.cert_pem).expect("write root");
    let out = psql(
        env.0,
        &conninfo(p.port, "verify-full", &root),
        Some(MD5_PASSWORD),
        "SELECT 1",
    );
    check(out.status.success(), "verify-full login", &out, &p.server)?;
    p.server.stop();
    Ok(cert)
}

fn rotation_case(
    binary: &PgpoolBinary,
    env: (&PgTools, &Postgres, RunAs),
    dir: &Path,
    certs: &Certs,
) -> Result<(), String> {
    std::fs::create_dir(dir).expect("case dir");
    env.2.own(dir);
    let before = serve(binary, env, &dir.join("before"), certs)?;
    // all Secrets kept: the provisioner keeps the certificate (no rotation without a request)
    let kept = planned_server(&[("pp-ca", &certs.ca), ("pp-server-cert", &certs.server)]);
    // the request removed the certificate Secrets, the CA stays: a new server certificate
    let mut rotated = certs.clone();
    rotated.server = planned_server(&[("pp-ca", &certs.ca)]);
    if body(&kept.cert_pem) == body(&rotated.server.cert_pem) {
        return Err("the rotated certificate equals the kept one".into());
    }
    let after = serve(binary, env, &dir.join("after"), &rotated)?;
    if before == after {
        return Err("the served certificate did not change".into());
    }
    Ok(())
}

#[test]
fn real_pgpool_serves_a_new_certificate_after_a_rotation() {
    let binaries = find_binaries();
    let tools = PgTools::find();
    let missing: Vec<String> = binaries
        .iter()
        .zip(LINES)
        .filter_map(|(b, line)| b.as_ref().err().map(|e| format!("pgpool-II {line}.x: {e}")))
        .collect();
    if in_ci() && (tools.is_none() || !missing.is_empty()) {
        panic!(
            "CI is set but binaries are missing:\n{}",
            missing.join("\n")
        );
    }
    let Some(tools) = tools else {
        say(
            "real pgpool TLS rotation: skipping: install postgresql (scripts/install-pgpool-test-deps.sh)",
        );
        return;
    };
    if !missing.is_empty() {
        say(&format!(
            "real pgpool TLS rotation: skipping {}",
            missing.join("; ")
        ));
    }
    let run_as = RunAs::detect().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::Builder::new()
        .prefix("real-pgpool-tls-rotation-")
        .tempdir()
        .expect("tmp");
    let dir = tmp.path();
    run_as.own(dir);
    let certs = make_certs();
    let pg = crate::servers::start_postgres(&tools, run_as, dir);
    enable_postgres_ssl(&tools, &pg, dir, run_as, &certs);
    let env = (&tools, &pg, run_as);
    let mut failures = Vec::new();
    for binary in binaries.into_iter().flatten() {
        let binary = if run_as.is_other_user() {
            binary
                .runnable_by_others(dir)
                .unwrap_or_else(|e| panic!("{e}"))
        } else {
            binary
        };
        let started = Instant::now();
        let label = format!("real pgpool-II {} TLS rotation", binary.package);
        let case_dir = dir.join(format!("rotation-{}", binary.line));
        match rotation_case(&binary, env, &case_dir, &certs) {
            Ok(()) => say(&format!(
                "{label}: ok ({:.1}s)",
                started.elapsed().as_secs_f64()
            )),
            Err(e) => failures.push(format!("{label}:\n{e}")),
        }
    }
    drop(pg);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
