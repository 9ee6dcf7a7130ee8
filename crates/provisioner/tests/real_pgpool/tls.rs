//! TLS on the real binaries (4.3, 4.6, 4.7) with the certificates the provisioner's built-in
//! CA issues for a Pgpool (`pgpool::tls::plan`) and the configuration `pgpool-config` renders
//! for a TLS Pgpool:
//!
//! - `sslMode: require` (+ md5): `psql sslmode=verify-full` against the CA logs in through
//!   pgpool with the host name of the certificate; `sslmode=disable` is refused; pgpool talks
//!   TLS to a PostgreSQL started with `ssl = on` (`pg_stat_ssl` of the backend session);
//! - `clientAuthMode: cert`: a client certificate of the CA whose CN is the user logs in; no
//!   certificate, or one of another CA, is refused;
//! - `ssl_ca_cert` verifies the backend's certificate too: without the backend's CA in the
//!   bundle pgpool cannot reach a TLS backend;
//! - pgpool does not check the private key's file mode (a 0644 key serves TLS), unlike
//!   PostgreSQL;
//! - new certificate files are not taken on reload (SIGHUP): pgpool reads them at start only,
//!   so a rotation restarts pods.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::Utc;
use pgpool_api::{AppBinding, Pgpool};
use pgpool_config::{
    Backend, ClientAuthMode, ClientTls, Paths, RenderInput, TlsFiles, TlsInput, pgpool_args, render,
};
use pgpool_provisioner::pgpool::tls::ca::{self, CertPair, LeafRequest, Usage};
use pgpool_provisioner::pgpool::tls::observe::TlsObserved;
use pgpool_provisioner::pgpool::tls::plan;

use crate::binaries::{LINES, PgpoolBinary, find_binaries};
use crate::servers::{
    MD5_PASSWORD, MD5_USER, PgTools, Postgres, RunAs, START_TIMEOUT, Server, client_command,
    free_ports, in_ci, run, say, start_postgres, tail, text, wait_for,
};
use crate::{PCP_PASSWORD, PCP_USER, POOL_KEY, install_files};

/// The host name clients use; the server certificate names it.
pub(crate) const HOST: &str = "localhost";

/// The certificates of one run.
#[derive(Clone)]
pub(crate) struct Certs {
    pub(crate) ca: CertPair,
    pub(crate) server: CertPair,
    /// CN = [`MD5_USER`], signed by `ca`.
    client: CertPair,
    /// CN = [`MD5_USER`], signed by another CA.
    foreign_client: CertPair,
    /// A server certificate of another CA (the rotation check).
    other_ca: CertPair,
    /// The CA of PostgreSQL's certificate (the AppBinding's `caBundle`).
    pub(crate) backend_ca: CertPair,
    other_server: CertPair,
}

fn leaf(ca: &CertPair, cn: &str, usage: Usage) -> CertPair {
    let request = LeafRequest {
        common_name: cn.into(),
        organizations: Vec::new(),
        dns_names: vec![HOST.into()],
        ip_addresses: vec!["127.0.0.1".parse().expect("ip")],
        usage,
        lifetime: Duration::from_secs(3600),
    };
    ca::sign(ca, &request, Utc::now()).expect("sign")
}

/// The certificates the provisioner itself issues for a Pgpool with `spec.tls: {}` and
/// `sslMode: verify-full` (`tls::plan`, the same code as in the controller): its CA Secret,
/// server certificate (the Services' names, `localhost`, `127.0.0.1`) and client certificate
/// (CN = the AppBinding's user, here [`MD5_USER`]); the plan asks for client TLS `Required`.
pub(crate) fn provisioner_certs() -> (CertPair, CertPair, CertPair) {
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
    let plan = plan::plan(
        &pgpool,
        &appbinding,
        &TlsObserved::default(),
        MD5_USER,
        Utc::now(),
    )
    .expect("TLS plan")
    .expect("TLS wanted");
    assert_eq!(plan.render.clients, ClientTls::Required);
    assert!(plan.render.backend);
    let pair = |name: &str| {
        let s = plan.secrets.iter().find(|s| s.name == name).expect(name);
        CertPair {
            cert_pem: s.data[plan::KEY_TLS_CRT].clone(),
            key_pem: ca::KeyPem(s.data[plan::KEY_TLS_KEY].clone()),
        }
    };
    (
        pair("pp-ca"),
        pair("pp-server-cert"),
        pair("pp-client-cert"),
    )
}

pub(crate) fn make_certs() -> Certs {
    let now = Utc::now();
    let (ca, server, client) = provisioner_certs();
    let other_ca = ca::new_ca("pgpool-other-ca", now, ca::CA_LIFETIME).expect("other ca");
    let backend_ca = ca::new_ca("postgres-ca", now, ca::CA_LIFETIME).expect("backend ca");
    Certs {
        server,
        client,
        foreign_client: leaf(&other_ca, MD5_USER, Usage::Client),
        other_server: leaf(&other_ca, "pgpool", Usage::Server),
        ca,
        other_ca,
        backend_ca,
    }
}

/// Writes a file for the server user with `mode`.
fn write_owned(path: &Path, content: &str, mode: u32, run_as: RunAs) {
    fs::write(path, content).expect("write");
    run_as.own(path);
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Writes a client's certificate and key (libpq wants the key 0600 and owned by the caller).
fn client_files(dir: &Path, name: &str, pair: &CertPair) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    fs::write(&cert, &pair.cert_pem).expect("write");
    fs::write(&key, &pair.key_pem.0).expect("write");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
    (cert, key)
}

/// Turns TLS on in the running PostgreSQL (reloadable since 10) with a certificate of its
/// own CA (`backend_ca`).
pub(crate) fn enable_postgres_ssl(
    tools: &PgTools,
    pg: &Postgres,
    dir: &Path,
    run_as: RunAs,
    certs: &Certs,
) {
    let data = dir.join("pgdata");
    let server = leaf(&certs.backend_ca, "postgres", Usage::Server);
    write_owned(&data.join("server.crt"), &server.cert_pem, 0o600, run_as);
    write_owned(&data.join("server.key"), &server.key_pem.0, 0o600, run_as);
    let admin = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
        pg.port
    );
    for statement in ["ALTER SYSTEM SET ssl = on", "SELECT pg_reload_conf()"] {
        let out = psql(tools, &admin, None, statement);
        assert!(out.status.success(), "{statement}: {}", text(&out.stderr));
    }
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require",
        pg.port
    );
    let deadline = Instant::now() + START_TIMEOUT;
    while !psql(tools, &conninfo, None, "SELECT 1").status.success() {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not take ssl = on; log:\n{}",
            tail(&pg.server.log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `psql` with a conninfo string; `PGPASSWORD` when given.
pub(crate) fn psql(tools: &PgTools, conninfo: &str, password: Option<&str>, query: &str) -> Output {
    let mut cmd = client_command(&tools.pg("psql"));
    cmd.args([
        "-X",
        "-w",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        query,
        conninfo,
    ]);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    run(&mut cmd)
}

/// One pgpool with TLS files in `dir/key/` (mode `key_mode` for the key); its CA file is the
/// Pgpool's CA followed, when `backend_ca`, by the backend's, as the init container writes it.
pub(crate) struct TlsPgpool {
    pub(crate) server: Server,
    pub(crate) port: u16,
    tls_dir: PathBuf,
}

pub(crate) fn start_tls_pgpool(
    binary: &PgpoolBinary,
    env: (&PgTools, &Postgres, RunAs),
    dir: &Path,
    mode: ClientAuthMode,
    certs: &Certs,
    key_mode: u32,
    backend_ca: bool,
) -> Result<TlsPgpool, String> {
    let (tools, pg, run_as) = env;
    fs::create_dir(dir).expect("case dir");
    run_as.own(dir);
    let ports = free_ports(2);
    let paths = Paths {
        config_dir: dir.join("config"),
        key_file: dir.join("key/.pgpoolkey"),
        run_dir: dir.join("run"),
    };
    let tls_dir = dir.join("key");
    let files = TlsFiles {
        cert: tls_dir.join("tls.crt"),
        key: tls_dir.join("tls.key"),
        ca: Some(tls_dir.join("ca.crt")),
    };
    let input = RenderInput {
        version: binary.release.clone(),
        backends: vec![Backend::new("127.0.0.1", pg.port)],
        auth_mode: mode,
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
            clients: ClientTls::Required,
            files: Some(files.clone()),
            backend: true,
        },
        ..RenderInput::default()
    };
    let rendered = render(&input).map_err(|e| format!("render: {e}"))?;
    install_files(&rendered, &paths, run_as);
    fs::set_permissions(&tls_dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    write_owned(&files.cert, &certs.server.cert_pem, 0o600, run_as);
    write_owned(&files.key, &certs.server.key_pem.0, key_mode, run_as);
    let mut bundle = certs.ca.cert_pem.clone();
    if backend_ca {
        bundle.push_str(&certs.backend_ca.cert_pem);
    }
    write_owned(files.ca.as_ref().expect("ca"), &bundle, 0o600, run_as);

    let mut cmd = run_as.command(&binary.pgpool);
    cmd.args(pgpool_args(&paths));
    let mut server = Server::start("pgpool", cmd, dir.join("pgpool.log"));
    let pg_isready = tools.pg("pg_isready");
    let socket_dir = paths.run_dir.clone();
    wait_for(
        "pgpool to accept connections",
        &mut server,
        START_TIMEOUT,
        || {
            client_command(&pg_isready)
                .arg("-q")
                .arg("-h")
                .arg(&socket_dir)
                .args([
                    "-p",
                    &ports[0].to_string(),
                    "-U",
                    MD5_USER,
                    "-d",
                    "postgres",
                ])
                .status()
                .is_ok_and(|s| s.success())
        },
    )?;
    Ok(TlsPgpool {
        server,
        port: ports[0],
        tls_dir,
    })
}

pub(crate) fn conninfo(port: u16, sslmode: &str, root: &Path) -> String {
    format!(
        "host={HOST} port={port} user={MD5_USER} dbname=postgres sslmode={sslmode} sslrootcert={}",
        root.display()
    )
}

pub(crate) fn check(ok: bool, what: &str, out: &Output, pgpool: &Server) -> Result<(), String> {
    if ok {
        return Ok(());
    }
    Err(format!(
        "{what}: stdout {:?} stderr {:?}\npgpool log:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        tail(&pgpool.log)
    ))
}

/// `sslMode: require` with md5: verify-full logs in, disable is refused, the backend session
/// is TLS, and new files are not taken on SIGHUP.
fn require_case(
    binary: &PgpoolBinary,
    env: (&PgTools, &Postgres, RunAs),
    dir: &Path,
    certs: &Certs,
) -> Result<(), String> {
    let tools = env.0;
    let mut p = start_tls_pgpool(binary, env, dir, ClientAuthMode::Md5, certs, 0o600, true)?;
    let root = dir.join("root.crt");
    fs::write(&root, &certs.ca.cert_pem).expect("write root");
    let query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let out = psql(
        tools,
        &conninfo(p.port, "verify-full", &root),
        Some(MD5_PASSWORD),
        query,
    );
    check(
        out.status.success() && text(&out.stdout).trim() == "t",
        "verify-full through pgpool with a TLS backend session",
        &out,
        &p.server,
    )?;
    let out = psql(
        tools,
        &conninfo(p.port, "disable", &root),
        Some(MD5_PASSWORD),
        "SELECT 1",
    );
    check(
        !out.status.success(),
        "sslmode=disable must be refused with sslMode require",
        &out,
        &p.server,
    )?;
    let other_root = dir.join("other-root.crt");
    fs::write(&other_root, &certs.other_ca.cert_pem).expect("write root");
    let out = psql(
        tools,
        &conninfo(p.port, "verify-full", &other_root),
        Some(MD5_PASSWORD),
        "SELECT 1",
    );
    check(
        !out.status.success(),
        "verify-full against another CA must fail",
        &out,
        &p.server,
    )?;

    // rotation: other files in place, then SIGHUP (what pcp_reload_config sends)
    let run_as = env.2;
    write_owned(
        &p.tls_dir.join("tls.crt"),
        &certs.other_server.cert_pem,
        0o600,
        run_as,
    );
    write_owned(
        &p.tls_dir.join("tls.key"),
        &certs.other_server.key_pem.0,
        0o600,
        run_as,
    );
    let reload = run(Command::new("kill").args(["-s", "HUP", &p.server.child.id().to_string()]));
    check(reload.status.success(), "SIGHUP pgpool", &reload, &p.server)?;
    // the reload is asynchronous: give pgpool the chance to take the new files (it restarts
    // its children on reload), then the old certificate must still be served
    let log = p.server.log.clone();
    wait_for(
        "pgpool to log the reload",
        &mut p.server,
        START_TIMEOUT,
        || fs::read_to_string(&log).is_ok_and(|l| l.contains("reload config files")),
    )?;
    let out = psql(
        tools,
        &conninfo(p.port, "verify-full", &root),
        Some(MD5_PASSWORD),
        "SELECT 1",
    );
    let still_old = out.status.success();
    let out_new = psql(
        tools,
        &conninfo(p.port, "verify-full", &other_root),
        Some(MD5_PASSWORD),
        "SELECT 1",
    );
    say(&format!(
        "real pgpool-II {} TLS reload: after SIGHUP the old certificate is {}, the new one {}",
        binary.package,
        if still_old { "served" } else { "not served" },
        if out_new.status.success() {
            "served"
        } else {
            "not served"
        },
    ));
    check(
        still_old && !out_new.status.success(),
        "after SIGHUP pgpool still serves the certificate it started with",
        &out_new,
        &p.server,
    )?;
    p.server.stop();
    Ok(())
}

/// `clientAuthMode: cert`: the CA's client certificate for the user logs in; none, or one of
/// another CA, is refused.
fn cert_case(
    binary: &PgpoolBinary,
    env: (&PgTools, &Postgres, RunAs),
    dir: &Path,
    certs: &Certs,
) -> Result<(), String> {
    let tools = env.0;
    let mut p = start_tls_pgpool(binary, env, dir, ClientAuthMode::Cert, certs, 0o600, true)?;
    let root = dir.join("root.crt");
    fs::write(&root, &certs.ca.cert_pem).expect("write root");
    let (cert, key) = client_files(dir, "client", &certs.client);
    let (fcert, fkey) = client_files(dir, "foreign", &certs.foreign_client);
    let with = |c: &Path, k: &Path| {
        format!(
            "{} sslcert={} sslkey={}",
            conninfo(p.port, "verify-full", &root),
            c.display(),
            k.display()
        )
    };
    let out = psql(tools, &with(&cert, &key), None, "SELECT 1");
    check(
        out.status.success() && text(&out.stdout).trim() == "1",
        "login with the client certificate",
        &out,
        &p.server,
    )?;
    let none = format!(
        "{} sslcert=/nonexistent sslkey=/nonexistent",
        conninfo(p.port, "verify-full", &root)
    );
    let out = psql(tools, &none, Some(MD5_PASSWORD), "SELECT 1");
    check(
        !out.status.success(),
        "login without a certificate must be refused",
        &out,
        &p.server,
    )?;
    let out = psql(tools, &with(&fcert, &fkey), None, "SELECT 1");
    check(
        !out.status.success(),
        "a certificate of another CA must be refused",
        &out,
        &p.server,
    )?;
    p.server.stop();
    Ok(())
}

/// pgpool does not check the key file's mode (unlike PostgreSQL): a world-readable key
/// serves TLS. The pod therefore needs no particular mode for pgpool's sake; the init
/// container still copies the key with 0600 so that no other user of the pod reads it.
fn loose_key_case(
    binary: &PgpoolBinary,
    env: (&PgTools, &Postgres, RunAs),
    dir: &Path,
    certs: &Certs,
) -> Result<(), String> {
    let tools = env.0;
    let mut p = start_tls_pgpool(binary, env, dir, ClientAuthMode::Md5, certs, 0o644, true)?;
    let root = dir.join("root.crt");
    fs::write(&root, &certs.ca.cert_pem).expect("write root");
    let out = psql(
        tools,
        &conninfo(p.port, "verify-full", &root),
        Some(MD5_PASSWORD),
        "SELECT 1",
    );
    p.server.stop();
    check(
        out.status.success(),
        "pgpool serves TLS with a 0644 key",
        &out,
        &p.server,
    )
}

/// `ssl_ca_cert` also verifies the backend's certificate: without the backend's CA in the
/// file, pgpool cannot log in to a TLS backend ("certificate verify failed"). Hence the CA
/// file in the pod is a bundle with the AppBinding's `caBundle`.
fn backend_ca_case(
    binary: &PgpoolBinary,
    env: (&PgTools, &Postgres, RunAs),
    dir: &Path,
    certs: &Certs,
) -> Result<(), String> {
    let tools = env.0;
    let mut p = start_tls_pgpool(binary, env, dir, ClientAuthMode::Md5, certs, 0o600, false)?;
    let root = dir.join("root.crt");
    fs::write(&root, &certs.ca.cert_pem).expect("write root");
    let out = psql(
        tools,
        &conninfo(p.port, "verify-full", &root),
        Some(MD5_PASSWORD),
        "SELECT 1",
    );
    p.server.stop();
    let log = fs::read_to_string(&p.server.log).unwrap_or_default();
    check(
        !out.status.success() && log.contains("certificate verify failed"),
        "without the backend's CA pgpool must refuse the backend's certificate",
        &out,
        &p.server,
    )
}

#[test]
fn real_pgpool_serves_tls_from_the_built_in_ca() {
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
        say("real pgpool TLS: skipping: install postgresql (scripts/install-pgpool-test-deps.sh)");
        return;
    };
    if !missing.is_empty() {
        say(&format!("real pgpool TLS: skipping {}", missing.join("; ")));
    }
    let run_as = RunAs::detect().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::Builder::new()
        .prefix("real-pgpool-tls-")
        .tempdir()
        .expect("tmp");
    let dir = tmp.path();
    run_as.own(dir);
    let certs = make_certs();
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
        for (name, case) in [
            ("require", require_case as fn(_, _, &Path, _) -> _),
            ("cert", cert_case),
            ("loose-key", loose_key_case),
            ("backend-ca", backend_ca_case),
        ] {
            let case_dir = dir.join(format!("tls-{}-{name}", binary.line));
            let started = Instant::now();
            let result = case(&binary, env, &case_dir, &certs);
            let label = format!("real pgpool-II {} TLS {name}", binary.package);
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
