//! Reads: get, list and watch.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::common::{Reply, stored};
use crate::error::ApiError;
use crate::routing::{Query, Target};
use crate::shared::Inner;
use crate::state::{State, meta_str};
use crate::watch::{WatchSpec, WatchStream};

pub(crate) fn list(st: &State, t: &Target, q: &Query) -> Result<Reply, ApiError> {
    let filter = q.filter(t.namespace.clone())?;
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    // Continue tokens are `<rv>:<namespace>/<name>` of the last item returned.
    let (list_rv, after) = match q.get("continue") {
        Some(tok) => {
            let (rv, rest) = tok
                .split_once(':')
                .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
            let (ns, name) = rest
                .split_once('/')
                .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
            let rv: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request("invalid continue token"))?;
            if rv < st.kinds[t.kind].compacted_rv {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result.",
                ));
            }
            (rv, Some((ns.to_string(), name.to_string())))
        }
        None => (st.rv, None),
    };
    let ks = &st.kinds[t.kind];
    let range_start = match (&after, &filter.namespace) {
        (Some(a), _) => std::ops::Bound::Excluded(a.clone()),
        (None, Some(ns)) => std::ops::Bound::Included((ns.clone(), String::new())),
        (None, None) => std::ops::Bound::Unbounded,
    };
    let mut items: Vec<Arc<Value>> = Vec::new();
    let mut cont = None;
    for ((ns, name), s) in ks.objects.range((range_start, std::ops::Bound::Unbounded)) {
        if let Some(want) = &filter.namespace
            && ns != want
        {
            break;
        }
        if !filter.matches(&s.obj) {
            continue;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            let last = items.last().map(|o| {
                (
                    meta_str(o, "namespace").unwrap_or_default().to_string(),
                    meta_str(o, "name").unwrap_or_default().to_string(),
                )
            });
            if let Some((lns, lname)) = last {
                cont = Some(format!("{list_rv}:{lns}/{lname}"));
            }
            break;
        }
        let _ = name;
        items.push(s.obj.clone());
    }
    let mut buf = Vec::with_capacity(64 + items.len() * 512);
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
    }
    let head = json!({
        "kind": format!("{}List", t.info.kind),
        "apiVersion": t.api_version(),
        "metadata": metadata,
    });
    let head = serde_json::to_string(&head).map_err(|e| ApiError::internal(e.to_string()))?;
    buf.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    buf.extend_from_slice(b",\"items\":[");
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        serde_json::to_writer(&mut buf, &**o).map_err(|e| ApiError::internal(e.to_string()))?;
    }
    buf.extend_from_slice(b"]}");
    Ok(Reply::Raw(200, buf))
}

/// `GET` of one object (or its `status`).
pub(crate) fn get(st: &State, t: &Target) -> Result<(Reply, bool), ApiError> {
    let s = stored(st, t)?;
    Ok((Reply::Obj(200, s.obj.clone()), false))
}

/// A watch from the query's resourceVersion (or the current state), with its selectors.
pub(crate) fn watch(
    inner: &Arc<Inner>,
    st: &State,
    t: &Target,
    q: &Query,
) -> Result<(Reply, bool), ApiError> {
    let rv = match q.get("resourceVersion") {
        None | Some("0") => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
        ),
    };
    let spec = WatchSpec {
        kind: t.kind,
        filter: q.filter(t.namespace.clone())?,
        rv,
        send_initial: q.flag("sendInitialEvents"),
        bookmarks: q.flag("allowWatchBookmarks"),
        timeout: q
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs),
        api_version: t.api_version(),
    };
    let w = WatchStream::start(inner.clone(), st, spec)?;
    Ok((Reply::Watch(w), false))
}
