//! The validations of the real API server that operators most often trip over: object names
//! and label keys/values.

use serde_json::Value;

use crate::error::ApiError;
use crate::registry::ResourceInfo;

fn is_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: at most 63 lowercase alphanumerics or '-', starting and ending alphanumeric.
pub(crate) fn dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_alnum(c) || c == '-')
        && s.starts_with(is_alnum)
        && s.ends_with(is_alnum)
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns1123_label)
}

/// RFC 1035 label (Service names): an RFC 1123 label starting with a letter.
pub(crate) fn dns1035_label(s: &str) -> bool {
    dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn label_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => dns1123_subdomain(prefix) && qualified_name_part(name),
        None => qualified_name_part(k),
    }
}

fn label_value(v: &str) -> bool {
    v.is_empty() || qualified_name_part(v)
}

/// What the API server does to an object before storing it, beyond defaults: a Secret's
/// `stringData` is merged into `data` (base64) and dropped, as the real API server does.
pub(crate) fn normalize(info: &ResourceInfo, obj: &mut Value) {
    if info.group.is_empty() && info.plural == "secrets" {
        use base64::Engine as _;
        let Some(m) = obj.as_object_mut() else { return };
        let Some(Value::Object(string_data)) = m.remove("stringData") else {
            return;
        };
        let data = m
            .entry("data")
            .or_insert_with(|| Value::Object(Default::default()));
        if !data.is_object() {
            *data = Value::Object(Default::default());
        }
        if let Value::Object(data) = data {
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or_default();
                data.insert(
                    k,
                    Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
}

/// Validate an object about to be stored.
pub(crate) fn validate(info: &ResourceInfo, name: &str, obj: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let core = info.group.is_empty();
    let name_ok = if core && (info.plural == "services" || info.plural == "namespaces") {
        if info.plural == "services" {
            dns1035_label(name)
        } else {
            dns1123_label(name)
        }
    } else {
        dns1123_subdomain(name)
    };
    if !name_ok {
        let rule = if core && info.plural == "services" {
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, end with an alphanumeric character, and be at most 63 characters"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        };
        causes.push((
            "metadata.name".to_string(),
            format!("Invalid value: {name:?}: {rule}"),
        ));
    }
    if let Some(labels) = obj.pointer("/metadata/labels") {
        match labels.as_object() {
            Some(m) => {
                for (k, v) in m {
                    if !label_key(k) {
                        causes.push((
                            "metadata.labels".to_string(),
                            format!("Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and be at most 63 characters"),
                        ));
                    }
                    match v.as_str() {
                        Some(s) if label_value(s) => {}
                        _ => causes.push((
                            "metadata.labels".to_string(),
                            format!("Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and be at most 63 characters"),
                        )),
                    }
                }
            }
            None => causes.push((
                "metadata.labels".to_string(),
                "must be a map of strings".to_string(),
            )),
        }
    }
    if let Some(ann) = obj.pointer("/metadata/annotations")
        && !ann
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
    {
        causes.push((
            "metadata.annotations".to_string(),
            "must be a map of strings".to_string(),
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(info, name, causes))
    }
}

/// Pod spec fields an update may change (besides binding an unbound pod to a node).
fn mutable_pod_spec(spec: &Value) -> Value {
    let mut s = spec.clone();
    if let Value::Object(m) = &mut s {
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(list) {
                for c in cs {
                    if let Value::Object(c) = c {
                        c.remove("image");
                    }
                }
            }
        }
        m.remove("activeDeadlineSeconds");
        m.remove("tolerations");
        if m.get("nodeName").is_some() {
            m.remove("nodeName");
        }
    }
    s
}

/// Checks and fix-ups of an update that depend on the previous object.
pub(crate) fn validate_update(
    info: &ResourceInfo,
    name: &str,
    old: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    if crate::revision::is_revisions(info) {
        if old.get("data") != new.get("data") {
            let data = new.get("data").map(Value::to_string).unwrap_or_default();
            return Err(crate::revision::immutable(info, name, &data));
        }
        return Ok(());
    }
    if !info.group.is_empty() {
        return Ok(());
    }
    match info.plural.as_str() {
        "pods" => {
            let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
            let new_spec = new.get("spec").cloned().unwrap_or(Value::Null);
            let old_node = old_spec
                .get("nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            let new_node = new_spec
                .get("nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            let node_ok = old_node == new_node || old_node.is_empty();
            if !node_ok || mutable_pod_spec(&old_spec) != mutable_pod_spec(&new_spec) {
                return Err(ApiError::invalid(
                    info,
                    name,
                    vec![(
                        "spec".to_string(),
                        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations)".to_string(),
                    )],
                ));
            }
        }
        "services" => {
            // Like the API server, keep allocated values an update leaves out.
            for f in ["clusterIP", "clusterIPs"] {
                if new.pointer(&format!("/spec/{f}")).is_none()
                    && let Some(v) = old.pointer(&format!("/spec/{f}")).cloned()
                    && let Some(Value::Object(spec)) = new.get_mut("spec")
                {
                    spec.insert(f.to_string(), v);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_label("pg-0"));
        assert!(!dns1123_label("Pg"));
        assert!(!dns1123_label("-a"));
        assert!(!dns1123_label(&"a".repeat(64)));
        assert!(dns1123_subdomain("a.b-c"));
        assert!(!dns1035_label("0abc"));
        assert!(label_key("app.kubernetes.io/name"));
        assert!(!label_key("bad key"));
        assert!(label_value(""));
        assert!(!label_value(&"x".repeat(64)));
    }
}
