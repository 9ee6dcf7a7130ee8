//! The steps of a request, read from its conditions alone.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use pgpool_api::OpsRequestType;
use pgpool_api::conditions::{self, ops};

/// Condition type of a request superseded by a newer one (our own; KubeDB has only the phase).
pub const SKIPPED: &str = "Skipped";

/// The next step of a Progressing request, read from its conditions alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Validation (and, with IfReady, waiting for Ready).
    Validate,
    /// Pause handshake.
    Pause,
    /// Set the PetSet's images.
    UpdatePetSets,
    /// Pod-by-pod restart.
    RestartPods,
    /// Set `spec.version`.
    UpdateDatabase,
    /// Remove the pause and end Successful.
    Resume,
    /// A step failed: undo, resume, end Failed.
    Rollback,
    /// Nothing left (a final condition exists).
    Done,
    /// HorizontalScaling: set the PetSet's replicas; evict the highest pods or wait for the
    /// new ones to be Ready.
    HorizontalScale,
    /// HorizontalScaling: set the Pgpool's `spec.replicas`.
    UpdateReplicas,
    /// VerticalScaling: set the resources of the PetSet's `pgpool` container.
    UpdatePetSetResources,
    /// VerticalScaling: record the resources in the Pgpool's `spec.podTemplate`.
    UpdateResources,
    /// Reconfigure: change the Pgpool's configuration and wait for it to be rendered.
    UpdateConfiguration,
    /// RotateAuth: change the pcp credentials and wait for them to be rendered.
    UpdateCredential,
    /// Reconfigure, RotateAuth: put the rendered config hash into the PetSet's pod template.
    UpdatePetSetConfig,
    /// ReconfigureTLS: change the Pgpool's TLS settings (and remove the certificate Secrets
    /// to be issued again) while paused.
    UpdateTls,
    /// ReconfigureTLS: wait, paused, for the certificates of the new TLS settings.
    SyncCertificates,
    /// ReconfigureTLS: ask the provisioner (still paused) to render the PetSet once for the
    /// new TLS settings.
    UpdatePetSetTls,
}

/// The first condition type of a request of this type.
pub fn start_condition(t: OpsRequestType) -> &'static str {
    match t {
        OpsRequestType::UpdateVersion => ops::UPDATE_VERSION,
        OpsRequestType::Restart => ops::RESTART,
        OpsRequestType::HorizontalScaling => ops::HORIZONTAL_SCALING,
        OpsRequestType::VerticalScaling => ops::VERTICAL_SCALING,
        OpsRequestType::Reconfigure => ops::RECONFIGURE,
        OpsRequestType::RotateAuth => ops::ROTATE_AUTH,
        OpsRequestType::ReconfigureTls => ops::RECONFIGURE_TLS,
    }
}

/// The next step from the conditions of a request of type `t`.
pub fn next_step(t: OpsRequestType, conds: &[Condition]) -> Step {
    use conditions::is_true;
    if is_true(conds, ops::SUCCESSFUL) || is_true(conds, ops::FAILED) || is_true(conds, SKIPPED) {
        return Step::Done;
    }
    if conditions::get(conds, ops::ROLLBACK).is_some() {
        return Step::Rollback;
    }
    let update = t == OpsRequestType::UpdateVersion;
    let config = matches!(t, OpsRequestType::Reconfigure | OpsRequestType::RotateAuth);
    if !is_true(conds, start_condition(t)) {
        Step::Validate
    } else if !is_true(conds, ops::DATABASE_PAUSE_SUCCEEDED) {
        Step::Pause
    } else if let Some(step) = next_scaling_step(t, conds) {
        step
    } else if t == OpsRequestType::Reconfigure && !is_true(conds, ops::UPDATE_CONFIGURATION) {
        Step::UpdateConfiguration
    } else if t == OpsRequestType::RotateAuth && !is_true(conds, ops::UPDATE_CREDENTIAL) {
        Step::UpdateCredential
    } else if t == OpsRequestType::ReconfigureTls && !is_true(conds, ops::UPDATE_TLS) {
        Step::UpdateTls
    } else if t == OpsRequestType::ReconfigureTls && !is_true(conds, ops::CERTIFICATE_SYNCED) {
        Step::SyncCertificates
    } else if t == OpsRequestType::ReconfigureTls && !is_true(conds, ops::UPDATE_PETSETS) {
        Step::UpdatePetSetTls
    } else if config && !is_true(conds, ops::UPDATE_PETSETS) {
        Step::UpdatePetSetConfig
    } else if update && !is_true(conds, ops::UPDATE_PETSETS) {
        Step::UpdatePetSets
    } else if !is_true(conds, ops::RESTART_PODS) {
        Step::RestartPods
    } else if update && !is_true(conds, ops::UPDATE_DATABASE) {
        Step::UpdateDatabase
    } else {
        Step::Resume
    }
}

/// The steps of the scaling types after the pause, or `None` for the other types.
pub fn next_scaling_step(t: OpsRequestType, conds: &[Condition]) -> Option<Step> {
    use conditions::is_true;
    match t {
        OpsRequestType::HorizontalScaling => Some(
            if !is_true(conds, ops::HORIZONTAL_SCALE_UP)
                && !is_true(conds, ops::HORIZONTAL_SCALE_DOWN)
            {
                Step::HorizontalScale
            } else if !is_true(conds, ops::UPDATE_DATABASE) {
                Step::UpdateReplicas
            } else {
                Step::Resume
            },
        ),
        OpsRequestType::VerticalScaling => Some(if !is_true(conds, ops::UPDATE_PETSETS) {
            Step::UpdatePetSetResources
        } else if !is_true(conds, ops::RESTART_PODS) {
            Step::RestartPods
        } else if !is_true(conds, ops::UPDATE_DATABASE) {
            Step::UpdateResources
        } else {
            Step::Resume
        }),
        _ => None,
    }
}

#[cfg(test)]
#[path = "steps_tests.rs"]
mod tests;
