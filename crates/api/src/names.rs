//! Names, labels, ports and annotations of the objects the operators create (DESIGN.md §4).

use std::collections::BTreeMap;

/// `app.kubernetes.io/name` of every child of a Pgpool.
pub const LABEL_NAME_VALUE: &str = "pgpools.kubedb.com";
/// `app.kubernetes.io/managed-by` of every child.
pub const LABEL_MANAGED_BY_VALUE: &str = "kubedb.com";
/// `app.kubernetes.io/component` of every child.
pub const LABEL_COMPONENT_VALUE: &str = "connection-pooler";
/// Label keys.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label key of the Pgpool's name.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label key of the managing system.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label key of the component.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";

/// Pod-template annotation with the hash of the rendered configuration.
pub const ANNOTATION_CONFIG_HASH: &str = "pgpool.kubedb.com/config-hash";

/// Config-Secret annotation: the Pgpool `metadata.generation` the files were rendered from
/// (written while an ops request holds the Pgpool paused, see the provisioner's `paused.rs`).
pub const ANNOTATION_RENDERED_GENERATION: &str = "pgpool.kubedb.com/rendered-generation";

/// Pgpool's client port.
pub const PORT_PRIMARY: i32 = 9999;
/// Pgpool's pcp port.
pub const PORT_PCP: i32 = 9595;
/// The exporter's metrics port.
pub const PORT_METRICS: i32 = 9719;
/// Port names.
pub const PORT_NAME_PRIMARY: &str = "primary";
/// Port name of pcp.
pub const PORT_NAME_PCP: &str = "pcp";
/// Port name of the exporter.
pub const PORT_NAME_METRICS: &str = "metrics";

/// Container names.
pub const CONTAINER_PGPOOL: &str = "pgpool";
/// The exporter sidecar.
pub const CONTAINER_EXPORTER: &str = "exporter";
/// The init container that prepares the pool key.
pub const CONTAINER_INIT: &str = "pgpool-init";

/// The pcp user name in generated auth Secrets.
pub const PCP_USER: &str = "pcp";

/// Finalizer of the provisioner.
pub const FINALIZER: &str = "kubedb.com/pgpool";

/// PetSet pod labels (StatefulSet's names).
pub const LABEL_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// Pod index label.
pub const LABEL_POD_INDEX: &str = "apps.kubernetes.io/pod-index";
/// Revision label on pods and ControllerRevisions.
pub const LABEL_REVISION_HASH: &str = "controller-revision-hash";

/// The labels every child of Pgpool `name` carries; also the pod selector.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), LABEL_NAME_VALUE.to_string()),
        (LABEL_INSTANCE.to_string(), name.to_string()),
        (
            LABEL_MANAGED_BY.to_string(),
            LABEL_MANAGED_BY_VALUE.to_string(),
        ),
        (
            LABEL_COMPONENT.to_string(),
            LABEL_COMPONENT_VALUE.to_string(),
        ),
    ])
}

/// The pod selector of Pgpool `name` (the name and instance labels).
pub fn selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), LABEL_NAME_VALUE.to_string()),
        (LABEL_INSTANCE.to_string(), name.to_string()),
    ])
}

/// The same selector as a label-selector string, for list calls.
pub fn selector_string(name: &str) -> String {
    selector(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Default name of the auth Secret.
pub fn auth_secret(name: &str) -> String {
    format!("{name}-auth")
}
/// Name of the generated config Secret.
pub fn config_secret(name: &str) -> String {
    format!("{name}-config")
}
/// Name of the client Service.
pub fn primary_service(name: &str) -> String {
    name.to_string()
}
/// Name of the headless governing Service.
pub fn pods_service(name: &str) -> String {
    format!("{name}-pods")
}
/// Name of the stats Service (and ServiceMonitor).
pub fn stats_service(name: &str) -> String {
    format!("{name}-stats")
}
/// Name of the PetSet.
pub fn petset(name: &str) -> String {
    name.to_string()
}
/// Name of the PodDisruptionBudget.
pub fn pdb(name: &str) -> String {
    name.to_string()
}
/// Name of pod `ordinal` of PetSet `petset`.
pub fn pod(petset: &str, ordinal: i32) -> String {
    format!("{petset}-{ordinal}")
}
/// The standby Service of a primary Service, by KubeDB's convention.
pub fn standby_service(primary: &str) -> String {
    format!("{primary}-standby")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        assert_eq!(auth_secret("pp"), "pp-auth");
        assert_eq!(config_secret("pp"), "pp-config");
        assert_eq!(pods_service("pp"), "pp-pods");
        assert_eq!(stats_service("pp"), "pp-stats");
        assert_eq!(pod("pp", 2), "pp-2");
        assert_eq!(standby_service("ha-postgres"), "ha-postgres-standby");
        assert_eq!(labels("pp").len(), 4);
        assert_eq!(
            selector_string("pp"),
            "app.kubernetes.io/instance=pp,app.kubernetes.io/name=pgpools.kubedb.com"
        );
    }
}
