//! The settings of the Reconfigure and RotateAuth ops types, with KubeDB's field names
//! (`ops.kubedb.com/v1alpha1` `ReconfigurationSpec`, `AuthenticationSpec`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use k8s_openapi::api::core::v1::LocalObjectReference;

/// The file `applyConfig` may hold: the only configuration file users override.
pub const APPLY_CONFIG_FILE: &str = "pgpool.conf";

/// Reconfigure settings: a new configuration Secret, overrides merged over the current ones,
/// or the removal of every user override.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.removeCustomConfig) && self.removeCustomConfig && has(self.configSecret))",
        "message": "spec.configuration: removeCustomConfig and configSecret cannot be used together; remove one of them"
    },
    {
        "rule": "!has(self.applyConfig) || self.applyConfig.all(k, k == 'pgpool.conf')",
        "message": "spec.configuration.applyConfig: only the key pgpool.conf is supported"
    },
    {
        "rule": "has(self.configSecret) || has(self.applyConfig) || (has(self.removeCustomConfig) && self.removeCustomConfig)",
        "message": "spec.configuration: set configSecret, applyConfig or removeCustomConfig: true"
    }
]))]
pub struct ReconfigurationSpec {
    /// A Secret in the Pgpool's namespace whose key `pgpool.conf` holds the new overrides; it
    /// replaces the Pgpool's configuration Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_secret: Option<LocalObjectReference>,
    /// Overrides by file name (only `pgpool.conf`), merged over the current ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apply_config: BTreeMap<String, String>,
    /// Remove every user override (`spec.configSecret`, `spec.configuration.secretName` and
    /// `spec.configuration.inline`); not together with `configSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_custom_config: Option<bool>,
}

impl ReconfigurationSpec {
    /// True when every user override is to be removed.
    pub fn removes_custom_config(&self) -> bool {
        self.remove_custom_config.unwrap_or(false)
    }
}

/// RotateAuth settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationSpec {
    /// A basic-auth Secret (keys `username`, `password`) in the Pgpool's namespace that becomes
    /// the Pgpool's auth Secret. Without it, a new pcp password is generated into the current
    /// auth Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
}
