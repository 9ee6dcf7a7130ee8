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

// Two workers whatever the node's core count: the work is I/O-bound, and every worker
// thread costs memory (stack, allocator arena).
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
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
