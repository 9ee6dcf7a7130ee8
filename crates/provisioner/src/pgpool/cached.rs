//! A Pgpool as the controller caches it: metadata and status as they are, the spec as JSON
//! text, plus the names the watch mappers look up.
//!
//! A `Pgpool` takes over two kilobytes in memory even when its spec is three lines (its
//! optional pod template is held inline); the JSON text of a typical spec takes a few hundred
//! bytes. A reconcile turns the cached copy back into a [`Pgpool`] ([`CachedPgpool::to_pgpool`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pgpool_api::{Pgpool, PgpoolStatus};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use operator_kit::cache::{resource_as, trim_meta};

/// The names a Pgpool points at, for the watch mappers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refs {
    /// `spec.version`.
    pub version: String,
    /// The AppBindings it reads (`spec.postgresRef` and backend groups), as (ns, name).
    pub appbindings: Vec<(String, String)>,
    /// Its auth Secret (in its namespace).
    pub auth_secret: String,
    /// Its user configuration Secret (in its namespace).
    pub config_secret: Option<String>,
    /// Its TLS Secrets (in its namespace; cert-manager's are not owned by it).
    pub tls_secrets: Vec<String>,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct CachedPgpool {
    /// Metadata (without managed fields).
    pub metadata: ObjectMeta,
    /// `spec` as JSON.
    pub spec: Box<str>,
    /// `status`.
    pub status: Option<PgpoolStatus>,
    /// What the spec points at.
    pub refs: Refs,
}

resource_as!(CachedPgpool, Pgpool);

impl CachedPgpool {
    /// The cached form of `pgpool`.
    pub fn new(mut pgpool: Pgpool) -> Result<Self, serde_json::Error> {
        trim_meta(&mut pgpool.metadata);
        let refs = Refs {
            version: pgpool.spec.version.clone(),
            appbindings: pgpool.appbindings(),
            auth_secret: pgpool.auth_secret_name(),
            config_secret: pgpool.spec.user_config_secret_name(),
            tls_secrets: crate::pgpool::tls::names::secret_names(&pgpool),
        };
        Ok(Self {
            spec: serde_json::to_string(&pgpool.spec)?.into_boxed_str(),
            metadata: pgpool.metadata,
            status: pgpool.status,
            refs,
        })
    }

    /// The Pgpool.
    pub fn to_pgpool(&self) -> Result<Pgpool, serde_json::Error> {
        Ok(Pgpool {
            metadata: self.metadata.clone(),
            spec: serde_json::from_str(&self.spec)?,
            status: self.status.clone(),
        })
    }
}

impl<'de> Deserialize<'de> for CachedPgpool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        CachedPgpool::new(Pgpool::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_knows_what_the_spec_points_at() {
        let value = json!({
            "apiVersion": "kubedb.com/v1alpha2", "kind": "Pgpool",
            "metadata": {"name": "pp", "namespace": "demo", "uid": "u", "resourceVersion": "3",
                "managedFields": [{"manager": "m"}]},
            "spec": {
                "version": "4.5.3",
                "postgresRef": {"name": "pg", "namespace": "db"},
                "configuration": {"backends": [{"group": "replicas"}]},
                "configSecret": {"name": "my-config"},
                "podTemplate": {"spec": {"containers": [{"name": "pgpool", "resources": {}}]}}
            },
            "status": {"phase": "Ready"}
        });
        let full: Pgpool = serde_json::from_value(value.clone()).unwrap();
        let cached: CachedPgpool = serde_json::from_value(value).unwrap();
        assert!(cached.metadata.managed_fields.is_none());
        assert_eq!(
            cached.refs,
            Refs {
                version: "4.5.3".into(),
                appbindings: vec![
                    ("db".into(), "pg".into()),
                    ("demo".into(), "replicas".into())
                ],
                auth_secret: full.auth_secret_name(),
                config_secret: Some("my-config".into()),
                tls_secrets: Vec::new(),
            }
        );
        let back = cached.to_pgpool().unwrap();
        assert_eq!(back.spec, full.spec);
        assert_eq!(back.status, full.status);
        assert_eq!(back.metadata.resource_version.as_deref(), Some("3"));
    }
}
