//! The load client against a real PostgreSQL on loopback (Debian's, started as the `postgres`
//! user in a temporary directory): a steady server gives no failures; a server stopped for a
//! moment gives failures, a gap and cut sessions that reconnect; a terminated backend of a
//! long session counts as a cut and reconnects, without failing a short query.
//!
//! Skips with one line when PostgreSQL is not installed or the test is not root (PostgreSQL
//! refuses to run as root, and only root can start it as `postgres`); with `CI` set it fails
//! instead.

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::load::{LoadClient, LoadConfig, SESSION_APPLICATION_NAME};
use tokio::process::{Child, Command};
use tokio_postgres::NoTls;

const USER: &str = "loaduser";
/// Test data only, for a server that lives for one test.
const PASSWORD: &str = "load: pa'ss wörd";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(30);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The newest `/usr/lib/postgresql/<major>/bin` with `initdb` and `postgres`.
fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// uid and gid of the `postgres` user, when this test runs as root.
fn postgres_ids() -> Result<(u32, u32), String> {
    let out = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("id -u: {e}"))?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        return Err("not root (PostgreSQL is started as the postgres user)".into());
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| "no postgres user".to_string())
}

/// A throwaway PostgreSQL on 127.0.0.1; stopped when dropped.
struct Postgres {
    bin: PathBuf,
    ids: (u32, u32),
    data: PathBuf,
    port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts one, or says why it cannot (the caller skips).
    async fn start_or_skip(test: &str) -> Option<Postgres> {
        let found = pg_bin().ok_or_else(|| "PostgreSQL is not installed".to_string());
        match found.and_then(|bin| postgres_ids().map(|ids| (bin, ids))) {
            Ok((bin, ids)) => Some(Postgres::start(bin, ids).await),
            Err(why) if in_ci() => panic!("{test}: CI is set but {why}"),
            Err(why) => {
                println!("{test}: skipped: {why}");
                None
            }
        }
    }

    async fn start(bin: PathBuf, ids: (u32, u32)) -> Postgres {
        let dir = tempfile::tempdir().expect("temp dir");
        chown(dir.path(), Some(ids.0), Some(ids.1)).expect("chown the temp dir");
        let data = dir.path().join("data");
        let out = Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .uid(ids.0)
            .gid(ids.1)
            .output()
            .await
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nshared_buffers = 16MB\nmax_connections = 100\n",
            dir.path().display()
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
        let mut pg = Postgres {
            bin,
            ids,
            data,
            port,
            child: None,
            _dir: dir,
        };
        pg.run().await;
        let admin = pg.admin().await;
        let literal = PASSWORD.replace('\'', "''");
        admin
            .batch_execute(&format!("CREATE ROLE {USER} LOGIN PASSWORD '{literal}'"))
            .await
            .expect("create the test role");
        pg
    }

    /// Starts the server on its data directory and waits until it accepts connections.
    async fn run(&mut self) {
        let child = Command::new(self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .uid(self.ids.0)
            .gid(self.ids.1)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.try_admin().await.is_ok() {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(exited.is_none(), "postgres exited with {exited:?}");
            assert!(Instant::now() < deadline, "postgres did not start in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fast shutdown (SIGINT): sessions are cut, new connections refused; waits for the exit.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().expect("postgres pid").to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", "INT", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {pid}");
        let exited = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await;
        assert!(
            exited.is_ok(),
            "postgres did not stop within {STOP_TIMEOUT:?}"
        );
    }

    async fn try_admin(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2))
            .connect(NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn admin(&self) -> tokio_postgres::Client {
        self.try_admin().await.expect("connect as postgres")
    }

    fn load(&self) -> LoadClient {
        let mut config = LoadConfig::new("127.0.0.1", self.port, USER, PASSWORD, "postgres");
        config.max_duration = Duration::from_secs(120);
        LoadClient::start(config)
    }

    /// pids of the long sessions' backends.
    async fn session_pids(&self) -> Vec<i32> {
        self.admin()
            .await
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                &[&SESSION_APPLICATION_NAME],
            )
            .await
            .expect("list the sessions")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(|c| c.id()) {
            // fast shutdown; kill_on_drop sends SIGKILL if it is still there
            let _ = std::process::Command::new("kill")
                .args(["-s", "INT", &pid.to_string()])
                .status();
        }
    }
}

fn append(path: &Path, text: &str) {
    let mut conf = std::fs::read_to_string(path).expect("read the config");
    conf.push('\n');
    conf.push_str(text);
    std::fs::write(path, conf).expect("write the config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_server_gives_no_failures() {
    let Some(pg) = Postgres::start_or_skip("a_steady_server_gives_no_failures").await else {
        return;
    };
    let load = pg.load();
    load.start_window("steady");
    load.wait_until("100 short queries", WAIT, |s| s.sent >= 100)
        .await
        .unwrap();
    let s = load.stop_window().await.expect("a window");
    assert_eq!(s.failed, 0, "{s}");
    assert!(s.succeeded >= 95, "{s}");
    assert_eq!(s.cuts, 0, "{s}");
    assert!(s.longest_gap < Duration::from_secs(1), "{s}");
    assert!(s.p50 > Duration::ZERO && s.p50 <= s.p99, "{s}");
    load.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_gives_failures_a_gap_and_cuts() {
    let Some(mut pg) =
        Postgres::start_or_skip("a_stopped_server_gives_failures_a_gap_and_cuts").await
    else {
        return;
    };
    let load = pg.load();
    load.start_window("outage");
    load.wait_until("sessions up and 20 successes", WAIT, |s| {
        s.succeeded >= 20 && s.cuts == 0
    })
    .await
    .unwrap();
    let sessions = pg.session_pids().await.len();
    assert_eq!(sessions, 2, "both long sessions are connected");

    let down = Instant::now();
    pg.stop().await;
    let seen = load
        .wait_until("failures for 0.5 s while the server is down", WAIT, |s| {
            s.failed >= 5 && s.longest_gap >= Duration::from_millis(500)
        })
        .await
        .unwrap();
    pg.run().await;
    let outage = down.elapsed();
    let ok_before = seen.succeeded;
    load.wait_until("successes and reconnects after the restart", WAIT, |s| {
        s.succeeded >= ok_before + 20 && s.cuts >= 2 && s.unreconnected() == 0
    })
    .await
    .unwrap();
    let s = load.stop_window().await.expect("a window");
    assert!(s.failed >= 5, "{s}");
    assert!(!s.errors.is_empty(), "{s}");
    // no success while the server was down: the gap covers most of the outage
    assert!(
        s.longest_gap >= outage / 2 && s.longest_gap >= Duration::from_millis(500),
        "gap {:?} for an outage of {outage:?}: {s}",
        s.longest_gap
    );
    assert_eq!(s.cuts, 2, "both sessions were cut once: {s}");
    assert_eq!(s.reconnects.len(), 2, "{s}");
    load.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_session_is_a_cut_that_reconnects() {
    let Some(pg) = Postgres::start_or_skip("a_terminated_session_is_a_cut_that_reconnects").await
    else {
        return;
    };
    let load = pg.load();
    load.start_window("terminate");
    load.wait_until("20 successes", WAIT, |s| s.succeeded >= 20)
        .await
        .unwrap();
    let pids = pg.session_pids().await;
    assert_eq!(pids.len(), 2, "both long sessions are connected");
    let admin = pg.admin().await;
    let terminated = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pids[0]])
        .await
        .expect("terminate one session")
        .get::<_, bool>(0);
    assert!(terminated);
    let s = load
        .wait_until("the cut session reconnected", WAIT, |s| {
            s.cuts >= 1 && s.unreconnected() == 0
        })
        .await
        .unwrap();
    assert_eq!(s.cuts, 1, "{s}");
    assert!(s.longest_reconnect() < Duration::from_secs(2), "{s}");
    // what the client was told: the server's reason, not just a closed socket
    assert!(
        s.cut_errors[0]
            .0
            .contains("terminating connection due to administrator command"),
        "{s}"
    );
    let now = pg.session_pids().await;
    assert_eq!(now.len(), 2, "two sessions again");
    assert!(
        !now.contains(&pids[0]),
        "a new backend replaced the terminated one"
    );
    let s = load.stop_window().await.expect("a window");
    assert_eq!(s.failed, 0, "short queries are not affected: {s}");
    load.shutdown().await;
}
