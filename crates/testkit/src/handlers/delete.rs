//! Deletes: single objects, collections and the options both take.

use serde_json::{Value, json};

use super::common::{Reply, parse_body};
use crate::error::ApiError;
use crate::registry::ResourceInfo;
use crate::routing::{Query, Target};
use crate::state::{DeleteOpts, DeleteOutcome, ObjKey, State, meta_str};

pub(crate) fn success_status(info: &ResourceInfo, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": meta_str(obj, "name").unwrap_or_default(),
            "group": info.group,
            "kind": info.plural,
            "uid": meta_str(obj, "uid").unwrap_or_default(),
        }
    })
}

pub(crate) fn delete_opts(body: &[u8], q: &Query) -> Result<DeleteOpts, ApiError> {
    let b = parse_body(body)?;
    Ok(parse_delete_options(&b, q))
}

pub(crate) fn parse_delete_options(b: &Value, q: &Query) -> DeleteOpts {
    let dry = b
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "All"));
    DeleteOpts {
        propagation: b
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(q.get("propagationPolicy"))
            .map(str::to_string),
        grace: b
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| q.get("gracePeriodSeconds").and_then(|s| s.parse().ok())),
        precondition_uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run: dry || q.dry_run(),
    }
}

/// `DELETE` of one object.
pub(crate) fn delete(
    st: &mut State,
    t: &Target,
    q: &Query,
    body: &[u8],
) -> Result<(Reply, bool), ApiError> {
    let opts = delete_opts(body, q)?;
    match st.delete_object(t.kind, &t.key(), &opts)? {
        DeleteOutcome::Removed(last) => Ok((
            Reply::Json(200, success_status(&t.info, &last)),
            !opts.dry_run,
        )),
        DeleteOutcome::Pending(obj) => Ok((Reply::Obj(200, obj), !opts.dry_run)),
    }
}

/// `DELETE` of a collection (with the query's selectors).
pub(crate) fn delete_collection(
    st: &mut State,
    t: &Target,
    q: &Query,
    body: &[u8],
) -> Result<(Reply, bool), ApiError> {
    let opts = delete_opts(body, q)?;
    let filter = q.filter(t.namespace.clone())?;
    let keys: Vec<ObjKey> = st.kinds[t.kind]
        .objects
        .iter()
        .filter(|(_, s)| filter.matches(&s.obj))
        .map(|(k, _)| k.clone())
        .collect();
    let mut items = Vec::new();
    for k in keys {
        match st.delete_object(t.kind, &k, &opts) {
            Ok(DeleteOutcome::Removed(o) | DeleteOutcome::Pending(o)) => items.push((*o).clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let changed = !items.is_empty() && !opts.dry_run;
    Ok((
        Reply::Json(
            200,
            json!({
                "kind": format!("{}List", t.info.kind),
                "apiVersion": t.api_version(),
                "metadata": {"resourceVersion": st.rv.to_string()},
                "items": items,
            }),
        ),
        changed,
    ))
}
