//! Waiting for a condition on the cluster: watches, bounded by a timeout, with what was last
//! seen in the error when the time runs out.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector, wait::await_condition};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest part of an object's status an error message quotes.
const STATUS_QUOTE: usize = 3000;

/// The `status` of `object` as compact JSON, cut to a readable length.
pub fn status_of<K: Serialize>(object: &K) -> String {
    let status = serde_json::to_value(object)
        .ok()
        .and_then(|v| v.get("status").cloned())
        .unwrap_or(serde_json::Value::Null);
    let mut text = status.to_string();
    if text.len() > STATUS_QUOTE {
        let mut cut = STATUS_QUOTE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Waits until object `name` exists and satisfies `cond`, watching it; returns it.
/// After `timeout`, fails naming `what` and quoting the object's status.
pub async fn for_object<K, F>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: F,
) -> anyhow::Result<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static,
    F: Fn(&K) -> bool + Send + 'static,
{
    let waiting = await_condition(api.clone(), name, move |o: Option<&K>| o.is_some_and(&cond));
    match tokio::time::timeout(timeout, waiting).await {
        Ok(Ok(Some(object))) => Ok(object),
        Ok(Ok(None)) => bail!("{what}: {name} disappeared"),
        Ok(Err(e)) => Err(e).with_context(|| format!("{what}: watching {name}")),
        Err(_) => {
            let seen = match api.get_opt(name).await {
                Ok(Some(o)) => format!("status {}", status_of(&o)),
                Ok(None) => "it does not exist".to_string(),
                Err(e) => format!("cannot read it: {e}"),
            };
            bail!("{what}: not within {} s; {name}: {seen}", timeout.as_secs())
        }
    }
}

/// Waits until object `name` no longer exists.
pub async fn until_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> anyhow::Result<()>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static,
{
    let waiting = await_condition(api.clone(), name, |o: Option<&K>| o.is_none());
    match tokio::time::timeout(timeout, waiting).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e).with_context(|| format!("watching {name} until it is gone")),
        Err(_) => {
            let seen = match api.get_opt(name).await {
                Ok(Some(o)) => format!(
                    "still there (deletionTimestamp {:?}, finalizers {:?}), status {}",
                    o.meta().deletion_timestamp,
                    o.meta().finalizers,
                    status_of(&o)
                ),
                Ok(None) => "gone just now".to_string(),
                Err(e) => format!("cannot read it: {e}"),
            };
            bail!("{name} not gone within {} s: {seen}", timeout.as_secs())
        }
    }
}

/// Waits until the objects matching `label_selector` satisfy `cond`, watching them; returns
/// them. After `timeout`, fails naming `what` with `describe` of what was last seen.
pub async fn for_list<K, F, D>(
    api: &Api<K>,
    label_selector: &str,
    what: &str,
    timeout: Duration,
    cond: F,
    describe: D,
) -> anyhow::Result<Vec<K>>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    F: Fn(&[K]) -> bool,
    D: Fn(&[K]) -> String,
{
    let (reader, writer) = reflector::store::<K>();
    let config = watcher::Config::default().labels(label_selector);
    let mut stream = reflector(
        writer,
        watcher::watcher(api.clone(), config).default_backoff(),
    )
    .boxed();
    let snapshot = || -> Vec<K> {
        let mut items: Vec<K> = reader.state().iter().map(|o| (**o).clone()).collect();
        items.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
        items
    };
    let mut synced = false;
    let mut last_error = None;
    let waiting = async {
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::InitDone) => synced = true,
                Ok(_) => {}
                Err(e) => {
                    last_error = Some(e.to_string());
                    continue;
                }
            }
            if synced {
                let items = snapshot();
                if cond(&items) {
                    return Some(items);
                }
            }
        }
        None
    };
    match tokio::time::timeout(timeout, waiting).await {
        Ok(Some(items)) => Ok(items),
        Ok(None) => bail!("{what}: the watch ended"),
        Err(_) => {
            let mut seen = describe(&snapshot());
            if let Some(e) = last_error {
                seen.push_str(&format!(" (last watch error: {e})"));
            }
            bail!("{what}: not within {} s; seen: {seen}", timeout.as_secs())
        }
    }
}
