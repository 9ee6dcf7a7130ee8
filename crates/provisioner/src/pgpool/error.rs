//! The errors of a reconcile that are retried (a problem the user must fix is a
//! [`super::validate::Problem`] instead, reported in the status).

/// Errors of a reconcile; all are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A request to the API server failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be serialized.
    #[error("cannot serialize an object: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A write carried the resourceVersion of a cached copy that is no longer the newest; the
    /// newer version's watch event triggers the next reconcile.
    #[error("the Pgpool changed since it was cached (409 Conflict); will look again")]
    Conflict,
}

impl ReconcileError {
    /// A failed write: a 409 means a newer version exists ([`Self::Conflict`]).
    pub(super) fn from_write(e: kube::Error) -> Self {
        match e {
            e if operator_kit::api::is_conflict(&e) => ReconcileError::Conflict,
            e => ReconcileError::Kube(e),
        }
    }
}

impl operator_kit::reconcile_metrics::ErrorLabel for ReconcileError {
    fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "kube",
            ReconcileError::Serialize(_) => "serialize",
            ReconcileError::Conflict => "conflict",
        }
    }
}
