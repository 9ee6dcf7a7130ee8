//! Watch-backed caches of API objects, published on a `watch` channel.

use std::collections::BTreeMap;
use std::fmt::Debug;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// Keeps every object of `api` in a list sent on the returned channel after each change;
/// the task ends when every receiver is gone.
pub fn spawn_store<K>(api: Api<K>) -> watch::Receiver<Vec<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (tx, rx) = watch::channel(Vec::new());
    tokio::spawn(async move {
        let mut items: BTreeMap<(String, String), K> = BTreeMap::new();
        let mut fresh: BTreeMap<(String, String), K> = BTreeMap::new();
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let changed = match event {
                Ok(watcher::Event::Apply(o)) => {
                    items.insert(key(&o), o);
                    true
                }
                Ok(watcher::Event::Delete(o)) => items.remove(&key(&o)).is_some(),
                Ok(watcher::Event::Init) => {
                    fresh.clear();
                    false
                }
                Ok(watcher::Event::InitApply(o)) => {
                    fresh.insert(key(&o), o);
                    false
                }
                Ok(watcher::Event::InitDone) => {
                    items = std::mem::take(&mut fresh);
                    true
                }
                Err(e) => {
                    tracing::debug!(error = %e, "watch error");
                    false
                }
            };
            if changed && tx.send(items.values().cloned().collect()).is_err() {
                return;
            }
        }
    });
    rx
}
