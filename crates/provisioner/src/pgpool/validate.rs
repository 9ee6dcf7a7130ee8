//! Validate (pure): from the Pgpool and what [`super::dereference`] read, either a [`Plan`]
//! that the builders turn into children, or a [`Problem`] the user must fix.
//!
//! Nothing is written before validation passed, so a problem never leaves half-built
//! children behind.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::ApiResource;
use kube::{Resource, ResourceExt};
use pgpool_api::appbinding::host_port_from_url;
use pgpool_api::pgpool::ClientAuthMode;
use pgpool_api::{AppBinding, Pgpool, names};

use super::dereference::{GroupBackend, Observed};
use crate::config::{self, Backend, RenderInput, Rendered};

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
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
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
    pub notes: Vec<String>,
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
            .finish_non_exhaustive()
    }
}

/// Is the Secret one this provisioner made for Pgpool `name` (by its labels)?
pub fn is_ours(secret: &Secret, name: &str) -> bool {
    let labels = secret.labels();
    labels.get(names::LABEL_INSTANCE).map(String::as_str) == Some(name)
        && labels.get(names::LABEL_NAME).map(String::as_str) == Some(names::LABEL_NAME_VALUE)
}

fn secret_string(secret: &Secret, key: &str) -> Option<String> {
    let bytes: &ByteString = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The service host of an AppBinding: its Service's cluster DNS name, or the URL's host.
fn appbinding_backend(ab: &AppBinding, what: &str) -> Result<(Backend, Option<String>), Problem> {
    let ns = ab.namespace().unwrap_or_default();
    let ab_name = ab.name_any();
    if let Some(svc) = &ab.spec.client_config.service {
        let port = u16::try_from(svc.port.unwrap_or(5432)).map_err(|_| {
            Problem::new(
                reason::APPBINDING_INVALID,
                format!(
                    "{what} AppBinding {ns}/{ab_name}: spec.clientConfig.service.port {:?} is not a port; set it to the PostgreSQL Service's port",
                    svc.port
                ),
            )
        })?;
        return Ok((
            Backend::new(format!("{}.{ns}.svc", svc.name), port),
            Some(svc.name.clone()),
        ));
    }
    if let Some(url) = &ab.spec.client_config.url {
        return match host_port_from_url(url) {
            Some((host, port)) => Ok((Backend::new(host, port), None)),
            None => Err(Problem::new(
                reason::APPBINDING_INVALID,
                format!(
                    "{what} AppBinding {ns}/{ab_name}: spec.clientConfig.url has no host; set it to postgresql://host:port"
                ),
            )),
        };
    }
    Err(Problem::new(
        reason::APPBINDING_INVALID,
        format!(
            "{what} AppBinding {ns}/{ab_name} has neither spec.clientConfig.service nor spec.clientConfig.url; set one of them"
        ),
    ))
}

fn standby_backend(ab: &AppBinding, service: &str, port: u16) -> Backend {
    let ns = ab.namespace().unwrap_or_default();
    Backend::new(
        format!("{}.{ns}.svc", names::standby_service(service)),
        port,
    )
}

fn backends(
    pgpool: &Pgpool,
    observed: &Observed,
    ab: &AppBinding,
) -> Result<Vec<Backend>, Problem> {
    let explicit = pgpool
        .spec
        .configuration
        .as_ref()
        .map(|c| c.backends.as_slice())
        .unwrap_or_default();
    if explicit.is_empty() {
        let (primary, service) = appbinding_backend(ab, "spec.postgresRef")?;
        let port = primary.port;
        let mut out = vec![primary];
        if let Some(service) = service
            && observed.standby_exists
        {
            out.push(standby_backend(ab, &service, port));
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for (i, b) in explicit.iter().enumerate() {
        let field = format!("spec.configuration.backends[{i}]");
        let weight = b
            .weight
            .map(|w| {
                u32::try_from(w).map_err(|_| {
                    Problem::new(
                        reason::INVALID_CONFIGURATION,
                        format!("{field}.weight must not be negative"),
                    )
                })
            })
            .transpose()?;
        if let Some(host) = &b.host_name {
            let port = u16::try_from(b.port.unwrap_or(5432))
                .ok()
                .filter(|p| *p > 0);
            let Some(port) = port else {
                return Err(Problem::new(
                    reason::INVALID_CONFIGURATION,
                    format!("{field}.port must be between 1 and 65535"),
                ));
            };
            out.push(Backend {
                host: host.clone(),
                port,
                weight,
                flag: b.flag.clone(),
            });
        } else if let Some(group) = &b.group {
            let found: Option<&GroupBackend> =
                observed.group_backends.iter().find(|g| &g.name == group);
            let Some(GroupBackend {
                appbinding: Some(gab),
                standby_exists,
                ..
            }) = found
            else {
                return Err(Problem::new(
                    reason::APPBINDING_NOT_FOUND,
                    format!(
                        "{field}.group: AppBinding {}/{group} not found; create it or fix the name",
                        pgpool.namespace().unwrap_or_default()
                    ),
                ));
            };
            let (mut primary, service) = appbinding_backend(gab, &field)?;
            let port = primary.port;
            primary.weight = weight;
            primary.flag = b.flag.clone();
            out.push(primary);
            if let Some(service) = service
                && *standby_exists
            {
                let mut standby = standby_backend(gab, &service, port);
                standby.weight = weight;
                out.push(standby);
            }
        }
    }
    Ok(out)
}

fn user_overrides(pgpool: &Pgpool, observed: &Observed) -> Result<Vec<(String, String)>, Problem> {
    let mut out = Vec::new();
    if let Some(name) = pgpool.spec.user_config_secret_name() {
        let ns = pgpool.namespace().unwrap_or_default();
        let Some(secret) = &observed.user_config_secret else {
            return Err(Problem::new(
                reason::CONFIG_SECRET_NOT_FOUND,
                format!(
                    "configuration Secret {ns}/{name} not found; create it with a pgpool.conf key or remove spec.configuration.secretName"
                ),
            ));
        };
        let Some(text) = secret_string(secret, config::KEY_PGPOOL_CONF) else {
            return Err(Problem::new(
                reason::CONFIG_SECRET_NOT_FOUND,
                format!(
                    "configuration Secret {ns}/{name} has no pgpool.conf key; put the overrides under the key pgpool.conf"
                ),
            ));
        };
        out.extend(config::parse_pgpool_conf(&text).map_err(|e| {
            Problem::new(
                reason::INVALID_CONFIGURATION,
                format!("pgpool.conf in Secret {ns}/{name}: {e}; fix the Secret"),
            )
        })?);
    }
    if let Some(configuration) = &pgpool.spec.configuration {
        for (file, text) in &configuration.inline {
            if file != config::KEY_PGPOOL_CONF {
                return Err(Problem::new(
                    reason::INVALID_CONFIGURATION,
                    format!(
                        "spec.configuration.inline: {file:?} is not supported, only pgpool.conf; remove it"
                    ),
                ));
            }
            out.extend(config::parse_pgpool_conf(text).map_err(|e| {
                Problem::new(
                    reason::INVALID_CONFIGURATION,
                    format!(
                        "spec.configuration.inline pgpool.conf: {e}; fix spec.configuration.inline"
                    ),
                )
            })?);
        }
    }
    Ok(out)
}

fn check_children_ownership(pgpool: &Pgpool, observed: &Observed) -> Result<(), Problem> {
    let uid = pgpool.uid().unwrap_or_default();
    let c = &observed.children;
    let metas = [
        ("Secret", c.config_secret.as_ref().map(|o| o.meta())),
        ("Service", c.primary_service.as_ref().map(|o| o.meta())),
        ("Service", c.pods_service.as_ref().map(|o| o.meta())),
        ("Service", c.stats_service.as_ref().map(|o| o.meta())),
        ("PetSet", c.petset.as_ref().map(|o| o.meta())),
        ("PodDisruptionBudget", c.pdb.as_ref().map(|o| o.meta())),
        (
            "ServiceMonitor",
            c.service_monitor.as_ref().map(|o| o.meta()),
        ),
    ];
    for (kind, meta) in metas {
        let Some(meta) = meta else { continue };
        let foreign = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.uid != uid);
        if let Some(owner) = foreign {
            return Err(Problem::new(
                reason::CHILD_CONFLICT,
                format!(
                    "{kind} {} is controlled by {} {}; delete it or give the Pgpool another name",
                    meta.name.clone().unwrap_or_default(),
                    owner.kind,
                    owner.name
                ),
            ));
        }
    }
    Ok(())
}

fn auth_plan(
    pgpool: &Pgpool,
    observed: &Observed,
    generator: &mut dyn Generator,
) -> Result<AuthPlan, Problem> {
    let name = pgpool.auth_secret_name();
    let ns = pgpool.namespace().unwrap_or_default();
    let external = pgpool.spec.auth_externally_managed();
    match &observed.children.auth_secret {
        Some(secret) => {
            let password = secret_string(secret, "password").filter(|p| !p.is_empty());
            let Some(password) = password else {
                return Err(Problem::new(
                    reason::AUTH_SECRET_INVALID,
                    format!(
                        "auth Secret {ns}/{name} has no password key; add keys username and password to it"
                    ),
                ));
            };
            let username = secret_string(secret, "username")
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| names::PCP_USER.to_string());
            if external || !is_ours(secret, &pgpool.name_any()) {
                Ok(AuthPlan::UserSupplied { name })
            } else {
                Ok(AuthPlan::Managed {
                    name,
                    username,
                    password,
                    exists: true,
                })
            }
        }
        None if external => Err(Problem::new(
            reason::AUTH_SECRET_NOT_FOUND,
            format!(
                "auth Secret {ns}/{name} not found; spec.authSecret.externallyManaged is true, so create it with keys username and password"
            ),
        )),
        None => Ok(AuthPlan::Managed {
            name,
            username: names::PCP_USER.to_string(),
            password: generator.password(),
            exists: false,
        }),
    }
}

/// The pcp credentials a plan implies: from the plan, or from the user's Secret.
fn pcp_credentials(auth: &AuthPlan, observed: &Observed) -> (String, String) {
    match auth {
        AuthPlan::Managed {
            username, password, ..
        } => (username.clone(), password.clone()),
        AuthPlan::UserSupplied { .. } => {
            let secret = observed.children.auth_secret.as_ref();
            let user = secret
                .and_then(|s| secret_string(s, "username"))
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| names::PCP_USER.to_string());
            let password = secret
                .and_then(|s| secret_string(s, "password"))
                .unwrap_or_default();
            (user, password)
        }
    }
}

/// Checks everything and collects the [`Plan`]; `generator` is asked for a password only when
/// the auth Secret must be created, and for a pool key only when the config Secret has none.
pub fn validate(
    pgpool: &Pgpool,
    observed: &Observed,
    generator: &mut dyn Generator,
) -> Result<Plan, Problem> {
    let name = pgpool.name_any();
    let Some(namespace) = pgpool.namespace() else {
        return Err(Problem::new(
            reason::UNSUPPORTED,
            "the Pgpool has no namespace",
        ));
    };
    let Some(mut owner) = pgpool.controller_owner_ref(&()) else {
        return Err(Problem::new(
            reason::UNSUPPORTED,
            "the Pgpool has no uid yet",
        ));
    };
    owner.block_owner_deletion = Some(true);
    let spec = &pgpool.spec;

    // catalog
    let Some(version) = &observed.version else {
        return Err(Problem::new(
            reason::VERSION_NOT_FOUND,
            format!(
                "PgpoolVersion {:?} not found; set spec.version to an installed version (kubectl get pgpoolversions) or install that catalog entry",
                spec.version
            ),
        ));
    };
    if version.spec.is_deprecated() && !pgpool.was_provisioned() {
        return Err(Problem::new(
            reason::VERSION_DEPRECATED,
            format!(
                "PgpoolVersion {:?} is deprecated; set spec.version to a version that is not deprecated",
                spec.version
            ),
        ));
    }
    let exporter_image = if spec.monitoring_enabled() {
        match version.spec.exporter.as_ref().map(|e| e.image.clone()) {
            Some(image) if !image.is_empty() => Some(image),
            _ => {
                return Err(Problem::new(
                    reason::VERSION_INVALID,
                    format!(
                        "PgpoolVersion {:?} has no spec.exporter.image, which spec.monitor needs; add it to the catalog entry or remove spec.monitor",
                        spec.version
                    ),
                ));
            }
        }
    } else {
        None
    };

    // unsupported features: say so instead of running something else than asked for
    if spec.tls.is_some() {
        return Err(Problem::new(
            reason::UNSUPPORTED,
            "spec.tls is not supported by this operator yet; remove spec.tls (and sslMode, clientAuthMode cert)",
        ));
    }
    let auth_mode = match spec.client_auth_mode() {
        ClientAuthMode::Md5 => config::ClientAuthMode::Md5,
        ClientAuthMode::Scram => config::ClientAuthMode::Scram,
        ClientAuthMode::Cert => {
            return Err(Problem::new(
                reason::UNSUPPORTED,
                "spec.clientAuthMode cert is not supported yet; use md5 or scram",
            ));
        }
    };
    if let Some(overrides) = spec.pod_template.as_ref().and_then(|t| t.spec.as_ref()) {
        for c in &overrides.containers {
            if c.name != names::CONTAINER_PGPOOL && c.name != names::CONTAINER_EXPORTER {
                return Err(Problem::new(
                    reason::INVALID_CONFIGURATION,
                    format!(
                        "spec.podTemplate.spec.containers: no container {:?}; the containers are pgpool and exporter",
                        c.name
                    ),
                ));
            }
        }
        for c in &overrides.init_containers {
            if c.name != names::CONTAINER_INIT {
                return Err(Problem::new(
                    reason::INVALID_CONFIGURATION,
                    format!(
                        "spec.podTemplate.spec.initContainers: no init container {:?}; the init container is pgpool-init",
                        c.name
                    ),
                ));
            }
        }
    }

    // backend
    let ab_ns = pgpool.appbinding_namespace();
    let ab_name = &spec.postgres_ref.name;
    let Some(ab) = &observed.appbinding else {
        return Err(Problem::new(
            reason::APPBINDING_NOT_FOUND,
            format!(
                "AppBinding {ab_ns}/{ab_name} (spec.postgresRef) not found; create it or fix spec.postgresRef"
            ),
        ));
    };
    let Some(secret_name) = ab.spec.secret.as_ref().map(|s| s.name.clone()) else {
        return Err(Problem::new(
            reason::APPBINDING_INVALID,
            format!(
                "AppBinding {ab_ns}/{ab_name} has no spec.secret; point it at a Secret with keys username and password"
            ),
        ));
    };
    let Some(backend_secret) = &observed.backend_secret else {
        return Err(Problem::new(
            reason::BACKEND_SECRET_NOT_FOUND,
            format!(
                "Secret {ab_ns}/{secret_name} of AppBinding {ab_name} not found; create it with keys username and password"
            ),
        ));
    };
    let backend_user = secret_string(backend_secret, "username").filter(|u| !u.is_empty());
    let backend_password = secret_string(backend_secret, "password").filter(|p| !p.is_empty());
    let (Some(backend_user), Some(backend_password)) = (backend_user, backend_password) else {
        return Err(Problem::new(
            reason::BACKEND_SECRET_INVALID,
            format!(
                "Secret {ab_ns}/{secret_name} of AppBinding {ab_name} needs non-empty keys username and password; add them"
            ),
        ));
    };
    let backends = backends(pgpool, observed, ab)?;

    check_children_ownership(pgpool, observed)?;
    let auth = auth_plan(pgpool, observed, generator)?;
    let (pcp_user, pcp_password) = pcp_credentials(&auth, observed);
    let user_overrides = user_overrides(pgpool, observed)?;

    let existing_key = observed
        .children
        .config_secret
        .as_ref()
        .and_then(|s| secret_string(s, config::KEY_POOL_KEY))
        .filter(|k| !k.is_empty() && k.trim() == k && !k.chars().any(char::is_control));
    let pool_key = existing_key.unwrap_or_else(|| generator.pool_key());

    let input = RenderInput {
        version: version.spec.version.clone(),
        backends,
        auth_mode,
        backend_user: backend_user.clone(),
        backend_password: backend_password.clone(),
        pcp_user,
        pcp_password,
        pool_key,
        user_overrides,
        ..RenderInput::default()
    };
    let rendered = config::render(&input).map_err(|e| {
        Problem::new(
            reason::INVALID_CONFIGURATION,
            format!("the Pgpool-II configuration cannot be rendered: {e}"),
        )
    })?;
    let config_hash = config::config_hash(&rendered);

    let mut notes = Vec::new();
    let wants_sm = spec
        .monitor
        .as_ref()
        .is_some_and(|m| m.wants_service_monitor());
    let service_monitor = if wants_sm {
        if observed.service_monitor_forbidden {
            notes.push(
                "no ServiceMonitor: the provisioner may not read servicemonitors (enable rbac.serviceMonitors in its chart)".to_string(),
            );
            None
        } else if observed.service_monitor_api.is_none() {
            notes.push(
                "no ServiceMonitor: the monitoring.coreos.com/v1 ServiceMonitor CRD is not installed (install the Prometheus operator or use agent prometheus.io/builtin)".to_string(),
            );
            None
        } else {
            observed.service_monitor_api.clone()
        }
    } else {
        None
    };

    Ok(Plan {
        name,
        namespace,
        owner,
        pgpool_image: version.spec.pgpool.image.clone(),
        exporter_image,
        run_as_user: version.spec.run_as_user(),
        backend_user,
        backend_password,
        auth,
        rendered,
        config_hash,
        service_monitor,
        notes,
    })
}

/// Secret data from strings.
pub fn string_data<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, ByteString> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}
