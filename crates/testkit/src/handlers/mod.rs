//! Request handlers: one module per concern (read, write, delete, subresources); [`dispatch`]
//! picks the handler for a verb and subresource.

mod common;
mod delete;
mod read;
mod subresource;
mod write;

use std::sync::Arc;

use crate::apply;
use crate::error::ApiError;
use crate::log::Verb;
use crate::pdb;
use crate::revision;
use crate::routing::{Query, Target, is_pods};
use crate::shared::Inner;
use crate::state::{Ownership, State};

use common::parse_body;

pub(crate) use common::Reply;
pub(crate) use write::create_object;

/// Run one request against the store (under its lock) and refresh PodDisruptionBudget status
/// afterwards. Returns the reply and whether the store changed.
pub(crate) fn dispatch(
    inner: &Arc<Inner>,
    verb: Verb,
    t: &Target,
    q: &Query,
    content_type: &str,
    body: &[u8],
    manager: &str,
) -> Result<(Reply, bool), ApiError> {
    let updater = Ownership::Update(apply::manager_key(manager, "update"));
    let mut guard = inner.lock();
    let st = &mut *guard;
    let result = dispatch_locked(inner, st, verb, t, q, content_type, body, updater);
    pdb::refresh(st);
    result
}

#[allow(clippy::too_many_arguments)]
fn dispatch_locked(
    inner: &Arc<Inner>,
    st: &mut State,
    verb: Verb,
    t: &Target,
    q: &Query,
    content_type: &str,
    body: &[u8],
    updater: Ownership,
) -> Result<(Reply, bool), ApiError> {
    // A ControllerRevision's data is compared byte for byte (see `revision`).
    if t.sub.is_none()
        && revision::is_revisions(&t.info)
        && matches!(verb, Verb::Update | Verb::Patch | Verb::Apply)
        && let Some(stored) = st.revision_raw(t.kind, &t.key())
    {
        revision::check_write(&t.info, t.name(), &stored, verb == Verb::Update, body)?;
    }
    match (verb, t.sub.as_deref()) {
        (Verb::Get, None | Some("status")) => read::get(st, t),
        (Verb::Get, Some("scale")) => subresource::get_scale(st, t),
        (Verb::List, None) => read::list(st, t, q).map(|r| (r, false)),
        (Verb::Watch, None) => read::watch(inner, st, t, q),
        (Verb::Create, None) => write::create(st, t, q, body, updater),
        (Verb::Create, Some("eviction")) if is_pods(&t.info) => {
            subresource::evict(st, t, &parse_body(body)?, q.dry_run())
        }
        (Verb::Create, Some("binding")) if is_pods(&t.info) => {
            subresource::bind(st, t, &parse_body(body)?, updater)
        }
        (Verb::Update, None | Some("status") | Some("scale")) => {
            write::update(st, t, parse_body(body)?, q.dry_run(), updater)
        }
        (Verb::Patch, None | Some("status") | Some("scale")) => {
            write::patch(st, t, content_type, body, q.dry_run(), updater)
        }
        (Verb::Apply, None | Some("status")) => write::apply_patch(st, t, q, body),
        (Verb::Delete, None) => delete::delete(st, t, q, body),
        (Verb::DeleteCollection, None) => delete::delete_collection(st, t, q, body),
        (_, Some(sub)) => Err(ApiError::path_not_found(&format!(
            "{}/{} does not support {}",
            t.info.plural,
            sub,
            verb.as_str()
        ))),
    }
}
