//! The settings of the HorizontalScaling and VerticalScaling `PgpoolOpsRequest` types, with
//! KubeDB's field names (`ops.kubedb.com/v1alpha1` `PgpoolHorizontalScalingSpec`,
//! `PgpoolVerticalScalingSpec`, `PodResources`) so that its manifests apply unchanged.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The largest replica count, the same as `Pgpool.spec.replicas` allows.
pub const MAX_REPLICAS: i32 = 9;

/// HorizontalScaling settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.node) || (self.node >= 1 && self.node <= 9)",
        "message": "spec.horizontalScaling.node must be between 1 and 9 (the range of Pgpool spec.replicas)"
    }
]))]
pub struct HorizontalScalingSpec {
    /// The number of Pgpool pods after scaling, 1 to 9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9))]
    pub node: Option<i32>,
}

/// VerticalScaling settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerticalScalingSpec {
    /// The resources of the Pgpool pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<PodResources>,
}

/// New resources for the pods (KubeDB's `PodResources`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodResources {
    /// Requests and limits of the `pgpool` container. They replace the container's resources
    /// as a whole (a request without limits leaves the container without limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Accepted for KubeDB compatibility and not acted on: KubeDB uses it with a
    /// `NodeTopology` to pick nodes for the new size; here the pods keep the scheduling of the
    /// Pgpool's `spec.podTemplate` (node selector, tolerations, affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selection_policy: Option<NodeSelectionPolicy>,
    /// Accepted for KubeDB compatibility and not acted on (see `nodeSelectionPolicy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
}

/// How KubeDB picks nodes for a vertically scaled pod.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NodeSelectionPolicy {
    /// By node labels.
    LabelSelector,
    /// By node taints.
    Taint,
}

/// A node topology label (KubeDB's `Topology`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Topology {
    /// Label key.
    pub key: String,
    /// Label value.
    pub value: String,
}

impl HorizontalScalingSpec {
    /// The target replica count, if given.
    pub fn node(&self) -> Option<i32> {
        self.node
    }
}

impl VerticalScalingSpec {
    /// The target resources of the `pgpool` container, if given.
    pub fn resources(&self) -> Option<&ResourceRequirements> {
        self.node.as_ref().and_then(|n| n.resources.as_ref())
    }
}
