//! A simulated kubelet: binds pods to a node, reports them Running/Ready (or not) with the
//! spec's images, and finishes graceful deletions.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// How containers running an image behave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageBehavior {
    /// Running and Ready after the delay.
    #[default]
    Ready,
    /// Running but never Ready (a broken image whose readiness probe fails).
    NeverReady,
    /// Waiting in `CrashLoopBackOff`, restart count increasing.
    Crash,
}

/// Configuration of a [`Kubelet`].
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// Delay between seeing a pod (or a change of its images) and reporting its status.
    pub ready_delay: Duration,
    /// Behaviour per exact image reference; images not listed are [`ImageBehavior::Ready`].
    pub images: HashMap<String, ImageBehavior>,
    /// Node the kubelet binds pods to (pods bound to other nodes are ignored).
    pub node_name: String,
    /// Cap on the grace period honoured when deleting terminating pods (default zero: delete
    /// at once).
    pub max_grace: Duration,
    /// How often a crashing container's restart count increases.
    pub crash_interval: Duration,
    /// Only manage pods in this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// What the node can give pods (`cpu`, `memory`); a pod whose requests exceed it is not
    /// bound and stays Pending with `PodScheduled=False` (reason `Unschedulable`), as the
    /// scheduler leaves it. Unlimited when `None`.
    pub allocatable: Option<crate::kubelet_capacity::Allocatable>,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        Self {
            ready_delay: Duration::from_millis(50),
            images: HashMap::new(),
            node_name: "testkit-node".into(),
            max_grace: Duration::ZERO,
            crash_interval: Duration::from_secs(1),
            namespace: None,
            allocatable: None,
        }
    }
}

impl KubeletConfig {
    /// Give the node `cpu` and `memory` for pods (quantities such as `4` and `8Gi`).
    pub fn allocatable(mut self, cpu: &str, memory: &str) -> Self {
        self.allocatable = crate::kubelet_capacity::Allocatable::new(cpu, memory);
        self
    }

    /// Set the ready delay.
    pub fn ready_delay(mut self, d: Duration) -> Self {
        self.ready_delay = d;
        self
    }

    /// Set the behaviour of one image (exact reference, e.g. `ghcr.io/x/pgpool2:4.6.0`).
    pub fn image(mut self, image: &str, behavior: ImageBehavior) -> Self {
        self.images.insert(image.to_string(), behavior);
        self
    }

    /// Set the grace-period cap.
    pub fn max_grace(mut self, d: Duration) -> Self {
        self.max_grace = d;
        self
    }

    /// Only manage pods in `ns`.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_string());
        self
    }

    fn behavior(&self, image: &str) -> ImageBehavior {
        self.images.get(image).copied().unwrap_or_default()
    }
}

/// The simulated kubelet. See [`Kubelet::start`].
pub struct Kubelet;

/// Running kubelet; stops when dropped.
pub struct KubeletHandle {
    cancel: CancellationToken,
}

impl KubeletHandle {
    /// Stop the kubelet (same as dropping the handle).
    pub fn stop(self) {}
}

impl Drop for KubeletHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Kubelet {
    /// Start a kubelet using `client` (use `server.client_as("kubelet")` so its writes can be
    /// told apart in the request log). Must be called within a Tokio runtime.
    pub fn start(client: Client, cfg: KubeletConfig) -> KubeletHandle {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let mut k = Runner {
                client,
                cfg,
                pods: HashMap::new(),
                tasks: JoinSet::new(),
                ips: 0,
            };
            k.run(stop).await;
            k.tasks.abort_all();
        });
        KubeletHandle { cancel }
    }
}

struct PodTrack {
    /// What the pod asks of the node.
    usage: crate::kubelet_capacity::Usage,
    signature: String,
    status_task: Option<AbortHandle>,
    deleting: bool,
    ip: String,
}

struct Runner {
    client: Client,
    cfg: KubeletConfig,
    pods: HashMap<String, PodTrack>,
    tasks: JoinSet<()>,
    ips: u32,
}

fn images(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn init_images(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The status the kubelet reports for a pod.
fn pod_status(pod: &Pod, cfg: &KubeletConfig, ip: &str, restarts: i64) -> Value {
    let t = now();
    let uid = pod.uid().unwrap_or_default();
    let mut all_ready = true;
    let containers: Vec<Value> = images(pod)
        .into_iter()
        .map(|(name, image)| {
            let id = format!("testkit://{uid}-{name}");
            match cfg.behavior(&image) {
                ImageBehavior::Ready => json!({
                    "name": name, "image": image, "imageID": format!("{image}@sha256:testkit"),
                    "containerID": id, "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": t}},
                }),
                ImageBehavior::NeverReady => {
                    all_ready = false;
                    json!({
                        "name": name, "image": image, "imageID": format!("{image}@sha256:testkit"),
                        "containerID": id, "ready": false, "started": true, "restartCount": 0,
                        "state": {"running": {"startedAt": t}},
                    })
                }
                ImageBehavior::Crash => {
                    all_ready = false;
                    json!({
                        "name": name, "image": image, "imageID": format!("{image}@sha256:testkit"),
                        "containerID": id, "ready": false, "started": false, "restartCount": restarts,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off restarting failed container {name}")}},
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": t, "finishedAt": t}},
                    })
                }
            }
        })
        .collect();
    let inits: Vec<Value> = init_images(pod)
        .into_iter()
        .map(|(name, image)| {
            json!({
                "name": name, "image": image, "imageID": format!("{image}@sha256:testkit"),
                "containerID": format!("testkit://{uid}-{name}"), "ready": true, "started": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t}},
            })
        })
        .collect();
    let ready = if all_ready { "True" } else { "False" };
    let cond =
        |ty: &str, status: &str| json!({"type": ty, "status": status, "lastTransitionTime": t});
    let mut status = json!({
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "hostIPs": [{"ip": "10.0.0.1"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": t,
        "qosClass": "BestEffort",
        "conditions": [
            cond("PodReadyToStartContainers", "True"),
            cond("Initialized", "True"),
            cond("Ready", ready),
            cond("ContainersReady", ready),
            cond("PodScheduled", "True"),
        ],
        "containerStatuses": containers,
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    }
    status
}

/// Retry a request a few times on errors other than 404/409 (e.g. injected faults).
async fn retry<T, F, Fut>(mut f: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                return Err(kube::Error::Api(s));
            }
            Err(e) if attempt >= 50 => return Err(e),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

impl Runner {
    /// What the pods bound here and not being deleted ask of the node.
    fn used(&self) -> crate::kubelet_capacity::Usage {
        self.pods
            .values()
            .filter(|t| !t.deleting)
            .fold(Default::default(), |u, t| u + t.usage)
    }

    async fn run(&mut self, stop: CancellationToken) {
        let api: Api<Pod> = match &self.cfg.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                ev = stream.next() => match ev {
                    Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => self.on_pod(p),
                    Some(Ok(watcher::Event::Delete(p))) => {
                        if let Some(t) = self.pods.remove(&p.uid().unwrap_or_default())
                            && let Some(h) = t.status_task
                        {
                            h.abort();
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::debug!("kubelet watch error: {e}"),
                    None => return,
                }
            }
        }
    }

    fn on_pod(&mut self, pod: Pod) {
        let Some(uid) = pod.uid() else {
            return;
        };
        let name = pod.name_any();
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        if node.is_empty() {
            if pod.metadata.deletion_timestamp.is_some() {
                return;
            }
            if let Some(why) = self
                .cfg
                .allocatable
                .as_ref()
                .and_then(|a| a.refuses(&pod, self.used()))
            {
                if crate::kubelet_capacity::reported_unschedulable(&pod) {
                    return;
                }
                let status = crate::kubelet_capacity::unschedulable_status(&why);
                self.tasks.spawn(async move {
                    let res = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                        .await;
                    if let Err(e) = res {
                        tracing::debug!("kubelet: status of {ns}/{name} failed: {e}");
                    }
                });
                return;
            }
            let node = self.cfg.node_name.clone();
            self.tasks.spawn(async move {
                let body = json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                });
                let pp = PostParams::default();
                let res =
                    retry(|| api.create_subresource::<_, Value>("binding", &name, &pp, &body))
                        .await;
                if let Err(e) = res {
                    tracing::debug!("kubelet: binding {ns}/{name} failed: {e}");
                }
            });
            return;
        }
        if node != self.cfg.node_name {
            return;
        }
        if !self.pods.contains_key(&uid) {
            self.ips += 1;
            let n = self.ips;
            self.pods.insert(
                uid.clone(),
                PodTrack {
                    usage: crate::kubelet_capacity::usage(&pod),
                    signature: String::new(),
                    status_task: None,
                    deleting: false,
                    ip: format!("10.244.{}.{}", (n / 250) % 250, n % 250 + 1),
                },
            );
        }
        let Some(track) = self.pods.get_mut(&uid) else {
            return;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            if track.deleting {
                return;
            }
            track.deleting = true;
            if let Some(h) = track.status_task.take() {
                h.abort();
            }
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .map(|s| Duration::from_secs(s.max(0) as u64))
                .unwrap_or_default()
                .min(self.cfg.max_grace);
            self.tasks.spawn(async move {
                if !grace.is_zero() {
                    tokio::time::sleep(grace).await;
                }
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                if let Err(e) = retry(|| api.delete(&name, &dp)).await {
                    tracing::debug!("kubelet: deleting {ns}/{name} failed: {e}");
                }
            });
            return;
        }
        let behaviours: Vec<String> = images(&pod)
            .iter()
            .chain(init_images(&pod).iter())
            .map(|(n, i)| format!("{n}={i}:{:?}", self.cfg.behavior(i)))
            .collect();
        let signature = behaviours.join(",");
        if track.signature == signature {
            return;
        }
        track.signature = signature;
        if let Some(h) = track.status_task.take() {
            h.abort();
        }
        let cfg = self.cfg.clone();
        let ip = track.ip.clone();
        let crashing = images(&pod)
            .iter()
            .any(|(_, i)| cfg.behavior(i) == ImageBehavior::Crash);
        let handle = self.tasks.spawn(async move {
            tokio::time::sleep(cfg.ready_delay).await;
            let mut restarts = 0i64;
            loop {
                let status = pod_status(&pod, &cfg, &ip, restarts);
                let res = api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await;
                if let Err(e) = res {
                    tracing::debug!("kubelet: status of {ns}/{name} failed: {e}");
                }
                if !crashing || cfg.crash_interval.is_zero() {
                    return;
                }
                tokio::time::sleep(cfg.crash_interval).await;
                restarts += 1;
            }
        });
        track.status_task = Some(handle);
    }
}
