//! Subresources: a pod's `eviction` and `binding`, and `scale`.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::common::{Reply, get_path, set_path, stored};
use super::delete::parse_delete_options;
use crate::error::ApiError;
use crate::pdb;
use crate::registry::ResourceInfo;
use crate::routing::{Query, Target};
use crate::selector::LabelSelector;
use crate::state::{DeleteOpts, Ownership, State, meta, meta_str};

pub(crate) fn scale_of(info: &ResourceInfo, obj: &Value) -> Result<Value, ApiError> {
    let sc = info
        .scale
        .as_ref()
        .ok_or_else(|| ApiError::path_not_found("scale"))?;
    let spec = get_path(obj, &sc.spec_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = get_path(obj, &sc.status_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = sc
        .label_selector_path
        .as_ref()
        .and_then(|p| get_path(obj, p))
        .map(|s| match s {
            Value::String(s) => s.clone(),
            other => LabelSelector::from_json(other)
                .map(|l| l.to_query())
                .unwrap_or_default(),
        })
        .unwrap_or_default();
    let m = meta(obj).cloned().unwrap_or_default();
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"), "namespace": m.get("namespace"), "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"), "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": spec},
        "status": {"replicas": status, "selector": selector},
    }))
}

pub(crate) fn evict(
    st: &mut State,
    t: &Target,
    body: &Value,
    dry_run_q: bool,
) -> Result<(Reply, bool), ApiError> {
    let key = t.key();
    let pod = stored(st, t)?.obj.clone();
    let empty = Query(HashMap::new());
    let dopts = body
        .get("deleteOptions")
        .or_else(|| body.get("delete_options"))
        .filter(|v| v.is_object())
        .map(|v| parse_delete_options(v, &empty))
        .unwrap_or_default();
    let dry_run = dopts.dry_run || dry_run_q;
    if meta_str(&pod, "deletionTimestamp").is_none() {
        let pdbs = pdb::matching(st, &key.0, pod.pointer("/metadata/labels"));
        if pdbs.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(budget_obj) = pdbs.first() {
            let b = pdb::budget(st, &key.0, budget_obj);
            let always = budget_obj
                .pointer("/spec/unhealthyPodEvictionPolicy")
                .and_then(Value::as_str)
                == Some("AlwaysAllow");
            let allowed = if pdb::pod_ready(&pod) {
                b.disruptions_allowed() >= 1
            } else {
                always || (b.sync_error.is_none() && b.desired > 0 && b.healthy >= b.desired)
            };
            if !allowed {
                let pdb_name = meta_str(budget_obj, "name").unwrap_or_default();
                return Err(ApiError::new(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                )
                .with_details(json!({"causes": [{
                    "reason": "DisruptionBudget",
                    "message": format!(
                        "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                        b.desired, b.healthy
                    ),
                }]})));
            }
        }
    }
    let opts = DeleteOpts { dry_run, ..dopts };
    st.delete_object(t.kind, &key, &opts)?;
    Ok((
        Reply::Json(
            201,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ),
        !dry_run,
    ))
}

pub(crate) fn bind(
    st: &mut State,
    t: &Target,
    body: &Value,
    ownership: Ownership,
) -> Result<(Reply, bool), ApiError> {
    let key = t.key();
    let pod = stored(st, t)?.obj.clone();
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("binding target name is required"))?;
    if let Some(current) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return Err(ApiError::conflict(
            &t.info,
            t.name(),
            &format!("pod {} is already assigned to node \"{current}\"", t.name()),
        ));
    }
    let mut new = (*pod).clone();
    set_path(&mut new, &["spec".into(), "nodeName".into()], json!(node));
    let (_, changed) = st.commit_update(t.kind, &key, new, ownership, false)?;
    Ok((
        Reply::Json(
            201,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ),
        changed,
    ))
}

/// `GET` of the `scale` subresource.
pub(crate) fn get_scale(st: &State, t: &Target) -> Result<(Reply, bool), ApiError> {
    let s = stored(st, t)?;
    Ok((Reply::Json(200, scale_of(&t.info, &s.obj)?), false))
}
