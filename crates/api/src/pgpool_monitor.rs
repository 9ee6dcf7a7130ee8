//! Monitoring settings of a `Pgpool` (`spec.monitor`, KubeDB's `mona.AgentSpec`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, SecurityContext};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Monitoring agent settings (KubeDB's `mona.AgentSpec`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorSpec {
    /// `prometheus.io/operator` (also creates a ServiceMonitor when its CRD exists) or
    /// `prometheus.io/builtin` (scrape annotations on the stats Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<MonitorAgent>,
    /// Prometheus settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
}

impl MonitorSpec {
    /// Whether a ServiceMonitor is wanted.
    pub fn wants_service_monitor(&self) -> bool {
        self.agent == Some(MonitorAgent::PrometheusOperator)
    }
}

/// Monitoring agents.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MonitorAgent {
    /// Prometheus operator: a ServiceMonitor selects the stats Service.
    #[serde(rename = "prometheus.io/operator")]
    PrometheusOperator,
    /// Prometheus' own Kubernetes discovery through `prometheus.io/*` annotations.
    #[serde(rename = "prometheus.io/builtin")]
    PrometheusBuiltin,
    /// Alias of `prometheus.io/builtin`.
    #[serde(rename = "prometheus.io")]
    Prometheus,
}

/// Prometheus settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// The exporter sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter: Option<ExporterSpec>,
    /// The ServiceMonitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<ServiceMonitorSpec>,
}

/// The exporter sidecar.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExporterSpec {
    /// Metrics port; default 9719.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Resources of the exporter container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Security context of the exporter container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

/// ServiceMonitor settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Labels of the ServiceMonitor (so that a Prometheus selects it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Scrape interval, for example `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}
