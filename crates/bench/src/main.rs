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

mod operator;
mod report;
mod update;

use operator::Operator;
use report::{per_verb, print_detail, print_latency_table, print_table};
use update::{UpdateResult, measure_update};

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
