//! `pgpool-ops-manager`: carries out day-2 operations requested with
//! `PgpoolOpsRequest` objects.

use std::process::ExitCode;

use clap::Parser;
use operator_kit::{CommonArgs, OperatorInfo, RunContext};

const INFO: OperatorInfo = OperatorInfo {
    name: "pgpool-ops-manager",
    version: env!("CARGO_PKG_VERSION"),
    default_lease: "pgpool-ops-manager-leader",
};

/// Carries out KubeDB-compatible `PgpoolOpsRequest` operations on Pgpool poolers.
#[derive(Debug, Parser)]
#[command(name = "pgpool-ops-manager", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    match runtime() {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("pgpool-ops-manager: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli: Cli = operator_kit::parse_args(&INFO);
    let result = operator_kit::run(INFO, cli.common, |ctx: RunContext| async move {
        let readiness = ctx.readiness.controller("pgpoolopsrequest");
        let config = pgpool_ops_manager::OpsManagerConfig {
            namespace: ctx.watch_namespace.clone(),
            concurrency: ctx.concurrency,
            instance: ctx.identity.clone(),
            ..Default::default()
        };
        let shutdown = ctx.shutdown.clone();
        pgpool_ops_manager::run(
            ctx.client.clone(),
            config,
            &ctx.registry,
            async move { shutdown.cancelled().await },
            move || readiness.set_synced(),
        )
        .await?;
        Ok(())
    })
    .await;
    operator_kit::report(&INFO, result)
}

/// One malloc arena for all threads (glibc): the operator allocates little per thread, and
/// every extra arena keeps its own free memory (about a megabyte of resident memory here).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc's `M_ARENA_MAX` parameter of `mallopt`.
        const M_ARENA_MAX: std::os::raw::c_int = -8;
        unsafe extern "C" {
            fn mallopt(
                param: std::os::raw::c_int,
                value: std::os::raw::c_int,
            ) -> std::os::raw::c_int;
        }
        // SAFETY: mallopt only sets an allocator tunable; it is called before any other
        // thread exists.
        unsafe {
            mallopt(M_ARENA_MAX, 1);
        }
    }
}

/// A multi-threaded runtime with two workers whatever the node's core count: the work is
/// I/O-bound, and every worker thread costs memory (stack, allocator state).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
