//! The kinds the server knows: built-in resource kinds and registered CRDs.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// Where the scale subresource reads and writes replicas.
#[derive(Clone, Debug)]
pub(crate) struct ScaleInfo {
    pub spec_replicas_path: Vec<String>,
    pub status_replicas_path: Vec<String>,
    pub label_selector_path: Option<Vec<String>>,
}

/// Everything the server needs to know about one resource kind.
#[derive(Clone, Debug)]
pub(crate) struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: String,
    /// Served versions; the first is the preferred one.
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    /// Whether the status subresource is enabled.
    pub status: bool,
    pub scale: Option<ScaleInfo>,
}

impl ResourceInfo {
    /// `group/version` (or `version` for the core group) for a given version.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// `plural.group` as used in error messages (`pods`, `pgpools.kubedb.com`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

fn path_of(p: &str) -> Vec<String> {
    p.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn builtin(
    group: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    status: bool,
    scale: bool,
    short_names: &[&str],
) -> ResourceInfo {
    ResourceInfo {
        group: group.to_string(),
        versions: vec!["v1".to_string()],
        kind: kind.to_string(),
        plural: plural.to_string(),
        singular: kind.to_lowercase(),
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        namespaced,
        status,
        scale: scale.then(|| ScaleInfo {
            spec_replicas_path: path_of(".spec.replicas"),
            status_replicas_path: path_of(".status.replicas"),
            label_selector_path: Some(path_of(".spec.selector")),
        }),
    }
}

/// The built-in kinds the server serves.
pub(crate) fn builtins() -> Vec<ResourceInfo> {
    vec![
        builtin("", "Pod", "pods", true, true, false, &["po"]),
        builtin("", "Secret", "secrets", true, false, false, &[]),
        builtin("", "Service", "services", true, true, false, &["svc"]),
        builtin(
            "",
            "ServiceAccount",
            "serviceaccounts",
            true,
            false,
            false,
            &["sa"],
        ),
        builtin("", "ConfigMap", "configmaps", true, false, false, &["cm"]),
        builtin(
            "",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            true,
            false,
            &["pvc"],
        ),
        builtin("", "Event", "events", true, false, false, &["ev"]),
        builtin("", "Endpoints", "endpoints", true, false, false, &["ep"]),
        builtin(
            "discovery.k8s.io",
            "EndpointSlice",
            "endpointslices",
            true,
            false,
            false,
            &[],
        ),
        builtin("", "Namespace", "namespaces", false, true, false, &["ns"]),
        builtin("", "Node", "nodes", false, true, false, &["no"]),
        builtin(
            "events.k8s.io",
            "Event",
            "events",
            true,
            false,
            false,
            &["ev"],
        ),
        builtin(
            "apps",
            "ControllerRevision",
            "controllerrevisions",
            true,
            false,
            false,
            &[],
        ),
        builtin(
            "apps",
            "StatefulSet",
            "statefulsets",
            true,
            true,
            true,
            &["sts"],
        ),
        builtin(
            "apps",
            "Deployment",
            "deployments",
            true,
            true,
            true,
            &["deploy"],
        ),
        builtin(
            "policy",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            true,
            false,
            &["pdb"],
        ),
        builtin(
            "coordination.k8s.io",
            "Lease",
            "leases",
            true,
            false,
            false,
            &[],
        ),
        builtin(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            true,
            false,
            &["crd", "crds"],
        ),
    ]
}

/// Build the server's view of a CRD. Only served versions are kept; the storage version comes
/// first. Subresources are taken from the storage version (falling back to any version).
pub(crate) fn from_crd(crd: &CustomResourceDefinition) -> ResourceInfo {
    let spec = &crd.spec;
    let mut versions: Vec<String> = Vec::new();
    let mut status = false;
    let mut scale = None;
    let mut ordered: Vec<_> = spec.versions.iter().filter(|v| v.served).collect();
    ordered.sort_by_key(|v| !v.storage);
    for v in ordered {
        versions.push(v.name.clone());
        if let Some(sub) = &v.subresources {
            if sub.status.is_some() {
                status = true;
            }
            if scale.is_none()
                && let Some(sc) = &sub.scale
            {
                scale = Some(ScaleInfo {
                    spec_replicas_path: path_of(&sc.spec_replicas_path),
                    status_replicas_path: path_of(&sc.status_replicas_path),
                    label_selector_path: sc.label_selector_path.as_deref().map(path_of),
                });
            }
        }
    }
    ResourceInfo {
        group: spec.group.clone(),
        versions,
        kind: spec.names.kind.clone(),
        plural: spec.names.plural.clone(),
        singular: spec
            .names
            .singular
            .clone()
            .unwrap_or_else(|| spec.names.kind.to_lowercase()),
        short_names: spec.names.short_names.clone().unwrap_or_default(),
        namespaced: spec.scope == "Namespaced",
        status,
        scale,
    }
}
