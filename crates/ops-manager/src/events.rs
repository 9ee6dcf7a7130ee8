//! Events published in the background, one after the other in the order they were raised, so
//! that a reconcile never waits for an event's round trip (a write: about 15 ms on a real API
//! server, and a request raises one or two per step).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use operator_kit::{EventRecorder, EventType};
use tokio::sync::mpsc;

/// Events waiting to be published; beyond this, new ones are dropped (and logged), so that an
/// API server that refuses events cannot make the ops-manager's memory grow.
const QUEUE: usize = 1024;

struct Item {
    regarding: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

/// Queues events for a background task that publishes them with an [`EventRecorder`].
#[derive(Clone)]
pub(crate) struct EventQueue {
    tx: mpsc::Sender<Item>,
}

impl EventQueue {
    /// The queue and its publishing task. The task ends once every queue handle is dropped
    /// and the queued events are published.
    pub fn start(recorder: EventRecorder) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
        let task = tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                if let Err(error) = recorder
                    .publish(&item.regarding, item.type_, &item.reason, &item.message)
                    .await
                {
                    tracing::warn!(
                        kind = item.regarding.kind.as_deref().unwrap_or_default(),
                        namespace = item.regarding.namespace.as_deref().unwrap_or_default(),
                        name = item.regarding.name.as_deref().unwrap_or_default(),
                        reason = item.reason,
                        %error,
                        "cannot publish event"
                    );
                }
            }
        });
        (Self { tx }, task)
    }

    /// Queue a `Normal` event about `obj`.
    pub fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: &str) {
        self.push(obj, EventType::Normal, reason, message);
    }

    /// Queue a `Warning` event about `obj`.
    pub fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: &str) {
        self.push(obj, EventType::Warning, reason, message);
    }

    fn push<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let item = Item {
            regarding: obj.object_ref(&()),
            type_,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        if self.tx.try_send(item).is_err() {
            tracing::warn!(reason, "event queue full or closed: event dropped");
        }
    }
}
