//! Deciding whether a child needs a write: desired vs observed.
//!
//! Every desired child carries [`ANNOTATION_DESIRED_HASH`], a hash of the desired object
//! without that annotation. A child needs no write when everything the desired object says
//! is present with the same value in the observed object ([`is_subset`]): fields the API
//! server or others added are ignored, a user edit to a field we set is drift, and a change
//! of what we want changes the hash annotation (so fields we stopped setting are removed by
//! the next server-side apply).

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Annotation with the hash of the desired object, on every child the provisioner applies.
pub const ANNOTATION_DESIRED_HASH: &str = "pgpool.kubedb.com/desired-hash";

/// Lists whose order does not matter and that others may extend (each desired element must
/// be found in the observed list).
const SET_LISTS: &[&str] = &["ownerReferences", "finalizers"];

/// Adds [`ANNOTATION_DESIRED_HASH`] to a desired object (as JSON) and returns the hash.
pub fn stamp_hash(desired: &mut Value) -> String {
    if let Some(annotations) = desired
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(ANNOTATION_DESIRED_HASH);
    }
    let hash = hash_value(desired);
    if let Some(metadata) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(map) = annotations.as_object_mut() {
            map.insert(
                ANNOTATION_DESIRED_HASH.to_string(),
                Value::String(hash.clone()),
            );
        }
    }
    hash
}

/// SHA-256 (hex, first 32 characters) of a JSON value with object keys sorted.
pub fn hash_value(value: &Value) -> String {
    let mut hasher = Sha256::new();
    feed(&mut hasher, value);
    let mut hex = hex::encode(hasher.finalize());
    hex.truncate(32);
    hex
}

fn feed(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Null => hasher.update(b"n"),
        Value::Bool(b) => hasher.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            let text = n.to_string();
            hasher.update(b"#");
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
        Value::String(s) => {
            hasher.update(b"s");
            hasher.update((s.len() as u64).to_be_bytes());
            hasher.update(s.as_bytes());
        }
        Value::Array(items) => {
            hasher.update(b"[");
            hasher.update((items.len() as u64).to_be_bytes());
            for item in items {
                feed(hasher, item);
            }
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            hasher.update((keys.len() as u64).to_be_bytes());
            for key in keys {
                hasher.update((key.len() as u64).to_be_bytes());
                hasher.update(key.as_bytes());
                feed(hasher, &map[key]);
            }
        }
    }
}

/// True when every field of `desired` is in `observed` with the same value. Empty objects,
/// empty lists and nulls in `desired` match an absent field. Lists must have the same length
/// and match element by element, except `ownerReferences` and `finalizers`, where each
/// desired element must match some observed element.
pub fn is_subset(desired: &Value, observed: &Value) -> bool {
    subset(None, desired, observed)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn subset(key: Option<&str>, desired: &Value, observed: &Value) -> bool {
    match (desired, observed) {
        (d, o) if is_empty(d) => is_empty(o),
        (Value::Object(d), Value::Object(o)) => d.iter().all(|(k, dv)| match o.get(k) {
            Some(ov) => subset(Some(k), dv, ov),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(o)) => {
            if key.is_some_and(|k| SET_LISTS.contains(&k)) {
                d.iter().all(|dv| o.iter().any(|ov| subset(None, dv, ov)))
            } else {
                d.len() == o.len() && d.iter().zip(o).all(|(dv, ov)| subset(None, dv, ov))
            }
        }
        (Value::Number(d), Value::Number(o)) => match (d.as_f64(), o.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => d == o,
        },
        (d, o) => d == o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_ignores_added_fields_and_sees_edits() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"ports": [{"name": "p", "port": 1}], "empty": [], "none": null}});
        let observed = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}},
            "spec": {"ports": [{"name": "p", "port": 1, "protocol": "TCP"}], "clusterIP": "10.0.0.1"}});
        assert!(is_subset(&desired, &observed));

        let edited = json!({"metadata": {"name": "a", "labels": {"x": "2"}},
            "spec": {"ports": [{"name": "p", "port": 1}]}});
        assert!(!is_subset(&desired, &edited));

        let extra_port = json!({"metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"ports": [{"name": "p", "port": 1}, {"name": "q", "port": 2}]}});
        assert!(!is_subset(&desired, &extra_port), "lists are atomic");

        let missing_label =
            json!({"metadata": {"name": "a"}, "spec": {"ports": [{"name": "p", "port": 1}]}});
        assert!(!is_subset(&desired, &missing_label));
    }

    #[test]
    fn owner_references_are_a_set() {
        let desired = json!({"metadata": {"ownerReferences": [{"uid": "1"}]}});
        let observed =
            json!({"metadata": {"ownerReferences": [{"uid": "0"}, {"uid": "1", "x": true}]}});
        assert!(is_subset(&desired, &observed));
        let other = json!({"metadata": {"ownerReferences": [{"uid": "0"}]}});
        assert!(!is_subset(&desired, &other));
    }

    #[test]
    fn hash_is_stable_and_stamped() {
        let mut a = json!({"metadata": {"name": "a", "annotations": {"k": "v"}}, "b": [1, 2]});
        let mut b = json!({"b": [1, 2], "metadata": {"annotations": {"k": "v"}, "name": "a"}});
        let ha = stamp_hash(&mut a);
        assert_eq!(ha, stamp_hash(&mut b));
        assert_eq!(a["metadata"]["annotations"][ANNOTATION_DESIRED_HASH], ha);
        // stamping again (annotation already present) gives the same hash
        assert_eq!(stamp_hash(&mut a), ha);
        let mut c = json!({"metadata": {"name": "a"}, "b": [2, 1]});
        assert_ne!(stamp_hash(&mut c), ha);
        assert_eq!(
            c["metadata"]["annotations"].as_object().map(|m| m.len()),
            Some(1)
        );
    }
}
