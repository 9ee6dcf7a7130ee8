//! UpdateVersion under client load, against the cluster in `KUBECONFIG` with both operators
//! running and `e2e/manifests/` applied (the AppBinding `ha-postgres` and its Secret, with a
//! PostgreSQL reachable through its Service):
//!
//! 1. apply the catalog of `e2e/manifests/local/catalog.yaml` (or `E2E_LOAD_CATALOG`):
//!    4.3.5, 4.6.1, 4.7.3 and `4.7.3-crash`, whose image exits at once;
//! 2. create Pgpool `pp-load` with 3 replicas on 4.3.5 and wait until it and its pods are
//!    Ready;
//! 3. start the load client (`e2e::load`) through the Pgpool Service: `E2E_PGPOOL_ADDR`
//!    (`host:port`) if set, else the Service's ClusterIP:9999 (reachable from the host on a
//!    node that routes ClusterIPs, such as the local node), with the AppBinding's credentials;
//! 4. UpdateVersion 4.3.5 -> 4.6.1, then 4.6.1 -> 4.7.3, each in its own load window;
//! 5. UpdateVersion to `4.7.3-crash`: it must end Failed, and the Pgpool must be Ready on
//!    4.7.3 again (the rollback), with the clients' queries succeeding.
//!
//! For each update it prints the wall time, each pod's restart time (eviction accepted to
//! replacement Ready, from the request's conditions, second precision), queries sent, failed
//! queries, the longest gap without a successful query and the long sessions cut. It fails
//! when a short-connection query fails during a successful update, or when the Pgpool is not
//! Ready on its original version after the rollback. Cut long sessions are expected (a pod
//! that goes takes its sessions with it) and only reported.
//!
//! Without `E2E=1` and a reachable cluster it prints one line and passes.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::cluster;
use e2e::cluster::Cluster;
use e2e::kubelet::SimulatedKubelet;
use e2e::load::{LoadClient, LoadConfig, UpdateOutcome, judge, read_catalog};
use e2e::scenario::{
    LOAD_ENV, apply_catalog, backend_credentials, delete_and_wait, load_address, max_pod_restart,
};
use e2e::scenario_update::{self, UpdateStep, update_version};
use kube::Api;
use kube::api::PostParams;
use pgpool_api::{OpsRequestPhase, Pgpool, PgpoolOpsRequest};

/// The Pgpool of this scenario (not the one of `update_version.rs`, so both can run).
const PGPOOL: &str = "pp-load";
const REPLICAS: i32 = 3;
/// The version it starts on, and the successful updates in order.
const SOURCE: &str = "4.3.5";
const UPDATES: [&str; 2] = ["4.6.1", "4.7.3"];
/// The catalog entry whose image crashes; allowed from the last of [`UPDATES`].
const CRASH: &str = "4.7.3-crash";
/// The crashing request's step timeout, so that it fails within minutes.
const CRASH_TIMEOUT: &str = "2m";

const READY_TIMEOUT: Duration = Duration::from_secs(300);
const UPDATE_TIMEOUT: Duration = Duration::from_secs(900);
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(180);
const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_version_under_load() {
    // It needs images of real pgpool-II lines and a Pgpool Service reachable from here: the
    // local node's run sets E2E_LOAD=1 (scripts/e2e-local.sh, make e2e-local); on another cluster set it
    // together with E2E_LOAD_CATALOG and E2E_PGPOOL_ADDR.
    if std::env::var(LOAD_ENV).as_deref() != Ok("1") {
        println!(
            "skipped update_version_under_load: {LOAD_ENV}=1 is not set (see scripts/e2e-local.sh, make e2e-local)"
        );
        return;
    }
    let Some(cluster) = Cluster::connect_or_skip("update_version_under_load").await else {
        return;
    };
    let started = Instant::now();
    if let Err(e) = run(&cluster, started).await {
        panic!("update_version_under_load failed: {e:#}");
    }
}

fn step(started: Instant, line: &str) {
    println!("load-e2e [{:>4} s] {line}", started.elapsed().as_secs());
}

async fn run(cluster: &Cluster, started: Instant) -> anyhow::Result<()> {
    let ns = &cluster.namespace;
    let client = &cluster.client;
    step(started, "apply the scenario's catalog");
    apply_catalog(
        client,
        &[SOURCE, UPDATES[0], UPDATES[1], CRASH],
        "e2e-update-under-load",
    )
    .await?;

    let mut pgpool: Pgpool = cluster::example("pgpool.yaml", ns)?;
    pgpool.metadata.name = Some(PGPOOL.to_string());
    pgpool.spec.version = SOURCE.to_string();
    pgpool.spec.replicas = Some(REPLICAS);
    if pgpool.spec.postgres_ref.namespace.is_some() {
        pgpool.spec.postgres_ref.namespace = Some(ns.clone());
    }
    let credentials = backend_credentials(client, ns, &pgpool.spec.postgres_ref.name).await?;

    step(started, "clean up what an earlier run left");
    cleanup(cluster).await?;
    // E2E_SIMULATE_KUBELET=1: pods are marked Ready but never run, so this checks only the
    // control flow, with E2E_PGPOOL_ADDR pointing at some PostgreSQL.
    let _kubelet = cluster
        .simulate_kubelet
        .then(|| SimulatedKubelet::start(cluster.client.clone(), ns));

    step(
        started,
        &format!("create Pgpool {PGPOOL} with {REPLICAS} replicas on {SOURCE}"),
    );
    let pgpools: Api<Pgpool> = Api::namespaced(client.clone(), ns);
    pgpools
        .create(&PostParams::default(), &pgpool)
        .await
        .context("creating the Pgpool")?;
    wait_ready_on(cluster, SOURCE).await?;

    let (host, port) = load_address(client, ns, PGPOOL).await?;
    step(
        started,
        &format!("start the load client through {host}:{port}"),
    );
    let (user, password) = credentials;
    let load = LoadClient::start(LoadConfig::new(&host, port, &user, &password, "postgres"));
    load.start_window("warm-up");
    let warm = load
        .wait_until("50 successful short queries", WARMUP_TIMEOUT, |s| {
            s.succeeded >= 50
        })
        .await;
    load.stop_window().await;
    warm.context("the load client's first queries through the Pgpool Service")?;

    let mut outcomes = Vec::new();
    let mut from = SOURCE;
    for to in UPDATES {
        step(started, &format!("UpdateVersion {from} -> {to} under load"));
        let outcome = update(cluster, &load, &format!("{PGPOOL}-to-{to}"), to, None).await?;
        println!("{outcome}");
        let phase = outcome.phase;
        outcomes.push(outcome);
        if phase != Some(OpsRequestPhase::Successful) {
            bail!("the update {from} -> {to} ended {phase:?}");
        }
        // the clients keep being watched while the Pgpool settles; reported, not judged
        load.start_window(&format!("settle on {to}"));
        let settled = wait_ready_on(cluster, to).await;
        load.stop_window().await;
        settled?;
        from = to;
    }

    step(
        started,
        &format!("UpdateVersion {from} -> {CRASH} (its image crashes): Failed, rolled back"),
    );
    let crash = update(
        cluster,
        &load,
        &format!("{PGPOOL}-to-crash"),
        CRASH,
        Some(CRASH_TIMEOUT),
    )
    .await?;
    println!("{crash}");
    let rollback_phase = crash.phase;
    outcomes.push(crash);
    let rolled_back = if rollback_phase == Some(OpsRequestPhase::Failed) {
        // Ready on the original version, and serving clients again
        let from = from.to_string();
        async {
            wait_ready_on(cluster, &from).await?;
            load.start_window(&format!("after the rollback to {from}"));
            let serving = load
                .wait_until("50 successful short queries", WARMUP_TIMEOUT, |s| {
                    s.succeeded >= 50
                })
                .await;
            load.stop_window().await;
            serving.map(drop)
        }
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}"))
    } else {
        Err(anyhow::anyhow!(
            "the update to {CRASH} ended {rollback_phase:?}, not Failed"
        ))
    };
    load.shutdown().await;

    step(started, "summary");
    for o in &outcomes {
        println!("{o}");
    }
    judge(&outcomes, max_pod_restart()?)?;
    rolled_back.with_context(|| format!("the Pgpool is not Ready on {from} after the rollback"))?;
    Ok(())
}

/// Creates the UpdateVersion request `name` to `target` inside a load window, waits for its
/// end, and returns what it showed.
async fn update(
    cluster: &Cluster,
    load: &LoadClient,
    name: &str,
    target: &str,
    timeout: Option<&str>,
) -> anyhow::Result<UpdateOutcome> {
    let step = UpdateStep {
        pgpool: PGPOOL,
        request: name,
        target,
        timeout,
        wait: UPDATE_TIMEOUT,
    };
    update_version(cluster, load, step).await
}

/// Deletes the requests and the Pgpool of an earlier run.
async fn cleanup(cluster: &Cluster) -> anyhow::Result<()> {
    let requests: Api<PgpoolOpsRequest> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let names_: Vec<String> = UPDATES
        .iter()
        .map(|t| format!("{PGPOOL}-to-{t}"))
        .chain([format!("{PGPOOL}-to-crash")])
        .collect();
    for name in &names_ {
        delete_and_wait(&requests, name, CLEANUP_TIMEOUT).await?;
    }
    let pgpools: Api<Pgpool> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    delete_and_wait(&pgpools, PGPOOL, CLEANUP_TIMEOUT)
        .await
        .context("is the provisioner running? it removes the finalizer")
}

/// Waits until the Pgpool is Ready on catalog entry `version` and all its pods are Ready and
/// run that entry's pgpool image.
async fn wait_ready_on(cluster: &Cluster, version: &str) -> anyhow::Result<()> {
    let replicas = usize::try_from(REPLICAS)?;
    scenario_update::wait_ready_on(cluster, PGPOOL, replicas, version, READY_TIMEOUT).await
}

/// The image map of the local node covers every image of the scenario's catalog (read with
/// the node's own parser): the crash image replaces the command, every real image mounts the
/// pgpool binary of the PetSet's container command (`/opt/pgpool-II/bin/pgpool`).
#[test]
fn local_images_cover_the_local_catalog() {
    let root = e2e::charts::workspace_root();
    let catalog = read_catalog(
        &std::fs::read_to_string(root.join("e2e/manifests/local/catalog.yaml")).expect("catalog"),
    )
    .expect("parse the catalog");
    let map = local_node::images::ImageMap::load(&root.join("e2e/local-images.yaml"))
        .expect("parse the image map");
    for name in std::iter::once(SOURCE).chain(UPDATES).chain([CRASH]) {
        let v = catalog
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in the catalog"));
        let image = &v.spec.pgpool.image;
        let entry = map
            .resolve(image)
            .unwrap_or_else(|| panic!("{image} ({name}) is not in e2e/local-images.yaml"));
        if name == CRASH {
            assert!(
                entry.command.as_ref().is_some_and(|c| !c.is_empty()),
                "{image}: a command"
            );
        } else {
            assert!(entry.command.is_none(), "{image}: runs its own command");
            let covers = entry
                .mounts
                .keys()
                .any(|p| std::path::Path::new("/opt/pgpool-II/bin/pgpool").starts_with(p));
            assert!(covers, "{image}: no mount covers /opt/pgpool-II/bin/pgpool");
        }
    }
}
