//! `pgpool-provisioner`: turns `Pgpool` objects into running poolers, and runs the
//! PetSet controller unless told not to.

use std::process::ExitCode;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use operator_kit::{CommonArgs, OperatorInfo, RunContext};
use pgpool_provisioner::{Controllers, PETSET_CONTROLLER, PGPOOL_CONTROLLER, ProvisionerConfig};

const INFO: OperatorInfo = OperatorInfo {
    name: "pgpool-provisioner",
    version: env!("CARGO_PKG_VERSION"),
    default_lease: "pgpool-provisioner-leader",
};

/// Provisions Pgpool-II poolers from KubeDB-compatible `Pgpool` objects.
#[derive(Debug, Parser)]
#[command(name = "pgpool-provisioner", version, about)]
struct Cli {
    /// Without a command, runs the operator.
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    common: CommonArgs,

    /// Run the built-in PetSet controller (PetSet -> Pods). Turn it off with
    /// `--petset-controller=false` when another PetSet controller is installed.
    #[arg(
        long,
        env = "ENABLE_PETSET_CONTROLLER",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    petset_controller: bool,

    /// Seconds between two looks at a Pgpool or PetSet when nothing happens (a safety net:
    /// changes are watched; a look at an unchanged object reads only the watch caches).
    #[arg(long, env = "RESYNC_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    resync_seconds: u64,

    /// A file of PgpoolVersion objects (multi-document YAML) to server-side apply once this
    /// replica leads, retried until the PgpoolVersion CRD is served. The chart passes its
    /// default catalog this way (`catalog.enabled`).
    #[arg(long, env = "CATALOG_FILE", value_name = "FILE")]
    catalog_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what the provisioner would create for a Pgpool, without a cluster.
    ///
    /// Reads the Pgpool and the objects it refers to (PgpoolVersion, AppBinding, the AppBinding's
    /// Secret, optional configuration Secret and `<service>-standby` Service) from YAML
    /// files. A problem prints the message the Pgpool's condition would carry and exits 2;
    /// unreadable input exits 1.
    Render(RenderArgs),
}

#[derive(Debug, Args)]
struct RenderArgs {
    /// A YAML file (multi-document; `-` reads standard input). Repeat for more files.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    files: Vec<String>,

    /// What to print: the configuration files, or the child objects as YAML.
    #[arg(short = 'o', long, value_enum, default_value_t = RenderOutput::Files)]
    output: RenderOutput,

    /// Print passwords and keys instead of masking them.
    #[arg(long)]
    show_secrets: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RenderOutput {
    /// `pgpool.conf`, `pool_hba.conf`, `pcp.conf` and `pool_passwd`, each under `# <file>`.
    Files,
    /// The Secrets, Services, PetSet and PDB as multi-document YAML.
    Yaml,
}

fn main() -> ExitCode {
    let cli: Cli = operator_kit::parse_args(&INFO);
    if let Some(Command::Render(args)) = cli.command {
        return operator_kit::bootstrap::block_on(&INFO, || render(args));
    }
    let petset_controller = cli.petset_controller;
    let resync = std::time::Duration::from_secs(cli.resync_seconds);
    // A bad catalog file is a configuration error: refuse to start, with one line.
    let catalog = match cli
        .catalog_file
        .as_deref()
        .map(pgpool_provisioner::catalog::read)
    {
        None => None,
        Some(Ok(versions)) => Some(versions),
        Some(Err(e)) => {
            eprintln!("{}: error: {e}", INFO.name);
            return ExitCode::FAILURE;
        }
    };
    operator_kit::bootstrap::main(INFO, cli.common, move |ctx: RunContext| async move {
        if !petset_controller {
            tracing::info!("PetSet controller is off (--petset-controller=false)");
        }
        if let Some(versions) = catalog {
            tokio::spawn(pgpool_provisioner::catalog::apply(
                ctx.client.clone(),
                versions,
                ctx.shutdown.clone(),
            ));
        }
        let controllers = Controllers {
            pgpool: ctx.controller(PGPOOL_CONTROLLER),
            petset: petset_controller.then(|| ctx.controller(PETSET_CONTROLLER)),
        };
        let config = ProvisionerConfig {
            namespace: ctx.watch_namespace.clone(),
            concurrency: ctx.concurrency,
            instance: ctx.identity.clone(),
            resync,
            ..Default::default()
        };
        pgpool_provisioner::run(ctx.client.clone(), config, &ctx.registry, controllers).await?;
        Ok(())
    })
}

/// `pgpool-provisioner render`: prints to stdout; on failure one line on stderr.
async fn render(args: RenderArgs) -> ExitCode {
    use pgpool_provisioner::render::{self, Inputs, Output, RenderError};
    use std::io::Read as _;
    let mut documents = Vec::new();
    for file in &args.files {
        let text = if file == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        } else {
            std::fs::read_to_string(file)
        };
        match text {
            Ok(text) => documents.push((file.clone(), text)),
            Err(e) => {
                eprintln!("pgpool-provisioner render: cannot read {file}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let output = match args.output {
        RenderOutput::Files => Output::Files,
        RenderOutput::Yaml => Output::Yaml,
    };
    let mut generator = pgpool_provisioner::pgpool::validate::RandomGenerator;
    let result = match Inputs::parse(&documents) {
        Ok(inputs) => render::render(&inputs, output, args.show_secrets, &mut generator).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e @ RenderError::Problem(_)) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!(
                "pgpool-provisioner render: {}",
                e.to_string().replace('\n', " ")
            );
            ExitCode::from(1)
        }
    }
}
