//! Routing: the request path to discovery documents or a resolved resource [`Target`], and the
//! query string to a [`Query`].

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::{ObjKey, State};
use crate::watch::Filter;

/// Decode `a=b&c=d` with percent-encoding and `+` as space.
pub(crate) fn parse_query(q: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

pub(crate) struct Query(pub(crate) HashMap<String, String>);

impl Query {
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }
    pub(crate) fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    pub(crate) fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
    pub(crate) fn filter(&self, namespace: Option<String>) -> Result<Filter, ApiError> {
        Ok(Filter {
            namespace,
            labels: LabelSelector::parse(self.get("labelSelector").unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            fields: FieldSelector::parse(self.get("fieldSelector").unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?,
        })
    }
}

/// A resolved resource path.
pub(crate) struct Target {
    pub(crate) kind: usize,
    pub(crate) info: Arc<ResourceInfo>,
    pub(crate) version: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) sub: Option<String>,
}

impl Target {
    pub(crate) fn key(&self) -> ObjKey {
        (
            self.namespace.clone().unwrap_or_default(),
            self.name.clone().unwrap_or_default(),
        )
    }
    pub(crate) fn api_version(&self) -> String {
        self.info.api_version(&self.version)
    }
    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}

pub(crate) enum Route {
    Discovery(Value),
    Resource(Target),
}

pub(crate) fn is_pods(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "pods"
}

pub(crate) fn api_resources(info: &ResourceInfo) -> Vec<Value> {
    let mut out = vec![json!({
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        "shortNames": info.short_names,
    })];
    if info.status {
        out.push(json!({"name": format!("{}/status", info.plural), "singularName": "", "namespaced": info.namespaced, "kind": info.kind, "verbs": ["get", "patch", "update"]}));
    }
    if info.scale.is_some() {
        out.push(json!({"name": format!("{}/scale", info.plural), "singularName": "", "namespaced": info.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    if is_pods(info) {
        out.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
        out.push(json!({"name": "pods/binding", "singularName": "", "namespaced": true, "kind": "Binding", "verbs": ["create"]}));
    }
    out
}

pub(crate) fn route(st: &State, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let infos = || st.kinds.iter().map(|k| k.info.clone());
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => {
            return Ok(Route::Discovery(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-testkit",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "go", "compiler": "gc", "platform": "linux/amd64"
            })));
        }
        ["api"] => {
            return Ok(Route::Discovery(json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}]
            })));
        }
        ["apis"] => {
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for i in infos().filter(|i| !i.group.is_empty()) {
                match groups.iter_mut().find(|(g, _)| *g == i.group) {
                    Some((_, vs)) => {
                        for v in &i.versions {
                            if !vs.contains(v) {
                                vs.push(v.clone());
                            }
                        }
                    }
                    None => groups.push((i.group.clone(), i.versions.clone())),
                }
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
                })
                .collect();
            return Ok(Route::Discovery(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g] => {
            let vs: Vec<String> = infos()
                .filter(|i| i.group == *g)
                .flat_map(|i| i.versions.clone())
                .collect();
            if vs.is_empty() {
                return Err(ApiError::path_not_found(path));
            }
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            return Ok(Route::Discovery(json!({
                "kind": "APIGroup", "apiVersion": "v1", "name": g,
                "versions": versions, "preferredVersion": versions[0]
            })));
        }
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found(path)),
    };
    if rest.is_empty() {
        let resources: Vec<Value> = infos()
            .filter(|i| i.group == group && i.versions.iter().any(|x| x == version))
            .flat_map(|i| api_resources(&i))
            .collect();
        if resources.is_empty() {
            return Err(ApiError::path_not_found(path));
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        return Ok(Route::Discovery(json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources
        })));
    }
    let lookup = |plural: &str| -> Option<(usize, Arc<ResourceInfo>)> {
        let k = st.kind_index(group, plural)?;
        let info = st.kinds[k].info.clone();
        info.versions
            .iter()
            .any(|v| v == version)
            .then_some((k, info))
    };
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && lookup(rest[2]).is_some_and(|(_, i)| i.namespaced);
    let (namespace, tail) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (kind, info) = lookup(tail[0]).ok_or_else(|| ApiError::path_not_found(path))?;
    if tail.len() > 3 {
        return Err(ApiError::path_not_found(path));
    }
    let name = tail.get(1).map(|s| s.to_string());
    let sub = tail.get(2).map(|s| s.to_string());
    if namespace.is_none() && info.namespaced && name.is_some() {
        return Err(ApiError::path_not_found(path));
    }
    if let Some(s) = &sub {
        let ok = match s.as_str() {
            "status" => info.status,
            "scale" => info.scale.is_some(),
            "eviction" | "binding" => is_pods(&info),
            _ => false,
        };
        if !ok {
            return Err(ApiError::path_not_found(path));
        }
    }
    Ok(Route::Resource(Target {
        kind,
        info,
        version: version.to_string(),
        namespace,
        name,
        sub,
    }))
}
