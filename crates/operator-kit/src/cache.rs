//! Watch caches shared by the controllers, so that a reconcile reads memory instead of the API
//! server.
//!
//! Objects are cached in compact forms: [`PodLite`] keeps only what the controllers decide on
//! (metadata, phase, the Ready condition), and [`trim_meta`] drops what nobody reads. A
//! [`Feed`] runs one watch into a [`Store`] and tells its subscribers about every object that
//! changed once the store shows the change, so a reconcile triggered by an event sees at least
//! that event's state.

use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use tokio::sync::watch;

/// Annotation `kubectl apply` leaves on objects: a full copy of the applied object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no controller reads from an object's metadata: the managed fields and the
/// `kubectl apply` copy of the object (often the largest parts of an object).
pub fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Keeps only identity, ownership, deletion and (when `labels`) the labels of `meta`.
pub fn keep_identity(meta: &mut ObjectMeta, labels: bool) {
    let kept = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        generation: meta.generation.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        owner_references: meta.owner_references.take(),
        labels: if labels { meta.labels.take() } else { None },
        ..ObjectMeta::default()
    };
    *meta = kept;
}

/// Implements [`kube::Resource`] for a compact type `$lite` (with a `metadata: ObjectMeta`
/// field) as the API type `$full`, so that it can be watched and stored like `$full`. The
/// calling crate needs `kube` and `k8s-openapi` as dependencies.
#[macro_export]
macro_rules! resource_as {
    ($lite:ty, $full:ty) => {
        impl ::kube::Resource for $lite {
            type DynamicType = ();
            type Scope = <$full as ::kube::Resource>::Scope;
            fn kind(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$full as ::kube::Resource>::kind(dt)
            }
            fn group(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$full as ::kube::Resource>::group(dt)
            }
            fn version(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$full as ::kube::Resource>::version(dt)
            }
            fn plural(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$full as ::kube::Resource>::plural(dt)
            }
            fn meta(&self) -> &::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut ::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub use crate::resource_as;

/// The pod labels [`PodLite::trim`] keeps: Kubernetes' recommended name and instance labels
/// (`app.kubernetes.io/name`, `app.kubernetes.io/instance`) and the revision label that
/// StatefulSet-like controllers put on their pods (`controller-revision-hash`).
pub const KEPT_POD_LABELS: &[&str] = &[
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "controller-revision-hash",
];

/// A pod as the controllers keep it: identity, labels, owners, deletion, phase and the Ready
/// condition (deserialized from a full pod; the rest is never held in memory).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodLite {
    /// Metadata (trimmed with [`keep_identity`], labels kept).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Phase and Ready condition.
    #[serde(default)]
    pub status: PodStatusLite,
}

/// What [`PodLite`] keeps of a pod's status.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatusLite {
    /// `status.phase`.
    #[serde(default)]
    pub phase: Option<String>,
    /// The `Ready` condition (type, status, lastTransitionTime), if the pod has one.
    #[serde(default, rename = "conditions", deserialize_with = "ready_condition")]
    pub ready: Option<PodCondition>,
}

fn ready_condition<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PodCondition>, D::Error> {
    let conditions: Option<Vec<PodCondition>> = Option::deserialize(d)?;
    Ok(conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| PodCondition {
            type_: c.type_,
            status: c.status,
            last_transition_time: c.last_transition_time,
            ..PodCondition::default()
        }))
}

resource_as!(PodLite, Pod);

impl PodLite {
    /// The pod with what the cache holds (no spec).
    pub fn to_pod(&self) -> Pod {
        Pod {
            metadata: self.metadata.clone(),
            spec: None,
            status: Some(PodStatus {
                phase: self.status.phase.clone(),
                conditions: self.status.ready.clone().map(|c| vec![c]),
                ..PodStatus::default()
            }),
        }
    }

    /// Whether the pod is Ready and not being deleted.
    pub fn is_ready(&self) -> bool {
        self.metadata.deletion_timestamp.is_none()
            && self
                .status
                .ready
                .as_ref()
                .is_some_and(|c| c.status == "True")
    }

    /// Drops what no controller reads (see [`keep_identity`]), and the labels but those the
    /// controllers decide on ([`KEPT_POD_LABELS`]: the name and instance labels and the
    /// revision label).
    /// (Selectors are matched by the API server, on the watch and on lists.)
    pub fn trim(&mut self) {
        keep_identity(&mut self.metadata, true);
        if let Some(labels) = self.metadata.labels.as_mut() {
            labels.retain(|k, _| KEPT_POD_LABELS.contains(&k.as_str()));
        }
    }
}

/// Whether the caches a controller reads have been filled once; clone to wait on it.
#[derive(Clone, Debug)]
pub struct Synced(Vec<watch::Receiver<bool>>);

impl Synced {
    /// Synced once `rx` holds true.
    pub fn from_receiver(rx: watch::Receiver<bool>) -> Self {
        Self(vec![rx])
    }

    /// Synced when all of `parts` are.
    pub fn all(parts: impl IntoIterator<Item = Synced>) -> Self {
        Self(parts.into_iter().flat_map(|s| s.0).collect())
    }

    /// Whether every part has been filled.
    pub fn is_synced(&self) -> bool {
        self.0.iter().all(|rx| *rx.borrow())
    }

    /// Waits until every part has been filled; false when a part's feed is gone first.
    pub async fn wait(&self) -> bool {
        for rx in &self.0 {
            let mut rx = rx.clone();
            if rx.wait_for(|synced| *synced).await.is_err() {
                return false;
            }
        }
        true
    }
}

type Subscriber<K> = Box<dyn Fn(&K, bool) + Send + Sync>;

/// One watch feeding a [`Store`]: subscribers hear of every object that was added, changed
/// or deleted (the flag: gone), after the store shows it (after a re-list: of every object
/// before and after).
pub struct Feed<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    events: BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
    subscribers: Vec<Subscriber<K>>,
    synced_tx: watch::Sender<bool>,
    synced_rx: watch::Receiver<bool>,
    what: Cow<'static, str>,
}

impl<K> Feed<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// A feed of the objects `api` and `config` select, each passed through `trim` before it
    /// is stored.
    pub fn new(
        api: kube::Api<K>,
        config: watcher::Config,
        trim: impl FnMut(&mut K) + Send + 'static,
    ) -> Self {
        let events = watcher(api, config).default_backoff().modify(trim);
        Self::from_events(events)
    }

    /// Like [`Feed::new`], keeping only the objects for which `keep` is true (an object that
    /// stops qualifying leaves the store as if deleted).
    pub fn filtered(
        api: kube::Api<K>,
        config: watcher::Config,
        trim: impl FnMut(&mut K) + Send + 'static,
        keep: fn(&K) -> bool,
    ) -> Self {
        let events = watcher(api, config)
            .default_backoff()
            .modify(trim)
            .filter_map(move |event| {
                futures::future::ready(match event {
                    Ok(watcher::Event::Apply(k)) if !keep(&k) => {
                        Some(Ok(watcher::Event::Delete(k)))
                    }
                    Ok(watcher::Event::InitApply(k)) if !keep(&k) => None,
                    other => Some(other),
                })
            });
        Self::from_events(events)
    }

    /// A feed of already decoded watch events.
    pub fn from_events(
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    ) -> Self {
        let (store, writer) = reflector::store();
        let (synced_tx, synced_rx) = watch::channel(false);
        Self {
            store,
            events: events.reflect(writer).boxed(),
            subscribers: Vec::new(),
            synced_tx,
            synced_rx,
            what: K::plural(&()).into_owned().into(),
        }
    }

    /// The cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Whether the cache has been filled.
    pub fn synced(&self) -> Synced {
        Synced(vec![self.synced_rx.clone()])
    }

    /// Calls `f` with every object that changes, and whether it is gone, once the store
    /// shows the change.
    pub fn subscribe(&mut self, f: impl Fn(&K, bool) + Send + Sync + 'static) {
        self.subscribers.push(Box::new(f));
    }

    /// Runs the watch until its task is aborted (errors are retried with backoff).
    pub async fn run(self) {
        let Feed {
            store,
            mut events,
            subscribers,
            synced_tx,
            what,
            ..
        } = self;
        let notify = |k: &K, gone: bool| subscribers.iter().for_each(|s| s(k, gone));
        let mut before_relist: Vec<Arc<K>> = Vec::new();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(k)) => notify(&k, false),
                Ok(watcher::Event::Delete(k)) => notify(&k, true),
                Ok(watcher::Event::Init) => {
                    if *synced_tx.borrow() {
                        before_relist = store.state();
                    }
                }
                Ok(watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::InitDone) => {
                    if *synced_tx.borrow() {
                        // objects may have changed or gone while the watch was down
                        for k in std::mem::take(&mut before_relist) {
                            let gone = store.get(&reflector::ObjectRef::from_obj(&*k)).is_none();
                            if gone {
                                notify(&k, true);
                            }
                        }
                        for k in store.state() {
                            notify(&k, false);
                        }
                    } else {
                        tracing::debug!(resource = %what, "cache filled");
                        synced_tx.send_replace(true);
                    }
                }
                Err(e) => tracing::warn!(resource = %what, error = %e, "watch failed; retrying"),
            }
        }
    }
}

/// Sends every object of `store` to `tx` once per `every`, spread evenly over the period: the
/// controllers' resync (a safety net; watches trigger the real work). One timer for all
/// objects, rather than a scheduled requeue per object.
pub async fn resync<K>(
    store: Store<K>,
    tx: futures::channel::mpsc::UnboundedSender<reflector::ObjectRef<K>>,
    every: Duration,
) where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let every = every.max(Duration::from_millis(1));
    loop {
        let refs: Vec<reflector::ObjectRef<K>> = store
            .state()
            .iter()
            .map(|o| reflector::ObjectRef::from_obj(&**o))
            .collect();
        if refs.is_empty() {
            tokio::time::sleep(every.min(Duration::from_secs(1))).await;
            continue;
        }
        let gap = every / u32::try_from(refs.len()).unwrap_or(u32::MAX);
        for r in refs {
            tokio::time::sleep(gap).await;
            if tx.unbounded_send(r).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_lite_keeps_what_the_controllers_read() {
        let mut pod: PodLite = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-0", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "web"},
                "annotations": {"big": "x"},
                "ownerReferences": [{"apiVersion": "apps.k8s.appscode.com/v1", "kind": "PetSet",
                    "name": "web", "uid": "p1", "controller": true}],
                "managedFields": [{"manager": "m"}]
            },
            "spec": {"containers": [{"name": "c", "image": "img"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z",
                 "message": "m"}
            ]}
        }))
        .unwrap();
        pod.trim();
        assert!(pod.is_ready());
        assert!(pod.metadata.annotations.is_none());
        assert!(pod.metadata.managed_fields.is_none());
        let full = pod.to_pod();
        let labels = full.metadata.labels.unwrap();
        assert!(
            labels.is_empty(),
            "only the labels the controllers read: {labels:?}"
        );
        assert_eq!(full.metadata.owner_references.unwrap()[0].uid, "p1");
        let status = full.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let conditions = status.conditions.unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, "Ready");
        assert!(conditions[0].last_transition_time.is_some());
        assert!(conditions[0].message.is_none());
    }

    #[test]
    fn a_pod_being_deleted_or_without_ready_is_not_ready() {
        let pod = |status: serde_json::Value, deleting: bool| -> PodLite {
            let mut meta = json!({"name": "p"});
            if deleting {
                meta["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
            }
            serde_json::from_value(json!({"metadata": meta, "status": status})).unwrap()
        };
        let ready = json!({"conditions": [{"type": "Ready", "status": "True"}]});
        assert!(pod(ready.clone(), false).is_ready());
        assert!(!pod(ready, true).is_ready());
        assert!(
            !pod(
                json!({"conditions": [{"type": "Ready", "status": "False"}]}),
                false
            )
            .is_ready()
        );
        assert!(!pod(json!({}), false).is_ready());
        assert!(!pod(json!({"conditions": null}), false).is_ready());
    }

    #[tokio::test]
    async fn resync_sends_every_object_once_per_period() {
        let (store, mut writer) = reflector::store::<PodLite>();
        for name in ["a", "b", "c"] {
            let pod: PodLite =
                serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}}))
                    .unwrap();
            writer.apply_watcher_event(&watcher::Event::Apply(pod));
        }
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let ticker = tokio::spawn(resync(store, tx, Duration::from_millis(30)));
        let first: Vec<String> =
            tokio::time::timeout(Duration::from_secs(5), rx.take(6).collect::<Vec<_>>())
                .await
                .expect("two periods in time")
                .into_iter()
                .map(|r| r.name)
                .collect();
        ticker.abort();
        let mut period: Vec<&String> = first[..3].iter().collect();
        period.sort();
        assert_eq!(period, ["a", "b", "c"]);
        assert_eq!(first[..3], first[3..], "the same order each period");
    }

    #[test]
    fn trim_meta_drops_managed_fields_and_the_apply_copy() {
        let mut meta: ObjectMeta = serde_json::from_value(json!({
            "name": "a",
            "annotations": {LAST_APPLIED: "{}", "keep": "1"},
            "managedFields": [{"manager": "m"}]
        }))
        .unwrap();
        trim_meta(&mut meta);
        assert!(meta.managed_fields.is_none());
        assert_eq!(meta.annotations.as_ref().map(|a| a.len()), Some(1));
        let mut only_apply: ObjectMeta =
            serde_json::from_value(json!({"annotations": {LAST_APPLIED: "{}"}})).unwrap();
        trim_meta(&mut only_apply);
        assert!(only_apply.annotations.is_none());
    }
}
