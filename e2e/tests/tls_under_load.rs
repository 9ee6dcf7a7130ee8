//! An UpdateVersion of a TLS Pgpool under client load, on the local node (`make e2e-local`,
//! after the day-2 scenario):
//!
//! 1. a 2-replica Pgpool with `spec.tls: {}` (the provisioner's built-in CA) and
//!    `sslMode: require` becomes Ready on 4.6.1 with real pgpool pods;
//! 2. through the Service's ClusterIP, a plain-text connection is refused, a TLS connection
//!    whose certificate check expects another host name is refused by the client, and a TLS
//!    connection verifying the server against the `<name>-ca` Secret (`verify-full` on the
//!    Service's DNS name, the TCP connection going to the ClusterIP) logs in;
//! 3. the load client, every connection over TLS the same way, runs through an UpdateVersion
//!    4.6.1 -> 4.7.3, judged like the other updates (no failed short query,
//!    `E2E_MAX_POD_RESTART_SECONDS`); plain text is refused again on the new pods;
//! 4. then a ReconfigureTLS `rotateCertificates: true` under the same load: Successful, judged
//!    the same way; the server certificate in the Secret is new and every connection through
//!    the Service is served it (read from the TLS handshake), verify-full with the kept CA;
//! 5. the operators' output (`E2E_OPERATOR_LOGS`, colon-separated files; the script passes
//!    both operators' logs) holds no `PRIVATE KEY`, none of the three Secrets' `tls.key` and
//!    none of the keys the rotation replaced.
//!
//! Skips with one line without `E2E_LOAD=1` and `E2E=1` with a reachable cluster.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use e2e::cluster::{self, Cluster};
use e2e::key_leaks::{KeyMaterial, find_leaks};
use e2e::load::{LoadClient, LoadConfig, LoadTls, UpdateOutcome, judge};
use e2e::scenario::{
    LOAD_ENV, apply_catalog, backend_credentials, delete_and_wait, load_address, max_pod_restart,
};
use e2e::scenario_request::run_request;
use e2e::scenario_update::{UpdateStep, update_version, wait_ready_on};
use e2e::served_cert::{first_certificate, served_certificate};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use pgpool_api::pgpool::{SslMode, TlsConfig};
use pgpool_api::{OpsRequestPhase, Pgpool, PgpoolOpsRequest};
use tokio_postgres::NoTls;

/// The Pgpool of this scenario (not the ones of the other scenarios, so all can run).
const PGPOOL: &str = "pp-tls-load";
const REPLICAS: usize = 2;
const SOURCE: &str = "4.6.1";
const TARGET: &str = "4.7.3";
/// The operators' log files, colon-separated, searched for key material at the end.
const LOGS_ENV: &str = "E2E_OPERATOR_LOGS";
/// The ReconfigureTLS request after the update.
const ROTATE_REQUEST: &str = "pp-tls-load-rotate";

const READY_TIMEOUT: Duration = Duration::from_secs(300);
const UPDATE_TIMEOUT: Duration = Duration::from_secs(900);
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(180);
const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_update_version_under_load() {
    if std::env::var(LOAD_ENV).as_deref() != Ok("1") {
        println!(
            "skipped tls_update_version_under_load: {LOAD_ENV}=1 is not set (see scripts/e2e-local.sh, make e2e-local)"
        );
        return;
    }
    let Some(cluster) = Cluster::connect_or_skip("tls_update_version_under_load").await else {
        return;
    };
    let started = Instant::now();
    if let Err(e) = run(&cluster, started).await {
        panic!("tls_update_version_under_load failed: {e:#}");
    }
}

fn step(started: Instant, line: &str) {
    println!("tls-e2e [{:>4} s] {line}", started.elapsed().as_secs());
}

async fn run(cluster: &Cluster, started: Instant) -> anyhow::Result<()> {
    let ns = &cluster.namespace;
    let client = &cluster.client;
    step(started, "apply the scenario's catalog");
    apply_catalog(client, &[SOURCE, TARGET], "e2e-tls-under-load").await?;

    let mut pgpool: Pgpool = cluster::example("pgpool.yaml", ns)?;
    pgpool.metadata.name = Some(PGPOOL.to_string());
    pgpool.spec.version = SOURCE.to_string();
    pgpool.spec.replicas = Some(i32::try_from(REPLICAS)?);
    pgpool.spec.tls = Some(TlsConfig::default());
    pgpool.spec.ssl_mode = Some(SslMode::Require);
    if pgpool.spec.postgres_ref.namespace.is_some() {
        pgpool.spec.postgres_ref.namespace = Some(ns.clone());
    }
    let (user, password) = backend_credentials(client, ns, &pgpool.spec.postgres_ref.name).await?;

    step(started, "clean up what an earlier run left");
    cleanup(cluster).await?;

    step(
        started,
        &format!(
            "create Pgpool {PGPOOL} ({REPLICAS} replicas, {SOURCE}, tls {{}}, sslMode require)"
        ),
    );
    Api::<Pgpool>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pgpool)
        .await
        .context("creating the Pgpool")?;
    wait_ready_on(cluster, PGPOOL, REPLICAS, SOURCE, READY_TIMEOUT).await?;

    let (host, port) = load_address(client, ns, PGPOOL).await?;
    let ca = secret_key(cluster, &format!("{PGPOOL}-ca"), "tls.crt").await?;
    // the certificate names the client Service; the connection goes to its ClusterIP
    let server_name = format!("{PGPOOL}.{ns}.svc");
    let tls = LoadTls::verify_full(&ca, &server_name)?;
    let mut config = LoadConfig::new(&host, port, &user, &password, "postgres");
    config.connect_timeout = CONNECT_TIMEOUT;

    step(started, &format!("connections through {host}:{port}"));
    check_connections(&config, &tls, &ca).await?;

    step(
        started,
        &format!("start the load client over TLS (verify-full as {server_name})"),
    );
    config.tls = Some(tls.clone());
    let load = LoadClient::start(config.clone());
    load.start_window("warm-up over TLS");
    let warm = load
        .wait_until("50 successful short queries", WARMUP_TIMEOUT, |s| {
            s.succeeded >= 50
        })
        .await;
    load.stop_window().await;
    warm.context("the load client's first TLS queries through the Pgpool Service")?;

    step(
        started,
        &format!("UpdateVersion {SOURCE} -> {TARGET} under load over TLS"),
    );
    let request = format!("{PGPOOL}-to-{TARGET}");
    let outcome = update_version(
        cluster,
        &load,
        UpdateStep {
            pgpool: PGPOOL,
            request: &request,
            target: TARGET,
            timeout: None,
            wait: UPDATE_TIMEOUT,
        },
    )
    .await?;
    println!("{outcome}");
    let phase = outcome.phase;
    load.start_window(&format!("settle on {TARGET}"));
    let settled = if phase == Some(OpsRequestPhase::Successful) {
        wait_ready_on(cluster, PGPOOL, REPLICAS, TARGET, READY_TIMEOUT).await
    } else {
        Err(anyhow::anyhow!(
            "the update {SOURCE} -> {TARGET} ended {phase:?}"
        ))
    };
    load.stop_window().await;
    let mut outcomes = vec![outcome];

    // the certificates the rotation replaces, searched for in the logs at the end too
    let mut old_keys = Vec::new();
    let rotation = if settled.is_ok() {
        step(
            started,
            "ReconfigureTLS rotateCertificates under load over TLS",
        );
        let replaced = ["server-cert", "client-cert", "metrics-exporter-cert"];
        for s in replaced.map(|s| format!("{PGPOOL}-{s}")) {
            old_keys.push(KeyMaterial {
                source: format!("Secret {s} tls.key before the rotation"),
                pem: secret_key(cluster, &s, "tls.key").await?,
            });
        }
        let endpoint = Endpoint {
            addr: std::net::SocketAddr::new(host.parse()?, port),
            ca: ca.clone(),
            server_name: server_name.clone(),
        };
        let rotated = rotate_certificates(cluster, &load, &endpoint).await;
        if let Ok(o) = &rotated {
            println!("{o}");
            outcomes.push(o.clone());
        }
        rotated.map(drop)
    } else {
        Ok(())
    };
    load.shutdown().await;

    step(started, "summary");
    for o in &outcomes {
        println!("{o}");
    }
    judge(&outcomes, max_pod_restart()?)?;
    settled?;
    rotation?;
    check_plaintext_refused(&config)
        .await
        .context("after the update and the rotation")?;
    check_connections(&config, &tls, &ca)
        .await
        .context("verify-full with the CA after the rotation")?;

    step(started, "the operators' output holds no private key");
    check_no_key_in_logs(cluster, old_keys).await?;
    Ok(())
}

/// ReconfigureTLS with `rotateCertificates: true` under `load`: Successful, the pods Ready on
/// the target again, and a new server certificate in its Secret (the CA stays, so verify-full
/// clients keep trusting the pods).
async fn rotate_certificates(
    cluster: &Cluster,
    load: &LoadClient,
    endpoint: &Endpoint,
) -> anyhow::Result<UpdateOutcome> {
    let server = format!("{PGPOOL}-server-cert");
    let before = secret_key(cluster, &server, "tls.crt").await?;
    let served_before = endpoint.served().await?;
    ensure!(
        served_before == first_certificate(&before)?,
        "the pods serve another certificate than Secret {server} holds"
    );
    let request: PgpoolOpsRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "ops.kubedb.com/v1alpha1",
        "kind": "PgpoolOpsRequest",
        "metadata": {"name": ROTATE_REQUEST, "namespace": cluster.namespace},
        "spec": {
            "type": "ReconfigureTLS",
            "databaseRef": {"name": PGPOOL},
            "tls": {"rotateCertificates": true},
        },
    }))?;
    run_request(cluster, load, &request, UPDATE_TIMEOUT, |_| async {
        wait_ready_on(cluster, PGPOOL, REPLICAS, TARGET, READY_TIMEOUT).await?;
        let after = secret_key(cluster, &server, "tls.crt").await?;
        ensure!(
            after != before,
            "Secret {server} holds the same certificate"
        );
        // through the Service, whichever pod answers
        for _ in 0..REPLICAS * 2 {
            let served = endpoint.served().await?;
            ensure!(
                served == first_certificate(&after)?,
                "a pod still serves the certificate from before the rotation"
            );
        }
        println!("    the pods serve the new certificate (verify-full with the kept CA)");
        Ok(())
    })
    .await
}

/// Where the Pgpool serves TLS, and how a client verifies it.
struct Endpoint {
    /// The Service's ClusterIP and port.
    addr: std::net::SocketAddr,
    /// PEM of the CA the client trusts.
    ca: Vec<u8>,
    /// The name the certificate must carry.
    server_name: String,
}

impl Endpoint {
    /// The DER of the certificate a new connection is served (verified as verify-full).
    async fn served(&self) -> anyhow::Result<Vec<u8>> {
        let (addr, ca, name) = (self.addr, self.ca.clone(), self.server_name.clone());
        tokio::task::spawn_blocking(move || served_certificate(addr, &ca, &name, CONNECT_TIMEOUT))
            .await?
    }
}

/// Plain text refused, a TLS client expecting another name refuses the server, TLS verifying
/// the server against the CA logs in and runs `SELECT 1`.
async fn check_connections(config: &LoadConfig, tls: &LoadTls, ca: &[u8]) -> anyhow::Result<()> {
    check_plaintext_refused(config).await?;

    let mut wrong = config.clone();
    wrong.tls = Some(LoadTls::verify_full(ca, "not-the-pgpool.example.com")?);
    match connect(&wrong).await {
        Ok(_) => bail!("a TLS client expecting not-the-pgpool.example.com logged in"),
        Err(e) => println!("    TLS with a name the certificate lacks: refused ({e:#})"),
    }

    let mut good = config.clone();
    good.tls = Some(tls.clone());
    let client = connect(&good)
        .await
        .context("a TLS connection verifying the server against the CA")?;
    let rows = client
        .simple_query("SELECT 1")
        .await
        .context("SELECT 1 over TLS")?;
    ensure!(!rows.is_empty(), "SELECT 1 over TLS returned nothing");
    println!("    TLS verify-full as {}: logged in", tls.server_name);
    Ok(())
}

/// A connection without TLS to the Service is refused by pgpool itself (its answer is an
/// error message, not a network failure: it has only `hostssl` lines).
async fn check_plaintext_refused(config: &LoadConfig) -> anyhow::Result<()> {
    let mut plain = config.clone();
    plain.tls = None;
    let e = match connect(&plain).await {
        Ok(_) => bail!(
            "a plain-text connection to {}:{} logged in although sslMode is require",
            plain.host,
            plain.port
        ),
        Err(e) => e,
    };
    let refused_by_pgpool = e
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
        .is_some();
    ensure!(
        refused_by_pgpool,
        "a plain-text connection failed without pgpool refusing it: {e:#}"
    );
    println!("    plain text: refused by pgpool ({e:#})");
    Ok(())
}

/// One connection as the load client makes it (TLS or not); its driver runs in a task.
async fn connect(config: &LoadConfig) -> anyhow::Result<tokio_postgres::Client> {
    let mut pg = tokio_postgres::Config::new();
    match &config.tls {
        Some(tls) => tls.apply(&mut pg, &config.host)?,
        None => {
            pg.host(&config.host)
                .ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
    }
    pg.port(config.port)
        .user(&config.user)
        .password(&config.password)
        .dbname(&config.database)
        .connect_timeout(config.connect_timeout);
    let connecting = async {
        match &config.tls {
            Some(tls) => {
                let (client, connection) = pg.connect(tls.connector()).await?;
                tokio::spawn(connection);
                Ok::<_, tokio_postgres::Error>(client)
            }
            None => {
                let (client, connection) = pg.connect(NoTls).await?;
                tokio::spawn(connection);
                Ok(client)
            }
        }
    };
    let client = tokio::time::timeout(config.connect_timeout, connecting)
        .await
        .context("connect timed out")??;
    Ok(client)
}

/// `key` of Secret `name` in the scenario's namespace.
async fn secret_key(cluster: &Cluster, name: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    let secret = Api::<Secret>::namespaced(cluster.client.clone(), &cluster.namespace)
        .get(name)
        .await
        .with_context(|| format!("reading Secret {name}"))?;
    secret
        .data
        .and_then(|mut d| d.remove(key))
        .map(|b| b.0)
        .with_context(|| format!("Secret {name} has no {key}"))
}

/// Searches the files of [`LOGS_ENV`] for `PRIVATE KEY`, the `tls.key` of the CA, server,
/// client and metrics exporter Secrets and `keys` (those the rotation replaced); without it,
/// says so and checks nothing.
async fn check_no_key_in_logs(cluster: &Cluster, mut keys: Vec<KeyMaterial>) -> anyhow::Result<()> {
    let Some(files) = std::env::var(LOGS_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        println!("    {LOGS_ENV} is not set: the operators' output is not searched");
        return Ok(());
    };
    let certificates = ["ca", "server-cert", "client-cert", "metrics-exporter-cert"];
    for secret in certificates.map(|s| format!("{PGPOOL}-{s}")) {
        keys.push(KeyMaterial {
            source: format!("Secret {secret} tls.key"),
            pem: secret_key(cluster, &secret, "tls.key").await?,
        });
    }
    let mut found = Vec::new();
    for file in files.split(':').filter(|f| !f.is_empty()) {
        let text = std::fs::read(file).with_context(|| format!("reading {file}"))?;
        let text = String::from_utf8_lossy(&text);
        ensure!(
            !text.trim().is_empty(),
            "{file} is empty: not the operator's log?"
        );
        found.extend(find_leaks(file, &text, &keys));
    }
    ensure!(
        found.is_empty(),
        "private key material in the operators' output: {}",
        found.join("; ")
    );
    println!(
        "    searched {files} for PRIVATE KEY and {} keys: none",
        keys.len()
    );
    Ok(())
}

/// Deletes the request and the Pgpool of an earlier run (its Secrets go with it).
async fn cleanup(cluster: &Cluster) -> anyhow::Result<()> {
    let requests: Api<PgpoolOpsRequest> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    delete_and_wait(&requests, &format!("{PGPOOL}-to-{TARGET}"), CLEANUP_TIMEOUT).await?;
    delete_and_wait(&requests, ROTATE_REQUEST, CLEANUP_TIMEOUT).await?;
    let pgpools: Api<Pgpool> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    delete_and_wait(&pgpools, PGPOOL, CLEANUP_TIMEOUT)
        .await
        .context("is the provisioner running? it removes the finalizer")
}
