//! The default PgpoolVersion catalog, applied by the provisioner itself.
//!
//! The chart used to install the catalog's PgpoolVersion objects in the same release as the
//! CRD that defines them. Whether the new kind is already in the API server's discovery when
//! Helm maps the release's templates is a race, and on a fresh cluster `helm install` failed
//! one time in two with `no matches for kind "PgpoolVersion"` (seen on a real kube-apiserver
//! 1.36). Now the chart ships the catalog as a file in a ConfigMap, and the provisioner (the
//! leader) applies it once it runs, retrying until the CRD is served: the release holds no
//! object of a kind it defines, so the install cannot fail on it.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt as _};
use operator_kit::CancellationToken;
use pgpool_api::PgpoolVersion;
use serde::Deserialize as _;

/// Field manager of the catalog's server-side apply.
pub const FIELD_MANAGER: &str = "pgpool-provisioner-catalog";
/// First retry delay after a failed apply; doubles up to [`RETRY_MAX`].
const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A catalog file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file cannot be read.
    #[error("cannot read the catalog file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A document is not a PgpoolVersion.
    #[error("catalog document {index}: {reason}")]
    Document {
        /// 1-based position in the file.
        index: usize,
        /// Why.
        reason: String,
    },
}

/// Reads a catalog file: PgpoolVersion objects as multi-document YAML (empty documents are
/// skipped).
pub fn read(path: &std::path::Path) -> Result<Vec<PgpoolVersion>, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|e| CatalogError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse(&text)
}

/// Parses PgpoolVersion objects from multi-document YAML.
pub fn parse(text: &str) -> Result<Vec<PgpoolVersion>, CatalogError> {
    let mut versions = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| CatalogError::Document {
            index,
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(serde_yaml::Value::as_str);
        let api_version = value.get("apiVersion").and_then(serde_yaml::Value::as_str);
        if (api_version, kind) != (Some("catalog.kubedb.com/v1alpha1"), Some("PgpoolVersion")) {
            return Err(CatalogError::Document {
                index,
                reason: format!(
                    "expected catalog.kubedb.com/v1alpha1 PgpoolVersion, found {} {}",
                    api_version.unwrap_or("<no apiVersion>"),
                    kind.unwrap_or("<no kind>")
                ),
            });
        }
        let version: PgpoolVersion =
            serde_yaml::from_value(value).map_err(|e| CatalogError::Document {
                index,
                reason: e.to_string(),
            })?;
        if version.metadata.name.as_deref().is_none_or(str::is_empty) {
            return Err(CatalogError::Document {
                index,
                reason: "metadata.name is missing".into(),
            });
        }
        versions.push(version);
    }
    Ok(versions)
}

/// Server-side applies `versions` (forcing our fields: the chart's catalog is the source of
/// truth for them), retrying with back-off until every one is applied or `stop` is
/// cancelled. Returns whether all were applied.
pub async fn apply(client: Client, versions: Vec<PgpoolVersion>, stop: CancellationToken) -> bool {
    let api: Api<PgpoolVersion> = Api::all(client);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut pending = versions;
    let mut attempt: u32 = 0;
    loop {
        let mut failed = Vec::new();
        let mut last_error = None;
        for v in pending {
            let name = v.name_any();
            let mut body = v.clone();
            body.metadata.managed_fields = None;
            body.metadata.resource_version = None;
            match api.patch(&name, &params, &Patch::Apply(&body)).await {
                Ok(_) => tracing::debug!(version = %name, "applied catalog entry"),
                Err(e) => {
                    last_error = Some(format!("PgpoolVersion {name}: {e}"));
                    failed.push(v);
                }
            }
        }
        if failed.is_empty() {
            tracing::info!("applied the default PgpoolVersion catalog");
            return true;
        }
        attempt = attempt.saturating_add(1);
        let delay = RETRY_BASE
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(8)))
            .min(RETRY_MAX);
        let error = last_error.unwrap_or_default();
        if attempt == 1 {
            tracing::info!(%error, retry_in = ?delay, "cannot apply the default catalog yet (is the PgpoolVersion CRD served?)");
        } else {
            tracing::warn!(%error, attempt, retry_in = ?delay, "cannot apply the default catalog");
        }
        pending = failed;
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
---
# a comment-only document is skipped
---
apiVersion: catalog.kubedb.com/v1alpha1
kind: PgpoolVersion
metadata:
  name: "4.5.3"
spec:
  version: "4.5.3"
  pgpool:
    image: ghcr.io/appscode-images/pgpool2:4.5.3
---
apiVersion: catalog.kubedb.com/v1alpha1
kind: PgpoolVersion
metadata:
  name: "4.6.0"
spec:
  version: "4.6.0"
  pgpool:
    image: ghcr.io/appscode-images/pgpool2:4.6.0
"#;

    #[test]
    fn parses_multi_document_catalogs() {
        let v = parse(TWO).unwrap();
        let names: Vec<String> = v.iter().map(|v| v.name_any()).collect();
        assert_eq!(names, ["4.5.3", "4.6.0"]);
        assert_eq!(
            v[1].spec.pgpool.image,
            "ghcr.io/appscode-images/pgpool2:4.6.0"
        );
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn refuses_other_kinds_and_nameless_entries() {
        let err = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").unwrap_err();
        assert!(err.to_string().contains("found v1 ConfigMap"), "{err}");
        let err = parse(
            "apiVersion: catalog.kubedb.com/v1alpha1\nkind: PgpoolVersion\nmetadata: {}\nspec: {version: '1', pgpool: {image: i}}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }
}
