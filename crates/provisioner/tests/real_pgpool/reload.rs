//! What a reload (`pcp_reload_config`) changes on the real binaries, and so why Reconfigure
//! restarts the pods instead: `max_pool` (the parameter of KubeDB's Reconfigure example)
//! keeps its start value after a reload, while a parameter the documentation marks "can be
//! changed by reloading" (`client_idle_limit`) takes the new one. And `pcp.conf` needs no
//! reload at all: pcp reads it at each connection.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use pgpool_config::{Backend, ClientAuthMode, Paths, RenderInput, pgpool_args, render};

use crate::binaries::{LINES, PgpoolBinary, find_binaries};
use crate::servers::{
    MD5_PASSWORD, MD5_USER, PgTools, RunAs, START_TIMEOUT, Server, client_command, free_ports,
    in_ci, run, say, start_postgres, text, wait_for,
};
const NEW_PCP_PASSWORD: &str = "reloaded-pcp-password";

use crate::{PCP_PASSWORD, POOL_KEY, install_files, pcp_node_count, pool_status};

fn input(
    binary: &PgpoolBinary,
    pg_port: u16,
    paths: &Paths,
    ports: &[u16],
    extra: &str,
    pcp_password: &str,
) -> RenderInput {
    RenderInput {
        version: binary.release.clone(),
        backends: vec![Backend::new("127.0.0.1", pg_port)],
        auth_mode: ClientAuthMode::Md5,
        backend_user: MD5_USER.into(),
        backend_password: MD5_PASSWORD.into(),
        pcp_user: crate::PCP_USER.into(),
        pcp_password: pcp_password.into(),
        pool_key: POOL_KEY.into(),
        num_init_children: Some(2),
        user_overrides: pgpool_config::parse_pgpool_conf(extra).expect("overrides"),
        paths: paths.clone(),
        port: ports[0],
        pcp_port: ports[1],
        ..RenderInput::default()
    }
}

fn status_of(tools: &PgTools, port: u16) -> Result<(String, String), String> {
    let s = pool_status(tools, port, MD5_USER, MD5_PASSWORD)?;
    let get = |k: &str| s.get(k).cloned().unwrap_or_default();
    Ok((get("max_pool"), get("client_idle_limit")))
}

fn reload_case(
    binary: &PgpoolBinary,
    tools: &PgTools,
    run_as: RunAs,
    pg_port: u16,
    dir: &Path,
) -> Result<(), String> {
    fs::create_dir_all(dir).expect("dir");
    run_as.own(dir);
    let ports = free_ports(2);
    let paths = Paths {
        config_dir: dir.join("config"),
        key_file: dir.join("key/.pgpoolkey"),
        run_dir: dir.join("run"),
    };
    let before = render(&input(
        binary,
        pg_port,
        &paths,
        &ports,
        "client_idle_limit = 11",
        PCP_PASSWORD,
    ))
    .map_err(|e| e.to_string())?;
    install_files(&before, &paths, run_as);
    let mut cmd = run_as.command(&binary.pgpool);
    cmd.args(pgpool_args(&paths));
    let mut pgpool = Server::start("pgpool", cmd, dir.join("pgpool.log"));
    wait_for("pcp to answer", &mut pgpool, START_TIMEOUT, || {
        pcp_node_count(binary, dir, ports[1], PCP_PASSWORD)
            .status
            .success()
    })?;
    let (max_pool, idle) = status_of(tools, ports[0])?;
    if (max_pool.as_str(), idle.as_str()) != ("2", "11") {
        return Err(format!(
            "at start: max_pool {max_pool}, client_idle_limit {idle}"
        ));
    }
    // the Reconfigure of KubeDB's example, and a reloadable parameter, then a reload
    let after = render(&input(
        binary,
        pg_port,
        &paths,
        &ports,
        "client_idle_limit = 77\nmax_pool = 7",
        NEW_PCP_PASSWORD,
    ))
    .map_err(|e| e.to_string())?;
    fs::set_permissions(&paths.config_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    install_files(&after, &paths, run_as);
    // pcp reads pcp.conf at each connection: the new password works before any reload
    let old_ok = pcp_node_count(binary, dir, ports[1], PCP_PASSWORD)
        .status
        .success();
    let new_ok = pcp_node_count(binary, dir, ports[1], NEW_PCP_PASSWORD)
        .status
        .success();
    if old_ok || !new_ok {
        return Err(format!(
            "with a new pcp.conf and no reload: old pcp password works: {old_ok}, new: {new_ok}"
        ));
    }
    // (.pcppass holds the new password now)
    let reload = binary.pcp_node_count.with_file_name("pcp_reload_config");
    let pcppass = dir.join("pcppass");
    let out = run(client_command(&reload)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &ports[1].to_string(),
            "-U",
            crate::PCP_USER,
            "-w",
        ])
        .env("PCPPASSFILE", &pcppass));
    if !out.status.success() {
        return Err(format!(
            "pcp_reload_config failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        ));
    }
    let mut last = (String::new(), String::new());
    wait_for(
        "the reload to reach new sessions",
        &mut pgpool,
        Duration::from_secs(10),
        || {
            last = status_of(tools, ports[0]).unwrap_or_default();
            last.1 == "77"
        },
    )
    .map_err(|e| format!("{e}; SHOW pool_status said {last:?}"))?;
    if last.0 != "2" {
        return Err(format!("max_pool changed on reload to {}", last.0));
    }
    pgpool.stop();
    // a restart takes it
    let mut cmd = run_as.command(&binary.pgpool);
    cmd.args(pgpool_args(&paths));
    let mut pgpool = Server::start("pgpool", cmd, dir.join("pgpool-restarted.log"));
    wait_for("pcp to answer", &mut pgpool, START_TIMEOUT, || {
        pcp_node_count(binary, dir, ports[1], NEW_PCP_PASSWORD)
            .status
            .success()
    })?;
    let (max_pool, _) = status_of(tools, ports[0])?;
    pgpool.stop();
    if max_pool != "7" {
        return Err(format!("after the restart max_pool is {max_pool}, not 7"));
    }
    Ok(())
}

#[test]
fn real_pgpool_reload_changes_client_idle_limit_but_not_max_pool() {
    let binaries = find_binaries();
    let tools = PgTools::find();
    let available: Vec<PgpoolBinary> = binaries.into_iter().filter_map(Result::ok).collect();
    if in_ci() && (tools.is_none() || available.len() != LINES.len()) {
        panic!("CI is set but pgpool binaries or PostgreSQL are missing");
    }
    let Some(tools) = tools else {
        say(
            "real pgpool reload: skipping: install postgresql (scripts/install-pgpool-test-deps.sh)",
        );
        return;
    };
    if available.is_empty() {
        say("real pgpool reload: skipping: no pgpool binary (scripts/install-pgpool-versions.sh)");
        return;
    }
    let run_as = RunAs::detect().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::Builder::new()
        .prefix("real-pgpool-reload-")
        .tempdir()
        .expect("temp dir");
    let dir = tmp.path();
    run_as.own(dir);
    let binaries: Vec<PgpoolBinary> = available
        .into_iter()
        .map(|b| {
            if run_as.is_other_user() {
                b.runnable_by_others(dir).unwrap_or_else(|e| panic!("{e}"))
            } else {
                b
            }
        })
        .collect();
    let pg = start_postgres(&tools, run_as, dir);
    let mut failures = Vec::new();
    for b in &binaries {
        match reload_case(
            b,
            &tools,
            run_as,
            pg.port,
            &dir.join(format!("reload-{}", b.line)),
        ) {
            Ok(()) => say(&format!("real pgpool-II {} reload: ok", b.package)),
            Err(e) => failures.push(format!("pgpool-II {}: {e}", b.package)),
        }
    }
    drop(pg);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
