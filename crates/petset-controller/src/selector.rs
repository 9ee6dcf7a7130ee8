//! Label selectors: rendering a `LabelSelector` as the string the API server and the
//! scale subresource understand, and matching it against a label map.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Why a selector cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector selects nothing in particular (it would match every pod).
    #[error("the selector is empty; it must name at least one label")]
    Empty,
    /// A match expression has an operator Kubernetes does not know.
    #[error("unknown selector operator {0:?} (expected In, NotIn, Exists or DoesNotExist)")]
    UnknownOperator(String),
    /// `In`/`NotIn` without values, or `Exists`/`DoesNotExist` with values.
    #[error("selector requirement on {key:?} with operator {operator} has wrong values")]
    BadValues {
        /// The label key of the requirement.
        key: String,
        /// The operator of the requirement.
        operator: String,
    },
}

/// Renders `selector` as a label-selector string (`k=v,k in (a,b),!k`), keys in a stable
/// order. Refuses an empty selector and malformed requirements.
pub fn to_string(selector: &LabelSelector) -> Result<String, SelectorError> {
    let mut parts = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for req in selector.match_expressions.iter().flatten() {
        parts.push(requirement_string(req)?);
    }
    if parts.is_empty() {
        return Err(SelectorError::Empty);
    }
    Ok(parts.join(","))
}

fn requirement_string(req: &LabelSelectorRequirement) -> Result<String, SelectorError> {
    let values = req.values.clone().unwrap_or_default();
    let bad = || SelectorError::BadValues {
        key: req.key.clone(),
        operator: req.operator.clone(),
    };
    match req.operator.as_str() {
        "In" | "NotIn" => {
            if values.is_empty() {
                return Err(bad());
            }
            let mut sorted = values;
            sorted.sort();
            let op = if req.operator == "In" { "in" } else { "notin" };
            Ok(format!("{} {op} ({})", req.key, sorted.join(",")))
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                return Err(bad());
            }
            if req.operator == "Exists" {
                Ok(req.key.clone())
            } else {
                Ok(format!("!{}", req.key))
            }
        }
        other => Err(SelectorError::UnknownOperator(other.to_string())),
    }
}

/// Whether `labels` satisfy every term of `selector`. An empty selector matches nothing
/// here (a controller must never claim every pod); malformed requirements match nothing.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let has_terms = selector
        .match_labels
        .as_ref()
        .is_some_and(|m| !m.is_empty())
        || selector
            .match_expressions
            .as_ref()
            .is_some_and(|e| !e.is_empty());
    if !has_terms {
        return false;
    }
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|req| requirement_matches(req, labels))
}

fn requirement_matches(req: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let value = labels.get(&req.key);
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: op.to_string(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|s| s.to_string()).collect())
            },
        }
    }

    #[test]
    fn renders_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("b", "2"), ("a", "1")])),
            match_expressions: Some(vec![
                req("tier", "In", &["web", "db"]),
                req("env", "NotIn", &["dev"]),
                req("x", "Exists", &[]),
                req("y", "DoesNotExist", &[]),
            ]),
        };
        assert_eq!(
            to_string(&sel).unwrap(),
            "a=1,b=2,tier in (db,web),env notin (dev),x,!y"
        );
    }

    #[test]
    fn refuses_empty_and_malformed() {
        assert_eq!(
            to_string(&LabelSelector::default()),
            Err(SelectorError::Empty)
        );
        let sel = LabelSelector {
            match_expressions: Some(vec![req("a", "Near", &["1"])]),
            ..Default::default()
        };
        assert!(matches!(
            to_string(&sel),
            Err(SelectorError::UnknownOperator(_))
        ));
        let sel = LabelSelector {
            match_expressions: Some(vec![req("a", "In", &[])]),
            ..Default::default()
        };
        assert!(matches!(
            to_string(&sel),
            Err(SelectorError::BadValues { .. })
        ));
    }

    #[test]
    fn matching() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "x")])),
            match_expressions: Some(vec![
                req("tier", "In", &["web"]),
                req("old", "DoesNotExist", &[]),
            ]),
        };
        assert!(matches(&sel, &labels(&[("app", "x"), ("tier", "web")])));
        assert!(!matches(&sel, &labels(&[("app", "x"), ("tier", "db")])));
        assert!(!matches(
            &sel,
            &labels(&[("app", "x"), ("tier", "web"), ("old", "")])
        ));
        assert!(!matches(&sel, &labels(&[("tier", "web")])));
        assert!(!matches(
            &LabelSelector::default(),
            &labels(&[("app", "x")])
        ));
    }
}
