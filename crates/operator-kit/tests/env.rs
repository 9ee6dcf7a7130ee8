//! Environment fallbacks of the common flags. This file holds a single test because it
//! changes the process environment, which no other thread may read at the same time.

use clap::Parser;
use operator_kit::{CommonArgs, LogFormat, OperatorInfo, try_parse_args_from};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

const INFO: OperatorInfo = OperatorInfo {
    name: "env-test",
    version: "0.0.0",
    default_lease: "env-test-leader",
};

const VARS: [&str; 13] = [
    "LOG_LEVEL",
    "LOG_FORMAT",
    "METRICS_BIND_ADDRESS",
    "LEADER_ELECT",
    "LEASE_NAME",
    "LEASE_NAMESPACE",
    "LEASE_DURATION_SECONDS",
    "LEASE_RENEW_GRACE_SECONDS",
    "POD_NAME",
    "POD_NAMESPACE",
    "WATCH_NAMESPACE",
    "RECONCILE_CONCURRENCY",
    "HOSTNAME",
];

fn parse(args: &[&str]) -> CommonArgs {
    let argv = std::iter::once("env-test").chain(args.iter().copied());
    try_parse_args_from::<Cli, _, _>(&INFO, argv)
        .expect("parse")
        .common
}

fn set(key: &str, value: &str) {
    // SAFETY: this test binary runs exactly one test, and the test does not spawn
    // threads, so nothing reads the environment concurrently.
    unsafe { std::env::set_var(key, value) }
}

fn clear() {
    for key in VARS {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(key) }
    }
}

#[test]
fn flags_fall_back_to_environment_then_defaults() {
    clear();
    let defaults = parse(&[]);
    assert_eq!(defaults.log_level, "info");
    assert_eq!(defaults.log_format, LogFormat::Text);
    assert_eq!(defaults.metrics_bind_address.to_string(), "0.0.0.0:8080");
    assert!(defaults.leader_elect);
    assert_eq!(defaults.lease_name(&INFO), "env-test-leader");
    assert_eq!(
        defaults.lease_namespace("from-kubeconfig"),
        "from-kubeconfig"
    );
    assert_eq!(defaults.lease_namespace(""), "default");
    assert_eq!(defaults.lease_duration_seconds, 15);
    assert_eq!(defaults.lease_renew_grace_seconds, 5);
    assert_eq!(defaults.watch_namespace(), None);
    assert_eq!(defaults.concurrency, 4);
    set("HOSTNAME", "node-a");
    assert_eq!(
        defaults.identity(),
        format!("node-a-{}", std::process::id())
    );

    set("LOG_LEVEL", "debug,kube=warn");
    set("LOG_FORMAT", "json");
    set("METRICS_BIND_ADDRESS", ":9090");
    set("LEADER_ELECT", "false");
    set("LEASE_NAME", "custom-lease");
    set("POD_NAMESPACE", "operators");
    set("LEASE_DURATION_SECONDS", "20");
    set("LEASE_RENEW_GRACE_SECONDS", "4");
    set("POD_NAME", "pgpool-provisioner-7d9f-abcde");
    set("WATCH_NAMESPACE", "databases");
    set("RECONCILE_CONCURRENCY", "8");
    let from_env = parse(&[]);
    assert_eq!(from_env.log_level, "debug,kube=warn");
    assert_eq!(from_env.log_format, LogFormat::Json);
    assert_eq!(from_env.metrics_bind_address.to_string(), "0.0.0.0:9090");
    assert!(!from_env.leader_elect);
    assert_eq!(from_env.lease_name(&INFO), "custom-lease");
    assert_eq!(from_env.lease_namespace("from-kubeconfig"), "operators");
    assert_eq!(from_env.lease_duration_seconds, 20);
    assert_eq!(from_env.lease_renew_grace_seconds, 4);
    assert_eq!(from_env.identity(), "pgpool-provisioner-7d9f-abcde");
    assert_eq!(from_env.watch_namespace(), Some("databases".to_string()));
    assert_eq!(from_env.concurrency, 8);

    // LEASE_NAMESPACE beats POD_NAMESPACE; flags beat the environment.
    set("LEASE_NAMESPACE", "leases");
    let flags = parse(&[
        "--log-format=text",
        "--leader-elect",
        "--namespace",
        "other",
        "--concurrency=2",
        "--metrics-bind-address=127.0.0.1:8081",
    ]);
    assert_eq!(flags.lease_namespace("from-kubeconfig"), "leases");
    assert_eq!(flags.log_format, LogFormat::Text);
    assert!(flags.leader_elect);
    assert_eq!(flags.watch_namespace(), Some("other".to_string()));
    assert_eq!(flags.concurrency, 2);
    assert_eq!(flags.metrics_bind_address.to_string(), "127.0.0.1:8081");
    let flags = parse(&["--lease-namespace", "flag-ns"]);
    assert_eq!(flags.lease_namespace("from-kubeconfig"), "flag-ns");

    // An empty WATCH_NAMESPACE means all namespaces; a bad value is rejected.
    set("WATCH_NAMESPACE", "");
    assert_eq!(parse(&[]).watch_namespace(), None);
    set("RECONCILE_CONCURRENCY", "0");
    let err = try_parse_args_from::<Cli, _, _>(&INFO, ["env-test"]).expect_err("0 is invalid");
    assert!(err.to_string().contains("--concurrency"), "{err}");
    set("LEADER_ELECT", "perhaps");
    set("RECONCILE_CONCURRENCY", "1");
    assert!(try_parse_args_from::<Cli, _, _>(&INFO, ["env-test"]).is_err());
    clear();
}
