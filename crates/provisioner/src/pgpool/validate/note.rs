//! Remarks for the status: things that do not stop the children from being applied but that
//! the user should know (a ServiceMonitor that could not be made, certificates cert-manager
//! has not issued yet). Each carries the reason of its event.

/// Event reasons of remarks.
pub mod note_reason {
    /// Something of the monitoring (or another optional part) could not be set up.
    pub const MONITORING_INCOMPLETE: &str = "MonitoringIncomplete";
    /// cert-manager has not issued a certificate Secret the pods need yet.
    pub const WAITING_FOR_CERTIFICATES: &str = "WaitingForCertificates";
}

/// One remark: the reason of its event and the text for the `ProvisioningStarted` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// CamelCase event reason, one of [`note_reason`].
    pub reason: &'static str,
    /// What the user should know.
    pub message: String,
}

impl Note {
    /// A remark with reason [`note_reason::MONITORING_INCOMPLETE`].
    pub fn monitoring(message: impl Into<String>) -> Self {
        Self {
            reason: note_reason::MONITORING_INCOMPLETE,
            message: message.into(),
        }
    }

    /// A remark with reason [`note_reason::WAITING_FOR_CERTIFICATES`].
    pub fn waiting_for_certificates(message: impl Into<String>) -> Self {
        Self {
            reason: note_reason::WAITING_FOR_CERTIFICATES,
            message: message.into(),
        }
    }

    /// The reason `ProvisioningStarted` takes while this remark holds: waiting for
    /// certificates (the pods cannot start without them); `None` for the others.
    pub fn condition_reason(&self) -> Option<&'static str> {
        (self.reason == note_reason::WAITING_FOR_CERTIFICATES).then_some(self.reason)
    }

    /// Whether its event is a Warning: waiting for cert-manager is expected, the others are
    /// not.
    pub fn is_warning(&self) -> bool {
        self.reason != note_reason::WAITING_FOR_CERTIFICATES
    }
}
