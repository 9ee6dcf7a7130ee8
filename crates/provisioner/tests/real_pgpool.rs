//! A real pgpool-II must accept what we render.
//!
//! Starts a throwaway PostgreSQL on 127.0.0.1 with an md5 user and a scram-sha-256 user,
//! renders the provisioner's files for a Pgpool at catalog version 4.3 (what Debian ships)
//! whose backend is that PostgreSQL, starts Debian's `pgpool` with exactly those files and the
//! pod's flags (`config::pgpool_args`), then logs in through pgpool as each user, checks that
//! pgpool took every parameter we wrote (`SHOW pool_status`), and runs `pcp_node_count` with
//! the generated PCP credentials. It does this once with md5 and once with scram-sha-256
//! client authentication.
//!
//! Needs Debian's `pgpool2` and `postgresql` (`scripts/install-pgpool-test-deps.sh`). Without
//! them it prints one line and passes, unless `CI` is set, where it fails.
//! Run: `cargo test -p pgpool-provisioner --test real_pgpool -- --nocapture`.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgpool_provisioner::config::{
    Backend, ClientAuthMode, Paths, RenderInput, Rendered, parse_pgpool_conf, pgpool_args, render,
};

const SKIP_LINE: &str =
    "skipping: install pgpool2 and postgresql (scripts/install-pgpool-test-deps.sh)";

const MD5_USER: &str = "md5user";
const MD5_PASSWORD: &str = "md5: pa'ss word";
const SCRAM_USER: &str = "scramuser";
const SCRAM_PASSWORD: &str = "scr@m pässwörd";
const PCP_USER: &str = "pcp";
const PCP_PASSWORD: &str = "pcp:secret\\pw";
const POOL_KEY: &str = "real-pgpool-test-key-0123456789";

/// psql's field separator: the unit separator, which no value contains (flags contain '|').
const FIELD_SEP: &str = "\u{1f}";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// The binaries the test runs.
struct Tools {
    pgpool: PathBuf,
    pcp_node_count: PathBuf,
    pg_bin: PathBuf,
}

impl Tools {
    fn find() -> Option<Self> {
        let pgpool = find_program("pgpool")?;
        let pcp_node_count = find_program("pcp_node_count")?;
        // the newest /usr/lib/postgresql/<major>/bin with a server and the client tools
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
        Some(Self {
            pgpool,
            pcp_node_count,
            pg_bin,
        })
    }

    fn pg(&self, name: &str) -> PathBuf {
        self.pg_bin.join(name)
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The OS user the servers run as: PostgreSQL refuses root, so when the test runs as root
/// the servers run as `postgres` (created by Debian's packages).
#[derive(Clone, Copy)]
struct RunAs {
    ids: Option<(u32, u32)>,
}

impl RunAs {
    fn detect() -> Result<Self, String> {
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

    /// A command with a clean libpq environment, run as the server user.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = client_command(program);
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Makes `path` belong to the server user.
    fn own(&self, path: &Path) {
        if let Some((uid, gid)) = self.ids {
            chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }
}

/// A command with none of the caller's libpq/pcp settings leaking in.
fn client_command(program: &Path) -> Command {
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

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tail(path: &Path) -> String {
    let content = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = content.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Free TCP ports on 127.0.0.1 (held open together so they differ, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Polls `check` every [`POLL`] until it says done, the process died, or `timeout` passed.
fn wait_for(
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
struct Server {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(name: &str, mut cmd: Command, log: PathBuf) -> Self {
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
    fn stop(&mut self) -> bool {
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
struct Postgres {
    server: Server,
    port: u16,
}

fn start_postgres(tools: &Tools, run_as: RunAs, dir: &Path) -> Postgres {
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

fn psql_select_1(
    tools: &Tools,
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
) -> Output {
    psql_query(tools, host, port, user, password, "SELECT 1")
}

fn psql_query(
    tools: &Tools,
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

/// Writes the rendered files where `paths` says, the way the pod sees them: config files
/// read-only, key file 0600, run directory writable, all owned by the server user.
fn install_files(rendered: &Rendered, paths: &Paths, run_as: RunAs) {
    for dir in [
        &paths.config_dir,
        paths.key_file.parent().expect("key dir"),
        &paths.run_dir,
    ] {
        fs::create_dir_all(dir).expect("create dir");
        run_as.own(dir);
    }
    for (path, content) in [
        (paths.pgpool_conf(), &rendered.pgpool_conf),
        (paths.pool_hba_conf(), &rendered.pool_hba_conf),
        (paths.pcp_conf(), &rendered.pcp_conf),
        (paths.pool_passwd(), &rendered.pool_passwd),
    ] {
        fs::write(&path, content).expect("write config file");
        run_as.own(&path);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).expect("chmod");
    }
    fs::set_permissions(&paths.config_dir, fs::Permissions::from_mode(0o555)).expect("chmod");
    fs::write(&paths.key_file, &rendered.pool_key).expect("write key file");
    run_as.own(&paths.key_file);
    fs::set_permissions(&paths.key_file, fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// `SHOW pool_status` as item -> value.
fn pool_status(tools: &Tools, port: u16, user: &str, password: &str) -> BTreeMap<String, String> {
    let out = psql_query(
        tools,
        "127.0.0.1",
        port,
        user,
        Some(password),
        "SHOW pool_status",
    );
    assert!(
        out.status.success(),
        "SHOW pool_status failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, FIELD_SEP);
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// Every parameter we rendered must be one pgpool knows (an unknown one is skipped
/// silently) and hold the value we meant.
fn check_effective_config(rendered: &Rendered, status: &BTreeMap<String, String>) {
    // passwords are not shown; the clustering mode is shown as a number
    let hidden = ["sr_check_password", "health_check_password"];
    let written = parse_pgpool_conf(&rendered.pgpool_conf).expect("rendered pgpool.conf parses");
    let mut problems = Vec::new();
    for (key, value) in &written {
        if hidden.contains(&key.as_str()) {
            continue;
        }
        let Some(actual) = status.get(key) else {
            problems.push(format!("{key}: pgpool does not know this parameter"));
            continue;
        };
        let matches = match (key.as_str(), value.as_str()) {
            ("backend_clustering_mode", "streaming_replication") => actual == "1",
            (k, v) if k.starts_with("backend_flag") => {
                let mut want: Vec<&str> = v.split('|').collect();
                let mut got: Vec<&str> = actual.split('|').collect();
                want.sort();
                got.sort();
                want == got
            }
            (k, v) if k.starts_with("backend_weight") => {
                actual.parse::<f64>().ok() == v.parse::<f64>().ok()
            }
            (_, "on") => actual == "1",
            (_, "off") => actual == "0",
            (_, v) => actual == v,
        };
        if !matches {
            problems.push(format!("{key}: wrote {value:?}, pgpool has {actual:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "pgpool did not take the rendered pgpool.conf as written:\n{}",
        problems.join("\n")
    );
}

fn fail_with_logs(mode: ClientAuthMode, pgpool: &Server, postgres: &Server, msg: &str) -> ! {
    panic!(
        "[{mode:?}] {msg}\npgpool log:\n{}\npostgres log:\n{}",
        tail(&pgpool.log),
        tail(&postgres.log)
    )
}

/// One pgpool run with one client authentication mode.
fn check_pgpool(
    tools: &Tools,
    run_as: RunAs,
    dir: &Path,
    pg: &Postgres,
    mode: ClientAuthMode,
    (backend_user, backend_password): (&str, &str),
    extra_user: (&str, &str),
) {
    let ports = free_ports(2);
    let (port, pcp_port) = (ports[0], ports[1]);
    let paths = Paths {
        config_dir: dir.join("config"),
        key_file: dir.join("key/.pgpoolkey"),
        run_dir: dir.join("run"),
    };
    let input = RenderInput {
        version: "4.3".into(),
        backends: vec![Backend::new("127.0.0.1", pg.port)],
        auth_mode: mode,
        backend_user: backend_user.into(),
        backend_password: backend_password.into(),
        extra_users: vec![(extra_user.0.into(), extra_user.1.into())],
        pcp_user: PCP_USER.into(),
        pcp_password: PCP_PASSWORD.into(),
        pool_key: POOL_KEY.into(),
        num_init_children: Some(4),
        paths: paths.clone(),
        port,
        pcp_port,
        ..RenderInput::default()
    };
    let rendered = render(&input).expect("render");
    install_files(&rendered, &paths, run_as);

    let mut cmd = run_as.command(&tools.pgpool);
    cmd.args(pgpool_args(&paths));
    let mut pgpool = Server::start("pgpool", cmd, dir.join("pgpool.log"));
    let fail = |pgpool: &Server, msg: String| fail_with_logs(mode, pgpool, &pg.server, &msg);

    let pg_isready = tools.pg("pg_isready");
    let ready = |host: &Path| {
        client_command(&pg_isready)
            .arg("-q")
            .arg("-h")
            .arg(host)
            .args([
                "-p",
                &port.to_string(),
                "-U",
                backend_user,
                "-d",
                "postgres",
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Err(e) = wait_for(
        "pgpool to accept connections",
        &mut pgpool,
        START_TIMEOUT,
        || ready(Path::new("127.0.0.1")),
    ) {
        fail(&pgpool, e);
    }

    // the pod's readiness probe: pg_isready on the Unix socket in the run directory
    for socket in [port, pcp_port] {
        let path = paths.run_dir.join(format!(".s.PGSQL.{socket}"));
        if !path.exists() {
            fail(
                &pgpool,
                format!("no socket {} (socket directory not taken)", path.display()),
            );
        }
    }
    if !paths.pid_file().exists() {
        fail(
            &pgpool,
            format!("no pid file {}", paths.pid_file().display()),
        );
    }
    if !ready(&paths.run_dir) {
        fail(&pgpool, "pg_isready on the Unix socket failed".into());
    }

    // each user logs in through pgpool over TCP with the pool_hba method, and the backend
    // accepts pgpool's login with the password from pool_passwd
    for (user, password) in [(backend_user, backend_password), extra_user] {
        let out = psql_select_1(tools, "127.0.0.1", port, user, Some(password));
        if !out.status.success() || text(&out.stdout).trim() != "1" {
            fail(
                &pgpool,
                format!(
                    "SELECT 1 through pgpool as {user} failed: {}{}",
                    text(&out.stdout),
                    text(&out.stderr)
                ),
            );
        }
        let out = psql_select_1(tools, "127.0.0.1", port, user, Some("not-the-password"));
        if out.status.success() {
            fail(
                &pgpool,
                format!("{user} logged in through pgpool with a wrong password"),
            );
        }
        // `local all all trust`: in-pod tools need no password on the socket
        let socket_dir = paths.run_dir.to_string_lossy();
        let out = psql_select_1(tools, &socket_dir, port, user, None);
        if !out.status.success() || text(&out.stdout).trim() != "1" {
            fail(
                &pgpool,
                format!(
                    "SELECT 1 on the Unix socket as {user} failed: {}",
                    text(&out.stderr)
                ),
            );
        }
    }

    let status = pool_status(tools, port, backend_user, backend_password);
    check_effective_config(&rendered, &status);

    // pcp_node_count with the generated PCP credentials (.pcppass escapes ':' and '\')
    let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    let pcppass = dir.join("pcppass");
    fs::write(
        &pcppass,
        format!("*:*:{}:{}\n", escape(PCP_USER), escape(PCP_PASSWORD)),
    )
    .expect("write pcppass");
    fs::set_permissions(&pcppass, fs::Permissions::from_mode(0o600)).expect("chmod pcppass");
    let out = run(client_command(&tools.pcp_node_count)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pcp_port.to_string(),
            "-U",
            PCP_USER,
            "-w",
        ])
        .env("PCPPASSFILE", &pcppass));
    if !out.status.success() || text(&out.stdout).trim() != "1" {
        fail(
            &pgpool,
            format!(
                "pcp_node_count failed ({}): {}{}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            ),
        );
    }
    // and a wrong PCP password is refused
    fs::write(&pcppass, format!("*:*:{PCP_USER}:wrong\n")).expect("write pcppass");
    let out = run(client_command(&tools.pcp_node_count)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pcp_port.to_string(),
            "-U",
            PCP_USER,
            "-w",
        ])
        .env("PCPPASSFILE", &pcppass));
    if out.status.success() {
        fail(
            &pgpool,
            "pcp_node_count succeeded with a wrong password".into(),
        );
    }

    if !pgpool.stop() {
        fail(&pgpool, "pgpool did not stop on SIGINT".into());
    }
}

#[test]
fn real_pgpool_accepts_what_we_render() {
    let Some(tools) = Tools::find() else {
        if in_ci() {
            panic!(
                "CI is set but the pgpool/PostgreSQL binaries are missing: install pgpool2 and postgresql (scripts/install-pgpool-test-deps.sh)"
            );
        }
        println!("{SKIP_LINE}");
        return;
    };
    let run_as = RunAs::detect().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::Builder::new()
        .prefix("real-pgpool-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path();
    run_as.own(dir);

    let pg = start_postgres(&tools, run_as, dir);
    let md5 = (MD5_USER, MD5_PASSWORD);
    let scram = (SCRAM_USER, SCRAM_PASSWORD);
    for (name, mode, backend, extra) in [
        ("md5", ClientAuthMode::Md5, md5, scram),
        ("scram", ClientAuthMode::Scram, scram, md5),
    ] {
        let run_dir = dir.join(name);
        fs::create_dir(&run_dir).expect("create run dir");
        run_as.own(&run_dir);
        check_pgpool(&tools, run_as, &run_dir, &pg, mode, backend, extra);
    }
    drop(pg);
}
