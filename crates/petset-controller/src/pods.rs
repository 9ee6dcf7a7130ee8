//! Pods and claims of a PetSet: how they are named and built, and what state a pod is in.
//! Everything here is pure.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;
use pgpool_api::PetSet;
use pgpool_api::names::{LABEL_POD_INDEX, LABEL_POD_NAME, LABEL_REVISION_HASH};

/// The ordinal of pod `pod_name` if it is named `<petset>-<ordinal>` (no sign, no leading
/// zeros), otherwise `None`.
pub fn ordinal_of(petset: &str, pod_name: &str) -> Option<i32> {
    let digits = pod_name.strip_prefix(petset)?.strip_prefix('-')?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// Name of the claim `claim` of pod `pod`.
pub fn claim_name(claim: &str, pod: &str) -> String {
    format!("{claim}-{pod}")
}

/// Whether the pod is being deleted.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// Whether the pod has ended for good (phase Failed or Succeeded).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Failed" | "Succeeded"))
}

/// The pod's Ready condition, when it is True: `Some(since)`, where `since` is its last
/// transition time if the kubelet recorded one.
fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod is Running with its Ready condition True.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && ready_since(pod).is_some()
}

/// How far a pod is on its way to being available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Not Running and Ready.
    NotReady,
    /// Running and Ready, but for less than minReadySeconds; available after this long.
    ReadyFor(Duration),
    /// Running and Ready for at least minReadySeconds.
    Available,
}

/// Whether the pod is available: Running and Ready for at least `min_ready_seconds`. A
/// Ready condition without a transition time counts as ready long enough.
pub fn availability(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Availability {
    if phase(pod) != Some("Running") {
        return Availability::NotReady;
    }
    let Some(since) = ready_since(pod) else {
        return Availability::NotReady;
    };
    if min_ready_seconds <= 0 {
        return Availability::Available;
    }
    let Some(since) = since else {
        return Availability::Available;
    };
    let wait = since
        .duration_since(now)
        .saturating_add(SignedDuration::from_secs(i64::from(min_ready_seconds)));
    if wait.is_positive() {
        Availability::ReadyFor(wait.unsigned_abs())
    } else {
        Availability::Available
    }
}

/// Whether the pod counts as healthy for ordering and updates: not terminating and
/// available (Running and Ready for minReadySeconds).
pub fn is_healthy(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    !is_terminating(pod) && availability(pod, min_ready_seconds, now) == Availability::Available
}

/// The revision a pod was created from (its `controller-revision-hash` label).
pub fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(LABEL_REVISION_HASH)
        .map(String::as_str)
}

/// Whether `pod` has a controller owner reference to the object with `uid`.
pub fn is_controlled_by(pod_meta: &ObjectMeta, uid: &str) -> bool {
    pod_meta
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// The controller owner reference children of `petset` carry (`None` without a uid).
pub fn owner_reference(petset: &PetSet) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: PetSet::api_version(&()).into_owned(),
        kind: PetSet::kind(&()).into_owned(),
        name: petset.metadata.name.clone()?,
        uid: petset.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Pod `ordinal` of `petset` built from `template` (of revision `revision`): name
/// `<petset>-<ordinal>`, host name = pod name, subdomain = serviceName, the template's
/// labels plus the revision, pod-name and pod-index labels, a controller owner reference,
/// and the claim volumes of the volumeClaimTemplates.
pub fn build_pod(
    petset: &PetSet,
    owner: &OwnerReference,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Pod {
    let set_name = petset.metadata.name.clone().unwrap_or_default();
    let name = pgpool_api::names::pod(&set_name, ordinal);
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(LABEL_REVISION_HASH.to_string(), revision.to_string());
    labels.insert(LABEL_POD_NAME.to_string(), name.clone());
    labels.insert(LABEL_POD_INDEX.to_string(), ordinal.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = petset.spec.service_name.clone().filter(|s| !s.is_empty());
    let claims = &petset.spec.volume_claim_templates;
    if !claims.is_empty() {
        let mut volumes: Vec<Volume> = spec.volumes.take().unwrap_or_default();
        for claim in claims {
            let Some(claim_tpl_name) = claim.metadata.name.as_deref() else {
                continue;
            };
            let volume = Volume {
                name: claim_tpl_name.to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(claim_tpl_name, &name),
                    read_only: None,
                }),
                ..Default::default()
            };
            match volumes.iter_mut().find(|v| v.name == claim_tpl_name) {
                Some(existing) => *existing = volume,
                None => volumes.push(volume),
            }
        }
        spec.volumes = Some(volumes);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: petset.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations.filter(|a| !a.is_empty()),
            finalizers: tmeta.finalizers.filter(|f| !f.is_empty()),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The claims pod `pod_name` of `petset` needs, from its volumeClaimTemplates: named
/// `<claim>-<pod>`, labelled with the claim template's labels plus the selector's
/// matchLabels. They have no owner: claims outlive their pods.
pub fn build_claims(
    petset: &PetSet,
    selector_labels: &BTreeMap<String, String>,
    pod_name: &str,
) -> Vec<PersistentVolumeClaim> {
    petset
        .spec
        .volume_claim_templates
        .iter()
        .filter_map(|tpl| {
            let tpl_name = tpl.metadata.name.as_deref()?;
            let mut labels = tpl.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            Some(PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(tpl_name, pod_name)),
                    namespace: petset.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: tpl.metadata.annotations.clone().filter(|a| !a.is_empty()),
                    ..Default::default()
                },
                spec: tpl.spec.clone(),
                status: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn ordinals() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web--1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webx-1"), None);
        assert_eq!(ordinal_of("web", "web-a-1"), None);
        assert_eq!(ordinal_of("web-a", "web-a-1"), Some(1));
    }

    fn pod_with(phase: &str, ready: Option<Timestamp>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.to_string()),
                conditions: ready.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".to_string(),
                        status: "True".to_string(),
                        last_transition_time: Some(Time(t)),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn readiness_and_availability() {
        let now = Timestamp::now();
        let pending = pod_with("Pending", None);
        assert!(!is_running_and_ready(&pending));
        assert_eq!(availability(&pending, 0, now), Availability::NotReady);
        let running_unready = pod_with("Running", None);
        assert!(!is_running_and_ready(&running_unready));
        let ready = pod_with("Running", Some(now - SignedDuration::from_secs(5)));
        assert!(is_running_and_ready(&ready));
        assert_eq!(availability(&ready, 0, now), Availability::Available);
        assert_eq!(availability(&ready, 5, now), Availability::Available);
        assert_eq!(
            availability(&ready, 8, now),
            Availability::ReadyFor(Duration::from_secs(3))
        );
        assert!(!is_healthy(&ready, 8, now));
        assert!(is_healthy(&ready, 5, now));
        let mut deleting = ready.clone();
        deleting.metadata.deletion_timestamp = Some(Time(now));
        assert!(is_terminating(&deleting));
        assert!(!is_healthy(&deleting, 0, now));
        assert!(is_terminal(&pod_with("Failed", None)));
        assert!(is_terminal(&pod_with("Succeeded", None)));
        assert!(!is_terminal(&ready));
    }

    fn petset() -> PetSet {
        let mut ps: PetSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps.k8s.appscode.com/v1",
            "kind": "PetSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "serviceName": "web-pods",
                "template": {
                    "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                    "spec": {
                        "containers": [{"name": "main", "image": "img:1"}],
                        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
                    }
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data", "labels": {"disk": "fast"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }]
            }
        }))
        .unwrap();
        ps.metadata.generation = Some(1);
        ps
    }

    #[test]
    fn pod_identity() {
        let ps = petset();
        let owner = owner_reference(&ps).unwrap();
        let pod = build_pod(&ps, &owner, &ps.spec.template, "web-abc", 2);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "web");
        assert_eq!(labels[LABEL_REVISION_HASH], "web-abc");
        assert_eq!(labels[LABEL_POD_NAME], "web-2");
        assert_eq!(labels[LABEL_POD_INDEX], "2");
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()["a"], "b");
        let refs = pod.metadata.owner_references.as_ref().unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].kind, "PetSet");
        assert_eq!(refs[0].api_version, "apps.k8s.appscode.com/v1");
        assert_eq!(refs[0].uid, "u-1");
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(refs[0].block_owner_deletion, Some(true));
        assert!(is_controlled_by(&pod.metadata, "u-1"));
        assert!(!is_controlled_by(&pod.metadata, "u-2"));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("web-pods"));
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(
            volumes.len(),
            2,
            "the claim replaces the template volume of the same name"
        );
        let data = volumes.iter().find(|v| v.name == "data").unwrap();
        assert_eq!(data.empty_dir, None);
        assert_eq!(
            data.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-2"
        );
        assert!(
            volumes
                .iter()
                .any(|v| v.name == "tmp" && v.empty_dir.is_some())
        );
        assert_eq!(revision_of(&pod), Some("web-abc"));
    }

    #[test]
    fn claims() {
        let ps = petset();
        let sel = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let claims = build_claims(&ps, &sel, "web-0");
        assert_eq!(claims.len(), 1);
        let c = &claims[0];
        assert_eq!(c.metadata.name.as_deref(), Some("data-web-0"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("ns"));
        let labels = c.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["disk"], "fast");
        assert_eq!(labels["app"], "web");
        assert_eq!(c.metadata.owner_references, None);
        let spec: &PersistentVolumeClaimSpec = c.spec.as_ref().unwrap();
        assert_eq!(
            spec.access_modes.as_deref(),
            Some(&["ReadWriteOnce".to_string()][..])
        );
    }
}
