//! `PgpoolOpsRequest` (`ops.kubedb.com/v1alpha1`): a day-2 operation on a Pgpool.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A request to carry out one operation on a Pgpool. The spec cannot change once created.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ops.kubedb.com",
    version = "v1alpha1",
    kind = "PgpoolOpsRequest",
    plural = "pgpoolopsrequests",
    singular = "pgpoolopsrequest",
    shortname = "ppops",
    category = "ops",
    category = "kubedb",
    category = "appscode",
    namespaced,
    status = "PgpoolOpsRequestStatus",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self == oldSelf",
        "message": "spec is immutable: create a new PgpoolOpsRequest instead"
    },
    {
        "rule": "self.type != 'UpdateVersion' || has(self.updateVersion)",
        "message": "spec.updateVersion.targetVersion is required when spec.type is UpdateVersion"
    },
    {
        "rule": "self.type != 'HorizontalScaling' || (has(self.horizontalScaling) && has(self.horizontalScaling.node))",
        "message": "spec.horizontalScaling.node is required when spec.type is HorizontalScaling"
    },
    {
        "rule": "self.type != 'VerticalScaling' || (has(self.verticalScaling) && has(self.verticalScaling.node) && has(self.verticalScaling.node.resources))",
        "message": "spec.verticalScaling.node.resources is required when spec.type is VerticalScaling"
    },
    {
        "rule": "self.type != 'Reconfigure' || has(self.configuration)",
        "message": "spec.configuration is required when spec.type is Reconfigure"
    },
    {
        "rule": "self.type != 'ReconfigureTLS' || has(self.tls)",
        "message": "spec.tls is required when spec.type is ReconfigureTLS"
    }
]))]
pub struct PgpoolOpsRequestSpec {
    /// The Pgpool, in the same namespace.
    pub database_ref: LocalRef,
    /// The operation: UpdateVersion, Restart, HorizontalScaling, VerticalScaling, Reconfigure,
    /// RotateAuth, ReconfigureTLS.
    #[serde(rename = "type")]
    pub type_: OpsRequestType,
    /// Settings of an UpdateVersion request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_version: Option<UpdateVersionSpec>,
    /// Settings of a HorizontalScaling request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizontal_scaling: Option<crate::ops_scaling::HorizontalScalingSpec>,
    /// Settings of a VerticalScaling request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical_scaling: Option<crate::ops_scaling::VerticalScalingSpec>,
    /// Longest time one step may take, as a duration such as `5m` or `90s`; default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// IfReady (default): start only when the Pgpool is Ready. Always: start anyway.
    #[serde(default = "default_apply", skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplyPolicy>,
    /// KubeDB's retry budget, accepted for compatibility (default 1). This operator does not
    /// retry a failed step: it rolls the Pgpool back and ends the request Failed with the
    /// reason; create a new request to try again.
    #[serde(
        default = "default_max_retries",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0, max = 10))]
    pub max_retries: Option<i32>,
    /// Settings of a Reconfigure request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<crate::ops_config::ReconfigurationSpec>,
    /// Settings of a RotateAuth request (optional: without them a new password is generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<crate::ops_config::AuthenticationSpec>,
    /// Settings of a ReconfigureTLS request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::ops_tls::ReconfigureTlsSpec>,
}

fn default_apply() -> Option<ApplyPolicy> {
    Some(ApplyPolicy::IfReady)
}
fn default_max_retries() -> Option<i32> {
    Some(1)
}

/// Default step timeout.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

impl PgpoolOpsRequestSpec {
    /// The apply policy with its default.
    pub fn apply(&self) -> ApplyPolicy {
        self.apply.unwrap_or(ApplyPolicy::IfReady)
    }
    /// Retries with the default.
    pub fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(1).max(0) as u32
    }
    /// The step timeout; default 5 minutes. Errors name the bad value.
    pub fn timeout(&self) -> Result<std::time::Duration, crate::duration::DurationError> {
        match &self.timeout {
            None => Ok(DEFAULT_TIMEOUT),
            Some(s) => crate::duration::parse(s),
        }
    }
}

/// A reference to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalRef {
    /// Name of the object.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// The operations this operator carries out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum OpsRequestType {
    /// Move the Pgpool to another catalog version with a pod-by-pod restart.
    UpdateVersion,
    /// Restart the pods one by one.
    Restart,
    /// Change the number of pods (`spec.horizontalScaling.node`).
    HorizontalScaling,
    /// Change the resources of the `pgpool` container, restarting the pods one by one.
    VerticalScaling,
    /// Change the Pgpool's pgpool.conf overrides and restart the pods one by one.
    Reconfigure,
    /// Change the pcp credentials and restart the pods one by one.
    RotateAuth,
    /// Add, rotate, change or remove TLS (`spec.tls`).
    #[serde(rename = "ReconfigureTLS")]
    ReconfigureTls,
}

impl OpsRequestType {
    /// All types, for metrics.
    pub const ALL: [OpsRequestType; 7] = [
        OpsRequestType::UpdateVersion,
        OpsRequestType::Restart,
        OpsRequestType::HorizontalScaling,
        OpsRequestType::VerticalScaling,
        OpsRequestType::Reconfigure,
        OpsRequestType::RotateAuth,
        OpsRequestType::ReconfigureTls,
    ];
    /// The type's name.
    pub fn as_str(self) -> &'static str {
        match self {
            OpsRequestType::UpdateVersion => "UpdateVersion",
            OpsRequestType::Restart => "Restart",
            OpsRequestType::HorizontalScaling => "HorizontalScaling",
            OpsRequestType::VerticalScaling => "VerticalScaling",
            OpsRequestType::Reconfigure => "Reconfigure",
            OpsRequestType::RotateAuth => "RotateAuth",
            OpsRequestType::ReconfigureTls => "ReconfigureTLS",
        }
    }
}

/// UpdateVersion settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateVersionSpec {
    /// Name of the PgpoolVersion to move to.
    #[schemars(length(min = 1))]
    pub target_version: String,
}

/// When a request may start.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ApplyPolicy {
    /// Only when the Pgpool is Ready (waits up to `spec.timeout`).
    IfReady,
    /// Whatever the Pgpool's phase.
    Always,
}

/// Observed state of a request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgpoolOpsRequestStatus {
    /// Pending, Progressing, Successful, Failed or Skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<OpsRequestPhase>,
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The workflow record, one condition per step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Phases of a request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum OpsRequestPhase {
    /// Waiting for its turn.
    Pending,
    /// Being carried out.
    Progressing,
    /// Done.
    Successful,
    /// Ended without reaching its goal; the Pgpool was put back.
    Failed,
    /// Superseded by a newer request of the same type.
    Skipped,
}

impl OpsRequestPhase {
    /// All phases, for metrics.
    pub const ALL: [OpsRequestPhase; 5] = [
        OpsRequestPhase::Pending,
        OpsRequestPhase::Progressing,
        OpsRequestPhase::Successful,
        OpsRequestPhase::Failed,
        OpsRequestPhase::Skipped,
    ];
    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            OpsRequestPhase::Pending => "Pending",
            OpsRequestPhase::Progressing => "Progressing",
            OpsRequestPhase::Successful => "Successful",
            OpsRequestPhase::Failed => "Failed",
            OpsRequestPhase::Skipped => "Skipped",
        }
    }
    /// True for phases a request never leaves.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OpsRequestPhase::Successful | OpsRequestPhase::Failed | OpsRequestPhase::Skipped
        )
    }
}
