//! Validation of a request against the Pgpool and the catalog (DESIGN.md §5 step 1).

use pgpool_api::constraints::{self, Decision};
use pgpool_api::ops::ApplyPolicy;
use pgpool_api::{OpsRequestType, Pgpool, PgpoolOpsRequest, PgpoolPhase, PgpoolVersion};

use super::scaling::ScalingCheck;

/// The outcome of validating a request against the cluster's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead. For Restart and VerticalScaling, `from` and `to` are both the current
    /// version; for HorizontalScaling they are the replica counts.
    Proceed {
        /// The Pgpool's version now.
        from: String,
        /// The version it ends on.
        to: String,
    },
    /// The Pgpool already runs the target: the request succeeds without doing anything.
    AlreadyDone {
        /// Message for the Successful condition.
        message: String,
    },
    /// `apply: IfReady` and the Pgpool is not Ready: wait (up to `spec.timeout`).
    WaitForReady {
        /// What is being waited for.
        message: String,
    },
    /// The request cannot be carried out.
    Fail {
        /// CamelCase reason.
        reason: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// What validation looks at: the request and the objects it points to.
#[derive(Clone, Copy, Debug)]
pub struct ValidationInput<'a> {
    /// The request.
    pub request: &'a PgpoolOpsRequest,
    /// The Pgpool named by `spec.databaseRef`, if it exists.
    pub pgpool: Option<&'a Pgpool>,
    /// The PgpoolVersion named by the Pgpool's `spec.version`, if it exists.
    pub current: Option<&'a PgpoolVersion>,
    /// The PgpoolVersion named by `spec.updateVersion.targetVersion`, if it exists.
    pub target: Option<&'a PgpoolVersion>,
}

/// The target version's name of an UpdateVersion request.
pub fn target_version(req: &PgpoolOpsRequest) -> Option<&str> {
    req.spec
        .update_version
        .as_ref()
        .map(|u| u.target_version.as_str())
        .filter(|s| !s.is_empty())
}

/// True when the Pgpool reports phase Ready.
pub fn pgpool_ready(pp: &Pgpool) -> bool {
    pp.status.as_ref().and_then(|s| s.phase) == Some(PgpoolPhase::Ready)
}

fn phase_name(pp: &Pgpool) -> &'static str {
    match pp.status.as_ref().and_then(|s| s.phase) {
        None => "unknown",
        Some(PgpoolPhase::Provisioning) => "Provisioning",
        Some(PgpoolPhase::Ready) => "Ready",
        Some(PgpoolPhase::Critical) => "Critical",
        Some(PgpoolPhase::NotReady) => "NotReady",
        Some(PgpoolPhase::Halted) => "Halted",
        Some(PgpoolPhase::Unknown) => "Unknown",
    }
}

/// Validate a request (DESIGN.md §5 step 1). The order of the checks decides which message a
/// request with several problems gets: existence first, then the no-op case, then policy.
pub fn validate(input: ValidationInput<'_>) -> Verdict {
    let req = input.request;
    let ns = req.metadata.namespace.as_deref().unwrap_or("default");
    let pp_name = &req.spec.database_ref.name;
    if let Err(e) = req.spec.timeout() {
        return Verdict::Fail {
            reason: "InvalidTimeout",
            message: format!("spec.timeout: {e}"),
        };
    }
    let Some(pp) = input.pgpool else {
        return Verdict::Fail {
            reason: "PgpoolNotFound",
            message: format!(
                "Pgpool {ns}/{pp_name} not found: create it first, or set spec.databaseRef.name \
                 to a Pgpool in namespace {ns}"
            ),
        };
    };
    let current_name = pp.spec.version.as_str();
    let mut from = current_name.to_string();
    let to = match req.spec.type_ {
        OpsRequestType::Restart | OpsRequestType::Reconfigure | OpsRequestType::RotateAuth => {
            current_name.to_string()
        }
        OpsRequestType::ReconfigureTls => match super::tls::plan_tls(req, pp) {
            super::tls::TlsCheck::Go(_) => current_name.to_string(),
            super::tls::TlsCheck::AlreadyDone(message) => return Verdict::AlreadyDone { message },
            super::tls::TlsCheck::Fail(reason, message) => {
                return Verdict::Fail { reason, message };
            }
        },
        OpsRequestType::UpdateVersion => {
            let Some(target_name) = target_version(req) else {
                return Verdict::Fail {
                    reason: "TargetVersionMissing",
                    message: "spec.updateVersion.targetVersion is empty: set it to the name of a \
                              PgpoolVersion"
                        .to_string(),
                };
            };
            let Some(target) = input.target else {
                return Verdict::Fail {
                    reason: "VersionNotFound",
                    message: format!(
                        "target PgpoolVersion {target_name:?} not found: set \
                         spec.updateVersion.targetVersion to one of the versions listed by \
                         `kubectl get pgpoolversions`"
                    ),
                };
            };
            if target_name == current_name {
                return Verdict::AlreadyDone {
                    message: format!(
                        "Pgpool {pp_name} already runs version {current_name}: nothing to update"
                    ),
                };
            }
            if pp.spec.is_halted() {
                return halted(pp_name);
            }
            if target.spec.is_deprecated() {
                return Verdict::Fail {
                    reason: "VersionDeprecated",
                    message: format!(
                        "target PgpoolVersion {target_name:?} is deprecated: choose a version \
                         that is not deprecated"
                    ),
                };
            }
            let Some(current) = input.current else {
                return Verdict::Fail {
                    reason: "CurrentVersionNotFound",
                    message: format!(
                        "PgpoolVersion {current_name:?}, the current version of Pgpool \
                         {pp_name}, not found: its update constraints cannot be checked; \
                         restore the catalog entry"
                    ),
                };
            };
            let empty = Default::default();
            let rules = current.spec.update_constraints.as_ref().unwrap_or(&empty);
            match constraints::evaluate(rules, &target.spec.version) {
                Ok(Decision::Allowed) => {}
                Ok(Decision::Denied(entry)) => {
                    return Verdict::Fail {
                        reason: "UpdateNotAllowed",
                        message: format!(
                            "update of Pgpool {pp_name} from {current_name} to {target_name} is \
                             not allowed: PgpoolVersion {current_name} denies {entry:?} in \
                             spec.updateConstraints.denylist; choose another target"
                        ),
                    };
                }
                Ok(Decision::NotAllowed(allow)) => {
                    return Verdict::Fail {
                        reason: "UpdateNotAllowed",
                        message: format!(
                            "update of Pgpool {pp_name} from {current_name} to {target_name} is \
                             not allowed: PgpoolVersion {current_name} allows only {} in \
                             spec.updateConstraints.allowlist; choose a target in that range",
                            allow.join(" or ")
                        ),
                    };
                }
                Err(e) => {
                    return Verdict::Fail {
                        reason: "InvalidUpdateConstraints",
                        message: format!(
                            "cannot check the update of Pgpool {pp_name} to {target_name}: {e}"
                        ),
                    };
                }
            }
            target_name.to_string()
        }
        OpsRequestType::HorizontalScaling | OpsRequestType::VerticalScaling => {
            match super::scaling::validate_scaling(req, pp) {
                ScalingCheck::Go { from: f, to } => {
                    from = f;
                    to
                }
                ScalingCheck::AlreadyDone(message) => return Verdict::AlreadyDone { message },
                ScalingCheck::Fail(reason, message) => return Verdict::Fail { reason, message },
            }
        }
    };
    if pp.spec.is_halted() {
        return halted(pp_name);
    }
    if req.spec.apply() == ApplyPolicy::IfReady && !pgpool_ready(pp) {
        return Verdict::WaitForReady {
            message: format!(
                "waiting for Pgpool {pp_name} to be Ready (phase {}) because spec.apply is IfReady",
                phase_name(pp)
            ),
        };
    }
    Verdict::Proceed { from, to }
}

fn halted(pp_name: &str) -> Verdict {
    Verdict::Fail {
        reason: "PgpoolHalted",
        message: format!(
            "Pgpool {pp_name} is halted (spec.halted: true): set spec.halted to false and wait \
             for it to be Ready, then create the request again"
        ),
    }
}

/// The failure message when `apply: IfReady` waited the whole timeout.
pub fn not_ready_message(pp_name: &str, waiting: &str, timeout: &str) -> String {
    format!(
        "Pgpool {pp_name} did not become Ready within {timeout} ({waiting}): fix the Pgpool, or \
         create the request again with spec.apply: Always"
    )
}

#[cfg(test)]
#[path = "validation_tests.rs"]
mod tests;
