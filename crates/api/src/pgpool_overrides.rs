//! The pod and Service overrides of a `Pgpool` (`spec.podTemplate`, `spec.serviceTemplates`),
//! as KubeDB's `ofst.PodTemplateSpec` and `ofst.ServiceTemplateSpec`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements,
    SecurityContext, Toleration, TopologySpreadConstraint, Volume, VolumeMount,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pod metadata and spec overrides.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateSpec {
    /// Labels and annotations added to the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodTemplateMeta>,
    /// Pod spec overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PodSpecOverrides>,
}

/// Labels and annotations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateMeta {
    /// Extra labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The parts of a pod spec a user may override.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.volumes) || self.volumes.all(v, !(v.name in ['pgpool-config', 'pgpool-run', 'pgpool-key', 'tmp', 'pgpool-tls', 'pgpool-tls-client']))",
    "message": "spec.podTemplate.spec.volumes: the names pgpool-config, pgpool-run, pgpool-key, tmp, pgpool-tls and pgpool-tls-client are reserved by the operator"
}]))]
pub struct PodSpecOverrides {
    /// Overrides for containers by name: `pgpool`, `exporter`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub containers: Vec<ContainerOverride>,
    /// Overrides for init containers by name: `pgpool-init`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub init_containers: Vec<ContainerOverride>,
    /// Resources of the `pgpool` container (KubeDB shorthand; `containers[pgpool].resources`
    /// wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
    /// Affinity; default: prefer spreading the pods over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread constraints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Pod security context; runAsUser defaults to the catalog's (70).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Extra volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub volumes: Vec<Volume>,
    /// Image pull secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Service account of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Priority class of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Scheduler name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    /// Runtime class name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    /// Termination grace period in seconds; default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub termination_grace_period_seconds: Option<i64>,
}

/// Overrides for one container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.env) || self.env.all(e, !(e.name in ['PGPOOL_PCP_USER', 'PGPOOL_PCP_PASSWORD', 'DATA_SOURCE_NAME', 'DATA_SOURCE_USER', 'DATA_SOURCE_PASS', 'DATA_SOURCE_URI']))",
        "message": "env: PGPOOL_PCP_USER, PGPOOL_PCP_PASSWORD and DATA_SOURCE_* are set by the operator and cannot be overridden"
    },
    {
        "rule": "!has(self.volumeMounts) || self.volumeMounts.all(m, !(m.mountPath in ['/etc/pgpool-config', '/var/run/pgpool', '/var/run/pgpool-key', '/tmp', '/etc/pgpool-tls', '/etc/pgpool-tls-client']) && !(m.name in ['pgpool-config', 'pgpool-run', 'pgpool-key', 'tmp', 'pgpool-tls', 'pgpool-tls-client']))",
        "message": "volumeMounts: /etc/pgpool-config, /var/run/pgpool, /var/run/pgpool-key, /tmp, /etc/pgpool-tls and /etc/pgpool-tls-client (and their volumes) are used by the operator"
    }
]))]
pub struct ContainerOverride {
    /// Container name: `pgpool` or `exporter` (`pgpool-init` for init containers).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Compute resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
    /// Extra volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub volume_mounts: Vec<VolumeMount>,
    /// Container security context, merged over the restricted default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

/// Overrides for one Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedServiceTemplateSpec {
    /// Which Service: `primary` (`<name>`) or `stats` (`<name>-stats`).
    pub alias: ServiceAlias,
    /// Extra labels and annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodTemplateMeta>,
    /// Service spec overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpecOverrides>,
}

/// Service aliases.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ServiceAlias {
    /// The client Service `<name>`.
    Primary,
    /// The metrics Service `<name>-stats`.
    Stats,
}

/// The parts of a Service spec a user may override.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpecOverrides {
    /// Service type: ClusterIP (default), NodePort or LoadBalancer.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    /// Node ports and names by port name (`primary`, `pcp`, `metrics`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub ports: Vec<ServicePortOverride>,
    /// Fixed cluster IP.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// External IPs.
    #[serde(default, rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    /// Load balancer IP.
    #[serde(
        default,
        rename = "loadBalancerIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_balancer_ip: Option<String>,
    /// Source ranges allowed through a load balancer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<String>,
    /// External traffic policy: Cluster or Local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
    /// Session affinity: None or ClientIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<String>,
}

/// Service types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Cluster-internal virtual IP.
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// A cloud load balancer.
    LoadBalancer,
}

/// A port override.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortOverride {
    /// Port name: `primary`, `pcp` or `metrics`.
    pub name: String,
    /// Service port; default the container port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Node port for NodePort and LoadBalancer Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub node_port: Option<i32>,
}
