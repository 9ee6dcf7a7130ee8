//! The errors that end [`run`](crate::run).

/// Errors that end [`run`]. Each prints as one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--log-level` is not a valid filter.
    #[error("invalid --log-level {filter:?}: {reason}")]
    LogFilter {
        /// The rejected filter.
        filter: String,
        /// Why it was rejected.
        reason: String,
    },
    /// No usable client configuration.
    #[error(
        "cannot load a Kubernetes client configuration: {0}; set KUBECONFIG to a valid kubeconfig file or run inside a cluster"
    )]
    KubeConfig(String),
    /// The API server did not answer.
    #[error(
        "cannot reach the Kubernetes API server at {url}: {reason}; check that the cluster is up and that KUBECONFIG points at it, or run inside a cluster"
    )]
    Unreachable {
        /// API server URL tried.
        url: String,
        /// Innermost cause.
        reason: String,
    },
    /// The API server answered with an error status.
    #[error(
        "the Kubernetes API server at {url} refused the request: {reason}; check the credentials in KUBECONFIG or the service account"
    )]
    Rejected {
        /// API server URL tried.
        url: String,
        /// Status message and code.
        reason: String,
    },
    /// The metrics/health address cannot be bound.
    #[error(
        "cannot listen on {addr} for metrics and health: {reason}; choose another --metrics-bind-address"
    )]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        reason: String,
    },
    /// Creating a metric failed.
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Signal handlers cannot be installed.
    #[error("cannot listen for termination signals: {0}")]
    Signals(String),
    /// The Lease cannot be set up.
    #[error(
        "leader election on Lease {namespace}/{name} failed: {reason}; check the RBAC rules for leases in that namespace, or run with --leader-elect=false"
    )]
    LeaderElection {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// Leadership was lost while the controllers ran.
    #[error(
        "lost leadership of Lease {lease}: {reason}; controllers stopped, exiting so that this replica restarts as a standby"
    )]
    LeadershipLost {
        /// `namespace/name` of the Lease.
        lease: String,
        /// Why.
        reason: String,
    },
    /// The controllers returned an error.
    #[error("controllers failed: {0}")]
    Controllers(String),
    /// The controllers returned before a shutdown was requested.
    #[error("controllers stopped without a shutdown request")]
    ControllersExited,
}
