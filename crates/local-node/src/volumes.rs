//! Volumes (pure projection, then a small writer): which files a pod's Secret, ConfigMap,
//! downward-API and projected volumes hold, with which modes, as the kubelet lays them out.
//!
//! Modes follow the kubelet: an item's `mode`, else the volume's `defaultMode`, else 0644;
//! with a pod `fsGroup` every file gets that group and at least `0440` (`SetVolumeOwnership`
//! on a read-only volume). emptyDirs are `2777` with the fsGroup's group. Limits: files are
//! written once when the pod starts (no `..data` symlink swap on later Secret changes).

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, ObjectFieldSelector, Pod, Secret, Volume,
};

/// The Secrets and ConfigMaps of the pod's namespace that a pod refers to, by name.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Secret name -> key -> bytes.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// ConfigMap name -> key -> bytes (`data` and `binaryData`).
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl Sources {
    /// Adds a Secret.
    pub fn add_secret(&mut self, s: &Secret) {
        let data = s
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .chain(
                s.string_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
            )
            .collect();
        self.secrets
            .insert(s.metadata.name.clone().unwrap_or_default(), data);
    }

    /// Adds a ConfigMap.
    pub fn add_config_map(&mut self, c: &ConfigMap) {
        let data = c
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .chain(
                c.binary_data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone())),
            )
            .collect();
        self.config_maps
            .insert(c.metadata.name.clone().unwrap_or_default(), data);
    }
}

/// One file of a projected volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Path relative to the volume's root.
    pub path: PathBuf,
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// What a volume is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumePlan {
    /// A folder the node fills with these files (Secret, ConfigMap, downward API, projected).
    Files {
        /// The files.
        files: Vec<File>,
        /// Group owning every file (the pod's fsGroup).
        gid: Option<u32>,
    },
    /// An empty folder shared by the pod's containers.
    EmptyDir {
        /// Group owning the folder (the pod's fsGroup).
        gid: Option<u32>,
    },
    /// A host folder or file, mounted as is.
    HostPath(PathBuf),
}

/// Why a volume cannot be set up (the kubelet's `FailedMount`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VolumeError {
    /// A Secret or ConfigMap the pod needs is missing.
    #[error("{kind} {name:?} not found")]
    MissingSource {
        /// `secret` or `configmap`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// An item names a key the source lacks.
    #[error("key {key:?} not found in {kind} {name:?}")]
    MissingKey {
        /// `secret` or `configmap`.
        kind: &'static str,
        /// The source's name.
        name: String,
        /// The key.
        key: String,
    },
    /// An item path is absolute or leaves the volume.
    #[error("invalid item path {0:?}")]
    BadPath(String),
    /// A volume kind the local node does not provide.
    #[error("volume {0:?}: unsupported volume source")]
    Unsupported(String),
}

const DEFAULT_MODE: i32 = 0o644;

fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()?
        .security_context
        .as_ref()?
        .fs_group
        .and_then(|g| u32::try_from(g).ok())
}

fn file_mode(mode: i32, gid: Option<u32>) -> u32 {
    let mode = (mode as u32) & 0o7777;
    if gid.is_some() { mode | 0o440 } else { mode }
}

fn rel_path(p: &str) -> Result<PathBuf, VolumeError> {
    let path = PathBuf::from(p);
    let ok = !p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(path)
    } else {
        Err(VolumeError::BadPath(p.to_string()))
    }
}

/// Files of a Secret/ConfigMap source: every key, or only `items` (with their modes).
fn key_files(
    kind: &'static str,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    default_mode: i32,
    gid: Option<u32>,
) -> Result<Vec<File>, VolumeError> {
    let Some(data) = data else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(VolumeError::MissingSource {
                kind,
                name: name.to_string(),
            })
        };
    };
    match items.filter(|i| !i.is_empty()) {
        None => data
            .iter()
            .map(|(k, v)| {
                Ok(File {
                    path: rel_path(k)?,
                    data: v.clone(),
                    mode: file_mode(default_mode, gid),
                })
            })
            .collect(),
        Some(items) => {
            let mut out = Vec::new();
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(VolumeError::MissingKey {
                        kind,
                        name: name.to_string(),
                        key: item.key.clone(),
                    });
                };
                out.push(File {
                    path: rel_path(&item.path)?,
                    data: v.clone(),
                    mode: file_mode(item.mode.unwrap_or(default_mode), gid),
                });
            }
            Ok(out)
        }
    }
}

/// The value of a downward-API `fieldRef` (`metadata.name`, `.namespace`, `.uid`, `.labels`,
/// `.annotations`, `metadata.labels['k']`, `spec.nodeName`, `spec.serviceAccountName`,
/// `status.podIP`).
pub fn field_value(pod: &Pod, field: &ObjectFieldSelector, pod_ip: Option<&str>) -> String {
    let m = &pod.metadata;
    let path = field.field_path.as_str();
    let map_text = |map: Option<&BTreeMap<String, String>>| {
        map.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect::<String>()
    };
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_text(m.labels.as_ref()),
        "metadata.annotations" => map_text(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => pod_ip.unwrap_or_default().to_string(),
        _ => keyed("metadata.labels['", m.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", m.annotations.as_ref()))
            .unwrap_or_default(),
    }
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    gid: Option<u32>,
    pod_ip: Option<&str>,
) -> Result<Vec<File>, VolumeError> {
    items
        .iter()
        .map(|item| {
            let data = item
                .field_ref
                .as_ref()
                .map(|f| field_value(pod, f, pod_ip))
                .unwrap_or_default();
            Ok(File {
                path: rel_path(&item.path)?,
                data: data.into_bytes(),
                mode: file_mode(item.mode.unwrap_or(default_mode), gid),
            })
        })
        .collect()
}

/// Plans one volume of `pod`.
pub fn plan_volume(
    pod: &Pod,
    volume: &Volume,
    sources: &Sources,
    pod_ip: Option<&str>,
) -> Result<VolumePlan, VolumeError> {
    let gid = fs_group(pod);
    if volume.empty_dir.is_some() {
        return Ok(VolumePlan::EmptyDir { gid });
    }
    if let Some(h) = &volume.host_path {
        return Ok(VolumePlan::HostPath(PathBuf::from(&h.path)));
    }
    let files = if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        key_files(
            "secret",
            &name,
            sources.secrets.get(&name),
            s.items.as_ref(),
            s.optional.unwrap_or(false),
            s.default_mode.unwrap_or(DEFAULT_MODE),
            gid,
        )?
    } else if let Some(c) = &volume.config_map {
        key_files(
            "configmap",
            &c.name,
            sources.config_maps.get(&c.name),
            c.items.as_ref(),
            c.optional.unwrap_or(false),
            c.default_mode.unwrap_or(DEFAULT_MODE),
            gid,
        )?
    } else if let Some(d) = &volume.downward_api {
        downward_files(
            pod,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode.unwrap_or(DEFAULT_MODE),
            gid,
            pod_ip,
        )?
    } else if let Some(p) = &volume.projected {
        let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        let mut files = Vec::new();
        for src in p.sources.iter().flatten() {
            if let Some(s) = &src.secret {
                files.extend(key_files(
                    "secret",
                    &s.name,
                    sources.secrets.get(&s.name),
                    s.items.as_ref(),
                    s.optional.unwrap_or(false),
                    mode,
                    gid,
                )?);
            } else if let Some(c) = &src.config_map {
                files.extend(key_files(
                    "configmap",
                    &c.name,
                    sources.config_maps.get(&c.name),
                    c.items.as_ref(),
                    c.optional.unwrap_or(false),
                    mode,
                    gid,
                )?);
            } else if let Some(d) = &src.downward_api {
                files.extend(downward_files(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    gid,
                    pod_ip,
                )?);
            } else {
                return Err(VolumeError::Unsupported(volume.name.clone()));
            }
        }
        files
    } else {
        return Err(VolumeError::Unsupported(volume.name.clone()));
    };
    Ok(VolumePlan::Files { files, gid })
}

/// The Secrets and ConfigMaps a pod's volumes and env refer to: (secrets, configmaps).
pub fn referenced_sources(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut secrets = Vec::new();
    let mut cms = Vec::new();
    let Some(spec) = &pod.spec else {
        return (secrets, cms);
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.push(s);
        }
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                secrets.push(s.name.clone());
            }
            if let Some(c) = &src.config_map {
                cms.push(c.name.clone());
            }
        }
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for e in c.env.iter().flatten() {
            let from = e.value_from.as_ref();
            if let Some(s) = from.and_then(|f| f.secret_key_ref.as_ref()) {
                secrets.push(s.name.clone());
            }
            if let Some(m) = from.and_then(|f| f.config_map_key_ref.as_ref()) {
                cms.push(m.name.clone());
            }
        }
    }
    secrets.sort();
    secrets.dedup();
    cms.sort();
    cms.dedup();
    (secrets, cms)
}

/// Creates the volume on the host at `dir` (a folder that does not exist yet).
pub fn write_volume(dir: &Path, plan: &VolumePlan) -> std::io::Result<()> {
    match plan {
        VolumePlan::HostPath(_) => Ok(()),
        VolumePlan::EmptyDir { gid } => {
            std::fs::create_dir_all(dir)?;
            chown(dir, None, *gid)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2777))
        }
        VolumePlan::Files { files, gid } => {
            std::fs::create_dir_all(dir)?;
            chown(dir, None, *gid)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
            for f in files {
                let path = dir.join(&f.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, &f.data)?;
                chown(&path, None, *gid)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "volumes_tests.rs"]
mod tests;
