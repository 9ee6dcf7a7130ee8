//! Builders of the API objects tests and tools create over and over: a catalog entry, a
//! Pgpool and the AppBinding of its backend. Behind the `fixtures` cargo feature, for
//! dev-dependencies and test tools only.
//!
//! ```
//! use pgpool_api::fixtures;
//! let v = fixtures::pgpool_version("4.5.3", ">= 4.5.3, <= 4.6.0");
//! assert_eq!(v.spec.pgpool.image, fixtures::pgpool_image("4.5.3"));
//! let pp = fixtures::pgpool("demo", "pp", "4.5.3", 3);
//! assert_eq!(pp.spec.replicas, Some(3));
//! ```

use serde_json::json;

use crate::{AppBinding, Pgpool, PgpoolVersion};

/// The exporter image of the catalog entries [`pgpool_version`] builds.
pub const EXPORTER_IMAGE: &str = "ghcr.io/appscode-images/pgpool2_exporter:v1.2.2";

/// The pgpool image of catalog version `version` (`ghcr.io/appscode-images/pgpool2:<version>`).
pub fn pgpool_image(version: &str) -> String {
    format!("ghcr.io/appscode-images/pgpool2:{version}")
}

/// Catalog entry `version` as in DESIGN.md §3: image [`pgpool_image`], exporter
/// [`EXPORTER_IMAGE`], updates allowed to versions matching `allowlist`, user 70.
pub fn pgpool_version(version: &str, allowlist: &str) -> PgpoolVersion {
    serde_json::from_value(json!({
        "apiVersion": "catalog.kubedb.com/v1alpha1",
        "kind": "PgpoolVersion",
        "metadata": {"name": version},
        "spec": {
            "version": version,
            "pgpool": {"image": pgpool_image(version)},
            "exporter": {"image": EXPORTER_IMAGE},
            "updateConstraints": {"allowlist": [allowlist]},
            "securityContext": {"runAsUser": 70}
        }
    }))
    .expect("a valid PgpoolVersion")
}

/// Pgpool `namespace/name` on catalog version `version` with `replicas` replicas, in front of
/// the PostgreSQL of AppBinding `ha-postgres` in the same namespace, deletion policy WipeOut
/// (KubeDB's example).
pub fn pgpool(namespace: &str, name: &str, version: &str, replicas: i32) -> Pgpool {
    serde_json::from_value(json!({
        "apiVersion": "kubedb.com/v1alpha2",
        "kind": "Pgpool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "version": version,
            "replicas": replicas,
            "postgresRef": {"name": "ha-postgres", "namespace": namespace},
            "deletionPolicy": "WipeOut"
        }
    }))
    .expect("a valid Pgpool")
}

/// AppBinding `namespace/name` of a PostgreSQL behind Service `name` (port 5432) with its
/// credentials in Secret `secret` (keys `username`, `password`), as `examples/appbinding.yaml`.
pub fn app_binding(namespace: &str, name: &str, secret: &str) -> AppBinding {
    serde_json::from_value(json!({
        "apiVersion": "appcatalog.appscode.com/v1alpha1",
        "kind": "AppBinding",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "kubedb.com/postgres",
            "clientConfig": {"service": {"name": name, "port": 5432, "scheme": "postgresql"}},
            "secret": {"name": secret}
        }
    }))
    .expect("a valid AppBinding")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_binding_is_the_example() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/appbinding.yaml"
        );
        let text = std::fs::read_to_string(path).expect("examples/appbinding.yaml");
        let example: AppBinding = serde_yaml::from_str(&text).expect("an AppBinding");
        let built = app_binding("demo", "ha-postgres", "ha-postgres-auth");
        assert_eq!(
            serde_json::to_value(&built).unwrap(),
            serde_json::to_value(&example).unwrap()
        );
    }

    #[test]
    fn pgpool_version_allows_updates_within_its_allowlist() {
        let v = pgpool_version("4.5.3", ">= 4.5.3, <= 4.6.0");
        assert_eq!(v.spec.run_as_user(), 70);
        assert!(!v.spec.is_deprecated());
        assert_eq!(
            v.spec.exporter.as_ref().map(|e| e.image.as_str()),
            Some(EXPORTER_IMAGE)
        );
    }
}
