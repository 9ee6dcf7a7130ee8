//! Checks of what the user supplied: the configuration overrides, and that no child's name
//! is taken by an object someone else owns.

use kube::{Resource, ResourceExt};
use pgpool_api::Pgpool;

use super::auth::secret_string;
use super::plan::{Problem, reason};
use crate::pgpool::dereference::Observed;
use pgpool_config as config;

pub(super) fn user_overrides(
    pgpool: &Pgpool,
    observed: &Observed,
) -> Result<Vec<(String, String)>, Problem> {
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

pub(super) fn check_children_ownership(
    pgpool: &Pgpool,
    observed: &Observed,
) -> Result<(), Problem> {
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
