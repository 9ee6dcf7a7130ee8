//! One ops request of any type under client load: created inside a load window, waited for
//! until it ends, required to end `Successful`, then the caller's check; reported as an
//! [`UpdateOutcome`] (wall time, pod restarts, the window's queries).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::Api;
use kube::api::PostParams;
use pgpool_api::conditions::{self, ops};
use pgpool_api::{OpsRequestPhase, PgpoolOpsRequest};

use crate::cluster::Cluster;
use crate::load::{LoadClient, UpdateOutcome, WindowStats, pod_restarts};
use crate::wait;

/// Creates `request` (in its namespace, through `requests`) and waits, at most `timeout`,
/// for its final phase; returns it ended, whatever the phase.
pub async fn create_and_wait(
    requests: &Api<PgpoolOpsRequest>,
    request: &PgpoolOpsRequest,
    timeout: Duration,
) -> anyhow::Result<PgpoolOpsRequest> {
    let name = request
        .metadata
        .name
        .clone()
        .context("the request has no name")?;
    requests
        .create(&PostParams::default(), request)
        .await
        .with_context(|| format!("creating PgpoolOpsRequest {name}"))?;
    wait::for_object(
        requests,
        &name,
        &format!("PgpoolOpsRequest {name} ended"),
        timeout,
        |r: &PgpoolOpsRequest| {
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(OpsRequestPhase::is_final)
        },
    )
    .await
}

/// What the ended request `done` showed: its phase, `wall` time, pod restarts and the load
/// window's `stats`, under `name`.
pub fn outcome(
    name: String,
    done: &PgpoolOpsRequest,
    wall: Duration,
    stats: WindowStats,
) -> UpdateOutcome {
    let conds = done
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    UpdateOutcome {
        name,
        phase: done.status.as_ref().and_then(|s| s.phase),
        wall,
        restarts: pod_restarts(conds),
        load: stats,
    }
}

/// Creates `request`, waits (at most `timeout`) for it to end `Successful`, runs `check` on
/// the ended request, all inside one load window of `load`.
pub async fn run_request<F, Fut>(
    cluster: &Cluster,
    load: &LoadClient,
    request: &PgpoolOpsRequest,
    timeout: Duration,
    check: F,
) -> anyhow::Result<UpdateOutcome>
where
    F: FnOnce(PgpoolOpsRequest) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let requests: Api<PgpoolOpsRequest> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let name = request.metadata.name.clone().unwrap_or_default();
    load.start_window(&name);
    let begin = Instant::now();
    let done = async {
        let done = create_and_wait(&requests, request, timeout).await?;
        let phase = done.status.as_ref().and_then(|s| s.phase);
        if phase != Some(OpsRequestPhase::Successful) {
            let why = done
                .status
                .as_ref()
                .and_then(|s| conditions::get(&s.conditions, ops::FAILED))
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            bail!("PgpoolOpsRequest {name} ended {phase:?} {why}");
        }
        check(done.clone()).await?;
        anyhow::Ok(done)
    }
    .await;
    let wall = begin.elapsed();
    let stats = load.stop_window().await.unwrap_or_default();
    let done = done?;
    let label = format!("{name} ({})", done.spec.type_.as_str());
    Ok(outcome(label, &done, wall, stats))
}
