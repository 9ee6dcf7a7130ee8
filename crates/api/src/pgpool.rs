//! `Pgpool` (`kubedb.com/v1alpha2`): a Pgpool-II connection pooler in front of a PostgreSQL.
//!
//! Field names follow KubeDB's `Pgpool` so that its manifests apply unchanged. Fields marked
//! "extension" are this project's own and optional.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::LocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::pgpool_monitor::*;
pub use crate::pgpool_overrides::*;
pub use crate::pgpool_tls::*;

/// Names of environment variables the operator sets itself; a pod template may not set them.
pub const RESERVED_ENV_VARS: &[&str] = &[
    "PGPOOL_PCP_USER",
    "PGPOOL_PCP_PASSWORD",
    "DATA_SOURCE_NAME",
    "DATA_SOURCE_USER",
    "DATA_SOURCE_PASS",
    "DATA_SOURCE_URI",
];
/// Volume names the operator uses in the pod; a pod template may not reuse them.
pub const RESERVED_VOLUME_NAMES: &[&str] = &[
    "pgpool-config",
    "pgpool-run",
    "pgpool-key",
    "tmp",
    "pgpool-tls",
    "pgpool-tls-client",
];
/// Mount paths the operator uses in the pod; a pod template may not mount over them.
pub const RESERVED_MOUNT_PATHS: &[&str] = &[
    "/etc/pgpool-config",
    "/var/run/pgpool",
    "/var/run/pgpool-key",
    "/tmp",
    "/etc/pgpool-tls",
    "/etc/pgpool-tls-client",
];

/// The desired state of a Pgpool.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubedb.com",
    version = "v1alpha2",
    kind = "Pgpool",
    plural = "pgpools",
    singular = "pgpool",
    shortname = "pp",
    category = "datastore",
    category = "kubedb",
    category = "appscode",
    category = "all",
    namespaced,
    status = "PgpoolStatus",
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
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
        "rule": "!has(self.replicas) || (self.replicas >= 1 && self.replicas <= 9)",
        "message": "spec.replicas must be between 1 and 9"
    },
    {
        "rule": "!has(self.clientAuthMode) || self.clientAuthMode != 'cert' || has(self.tls)",
        "message": "spec.clientAuthMode 'cert' needs TLS: set spec.tls or use md5 or scram"
    },
    {
        "rule": "!has(self.sslMode) || self.sslMode == 'disable' || has(self.tls)",
        "message": "spec.sslMode other than 'disable' needs TLS: set spec.tls"
    }
]))]
pub struct PgpoolSpec {
    /// Name of the cluster-scoped PgpoolVersion (catalog entry) to run, for example `4.5.3`.
    #[schemars(length(min = 1))]
    pub version: String,

    /// Number of Pgpool pods, 1 to 9. Default 1.
    #[serde(default = "default_replicas", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: Option<i32>,

    /// The PostgreSQL backend: an AppBinding (`appcatalog.appscode.com/v1alpha1`) whose Service
    /// and Secret (keys `username`, `password`) Pgpool connects to.
    pub postgres_ref: ObjectReference,

    /// Secret (type basic-auth, keys `username`, `password`) with the pcp credentials.
    /// Default `<name>-auth`, generated with a random password when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<SecretReference>,

    /// User configuration: a Secret with `pgpool.conf` overrides, inline file texts, or explicit
    /// backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<PgpoolConfiguration>,

    /// Older KubeDB field: a Secret whose `pgpool.conf` key holds overrides. Same effect as
    /// `spec.configuration.secretName`; `spec.configuration` wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_secret: Option<LocalObjectReference>,

    /// Pod metadata and pod spec overrides merged over the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateSpec>,

    /// Overrides for the Services, by alias: `primary` (the client Service) and `stats`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub service_templates: Vec<NamedServiceTemplateSpec>,

    /// TLS for client connections (cert-manager issuer reference). Kept as given; needed for
    /// `sslMode` other than `disable` and for `clientAuthMode: cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,

    /// SSL mode for client connections: `disable` (default unless TLS is configured),
    /// `allow`, `prefer`, `require`, `verify-ca`, `verify-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,

    /// How clients authenticate to Pgpool: `md5` (default), `scram`, or `cert` (TLS only).
    #[serde(
        default = "default_client_auth_mode",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_auth_mode: Option<ClientAuthMode>,

    /// How often and how patiently the operator checks the pooler. Defaults 10s / 10s / 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checker: Option<HealthCheckSpec>,

    /// Monitoring: adds the pgpool2_exporter sidecar and the `<name>-stats` Service; with the
    /// `prometheus.io/operator` agent also a ServiceMonitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorSpec>,

    /// What happens to the operator-created objects when the Pgpool is deleted. Default `Delete`.
    #[serde(
        default = "default_deletion_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub deletion_policy: Option<DeletionPolicy>,

    /// Accepted for KubeDB compatibility. `pool_passwd` always holds the AppBinding's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_users: Option<bool>,

    /// Extension: stop the pooler (PetSet and Services removed, Secrets kept; phase `Halted`).
    /// Setting it back to false brings it up again with the same credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<bool>,
}

fn default_replicas() -> Option<i32> {
    Some(1)
}
fn default_client_auth_mode() -> Option<ClientAuthMode> {
    Some(ClientAuthMode::Md5)
}
fn default_deletion_policy() -> Option<DeletionPolicy> {
    Some(DeletionPolicy::Delete)
}

impl PgpoolSpec {
    /// Replicas with the default applied.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(1)
    }
    /// Client authentication mode with the default applied.
    pub fn client_auth_mode(&self) -> ClientAuthMode {
        self.client_auth_mode.unwrap_or(ClientAuthMode::Md5)
    }
    /// Deletion policy with the default applied.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or(DeletionPolicy::Delete)
    }
    /// True when the pooler is to be stopped.
    pub fn is_halted(&self) -> bool {
        self.halted.unwrap_or(false)
    }
    /// SSL mode with the default applied (`disable` unless TLS is configured, then `require`).
    pub fn ssl_mode(&self) -> SslMode {
        match (self.ssl_mode, &self.tls) {
            (Some(mode), _) => mode,
            (None, Some(_)) => SslMode::Require,
            (None, None) => SslMode::Disable,
        }
    }
    /// Health checker settings with defaults applied.
    pub fn health_checker(&self) -> HealthCheckSpec {
        let h = self.health_checker.clone().unwrap_or_default();
        HealthCheckSpec {
            period_seconds: Some(h.period_seconds.unwrap_or(10)),
            timeout_seconds: Some(h.timeout_seconds.unwrap_or(10)),
            failure_threshold: Some(h.failure_threshold.unwrap_or(1)),
            disable_write_check: h.disable_write_check,
        }
    }
    /// True when monitoring (exporter sidecar and stats Service) is on.
    pub fn monitoring_enabled(&self) -> bool {
        self.monitor.is_some()
    }
}

/// A reference to a namespaced object; the namespace defaults to the Pgpool's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// Name of the object.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Namespace of the object; default: the namespace of the referring object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A Secret in the Pgpool's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Secret is created and kept by the user: the operator only reads it, never writes or
    /// deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub externally_managed: Option<bool>,
}

/// User configuration of Pgpool-II.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgpoolConfiguration {
    /// A Secret in the Pgpool's namespace whose key `pgpool.conf` holds `key = value` overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Inline file texts by file name; `pgpool.conf` holds `key = value` overrides, merged after
    /// those of `secretName`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inline: BTreeMap<String, String>,
    /// Explicit backends instead of the AppBinding's Services: each entry either by host
    /// (`hostName`, `port`) or by group (an AppBinding name); all entries the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(b, has(b.hostName)) || self.all(b, has(b.group))",
        "message": "spec.configuration.backends: give every backend by hostName or every backend by group, not a mix"
    }]))]
    pub backends: Vec<BackendSpec>,
}

/// One backend server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.hostName) != has(self.group)",
    "message": "a backend is given either by hostName or by group, not both and not neither"
}]))]
pub struct BackendSpec {
    /// Host name or IP of a PostgreSQL server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// Name of an AppBinding in the Pgpool's namespace whose Services (primary and
    /// `<service>-standby`) become backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Port of the server; default 5432.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Load-balancing weight; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub weight: Option<i32>,
    /// Pgpool backend flag, for example `ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER`; default:
    /// `ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER` for the first backend, `DISALLOW_TO_FAILOVER` after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

/// TLS configuration: certificates from a cert-manager `Issuer`/`ClusterIssuer`
/// (`issuerRef`), or, without one, from the provisioner's built-in CA.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// The cert-manager Issuer or ClusterIssuer; none: the built-in CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<TypedLocalObjectReference>,
    /// Settings per certificate alias (`server`, `client`, `metrics-exporter`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub certificates: Vec<CertificateSpec>,
}

impl TlsConfig {
    /// The settings of certificate `alias`, when given.
    pub fn certificate(&self, alias: &str) -> Option<&CertificateSpec> {
        self.certificates.iter().find(|c| c.alias == alias)
    }

    /// The Secret of certificate `alias` of Pgpool `pgpool`: the alias's `secretName`, else
    /// `<pgpool>-<alias>-cert` (KubeDB's naming).
    pub fn secret_name(&self, pgpool: &str, alias: &str) -> String {
        self.certificate(alias)
            .and_then(|c| c.secret_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{pgpool}-{alias}-cert"))
    }
}

/// A typed reference to an object in the same namespace (or cluster-scoped).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypedLocalObjectReference {
    /// API group of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// Kind of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
}

/// Client SSL modes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SslMode {
    /// No TLS.
    #[serde(rename = "disable")]
    Disable,
    /// TLS if the client asks.
    #[serde(rename = "allow")]
    Allow,
    /// TLS preferred.
    #[serde(rename = "prefer")]
    Prefer,
    /// TLS required.
    #[serde(rename = "require")]
    Require,
    /// TLS with CA verification.
    #[serde(rename = "verify-ca")]
    VerifyCa,
    /// TLS with CA and host name verification.
    #[serde(rename = "verify-full")]
    VerifyFull,
}

/// How clients authenticate to Pgpool.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ClientAuthMode {
    /// md5 password authentication (default).
    #[serde(rename = "md5")]
    Md5,
    /// scram-sha-256 password authentication.
    #[serde(rename = "scram")]
    Scram,
    /// Client certificates (needs TLS).
    #[serde(rename = "cert")]
    Cert,
}

/// Health checking of the pooler by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(!has(self.periodSeconds) || self.periodSeconds >= 1) && (!has(self.timeoutSeconds) || self.timeoutSeconds >= 1) && (!has(self.failureThreshold) || self.failureThreshold >= 1)",
    "message": "spec.healthChecker: periodSeconds, timeoutSeconds and failureThreshold must be at least 1"
}]))]
pub struct HealthCheckSpec {
    /// Seconds between checks; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub period_seconds: Option<i32>,
    /// Seconds before a check times out; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<i32>,
    /// Failed checks in a row before the pooler counts as not ready; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub failure_threshold: Option<i32>,
    /// Skip the write check (accepted for KubeDB compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_write_check: Option<bool>,
}

/// What deleting a Pgpool does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Remove the pooler and its config; keep the auth Secret for a re-created Pgpool.
    Delete,
    /// Remove everything the operator created, the auth Secret too.
    WipeOut,
    /// Refuse deletion (a ValidatingAdmissionPolicy in the chart).
    DoNotTerminate,
    /// As Delete: a pooler holds no data.
    Halt,
}

/// Observed state of a Pgpool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgpoolStatus {
    /// Summary of the conditions: Provisioning, Ready, Critical, NotReady, Halted, Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PgpoolPhase>,
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: ProvisioningStarted, ReplicaReady, AcceptingConnection, Ready, Provisioned,
    /// Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Phases of a Pgpool.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PgpoolPhase {
    /// Children are being created.
    Provisioning,
    /// All replicas ready and accepting connections.
    Ready,
    /// Accepting connections, but not all replicas ready.
    Critical,
    /// Not accepting connections.
    NotReady,
    /// Stopped by `spec.halted`.
    Halted,
    /// Not known.
    Unknown,
}

impl PgpoolPhase {
    /// All phases, for metrics.
    pub const ALL: [PgpoolPhase; 6] = [
        PgpoolPhase::Provisioning,
        PgpoolPhase::Ready,
        PgpoolPhase::Critical,
        PgpoolPhase::NotReady,
        PgpoolPhase::Halted,
        PgpoolPhase::Unknown,
    ];
    /// The phase's name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            PgpoolPhase::Provisioning => "Provisioning",
            PgpoolPhase::Ready => "Ready",
            PgpoolPhase::Critical => "Critical",
            PgpoolPhase::NotReady => "NotReady",
            PgpoolPhase::Halted => "Halted",
            PgpoolPhase::Unknown => "Unknown",
        }
    }
}

impl std::fmt::Display for PgpoolPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cel_list(items: &[&str]) -> String {
        let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
        format!("[{}]", quoted.join(", "))
    }

    #[test]
    fn reserved_lists_match_the_cel_rules() {
        let schema = serde_json::to_string(&schemars::schema_for!(ContainerOverride)).unwrap();
        assert!(schema.contains(&cel_list(RESERVED_ENV_VARS)));
        assert!(schema.contains(&cel_list(RESERVED_MOUNT_PATHS)));
        assert!(schema.contains(&cel_list(RESERVED_VOLUME_NAMES)));
        let schema = serde_json::to_string(&schemars::schema_for!(PodSpecOverrides)).unwrap();
        assert!(schema.contains(&cel_list(RESERVED_VOLUME_NAMES)));
    }

    #[test]
    fn defaults_apply() {
        let spec: PgpoolSpec =
            serde_json::from_str(r#"{"version":"4.5.3","postgresRef":{"name":"pg"}}"#).unwrap();
        assert_eq!(spec.replicas(), 1);
        assert_eq!(spec.client_auth_mode(), ClientAuthMode::Md5);
        assert_eq!(spec.deletion_policy(), DeletionPolicy::Delete);
        assert_eq!(spec.ssl_mode(), SslMode::Disable);
        let h = spec.health_checker();
        assert_eq!(
            (h.period_seconds, h.timeout_seconds, h.failure_threshold),
            (Some(10), Some(10), Some(1))
        );
        assert!(!spec.is_halted());
    }
}
