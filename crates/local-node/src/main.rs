//! `local-node`: runs the pods bound to this machine as processes and answers Services.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use local_node::{ImageMap, NodeConfig};

/// Plays kubelet and kube-proxy for this machine (needs root).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Kubeconfig of the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Image map file (YAML).
    #[arg(long)]
    images: PathBuf,
    /// Node name pods are bound to.
    #[arg(long, default_value = "local")]
    node_name: String,
    /// Delay before endpoint changes reach the proxy (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    propagation_delay: Duration,
    /// Folder for pod volumes, logs and overlays.
    #[arg(long, default_value = "/var/lib/local-node")]
    state_dir: PathBuf,
}

/// Parses `500ms`, `1s`, `1.5s`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))
        .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m)"))?;
    let n: f64 = number.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    let images = ImageMap::load(&args.images)?;
    let node = local_node::start(
        client,
        NodeConfig {
            node_name: args.node_name,
            state_dir: args.state_dir,
            propagation_delay: args.propagation_delay,
            ..NodeConfig::default()
        },
        images,
    )
    .await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    node.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
