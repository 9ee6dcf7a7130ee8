//! What the handlers share: the [`Reply`] they return and helpers on JSON objects.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::routing::Target;
use crate::state::{State, Stored};
use crate::watch::WatchStream;

/// An answer to a resource request.
pub(crate) enum Reply {
    Json(u16, Value),
    Obj(u16, Arc<Value>),
    Raw(u16, Vec<u8>),
    Watch(WatchStream),
}

pub(crate) fn status_of(v: &Value) -> Option<Value> {
    v.get("status").cloned()
}

pub(crate) fn set_status(obj: &mut Value, status: Option<Value>) {
    if let Value::Object(m) = obj {
        match status {
            Some(s) => {
                m.insert("status".into(), s);
            }
            None => {
                m.remove("status");
            }
        }
    }
}

pub(crate) fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, p| cur.get(p))
}

pub(crate) fn set_path(v: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        if !cur.get(p).is_some_and(Value::is_object) {
            if let Value::Object(m) = cur {
                m.insert(p.clone(), Value::Object(Map::new()));
            } else {
                return;
            }
        }
        let Some(next) = cur.get_mut(p) else {
            return;
        };
        cur = next;
    }
    if let Value::Object(m) = cur {
        m.insert(last.clone(), value);
    }
}

pub(crate) fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The stored object `t` names, or the API server's 404 for it.
pub(crate) fn stored<'a>(st: &'a State, t: &Target) -> Result<&'a Stored, ApiError> {
    st.get(t.kind, &t.key())
        .ok_or_else(|| ApiError::not_found(&t.info, t.name()))
}
