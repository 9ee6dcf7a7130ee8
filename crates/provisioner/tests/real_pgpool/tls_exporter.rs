//! The metrics exporter's own certificate on the real binaries (4.3, 4.6, 4.7): the built-in
//! CA's `metrics-exporter` certificate (`tls::plan`, CN the user the exporter logs in as) logs
//! in through a pgpool with `clientAuthMode: cert`, as the exporter does (`sslmode=require`,
//! no root certificate, `sslcert`/`sslkey` from its mounted Secret).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use pgpool_api::{AppBinding, Pgpool};
use pgpool_config::ClientAuthMode;
use pgpool_provisioner::pgpool::tls::ca::{self, CertPair};
use pgpool_provisioner::pgpool::tls::observe::TlsObserved;
use pgpool_provisioner::pgpool::tls::plan;

use crate::binaries::{LINES, PgpoolBinary, find_binaries};
use crate::servers::{MD5_USER, PgTools, Postgres, RunAs, in_ci, say, start_postgres, text};
use crate::tls::{Certs, check, enable_postgres_ssl, make_certs, psql, start_tls_pgpool};

/// The `metrics-exporter` certificate the built-in CA issues for a Pgpool whose CA is
/// `certs.ca` (the CA Secret exists, so the plan keeps it and signs with it).
fn exporter_certificate(certs: &Certs) -> CertPair {
    let pgpool: Pgpool = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubedb.com/v1alpha2", "kind": "Pgpool",
        "metadata": {"name": "pp", "namespace": "demo"},
        "spec": {"version": "4.6.1", "postgresRef": {"name": "pg"}, "sslMode": "require",
            "clientAuthMode": "cert", "tls": {}}
    }))
    .expect("Pgpool");
    let appbinding: AppBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
        "metadata": {"name": "pg", "namespace": "demo"},
        "spec": {"clientConfig": {"service": {"name": "pg", "query": "sslmode=require"}}}
    }))
    .expect("AppBinding");
    let ca_secret = Secret {
        data: Some(
            [
                (plan::KEY_TLS_CRT, &certs.ca.cert_pem),
                (plan::KEY_TLS_KEY, &certs.ca.key_pem.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
            .collect(),
        ),
        ..Secret::default()
    };
    let observed = TlsObserved {
        secrets: [(plan::ca_secret_name("pp"), ca_secret)].into(),
        ..TlsObserved::default()
    };
    let plan = plan::plan(&pgpool, &appbinding, &observed, MD5_USER, Utc::now())
        .expect("TLS plan")
        .expect("TLS wanted");
    let secret = plan
        .secrets
        .iter()
        .find(|s| s.name == plan.exporter_secret)
        .expect("the metrics exporter's Secret");
    assert_eq!(secret.name, "pp-metrics-exporter-cert");
    assert_eq!(secret.data[plan::KEY_CA_CRT], certs.ca.cert_pem, "same CA");
    CertPair {
        cert_pem: secret.data[plan::KEY_TLS_CRT].clone(),
        key_pem: ca::KeyPem(secret.data[plan::KEY_TLS_KEY].clone()),
    }
}

fn case(
    binary: &PgpoolBinary,
    env: (&PgTools, &Postgres, RunAs),
    dir: &Path,
    certs: &Certs,
    exporter: &CertPair,
) -> Result<(), String> {
    let tools = env.0;
    let mut p = start_tls_pgpool(binary, env, dir, ClientAuthMode::Cert, certs, 0o600, true)?;
    let cert = dir.join("exporter.crt");
    let key = dir.join("exporter.key");
    fs::write(&cert, &exporter.cert_pem).expect("write");
    fs::write(&key, &exporter.key_pem.0).expect("write");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
    // what the exporter's DATA_SOURCE_URI says: sslmode=require with its certificate
    let conninfo = format!(
        "host=127.0.0.1 port={} user={MD5_USER} dbname=postgres sslmode=require sslcert={} sslkey={}",
        p.port,
        cert.display(),
        key.display()
    );
    let out = psql(tools, &conninfo, None, "SELECT 1");
    let result = check(
        out.status.success() && text(&out.stdout).trim() == "1",
        "the metrics exporter's certificate logs in with clientAuthMode cert",
        &out,
        &p.server,
    );
    p.server.stop();
    result
}

#[test]
fn real_pgpool_takes_the_metrics_exporter_certificate() {
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
        say("real pgpool exporter certificate: skipping: install postgresql");
        return;
    };
    let run_as = RunAs::detect().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::Builder::new()
        .prefix("real-pgpool-tls-exporter-")
        .tempdir()
        .expect("tmp");
    let dir = tmp.path();
    run_as.own(dir);
    let certs = make_certs();
    let exporter = exporter_certificate(&certs);
    let pg = start_postgres(&tools, run_as, dir);
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
        let case_dir = dir.join(format!("tls-{}-exporter", binary.line));
        let started = Instant::now();
        let result = case(&binary, env, &case_dir, &certs, &exporter);
        let label = format!("real pgpool-II {} TLS exporter certificate", binary.package);
        let took = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => say(&format!("{label}: ok ({took:.1}s)")),
            Err(e) => {
                say(&format!("{label}: FAILED ({took:.1}s)"));
                failures.push(format!("{label}:\n{e}"));
            }
        }
    }
    drop(pg);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
