//! End-to-end tests of the pgpool operators on a real cluster, and the chart checks.
//!
//! - [`charts`]: render the Helm charts and parse every manifest strictly
//!   (`tests/charts.rs`, run by `make charts-check` and by `cargo test`).
//! - [`cluster`]: whether a cluster is configured (`E2E=1` and a reachable `KUBECONFIG`),
//!   and the helpers the scenario uses: waiting with watches, client pods running `psql`,
//!   operator metrics, and a simulated kubelet for control planes without nodes
//!   (`E2E_SIMULATE_KUBELET=1`). `tests/update_version.rs` is the scenario `make e2e` runs.
//! - [`load`]: a client that keeps a PostgreSQL endpoint busy (a new connection per query at a
//!   fixed rate, plus long sessions) and reports failures, gaps and cut sessions per window
//!   (`tests/update_under_load.rs`).
//! - [`scenario`]: what the scenarios under load share (catalog, credentials, the load
//!   client's address, cleanup); `tests/day2_operations.rs` runs the day-2 requests.
//! - [`day2_config`]: what a Successful Reconfigure and RotateAuth must have changed, checked
//!   through the Pgpool Service (steps of the day-2 scenario).
//! - [`scenario_update`]: waiting for a Pgpool Ready on a version and one UpdateVersion
//!   inside a load window (`tests/tls_under_load.rs`).
//! - [`key_leaks`]: private key material in the operators' output (`tests/tls_under_load.rs`).

pub mod charts;
pub mod cluster;
pub mod day2_config;
pub mod key_leaks;
pub mod kubelet;
pub mod load;
pub mod metrics;
pub mod psql;
pub mod scenario;
pub mod scenario_request;
pub mod scenario_update;
pub mod served_cert;
pub mod wait;
