//! Command-line flags (with environment fallbacks) shared by both operator binaries.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::builder::BoolishValueParser;
use clap::{ArgAction, CommandFactory, Parser, ValueEnum};

use crate::info::OperatorInfo;

/// Flags every operator binary accepts. Flatten it into the binary's parser with
/// `#[command(flatten)] common: CommonArgs`, then parse with [`parse_args`] so that
/// `--lease-name` gets the binary's default.
///
/// Every flag also reads an environment variable when it is not given on the command
/// line (shown in `--help`), so a Helm chart can configure the operator either way.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Operator runtime")]
pub struct CommonArgs {
    /// Log filter: a level (error, warn, info, debug, trace) or a tracing EnvFilter
    /// directive such as `info,kube=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", value_parser = parse_log_filter)]
    pub log_level: String,

    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address of the HTTP server for /metrics, /healthz and /readyz (`:8080` means all
    /// interfaces).
    #[arg(
        long,
        env = "METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080",
        value_parser = parse_bind_address
    )]
    pub metrics_bind_address: SocketAddr,

    /// Run controllers only while holding the leader Lease, so that several replicas can
    /// run side by side. `--leader-elect=false` runs the controllers at once.
    #[arg(
        long,
        env = "LEADER_ELECT",
        default_value_t = true,
        action = ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub leader_elect: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME")]
    pub lease_name: Option<String>,

    /// Namespace of the leader-election Lease [default: $POD_NAMESPACE, else the
    /// namespace of the kubeconfig context or of the in-cluster service account, else
    /// `default`].
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds the Lease stays valid after each renewal; a standby takes over at most
    /// this long after the leader died.
    #[arg(
        long,
        env = "LEASE_DURATION_SECONDS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(2..=3600)
    )]
    pub lease_duration_seconds: u64,

    /// The leader renews the Lease this many seconds before it expires (must be less
    /// than --lease-duration-seconds).
    #[arg(
        long,
        env = "LEASE_RENEW_GRACE_SECONDS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=3599)
    )]
    pub lease_renew_grace_seconds: u64,

    /// Leader-election identity of this replica [default: the host name followed by the
    /// process id].
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Namespace to watch; empty means all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Number of objects each controller reconciles at the same time.
    #[arg(
        long,
        env = "RECONCILE_CONCURRENCY",
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub concurrency: u16,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl CommonArgs {
    /// The namespace to watch, `None` for all namespaces (an empty value means all).
    pub fn watch_namespace(&self) -> Option<String> {
        non_empty(self.namespace.clone())
    }

    /// The Lease name: the flag, else the binary's default.
    pub fn lease_name(&self, info: &OperatorInfo) -> String {
        non_empty(self.lease_name.clone()).unwrap_or_else(|| info.default_lease.to_string())
    }

    /// The Lease namespace: the flag, else `$POD_NAMESPACE`, else `client_default` (the
    /// namespace of the kubeconfig context or of the in-cluster service account).
    pub fn lease_namespace(&self, client_default: &str) -> String {
        resolve_lease_namespace(
            self.lease_namespace.as_deref(),
            std::env::var("POD_NAMESPACE").ok(),
            client_default,
        )
    }

    /// The leader-election identity: the flag / `$POD_NAME`, else `<hostname>-<pid>`.
    ///
    /// The process id is added to the host name so that two processes on one machine
    /// (outside Kubernetes) never share an identity and both believe they hold the Lease.
    pub fn identity(&self) -> String {
        non_empty(self.identity.clone())
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()))
    }
}

/// Picks the Lease namespace: explicit value, else the pod's namespace, else the
/// client's default namespace, else `default`.
pub fn resolve_lease_namespace(
    explicit: Option<&str>,
    pod_namespace: Option<String>,
    client_default: &str,
) -> String {
    non_empty(explicit.map(str::to_string))
        .or_else(|| non_empty(pod_namespace))
        .or_else(|| non_empty(Some(client_default.to_string())))
        .unwrap_or_else(|| "default".to_string())
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn hostname() -> String {
    non_empty(std::env::var("HOSTNAME").ok())
        .or_else(|| non_empty(std::fs::read_to_string("/proc/sys/kernel/hostname").ok()))
        .or_else(|| non_empty(std::fs::read_to_string("/etc/hostname").ok()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// Checks that a `--log-level` value is a valid tracing EnvFilter directive.
fn parse_log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map(|_| value.to_string())
        .map_err(|e| e.to_string())
}

/// Parses `host:port`, `[v6]:port` or `:port` (all interfaces).
fn parse_bind_address(value: &str) -> Result<SocketAddr, String> {
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("invalid port in {value:?}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    value
        .parse()
        .map_err(|_| format!("{value:?} is not an address like 0.0.0.0:8080 or :8080"))
}

/// Builds the command of a binary's parser `T`, with the binary's default Lease name
/// shown in `--help`.
pub fn command<T: CommandFactory>(info: &OperatorInfo) -> clap::Command {
    let cmd = T::command();
    if cmd.get_arguments().any(|a| a.get_id() == "lease_name") {
        let default = info.default_lease;
        cmd.mut_arg("lease_name", |a| a.default_value(default))
    } else {
        cmd
    }
}

/// Parses the process arguments into the binary's parser `T` (which flattens
/// [`CommonArgs`]); on error or `--help` prints clap's message and exits.
pub fn parse_args<T: Parser>(info: &OperatorInfo) -> T {
    match try_parse_args_from::<T, _, _>(info, std::env::args_os()) {
        Ok(args) => args,
        Err(e) => e.exit(),
    }
}

/// Like [`parse_args`], from the given arguments (the first one is the program name),
/// returning clap's error instead of exiting.
pub fn try_parse_args_from<T, I, S>(info: &OperatorInfo, args: I) -> Result<T, clap::Error>
where
    T: Parser,
    I: IntoIterator<Item = S>,
    S: Into<OsString> + Clone,
{
    let mut cmd = command::<T>(info);
    let matches = cmd.try_get_matches_from_mut(args)?;
    T::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    const INFO: OperatorInfo = OperatorInfo {
        name: "test-operator",
        version: "0.0.0",
        default_lease: "test-operator-leader",
    };

    fn parse(args: &[&str]) -> Result<CommonArgs, clap::Error> {
        let argv = std::iter::once("test-operator").chain(args.iter().copied());
        try_parse_args_from::<Cli, _, _>(&INFO, argv).map(|c| c.common)
    }

    #[test]
    fn bind_address_accepts_port_only_and_full_addresses() {
        assert_eq!(
            parse_bind_address(":9090"),
            Ok("0.0.0.0:9090".parse().expect("literal"))
        );
        assert_eq!(
            parse_bind_address("127.0.0.1:1"),
            Ok("127.0.0.1:1".parse().expect("literal"))
        );
        assert!(parse_bind_address("localhost").is_err());
        assert!(parse_bind_address(":http").is_err());
    }

    #[test]
    fn log_level_accepts_directives_and_rejects_garbage() {
        assert!(parse(&["--log-level", "info,kube=debug"]).is_ok());
        assert!(parse(&["--log-level", "warn"]).is_ok());
        let err = parse(&["--log-level", "info,kube=loud"]).expect_err("bad level");
        assert!(err.to_string().contains("--log-level"), "{err}");
    }

    #[test]
    fn leader_elect_forms() {
        // Each case is free of environment input only if LEADER_ELECT is unset, which
        // holds in the unit-test process (no test sets it).
        assert!(
            !parse(&["--leader-elect=false"])
                .expect("parse")
                .leader_elect
        );
        assert!(
            !parse(&["--leader-elect", "false"])
                .expect("parse")
                .leader_elect
        );
        assert!(parse(&["--leader-elect"]).expect("parse").leader_elect);
        assert!(parse(&["--leader-elect=true"]).expect("parse").leader_elect);
        assert!(!parse(&["--leader-elect=0"]).expect("parse").leader_elect);
        assert!(parse(&["--leader-elect=maybe"]).is_err());
    }

    #[test]
    fn concurrency_must_be_positive() {
        assert_eq!(
            parse(&["--concurrency", "9"]).expect("parse").concurrency,
            9
        );
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--concurrency", "-1"]).is_err());
    }

    #[test]
    fn lease_name_default_comes_from_the_binary() {
        let args = parse(&[]).expect("parse");
        assert_eq!(args.lease_name.as_deref(), Some("test-operator-leader"));
        assert_eq!(args.lease_name(&INFO), "test-operator-leader");
        let args = parse(&["--lease-name", "other"]).expect("parse");
        assert_eq!(args.lease_name(&INFO), "other");
        let help = command::<Cli>(&INFO).render_long_help().to_string();
        assert!(help.contains("test-operator-leader"), "{help}");
    }

    #[test]
    fn lease_namespace_precedence() {
        assert_eq!(
            resolve_lease_namespace(Some("flag"), Some("pod".into()), "ctx"),
            "flag"
        );
        assert_eq!(
            resolve_lease_namespace(None, Some("pod".into()), "ctx"),
            "pod"
        );
        assert_eq!(
            resolve_lease_namespace(Some(""), Some("".into()), "ctx"),
            "ctx"
        );
        assert_eq!(resolve_lease_namespace(None, None, ""), "default");
    }

    #[test]
    fn watch_namespace_empty_means_all() {
        let mut args = parse(&[]).expect("parse");
        args.namespace = Some(String::new());
        assert_eq!(args.watch_namespace(), None);
        args.namespace = Some("db".into());
        assert_eq!(args.watch_namespace(), Some("db".into()));
    }

    #[test]
    fn identity_flag_wins_else_hostname_and_pid() {
        let mut args = parse(&["--identity", "pod-0"]).expect("parse");
        assert_eq!(args.identity(), "pod-0");
        args.identity = None;
        let id = args.identity();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
    }
}
