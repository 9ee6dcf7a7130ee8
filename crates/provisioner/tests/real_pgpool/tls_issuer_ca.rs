//! TLS on the real binaries (4.3, 4.6, 4.7) with a certificate from an issuer that writes no
//! `ca.crt` (ACME and the like): what `tls::plan` decides for such a Secret is what pgpool
//! gets, with the files the init container writes.
//!
//! - without a backend `caBundle` the plan names no CA file: pgpool starts without
//!   `ssl_ca_cert`, serves its certificate to a `sslmode=verify-full` client that trusts the
//!   issuer, refuses `sslmode=disable`, and still talks TLS to the backend (unverified);
//! - with a backend `caBundle` the CA file holds that bundle alone: pgpool serves clients
//!   the same way and reaches the TLS backend, whose certificate it checks against it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use pgpool_api::{AppBinding, Pgpool};
use pgpool_config::{
    Backend, ClientAuthMode, ClientTls, Paths, RenderInput, TlsFiles, TlsInput, pgpool_args, render,
};
use pgpool_provisioner::pgpool::tls::ca::{self, CertPair, LeafRequest, Usage};
use pgpool_provisioner::pgpool::tls::observe::{IssuerState, TlsObserved};
use pgpool_provisioner::pgpool::tls::plan;

use crate::binaries::{LINES, PgpoolBinary, find_binaries};
use crate::servers::{
    MD5_PASSWORD, MD5_USER, PgTools, Postgres, RunAs, START_TIMEOUT, Server, client_command,
    free_ports, in_ci, say, start_postgres, text, wait_for,
};
use crate::tls::{Certs, HOST, check, conninfo, enable_postgres_ssl, make_certs, psql};
use crate::{PCP_PASSWORD, PCP_USER, POOL_KEY, install_files};

/// An ACME-like issuer's server certificate (no `ca.crt` in its Secret) and its CA, which
/// clients trust from elsewhere (a public root, here a file).
struct Acme {
    root: CertPair,
    server: CertPair,
}

fn acme() -> Acme {
    let root = ca::new_ca("acme-root", Utc::now(), ca::CA_LIFETIME).expect("root");
    let request = LeafRequest {
        common_name: HOST.into(),
        organizations: Vec::new(),
        dns_names: vec![HOST.into()],
        ip_addresses: vec!["127.0.0.1".parse().expect("ip")],
        usage: Usage::Server,
        lifetime: Duration::from_secs(3600),
    };
    let server = ca::sign(&root, &request, Utc::now()).expect("sign");
    Acme { root, server }
}

/// What `tls::plan` decides for a Pgpool whose issuer wrote `acme`'s certificate without
/// `ca.crt`, with a TLS backend and, when given, the backend's `caBundle`.
fn planned(acme: &Acme, ca_bundle: Option<&str>) -> plan::TlsPlan {
    let pgpool: Pgpool = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubedb.com/v1alpha2", "kind": "Pgpool",
        "metadata": {"name": "pp", "namespace": "demo"},
        "spec": {"version": "4.6.1", "postgresRef": {"name": "pg"}, "sslMode": "verify-full",
            "tls": {"issuerRef": {"apiGroup": "cert-manager.io", "kind": "ClusterIssuer", "name": "letsencrypt"}}}
    }))
    .expect("Pgpool");
    let mut client_config =
        serde_json::json!({"service": {"name": "pg", "query": "sslmode=require"}});
    if let Some(pem) = ca_bundle {
        client_config["caBundle"] = base64::engine::general_purpose::STANDARD.encode(pem).into();
    }
    let appbinding: AppBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
        "metadata": {"name": "pg", "namespace": "demo"},
        "spec": {"clientConfig": client_config}
    }))
    .expect("AppBinding");
    let data = [
        (plan::KEY_TLS_CRT, &acme.server.cert_pem),
        (plan::KEY_TLS_KEY, &acme.server.key_pem.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
    .collect();
    let secret = Secret {
        data: Some(data),
        ..Secret::default()
    };
    let observed = TlsObserved {
        secrets: plan::secret_names(&pgpool)
            .into_iter()
            .map(|n| (n, secret.clone()))
            .collect(),
        issuer: IssuerState::Found,
        ..TlsObserved::default()
    };
    let plan = plan::plan(&pgpool, &appbinding, &observed, MD5_USER, Utc::now())
        .expect("TLS plan")
        .expect("TLS wanted");
    assert!(plan.pending.is_empty(), "issued: {:?}", plan.pending);
    assert_eq!(plan.render.clients, ClientTls::Required);
    assert!(plan.render.backend);
    plan
}

fn write_owned(path: &Path, content: &str, run_as: RunAs) {
    fs::write(path, content).expect("write");
    run_as.own(path);
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Starts pgpool with the plan's TLS settings, the files in `dir/key/` as the init container
/// writes them (the CA file: the backend's CA alone, as there is no `ca.crt`), then checks
/// the clients and the backend session.
fn case(
    binary: &PgpoolBinary,
    env: (&PgTools, &Postgres, RunAs),
    dir: &Path,
    acme: &Acme,
    backend_ca: Option<&str>,
) -> Result<(), String> {
    let (tools, pg, run_as) = env;
    let tls = planned(acme, backend_ca);
    let planned_files = tls.render.files.clone().expect("server certificate");
    if planned_files.ca.is_some() != backend_ca.is_some() {
        return Err(format!(
            "a CA file exactly when there is a caBundle: {planned_files:?}"
        ));
    }
    fs::create_dir(dir).expect("case dir");
    run_as.own(dir);
    let ports = free_ports(2);
    let paths = Paths {
        config_dir: dir.join("config"),
        key_file: dir.join("key/.pgpoolkey"),
        run_dir: dir.join("run"),
    };
    let key_dir = dir.join("key");
    let files = TlsFiles {
        cert: key_dir.join("tls.crt"),
        key: key_dir.join("tls.key"),
        ca: planned_files.ca.map(|_| key_dir.join("ca.crt")),
    };
    let input = RenderInput {
        version: binary.release.clone(),
        backends: vec![Backend::new("127.0.0.1", pg.port)],
        auth_mode: ClientAuthMode::Md5,
        backend_user: MD5_USER.into(),
        backend_password: MD5_PASSWORD.into(),
        pcp_user: PCP_USER.into(),
        pcp_password: PCP_PASSWORD.into(),
        pool_key: POOL_KEY.into(),
        num_init_children: Some(4),
        paths: paths.clone(),
        port: ports[0],
        pcp_port: ports[1],
        tls: TlsInput {
            files: Some(files.clone()),
            ..tls.render.clone()
        },
        ..RenderInput::default()
    };
    let rendered = render(&input).map_err(|e| format!("render: {e}"))?;
    if rendered.pgpool_conf.contains("ssl_ca_cert") != backend_ca.is_some() {
        return Err(format!(
            "ssl_ca_cert exactly with a caBundle:\n{}",
            rendered.pgpool_conf
        ));
    }
    install_files(&rendered, &paths, run_as);
    fs::set_permissions(&key_dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    write_owned(&files.cert, &acme.server.cert_pem, run_as);
    write_owned(&files.key, &acme.server.key_pem.0, run_as);
    if let (Some(ca), Some(pem)) = (&files.ca, backend_ca) {
        write_owned(ca, pem, run_as);
    }

    let mut cmd = run_as.command(&binary.pgpool);
    cmd.args(pgpool_args(&paths));
    let mut server = Server::start("pgpool", cmd, dir.join("pgpool.log"));
    let pg_isready = tools.pg("pg_isready");
    let port = ports[0].to_string();
    wait_for(
        "pgpool to accept connections",
        &mut server,
        START_TIMEOUT,
        || {
            client_command(&pg_isready)
                .arg("-q")
                .arg("-h")
                .arg(&paths.run_dir)
                .args(["-p", &port, "-U", MD5_USER, "-d", "postgres"])
                .status()
                .is_ok_and(|s| s.success())
        },
    )?;
    let root = dir.join("root.crt");
    fs::write(&root, &acme.root.cert_pem).expect("write root");
    let query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let out = psql(
        tools,
        &conninfo(ports[0], "verify-full", &root),
        Some(MD5_PASSWORD),
        query,
    );
    let result = check(
        out.status.success() && text(&out.stdout).trim() == "t",
        "verify-full against the issuer's root, with a TLS backend session",
        &out,
        &server,
    )
    .and_then(|()| {
        let out = psql(
            tools,
            &conninfo(ports[0], "disable", &root),
            Some(MD5_PASSWORD),
            "SELECT 1",
        );
        check(
            !out.status.success(),
            "sslmode=disable must be refused",
            &out,
            &server,
        )
    });
    server.stop();
    result
}

#[test]
fn real_pgpool_serves_tls_from_an_issuer_without_ca_crt() {
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
        say("real pgpool TLS without ca.crt: skipping: install postgresql");
        return;
    };
    let run_as = RunAs::detect().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::Builder::new()
        .prefix("real-pgpool-tls-no-ca-")
        .tempdir()
        .expect("tmp");
    let dir = tmp.path();
    run_as.own(dir);
    let certs: Certs = make_certs();
    let pg = start_postgres(&tools, run_as, dir);
    enable_postgres_ssl(&tools, &pg, dir, run_as, &certs);
    let acme = acme();
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
        for (name, bundle) in [
            ("no-ca", None),
            ("backend-ca-only", Some(certs.backend_ca.cert_pem.as_str())),
        ] {
            let case_dir = dir.join(format!("tls-{}-{name}", binary.line));
            let started = Instant::now();
            let result = case(&binary, env, &case_dir, &acme, bundle);
            let label = format!(
                "real pgpool-II {} TLS without ca.crt, {name}",
                binary.package
            );
            let took = started.elapsed().as_secs_f64();
            match result {
                Ok(()) => say(&format!("{label}: ok ({took:.1}s)")),
                Err(e) => {
                    say(&format!("{label}: FAILED ({took:.1}s)"));
                    failures.push(format!("{label}:\n{e}"));
                }
            }
        }
    }
    drop(pg);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
