//! Logging (tracing-subscriber) and the Prometheus registry.

use std::io::IsTerminal;

use prometheus::{IntGauge, Opts, Registry};
use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;
use crate::error::Error;
use crate::info::OperatorInfo;

/// Installs the global tracing subscriber: logs go to stdout, as text or JSON lines,
/// filtered by `filter` (an EnvFilter directive such as `info,kube=debug`).
///
/// Returns `Ok(false)` when a global subscriber was already installed (e.g. by a test),
/// which is left in place.
pub fn init_tracing(filter: &str, format: LogFormat) -> Result<bool, Error> {
    let env_filter = EnvFilter::builder()
        .parse(filter)
        .map_err(|e| Error::LogFilter {
            filter: filter.to_string(),
            reason: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(std::io::stdout);
    let installed = match format {
        LogFormat::Text => builder.with_target(true).try_init().is_ok(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
            .is_ok(),
    };
    Ok(installed)
}

/// Name of the gauge that is 1 while this process runs the controllers.
pub const LEADER_GAUGE: &str = "pgpool_operator_leader";
/// Name of the gauge that carries the binary name and version as labels.
pub const BUILD_INFO_GAUGE: &str = "pgpool_operator_build_info";

/// A new registry with process metrics (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, ...), `pgpool_operator_build_info{binary,version}`
/// and the returned `pgpool_operator_leader{binary}` gauge (starts at 0).
pub fn new_registry(info: &OperatorInfo) -> Result<(Registry, IntGauge), Error> {
    let registry = Registry::new();
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;

    let build_info = IntGauge::with_opts(
        Opts::new(
            BUILD_INFO_GAUGE,
            "Always 1; the labels name the operator binary and its version.",
        )
        .const_label("binary", info.name)
        .const_label("version", info.version),
    )?;
    build_info.set(1);
    registry.register(Box::new(build_info))?;

    let leader = IntGauge::with_opts(
        Opts::new(
            LEADER_GAUGE,
            "1 while this process runs the controllers (holds the leader Lease, or leader election is off), else 0.",
        )
        .const_label("binary", info.name),
    )?;
    registry.register(Box::new(leader.clone()))?;
    Ok((registry, leader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_has_process_build_and_leader_metrics() {
        let info = OperatorInfo {
            name: "x-operator",
            version: "1.2.3",
            default_lease: "x",
        };
        let (registry, leader) = new_registry(&info).expect("registry");
        leader.set(1);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(
            names.iter().any(|n| n == "process_cpu_seconds_total"),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n == "process_resident_memory_bytes"),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n == BUILD_INFO_GAUGE), "{names:?}");
        assert!(names.iter().any(|n| n == LEADER_GAUGE), "{names:?}");
    }

    #[test]
    fn bad_filter_is_an_error_naming_the_filter() {
        let err = init_tracing("info,kube=loud", LogFormat::Text).expect_err("bad filter");
        assert!(err.to_string().contains("info,kube=loud"), "{err}");
    }
}
