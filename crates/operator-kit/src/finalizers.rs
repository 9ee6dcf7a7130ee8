//! Adding and removing one finalizer of an object, guarded by the resourceVersion it was
//! read at.
//!
//! `kube::runtime::finalizer` adds its finalizer before the first reconcile and removes it
//! after a successful cleanup, which is not when either controller here wants it (the
//! Pgpool controller adds none while the Pgpool is paused and keeps it while deletion is
//! refused; the ops-manager adds it only to a request that goes on and removes it when the
//! request ends). These helpers are the two steps those controllers take by hand: the pure
//! list change, and a merge patch that carries the object's `resourceVersion`, so a write
//! based on a stale (cached) copy fails with 409 instead of acting on old state.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// `true` when `obj` carries `finalizer`.
pub fn has<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.finalizers().iter().any(|f| f == finalizer)
}

/// `obj`'s finalizers with `finalizer` appended, or `None` when it is there already.
pub fn with<K: Resource>(obj: &K, finalizer: &str) -> Option<Vec<String>> {
    if has(obj, finalizer) {
        return None;
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(finalizer.to_string());
    Some(finalizers)
}

/// `obj`'s finalizers without `finalizer` (other finalizers keep their order), or `None`
/// when it is not there.
pub fn without<K: Resource>(obj: &K, finalizer: &str) -> Option<Vec<String>> {
    if !has(obj, finalizer) {
        return None;
    }
    Some(
        obj.finalizers()
            .iter()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect(),
    )
}

/// Sets `obj`'s finalizers to `finalizers` with a merge patch that carries `obj`'s
/// `resourceVersion`: 409 Conflict when the object changed since `obj` was read. Returns
/// the patched object.
pub async fn set<K>(api: &Api<K>, obj: &K, finalizers: Vec<String>) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": obj.resource_version(),
    }});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
}

/// Adds `finalizer` to `obj` (see [`set`]); `Ok(None)` when it is there already.
pub async fn add<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match with(obj, finalizer) {
        Some(finalizers) => set(api, obj, finalizers).await.map(Some),
        None => Ok(None),
    }
}

/// Removes `finalizer` from `obj` (see [`set`]); `Ok(None)` when it is not there.
pub async fn remove<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match without(obj, finalizer) {
        Some(finalizers) => set(api, obj, finalizers).await.map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http::{Method, Request, Response};
    use http_body_util::Full;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Client;
    use kube::api::ObjectMeta;
    use serde_json::Value;

    use super::*;

    const F: &str = "example.com/cleanup";

    fn cm(finalizers: &[&str], version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("cm".into()),
                namespace: Some("demo".into()),
                resource_version: Some(version.into()),
                finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[test]
    fn list_changes_are_none_when_nothing_changes() {
        assert_eq!(
            with(&cm(&["other"], "1"), F),
            Some(vec!["other".to_string(), F.to_string()])
        );
        assert_eq!(with(&cm(&[F], "1"), F), None);
        assert_eq!(
            without(&cm(&["a", F, "b"], "1"), F),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(without(&cm(&["a"], "1"), F), None);
        assert!(has(&cm(&[F], "1"), F) && !has(&cm(&[], "1"), F));
    }

    /// A fake API server holding `demo/cm` at resourceVersion "5"; records merge patches.
    fn fake(patches: Arc<Mutex<Vec<Value>>>) -> Api<ConfigMap> {
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let patches = patches.clone();
            async move {
                assert_eq!(req.method(), Method::PATCH);
                let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
                let patch: Value = serde_json::from_slice(&bytes).unwrap();
                patches.lock().unwrap().push(patch.clone());
                let body = if patch["metadata"]["resourceVersion"] == "5" {
                    let mut obj = serde_json::to_value(cm(&[], "6")).unwrap();
                    obj["metadata"]["finalizers"] = patch["metadata"]["finalizers"].clone();
                    (200, obj)
                } else {
                    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "Conflict", "message": "changed", "code": 409});
                    (409, status)
                };
                let mut response = Response::new(Full::new(Bytes::from(body.1.to_string())));
                *response.status_mut() = http::StatusCode::from_u16(body.0).unwrap();
                Ok::<_, Infallible>(response)
            }
        });
        Api::namespaced(Client::new(service, "demo"), "demo")
    }

    #[tokio::test]
    async fn add_and_remove_patch_with_the_read_version() {
        let patches = Arc::default();
        let api = fake(Arc::clone(&patches));
        let added = add(&api, &cm(&["other"], "5"), F).await.unwrap().unwrap();
        assert_eq!(added.finalizers(), ["other", F]);
        let removed = remove(&api, &cm(&["other", F], "5"), F)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(removed.finalizers(), ["other"]);
        assert_eq!(
            patches.lock().unwrap()[0],
            json!({"metadata": {"finalizers": ["other", F], "resourceVersion": "5"}})
        );
    }

    #[tokio::test]
    async fn nothing_to_do_sends_nothing_and_a_stale_copy_conflicts() {
        let patches = Arc::default();
        let api = fake(Arc::clone(&patches));
        assert!(add(&api, &cm(&[F], "5"), F).await.unwrap().is_none());
        assert!(remove(&api, &cm(&[], "5"), F).await.unwrap().is_none());
        assert!(patches.lock().unwrap().is_empty());
        let err = add(&api, &cm(&[], "4"), F).await.unwrap_err();
        assert!(crate::api::is_conflict(&err), "{err}");
    }
}
