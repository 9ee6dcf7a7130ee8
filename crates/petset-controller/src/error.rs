//! Errors of the PetSet controller.

use crate::plan;

/// Errors of the PetSet controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, e.g. `create pod ns/web-0`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The PetSet cannot be acted on until the user fixes it.
    #[error("invalid PetSet: {0}")]
    Invalid(#[from] plan::PlanError),
    /// A pod name the PetSet needs is taken by a pod it does not control.
    #[error(
        "pod {0} exists but is not controlled by this PetSet (or does not match its selector); delete it or fix its labels"
    )]
    PodNameTaken(String),
    /// A revision could not be serialised.
    #[error("cannot serialise: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The metrics could not be created.
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}

impl operator_kit::reconcile_metrics::ErrorLabel for Error {
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } if operator_kit::api::is_conflict(source) => "conflict",
            Error::Kube { .. } => "kube",
            Error::Invalid(_) => "invalid",
            Error::PodNameTaken(_) => "pod_name_taken",
            Error::Serialize(_) => "serialize",
            Error::Metrics(_) => "metrics",
        }
    }
}
