//! The generated CRDs have the names, scopes, columns and rules of DESIGN.md §3, and the
//! committed chart files are exactly what crdgen prints.

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

fn crd(name: &str) -> CustomResourceDefinition {
    pgpool_api::crds::all()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no CRD {name}"))
}

fn columns(c: &CustomResourceDefinition) -> Vec<(String, String)> {
    c.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|col| (col.name, col.json_path))
        .collect()
}

fn cel_rules(c: &CustomResourceDefinition) -> String {
    serde_json::to_string(&c.spec.versions[0].schema).unwrap()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn pgpool_crd() {
    let c = crd("pgpools.kubedb.com");
    assert_eq!(c.spec.group, "kubedb.com");
    assert_eq!(c.spec.versions[0].name, "v1alpha2");
    assert_eq!(c.spec.names.kind, "Pgpool");
    assert_eq!(c.spec.scope, "Namespaced");
    assert_eq!(c.spec.names.short_names, Some(vec!["pp".to_string()]));
    assert!(
        c.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
    assert_eq!(
        columns(&c),
        vec![
            pair("Version", ".spec.version"),
            pair("Status", ".status.phase"),
            pair("Age", ".metadata.creationTimestamp")
        ]
    );
    let rules = cel_rules(&c);
    for needle in [
        "self.replicas >= 1 && self.replicas <= 9",
        "self.clientAuthMode != 'cert' || has(self.tls)",
        "self.periodSeconds >= 1",
        "'PGPOOL_PCP_PASSWORD'",
        "m.mountPath in ['/etc/pgpool-config'",
        "v.name in ['pgpool-config'",
        "has(self.hostName) != has(self.group)",
    ] {
        assert!(
            rules.contains(needle),
            "Pgpool CRD lacks the CEL rule {needle:?}"
        );
    }
}

#[test]
fn pgpool_version_crd() {
    let c = crd("pgpoolversions.catalog.kubedb.com");
    assert_eq!(c.spec.versions[0].name, "v1alpha1");
    assert_eq!(c.spec.scope, "Cluster");
    assert_eq!(
        c.spec.names.short_names,
        Some(vec!["ppversion".to_string()])
    );
    assert_eq!(
        columns(&c),
        vec![
            pair("Version", ".spec.version"),
            pair("PGPOOL_IMAGE", ".spec.pgpool.image"),
            pair("Deprecated", ".spec.deprecated"),
            pair("Age", ".metadata.creationTimestamp")
        ]
    );
}

#[test]
fn ops_request_crd() {
    let c = crd("pgpoolopsrequests.ops.kubedb.com");
    assert_eq!(c.spec.versions[0].name, "v1alpha1");
    assert_eq!(c.spec.scope, "Namespaced");
    assert_eq!(c.spec.names.short_names, Some(vec!["ppops".to_string()]));
    assert!(
        c.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
    assert_eq!(
        columns(&c),
        vec![
            pair("Type", ".spec.type"),
            pair("Status", ".status.phase"),
            pair("Age", ".metadata.creationTimestamp")
        ]
    );
    let rules = cel_rules(&c);
    assert!(rules.contains("self == oldSelf"));
    assert!(rules.contains("self.type != 'UpdateVersion' || has(self.updateVersion)"));
}

#[test]
fn petset_and_appbinding_crds() {
    let c = crd("petsets.apps.k8s.appscode.com");
    assert_eq!(c.spec.versions[0].name, "v1");
    assert_eq!(c.spec.scope, "Namespaced");
    let sub = c.spec.versions[0].subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub
        .scale
        .as_ref()
        .expect("PetSet has the scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    let c = crd("appbindings.appcatalog.appscode.com");
    assert_eq!(c.spec.versions[0].name, "v1alpha1");
    assert_eq!(c.spec.scope, "Namespaced");
}

#[test]
fn crdgen_prints_five_crds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let mut kinds: Vec<String> = docs.iter().map(|d| d.spec.names.kind.clone()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "AppBinding",
            "PetSet",
            "Pgpool",
            "PgpoolOpsRequest",
            "PgpoolVersion"
        ]
    );
}

#[test]
fn committed_crds_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for c in pgpool_api::crds::all() {
        let path = root.join(pgpool_api::crds::file_of(&c));
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", path.display()));
        assert!(
            committed == pgpool_api::crds::to_yaml(&c).unwrap(),
            "{} differs from the Rust types; run `make crds` and commit the result",
            path.display()
        );
    }
}
