//! What validation produces: a [`Plan`] for the builders or a [`Problem`] for the user,
//! and the source of the credentials it generates.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::ApiResource;

use pgpool_config::{self as config, Rendered};

/// Reasons of problems the user must fix (condition reasons and event reasons).
pub mod reason {
    /// `spec.version` names no PgpoolVersion.
    pub const VERSION_NOT_FOUND: &str = "VersionNotFound";
    /// `spec.version` names a deprecated PgpoolVersion.
    pub const VERSION_DEPRECATED: &str = "VersionDeprecated";
    /// The catalog entry lacks something needed.
    pub const VERSION_INVALID: &str = "VersionInvalid";
    /// `spec.postgresRef` names no AppBinding.
    pub const APPBINDING_NOT_FOUND: &str = "AppBindingNotFound";
    /// The AppBinding cannot be used.
    pub const APPBINDING_INVALID: &str = "AppBindingInvalid";
    /// The AppBinding's Secret does not exist.
    pub const BACKEND_SECRET_NOT_FOUND: &str = "BackendSecretNotFound";
    /// The AppBinding's Secret lacks `username` or `password`.
    pub const BACKEND_SECRET_INVALID: &str = "BackendSecretInvalid";
    /// The externally managed auth Secret does not exist.
    pub const AUTH_SECRET_NOT_FOUND: &str = "AuthSecretNotFound";
    /// The auth Secret lacks `password`.
    pub const AUTH_SECRET_INVALID: &str = "AuthSecretInvalid";
    /// The user configuration Secret does not exist or lacks `pgpool.conf`.
    pub const CONFIG_SECRET_NOT_FOUND: &str = "ConfigSecretNotFound";
    /// The user configuration cannot be used.
    pub const INVALID_CONFIGURATION: &str = "InvalidConfiguration";
    /// A feature this operator does not implement.
    pub const UNSUPPORTED: &str = "Unsupported";
    /// An object with a child's name belongs to someone else.
    pub const CHILD_CONFLICT: &str = "ChildConflict";
}

/// A problem the user must fix: a condition reason and a message that names the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason, one of [`reason`].
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Source of random credentials; tests use a fixed one.
pub trait Generator {
    /// A new pcp password.
    fn password(&mut self) -> String;
    /// A new pool key.
    fn pool_key(&mut self) -> String;
}

/// Random credentials.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomGenerator;

impl Generator for RandomGenerator {
    fn password(&mut self) -> String {
        use rand::Rng as _;
        rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect()
    }
    fn pool_key(&mut self) -> String {
        config::generate_pool_key()
    }
}

/// How the pcp credentials' Secret is handled. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthPlan {
    /// The provisioner keeps this Secret (creates it when absent; never changes the
    /// credentials of an existing one).
    Managed {
        /// Secret name.
        name: String,
        /// pcp user.
        username: String,
        /// pcp password.
        password: String,
        /// The Secret exists already.
        exists: bool,
    },
    /// The user's Secret, read only.
    UserSupplied {
        /// Secret name.
        name: String,
    },
}

impl AuthPlan {
    /// Name of the auth Secret.
    pub fn name(&self) -> &str {
        match self {
            AuthPlan::Managed { name, .. } | AuthPlan::UserSupplied { name } => name,
        }
    }
}

/// Everything the builders need, validated. `Debug` leaves credentials and files out.
#[derive(Clone)]
pub struct Plan {
    /// Pgpool name.
    pub name: String,
    /// Pgpool namespace (all children live here).
    pub namespace: String,
    /// Controller owner reference to the Pgpool.
    pub owner: OwnerReference,
    /// The catalog's pgpool image.
    pub pgpool_image: String,
    /// The catalog's exporter image, when monitoring is on.
    pub exporter_image: Option<String>,
    /// The uid the containers run as (catalog, default 70).
    pub run_as_user: i64,
    /// Database user from the AppBinding Secret (readiness probe and exporter log in as it).
    pub backend_user: String,
    /// Its password (exporter credentials in the config Secret).
    pub backend_password: String,
    /// The pcp credentials' Secret.
    pub auth: AuthPlan,
    /// The rendered configuration files.
    pub rendered: Rendered,
    /// [`config::config_hash`] of `rendered`.
    pub config_hash: String,
    /// The ServiceMonitor resource, when one is wanted and its CRD exists.
    pub service_monitor: Option<ApiResource>,
    /// Remarks for the status (for example a ServiceMonitor that could not be made).
    pub notes: Vec<super::note::Note>,
    /// cert-manager's Certificate API, when installed and an issuer is used.
    pub certificate_api: Option<ApiResource>,
    /// TLS to clients and backends, when any.
    pub tls: Option<crate::pgpool::tls::plan::TlsPlan>,
}

impl std::fmt::Debug for AuthPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthPlan::Managed {
                name,
                username,
                exists,
                ..
            } => f
                .debug_struct("Managed")
                .field("name", name)
                .field("username", username)
                .field("password", &"<redacted>")
                .field("exists", exists)
                .finish(),
            AuthPlan::UserSupplied { name } => {
                f.debug_struct("UserSupplied").field("name", name).finish()
            }
        }
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("pgpool_image", &self.pgpool_image)
            .field("exporter_image", &self.exporter_image)
            .field("run_as_user", &self.run_as_user)
            .field("backend_user", &self.backend_user)
            .field("auth", &self.auth)
            .field("config_hash", &self.config_hash)
            .field("service_monitor", &self.service_monitor.is_some())
            .field("notes", &self.notes)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}
