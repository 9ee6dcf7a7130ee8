//! A small helper around kube's event [`Recorder`].

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, Recorder, Reporter};

pub use kube::runtime::events::EventType;

/// Kubernetes limits an event reason to 128 characters.
const MAX_REASON_CHARS: usize = 128;
/// Kubernetes limits an event note to 1 KiB.
const MAX_NOTE_BYTES: usize = 1024;

/// Publishes Kubernetes events (`events.k8s.io/v1`) for objects, as one controller of
/// one operator replica. Cheap to clone; clones share the de-duplication cache, so
/// repeated identical events become one event with a growing series count.
///
/// Needs RBAC `create` and `patch` on `events` in the `events.k8s.io` group.
#[derive(Clone)]
pub struct EventRecorder {
    recorder: Recorder,
}

impl EventRecorder {
    /// A recorder that reports as `controller` (e.g. `pgpool-provisioner`) from
    /// `instance` (the pod name).
    pub fn new(
        client: kube::Client,
        controller: impl Into<String>,
        instance: impl Into<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: controller.into(),
            instance: Some(instance.into()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes one event about the object `regarding`. The `reason` (PascalCase, e.g.
    /// `ReconcileFailed`) is also used as the event's action. Over-long reasons and
    /// messages are cut to the API server's limits.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let event = Event {
            type_,
            action: reason.clone(),
            reason,
            note: Some(truncate_bytes(message, MAX_NOTE_BYTES).to_string()),
            secondary: None,
        };
        self.recorder.publish(&event, regarding).await
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

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_bytes("abc", 10), "abc");
        assert_eq!(truncate_bytes("abcdef", 3), "abc");
        // "é" is two bytes: cutting at 2 would split it.
        assert_eq!(truncate_bytes("aé", 2), "a");
    }
}
