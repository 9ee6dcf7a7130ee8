//! Every real pgpool-II release a Pgpool can run must accept what we render, also the
//! configuration rendered for the release it is updated from or rolled back to.
//!
//! Starts a throwaway PostgreSQL on 127.0.0.1 with an md5 user and a scram-sha-256 user, then
//! runs a matrix, one pgpool at a time: each real release of the catalog's lines ([`LINES`],
//! in update order) x {md5, scram} client authentication x {the configuration rendered for
//! the release itself, for the line before it (a pod restarted by an UpdateVersion from that
//! line), for the line after it (a pod restarted by a rollback from that line)}. Each case
//! writes exactly the rendered files, starts pgpool with the pod's flags
//! (`config::pgpool_args`), and checks: every user logs in through pgpool and runs
//! `SELECT 1` (and a wrong password is refused), the client socket is in the run directory
//! where the readiness probe looks, pgpool took every parameter we wrote (`SHOW
//! pool_status`; of a renamed parameter the spelling the release reads), `pcp_node_count`
//! answers with the generated PCP credentials, `pgpool_status` is written into the work
//! directory, and pgpool logs no WARNING, ERROR or FATAL line (but the `logdir` rename warning
//! of 4.7+). It prints one line per case naming the exact package version that ran.
//!
//! The binaries: the system's `pgpool2` (Debian bookworm's 4.3.x,
//! `scripts/install-pgpool-test-deps.sh`) and `.cache/pgpool/<line>/` (4.6.x and 4.7.x from
//! Debian's newer suites, `scripts/install-pgpool-versions.sh`). A missing one is skipped with
//! one line, unless `CI` is set, where the test fails.
//! Run: `cargo test -p pgpool-provisioner --test real_pgpool -- --nocapture`.

mod binaries;
mod reload;
mod rotate_pcp;
mod servers;
mod tls;
mod tls_exporter;
mod tls_issuer_ca;
mod tls_rotation;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use binaries::{LINES, PgpoolBinary, find_binaries};
use pgpool_config::{
    Backend, ClientAuthMode, Paths, PgpoolRelease, RenderInput, Rendered, parse_pgpool_conf,
    pgpool_args, renamed, render,
};
use servers::{
    FIELD_SEP, MD5_PASSWORD, MD5_USER, PgTools, Postgres, RunAs, SCRAM_PASSWORD, SCRAM_USER,
    START_TIMEOUT, Server, client_command, free_ports, in_ci, psql_query, psql_select_1, run, say,
    start_postgres, tail, text, wait_for,
};

const PCP_USER: &str = "pcp";
const PCP_PASSWORD: &str = "pcp:secret\\pw";
const POOL_KEY: &str = "real-pgpool-test-key-0123456789";

/// How long a started pgpool may take to write `pgpool_status`.
const STATUS_FILE_TIMEOUT: Duration = Duration::from_secs(5);

/// The one warning a release may log about what we render: 4.7 reads the old name `logdir`
/// (which we write for older releases) and says so.
const LOGDIR_WARNING: &str = "logdir is changed to work_dir";

/// What pgpool logs (as ERROR or FATAL) when it refuses a wrong password, as the test asks.
const REFUSAL: &str = "authentication failed";

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
fn pool_status(
    tools: &PgTools,
    port: u16,
    user: &str,
    password: &str,
) -> Result<BTreeMap<String, String>, String> {
    let out = psql_query(
        tools,
        "127.0.0.1",
        port,
        user,
        Some(password),
        "SHOW pool_status",
    );
    if !out.status.success() {
        return Err(format!("SHOW pool_status failed: {}", text(&out.stderr)));
    }
    Ok(text(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, FIELD_SEP);
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect())
}

/// Every parameter we rendered must be one pgpool knows (an unknown one is skipped
/// silently) and hold the value we meant. Of a renamed parameter, written in both
/// spellings, the release must know one spelling and hold the value there.
fn check_effective_config(
    rendered: &Rendered,
    status: &BTreeMap<String, String>,
) -> Result<(), String> {
    // passwords are not shown; the clustering mode is shown as a number
    let hidden = ["sr_check_password", "health_check_password"];
    let written = parse_pgpool_conf(&rendered.pgpool_conf).expect("rendered pgpool.conf parses");
    let mut problems = Vec::new();
    for (key, value) in &written {
        if hidden.contains(&key.as_str()) {
            continue;
        }
        let actual = match (status.get(key), renamed(key)) {
            (Some(actual), _) => actual,
            // the release reads the other spelling, which we wrote too (checked there)
            (None, Some(rename))
                if status.contains_key(rename.old) || status.contains_key(rename.new) =>
            {
                continue;
            }
            (None, _) => {
                problems.push(format!("{key}: pgpool does not know this parameter"));
                continue;
            }
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
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "pgpool did not take the rendered pgpool.conf as written:\n{}",
            problems.join("\n")
        ))
    }
}

/// pgpool's WARNING, ERROR and FATAL lines in `log`, but the ones the release may log.
fn unexpected_log_lines(log: &str, binary: &PgpoolBinary) -> Vec<String> {
    let logdir_warning_expected = PgpoolRelease::parse(&binary.release)
        .map(|r| r.at_least(4, 7))
        .unwrap_or(false);
    log.lines()
        .filter(|l| {
            ["WARNING:", "ERROR:", "FATAL:"]
                .iter()
                .any(|w| l.contains(w))
        })
        .filter(|l| !(logdir_warning_expected && l.contains(LOGDIR_WARNING)))
        .map(str::to_string)
        .collect()
}

/// The test's fixed parts: PostgreSQL and who runs the servers.
struct Env<'a> {
    tools: &'a PgTools,
    run_as: RunAs,
    pg: &'a Postgres,
}

/// One case of the matrix.
struct Case<'a> {
    binary: &'a PgpoolBinary,
    /// The version the configuration is rendered for.
    config_for: String,
    mode: ClientAuthMode,
    /// The user in `sr_check_user`/`health_check_user`, and another one.
    users: [(&'static str, &'static str); 2],
}

/// Runs `pcp_node_count` against `pcp_port` with a `.pcppass` holding `password`.
fn pcp_node_count(
    binary: &PgpoolBinary,
    dir: &Path,
    pcp_port: u16,
    password: &str,
) -> std::process::Output {
    // .pcppass escapes ':' and '\'
    let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    let pcppass = dir.join("pcppass");
    fs::write(
        &pcppass,
        format!("*:*:{}:{}\n", escape(PCP_USER), escape(password)),
    )
    .expect("write pcppass");
    fs::set_permissions(&pcppass, fs::Permissions::from_mode(0o600)).expect("chmod pcppass");
    run(client_command(&binary.pcp_node_count)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pcp_port.to_string(),
            "-U",
            PCP_USER,
            "-w",
        ])
        .env("PCPPASSFILE", &pcppass))
}

/// Runs one pgpool for `case` in `dir`; the error carries pgpool's and PostgreSQL's logs.
fn run_case(env: &Env, case: &Case, dir: &Path) -> Result<(), String> {
    let tools = env.tools;
    let [(backend_user, backend_password), extra_user] = case.users;
    let ports = free_ports(2);
    let (port, pcp_port) = (ports[0], ports[1]);
    let paths = Paths {
        config_dir: dir.join("config"),
        key_file: dir.join("key/.pgpoolkey"),
        run_dir: dir.join("run"),
    };
    let input = RenderInput {
        version: case.config_for.clone(),
        backends: vec![Backend::new("127.0.0.1", env.pg.port)],
        auth_mode: case.mode,
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
    let rendered = render(&input).map_err(|e| format!("render: {e}"))?;
    install_files(&rendered, &paths, env.run_as);

    let mut cmd = env.run_as.command(&case.binary.pgpool);
    cmd.args(pgpool_args(&paths));
    let mut pgpool = Server::start("pgpool", cmd, dir.join("pgpool.log"));
    let with_logs = |pgpool: &Server, msg: String| {
        format!(
            "{msg}\npgpool log:\n{}\npostgres log:\n{}",
            tail(&pgpool.log),
            tail(&env.pg.server.log)
        )
    };

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
    wait_for(
        "pgpool to accept connections",
        &mut pgpool,
        START_TIMEOUT,
        || ready(Path::new("127.0.0.1")),
    )?;

    // the pod's readiness probe: pg_isready on the Unix socket in the run directory
    for socket in [port, pcp_port] {
        let path = paths.run_dir.join(format!(".s.PGSQL.{socket}"));
        if !path.exists() {
            return Err(with_logs(
                &pgpool,
                format!("no socket {} (socket directory not taken)", path.display()),
            ));
        }
    }
    if !paths.pid_file().exists() {
        let msg = format!("no pid file {}", paths.pid_file().display());
        return Err(with_logs(&pgpool, msg));
    }
    if !ready(&paths.run_dir) {
        return Err(with_logs(
            &pgpool,
            "pg_isready on the Unix socket failed".into(),
        ));
    }
    // the only file pgpool writes: into the work directory (the pod's writable emptyDir)
    let status_file = paths.run_dir.join("pgpool_status");
    wait_for(
        "pgpool_status in the work directory",
        &mut pgpool,
        STATUS_FILE_TIMEOUT,
        || status_file.is_file(),
    )?;

    // each user logs in through pgpool over TCP with the pool_hba method, and the backend
    // accepts pgpool's login with the password from pool_passwd
    for (user, password) in case.users {
        let out = psql_select_1(tools, "127.0.0.1", port, user, Some(password));
        if !out.status.success() || text(&out.stdout).trim() != "1" {
            let msg = format!(
                "SELECT 1 through pgpool as {user} failed: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            return Err(with_logs(&pgpool, msg));
        }
        // `local all all trust`: in-pod tools need no password on the socket
        let socket_dir = paths.run_dir.to_string_lossy();
        let out = psql_select_1(tools, &socket_dir, port, user, None);
        if !out.status.success() || text(&out.stdout).trim() != "1" {
            let msg = format!(
                "SELECT 1 on the Unix socket as {user} failed: {}",
                text(&out.stderr)
            );
            return Err(with_logs(&pgpool, msg));
        }
    }

    let status = pool_status(tools, port, backend_user, backend_password)
        .map_err(|e| with_logs(&pgpool, e))?;
    check_effective_config(&rendered, &status).map_err(|e| with_logs(&pgpool, e))?;

    // pcp_node_count with the generated PCP credentials
    let out = pcp_node_count(case.binary, dir, pcp_port, PCP_PASSWORD);
    if !out.status.success() || text(&out.stdout).trim() != "1" {
        let msg = format!(
            "pcp_node_count failed ({}): {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        return Err(with_logs(&pgpool, msg));
    }

    // What happened so far must not have made pgpool complain. The refusals below are
    // logged as errors on purpose, so they are checked before them.
    let log_so_far = fs::read_to_string(&pgpool.log).unwrap_or_default();
    let complaints = unexpected_log_lines(&log_so_far, case.binary);
    if !complaints.is_empty() {
        return Err(format!(
            "pgpool logged:\n{}\nfull log:\n{log_so_far}",
            complaints.join("\n")
        ));
    }

    // a wrong password is refused, for each user and for PCP
    for (user, _) in case.users {
        let out = psql_select_1(tools, "127.0.0.1", port, user, Some("not-the-password"));
        if out.status.success() {
            let msg = format!("{user} logged in through pgpool with a wrong password");
            return Err(with_logs(&pgpool, msg));
        }
    }
    let out = pcp_node_count(case.binary, dir, pcp_port, "wrong");
    if out.status.success() {
        let msg = "pcp_node_count succeeded with a wrong password".to_string();
        return Err(with_logs(&pgpool, msg));
    }

    if !pgpool.stop() {
        return Err(with_logs(&pgpool, "pgpool did not stop on SIGINT".into()));
    }
    // nor the shutdown, where only the refusals are expected
    let log = fs::read_to_string(&pgpool.log).unwrap_or_default();
    let complaints: Vec<String> =
        unexpected_log_lines(log.get(log_so_far.len()..).unwrap_or(""), case.binary)
            .into_iter()
            .filter(|l| !l.contains(REFUSAL))
            .collect();
    if !complaints.is_empty() {
        return Err(format!(
            "pgpool logged:\n{}\nfull log:\n{log}",
            complaints.join("\n")
        ));
    }
    Ok(())
}

/// The versions whose rendered configuration `LINES[index]`'s binary must run, with why:
/// its own, the line before it (an update from there restarts pods on this binary with
/// that configuration) and the line after it (a rollback from there does the same).
fn configs_for(index: usize, binaries: &[Result<PgpoolBinary, String>]) -> Vec<(String, String)> {
    // render for the exact release where the binary is known, else for the line
    let version = |i: usize| match &binaries[i] {
        Ok(b) => b.release.clone(),
        Err(_) => LINES[i].to_string(),
    };
    let mut configs = vec![(version(index), "own".to_string())];
    if index > 0 {
        configs.push((
            version(index - 1),
            format!("update from {}", LINES[index - 1]),
        ));
    }
    if index + 1 < LINES.len() {
        configs.push((
            version(index + 1),
            format!("rollback from {}", LINES[index + 1]),
        ));
    }
    configs
}

#[test]
fn real_pgpool_releases_accept_what_we_render_for_any_of_them() {
    let binaries = find_binaries();
    let missing: Vec<String> = binaries
        .iter()
        .zip(LINES)
        .filter_map(|(b, line)| b.as_ref().err().map(|e| format!("pgpool-II {line}.x: {e}")))
        .collect();
    let tools = PgTools::find();
    if in_ci() && (tools.is_none() || !missing.is_empty()) {
        panic!(
            "CI is set but binaries are missing (scripts/install-pgpool-test-deps.sh, \
             scripts/install-pgpool-versions.sh):\n{}{}",
            missing.join("\n"),
            if tools.is_none() {
                "\nno PostgreSQL under /usr/lib/postgresql"
            } else {
                ""
            }
        );
    }
    let Some(tools) = tools else {
        say("real pgpool: skipping: install postgresql (scripts/install-pgpool-test-deps.sh)");
        return;
    };
    if !missing.is_empty() {
        say(&format!(
            "real pgpool: skipping {} (scripts/install-pgpool-versions.sh installs 4.6.x and 4.7.x)",
            missing.join("; ")
        ));
    }
    if missing.len() == LINES.len() {
        return;
    }

    let run_as = RunAs::detect().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::Builder::new()
        .prefix("real-pgpool-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path();
    run_as.own(dir);
    // the servers' user must reach the binaries
    let binaries: Vec<Result<PgpoolBinary, String>> = binaries
        .into_iter()
        .map(|b| match b {
            Ok(b) if run_as.is_other_user() => {
                Ok(b.runnable_by_others(dir).unwrap_or_else(|e| panic!("{e}")))
            }
            other => other,
        })
        .collect();
    let pg = start_postgres(&tools, run_as, dir);
    let env = Env {
        tools: &tools,
        run_as,
        pg: &pg,
    };

    let md5 = (MD5_USER, MD5_PASSWORD);
    let scram = (SCRAM_USER, SCRAM_PASSWORD);
    let mut failures = Vec::new();
    let mut ran = 0;
    for (index, binary) in binaries.iter().enumerate() {
        let Ok(binary) = binary else { continue };
        for (mode_name, mode, users) in [
            ("md5", ClientAuthMode::Md5, [md5, scram]),
            ("scram", ClientAuthMode::Scram, [scram, md5]),
        ] {
            for (config_for, why) in configs_for(index, &binaries) {
                let case = Case {
                    binary,
                    config_for: config_for.clone(),
                    mode,
                    users,
                };
                let case_dir = dir.join(format!("{}-{mode_name}-for-{config_for}", binary.line));
                fs::create_dir(&case_dir).expect("create case dir");
                run_as.own(&case_dir);
                let started = Instant::now();
                let result = run_case(&env, &case, &case_dir);
                let name = format!(
                    "real pgpool-II {} {mode_name} config-for {config_for} ({why})",
                    binary.package
                );
                let took = started.elapsed().as_secs_f64();
                ran += 1;
                match result {
                    Ok(()) => say(&format!("{name}: ok ({took:.1}s)")),
                    Err(e) => {
                        say(&format!("{name}: FAILED ({took:.1}s)"));
                        failures.push(format!("{name}:\n{e}"));
                    }
                }
            }
        }
    }
    drop(pg);
    assert!(
        failures.is_empty(),
        "{} of {ran} real pgpool cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
