//! Small helpers around API calls: status codes, messages, and get-modify-replace.

use std::fmt::Debug;

use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ReconcileError, Result};

/// True when `e` is an answer of the API server with HTTP status `code`.
pub(super) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The API server's message in `e`, or the error itself when there is none.
pub(super) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// What the edit of a [`get_modify_replace`] decided about the object it was handed.
pub(super) enum Edit<T> {
    /// Write the edited object, then answer this.
    Replace(T),
    /// Write nothing; answer this.
    Keep(T),
}

/// Which part of the object a [`get_modify_replace`] writes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Part {
    /// The object (`PUT .../name`).
    Object,
    /// The status subresource (`PUT .../name/status`).
    Status,
}

/// Read object `name`, let `edit` change it, and replace it (or its status) with the
/// resourceVersion that was read. A 409 Conflict starts again from the read, at most 8 times;
/// then the write counts as contended ([`ReconcileError::Contended`], naming `what`).
///
/// `None` when the object does not exist, or vanished before the write.
pub(super) async fn get_modify_replace<K, T>(
    api: &Api<K>,
    name: &str,
    part: Part,
    what: impl FnOnce() -> String,
    mut edit: impl FnMut(&mut K) -> Edit<T>,
) -> Result<Option<T>>
where
    K: Clone + DeserializeOwned + Serialize + Debug,
{
    for _ in 0..8 {
        let Some(mut obj) = api.get_opt(name).await? else {
            return Ok(None);
        };
        let answer = match edit(&mut obj) {
            Edit::Keep(answer) => return Ok(Some(answer)),
            Edit::Replace(answer) => answer,
        };
        let written = match part {
            Part::Object => api.replace(name, &PostParams::default(), &obj).await,
            Part::Status => api.replace_status(name, &PostParams::default(), &obj).await,
        };
        match written {
            Ok(_) => return Ok(Some(answer)),
            Err(e) if is_status(&e, 409) => continue,
            Err(e) if is_status(&e, 404) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReconcileError::Contended(what()))
}
