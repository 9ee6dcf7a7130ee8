//! Names a `Pgpool` reads from its own spec and metadata: the objects it points at (auth and
//! configuration Secrets, the AppBinding's namespace) and the children it owns (DESIGN.md §4).
//!
//! Both the dereference step (what to read) and the validate step (what to check) of the
//! provisioner ask these questions; keeping the answers on the type lets neither depend on
//! the other.

use kube::ResourceExt as _;

use crate::pgpool::{Pgpool, PgpoolSpec};
use crate::{conditions, names};

impl PgpoolSpec {
    /// True when the auth Secret is managed by the user (`spec.authSecret.externallyManaged`).
    pub fn auth_externally_managed(&self) -> bool {
        self.auth_secret
            .as_ref()
            .and_then(|s| s.externally_managed)
            .unwrap_or(false)
    }

    /// The name of the user configuration Secret, if any (`spec.configuration.secretName`,
    /// else the older `spec.configSecret.name`).
    pub fn user_config_secret_name(&self) -> Option<String> {
        self.configuration
            .as_ref()
            .and_then(|c| c.secret_name.clone())
            .or_else(|| self.config_secret.as_ref().map(|r| r.name.clone()))
            .filter(|n| !n.is_empty())
    }
}

impl Pgpool {
    /// The name of the auth Secret (`spec.authSecret.name`, default `<name>-auth`).
    pub fn auth_secret_name(&self) -> String {
        self.spec
            .auth_secret
            .as_ref()
            .and_then(|s| s.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| names::auth_secret(&self.name_any()))
    }

    /// Namespace of the AppBinding (`spec.postgresRef.namespace`, default the Pgpool's).
    pub fn appbinding_namespace(&self) -> String {
        self.spec
            .postgres_ref
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| self.namespace())
            .unwrap_or_default()
    }

    /// The AppBindings the Pgpool refers to, as `(namespace, name)`: `spec.postgresRef`
    /// first (in [`appbinding_namespace`](Self::appbinding_namespace)), then the `group` of
    /// each `spec.configuration.backends` entry (in the Pgpool's namespace), in spec order.
    pub fn appbindings(&self) -> Vec<(String, String)> {
        let ns = self.namespace().unwrap_or_default();
        let groups = self
            .spec
            .configuration
            .iter()
            .flat_map(|c| c.backends.iter())
            .filter_map(|b| b.group.clone())
            .map(|group| (ns.clone(), group));
        std::iter::once((
            self.appbinding_namespace(),
            self.spec.postgres_ref.name.clone(),
        ))
        .chain(groups)
        .collect()
    }

    /// Name of the generated config Secret.
    pub fn config_secret_name(&self) -> String {
        names::config_secret(&self.name_any())
    }

    /// Name of the client Service.
    pub fn primary_service_name(&self) -> String {
        names::primary_service(&self.name_any())
    }

    /// Name of the headless governing Service of the PetSet.
    pub fn pods_service_name(&self) -> String {
        names::pods_service(&self.name_any())
    }

    /// Name of the stats Service, which is also the ServiceMonitor's name.
    pub fn stats_service_name(&self) -> String {
        names::stats_service(&self.name_any())
    }

    /// Name of the PetSet.
    pub fn petset_name(&self) -> String {
        names::petset(&self.name_any())
    }

    /// Name of the PodDisruptionBudget.
    pub fn pdb_name(&self) -> String {
        names::pdb(&self.name_any())
    }

    /// True when the Pgpool was provisioned before (a deprecated version keeps running).
    pub fn was_provisioned(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            conditions::is_true(&s.conditions, conditions::pgpool::PROVISIONING_STARTED)
                || conditions::is_true(&s.conditions, conditions::pgpool::PROVISIONED)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::pgpool::{BackendSpec, Pgpool, PgpoolConfiguration, PgpoolSpec, SecretReference};

    fn pgpool(spec: PgpoolSpec) -> Pgpool {
        let mut p = Pgpool::new("pp", spec);
        p.metadata.namespace = Some("demo".into());
        p
    }

    #[test]
    fn names_come_from_the_spec_or_the_defaults() {
        let p = pgpool(PgpoolSpec::default());
        assert_eq!(p.auth_secret_name(), "pp-auth");
        assert_eq!(p.appbinding_namespace(), "demo");
        assert_eq!(p.config_secret_name(), "pp-config");
        assert_eq!(p.pods_service_name(), "pp-pods");
        assert_eq!(p.stats_service_name(), "pp-stats");
        assert_eq!(p.primary_service_name(), "pp");
        assert_eq!((p.petset_name(), p.pdb_name()), ("pp".into(), "pp".into()));
        assert_eq!(p.spec.user_config_secret_name(), None);
        assert!(!p.spec.auth_externally_managed());
        assert!(!p.was_provisioned());

        let mut p = pgpool(PgpoolSpec {
            auth_secret: Some(SecretReference {
                name: Some("mine".into()),
                externally_managed: Some(true),
            }),
            ..PgpoolSpec::default()
        });
        p.spec.postgres_ref.namespace = Some("db".into());
        assert_eq!(p.auth_secret_name(), "mine");
        assert!(p.spec.auth_externally_managed());
        assert_eq!(p.appbinding_namespace(), "db");
    }

    #[test]
    fn appbindings_are_the_postgres_ref_then_the_backend_groups() {
        let mut p = pgpool(PgpoolSpec::default());
        p.spec.postgres_ref.name = "pg".into();
        assert_eq!(p.appbindings(), [("demo".to_string(), "pg".to_string())]);

        p.spec.postgres_ref.namespace = Some("db".into());
        let backend = |group: Option<&str>, host: Option<&str>| BackendSpec {
            group: group.map(Into::into),
            host_name: host.map(Into::into),
            ..BackendSpec::default()
        };
        p.spec.configuration = Some(PgpoolConfiguration {
            backends: vec![
                backend(Some("a"), None),
                backend(None, Some("h")),
                backend(Some("b"), None),
            ],
            ..PgpoolConfiguration::default()
        });
        let pair = |ns: &str, n: &str| (ns.to_string(), n.to_string());
        assert_eq!(
            p.appbindings(),
            [pair("db", "pg"), pair("demo", "a"), pair("demo", "b")]
        );
    }
}
