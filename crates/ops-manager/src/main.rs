//! `pgpool-ops-manager`: carries out day-2 operations requested with
//! `PgpoolOpsRequest` objects.

use std::process::ExitCode;

use clap::Parser;
use operator_kit::{CommonArgs, OperatorInfo, RunContext};
use pgpool_ops_manager::{CONTROLLER, OpsManagerConfig};

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
    let cli: Cli = operator_kit::parse_args(&INFO);
    operator_kit::bootstrap::main(INFO, cli.common, |ctx: RunContext| async move {
        let config = OpsManagerConfig {
            namespace: ctx.watch_namespace.clone(),
            concurrency: ctx.concurrency,
            instance: ctx.identity.clone(),
            ..Default::default()
        };
        let handle = ctx.controller(CONTROLLER);
        pgpool_ops_manager::run(ctx.client.clone(), config, &ctx.registry, handle).await?;
        Ok(())
    })
}
