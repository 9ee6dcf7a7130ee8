//! The kubelet part: binds pending pods to the node and runs the pods bound to it.

pub mod containers;
pub mod spec;
pub mod status;
pub mod terminate;
mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::NodeConfig;
use crate::images::ImageMap;
use crate::netns::IpPool;

/// What every pod worker shares.
pub struct Ctx {
    /// The API server.
    pub client: Client,
    /// The node's settings.
    pub config: NodeConfig,
    /// Image -> local runtime.
    pub images: ImageMap,
    /// Pod IPs.
    pub ips: Mutex<IpPool>,
    /// Every Service (for the pods' /etc/hosts).
    pub services: watch::Receiver<Vec<Service>>,
}

struct Running {
    tx: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

async fn bind(client: Client, pod: Pod, node: String) {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let body = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.uid()},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    match api
        .create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &body)
        .await
    {
        Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), %node, "pod bound"),
        Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "binding failed"),
    }
}

/// Watches every pod: binds unscheduled ones to this node, runs those bound to it, and
/// publishes the current pods (for the proxy) on `pods_tx`. Returns after `shutdown` once
/// every pod worker has stopped its pod.
pub async fn run(
    ctx: Arc<Ctx>,
    pods_tx: watch::Sender<Vec<Pod>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let node = ctx.config.node_name.clone();
    let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
    let mut fresh: BTreeMap<String, Pod> = BTreeMap::new();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut binding: BTreeSet<String> = BTreeSet::new();
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = shutdown.changed() => None,
        };
        let Some(event) = event else { break };
        let mut touched: Vec<String> = Vec::new();
        match event {
            Ok(watcher::Event::Apply(p)) => {
                touched.push(p.uid().unwrap_or_default());
                pods.insert(p.uid().unwrap_or_default(), p);
            }
            Ok(watcher::Event::Delete(p)) => {
                let uid = p.uid().unwrap_or_default();
                pods.remove(&uid);
                touched.push(uid);
            }
            Ok(watcher::Event::Init) => fresh.clear(),
            Ok(watcher::Event::InitApply(p)) => {
                fresh.insert(p.uid().unwrap_or_default(), p);
            }
            Ok(watcher::Event::InitDone) => {
                let old = std::mem::take(&mut pods);
                pods = std::mem::take(&mut fresh);
                touched.extend(old.into_keys());
                touched.extend(pods.keys().cloned());
            }
            Err(e) => tracing::debug!(error = %e, "pod watch error"),
        }
        running.retain(|uid, r| {
            let finished = r.task.is_finished();
            if finished {
                done.insert(uid.clone());
            }
            !finished
        });
        for uid in touched {
            let pod = pods.get(&uid).cloned();
            if let Some(r) = running.get(&uid) {
                r.tx.send_replace(pod);
                continue;
            }
            let Some(pod) = pod else { continue };
            let spec = pod.spec.as_ref();
            let node_name = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
            if node_name.is_empty() {
                if pod.metadata.deletion_timestamp.is_none() && binding.insert(uid.clone()) {
                    tokio::spawn(bind(ctx.client.clone(), pod, node.clone()));
                }
            } else if node_name == node && !done.contains(&uid) {
                let (tx, rx) = watch::channel(Some(pod));
                let task = tokio::spawn(worker::run(ctx.clone(), rx, shutdown.clone()));
                running.insert(uid, Running { tx, task });
            }
        }
        pods_tx.send_replace(pods.values().cloned().collect());
    }
    for (_, r) in running {
        let _ = r.task.await;
    }
}
