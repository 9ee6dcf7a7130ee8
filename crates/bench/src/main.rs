//! Benchmark of both operators: the real `pgpool-provisioner` and `pgpool-ops-manager`
//! binaries run as processes against the testkit API server on 127.0.0.1 (with its simulated
//! kubelet making pods Ready at once), and this program measures what a user pays:
//!
//! 1. provisioning throughput: N Pgpools created at once, time until all are Ready, and API
//!    requests per Pgpool by verb;
//! 2. steady state: requests per minute with N Ready Pgpools and nothing changing;
//! 3. update overhead: UpdateVersion of a Pgpool with 1, 3 and 9 replicas, wall time, the part
//!    before the first eviction, the ops-manager's time from one replacement pod being Ready to
//!    the next eviction, and its API writes per pod (pods become Ready at once, so this is the
//!    operators' own overhead); once without latency in every run, and once more under
//!    testkit's latency model of a real kube-apiserver (`testkit::Latency::kube_apiserver`);
//! 4. memory: peak RSS of each operator process;
//! 5. scaling: all of the above for each N.
//!
//! `make bench` builds the binaries in release mode and runs this.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use pgpool_api::{AppBinding, OpsRequestPhase, PgpoolOpsRequest, PgpoolPhase, PgpoolVersion};
use testkit::{Kubelet, KubeletConfig, Latency, RequestCounts, ServerConfig, TestServer};

const NS: &str = "bench";
const PROVISIONER: &str = "pgpool-provisioner";
const OPS_MANAGER: &str = "pgpool-ops-manager";

#[derive(Parser, Debug)]
#[command(about = "Measure the pgpool operators against the in-memory API server")]
struct Args {
    /// Numbers of Pgpools to provision, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    sizes: Vec<usize>,
    /// Replica counts of the Pgpools whose UpdateVersion is timed in every run.
    #[arg(long, value_delimiter = ',', default_value = "1,3,9")]
    update_replicas: Vec<i32>,
    /// Length of the steady-state window, in seconds.
    #[arg(long, default_value_t = 20)]
    steady_seconds: u64,
    /// `--resync-seconds` of the provisioner: how often it looks again at every Pgpool and
    /// PetSet although nothing changed (default 300; shorter here so that the steady-state
    /// window covers resyncs of all of them).
    #[arg(long, default_value_t = 8)]
    resync_seconds: u64,
    /// Directory holding the operator binaries [default: this program's own directory,
    /// where `cargo build --release` puts them too].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also print which requests the operators made (by agent, verb and resource).
    #[arg(long)]
    detail: bool,
    /// Longest time any single wait may take, in seconds.
    #[arg(long, default_value_t = 240)]
    timeout_seconds: u64,
    /// `--log-level` of the operators (a tracing filter such as `info,kube=debug`).
    #[arg(long, default_value = "warn")]
    operator_log_level: String,
    /// Write each operator's log to `<dir>/<binary>-<N>.log` instead of this program's stderr.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Read delay of the latency model of the update run under latency, in milliseconds
    /// (default: `testkit::Latency::kube_apiserver`, like the two below).
    #[arg(long, default_value_t = Latency::kube_apiserver().read.as_millis() as u64)]
    latency_read_ms: u64,
    /// Write delay of the latency model, in milliseconds.
    #[arg(long, default_value_t = Latency::kube_apiserver().write.as_millis() as u64)]
    latency_write_ms: u64,
    /// Watch-event delay of the latency model, in milliseconds.
    #[arg(long, default_value_t = Latency::kube_apiserver().watch_event.as_millis() as u64)]
    latency_watch_ms: u64,
    /// Skip the update run under the latency model.
    #[arg(long)]
    no_latency_run: bool,
    /// Run each operator under this command (for profiling), `{name}` replaced by the binary
    /// name, e.g. `--wrap "heaptrack -o /tmp/{name}"`. Peak RSS is then the wrapper's.
    #[arg(long)]
    wrap: Option<String>,
}

impl Args {
    fn bin_dir(&self) -> &Path {
        self.bin_dir.as_deref().unwrap_or(Path::new("."))
    }

    fn latency(&self) -> Latency {
        Latency {
            read: Duration::from_millis(self.latency_read_ms),
            write: Duration::from_millis(self.latency_write_ms),
            watch_event: Duration::from_millis(self.latency_watch_ms),
        }
    }
}

/// Results of one run.
#[derive(Debug, Default)]
struct RunResult {
    n: usize,
    provision_secs: f64,
    /// Until the operators made no request for [`QUIET`].
    quiet_secs: f64,
    /// CPU seconds used from creation until quiet, per process.
    cpu_secs: Vec<(&'static str, f64)>,
    requests_per_pgpool: BTreeMap<String, f64>,
    steady_per_minute: f64,
    steady_writes: u64,
    /// Reconciles in the steady-state window: (Pgpool, PetSet).
    steady_reconciles: (f64, f64),
    updates: Vec<UpdateResult>,
    rss_kib: BTreeMap<&'static str, u64>,
    anon_kib: BTreeMap<&'static str, u64>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.bin_dir.is_none() {
        let exe = std::env::current_exe().context("where is this program")?;
        args.bin_dir = exe.parent().map(Path::to_path_buf);
    }
    for bin in [PROVISIONER, OPS_MANAGER] {
        let path = args.bin_dir().join(bin);
        if !path.exists() {
            bail!(
                "{} not found: build it first (`cargo build --release --bins`) or pass --bin-dir",
                path.display()
            );
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "pgpool-operator benchmark: {cores} cores, sizes {:?}",
        args.sizes
    );
    let mut results = Vec::new();
    let latency_updates = if args.no_latency_run {
        Vec::new()
    } else {
        eprintln!("== updates under the latency model");
        run_latency(&args)
            .await
            .context("update run under latency")?
    };
    for &n in &args.sizes {
        eprintln!("== N = {n}");
        results.push(
            run(&args, n)
                .await
                .with_context(|| format!("run with N = {n}"))?,
        );
    }
    print_table(&results, &args);
    if !latency_updates.is_empty() {
        print_latency_table(&latency_updates, args.latency());
    }
    Ok(())
}

/// UpdateVersion of 1, 3 and 9 replicas against a server with the latency model on, with no
/// other Pgpools.
async fn run_latency(args: &Args) -> anyhow::Result<Vec<UpdateResult>> {
    let timeout = Duration::from_secs(args.timeout_seconds);
    let server = TestServer::with_config(ServerConfig {
        latency: args.latency(),
        crds: pgpool_api::crds::all(),
        ..ServerConfig::default()
    });
    let listening = server.listen().await?;
    let _kubelet = Kubelet::start(
        server.client_as("kubelet"),
        KubeletConfig::default().ready_delay(Duration::ZERO),
    );
    let client = server.client_as("bench");
    seed(&client).await?;
    let mut provisioner = Operator::spawn(args, 0, PROVISIONER, listening.kubeconfig_path())?;
    let mut ops = Operator::spawn(args, 0, OPS_MANAGER, listening.kubeconfig_path())?;
    provisioner.wait_ready(timeout).await?;
    ops.wait_ready(timeout).await?;
    let mut updates = Vec::new();
    for &replicas in &args.update_replicas {
        updates.push(measure_update(&server, &client, replicas, timeout).await?);
    }
    provisioner.stop();
    ops.stop();
    Ok(updates)
}

/// One timed UpdateVersion. Times come from a watch of the Pgpool's pods (every event arrives
/// equally late, so the differences are exact).
#[derive(Clone, Debug)]
struct UpdateResult {
    replicas: i32,
    /// From the request's creation to phase Successful.
    wall_secs: f64,
    /// From the request's creation to the first eviction (the pod's deletionTimestamp).
    before_first_eviction: Option<f64>,
    /// Mean time from a replacement pod being Ready to the eviction of the next pod: the
    /// ops-manager's overhead per pod (none with one replica).
    ready_to_next_eviction: Option<f64>,
    /// From the last replacement pod being Ready to phase Successful.
    last_ready_to_done: Option<f64>,
    /// API writes of the ops-manager during the update, events included.
    ops_writes: u64,
}

async fn measure_update(
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

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn is_ready(p: &Pod) -> bool {
    !is_terminating(p)
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn run(args: &Args, n: usize) -> anyhow::Result<RunResult> {
    let timeout = Duration::from_secs(args.timeout_seconds);
    let server = TestServer::with_crds(pgpool_api::crds::all());
    let listening = server.listen().await?;
    let _kubelet = Kubelet::start(
        server.client_as("kubelet"),
        KubeletConfig::default().ready_delay(Duration::ZERO),
    );
    let client = server.client_as("bench");
    seed(&client).await?;

    let mut provisioner = Operator::spawn(args, n, PROVISIONER, listening.kubeconfig_path())?;
    let mut ops = Operator::spawn(args, n, OPS_MANAGER, listening.kubeconfig_path())?;
    provisioner.wait_ready(timeout).await?;
    ops.wait_ready(timeout).await?;

    let mut result = RunResult {
        n,
        ..RunResult::default()
    };

    // 1. provisioning throughput
    let mark = server.requests().mark();
    let cpu_before = [
        cpu_seconds(std::process::id()),
        cpu_seconds(provisioner.child.id()),
        cpu_seconds(ops.child.id()),
    ];
    let started = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("pp-{i:05}")).collect();
    let pgpools: Api<pgpool_api::Pgpool> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = pgpools.clone();
            async move {
                api.create(&PostParams::default(), &pgpool(&name, "4.5.3", 1))
                    .await
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    wait_pgpools_ready(&pgpools, &names, timeout).await?;
    result.provision_secs = started.elapsed().as_secs_f64();
    // the operators go on a little (e.g. PetSet status): count until they are quiet
    let quiet = wait_quiet(&server, QUIET, timeout).await;
    result.quiet_secs = quiet.duration_since(started).as_secs_f64();
    result.cpu_secs = vec![
        (
            "bench process (API server, kubelet)",
            cpu_seconds(std::process::id()) - cpu_before[0],
        ),
        (
            PROVISIONER,
            cpu_seconds(provisioner.child.id()) - cpu_before[1],
        ),
        (OPS_MANAGER, cpu_seconds(ops.child.id()) - cpu_before[2]),
    ];
    let counts = server.requests().since(&mark);
    result.requests_per_pgpool = per_verb(&counts, n);
    if args.detail {
        print_detail(
            "provisioning",
            &counts,
            &server.requests().records_since(&mark),
        );
    }

    // 2. steady state: a measurement window (after the operators went quiet), nothing to
    // wait for.
    let mark = server.requests().mark();
    let reconciles_before = provisioner.reconciles();
    let window = Duration::from_secs(args.steady_seconds);
    tokio::time::sleep(window).await;
    let counts = server.requests().since(&mark);
    let reconciles_after = provisioner.reconciles();
    result.steady_reconciles = (
        reconciles_after.0 - reconciles_before.0,
        reconciles_after.1 - reconciles_before.1,
    );
    let operator_requests = operator_total(&counts, |_| true);
    result.steady_per_minute = operator_requests as f64 * 60.0 / window.as_secs_f64();
    result.steady_writes = operator_total(&counts, |k| k.verb.is_write());
    if args.detail {
        print_detail(
            "steady state",
            &counts,
            &server.requests().records_since(&mark),
        );
    }

    // 3. update overhead
    for &replicas in &args.update_replicas {
        result
            .updates
            .push(measure_update(&server, &client, replicas, timeout).await?);
    }

    // 4. memory
    for op in [&provisioner, &ops] {
        result.rss_kib.insert(op.name, op.peak_rss_kib()?);
        result.anon_kib.insert(op.name, op.peak_anon_kib());
    }
    provisioner.stop();
    ops.stop();
    Ok(result)
}

/// How long the operators must make no request to count as quiet.
const QUIET: Duration = Duration::from_secs(1);

/// Waits until the operators have made no request for `quiet` (at most `timeout`); returns
/// when their last request was seen.
async fn wait_quiet(server: &TestServer, quiet: Duration, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    let count = || operator_total(&server.requests().snapshot(), |_| true);
    let mut last = count();
    let mut last_change = Instant::now();
    while last_change.elapsed() < quiet && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = count();
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    last_change
}

/// CPU time (user + system) a process has used, in seconds (from `/proc/<pid>/stat`, whose
/// clock ticks are USER_HZ = 100 on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // fields after the command name (which is in parentheses and may hold spaces)
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn is_operator(agent: &str) -> bool {
    agent.starts_with(PROVISIONER) || agent.starts_with(OPS_MANAGER)
}

fn operator_total(counts: &RequestCounts, pred: impl Fn(&testkit::RequestKey) -> bool) -> u64 {
    counts.sum(|k| is_operator(&k.agent) && pred(k))
}

fn print_detail(phase: &str, counts: &RequestCounts, records: &[testkit::RequestRecord]) {
    let mut rows: Vec<(String, u64)> = counts
        .iter()
        .filter(|(k, _)| is_operator(&k.agent))
        .map(|(k, c)| {
            let agent = k.agent.split('/').next().unwrap_or_default();
            (
                format!("{agent} {} {}", k.verb.as_str(), k.resource_path()),
                c,
            )
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    eprintln!("-- requests during {phase}:");
    for (key, count) in rows {
        eprintln!("{count:>8}  {key}");
    }
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| is_operator(&r.key.agent) && r.code >= 400)
    {
        let agent = r.key.agent.split('/').next().unwrap_or_default();
        let key = format!(
            "{agent} {} {} -> {}",
            r.key.verb.as_str(),
            r.key.resource_path(),
            r.code
        );
        *failed.entry(key).or_default() += 1;
    }
    if !failed.is_empty() {
        eprintln!("-- failed requests during {phase} (included above):");
        for (key, count) in failed {
            eprintln!("{count:>8}  {key}");
        }
    }
}

fn per_verb(counts: &RequestCounts, n: usize) -> BTreeMap<String, f64> {
    let mut by_verb = BTreeMap::new();
    for (key, count) in counts.iter() {
        if is_operator(&key.agent) {
            *by_verb.entry(key.verb.as_str().to_string()).or_insert(0.0) += count as f64;
        }
    }
    for v in by_verb.values_mut() {
        *v /= n as f64;
    }
    by_verb
}

async fn seed(client: &Client) -> anyhow::Result<()> {
    let pp = PostParams::default();
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &pp,
        &serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?,
    )
    .await?;
    let versions: Api<PgpoolVersion> = Api::all(client.clone());
    for (v, allow) in [
        ("4.5.3", ">= 4.5.3, <= 4.6.0"),
        ("4.6.0", ">= 4.6.0, <= 4.6.0"),
    ] {
        versions
            .create(&pp, &pgpool_api::fixtures::pgpool_version(v, allow))
            .await?;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    secrets
        .create(
            &pp,
            &testkit::fixtures::secret(
                NS,
                "ha-postgres-auth",
                [("username", "postgres"), ("password", "bench-password")],
            ),
        )
        .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    services
        .create(
            &pp,
            &testkit::fixtures::service(NS, "ha-postgres", [("app", "postgres")], 5432),
        )
        .await?;
    let bindings: Api<AppBinding> = Api::namespaced(client.clone(), NS);
    let text = std::fs::read_to_string(repo_root().join("examples/appbinding.yaml"))?;
    let mut binding: AppBinding = serde_yaml::from_str(&text)?;
    binding.metadata.namespace = Some(NS.into());
    bindings.create(&pp, &binding).await?;
    Ok(())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pgpool(name: &str, version: &str, replicas: i32) -> pgpool_api::Pgpool {
    pgpool_api::fixtures::pgpool(NS, name, version, replicas)
}

fn update_request(pgpool: &str) -> PgpoolOpsRequest {
    let mut r = PgpoolOpsRequest::new(
        &format!("{pgpool}-update"),
        serde_json::from_value(serde_json::json!({
            "type": "UpdateVersion",
            "databaseRef": {"name": pgpool},
            "updateVersion": {"targetVersion": "4.6.0"}
        }))
        .expect("static spec"),
    );
    r.metadata.namespace = Some(NS.into());
    r
}

async fn wait_pgpools_ready(
    api: &Api<pgpool_api::Pgpool>,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut ready = HashSet::new();
    let stream = watcher(api.clone(), watcher::Config::default()).applied_objects();
    let mut stream = std::pin::pin!(stream);
    let wait = async {
        while let Some(p) = stream.try_next().await? {
            let name = p.name_any();
            if !wanted.contains(name.as_str()) {
                continue;
            }
            if p.status.as_ref().and_then(|s| s.phase) == Some(PgpoolPhase::Ready) {
                ready.insert(name);
                if ready.len() == wanted.len() {
                    return Ok(());
                }
            }
        }
        bail!("watch ended")
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => bail!(
            "only {} of {} Pgpools Ready after {timeout:?}",
            ready.len(),
            wanted.len()
        ),
    }
}

async fn wait_request_final(
    api: &Api<PgpoolOpsRequest>,
    pgpool: &str,
    timeout: Duration,
) -> anyhow::Result<OpsRequestPhase> {
    let name = format!("{pgpool}-update");
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api.clone(), cfg).applied_objects();
    let mut stream = std::pin::pin!(stream);
    let wait = async {
        while let Some(r) = stream.try_next().await? {
            if let Some(phase) = r.status.as_ref().and_then(|s| s.phase)
                && phase.is_final()
            {
                return Ok(phase);
            }
        }
        bail!("watch ended")
    };
    tokio::time::timeout(timeout, wait)
        .await
        .with_context(|| format!("{name} not finished after {timeout:?}"))?
}

/// An operator binary running as a child process.
struct Operator {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    /// Highest RssAnon seen by the sampler (KiB).
    peak_anon: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Operator {
    fn spawn(args: &Args, n: usize, name: &'static str, kubeconfig: &Path) -> anyhow::Result<Self> {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        // The operators log to stdout: into the log file, or onto this program's stderr
        // (this program's stdout carries the tables).
        let log: std::os::fd::OwnedFd = match &args.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join(format!("{name}-{n}.log"));
                std::fs::File::create(&path)
                    .with_context(|| format!("create {}", path.display()))?
                    .into()
            }
            None => std::io::stderr().as_fd().try_clone_to_owned()?,
        };
        let stderr = Stdio::from(log.try_clone()?);
        let binary = args.bin_dir().join(name);
        let mut command = match &args.wrap {
            // e.g. `heaptrack -o /tmp/{name}`: the wrapper's words, then the binary
            Some(wrap) => {
                let mut words = wrap.split_whitespace().map(|w| w.replace("{name}", name));
                let mut c = Command::new(words.next().context("--wrap is empty")?);
                c.args(words).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let child = command
            // its own process group, so that stop() reaches a wrapper's child too
            .process_group(0)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("POD_NAMESPACE")
            .env_remove("WATCH_NAMESPACE")
            .args([
                "--leader-elect=false",
                &format!("--log-level={}", args.operator_log_level),
                &format!("--metrics-bind-address={addr}"),
            ])
            .args(
                (name == PROVISIONER).then(|| format!("--resync-seconds={}", args.resync_seconds)),
            )
            .stdout(Stdio::from(log))
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        // The kernel keeps the peak of the whole resident set (VmHWM), not of its parts:
        // sample the anonymous part (heap, stacks) to tell it from the mapped binary.
        let peak_anon = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = {
            let (peak, pid) = (peak_anon.clone(), child.id());
            tokio::spawn(async move {
                loop {
                    if let Some(kib) = proc_status_kib(pid, "RssAnon:") {
                        peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Ok(Self {
            name,
            child,
            addr,
            peak_anon,
            sampler,
        })
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited with {status}", self.name);
            }
            if http_get(self.addr, "/readyz").is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} not ready after {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reconciles the provisioner counted so far: (Pgpool controller, PetSet controller),
    /// from its metrics.
    fn reconciles(&self) -> (f64, f64) {
        let Ok((_, body)) = http_get(self.addr, "/metrics") else {
            return (0.0, 0.0);
        };
        // `pgpool_operator_reconcile_total{controller="<controller>",result="..."} <n>`
        let sum = |controller: &str| -> f64 {
            let metric = "pgpool_operator_reconcile_total{";
            let label = format!("controller=\"{controller}\"");
            body.lines()
                .filter(|l| l.starts_with(metric) && l.contains(&label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        (sum("pgpool"), sum("petset"))
    }

    /// Peak resident set size (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.child.id(), "VmHWM:").context("no VmHWM in /proc status")
    }

    /// Highest anonymous resident memory (RssAnon) sampled, in KiB.
    fn peak_anon_kib(&self) -> u64 {
        if let Some(kib) = proc_status_kib(self.child.id(), "RssAnon:") {
            self.peak_anon
                .fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
        }
        self.peak_anon.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn stop(&mut self) {
        // SIGTERM, then wait: the operators shut down gracefully.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// A `kB` line of `/proc/<pid>/status`.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.sampler.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let code = body
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body))
}

fn print_table(results: &[RunResult], args: &Args) {
    println!();
    println!("## Provisioning (pods Ready at once)");
    println!(
        "| N | time to all Ready (s) | Pgpools/s | operators quiet after (s) | API requests per Pgpool (by verb) | total |"
    );
    println!("|---:|---:|---:|---:|---|---:|");
    for r in results {
        let verbs: Vec<String> = r
            .requests_per_pgpool
            .iter()
            .map(|(v, c)| format!("{v} {c:.1}"))
            .collect();
        println!(
            "| {} | {:.2} | {:.0} | {:.2} | {} | {:.1} |",
            r.n,
            r.provision_secs,
            r.n as f64 / r.provision_secs,
            r.quiet_secs,
            verbs.join(", "),
            r.requests_per_pgpool.values().sum::<f64>()
        );
    }
    println!();
    println!("## CPU time from creation until the operators are quiet (s)");
    let header: Vec<&str> = results
        .first()
        .map(|r| r.cpu_secs.iter().map(|(p, _)| *p).collect())
        .unwrap_or_default();
    println!("| N | {} |", header.join(" | "));
    println!("|---:|{}", "---:|".repeat(header.len()));
    for r in results {
        let cells: Vec<String> = r.cpu_secs.iter().map(|(_, c)| format!("{c:.2}")).collect();
        println!("| {} | {} |", r.n, cells.join(" | "));
    }
    println!();
    println!(
        "## Steady state ({} s window, nothing changing, provisioner resync every {} s)",
        args.steady_seconds, args.resync_seconds
    );
    println!(
        "| N | operator requests/min | writes in window | reconciles in window (Pgpool / PetSet) |"
    );
    println!("|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {} | {:.1} | {} | {:.0} / {:.0} |",
            r.n, r.steady_per_minute, r.steady_writes, r.steady_reconciles.0, r.steady_reconciles.1
        );
    }
    println!();
    println!("## UpdateVersion 4.5.3 -> 4.6.0, no API latency (pods Ready at once)");
    print_update_header(true);
    for r in results {
        print_update_rows(Some(r.n), &r.updates);
    }
    println!();
    println!("## Peak RSS (MiB): whole process (VmHWM), and its anonymous part (heap, stacks)");
    println!("| N | {PROVISIONER} | anon | {OPS_MANAGER} | anon |");
    println!("|---:|---:|---:|---:|---:|");
    let mib =
        |m: &BTreeMap<&'static str, u64>, k: &str| m.get(k).copied().unwrap_or(0) as f64 / 1024.0;
    for r in results {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.n,
            mib(&r.rss_kib, PROVISIONER),
            mib(&r.anon_kib, PROVISIONER),
            mib(&r.rss_kib, OPS_MANAGER),
            mib(&r.anon_kib, OPS_MANAGER),
        );
    }
}

fn print_latency_table(updates: &[UpdateResult], latency: Latency) {
    println!();
    println!(
        "## UpdateVersion 4.5.3 -> 4.6.0 under the latency model (reads {} ms, writes {} ms, \
         watch events {} ms; pods Ready at once, no other Pgpools)",
        latency.read.as_millis(),
        latency.write.as_millis(),
        latency.watch_event.as_millis()
    );
    print_update_header(false);
    print_update_rows(None, updates);
}

fn print_update_header(with_n: bool) {
    let n = if with_n { "| N " } else { "" };
    println!(
        "{n}| replicas | wall time (s) | wall / pod (s) | before 1st eviction (s) | \
         per pod: Ready -> next eviction (s) | last Ready -> Successful (s) | \
         ops-manager writes | writes per pod |"
    );
    println!(
        "{}|---:|---:|---:|---:|---:|---:|---:|---:|",
        if with_n { "|---:" } else { "" }
    );
}

/// Rows of one run. Writes per pod: what one more pod adds, `(writes(r) - writes(1)) / (r - 1)`
/// against the run's 1-replica update.
fn print_update_rows(n: Option<usize>, updates: &[UpdateResult]) {
    let single = updates
        .iter()
        .find(|u| u.replicas == 1)
        .map(|u| u.ops_writes);
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    for u in updates {
        let per_pod = match single {
            Some(w1) if u.replicas > 1 => format!(
                "{:.1}",
                (u.ops_writes as f64 - w1 as f64) / f64::from(u.replicas - 1)
            ),
            _ => "-".to_string(),
        };
        println!(
            "{}| {} | {:.3} | {:.3} | {} | {} | {} | {} | {} |",
            n.map(|n| format!("| {n} ")).unwrap_or_default(),
            u.replicas,
            u.wall_secs,
            u.wall_secs / f64::from(u.replicas),
            opt(u.before_first_eviction),
            opt(u.ready_to_next_eviction),
            opt(u.last_ready_to_done),
            u.ops_writes,
            per_pod
        );
    }
}
