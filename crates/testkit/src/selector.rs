//! Label and field selectors, as the API server parses them from query strings.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed label selector (`a=b,c!=d,e in (x,y),f,!g`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<Req>,
}

/// Split at commas that are not inside parentheses.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced parentheses in {s:?}"));
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {s:?}"));
    }
    out.push(&s[start..]);
    Ok(out)
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_set(key: &str, rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected (values) after {key:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parse a selector in the API server's string syntax. An empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { reqs });
        }
        for part in split_top(s)? {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("empty requirement in selector {s:?}"));
            }
            let req = if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(k.trim().to_string())
            } else if let Some(idx) = part.find('(') {
                let head = part[..idx].trim();
                let (key, op) = head
                    .rsplit_once(char::is_whitespace)
                    .ok_or_else(|| format!("bad set requirement {part:?}"))?;
                let key = key.trim().to_string();
                let values = parse_set(&key, &part[idx..])?;
                match op {
                    "in" => Req::In(key, values),
                    "notin" => Req::NotIn(key, values),
                    _ => return Err(format!("unknown operator {op:?} in {part:?}")),
                }
            } else if let Some((k, v)) = part.split_once("!=") {
                Req::Ne(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('>') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad number in {part:?}"))?;
                Req::Gt(k.trim().to_string(), n)
            } else if let Some((k, v)) = part.split_once('<') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad number in {part:?}"))?;
                Req::Lt(k.trim().to_string(), n)
            } else {
                Req::Exists(part.to_string())
            };
            let key = match &req {
                Req::Eq(k, _)
                | Req::Ne(k, _)
                | Req::In(k, _)
                | Req::NotIn(k, _)
                | Req::Exists(k)
                | Req::NotExists(k)
                | Req::Gt(k, _)
                | Req::Lt(k, _) => k,
            };
            if !valid_key(key) {
                return Err(format!("invalid label key {key:?} in selector {s:?}"));
            }
            reqs.push(req);
        }
        Ok(Self { reqs })
    }

    /// Build from a `metav1.LabelSelector` JSON value (`matchLabels` / `matchExpressions`).
    /// Returns `None` for a selector that cannot be interpreted.
    pub fn from_json(sel: &Value) -> Option<Self> {
        let mut reqs = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                reqs.push(Req::Eq(k.clone(), v.as_str()?.to_string()));
            }
        }
        if let Some(me) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in me {
                let key = e.get("key")?.as_str()?.to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                reqs.push(match e.get("operator")?.as_str()? {
                    "In" => Req::In(key, values),
                    "NotIn" => Req::NotIn(key, values),
                    "Exists" => Req::Exists(key),
                    "DoesNotExist" => Req::NotExists(key),
                    _ => return None,
                });
            }
        }
        Some(Self { reqs })
    }

    /// True when the selector has no requirements (selects everything).
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether an object's labels (a JSON map, or null) satisfy the selector.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::Ne(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
            Req::Gt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Req::Lt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }

    /// Whether an object (full JSON) is selected.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.is_empty() || self.matches(obj.pointer("/metadata/labels"))
    }

    /// Render in the string syntax.
    pub fn to_query(&self) -> String {
        self.reqs
            .iter()
            .map(|r| match r {
                Req::Eq(k, v) => format!("{k}={v}"),
                Req::Ne(k, v) => format!("{k}!={v}"),
                Req::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Req::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Req::Exists(k) => k.clone(),
                Req::NotExists(k) => format!("!{k}"),
                Req::Gt(k, n) => format!("{k}>{n}"),
                Req::Lt(k, n) => format!("{k}<{n}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A parsed field selector (`metadata.name=x,metadata.namespace!=y`); any dotted path into the
/// object is accepted, a missing field compares as the empty string.
#[derive(Clone, Debug, Default)]
pub struct FieldSelector {
    reqs: Vec<(Vec<String>, bool, String)>,
}

impl FieldSelector {
    /// Parse the query-string syntax.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { reqs });
        }
        for part in s.split(',') {
            let part = part.trim();
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!("invalid field selector requirement {part:?}"));
            };
            let path: Vec<String> = k.trim().split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("invalid field path in {part:?}"));
            }
            reqs.push((path, eq, v.trim().to_string()));
        }
        Ok(Self { reqs })
    }

    /// Whether the object satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(path, eq, want)| {
            let mut cur = Some(obj);
            for p in path {
                cur = cur.and_then(|c| c.get(p));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *eq
        })
    }

    /// An equality requirement on `metadata.name`, if present (used to narrow lookups).
    pub fn name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(p, eq, _)| *eq && p.len() == 2 && p[0] == "metadata" && p[1] == "name")
            .map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_forms() {
        let labels = json!({"a": "b", "tier": "db", "n": "5"});
        let ok = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&labels));
        assert!(ok(""));
        assert!(ok("a=b"));
        assert!(ok("a==b"));
        assert!(!ok("a=c"));
        assert!(ok("a!=c"));
        assert!(!ok("a!=b"));
        assert!(ok("tier in (db, web)"));
        assert!(!ok("tier in (web)"));
        assert!(ok("tier notin (web)"));
        assert!(ok("a"));
        assert!(!ok("missing"));
        assert!(ok("!missing"));
        assert!(!ok("!a"));
        assert!(ok("a=b,tier in (db,x),!missing"));
        assert!(!ok("a=b,tier in (x)"));
        assert!(ok("n>4"));
        assert!(!ok("n<4"));
        assert!(LabelSelector::parse("a in (b").is_err());
        assert!(LabelSelector::parse("a=b,,c").is_err());
    }

    #[test]
    fn label_selector_from_json() {
        let sel = LabelSelector::from_json(&json!({
            "matchLabels": {"app": "x"},
            "matchExpressions": [{"key": "role", "operator": "In", "values": ["primary"]}]
        }))
        .unwrap();
        assert!(sel.matches(Some(&json!({"app": "x", "role": "primary"}))));
        assert!(!sel.matches(Some(&json!({"app": "x", "role": "standby"}))));
        assert_eq!(sel.to_query(), "app=x,role in (primary)");
    }

    #[test]
    fn field_selector() {
        let obj =
            json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Running"}});
        let ok = |s: &str| FieldSelector::parse(s).unwrap().matches(&obj);
        assert!(ok("metadata.name=p"));
        assert!(!ok("metadata.name=q"));
        assert!(ok("metadata.namespace!=other,status.phase=Running"));
        assert!(ok("spec.nodeName="));
        assert_eq!(
            FieldSelector::parse("metadata.name=p").unwrap().name(),
            Some("p")
        );
    }
}
