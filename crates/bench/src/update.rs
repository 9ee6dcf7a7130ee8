//! One timed UpdateVersion, measured from a watch of its pods.

use super::*;

/// One timed UpdateVersion. Times come from a watch of the Pgpool's pods (every event arrives
/// equally late, so the differences are exact).
#[derive(Clone, Debug)]
pub(crate) struct UpdateResult {
    pub(crate) replicas: i32,
    /// From the request's creation to phase Successful.
    pub(crate) wall_secs: f64,
    /// From the request's creation to the first eviction (the pod's deletionTimestamp).
    pub(crate) before_first_eviction: Option<f64>,
    /// Mean time from a replacement pod being Ready to the eviction of the next pod: the
    /// ops-manager's overhead per pod (none with one replica).
    pub(crate) ready_to_next_eviction: Option<f64>,
    /// From the last replacement pod being Ready to phase Successful.
    pub(crate) last_ready_to_done: Option<f64>,
    /// API writes of the ops-manager during the update, events included.
    pub(crate) ops_writes: u64,
}

pub(crate) async fn measure_update(
    server: &TestServer,
    client: &Client,
    replicas: i32,
    timeout: Duration,
) -> anyhow::Result<UpdateResult> {
    let name = format!("upd-{replicas}");
    let pgpools: Api<pgpool_api::Pgpool> = Api::namespaced(client.clone(), NS);
    pgpools
        .create(&PostParams::default(), &pgpool(&name, "4.5.3", replicas))
        .await?;
    wait_pgpools_ready(&pgpools, std::slice::from_ref(&name), timeout).await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let wp = WatchParams::default().labels(&pgpool_api::names::selector_string(&name));
    let mut stream = pods.watch(&wp, "0").await?.boxed();
    // the current pods come first (ADDED): they are the ones to be replaced
    let mut old = HashSet::new();
    while old.len() < usize::try_from(replicas).unwrap_or(0) {
        match tokio::time::timeout(timeout, stream.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(p)))) if !is_terminating(&p) => {
                old.insert(p.metadata.uid.unwrap_or_default());
            }
            Ok(Ok(Some(_))) => {}
            _ => bail!("no pods of {name} seen"),
        }
    }
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let pod_times = tokio::spawn(async move {
        let mut evicted: Vec<(Instant, String)> = Vec::new();
        let mut ready: Vec<(Instant, String)> = Vec::new();
        loop {
            let ev = tokio::select! {
                _ = &mut stopped => break,
                ev = stream.try_next() => match ev {
                    Ok(Some(ev)) => ev,
                    _ => break,
                },
            };
            let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = ev else {
                continue;
            };
            let now = Instant::now();
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if old.contains(&uid) {
                if is_terminating(&p) && !evicted.iter().any(|(_, u)| *u == uid) {
                    evicted.push((now, uid));
                }
            } else if is_ready(&p) && !ready.iter().any(|(_, u)| *u == uid) {
                ready.push((now, uid));
            }
        }
        (evicted, ready)
    });

    let mark = server.requests().mark();
    let requests: Api<PgpoolOpsRequest> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    requests
        .create(&PostParams::default(), &update_request(&name))
        .await?;
    let phase = wait_request_final(&requests, &name, timeout).await?;
    let done = Instant::now();
    if phase != OpsRequestPhase::Successful {
        bail!("UpdateVersion of {name} ended {phase:?}");
    }
    let ops_writes = server
        .requests()
        .since(&mark)
        .sum(|k| k.agent.starts_with(OPS_MANAGER) && k.verb.is_write());
    // the last replacement's Ready event came before the request's final status
    let _ = stop.send(());
    let (evicted, ready) = pod_times.await.context("pod watch")?;
    let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
    let gaps: Vec<f64> = ready
        .iter()
        .zip(evicted.iter().skip(1))
        .map(|((r, _), (e, _))| secs(*r, *e))
        .collect();
    Ok(UpdateResult {
        replicas,
        wall_secs: secs(started, done),
        before_first_eviction: evicted.first().map(|(t, _)| secs(started, *t)),
        ready_to_next_eviction: (!gaps.is_empty())
            .then(|| gaps.iter().sum::<f64>() / gaps.len() as f64),
        last_ready_to_done: ready.last().map(|(t, _)| secs(*t, done)),
        ops_writes,
    })
}

pub(crate) fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

pub(crate) fn is_ready(p: &Pod) -> bool {
    !is_terminating(p)
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
