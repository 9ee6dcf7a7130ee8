//! Validate (pure): from the Pgpool and what [`super::dereference`] read, either a [`Plan`]
//! that the builders turn into children, or a [`Problem`] the user must fix.
//!
//! Nothing is written before validation passed, so a problem never leaves half-built
//! children behind.

mod auth;
mod backends;
mod checks;
mod note;
mod plan;

use kube::{Resource, ResourceExt};
use pgpool_api::pgpool::ClientAuthMode;
use pgpool_api::{Pgpool, names};

use crate::pgpool::dereference::Observed;
use pgpool_config::{self as config, RenderInput};

use auth::{auth_plan, pcp_credentials, secret_string};
use chrono::Utc;

use crate::pgpool::tls::plan::plan as tls_plan;
use backends::backends;
use checks::{check_children_ownership, user_overrides};

pub use auth::{is_ours, string_data};
pub use note::{Note, note_reason};
pub use plan::{AuthPlan, Generator, Plan, Problem, RandomGenerator, reason};

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

    let auth_mode = match spec.client_auth_mode() {
        ClientAuthMode::Md5 => config::ClientAuthMode::Md5,
        ClientAuthMode::Scram => config::ClientAuthMode::Scram,
        ClientAuthMode::Cert => config::ClientAuthMode::Cert,
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
    let tls = tls_plan(pgpool, ab, &observed.tls, &backend_user, Utc::now())
        .map_err(|p| Problem::new(p.reason, p.message))?;

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
        tls: tls.as_ref().map(|t| t.render.clone()).unwrap_or_default(),
        ..RenderInput::default()
    };
    let rendered = config::render(&input)
        .map_err(|e| Problem::new(reason::INVALID_CONFIGURATION, config::render_problem(&e)))?;
    let config_hash = config::config_hash(&rendered);

    let mut notes = Vec::new();
    if let Some(t) = tls.as_ref()
        && t.render.backend
        && t.render.files.as_ref().is_some_and(|f| f.ca.is_some())
        && t.backend_ca.is_none()
    {
        // pgpool checks the backend's certificate against ssl_ca_cert (the Pgpool's CA)
        notes.push(Note::monitoring(format!(
            "AppBinding {ab_name} asks for TLS but has no clientConfig.caBundle: pgpool accepts only a backend certificate of the Pgpool's own CA"
        )));
    }
    if let Some(t) = tls.as_ref().filter(|t| !t.pending.is_empty()) {
        notes.push(Note::waiting_for_certificates(format!(
            "waiting for cert-manager to issue the Secret(s) {}",
            t.pending.join(", ")
        )));
    }
    let wants_sm = spec
        .monitor
        .as_ref()
        .is_some_and(|m| m.wants_service_monitor());
    let service_monitor = if wants_sm {
        if observed.service_monitor_forbidden {
            notes.push(Note::monitoring(
                "no ServiceMonitor: the provisioner may not read servicemonitors (enable rbac.serviceMonitors in its chart)",
            ));
            None
        } else if observed.service_monitor_api.is_none() {
            notes.push(Note::monitoring(
                "no ServiceMonitor: the monitoring.coreos.com/v1 ServiceMonitor CRD is not installed (install the Prometheus operator or use agent prometheus.io/builtin)",
            ));
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
        certificate_api: observed.tls.certificate_api.clone(),
        tls,
    })
}
