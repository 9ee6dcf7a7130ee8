//! The backends from the AppBinding(s): the primary, and the standby Service or the
//! backend group.

use kube::ResourceExt;
use pgpool_api::appbinding::host_port_from_url;
use pgpool_api::{AppBinding, Pgpool, names};

use super::plan::{Problem, reason};
use crate::pgpool::dereference::{GroupBackend, Observed};
use pgpool_config::Backend;

/// The service host of an AppBinding: its Service's cluster DNS name, or the URL's host.
pub(super) fn appbinding_backend(
    ab: &AppBinding,
    what: &str,
) -> Result<(Backend, Option<String>), Problem> {
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

pub(super) fn standby_backend(ab: &AppBinding, service: &str, port: u16) -> Backend {
    let ns = ab.namespace().unwrap_or_default();
    Backend::new(
        format!("{}.{ns}.svc", names::standby_service(service)),
        port,
    )
}

pub(super) fn backends(
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
