//! Day-2 operations under client load, against the cluster in `KUBECONFIG` with both operators
//! running and `e2e/manifests/` applied (run by `scripts/e2e-local.sh` after the update
//! scenario):
//!
//! 1. apply the catalog of `e2e/manifests/local/catalog.yaml` (or `E2E_LOAD_CATALOG`);
//! 2. create the Pgpool of `examples/pgpool.yaml` (`pp-update`) with 2 replicas on
//!    [`SOURCE`] and wait until it and its pods are Ready;
//! 3. start the load client through its Service (`E2E_PGPOOL_ADDR`, else the ClusterIP);
//! 4. run [`STEPS`] in order: apply each example request unchanged, wait for `Successful`,
//!    check the Pgpool Ready and not paused, and the step's own check (spec, PetSet and pods
//!    agree), each in its own load window;
//! 5. fail when a short-connection query failed in any window (`e2e::load::judge`).
//!
//! Without `E2E=1`, `E2E_LOAD=1` and a reachable cluster it prints one line and passes.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use e2e::cluster::Cluster;
use e2e::day2_config;
use e2e::load::{LoadClient, LoadConfig, UpdateOutcome, judge};
use e2e::scenario::{
    LOAD_ENV, apply_catalog, backend_credentials, delete_and_wait, load_address, max_pod_restart,
};
use e2e::scenario_request::run_request;
use e2e::{cluster, wait};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, PodSpec, ResourceRequirements};
use kube::Api;
use kube::api::PostParams;
use pgpool_api::conditions;
use pgpool_api::quantity::same_resources;
use pgpool_api::{PetSet, Pgpool, PgpoolOpsRequest, PgpoolPhase, names};

/// The Pgpool of the examples.
const PGPOOL: &str = "pp-update";
/// Its replicas before the first step.
const REPLICAS: i32 = 2;
/// The catalog entry it runs (one of the local catalog's real pgpool-II lines).
const SOURCE: &str = "4.7.3";

const READY_TIMEOUT: Duration = Duration::from_secs(300);
const STEP_TIMEOUT: Duration = Duration::from_secs(900);
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(180);
const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);

/// What must hold once a step's request succeeded (beyond the Pgpool Ready and not paused).
type Check = for<'a> fn(&'a Cluster, &'a PgpoolOpsRequest) -> BoxFuture<'a, anyhow::Result<()>>;

/// One day-2 step: an example manifest under `examples/`, applied unchanged, and its check.
struct Day2Step {
    example: &'static str,
    check: Check,
}

/// The steps, in order. Another ops type is one more entry and its check function.
const STEPS: &[Day2Step] = &[
    Day2Step {
        example: "horizontal-scaling.yaml",
        check: check_horizontal_scaling,
    },
    Day2Step {
        example: "vertical-scaling.yaml",
        check: check_vertical_scaling,
    },
    Day2Step {
        example: "reconfigure.yaml",
        check: check_reconfigure,
    },
    Day2Step {
        example: "rotate-auth.yaml",
        check: check_rotate_auth,
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn day2_operations_under_load() {
    if std::env::var(LOAD_ENV).as_deref() != Ok("1") {
        println!(
            "skipped day2_operations_under_load: {LOAD_ENV}=1 is not set (see scripts/e2e-local.sh, make e2e-local)"
        );
        return;
    }
    let Some(cluster) = Cluster::connect_or_skip("day2_operations_under_load").await else {
        return;
    };
    let started = Instant::now();
    if let Err(e) = run(&cluster, started).await {
        panic!("day2_operations_under_load failed: {e:#}");
    }
}

fn say(started: Instant, line: &str) {
    println!("day2-e2e [{:>4} s] {line}", started.elapsed().as_secs());
}

async fn run(cluster: &Cluster, started: Instant) -> anyhow::Result<()> {
    let ns = &cluster.namespace;
    let client = &cluster.client;
    say(started, "apply the scenario's catalog");
    apply_catalog(client, &[SOURCE], "e2e-day2-operations").await?;
    say(started, "clean up what an earlier run left");
    cleanup(cluster).await?;

    let mut pgpool: Pgpool = cluster::example("pgpool.yaml", ns)?;
    ensure!(
        pgpool.metadata.name.as_deref() == Some(PGPOOL),
        "examples/pgpool.yaml names another Pgpool"
    );
    pgpool.spec.version = SOURCE.to_string();
    pgpool.spec.replicas = Some(REPLICAS);
    if pgpool.spec.postgres_ref.namespace.is_some() {
        pgpool.spec.postgres_ref.namespace = Some(ns.clone());
    }
    let (user, password) = backend_credentials(client, ns, &pgpool.spec.postgres_ref.name).await?;
    say(
        started,
        &format!("create Pgpool {PGPOOL} with {REPLICAS} replicas on {SOURCE}"),
    );
    Api::<Pgpool>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pgpool)
        .await
        .context("creating the Pgpool")?;
    wait_settled(cluster).await?;
    wait_pods(cluster, REPLICAS, |_| true).await?;

    let (host, port) = load_address(client, ns, PGPOOL).await?;
    say(
        started,
        &format!("start the load client through {host}:{port}"),
    );
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
    let mut result = Ok(());
    for step in STEPS {
        say(
            started,
            &format!("apply examples/{} under load", step.example),
        );
        match run_step(cluster, &load, step).await {
            Ok(outcome) => {
                println!("{outcome}");
                outcomes.push(outcome);
            }
            Err(e) => {
                result = Err(e.context(format!("examples/{}", step.example)));
                break;
            }
        }
    }
    load.shutdown().await;
    say(started, "summary");
    for o in &outcomes {
        println!("{o}");
    }
    result?;
    judge(&outcomes, max_pod_restart()?)
}

/// Applies the step's example unchanged inside a load window, waits for `Successful`, for the
/// Pgpool to settle and for the step's check.
async fn run_step(
    cluster: &Cluster,
    load: &LoadClient,
    step: &Day2Step,
) -> anyhow::Result<UpdateOutcome> {
    let request: PgpoolOpsRequest = cluster::example(step.example, &cluster.namespace)?;
    run_request(cluster, load, &request, STEP_TIMEOUT, |done| async move {
        wait_settled(cluster).await?;
        (step.check)(cluster, &done).await
    })
    .await
}

/// HorizontalScaling: `spec.replicas`, the PetSet's replicas and the Ready pods are the
/// request's `node`.
fn check_horizontal_scaling<'a>(
    cluster: &'a Cluster,
    req: &'a PgpoolOpsRequest,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let node = req
            .spec
            .horizontal_scaling
            .as_ref()
            .and_then(|h| h.node)
            .context("the request has no spec.horizontalScaling.node")?;
        let pp = pgpools(cluster).get(PGPOOL).await?;
        ensure!(
            pp.spec.replicas() == node,
            "Pgpool spec.replicas is {}",
            pp.spec.replicas()
        );
        let ps = petsets(cluster).get(PGPOOL).await?;
        ensure!(
            ps.spec.replicas() == node,
            "PetSet spec.replicas is {}",
            ps.spec.replicas()
        );
        wait_pods(cluster, node, |_| true).await
    })
}

/// VerticalScaling: the Pgpool's `spec.podTemplate`, the PetSet and every pod give the `pgpool`
/// container the request's resources (compared by value).
fn check_vertical_scaling<'a>(
    cluster: &'a Cluster,
    req: &'a PgpoolOpsRequest,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let want = req
            .spec
            .vertical_scaling
            .as_ref()
            .and_then(|v| v.resources())
            .cloned()
            .context("the request has no spec.verticalScaling.node.resources")?;
        let pp = pgpools(cluster).get(PGPOOL).await?;
        let recorded = pp
            .spec
            .pod_template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| c.name == names::CONTAINER_PGPOOL)
            })
            .and_then(|c| c.resources.clone());
        ensure!(
            recorded.as_ref().is_some_and(|r| same_resources(r, &want)),
            "Pgpool spec.podTemplate records {recorded:?}"
        );
        let ps = petsets(cluster).get(PGPOOL).await?;
        let rendered = pgpool_resources(ps.spec.template.spec.as_ref());
        ensure!(
            rendered.as_ref().is_some_and(|r| same_resources(r, &want)),
            "the PetSet's pgpool container has {rendered:?}"
        );
        let replicas = ps.spec.replicas();
        wait_pods(cluster, replicas, move |p| {
            pgpool_resources(p.spec.as_ref()).is_some_and(|r| same_resources(&r, &want))
        })
        .await
    })
}

/// Reconfigure: the config Secret and every new session through the Service show each
/// parameter of the request's `applyConfig` with its value (`max_pool = 7` in the example).
fn check_reconfigure<'a>(
    cluster: &'a Cluster,
    req: &'a PgpoolOpsRequest,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let text = req
            .spec
            .configuration
            .as_ref()
            .and_then(|c| c.apply_config.get("pgpool.conf"))
            .context("the request has no spec.configuration.applyConfig pgpool.conf")?;
        let (client, ns) = (&cluster.client, cluster.namespace.as_str());
        let pp = pgpools(cluster).get(PGPOOL).await?;
        let (user, password) = backend_credentials(client, ns, &pp.spec.postgres_ref.name).await?;
        let (host, port) = load_address(client, ns, PGPOOL).await?;
        let assignments = pgpool_config::parse_pgpool_conf(text)
            .map_err(|e| anyhow::anyhow!("the request's pgpool.conf: {e}"))?;
        ensure!(
            !assignments.is_empty(),
            "the request's pgpool.conf sets nothing"
        );
        for (parameter, value) in &assignments {
            day2_config::check_reconfigured(
                client,
                ns,
                PGPOOL,
                (&host, port),
                (&user, &password),
                (parameter.as_str(), value.as_str()),
            )
            .await?;
        }
        Ok(())
    })
}

/// RotateAuth (generated password): pcp through the Service takes the auth Secret's new
/// password and refuses the previous one.
fn check_rotate_auth<'a>(
    cluster: &'a Cluster,
    _req: &'a PgpoolOpsRequest,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let (client, ns) = (&cluster.client, cluster.namespace.as_str());
        let (host, _) = load_address(client, ns, PGPOOL).await?;
        let pcp = pcp_node_count()?;
        day2_config::check_rotated_auth(
            client,
            ns,
            PGPOOL,
            (&host, u16::try_from(names::PORT_PCP)?),
            &pcp,
        )
        .await
    })
}

/// `pcp_node_count` of the pods' own pgpool-II line when `scripts/install-pgpool-versions.sh`
/// installed it, else Debian's.
fn pcp_node_count() -> anyhow::Result<std::path::PathBuf> {
    let line = SOURCE.rsplit_once('.').map_or(SOURCE, |(l, _)| l);
    let own =
        e2e::charts::workspace_root().join(format!(".cache/pgpool/{line}/bin/pcp_node_count"));
    let debian = std::path::PathBuf::from("/usr/sbin/pcp_node_count");
    [own, debian]
        .into_iter()
        .find(|p| p.exists())
        .context("no pcp_node_count: run scripts/install-pgpool-test-deps.sh")
}

fn pgpools(cluster: &Cluster) -> Api<Pgpool> {
    Api::namespaced(cluster.client.clone(), &cluster.namespace)
}

fn petsets(cluster: &Cluster) -> Api<PetSet> {
    Api::namespaced(cluster.client.clone(), &cluster.namespace)
}

fn pgpool_resources(spec: Option<&PodSpec>) -> Option<ResourceRequirements> {
    spec?
        .containers
        .iter()
        .find(|c| c.name == names::CONTAINER_PGPOOL)?
        .resources
        .clone()
}

/// Waits until the Pgpool is Ready, not paused, and its status describes its spec.
async fn wait_settled(cluster: &Cluster) -> anyhow::Result<()> {
    wait::for_object(
        &pgpools(cluster),
        PGPOOL,
        "Pgpool Ready and not paused",
        READY_TIMEOUT,
        |p: &Pgpool| {
            p.status.as_ref().is_some_and(|s| {
                s.phase == Some(PgpoolPhase::Ready)
                    && conditions::get(&s.conditions, conditions::pgpool::PAUSED).is_none()
                    && s.observed_generation >= p.metadata.generation
            })
        },
    )
    .await
    .map(drop)
}

/// Waits until the Pgpool has exactly `replicas` pods, all Ready and satisfying `also`.
async fn wait_pods(
    cluster: &Cluster,
    replicas: i32,
    also: impl Fn(&Pod) -> bool + Send + 'static,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let n = usize::try_from(replicas)?;
    wait::for_list(
        &pods,
        &names::selector_string(PGPOOL),
        &format!("{n} pods Ready"),
        READY_TIMEOUT,
        move |pods: &[Pod]| pods.len() == n && pods.iter().all(|p| ready(p) && also(p)),
        |pods: &[Pod]| {
            pods.iter()
                .map(|p| {
                    format!(
                        "{} {}",
                        p.metadata.name.clone().unwrap_or_default(),
                        if ready(p) { "Ready" } else { "not-ready" }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    )
    .await
    .map(drop)
}

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Deletes the step requests and the Pgpool of an earlier run.
async fn cleanup(cluster: &Cluster) -> anyhow::Result<()> {
    let requests: Api<PgpoolOpsRequest> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for step in STEPS {
        let request: PgpoolOpsRequest = cluster::example(step.example, &cluster.namespace)?;
        let name = request.metadata.name.unwrap_or_default();
        delete_and_wait(&requests, &name, CLEANUP_TIMEOUT).await?;
    }
    delete_and_wait(&pgpools(cluster), PGPOOL, CLEANUP_TIMEOUT)
        .await
        .context("is the provisioner running? it removes the finalizer")
}

/// Every step's example is an ops request of a distinct type that parses.
#[test]
fn the_steps_name_example_requests() {
    let mut types = Vec::new();
    for step in STEPS {
        let r: PgpoolOpsRequest = cluster::example(step.example, "demo").expect(step.example);
        assert_eq!(r.spec.database_ref.name, PGPOOL, "{}", step.example);
        assert!(
            !types.contains(&r.spec.type_),
            "{}: one step per type",
            step.example
        );
        types.push(r.spec.type_);
    }
}
