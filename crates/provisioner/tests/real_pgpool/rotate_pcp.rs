//! RotateAuth on the real binaries: a pgpool started with the files rendered for the old
//! pcp password takes it and refuses the new one; restarted with the files rendered after
//! the rotation, it takes the new one and refuses the old, on every installed release line.
//! (pcp reads `pcp.conf` at each connection, see `reload.rs`; the pods restart anyway, so
//! that every pod runs the PetSet's revision with the new config hash.)

use std::fs;
use std::path::Path;

use pgpool_config::{Backend, ClientAuthMode, Paths, RenderInput, pgpool_args, render};

use crate::binaries::{LINES, PgpoolBinary, find_binaries};
use crate::servers::{
    MD5_PASSWORD, MD5_USER, PgTools, RunAs, START_TIMEOUT, Server, free_ports, in_ci, say,
    start_postgres, wait_for,
};
use crate::{POOL_KEY, install_files, pcp_node_count};

const OLD_PASSWORD: &str = "old-pcp-password";
const NEW_PASSWORD: &str = "new-pcp-password";

/// Start pgpool with files rendered for `password`; check which pcp passwords it takes.
fn run_with(
    binary: &PgpoolBinary,
    run_as: RunAs,
    pg_port: u16,
    dir: &Path,
    password: &str,
    accepted: &str,
    refused: &str,
) -> Result<(), String> {
    fs::create_dir_all(dir).expect("dir");
    run_as.own(dir);
    let ports = free_ports(2);
    let paths = Paths {
        config_dir: dir.join("config"),
        key_file: dir.join("key/.pgpoolkey"),
        run_dir: dir.join("run"),
    };
    let input = RenderInput {
        version: binary.release.clone(),
        backends: vec![Backend::new("127.0.0.1", pg_port)],
        auth_mode: ClientAuthMode::Md5,
        backend_user: MD5_USER.into(),
        backend_password: MD5_PASSWORD.into(),
        pcp_user: crate::PCP_USER.into(),
        pcp_password: password.into(),
        pool_key: POOL_KEY.into(),
        num_init_children: Some(2),
        paths: paths.clone(),
        port: ports[0],
        pcp_port: ports[1],
        ..RenderInput::default()
    };
    let rendered = render(&input).map_err(|e| format!("render: {e}"))?;
    install_files(&rendered, &paths, run_as);
    let mut cmd = run_as.command(&binary.pgpool);
    cmd.args(pgpool_args(&paths));
    let mut pgpool = Server::start("pgpool", cmd, dir.join("pgpool.log"));
    let pcp_up = |pw: &str| pcp_node_count(binary, dir, ports[1], pw).status.success();
    wait_for("pcp to answer", &mut pgpool, START_TIMEOUT, || {
        pcp_up(accepted)
    })?;
    if pcp_up(refused) {
        return Err(format!(
            "pcp accepted the password {refused:?} it must refuse"
        ));
    }
    pgpool.stop();
    Ok(())
}

#[test]
fn real_pgpool_takes_the_rotated_pcp_password_after_a_restart() {
    let binaries = find_binaries();
    let tools = PgTools::find();
    let available: Vec<PgpoolBinary> = binaries.into_iter().filter_map(Result::ok).collect();
    if in_ci() && (tools.is_none() || available.len() != LINES.len()) {
        panic!("CI is set but pgpool binaries or PostgreSQL are missing");
    }
    let Some(tools) = tools else {
        say(
            "real pgpool pcp rotation: skipping: install postgresql (scripts/install-pgpool-test-deps.sh)",
        );
        return;
    };
    if available.is_empty() {
        say(
            "real pgpool pcp rotation: skipping: no pgpool binary (scripts/install-pgpool-versions.sh)",
        );
        return;
    }
    let run_as = RunAs::detect().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::Builder::new()
        .prefix("real-pgpool-pcp-")
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
        let base = dir.join(format!("pcp-{}", b.line));
        let result = run_with(
            b,
            run_as,
            pg.port,
            &base.join("before"),
            OLD_PASSWORD,
            OLD_PASSWORD,
            NEW_PASSWORD,
        )
        .and_then(|()| {
            run_with(
                b,
                run_as,
                pg.port,
                &base.join("after"),
                NEW_PASSWORD,
                NEW_PASSWORD,
                OLD_PASSWORD,
            )
        });
        match result {
            Ok(()) => say(&format!("real pgpool-II {} pcp rotation: ok", b.package)),
            Err(e) => failures.push(format!("pgpool-II {}: {e}", b.package)),
        }
    }
    drop(pg);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
