//! A real pgpool-II pod (root only): PostgreSQL 15 runs on the host behind a selector-less
//! Service published by an EndpointSlice; the real provisioner controllers turn a Pgpool into
//! a PetSet and a pod against testkit's API server; the node runs the pod from the real
//! pgpool-II binaries of each line (4.3.x from Debian bookworm, 4.6.x and 4.7.x from
//! `scripts/install-pgpool-versions.sh`) through the shipped `images.example.yaml`; the pod
//! becomes Ready through its real readiness probe, `psql` on the host gets `SELECT 1` through
//! the Pgpool Service's ClusterIP, the liveness probe leaves pgpool's log clean, and a pod
//! deleted with a session open goes through preStop (drain, then pgpool's fast shutdown) and is
//! replaced. Skips with one line without root, PostgreSQL 15 or a line's binaries (in CI a
//! missing piece fails the test).

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use kube::api::{Api, ListParams, PostParams};
use pgpool_api::{AppBinding, Pgpool, PgpoolVersion, names};
use serde_json::json;

use common::*;

const NS: &str = "demo";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// (catalog version, the binary its image maps to, relative to the repository or absolute)
const LINES: [(&str, &str); 3] = [
    ("4.3.5", "/usr/sbin/pgpool"),
    ("4.6.1", ".cache/pgpool/4.6/bin/pgpool"),
    ("4.7.3", ".cache/pgpool/4.7/bin/pgpool"),
];

fn image(version: &str) -> String {
    pgpool_api::fixtures::pgpool_image(version)
}
const PASSWORD: &str = "s3cret-backend";

fn in_ci() -> bool {
    !matches!(
        std::env::var("CI").as_deref(),
        Err(_) | Ok("") | Ok("false") | Ok("0")
    )
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Kills PostgreSQL when the test ends, however it ends.
struct Postgres(Child);

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// PostgreSQL 15 as `postgres`, listening on `addr:port` (the node's bridge address, as a
/// backend outside the cluster would be reachable), the `postgres` role with a password.
fn start_postgres(dir: &Path, addr: &str, port: u16) -> Postgres {
    let (uid, gid) = postgres_ids();
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    let data = dir.join("data");
    let as_postgres = |program: &str| {
        let mut c = Command::new(Path::new(PG_BIN).join(program));
        c.uid(uid).gid(gid).env("HOME", dir);
        c
    };
    let out = as_postgres("initdb")
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--locale=C", "--no-sync"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = format!(
        "listen_addresses = '{addr}'\nport = {port}\nunix_socket_directories = '{}'\nfsync = off\n",
        dir.display()
    );
    let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    text.push_str(&conf);
    std::fs::write(data.join("postgresql.conf"), text).unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhost all all 0.0.0.0/0 scram-sha-256\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("postgres.log")).unwrap();
    let child = as_postgres("postgres")
        .arg("-D")
        .arg(&data)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pg = Postgres(child);
    let sock = dir.to_string_lossy().into_owned();
    let ready = || {
        Command::new(Path::new(PG_BIN).join("pg_isready"))
            .args(["-q", "-h", &sock, "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "PostgreSQL did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sql = format!("ALTER ROLE postgres PASSWORD '{PASSWORD}'");
    let out = Command::new(Path::new(PG_BIN).join("psql"))
        .args([
            "-X",
            "-h",
            &sock,
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-c",
            &sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn select_1(host: &str, port: u16) -> Result<String, String> {
    let out = Command::new(Path::new(PG_BIN).join("psql"))
        .args(["-X", "-w", "-A", "-t", "-h", host, "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-c", "SELECT 1"])
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "3")
        .env("PGSSLMODE", "disable")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn install_backend(client: &kube::Client, version: &str, gateway: &str, pg_port: u16) {
    let pp = PostParams::default();
    let version: PgpoolVersion = serde_json::from_value(json!({
        "apiVersion": "catalog.kubedb.com/v1alpha1",
        "kind": "PgpoolVersion",
        "metadata": {"name": version},
        "spec": {
            "version": version,
            "pgpool": {"image": image(version)},
            "securityContext": {"runAsUser": 70}
        }
    }))
    .unwrap();
    Api::<PgpoolVersion>::all(client.clone())
        .create(&pp, &version)
        .await
        .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(
            &pp,
            &testkit::fixtures::secret(
                NS,
                "ha-postgres-auth",
                [("username", "postgres"), ("password", PASSWORD)],
            ),
        )
        .await
        .unwrap();
    // selector-less: the endpoints are published by hand, as for a database outside
    let svc = Service {
        metadata: testkit::fixtures::meta(NS, "ha-postgres"),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 5432,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Api::<Service>::namespaced(client.clone(), NS)
        .create(&pp, &svc)
        .await
        .unwrap();
    let mut slice_meta = testkit::fixtures::meta(NS, "ha-postgres-1");
    slice_meta.labels = Some(
        [(
            "kubernetes.io/service-name".to_string(),
            "ha-postgres".to_string(),
        )]
        .into(),
    );
    let slice = EndpointSlice {
        metadata: slice_meta,
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec![gateway.to_string()],
            ..Endpoint::default()
        }],
        ports: Some(vec![EndpointPort {
            port: Some(i32::from(pg_port)),
            protocol: Some("TCP".into()),
            ..EndpointPort::default()
        }]),
    };
    Api::<EndpointSlice>::namespaced(client.clone(), NS)
        .create(&pp, &slice)
        .await
        .unwrap();
    let appbinding: AppBinding = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("examples/appbinding.yaml")).unwrap(),
    )
    .unwrap();
    Api::<AppBinding>::namespaced(client.clone(), NS)
        .create(&pp, &appbinding)
        .await
        .unwrap();
}

fn pod_logs(state: &Path) -> String {
    let mut out = String::new();
    for entry in walk(state) {
        if entry.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- {}\n", entry.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.ends_with("rootfs") && !p.ends_with("volumes") {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_pgpool_pods_are_ready_and_answer_select_1_through_their_service() {
    if !root_or_skip("real_pgpool_pod") {
        return;
    }
    if !Path::new(PG_BIN).join("postgres").exists() {
        let msg = format!("no PostgreSQL 15 under {PG_BIN} (scripts/install-pgpool-test-deps.sh)");
        assert!(!in_ci(), "{msg}");
        say(&format!("skipping real_pgpool_pod: {msg}"));
        return;
    }
    let map = repo().join("crates/local-node/images.example.yaml");
    let images = local_node::ImageMap::load(&map).unwrap();
    for (version, binary) in LINES {
        let binary = repo().join(binary);
        if !binary.exists() {
            let msg = format!(
                "{} missing (scripts/install-pgpool-versions.sh)",
                binary.display()
            );
            assert!(!in_ci(), "{msg}");
            say(&format!("real_pgpool_pod: skipping {version}: {msg}"));
            continue;
        }
        run_line(version, images.clone()).await;
    }
}

/// One pgpool-II line end to end.
async fn run_line(version: &str, images: local_node::ImageMap) {
    let server = testkit::TestServer::with_crds(pgpool_api::crds::all());
    let client = server.client();
    let state = tempfile::tempdir().unwrap();
    let node = node_with(client.clone(), "ltp", 3, images, state.path()).await;
    let gateway = "10.250.3.1";
    let pg_dir = tempfile::tempdir().unwrap();
    let pg_port = free_port();
    let _pg = start_postgres(pg_dir.path(), gateway, pg_port);
    install_backend(&client, version, gateway, pg_port).await;

    let registry = prometheus::Registry::new();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let config = pgpool_provisioner::ProvisionerConfig {
        namespace: None,
        concurrency: 2,
        resync: Duration::from_secs(2),
        instance: "test".into(),
        error_backoff: Duration::from_millis(200),
    };
    let provisioner = tokio::spawn({
        let client = server.client_as("pgpool-provisioner");
        async move {
            let stop = operator_kit::CancellationToken::new();
            let readiness = operator_kit::Readiness::new();
            let controllers = pgpool_provisioner::Controllers::new(&readiness, &stop, true);
            let _stop = tokio::spawn(async move {
                let _ = stop_rx.await;
                stop.cancel();
            });
            pgpool_provisioner::run(client, config, &registry, controllers).await
        }
    });

    let pgpool = pgpool_api::fixtures::pgpool(NS, "pp", version, 1);
    Api::<Pgpool>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &pgpool)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let name = wait_for("the Pgpool's pod", Duration::from_secs(60), || async {
        let list = pods
            .list(&ListParams::default().labels(&names::selector_string("pp")))
            .await
            .ok()?;
        list.items.first().and_then(|p| p.metadata.name.clone())
    })
    .await;
    let ready_wait = tokio::time::timeout(
        Duration::from_secs(120),
        wait_pod(
            &pods,
            &name,
            "the pgpool pod Ready",
            Duration::from_secs(120),
            ready,
        ),
    )
    .await;
    assert!(
        ready_wait.is_ok(),
        "pod not Ready; logs:\n{}",
        pod_logs(state.path())
    );

    let svc = Api::<Service>::namespaced(client.clone(), NS)
        .get(&names::primary_service("pp"))
        .await
        .unwrap();
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    let port = u16::try_from(names::PORT_PRIMARY).unwrap();
    assert_selects_1(&ip, port, "SELECT 1 through the Pgpool Service").await;
    say(&format!(
        "real_pgpool_pod: pgpool-II {version} pod {name} answered SELECT 1 through {ip}:{port}"
    ));

    assert_liveness_leaves_log_clean(&pods, &name, &ip, state.path()).await;

    // a long-lived session stays open on the pod while it is deleted
    let mut session = LongSession::open(&ip, port);
    assert_eq!(session.query("SELECT 1;"), Ok("1".to_string()));

    // deleted as a kubelet does it: preStop drains for 5 s and then asks pgpool for a fast
    // shutdown, so the open session does not hold the pod for the 30 s grace period
    let old_uid = pods.get(&name).await.unwrap().metadata.uid;
    let started = std::time::Instant::now();
    pods.delete(&name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the deleted pgpool pod gone",
        Duration::from_secs(40),
        || async {
            let p = pods.get_opt(&name).await.ok()?;
            (p.and_then(|p| p.metadata.uid) != old_uid).then_some(())
        },
    )
    .await;
    let took = started.elapsed();
    say(&format!(
        "real_pgpool_pod: {version}: deletion took {took:?}"
    ));
    assert!(
        took >= Duration::from_secs(5),
        "preStop sleep 5 ran first: {took:?}"
    );
    assert!(
        took < Duration::from_secs(12),
        "the fast shutdown ended pgpool although a session was open: {took:?}"
    );
    // what the client sees: its connection closed, at its next statement
    let cut = session
        .query("SELECT 2;")
        .expect_err("the session outlived its pod");
    say(&format!(
        "real_pgpool_pod: {version}: the open session saw: {cut}"
    ));
    assert!(
        cut.contains("server closed the connection unexpectedly")
            || cut.contains("connection to server was lost"),
        "{cut}"
    );
    // the PetSet controller replaces it and the Service routes to the new pod
    wait_pod(
        &pods,
        &name,
        "the replacement pod Ready",
        Duration::from_secs(120),
        |p| p.metadata.uid != old_uid && ready(p),
    )
    .await;
    assert_selects_1(&ip, port, "SELECT 1 through the replacement").await;

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), provisioner).await;
    node.stop().await;
    assert!(netns_with_prefix("ltp").is_empty());
}

/// The pod's liveness command passes in the pod's network namespace and fails where nothing
/// listens on the pcp port, and pgpool's log gets no line from it; a connect-and-close on the
/// pcp port (what a `tcpSocket` probe does) is the control that the log is read right.
async fn assert_liveness_leaves_log_clean(pods: &Api<Pod>, name: &str, ip: &str, state: &Path) {
    const NOISE: &str = "unable to read from client";
    let pod = pods.get(name).await.unwrap();
    let container = &pod.spec.unwrap().containers[0];
    let command = container
        .liveness_probe
        .as_ref()
        .and_then(|p| p.exec.as_ref())
        .and_then(|e| e.command.clone())
        .expect("an exec liveness probe");
    let netns = netns_with_prefix("ltp");
    assert_eq!(netns.len(), 1, "{netns:?}");
    for _ in 0..3 {
        let status = Command::new("ip")
            .args(["netns", "exec", &netns[0]])
            .args(&command)
            .status()
            .unwrap();
        assert!(status.success(), "liveness {command:?} failed in the pod");
    }
    let status = Command::new("unshare")
        .arg("--net")
        .args(&command)
        .status()
        .unwrap();
    assert!(!status.success(), "liveness passed where nothing listens");
    assert_eq!(
        pod_logs(state).matches(NOISE).count(),
        0,
        "{}",
        pod_logs(state)
    );
    let pcp = format!("{ip}:{}", names::PORT_PCP);
    drop(std::net::TcpStream::connect(pcp).unwrap());
    wait_for(
        "pgpool's log line for a connect-and-close on pcp",
        Duration::from_secs(10),
        || async { pod_logs(state).contains(NOISE).then_some(()) },
    )
    .await;
    assert_eq!(
        pod_logs(state).matches(NOISE).count(),
        1,
        "{}",
        pod_logs(state)
    );
}

/// A `psql` session kept open on stdin, as a long-lived client.
struct LongSession {
    child: Child,
    stdin: std::process::ChildStdin,
    out: std::sync::mpsc::Receiver<String>,
}

impl LongSession {
    fn open(host: &str, port: u16) -> Self {
        let mut child = Command::new(Path::new(PG_BIN).join("psql"))
            .args(["-X", "-w", "-A", "-t", "-h", host, "-p", &port.to_string()])
            .args(["-U", "postgres", "-d", "postgres"])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "3")
            .env("PGSSLMODE", "disable")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, out) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = tx.send(line);
                }
            });
        }
        LongSession { child, stdin, out }
    }

    /// Sends `sql`; `Ok(first line)` when it answers a number, `Err(all it said)` otherwise.
    fn query(&mut self, sql: &str) -> Result<String, String> {
        use std::io::Write;
        let sent = writeln!(self.stdin, "{sql}").and_then(|_| self.stdin.flush());
        let mut said = Vec::new();
        if let Err(e) = sent {
            said.push(e.to_string());
        }
        while let Ok(line) = self.out.recv_timeout(Duration::from_secs(10)) {
            if said.is_empty() && line.parse::<i64>().is_ok() {
                return Ok(line);
            }
            said.push(line);
            if said
                .iter()
                .any(|l| l.contains("connection to server was lost"))
            {
                break;
            }
        }
        Err(said.join("\n"))
    }
}

impl Drop for LongSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most 30 s) until `SELECT 1` through `ip:port` answers `1`.
async fn assert_selects_1(ip: &str, port: u16, what: &str) {
    let answer = wait_for(what, Duration::from_secs(30), || async move {
        select_1(ip, port).ok()
    })
    .await;
    assert_eq!(answer, "1");
}
