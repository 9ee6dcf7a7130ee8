//! Compact forms of PetSets and ControllerRevisions for the PetSet controller's caches.
//!
//! A full PetSet or revision holds a pod template, which takes tens of kilobytes in memory;
//! the compact forms hold its digest instead ([`revision::compact_template`],
//! [`revision::compact_revision`]). That is enough to plan every step that creates nothing;
//! a step that creates a pod or a revision is planned again from the API server's copy.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use pgpool_api::PetSet;
use pgpool_api::petset::{PetSetSpec, PetSetStatus, PetSetUpdateStrategy, PodManagementPolicy};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::{revision, selector};
use operator_kit::cache::{keep_identity, resource_as};

/// A PetSet without its pod template (see the module documentation).
#[derive(Clone, Debug, Deserialize)]
pub struct PetSetLite {
    /// Identity, generation and deletion.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec, with the template reduced to labels and digest.
    pub spec: PetSetSpecLite,
    /// The status.
    #[serde(default)]
    pub status: Option<PetSetStatus>,
}

/// [`PetSetSpec`] without the template's body and the claim templates.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PetSetSpecLite {
    /// `spec.replicas`.
    #[serde(default)]
    pub replicas: Option<i32>,
    /// `spec.selector`.
    pub selector: LabelSelector,
    /// Labels and digest of `spec.template`.
    pub template: TemplateLite,
    /// `spec.podManagementPolicy`.
    #[serde(default)]
    pub pod_management_policy: Option<PodManagementPolicy>,
    /// `spec.updateStrategy`.
    #[serde(default)]
    pub update_strategy: Option<PetSetUpdateStrategy>,
    /// `spec.minReadySeconds`.
    #[serde(default)]
    pub min_ready_seconds: Option<i32>,
    /// `spec.revisionHistoryLimit`.
    #[serde(default)]
    pub revision_history_limit: Option<i32>,
}

/// What is kept of a pod template: its digest, and whether its labels match the selector
/// (the labels themselves only until [`PetSetLite::trim`] has worked that out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateLite {
    /// `metadata.labels`, until trimmed.
    pub labels: Option<BTreeMap<String, String>>,
    /// Whether the labels match `spec.selector` (set by [`PetSetLite::trim`]).
    pub labels_match: Option<bool>,
    /// [`revision::template_digest`] of the full template.
    pub digest: String,
}

impl<'de> Deserialize<'de> for TemplateLite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let template = PodTemplateSpec::deserialize(d)?;
        let digest = revision::template_digest(&template).map_err(D::Error::custom)?;
        Ok(Self {
            labels: template.metadata.and_then(|m| m.labels),
            labels_match: None,
            digest,
        })
    }
}

resource_as!(PetSetLite, PetSet);

impl PetSetLite {
    /// Drops the metadata the controller does not read, and the template's labels once it is
    /// known whether they match the selector.
    pub fn trim(&mut self) {
        keep_identity(&mut self.metadata, false);
        let template = &mut self.spec.template;
        if let Some(labels) = template.labels.take() {
            template.labels_match = Some(selector::matches(&self.spec.selector, &labels));
        }
    }

    /// The PetSet with a compact template (and no claim templates).
    pub fn to_petset(&self) -> PetSet {
        let spec = &self.spec;
        PetSet {
            metadata: self.metadata.clone(),
            spec: PetSetSpec {
                replicas: spec.replicas,
                selector: spec.selector.clone(),
                template: revision::compact_template(
                    spec.template.labels.clone(),
                    spec.template.digest.clone(),
                    spec.template.labels_match,
                ),
                service_name: None,
                volume_claim_templates: Vec::new(),
                pod_management_policy: spec.pod_management_policy,
                update_strategy: spec.update_strategy.clone(),
                min_ready_seconds: spec.min_ready_seconds,
                revision_history_limit: spec.revision_history_limit,
            },
            status: self.status.clone(),
        }
    }
}

/// A ControllerRevision whose data is reduced to the digest of the template it holds.
#[derive(Clone, Debug, Deserialize)]
pub struct RevisionLite {
    /// Identity and owners.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The revision number.
    #[serde(default)]
    pub revision: i64,
    /// Digest of the stored template (`None` when the data has another shape).
    #[serde(default, rename = "data", deserialize_with = "data_digest")]
    pub digest: Option<String>,
}

fn data_digest<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let data: Option<Value> = Option::deserialize(d)?;
    Ok(data.as_ref().and_then(revision::data_digest))
}

resource_as!(RevisionLite, ControllerRevision);

impl RevisionLite {
    /// Drops the metadata the controller does not read.
    pub fn trim(&mut self) {
        keep_identity(&mut self.metadata, false);
    }

    /// The revision in compact form (see [`revision::compact_revision`]).
    pub fn to_revision(&self) -> ControllerRevision {
        let rev = ControllerRevision {
            metadata: self.metadata.clone(),
            revision: self.revision,
            data: None,
        };
        match &self.digest {
            Some(d) => revision::compact_revision(rev, d.clone()),
            None => rev,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn petset_json(image: &str) -> Value {
        json!({
            "apiVersion": "apps.k8s.appscode.com/v1",
            "kind": "PetSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u", "generation": 3,
                "labels": {"a": "b"}, "managedFields": [{"manager": "m"}]},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "serviceName": "web",
                "podManagementPolicy": "Parallel",
                "updateStrategy": {"type": "OnDelete"},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}
                }
            },
            "status": {"replicas": 2, "observedGeneration": 3}
        })
    }

    #[test]
    fn petset_lite_carries_the_template_digest() {
        let full: PetSet = serde_json::from_value(petset_json("img:1")).unwrap();
        let mut lite: PetSetLite = serde_json::from_value(petset_json("img:1")).unwrap();
        lite.trim();
        assert!(lite.metadata.labels.is_none());
        assert!(lite.metadata.managed_fields.is_none());
        let compact = lite.to_petset();
        assert!(revision::is_compact(&compact.spec.template));
        assert_eq!(
            revision::template_digest(&compact.spec.template).unwrap(),
            revision::template_digest(&full.spec.template).unwrap()
        );
        assert_eq!(lite.spec.template.labels, None);
        assert_eq!(
            revision::compact_labels_match(&compact.spec.template),
            Some(true)
        );
        assert_eq!(compact.spec.replicas, Some(2));
        assert_eq!(
            compact.spec.pod_management_policy,
            Some(PodManagementPolicy::Parallel)
        );
        assert_eq!(compact.status, full.status);
        assert_eq!(compact.metadata.generation, Some(3));

        let other: PetSetLite = serde_json::from_value(petset_json("img:2")).unwrap();
        assert_ne!(other.spec.template.digest, lite.spec.template.digest);
    }

    #[test]
    fn revision_lite_matches_the_full_revision() {
        let full: PetSet = serde_json::from_value(petset_json("img:1")).unwrap();
        let rev = revision::build_revision(
            "ns",
            "web-abc",
            "abc",
            &BTreeMap::new(),
            &full.spec.template,
            4,
        )
        .unwrap();
        let lite: RevisionLite =
            serde_json::from_value(serde_json::to_value(&rev).unwrap()).unwrap();
        let compact = lite.to_revision();
        assert_eq!(compact.revision, 4);
        assert_eq!(
            revision::stored_digest(&compact),
            revision::stored_digest(&rev)
        );
        assert_eq!(
            revision::stored_digest(&rev),
            Some(revision::template_digest(&full.spec.template).unwrap())
        );
        let template = revision::stored_template(&compact).unwrap();
        assert!(revision::is_compact(&template));
    }
}
