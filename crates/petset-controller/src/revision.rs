//! Revisions of a PetSet's pod template, stored as `apps/v1` ControllerRevisions.
//!
//! A revision is named `<petset>-<hash>`, where the hash covers the template (and the
//! collision counter when it is not zero), so the same template always gives the same
//! name. Its `data` is `{"spec":{"template":{...,"$patch":"replace"}}}`, the shape the
//! StatefulSet controller stores, so the template of an older revision can be rebuilt.
//! Everything here is pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use pgpool_api::names::LABEL_REVISION_HASH;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Label on a revision carrying the bare template hash (what the StatefulSet controller sets).
pub const LABEL_HASH: &str = "controller.kubernetes.io/hash";

/// Characters of a hash: no vowels (no accidental words), no look-alikes.
const HASH_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of the hash part of a revision name.
const HASH_LEN: usize = 10;
/// How many collision-counter values are tried before giving up.
const MAX_COLLISIONS: i32 = 64;

/// Serialises `value` with object keys in sorted order and nulls dropped, so two equal
/// templates give the same text whatever the map implementation's order.
pub fn canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> =
                map.iter().filter(|(_, v)| !v.is_null()).collect();
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The canonical text of a pod template.
pub fn template_canonical(template: &PodTemplateSpec) -> Result<String, serde_json::Error> {
    Ok(canonical_string(&serde_json::to_value(template)?))
}

/// Annotation that marks a *compact* template: one kept in a watch cache without its pod spec,
/// carrying the digest of the full template instead. It never reaches the API server: a
/// compact template cannot be turned into pods or revisions ([`is_compact`]).
const ANNOTATION_COMPACT_DIGEST: &str = "petset-controller.internal/template-digest";

/// Annotation of a compact template: whether the full template's labels match the selector.
const ANNOTATION_COMPACT_LABELS_MATCH: &str = "petset-controller.internal/labels-match";

/// The digest of a canonical text (hex, 128 bits of SHA-256), compared to tell templates
/// apart.
pub fn digest_canonical(canonical: &str) -> String {
    hex::encode(&Sha256::digest(canonical.as_bytes())[..16])
}

/// A compact template: the digest of the full template and whether its labels match the
/// PetSet's selector (`None`: not known; then `labels` are checked).
pub fn compact_template(
    labels: Option<BTreeMap<String, String>>,
    digest: String,
    labels_match: Option<bool>,
) -> PodTemplateSpec {
    let mut annotations = BTreeMap::from([(ANNOTATION_COMPACT_DIGEST.to_string(), digest)]);
    if let Some(ok) = labels_match {
        annotations.insert(ANNOTATION_COMPACT_LABELS_MATCH.to_string(), ok.to_string());
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels,
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: None,
    }
}

/// For a compact template that says so, whether the full template's labels match the
/// selector.
pub fn compact_labels_match(template: &PodTemplateSpec) -> Option<bool> {
    compact_digest(template)?;
    template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(ANNOTATION_COMPACT_LABELS_MATCH)
        .map(|v| v == "true")
}

/// The digest a compact template carries; `None` for a full template.
fn compact_digest(template: &PodTemplateSpec) -> Option<&str> {
    if template.spec.is_some() {
        return None;
    }
    template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(ANNOTATION_COMPACT_DIGEST)
        .map(String::as_str)
}

/// Whether `template` is a compact one (see [`compact_template`]).
pub fn is_compact(template: &PodTemplateSpec) -> bool {
    compact_digest(template).is_some()
}

/// The digest of a template, full or compact.
pub fn template_digest(template: &PodTemplateSpec) -> Result<String, serde_json::Error> {
    match compact_digest(template) {
        Some(d) => Ok(d.to_string()),
        None => Ok(digest_canonical(&template_canonical(template)?)),
    }
}

/// The hash of a template's canonical text and the collision counter: `HASH_LEN`
/// characters of a vowel-free alphabet, valid in names and label values.
pub fn hash_canonical(canonical: &str, collision_count: i32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(canonical.as_bytes());
    if collision_count > 0 {
        hasher.update(collision_count.to_le_bytes());
    }
    let digest = hasher.finalize();
    digest
        .iter()
        .take(HASH_LEN)
        .map(|b| HASH_ALPHABET[usize::from(*b) % HASH_ALPHABET.len()] as char)
        .collect()
}

/// The hash of `template` (see [`hash_canonical`]).
pub fn template_hash(
    template: &PodTemplateSpec,
    collision_count: i32,
) -> Result<String, serde_json::Error> {
    Ok(hash_canonical(
        &template_canonical(template)?,
        collision_count,
    ))
}

/// Name of the revision of PetSet `petset` with hash `hash`.
pub fn revision_name(petset: &str, hash: &str) -> String {
    format!("{petset}-{hash}")
}

/// The `data` of a revision holding `template`.
pub fn revision_data(template: &PodTemplateSpec) -> Result<Value, serde_json::Error> {
    let mut tpl = serde_json::to_value(template)?;
    if let Value::Object(map) = &mut tpl {
        map.insert("$patch".to_string(), Value::String("replace".to_string()));
    }
    Ok(serde_json::json!({ "spec": { "template": tpl } }))
}

/// The template in a revision's `data`, as JSON without the `$patch` marker.
fn data_template_value(data: &Value) -> Option<Value> {
    let mut tpl = data.get("spec")?.get("template")?.clone();
    if let Value::Object(map) = &mut tpl {
        map.remove("$patch");
    }
    Some(tpl)
}

/// The digest of the template in a revision's `data` (see [`digest_canonical`]).
pub fn data_digest(data: &Value) -> Option<String> {
    data_template_value(data).map(|v| digest_canonical(&canonical_string(&v)))
}

/// A compact revision (kept in a watch cache): `data` is only the digest of its template.
pub fn compact_revision(mut rev: ControllerRevision, digest: String) -> ControllerRevision {
    rev.data = Some(RawExtension(Value::String(digest)));
    rev
}

/// The digest a compact revision carries; `None` for a full one.
fn compact_revision_digest(rev: &ControllerRevision) -> Option<&str> {
    rev.data.as_ref()?.0.as_str()
}

/// The template stored in a revision, if its data has the expected shape. For a compact
/// revision, a compact template (which cannot be turned into pods).
pub fn stored_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    if let Some(digest) = compact_revision_digest(rev) {
        return Some(compact_template(None, digest.to_string(), None));
    }
    serde_json::from_value(data_template_value(&rev.data.as_ref()?.0)?).ok()
}

/// The canonical text of the template stored in a (full) revision.
pub fn stored_canonical(rev: &ControllerRevision) -> Option<String> {
    data_template_value(&rev.data.as_ref()?.0).map(|v| canonical_string(&v))
}

/// The digest of the template stored in a revision, full or compact.
pub fn stored_digest(rev: &ControllerRevision) -> Option<String> {
    match compact_revision_digest(rev) {
        Some(d) => Some(d.to_string()),
        None => data_digest(&rev.data.as_ref()?.0),
    }
}

/// A new revision object (without owner reference; the caller adds it).
pub fn build_revision(
    namespace: &str,
    name: &str,
    hash: &str,
    selector_labels: &BTreeMap<String, String>,
    template: &PodTemplateSpec,
    number: i64,
) -> Result<ControllerRevision, serde_json::Error> {
    let mut labels = selector_labels.clone();
    labels.insert(LABEL_REVISION_HASH.to_string(), name.to_string());
    labels.insert(LABEL_HASH.to_string(), hash.to_string());
    Ok(ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(template)?)),
        revision: number,
    })
}

/// Why the revisions could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    /// The template could not be serialised.
    #[error("cannot serialise the pod template: {0}")]
    Serialize(#[from] serde_json::Error),
    /// Every tried name was taken by a revision with another template.
    #[error("revision names collide for {MAX_COLLISIONS} collision counts in a row")]
    TooManyCollisions,
    /// A revision must be created but the template is a compact one: plan again with the
    /// full PetSet.
    #[error("the full pod template is needed")]
    Compact,
}

/// What the revisions of a PetSet are and what must be written to get there.
#[derive(Debug, Clone, PartialEq)]
pub struct Revisions {
    /// Name of the revision of the template now in the spec.
    pub update_name: String,
    /// Name of the revision counted as current (`status.currentRevision`).
    pub current_name: String,
    /// Template of the current revision (the spec's when it is the update revision).
    pub current_template: PodTemplateSpec,
    /// A revision to create (the update revision, when no equal one exists).
    pub create: Option<ControllerRevision>,
    /// An existing revision equal to the spec's template but not the newest: give it this
    /// revision number (a roll-back becomes the newest revision).
    pub renumber: Option<(String, i64)>,
    /// The collision counter in use.
    pub collision_count: i32,
}

/// `rev` as a new object with revision number `number`: same name, labels, owner references
/// and data, without the server-set metadata (uid, resourceVersion, timestamps).
pub fn renumbered(rev: &ControllerRevision, number: i64) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            name: rev.metadata.name.clone(),
            namespace: rev.metadata.namespace.clone(),
            labels: rev.metadata.labels.clone(),
            annotations: rev.metadata.annotations.clone(),
            owner_references: rev.metadata.owner_references.clone(),
            ..Default::default()
        },
        data: rev.data.clone(),
        revision: number,
    }
}

fn sorted_revisions(owned: &[ControllerRevision]) -> Vec<&ControllerRevision> {
    let mut sorted: Vec<&ControllerRevision> = owned.iter().collect();
    sorted.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    sorted
}

/// Works out the update and current revisions of a PetSet from its template, the
/// revisions it owns, the current revision named in its status and its collision counter.
pub fn resolve(
    petset_name: &str,
    namespace: &str,
    selector_labels: &BTreeMap<String, String>,
    template: &PodTemplateSpec,
    owned: &[ControllerRevision],
    status_current: Option<&str>,
    collision_count: i32,
) -> Result<Revisions, RevisionError> {
    let sorted = sorted_revisions(owned);
    let digest = template_digest(template)?;
    let next_number = sorted.last().map_or(1, |r| r.revision + 1);
    let equal = sorted
        .iter()
        .rev()
        .find(|r| stored_digest(r).as_deref() == Some(digest.as_str()));

    let mut create = None;
    let mut renumber = None;
    let mut collisions = collision_count.max(0);
    let update_name = match equal {
        Some(rev) => {
            let name = rev.metadata.name.clone().unwrap_or_default();
            let newest = sorted.last().and_then(|r| r.metadata.name.as_deref());
            if newest != Some(name.as_str()) {
                renumber = Some((name.clone(), next_number));
            }
            name
        }
        None if is_compact(template) => return Err(RevisionError::Compact),
        None => {
            let canonical = template_canonical(template)?;
            loop {
                let hash = hash_canonical(&canonical, collisions);
                let name = revision_name(petset_name, &hash);
                if sorted
                    .iter()
                    .any(|r| r.metadata.name.as_deref() == Some(name.as_str()))
                {
                    collisions += 1;
                    if collisions - collision_count.max(0) >= MAX_COLLISIONS {
                        return Err(RevisionError::TooManyCollisions);
                    }
                    continue;
                }
                create = Some(build_revision(
                    namespace,
                    &name,
                    &hash,
                    selector_labels,
                    template,
                    next_number,
                )?);
                break name;
            }
        }
    };

    let current = status_current.and_then(|cur| {
        if cur == update_name {
            return None;
        }
        let rev = sorted
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(cur))?;
        Some((cur.to_string(), stored_template(rev)?))
    });
    let (current_name, current_template) =
        current.unwrap_or_else(|| (update_name.clone(), template.clone()));

    Ok(Revisions {
        update_name,
        current_name,
        current_template,
        create,
        renumber,
        collision_count: collisions,
    })
}

/// Names of the revisions to delete so that at most `limit` revisions that are not live
/// remain; the oldest go first. `live` holds the current and update revisions and every
/// revision a pod still runs.
pub fn history_to_delete(
    owned: &[ControllerRevision],
    live: &BTreeSet<String>,
    limit: i32,
) -> Vec<String> {
    let history: Vec<String> = sorted_revisions(owned)
        .into_iter()
        .filter_map(|r| r.metadata.name.clone())
        .filter(|n| !live.contains(n))
        .collect();
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    let excess = history.len().saturating_sub(limit);
    history.into_iter().take(excess).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([
                    ("app".to_string(), "web".to_string()),
                    ("tier".to_string(), "front".to_string()),
                ])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".to_string(),
                    image: Some(image.to_string()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn selector() -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_string(), "web".to_string())])
    }

    fn rev(name: &str, image: &str, number: i64) -> ControllerRevision {
        build_revision("ns", name, "h", &selector(), &template(image), number).unwrap()
    }

    #[test]
    fn hash_is_stable_and_depends_on_the_template() {
        let a = template_hash(&template("img:1"), 0).unwrap();
        assert_eq!(a, template_hash(&template("img:1"), 0).unwrap());
        assert_eq!(a.len(), HASH_LEN);
        assert!(a.bytes().all(|b| HASH_ALPHABET.contains(&b)));
        assert_ne!(a, template_hash(&template("img:2"), 0).unwrap());
        assert_ne!(a, template_hash(&template("img:1"), 1).unwrap());
    }

    #[test]
    fn canonical_text_ignores_key_order_and_nulls() {
        let a = serde_json::json!({"b": 1, "a": {"y": [1, {"d": null, "c": 2}], "x": null}});
        let b = serde_json::json!({"a": {"y": [1, {"c": 2}]}, "b": 1});
        assert_eq!(canonical_string(&a), canonical_string(&b));
        assert_eq!(canonical_string(&a), r#"{"a":{"y":[1,{"c":2}]},"b":1}"#);
    }

    #[test]
    fn revision_data_round_trips_the_template() {
        let r = rev("web-x", "img:1", 1);
        let data = &r.data.as_ref().unwrap().0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(stored_template(&r), Some(template("img:1")));
        assert_eq!(
            stored_canonical(&r).unwrap(),
            template_canonical(&template("img:1")).unwrap()
        );
        let labels = r.metadata.labels.unwrap();
        assert_eq!(labels["app"], "web");
        assert_eq!(labels[LABEL_REVISION_HASH], "web-x");
    }

    #[test]
    fn first_revision_is_created_and_current() {
        let tpl = template("img:1");
        let r = resolve("web", "ns", &selector(), &tpl, &[], None, 0).unwrap();
        let hash = template_hash(&tpl, 0).unwrap();
        assert_eq!(r.update_name, format!("web-{hash}"));
        assert_eq!(r.current_name, r.update_name);
        assert_eq!(r.current_template, tpl);
        let created = r.create.unwrap();
        assert_eq!(
            created.metadata.name.as_deref(),
            Some(r.update_name.as_str())
        );
        assert_eq!(created.revision, 1);
        assert_eq!(r.renumber, None);
    }

    #[test]
    fn existing_equal_revision_is_reused_without_writes() {
        let tpl = template("img:1");
        let name = revision_name("web", &template_hash(&tpl, 0).unwrap());
        let owned = vec![rev(&name, "img:1", 3)];
        let r = resolve("web", "ns", &selector(), &tpl, &owned, Some(&name), 0).unwrap();
        assert_eq!(r.update_name, name);
        assert_eq!(r.create, None);
        assert_eq!(r.renumber, None);
    }

    #[test]
    fn template_change_creates_next_revision_and_keeps_current() {
        let old = revision_name("web", &template_hash(&template("img:1"), 0).unwrap());
        let owned = vec![rev(&old, "img:1", 4)];
        let tpl = template("img:2");
        let r = resolve("web", "ns", &selector(), &tpl, &owned, Some(&old), 0).unwrap();
        assert_ne!(r.update_name, old);
        assert_eq!(r.current_name, old);
        assert_eq!(r.current_template, template("img:1"));
        assert_eq!(r.create.unwrap().revision, 5);
    }

    #[test]
    fn roll_back_renumbers_the_older_equal_revision() {
        let a = revision_name("web", &template_hash(&template("img:1"), 0).unwrap());
        let b = revision_name("web", &template_hash(&template("img:2"), 0).unwrap());
        let owned = vec![rev(&a, "img:1", 1), rev(&b, "img:2", 2)];
        let r = resolve(
            "web",
            "ns",
            &selector(),
            &template("img:1"),
            &owned,
            Some(&b),
            0,
        )
        .unwrap();
        assert_eq!(r.update_name, a);
        assert_eq!(r.create, None);
        assert_eq!(r.renumber, Some((a, 3)));
        assert_eq!(r.current_name, b);
    }

    #[test]
    fn renumbered_keeps_name_labels_owner_and_data_and_drops_server_fields() {
        let mut old = rev("web-a", "img:1", 1);
        old.metadata.uid = Some("u-1".into());
        old.metadata.resource_version = Some("42".into());
        let new = renumbered(&old, 3);
        assert_eq!(new.revision, 3);
        assert_eq!(new.metadata.name, old.metadata.name);
        assert_eq!(new.metadata.labels, old.metadata.labels);
        assert_eq!(new.metadata.owner_references, old.metadata.owner_references);
        assert_eq!(new.data, old.data);
        assert_eq!(new.metadata.uid, None);
        assert_eq!(new.metadata.resource_version, None);
    }

    #[test]
    fn name_collision_bumps_the_counter() {
        let tpl = template("img:2");
        let taken = revision_name("web", &template_hash(&tpl, 0).unwrap());
        // A revision with the name of the new template but another template inside.
        let owned = vec![rev(&taken, "img:1", 1)];
        let r = resolve("web", "ns", &selector(), &tpl, &owned, Some(&taken), 0).unwrap();
        assert_eq!(r.collision_count, 1);
        assert_eq!(
            r.update_name,
            revision_name("web", &template_hash(&tpl, 1).unwrap())
        );
        assert!(r.create.is_some());
    }

    #[test]
    fn missing_current_revision_falls_back_to_update() {
        let tpl = template("img:1");
        let r = resolve("web", "ns", &selector(), &tpl, &[], Some("web-gone"), 0).unwrap();
        assert_eq!(r.current_name, r.update_name);
    }

    #[test]
    fn history_keeps_live_revisions_and_the_newest_others() {
        let owned: Vec<_> = (1..=6)
            .map(|i| rev(&format!("web-{i}"), &format!("img:{i}"), i))
            .collect();
        let live = BTreeSet::from(["web-1".to_string(), "web-6".to_string()]);
        // Non-live: 2,3,4,5; limit 2 -> delete 2 and 3.
        assert_eq!(history_to_delete(&owned, &live, 2), vec!["web-2", "web-3"]);
        assert_eq!(
            history_to_delete(&owned, &live, 0),
            vec!["web-2", "web-3", "web-4", "web-5"]
        );
        assert!(history_to_delete(&owned, &live, 10).is_empty());
    }
}
