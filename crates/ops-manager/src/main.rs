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

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = operator_kit::parse_args(&INFO);
    let result = operator_kit::run(INFO, cli.common, |ctx: RunContext| async move {
        // The PgpoolOpsRequest controller is started here. Until it exists, report it
        // as synced and idle until shutdown.
        ctx.readiness.controller("pgpoolopsrequest").set_synced();
        ctx.shutdown_requested().await;
        Ok(())
    })
    .await;
    operator_kit::report(&INFO, result)
}
