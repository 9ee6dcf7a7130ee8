//! Writes: create, update, patch and server-side apply.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use super::common::{Reply, parse_body, set_path, set_status, status_of, stored};
use super::subresource::scale_of;
use crate::apply::{self, Managed, Scope, strip_nulls};
use crate::error::ApiError;
use crate::registry::{self, ResourceInfo};
use crate::revision;
use crate::routing::Query;
use crate::routing::Target;
use crate::state::{ObjKey, Ownership, State, meta_mut, meta_str, now_rfc3339};

/// Create an object (also used by apply-create and startup). Returns the stored object.
pub(crate) fn create_object(
    st: &mut State,
    kind: usize,
    version: &str,
    namespace: Option<&str>,
    mut obj: Value,
    dry_run: bool,
    ownership: Ownership,
) -> Result<(Arc<Value>, bool), ApiError> {
    let info = st.kinds[kind].info.clone();
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && k != info.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind {k:?} in the body does not match {:?} of the request path",
            info.kind
        )));
    }
    strip_nulls(&mut obj);
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), json!(info.api_version(version)));
        m.insert("kind".into(), json!(info.kind));
    }
    let mut name = meta_str(&obj, "name").unwrap_or_default().to_string();
    if name.is_empty() {
        let Some(prefix) = meta_str(&obj, "generateName").map(str::to_string) else {
            return Err(ApiError::invalid(
                &info,
                "",
                vec![(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        };
        loop {
            name = format!("{prefix}{}", st.random_suffix());
            let ns = namespace.unwrap_or_default().to_string();
            if st.get(kind, &(ns, name.clone())).is_none() {
                break;
            }
        }
    }
    if info.namespaced {
        let Some(ns) = namespace else {
            return Err(ApiError::path_not_found(
                "namespaced resource without a namespace",
            ));
        };
        if let Some(body_ns) = meta_str(&obj, "namespace")
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let key: ObjKey = (namespace.unwrap_or_default().to_string(), name.clone());
    if st.get(kind, &key).is_some() {
        return Err(ApiError::already_exists(&info, &name));
    }
    let uid = st.new_uid();
    {
        let m = meta_mut(&mut obj);
        m.insert("name".into(), json!(name));
        if info.namespaced {
            m.insert("namespace".into(), json!(key.0));
        } else {
            m.remove("namespace");
        }
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            m.remove(f);
        }
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        m.insert("generation".into(), json!(1));
    }
    apply_create_defaults(st, &info, &mut obj);
    crate::validate::normalize(&info, &mut obj);
    crate::validate::validate(&info, &name, &obj)?;
    if dry_run {
        return Ok((Arc::new(obj), false));
    }
    let is_crd = info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions";
    if is_crd {
        let crd: CustomResourceDefinition = serde_json::from_value(obj.clone())
            .map_err(|e| ApiError::bad_request(format!("invalid CustomResourceDefinition: {e}")))?;
        st.register(registry::from_crd(&crd));
        let names = obj.pointer("/spec/names").cloned().unwrap_or(Value::Null);
        let stored: Vec<Value> = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.storage)
            .map(|v| json!(v.name))
            .collect();
        let now = now_rfc3339();
        set_status(
            &mut obj,
            Some(json!({
                "acceptedNames": names,
                "storedVersions": stored,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                ]
            })),
        );
    }
    let mut managed = match ownership {
        Ownership::Apply(m) => m,
        Ownership::Update(manager_key) => {
            let mut m = Managed::new();
            apply::record_update(&mut m, None, &obj, &manager_key);
            m
        }
        Ownership::System => Managed::new(),
    };
    apply::prune(&mut managed, &obj);
    let stored = st.insert(kind, key, obj, managed);
    Ok((stored, true))
}

/// What the real API server's create strategies and defaulting do that operators observe.
pub(crate) fn apply_create_defaults(st: &mut State, info: &ResourceInfo, obj: &mut Value) {
    if !info.group.is_empty() {
        if info.status {
            set_status(obj, None);
        }
        return;
    }
    match info.plural.as_str() {
        "pods" => set_status(obj, Some(json!({"phase": "Pending"}))),
        "namespaces" => set_status(obj, Some(json!({"phase": "Active"}))),
        "persistentvolumeclaims" => set_status(obj, Some(json!({"phase": "Pending"}))),
        "services" => {
            set_status(obj, Some(json!({"loadBalancer": {}})));
            let ty = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string();
            let ip = obj
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty())
                .map(str::to_string);
            // a real API server allocates for an absent or empty clusterIP; "None" (headless)
            // is kept and mirrored into clusterIPs
            if ty != "ExternalName" && ip.as_deref() == Some("None") {
                set_path(obj, &["spec".into(), "clusterIPs".into()], json!(["None"]));
            } else if ty != "ExternalName" && ip.is_none() {
                let n = st.next_counter();
                let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1);
                set_path(obj, &["spec".into(), "clusterIP".into()], json!(ip));
                set_path(obj, &["spec".into(), "clusterIPs".into()], json!([ip]));
            }
        }
        _ => {
            if info.status {
                set_status(obj, None);
            }
        }
    }
}

pub(crate) fn check_rv(t: &Target, current: &Value, body: &Value) -> Result<(), ApiError> {
    if let Some(rv) = meta_str(body, "resourceVersion").filter(|s| !s.is_empty())
        && Some(rv) != meta_str(current, "resourceVersion")
    {
        return Err(ApiError::stale(&t.info, t.name()));
    }
    Ok(())
}

/// Turn the requested content of the main object / status / scale into the full new object.
pub(crate) fn merge_into(t: &Target, old: &Value, requested: Value) -> Result<Value, ApiError> {
    match t.sub.as_deref() {
        None => {
            let mut new = requested;
            if t.info.status {
                set_status(&mut new, status_of(old));
            }
            Ok(new)
        }
        Some("status") => {
            let mut new = old.clone();
            set_status(&mut new, status_of(&requested));
            Ok(new)
        }
        Some("scale") => {
            let sc = t
                .info
                .scale
                .as_ref()
                .ok_or_else(|| ApiError::path_not_found("scale"))?;
            let replicas = requested
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    ApiError::invalid(
                        &t.info,
                        t.name(),
                        vec![("spec.replicas".into(), "Required value".into())],
                    )
                })?;
            let mut new = old.clone();
            set_path(&mut new, &sc.spec_replicas_path, json!(replicas));
            Ok(new)
        }
        Some(other) => Err(ApiError::path_not_found(other)),
    }
}

pub(crate) fn respond_written(t: &Target, obj: Arc<Value>) -> Result<Reply, ApiError> {
    if t.sub.as_deref() == Some("scale") {
        Ok(Reply::Json(200, scale_of(&t.info, &obj)?))
    } else {
        Ok(Reply::Obj(200, obj))
    }
}

pub(crate) fn reregister_crd(st: &mut State, t: &Target, obj: &Value) {
    if t.info.group == "apiextensions.k8s.io"
        && t.info.plural == "customresourcedefinitions"
        && let Ok(crd) = serde_json::from_value::<CustomResourceDefinition>(obj.clone())
    {
        st.register(registry::from_crd(&crd));
    }
}

pub(crate) fn update(
    st: &mut State,
    t: &Target,
    body: Value,
    dry_run: bool,
    ownership: Ownership,
) -> Result<(Reply, bool), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ));
    }
    let key = t.key();
    let old = stored(st, t)?.obj.clone();
    if t.sub.as_deref() != Some("scale")
        && let Some(n) = meta_str(&body, "name")
        && n != t.name()
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    check_rv(t, &old, &body)?;
    write_back(st, t, &key, &old, body, ownership, dry_run)
}

pub(crate) fn patch(
    st: &mut State,
    t: &Target,
    content_type: &str,
    body: &[u8],
    dry_run: bool,
    ownership: Ownership,
) -> Result<(Reply, bool), ApiError> {
    let key = t.key();
    let old = stored(st, t)?.obj.clone();
    let mut target = if t.sub.as_deref() == Some("scale") {
        scale_of(&t.info, &old)?
    } else {
        (*old).clone()
    };
    let before_rv = meta_str(&target, "resourceVersion").map(str::to_string);
    let patch_value = parse_body(body)?;
    match content_type {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            json_patch::merge(&mut target, &patch_value);
        }
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_value(patch_value)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut target, &p).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
        other => {
            return Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"
            )));
        }
    }
    if meta_str(&target, "resourceVersion").map(str::to_string) != before_rv
        && meta_str(&target, "resourceVersion").is_some()
    {
        return Err(ApiError::stale(&t.info, t.name()));
    }
    if t.sub.is_none() && (meta_str(&target, "name") != Some(t.name())) {
        return Err(ApiError::bad_request("a patch cannot change metadata.name"));
    }
    write_back(st, t, &key, &old, target, ownership, dry_run)
}

pub(crate) fn apply_patch(
    st: &mut State,
    t: &Target,
    q: &Query,
    body: &[u8],
) -> Result<(Reply, bool), ApiError> {
    let manager = q
        .get("fieldManager")
        .ok_or_else(|| ApiError::bad_request("PATCH /apply requires fieldManager to be set"))?;
    let applied: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid apply configuration: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "the apply configuration is not an object",
        ));
    }
    if applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        || applied
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(
            "invalid object type: apiVersion and kind must be set in an apply configuration",
        ));
    }
    if applied.get("kind").and_then(Value::as_str) != Some(t.info.kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "the kind in the apply configuration does not match {}",
            t.info.kind
        )));
    }
    if let Some(n) = meta_str(&applied, "name")
        && n != t.name()
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    let force = q.flag("force");
    let dry_run = q.dry_run();
    let scope = match t.sub.as_deref() {
        None => Scope::Main {
            status_subresource: t.info.status,
        },
        _ => Scope::Status,
    };
    let manager_key = match scope {
        Scope::Status => apply::manager_key(manager, "apply/status"),
        Scope::Main { .. } => apply::manager_key(manager, "apply"),
    };
    let scoped = apply::scoped(&applied, scope);
    let key = t.key();
    let existing = st
        .get(t.kind, &key)
        .map(|s| (s.obj.clone(), s.managed.clone()));
    match existing {
        None => {
            if scope == Scope::Status {
                return Err(ApiError::not_found(&t.info, t.name()));
            }
            let mut managed = Managed::new();
            let mut obj = apply::apply(None, &scoped, &manager_key, force, &mut managed)
                .map_err(|c| ApiError::new(409, "Conflict", apply::conflict_message(&c)))?;
            if let Value::Object(m) = &mut obj {
                m.insert("apiVersion".into(), json!(t.api_version()));
                m.insert("kind".into(), json!(t.info.kind));
            }
            meta_mut(&mut obj).insert("name".into(), json!(t.name()));
            let (obj, changed) = create_object(
                st,
                t.kind,
                &t.version,
                t.namespace.as_deref(),
                obj,
                dry_run,
                Ownership::Apply(managed),
            )?;
            Ok((Reply::Obj(201, obj), changed))
        }
        Some((old, mut managed)) => {
            check_rv(t, &old, &applied)?;
            let merged = apply::apply(Some(&old), &scoped, &manager_key, force, &mut managed)
                .map_err(|c| {
                    let causes: Vec<Value> = c
                        .iter()
                        .map(|x| json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{}\"", x.manager), "field": x.field}))
                        .collect();
                    ApiError::new(409, "Conflict", apply::conflict_message(&c)).with_details(json!({
                        "name": t.name(), "group": t.info.group, "kind": t.info.plural, "causes": causes
                    }))
                })?;
            let (obj, changed) =
                st.commit_update(t.kind, &key, merged, Ownership::Apply(managed), dry_run)?;
            reregister_crd(st, t, &obj);
            Ok((Reply::Obj(200, obj), changed))
        }
    }
}

/// `POST` of a new object; a ControllerRevision's data is kept byte for byte.
pub(crate) fn create(
    st: &mut State,
    t: &Target,
    q: &Query,
    body: &[u8],
    updater: Ownership,
) -> Result<(Reply, bool), ApiError> {
    if t.name.is_some() {
        return Err(ApiError::method_not_allowed("POST to a named object"));
    }
    let obj = parse_body(body)?;
    let (obj, changed) = create_object(
        st,
        t.kind,
        &t.version,
        t.namespace.as_deref(),
        obj,
        q.dry_run(),
        updater,
    )?;
    if changed && revision::is_revisions(&t.info) {
        let key = (
            t.namespace.clone().unwrap_or_default(),
            meta_str(&obj, "name").unwrap_or_default().to_string(),
        );
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        let raw = revision::stored_raw(revision::raw_data(body).as_deref(), &obj);
        st.revision_data.insert(key, (uid, raw));
    }
    Ok((Reply::Obj(201, obj), changed))
}

/// Merges `body` into the stored `old`, stores it (unless `dry_run`), and answers as the API
/// server does; the end of every PUT and PATCH.
fn write_back(
    st: &mut State,
    t: &Target,
    key: &ObjKey,
    old: &Value,
    body: Value,
    ownership: Ownership,
    dry_run: bool,
) -> Result<(Reply, bool), ApiError> {
    let new = merge_into(t, old, body)?;
    let (obj, changed) = st.commit_update(t.kind, key, new, ownership, dry_run)?;
    reregister_crd(st, t, &obj);
    Ok((respond_written(t, obj)?, changed))
}
