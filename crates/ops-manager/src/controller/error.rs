//! Errors of a reconcile: everything here is retried with backoff (the error policy).
//! Problems the user must fix are not errors: they end the request Failed.

/// Errors of one reconcile; the request is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconcileError {
    /// A call to the API server failed.
    #[error("API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// A write kept conflicting with other writers.
    #[error("{0} kept changing under us (409 Conflict): will retry")]
    Contended(String),
}

/// Result of a reconcile step.
pub(super) type Result<T, E = ReconcileError> = std::result::Result<T, E>;
