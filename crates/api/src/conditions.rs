//! metav1.Condition helpers with real transition semantics, the condition types of both
//! operators, and the Pgpool phase computation (DESIGN.md §4).

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::pgpool::PgpoolPhase;

/// Condition statuses.
pub const TRUE: &str = "True";
/// False.
pub const FALSE: &str = "False";
/// Unknown.
pub const UNKNOWN: &str = "Unknown";

/// Pgpool condition types.
pub mod pgpool {
    /// The provisioner started creating children.
    pub const PROVISIONING_STARTED: &str = "ProvisioningStarted";
    /// All replicas are ready.
    pub const REPLICA_READY: &str = "ReplicaReady";
    /// At least one pod accepts client connections.
    pub const ACCEPTING_CONNECTION: &str = "AcceptingConnection";
    /// The pooler serves as asked.
    pub const READY: &str = "Ready";
    /// Provisioning finished once.
    pub const PROVISIONED: &str = "Provisioned";
    /// An ops request paused the provisioner (Unknown: asked; True: acknowledged).
    pub const PAUSED: &str = "Paused";
    /// Every pod runs the PetSet's update revision (False: some run an older template, which
    /// the PetSet's `OnDelete` strategy does not replace; a Restart ops request rolls them).
    /// Not a KubeDB condition.
    pub const PODS_UP_TO_DATE: &str = "PodsUpToDate";

    /// Reason of `Paused=Unknown` when an ops request asks for the pause.
    pub const REASON_PAUSE_REQUESTED: &str = "PauseRequested";
    /// Reason of `Paused=Unknown` when an ops request holding the pause asks the provisioner
    /// to render the children once from the spec as it is now (`observedGeneration`: the
    /// Pgpool generation to render), the PetSet included, and to stay paused. The PetSet's
    /// `OnDelete` strategy keeps every pod as it is; the request restarts them itself.
    pub const REASON_RENDER_REQUESTED: &str = "RenderRequested";
    /// Reason of `Paused=True` after a render the request asked for: the children are what the
    /// generation in `observedGeneration` asks for.
    pub const REASON_RENDERED: &str = "Rendered";
    /// Reason of `Paused=True` after a render that could not be made; the message says why.
    pub const REASON_RENDER_FAILED: &str = "RenderFailed";
}

/// PgpoolOpsRequest condition types (KubeDB's names).
pub mod ops {
    /// The UpdateVersion request started.
    pub const UPDATE_VERSION: &str = "UpdateVersion";
    /// The Restart request started.
    pub const RESTART: &str = "Restart";
    /// The provisioner acknowledged the pause.
    pub const DATABASE_PAUSE_SUCCEEDED: &str = "DatabasePauseSucceeded";
    /// The PetSet's images were set.
    pub const UPDATE_PETSETS: &str = "UpdatePetSets";
    /// All pods were restarted.
    pub const RESTART_PODS: &str = "RestartPods";
    /// `spec.version` was set.
    pub const UPDATE_DATABASE: &str = "UpdateDatabase";
    /// The request succeeded.
    pub const SUCCESSFUL: &str = "Successful";
    /// The request failed.
    pub const FAILED: &str = "Failed";
    /// The request was validated.
    pub const VALIDATED: &str = "Validated";
    /// The request was rolled back.
    pub const ROLLBACK: &str = "Rollback";
    /// Prefix of the per-pod eviction conditions: `EvictPod--<pod>`.
    pub const EVICT_POD_PREFIX: &str = "EvictPod--";
    /// Prefix of the per-pod readiness conditions: `CheckPodRunning--<pod>`.
    pub const CHECK_POD_RUNNING_PREFIX: &str = "CheckPodRunning--";

    /// `EvictPod--<pod>`.
    pub fn evict_pod(pod: &str) -> String {
        format!("{EVICT_POD_PREFIX}{pod}")
    }
    /// The Reconfigure request started.
    pub const RECONFIGURE: &str = "Reconfigure";
    /// The RotateAuth request started.
    pub const ROTATE_AUTH: &str = "RotateAuth";
    /// The Pgpool's configuration was changed and rendered (Reconfigure).
    pub const UPDATE_CONFIGURATION: &str = "UpdateConfiguration";
    /// The pcp credentials were changed and rendered (RotateAuth).
    pub const UPDATE_CREDENTIAL: &str = "UpdateCredential";

    /// `CheckPodRunning--<pod>`.
    pub fn check_pod_running(pod: &str) -> String {
        format!("{CHECK_POD_RUNNING_PREFIX}{pod}")
    }
    /// The HorizontalScaling request started.
    pub const HORIZONTAL_SCALING: &str = "HorizontalScaling";
    /// The PetSet was scaled up and the new pods are Ready.
    pub const HORIZONTAL_SCALE_UP: &str = "HorizontalScaleUp";
    /// The highest pods were evicted and the PetSet scaled down.
    pub const HORIZONTAL_SCALE_DOWN: &str = "HorizontalScaleDown";
    /// The VerticalScaling request started.
    pub const VERTICAL_SCALING: &str = "VerticalScaling";
    /// The ReconfigureTLS request started.
    pub const RECONFIGURE_TLS: &str = "ReconfigureTLS";
    /// The Pgpool's TLS settings were changed (or its certificate Secrets removed for new
    /// ones) while paused (ReconfigureTLS).
    pub const UPDATE_TLS: &str = "IssueCertificatesSucceeded";
    /// The provisioner wrote the certificates and the PetSet for the new TLS settings
    /// (ReconfigureTLS, after the pause is lifted).
    pub const CERTIFICATE_SYNCED: &str = "CertificateSynced";
}

/// A condition to set; `set` fills in the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition<'a> {
    /// Condition type.
    pub type_: &'a str,
    /// True, False or Unknown.
    pub status: &'a str,
    /// CamelCase reason.
    pub reason: &'a str,
    /// Human message.
    pub message: String,
    /// Generation the condition was computed from.
    pub observed_generation: Option<i64>,
}

/// Find a condition by type.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition exists with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    has_status(conditions, type_, TRUE)
}

/// True when the condition exists with the given status.
pub fn has_status(conditions: &[Condition], type_: &str, status: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == status)
}

/// Set a condition: add it, or update it in place. `lastTransitionTime` changes only when the
/// status changes. Returns true when anything changed.
pub fn set(conditions: &mut Vec<Condition>, new: NewCondition<'_>, now: DateTime<Utc>) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let mut changed = false;
            if existing.status != new.status {
                existing.status = new.status.to_string();
                existing.last_transition_time = Time(to_jiff(now));
                changed = true;
            }
            if existing.reason != new.reason {
                existing.reason = new.reason.to_string();
                changed = true;
            }
            if existing.message != new.message {
                existing.message = new.message;
                changed = true;
            }
            if existing.observed_generation != new.observed_generation {
                existing.observed_generation = new.observed_generation;
                changed = true;
            }
            changed
        }
        None => {
            conditions.push(Condition {
                type_: new.type_.to_string(),
                status: new.status.to_string(),
                reason: new.reason.to_string(),
                message: new.message,
                observed_generation: new.observed_generation,
                last_transition_time: Time(to_jiff(now)),
            });
            true
        }
    }
}

/// Remove a condition. Returns true when one was removed.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    before != conditions.len()
}

fn to_jiff(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    // Kubernetes times are second-precision on the wire (RFC 3339 without fractions).
    k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default()
}

/// The Pgpool's phase from its conditions, as KubeDB computes it: Halted when halted;
/// Provisioning until Provisioned; NotReady when not accepting connections; Critical when some
/// replicas are not ready; Ready when all are.
pub fn pgpool_phase(conditions: &[Condition], halted: bool) -> PgpoolPhase {
    if halted {
        return PgpoolPhase::Halted;
    }
    if !is_true(conditions, pgpool::PROVISIONED) {
        return PgpoolPhase::Provisioning;
    }
    if !is_true(conditions, pgpool::ACCEPTING_CONNECTION) {
        return PgpoolPhase::NotReady;
    }
    if !is_true(conditions, pgpool::REPLICA_READY) || !is_true(conditions, pgpool::READY) {
        return PgpoolPhase::Critical;
    }
    PgpoolPhase::Ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn c<'a>(type_: &'a str, status: &'a str, msg: &str) -> NewCondition<'a> {
        NewCondition {
            type_,
            status,
            reason: "Because",
            message: msg.to_string(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut cs = Vec::new();
        assert!(set(&mut cs, c("Ready", FALSE, "a"), t(0)));
        let first = cs[0].last_transition_time.clone();
        assert!(
            !set(&mut cs, c("Ready", FALSE, "a"), t(10)),
            "no-op must report no change"
        );
        assert!(
            set(&mut cs, c("Ready", FALSE, "b"), t(20)),
            "message change is a change"
        );
        assert_eq!(
            cs[0].last_transition_time, first,
            "same status keeps the time"
        );
        assert!(set(&mut cs, c("Ready", TRUE, "b"), t(30)));
        assert_ne!(cs[0].last_transition_time, first);
        assert_eq!(cs[0].last_transition_time.0.as_second(), t(30).timestamp());
        assert!(is_true(&cs, "Ready"));
        assert!(remove(&mut cs, "Ready"));
        assert!(!remove(&mut cs, "Ready"));
    }

    #[test]
    fn phases() {
        let mut cs = Vec::new();
        assert_eq!(pgpool_phase(&cs, false), PgpoolPhase::Provisioning);
        assert_eq!(pgpool_phase(&cs, true), PgpoolPhase::Halted);
        set(&mut cs, c(pgpool::PROVISIONED, TRUE, ""), t(0));
        set(&mut cs, c(pgpool::ACCEPTING_CONNECTION, FALSE, ""), t(0));
        assert_eq!(pgpool_phase(&cs, false), PgpoolPhase::NotReady);
        set(&mut cs, c(pgpool::ACCEPTING_CONNECTION, TRUE, ""), t(0));
        set(&mut cs, c(pgpool::REPLICA_READY, FALSE, ""), t(0));
        set(&mut cs, c(pgpool::READY, TRUE, ""), t(0));
        assert_eq!(pgpool_phase(&cs, false), PgpoolPhase::Critical);
        set(&mut cs, c(pgpool::REPLICA_READY, TRUE, ""), t(0));
        assert_eq!(pgpool_phase(&cs, false), PgpoolPhase::Ready);
    }
}
