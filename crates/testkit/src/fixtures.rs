//! Helpers to build common objects for tests.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, PodSpec, Secret, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn labels_of<'a>(
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<BTreeMap<String, String>> {
    let m: BTreeMap<String, String> = labels
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (!m.is_empty()).then_some(m)
}

/// Metadata with a name and namespace.
pub fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectMeta::default()
    }
}

/// A ConfigMap with string data.
pub fn config_map<'a>(
    namespace: &str,
    name: &str,
    data: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> ConfigMap {
    ConfigMap {
        metadata: meta(namespace, name),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ConfigMap::default()
    }
}

/// An Opaque Secret with the given keys (values stored as bytes).
pub fn secret<'a>(
    namespace: &str,
    name: &str,
    data: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Secret {
    Secret {
        metadata: meta(namespace, name),
        type_: Some("Opaque".into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// A ClusterIP Service selecting `selector`, exposing `port` (TCP, same target port).
pub fn service<'a>(
    namespace: &str,
    name: &str,
    selector: impl IntoIterator<Item = (&'a str, &'a str)>,
    port: i32,
) -> Service {
    Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec {
            selector: labels_of(selector),
            ports: Some(vec![ServicePort {
                name: Some("main".into()),
                port,
                target_port: Some(IntOrString::Int(port)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// A Pod with one container `main` running `image`, with labels.
pub fn pod<'a>(
    namespace: &str,
    name: &str,
    image: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: labels_of(labels),
            ..meta(namespace, name)
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// A PodDisruptionBudget selecting `selector` with `minAvailable` (e.g. `IntOrString::Int(1)`
/// or `IntOrString::String("50%".into())`).
pub fn pdb_min_available<'a>(
    namespace: &str,
    name: &str,
    selector: impl IntoIterator<Item = (&'a str, &'a str)>,
    min_available: IntOrString,
) -> PodDisruptionBudget {
    pdb(
        namespace,
        name,
        selector,
        PodDisruptionBudgetSpec {
            min_available: Some(min_available),
            ..PodDisruptionBudgetSpec::default()
        },
    )
}

/// A PodDisruptionBudget selecting `selector` with `maxUnavailable`.
pub fn pdb_max_unavailable<'a>(
    namespace: &str,
    name: &str,
    selector: impl IntoIterator<Item = (&'a str, &'a str)>,
    max_unavailable: IntOrString,
) -> PodDisruptionBudget {
    pdb(
        namespace,
        name,
        selector,
        PodDisruptionBudgetSpec {
            max_unavailable: Some(max_unavailable),
            ..PodDisruptionBudgetSpec::default()
        },
    )
}

fn pdb<'a>(
    namespace: &str,
    name: &str,
    selector: impl IntoIterator<Item = (&'a str, &'a str)>,
    spec: PodDisruptionBudgetSpec,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(namespace, name),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: labels_of(selector),
                ..LabelSelector::default()
            }),
            ..spec
        }),
        ..PodDisruptionBudget::default()
    }
}

/// A controller owner reference to `owner` (which must have a name and uid, e.g. as returned
/// by the server).
pub fn owner_ref<K>(owner: &K) -> Option<OwnerReference>
where
    K: kube::Resource<DynamicType = ()>,
{
    owner.controller_owner_ref(&())
}

/// A CustomResourceDefinition of `group`/v1 `kind` (`plural`, `scope`: `Namespaced` or
/// `Cluster`) that keeps any field: for the CRDs of other projects a test needs to exist
/// (cert-manager, the Prometheus operator).
pub fn schemaless_crd(
    group: &str,
    kind: &str,
    plural: &str,
    scope: &str,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "plural": plural,
                "singular": kind.to_lowercase(),
                "kind": kind,
                "listKind": format!("{kind}List"),
            },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true
                }},
            }],
        },
    });
    serde_json::from_value(crd).unwrap_or_default()
}
