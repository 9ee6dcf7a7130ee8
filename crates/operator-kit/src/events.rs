//! Kubernetes events (`events.k8s.io/v1`) with a compact de-duplication cache.
//!
//! Same behaviour as kube's `Recorder`: an event is keyed by its type, reason and the object it
//! is about; a repeat within [`SERIES_WINDOW`] becomes a series (a patch of the first event's
//! `series.count` and `series.lastObservedTime`) instead of a new event. kube's recorder keeps
//! a full copy of every event it published in the last six minutes, a few kilobytes each,
//! which for a provisioner creating thousands of Pgpools at once came to more than its caches;
//! this one keeps the event's name, namespace and count (about a hundred bytes). Every
//! operator of the workspace publishes through it.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};

pub use kube::runtime::events::EventType;

/// Repeats within this window form a series.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Kubernetes limits an event reason to 128 characters.
const MAX_REASON_CHARS: usize = 128;
/// Kubernetes limits an event note to 1 KiB.
const MAX_NOTE_BYTES: usize = 1024;
/// How often expired entries are dropped from the cache.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Published {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

#[derive(Debug)]
struct Cache {
    entries: HashMap<u64, Published>,
    pruned: Instant,
}

/// Publishes events as one controller of one operator replica. Cheap to clone; clones share
/// the de-duplication cache. Needs RBAC `create` and `patch` on `events.k8s.io` events.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    cache: Arc<Mutex<Cache>>,
}

impl EventRecorder {
    /// A recorder that reports as `controller` (e.g. `pgpool-provisioner`) from `instance`
    /// (the pod name).
    pub fn new(client: Client, controller: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            client,
            controller: controller.into(),
            instance: instance.into(),
            cache: Arc::new(Mutex::new(Cache {
                entries: HashMap::new(),
                pruned: Instant::now(),
            })),
        }
    }

    /// Publishes one event about `regarding`. The `reason` (PascalCase) is also the event's
    /// action. Over-long reasons and messages are cut to the API server's limits.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let key = event_key(regarding, type_, &reason);
        let now = Instant::now();
        let repeat = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if now.duration_since(cache.pruned) >= PRUNE_EVERY {
                cache
                    .entries
                    .retain(|_, p| now.duration_since(p.last) < SERIES_WINDOW);
                cache.pruned = now;
            }
            match cache.entries.get_mut(&key) {
                Some(p) if now.duration_since(p.last) < SERIES_WINDOW => {
                    p.count = p.count.saturating_add(1);
                    p.last = now;
                    Some((p.namespace.clone(), p.name.clone(), p.count))
                }
                _ => None,
            }
        };
        if let Some((namespace, name, count)) = repeat {
            let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({
                "series": {"count": count, "lastObservedTime": MicroTime(Timestamp::now())}
            });
            events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            return Ok(());
        }
        let event = self.event(regarding, type_, reason, message);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        events.create(&PostParams::default(), &event).await?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .insert(
                key,
                Published {
                    namespace,
                    name,
                    count: 1,
                    last: now,
                },
            );
        Ok(())
    }

    fn event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: String,
        message: &str,
    ) -> Event {
        let now = Timestamp::now();
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        Event {
            action: Some(reason.clone()),
            reason: Some(reason),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: Some(truncate_bytes(message, MAX_NOTE_BYTES).to_string()),
            metadata: ObjectMeta {
                namespace: Some(namespace),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..Event::default()
        }
    }

    /// Publishes a `Normal` event about `obj`. Best effort: a failure is logged and
    /// otherwise ignored, so that a reconcile never fails because of an event.
    pub async fn normal<K>(&self, obj: &K, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        self.best_effort(obj, EventType::Normal, reason, message)
            .await;
    }

    /// Publishes a `Warning` event about `obj`. Best effort, like [`Self::normal`].
    pub async fn warning<K>(&self, obj: &K, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        self.best_effort(obj, EventType::Warning, reason, message)
            .await;
    }

    async fn best_effort<K>(&self, obj: &K, type_: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let regarding = obj.object_ref(&());
        if let Err(error) = self.publish(&regarding, type_, reason, message).await {
            tracing::warn!(
                kind = regarding.kind.as_deref().unwrap_or_default(),
                namespace = regarding.namespace.as_deref().unwrap_or_default(),
                name = regarding.name.as_deref().unwrap_or_default(),
                reason,
                %error,
                "cannot publish event"
            );
        }
    }

    /// Number of events remembered for series (for tests).
    pub fn remembered(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }
}

fn event_key(regarding: &ObjectReference, type_: EventType, reason: &str) -> u64 {
    let mut h = DefaultHasher::new();
    matches!(type_, EventType::Warning).hash(&mut h);
    reason.hash(&mut h);
    (
        &regarding.api_version,
        &regarding.kind,
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
        &regarding.field_path,
    )
        .hash(&mut h);
    h.finish()
}

/// The longest prefix of `s` that fits in `max` bytes without splitting a character.
fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("kubedb.com/v1alpha2".into()),
            kind: Some("Pgpool".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn keys_separate_objects_types_and_reasons() {
        let a = event_key(&reference("a"), EventType::Normal, "Created");
        assert_eq!(a, event_key(&reference("a"), EventType::Normal, "Created"));
        assert_ne!(a, event_key(&reference("b"), EventType::Normal, "Created"));
        assert_ne!(a, event_key(&reference("a"), EventType::Warning, "Created"));
        assert_ne!(a, event_key(&reference("a"), EventType::Normal, "Deleted"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_bytes("abc", 10), "abc");
        assert_eq!(truncate_bytes("abcdef", 3), "abc");
        assert_eq!(truncate_bytes("aé", 2), "a");
    }

    #[tokio::test]
    async fn a_repeat_becomes_a_series_of_the_first_event() {
        let server = testkit::TestServer::new();
        let recorder = EventRecorder::new(server.client(), "ctl", "pod-0");
        let r = reference("a");
        recorder
            .publish(&r, EventType::Warning, "Failed", "first")
            .await
            .unwrap();
        recorder
            .publish(&r, EventType::Warning, "Failed", "again")
            .await
            .unwrap();
        recorder
            .publish(&r, EventType::Normal, "Ready", &"x".repeat(2000))
            .await
            .unwrap();
        let events: Api<Event> = Api::namespaced(server.client(), "ns");
        let list = events.list(&Default::default()).await.unwrap().items;
        assert_eq!(list.len(), 2, "{list:?}");
        let failed = list
            .iter()
            .find(|e| e.reason.as_deref() == Some("Failed"))
            .unwrap();
        assert_eq!(failed.series.as_ref().map(|s| s.count), Some(2));
        assert_eq!(failed.note.as_deref(), Some("first"));
        assert_eq!(failed.reporting_controller.as_deref(), Some("ctl"));
        assert_eq!(failed.reporting_instance.as_deref(), Some("pod-0"));
        assert_eq!(failed.regarding.as_ref(), Some(&r));
        let ready = list
            .iter()
            .find(|e| e.reason.as_deref() == Some("Ready"))
            .unwrap();
        assert_eq!(ready.note.as_ref().map(String::len), Some(MAX_NOTE_BYTES));
        assert_eq!(ready.type_.as_deref(), Some("Normal"));
        assert_eq!(recorder.remembered(), 2);
    }
}
