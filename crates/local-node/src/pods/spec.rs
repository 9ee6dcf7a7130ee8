//! What a pod's containers are started with (pure): environment, user, mounts, `/etc/hosts`.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, Service};

use crate::container::{Mount, User};
use crate::images::ImageRuntime;
use crate::proxy::endpoints::cluster_ip;
use crate::volumes::{Sources, VolumePlan, field_value};

/// Why a container cannot be configured (`CreateContainerConfigError`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// An env var refers to a missing Secret/ConfigMap key.
    #[error("couldn't find key {key} in {kind} {name}")]
    MissingKey {
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
    /// A volumeMount names no volume of the pod.
    #[error("volume {0:?} not found")]
    NoVolume(String),
}

/// The container's environment: `env` in order (`value`, Secret/ConfigMap keys, fieldRefs).
pub fn env(
    pod: &Pod,
    c: &Container,
    sources: &Sources,
    pod_ip: Option<&str>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for e in c.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            let key_of = |kind: &'static str,
                          map: Option<&BTreeMap<String, Vec<u8>>>,
                          name: &str,
                          key: &str,
                          optional: bool|
             -> Result<Option<String>, ConfigError> {
                match map.and_then(|m| m.get(key)) {
                    Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
                    None if optional => Ok(None),
                    None => Err(ConfigError::MissingKey {
                        kind,
                        name: name.to_string(),
                        key: key.to_string(),
                    }),
                }
            };
            if let Some(s) = &from.secret_key_ref {
                let map = sources.secrets.get(&s.name);
                key_of("Secret", map, &s.name, &s.key, s.optional == Some(true))?
            } else if let Some(m) = &from.config_map_key_ref {
                let map = sources.config_maps.get(&m.name);
                key_of("ConfigMap", map, &m.name, &m.key, m.optional == Some(true))?
            } else {
                from.field_ref.as_ref().map(|f| field_value(pod, f, pod_ip))
            }
        } else {
            Some(e.value.clone().unwrap_or_default())
        };
        if let Some(v) = value {
            out.retain(|(k, _)| k != &e.name);
            out.push((e.name.clone(), v));
        }
    }
    Ok(out)
}

/// The user a container runs as: container securityContext over the pod's; root when unset.
pub fn user(pod: &Pod, c: &Container) -> Option<User> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let uid = csc
        .and_then(|s| s.run_as_user)
        .or_else(|| psc.and_then(|s| s.run_as_user))?;
    let gid = csc
        .and_then(|s| s.run_as_group)
        .or_else(|| psc.and_then(|s| s.run_as_group))
        .unwrap_or(uid);
    let mut groups: Vec<u32> = psc
        .and_then(|s| s.fs_group)
        .into_iter()
        .chain(
            psc.and_then(|s| s.supplemental_groups.clone())
                .into_iter()
                .flatten(),
        )
        .filter_map(|g| u32::try_from(g).ok())
        .collect();
    groups.sort();
    groups.dedup();
    Some(User {
        uid: u32::try_from(uid).ok()?,
        gid: u32::try_from(gid).ok()?,
        groups,
    })
}

/// `allowPrivilegeEscalation: false` on the container.
pub fn no_new_privs(c: &Container) -> bool {
    c.security_context
        .as_ref()
        .and_then(|s| s.allow_privilege_escalation)
        == Some(false)
}

/// `readOnlyRootFilesystem: true` on the container.
pub fn read_only_root(c: &Container) -> bool {
    c.security_context
        .as_ref()
        .and_then(|s| s.read_only_root_filesystem)
        == Some(true)
}

/// The argv: the image map's command for test images, else the container's command + args.
pub fn argv(c: &Container, runtime: &ImageRuntime) -> Vec<String> {
    if let Some(cmd) = &runtime.command {
        return cmd.clone();
    }
    c.command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .cloned()
        .collect()
}

/// The bind mounts of a container: the image's host paths, then its volumeMounts (with
/// `subPath`) from the pod's volume folders under `volumes_dir`.
pub fn mounts(
    c: &Container,
    runtime: &ImageRuntime,
    plans: &BTreeMap<String, VolumePlan>,
    volumes_dir: &Path,
) -> Result<Vec<Mount>, ConfigError> {
    let mut out: Vec<Mount> = runtime
        .mounts
        .iter()
        .map(|(target, source)| Mount {
            source: source.clone(),
            target: target.clone(),
            read_only: true,
        })
        .collect();
    for vm in c.volume_mounts.iter().flatten() {
        let plan = plans
            .get(&vm.name)
            .ok_or_else(|| ConfigError::NoVolume(vm.name.clone()))?;
        let mut source = match plan {
            VolumePlan::HostPath(p) => p.clone(),
            _ => volumes_dir.join(&vm.name),
        };
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            source = source.join(sub);
        }
        let read_only = vm.read_only == Some(true) || matches!(plan, VolumePlan::Files { .. });
        out.push(Mount {
            source,
            target: vm.mount_path.clone(),
            read_only,
        });
    }
    Ok(out)
}

/// `/etc/hosts` of a pod: localhost, the pod itself, and every Service with a ClusterIP as
/// `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local` (plus `<svc>` and `<svc>.<ns>` in the
/// pod's own namespace, as the DNS search path would give).
pub fn hosts(pod: &Pod, pod_ip: &str, services: &[Service]) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| name.clone());
    let mut own = vec![hostname.clone()];
    if let Some(sub) = spec.and_then(|s| s.subdomain.clone()) {
        own.insert(0, format!("{hostname}.{sub}.{ns}.svc.cluster.local"));
        own.insert(1, format!("{hostname}.{sub}.{ns}.svc"));
    }
    let mut out = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{pod_ip}\t{}\n",
        own.join(" ")
    );
    for svc in services {
        let Some(ip) = cluster_ip(svc) else { continue };
        let svc_name = svc.metadata.name.clone().unwrap_or_default();
        let svc_ns = svc.metadata.namespace.clone().unwrap_or_default();
        let mut names = vec![
            format!("{svc_name}.{svc_ns}.svc"),
            format!("{svc_name}.{svc_ns}.svc.cluster.local"),
        ];
        if svc_ns == ns {
            names.push(format!("{svc_name}.{svc_ns}"));
            names.push(svc_name);
        }
        out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    out
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
