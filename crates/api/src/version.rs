//! `PgpoolVersion` (`catalog.kubedb.com/v1alpha1`, cluster-scoped): one catalog entry.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A version of Pgpool-II the operators can run, with its images and update rules.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "catalog.kubedb.com",
    version = "v1alpha1",
    kind = "PgpoolVersion",
    plural = "pgpoolversions",
    singular = "pgpoolversion",
    shortname = "ppversion",
    category = "catalog",
    category = "kubedb",
    category = "appscode",
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(
        name = "PGPOOL_IMAGE",
        type_ = "string",
        json_path = ".spec.pgpool.image"
    ),
    printcolumn(name = "Deprecated", type_ = "boolean", json_path = ".spec.deprecated"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PgpoolVersionSpec {
    /// The Pgpool-II version, for example `4.5.3`.
    #[schemars(length(min = 1))]
    pub version: String,
    /// The pgpool image.
    pub pgpool: ImageRef,
    /// The pgpool2_exporter image for the monitoring sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter: Option<ImageRef>,
    /// A deprecated version is not used for new Pgpools nor as an update target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<bool>,
    /// Which versions a Pgpool on this version may be updated to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_constraints: Option<UpdateConstraints>,
    /// Security context of the pgpool container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<VersionSecurityContext>,
}

impl PgpoolVersionSpec {
    /// True when the version is marked deprecated.
    pub fn is_deprecated(&self) -> bool {
        self.deprecated.unwrap_or(false)
    }
    /// The uid the pgpool container runs as; default 70.
    pub fn run_as_user(&self) -> i64 {
        self.security_context
            .as_ref()
            .and_then(|s| s.run_as_user)
            .unwrap_or(70)
    }
}

/// An image reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    /// Image, for example `ghcr.io/appscode-images/pgpool2:4.5.3`.
    #[schemars(length(min = 1))]
    pub image: String,
}

/// Update rules: semver constraint strings such as `">= 4.5.3, <= 4.6.0"`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateConstraints {
    /// Targets allowed; empty means every version not in the denylist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowlist: Vec<String>,
    /// Targets refused, whatever the allowlist says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denylist: Vec<String>,
}

/// Security context settings of a version.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionSecurityContext {
    /// The uid the image runs as; default 70 (`postgres` in the Alpine images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub run_as_user: Option<i64>,
}
