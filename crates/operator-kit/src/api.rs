//! Small helpers around [`kube::Api`] that every controller needs: an `Api` for one
//! namespace or all of them, reading API errors, and get-modify-replace with a bounded retry
//! on 409 Conflict.
//!
//! [`kube::Api::entry`] does get-modify-replace too, but it neither retries a conflict (its
//! docs leave that to the caller) nor writes the `status` subresource, so [`modify`] does.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::PostParams;
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How many times [`modify`] reads and writes an object before giving up on conflicts.
pub const MODIFY_ATTEMPTS: u32 = 8;

/// An `Api` for `namespace`, or for all namespaces when it is `None` (a controller that
/// watches one namespace or the whole cluster).
pub fn namespaced_or_all<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The HTTP status code of an error the API server answered, `None` for other errors.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// `true` when the API server answered 404 Not Found.
///
/// These tests look at the HTTP code, as the controllers always did: kube-core's
/// `Status::is_not_found` and friends compare the reason only (their "unknown reason, so
/// look at the code" branch tests the wanted reason instead of the answer's), so a 404
/// without `reason: NotFound` would not count.
pub fn is_not_found(e: &kube::Error) -> bool {
    status_code(e) == Some(404)
}

/// `true` when the API server answered 409 Conflict: a stale `resourceVersion`, or a
/// create of an object that already exists (see [`is_already_exists`]).
pub fn is_conflict(e: &kube::Error) -> bool {
    status_code(e) == Some(409)
}

/// `true` when the API server answered 409 with reason `AlreadyExists` (a create of an
/// existing object).
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.is_already_exists())
}

/// `true` when the API server answered 403 Forbidden.
pub fn is_forbidden(e: &kube::Error) -> bool {
    status_code(e) == Some(403)
}

/// `true` when the API server answered 422 Unprocessable Entity (the object is invalid).
pub fn is_invalid(e: &kube::Error) -> bool {
    status_code(e) == Some(422)
}

/// The API server's message for an error it answered, else the error's text: what a
/// condition or event should say.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// Which part of the object [`modify`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The object (`PUT .../name`): spec and metadata; the API server ignores status.
    Object,
    /// The `status` subresource (`PUT .../name/status`); the API server ignores the rest.
    Status,
}

/// What the mutation in [`modify`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// The object was changed: write it, then return the value.
    Write(T),
    /// Nothing to write (already as wanted, or nothing to do): return the value at once.
    Keep(T),
}

/// Why [`modify`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ModifyError {
    /// Every attempt hit a 409 Conflict: others keep writing the object.
    #[error("the object kept changing while it was written ({attempts} conflicts in a row)")]
    Conflicts {
        /// How many writes were tried.
        attempts: u32,
    },
    /// Another API error (not 404, not 409).
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Get-modify-replace with a bounded retry on conflict: reads `name`, lets `mutate` change it
/// and decide, writes it ([`Target`]) when it says [`Change::Write`], and on a 409 Conflict
/// starts over with a fresh read, at most [`MODIFY_ATTEMPTS`] times.
///
/// Returns `Ok(None)` when the object does not exist (at the read, or gone by the write),
/// `Ok(Some(value))` with the value of the attempt that was written or kept. `mutate` may
/// run several times, each on a freshly read object.
pub async fn modify<K, T, F>(
    api: &Api<K>,
    name: &str,
    target: Target,
    mut mutate: F,
) -> Result<Option<T>, ModifyError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    F: FnMut(&mut K) -> Change<T>,
{
    for _ in 0..MODIFY_ATTEMPTS {
        let Some(mut obj) = api.get_opt(name).await? else {
            return Ok(None);
        };
        let value = match mutate(&mut obj) {
            Change::Keep(value) => return Ok(Some(value)),
            Change::Write(value) => value,
        };
        let pp = PostParams::default();
        let written = match target {
            Target::Object => api.replace(name, &pp, &obj).await,
            Target::Status => api.replace_status(name, &pp, &obj).await,
        };
        match written {
            Ok(_) => return Ok(Some(value)),
            Err(e) if is_conflict(&e) => {
                tracing::debug!(name, "conflict while writing; reading again");
            }
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Err(ModifyError::Conflicts {
        attempts: MODIFY_ATTEMPTS,
    })
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
