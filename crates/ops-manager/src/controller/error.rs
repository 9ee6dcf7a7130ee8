//! Errors of a reconcile: everything here is retried with backoff (the error policy).
//! Problems the user must fix are not errors: they end the request Failed.

use operator_kit::api::ModifyError;
use operator_kit::reconcile_metrics::ErrorLabel;

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

impl ReconcileError {
    /// The error of a failed [`operator_kit::api::modify`] of `what` (e.g. `PetSet x`): its
    /// conflicts are [`ReconcileError::Contended`], anything else a failed API call.
    pub(super) fn from_modify(what: impl FnOnce() -> String) -> impl FnOnce(ModifyError) -> Self {
        move |e| match e {
            ModifyError::Conflicts { .. } => Self::Contended(what()),
            ModifyError::Kube(e) => Self::Kube(e),
        }
    }
}

impl ErrorLabel for ReconcileError {
    fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Contended(_) => "conflict",
        }
    }
}

/// Result of a reconcile step.
pub(super) type Result<T, E = ReconcileError> = std::result::Result<T, E>;
