//! The plumbing of the real-pgpool test: processes, the throwaway PostgreSQL, psql.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const MD5_USER: &str = "md5user";
pub(crate) const MD5_PASSWORD: &str = "md5: pa'ss word";
pub(crate) const SCRAM_USER: &str = "scramuser";
pub(crate) const SCRAM_PASSWORD: &str = "scr@m pässwörd";

/// psql's field separator: the unit separator, which no value contains (flags contain '|').
pub(crate) const FIELD_SEP: &str = "\u{1f}";

pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// PostgreSQL's server and client programs.
pub(crate) struct PgTools {
    pg_bin: PathBuf,
}

impl PgTools {
    /// The newest `/usr/lib/postgresql/<major>/bin` with a server and the client tools.
    pub(crate) fn find() -> Option<Self> {
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let entry = e.ok()?;
                let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                ["initdb", "postgres", "psql", "pg_isready"]
                    .iter()
                    .all(|b| bin.join(b).is_file())
                    .then_some((major, bin))
            })
            .collect();
        versions.sort();
        let (_, pg_bin) = versions.pop()?;
        Some(Self { pg_bin })
    }

    /// A PostgreSQL program by name.
    pub(crate) fn pg(&self, name: &str) -> PathBuf {
        self.pg_bin.join(name)
    }
}

pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The OS user the servers run as: PostgreSQL refuses root, so when the test runs as root
/// the servers run as `postgres` (created by Debian's packages).
#[derive(Clone, Copy)]
pub(crate) struct RunAs {
    ids: Option<(u32, u32)>,
}

impl RunAs {
    pub(crate) fn detect() -> Result<Self, String> {
        let out = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("run id -u: {e}"))?;
        let uid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("parse id -u: {e}"))?;
        if uid != 0 {
            return Ok(Self { ids: None });
        }
        let passwd = fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
        let ids = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == "postgres")
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .ok_or("running as root but there is no postgres user to run the servers as")?;
        Ok(Self { ids: Some(ids) })
    }

    /// Whether the servers run as another user than the test.
    pub(crate) fn is_other_user(&self) -> bool {
        self.ids.is_some()
    }

    /// A command with a clean libpq environment, run as the server user.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut cmd = client_command(program);
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Makes `path` belong to the server user.
    pub(crate) fn own(&self, path: &Path) {
        if let Some((uid, gid)) = self.ids {
            chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }
}

/// A command with none of the caller's libpq/pcp settings leaking in.
pub(crate) fn client_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSSLMODE",
        "PGOPTIONS",
        "PCPPASSFILE",
        "PGPOOLKEYFILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGCONNECT_TIMEOUT", "10").stdin(Stdio::null());
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn tail(path: &Path) -> String {
    let content = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = content.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Free TCP ports on 127.0.0.1 (held open together so they differ, then released).
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Polls `check` every [`POLL`] until it says done, the process died, or `timeout` passed.
pub(crate) fn wait_for(
    what: &str,
    server: &mut Server,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return Ok(());
        }
        if let Some(status) = server.child.try_wait().ok().flatten() {
            return Err(format!(
                "{} exited with {status} while waiting for {what}; log:\n{}",
                server.name,
                tail(&server.log)
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what}; {} log:\n{}",
                server.name,
                tail(&server.log)
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// A server process stopped with SIGINT (fast shutdown for both PostgreSQL and pgpool) when
/// dropped, also when the test fails; SIGKILL if it does not stop in time.
pub(crate) struct Server {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

impl Server {
    pub(crate) fn start(name: &str, mut cmd: Command, log: PathBuf) -> Self {
        let out = fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        cmd.stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// Stops the server; returns whether it exited by itself within [`STOP_TIMEOUT`].
    pub(crate) fn stop(&mut self) -> bool {
        if self.child.try_wait().ok().flatten().is_some() {
            return true;
        }
        let _ = Command::new("kill")
            .args(["-s", "INT", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The throwaway PostgreSQL.
pub(crate) struct Postgres {
    pub(crate) server: Server,
    pub(crate) port: u16,
}

pub(crate) fn start_postgres(tools: &PgTools, run_as: RunAs, dir: &Path) -> Postgres {
    let data = dir.join("pgdata");
    let sockets = dir.join("pgsock");
    fs::create_dir(&sockets).expect("create socket dir");
    run_as.own(&sockets);
    let out = run(run_as
        .command(&tools.pg("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]));
    assert!(
        out.status.success(),
        "initdb failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let port = free_ports(1)[0];
    let mut conf = fs::read_to_string(data.join("postgresql.conf")).expect("read postgresql.conf");
    conf.push_str(&format!(
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
         fsync = off\nshared_buffers = 16MB\nmax_connections = 50\n",
        sockets.display()
    ));
    fs::write(data.join("postgresql.conf"), conf).expect("write postgresql.conf");
    // pgpool reaches PostgreSQL over 127.0.0.1; each test user gets its own method
    let hba = format!(
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host all {MD5_USER} 127.0.0.1/32 md5\n\
         host all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n"
    );
    fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");

    let mut cmd = run_as.command(&tools.pg("postgres"));
    cmd.arg("-D").arg(&data);
    let mut server = Server::start("postgres", cmd, dir.join("postgres.log"));
    let pg_isready = tools.pg("pg_isready");
    wait_for(
        "PostgreSQL to accept connections",
        &mut server,
        START_TIMEOUT,
        || {
            client_command(&pg_isready)
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                ])
                .status()
                .is_ok_and(|s| s.success())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let sql_literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let script = format!(
        "SET password_encryption = 'md5';\n\
         CREATE ROLE {MD5_USER} LOGIN PASSWORD {};\n\
         SET password_encryption = 'scram-sha-256';\n\
         CREATE ROLE {SCRAM_USER} LOGIN PASSWORD {};\n\
         SELECT rolname || '=' || split_part(rolpassword, '$', 1) FROM pg_authid \
         WHERE rolname IN ('{MD5_USER}', '{SCRAM_USER}') ORDER BY rolname;\n",
        sql_literal(MD5_PASSWORD),
        sql_literal(SCRAM_PASSWORD)
    );
    let script_path = dir.join("setup.sql");
    fs::write(&script_path, script).expect("write setup.sql");
    let out = run(client_command(&tools.pg("psql"))
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-f",
        ])
        .arg(&script_path));
    assert!(
        out.status.success(),
        "creating the test roles failed: {}",
        text(&out.stderr)
    );
    let stored = text(&out.stdout);
    let stored: Vec<&str> = stored.lines().collect();
    assert_eq!(stored.len(), 2, "unexpected role listing {stored:?}");
    assert!(
        stored[0].starts_with(&format!("{MD5_USER}=md5")) && stored[0].len() > 20,
        "{MD5_USER} must have an md5 password, got {}",
        stored[0]
    );
    assert_eq!(
        stored[1],
        format!("{SCRAM_USER}=SCRAM-SHA-256"),
        "{SCRAM_USER} must have a scram password"
    );

    let pg = Postgres { server, port };
    // the users log in directly, so a failure through pgpool is pgpool's
    for (user, password) in [(MD5_USER, MD5_PASSWORD), (SCRAM_USER, SCRAM_PASSWORD)] {
        let out = psql_select_1(tools, "127.0.0.1", pg.port, user, Some(password));
        assert!(
            out.status.success(),
            "direct login of {user} to PostgreSQL failed: {}",
            text(&out.stderr)
        );
    }
    pg
}

pub(crate) fn psql_select_1(
    tools: &PgTools,
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
) -> Output {
    psql_query(tools, host, port, user, password, "SELECT 1")
}

pub(crate) fn psql_query(
    tools: &PgTools,
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    query: &str,
) -> Output {
    let mut cmd = client_command(&tools.pg("psql"));
    cmd.args([
        "-X",
        "-w",
        "-A",
        "-t",
        "-F",
        FIELD_SEP,
        "-v",
        "ON_ERROR_STOP=1",
    ])
    .args([
        "-h",
        host,
        "-p",
        &port.to_string(),
        "-U",
        user,
        "-d",
        "postgres",
    ])
    .args(["-c", query])
    .env("PGSSLMODE", "disable");
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    run(&mut cmd)
}

/// Prints a line past the test harness's output capture (which takes only `print!` and
/// `eprint!`), so that a plain `cargo test` shows which versions ran.
pub(crate) fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}
