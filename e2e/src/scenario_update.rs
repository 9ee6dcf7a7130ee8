//! The UpdateVersion steps the scenarios under load share (`tests/tls_under_load.rs`; the same
//! steps as `tests/update_under_load.rs`, for any Pgpool): wait until a Pgpool and all its
//! pods are Ready on a catalog entry, and run one UpdateVersion request inside a load window.

use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use pgpool_api::conditions::{self, ops};
use pgpool_api::ops::UpdateVersionSpec;
use pgpool_api::{Pgpool, PgpoolOpsRequest, PgpoolPhase, PgpoolVersion, names};

use crate::cluster::{self, Cluster};
use crate::load::{LoadClient, UpdateOutcome};
use crate::scenario_request::{create_and_wait, outcome};
use crate::wait;

/// Waits until Pgpool `pgpool` is Ready on catalog entry `version` (spec, phase, `Ready`
/// condition, not paused, status observed) and exactly `replicas` pods are Ready running that
/// entry's pgpool image.
pub async fn wait_ready_on(
    cluster: &Cluster,
    pgpool: &str,
    replicas: usize,
    version: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = &cluster.client;
    let entry = Api::<PgpoolVersion>::all(client.clone())
        .get(version)
        .await
        .with_context(|| format!("PgpoolVersion {version}"))?;
    let image = entry.spec.pgpool.image.clone();
    let pgpools: Api<Pgpool> = Api::namespaced(client.clone(), &cluster.namespace);
    let wanted = version.to_string();
    wait::for_object(
        &pgpools,
        pgpool,
        &format!("Pgpool {pgpool} Ready on {version}"),
        timeout,
        move |p: &Pgpool| {
            p.spec.version == wanted
                && p.status.as_ref().is_some_and(|s| {
                    s.phase == Some(PgpoolPhase::Ready)
                        && conditions::is_true(&s.conditions, conditions::pgpool::READY)
                        && conditions::get(&s.conditions, conditions::pgpool::PAUSED).is_none()
                        && s.observed_generation >= p.metadata.generation
                })
        },
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &cluster.namespace);
    wait::for_list(
        &pods,
        &names::selector_string(pgpool),
        &format!("{replicas} pods Ready on {image}"),
        timeout,
        |pods: &[Pod]| pods.len() == replicas && pods.iter().all(|p| pod_ready_on(p, &image)),
        describe_pods,
    )
    .await?;
    Ok(())
}

/// The pod runs `image` in its pgpool container, is Ready and not terminating.
pub fn pod_ready_on(pod: &Pod, image: &str) -> bool {
    pgpool_image(pod).as_deref() == Some(image)
        && pod.metadata.deletion_timestamp.is_none()
        && pod_ready(pod)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn pgpool_image(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == names::CONTAINER_PGPOOL)?
        .image
        .clone()
}

/// One line per pod: name, pgpool image, Ready or not, terminating.
pub fn describe_pods(pods: &[Pod]) -> String {
    let list: Vec<String> = pods
        .iter()
        .map(|p| {
            format!(
                "{} {} {}{}",
                p.metadata.name.clone().unwrap_or_default(),
                pgpool_image(p).unwrap_or_default(),
                if pod_ready(p) { "Ready" } else { "not-ready" },
                if p.metadata.deletion_timestamp.is_some() {
                    " terminating"
                } else {
                    ""
                }
            )
        })
        .collect();
    if list.is_empty() {
        "(no pods)".into()
    } else {
        list.join("; ")
    }
}

/// One UpdateVersion request: what to update, where, and how long to wait for its end.
pub struct UpdateStep<'a> {
    /// The Pgpool.
    pub pgpool: &'a str,
    /// The request's name.
    pub request: &'a str,
    /// The catalog entry to update to.
    pub target: &'a str,
    /// The request's `spec.timeout` (`None`: the default).
    pub timeout: Option<&'a str>,
    /// How long to wait for the request's final phase.
    pub wait: Duration,
}

/// Creates the UpdateVersion request of `step` (from `examples/update-version.yaml`) inside a
/// load window named after its target, waits for its final phase, and returns what it showed.
pub async fn update_version(
    cluster: &Cluster,
    load: &LoadClient,
    step: UpdateStep<'_>,
) -> anyhow::Result<UpdateOutcome> {
    let name = step.request;
    let requests: Api<PgpoolOpsRequest> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let mut request: PgpoolOpsRequest =
        cluster::example("update-version.yaml", &cluster.namespace)?;
    request.metadata.name = Some(name.to_string());
    request.spec.database_ref.name = step.pgpool.to_string();
    request.spec.update_version = Some(UpdateVersionSpec {
        target_version: step.target.to_string(),
    });
    request.spec.timeout = step.timeout.map(str::to_string);

    load.start_window(step.target);
    let begin = Instant::now();
    let done = create_and_wait(&requests, &request, step.wait).await;
    let wall = begin.elapsed();
    let stats = load.stop_window().await.unwrap_or_default();
    let done = done?;
    if let Some(failed) = done
        .status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, ops::FAILED))
    {
        println!("    {name} Failed: {}", failed.message);
    }
    Ok(outcome(
        format!("{name} ({})", step.target),
        &done,
        wall,
        stats,
    ))
}
