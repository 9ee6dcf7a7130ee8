//! A local node: plays the kubelet and kube-proxy for this one machine, talking to the API
//! server only through [`kube::Client`] (so it runs against testkit's in-memory API server
//! and any real API server alike). Needs root (namespaces, mounts, links).
//!
//! Kubelet part ([`pods`]):
//! - binds Pending pods without `nodeName` to itself (`pods/binding`) and runs the pods bound
//!   to it; an [image map](images) says which host paths (or which test command) stand for
//!   each image; an unmapped image fails the container with `ErrImagePull`;
//! - each pod gets its own network namespace with an IP on a host bridge (default
//!   10.244.0.0/16, gateway = first address) ([`netns`]); each container its own mount, PID,
//!   UTS and IPC namespace over a private overlay of the host's root file system, with the
//!   pod's volumes (Secret, ConfigMap, downward API, projected, emptyDir, hostPath;
//!   [`volumes`]) and the image's host paths at their paths, `/etc/hosts` resolving every
//!   Service (`<svc>.<ns>.svc[.cluster.local]`), run as PID 1 under `runAsUser`/group/fsGroup
//!   ([`container`]);
//! - init containers run to completion first; startup, readiness and liveness probes
//!   (`exec` in the container, `tcpSocket`, `httpGet`) run with their timing ([`probes`]);
//!   exits restart with back-off (`CrashLoopBackOff`); the status (phase, conditions,
//!   podIP(s), container statuses) goes through the status subresource;
//! - on `deletionTimestamp`: preStop, SIGTERM, SIGKILL when the grace period is over, then
//!   the final delete (grace 0, uid precondition) and cleanup.
//!
//! kube-proxy part ([`proxy`]): every ClusterIP goes on the bridge (/32) and each TCP port
//! gets a userspace proxy; each new connection goes round-robin to one Ready endpoint (pods
//! from the selector that are Ready and not terminating, or EndpointSlices for selector-less
//! Services); changes apply after a propagation delay (default 1 s); established
//! connections are never cut.
//!
//! Limits: one node; TCP only; no `hostNetwork`; no resource limits, cgroups, seccomp or
//! capabilities beyond dropping to the pod's user (`allowPrivilegeEscalation: false` sets
//! no_new_privs; `readOnlyRootFilesystem` remounts the root read-only); volume files are
//! written when the pod starts and not updated; ClusterIPs from two API servers
//! must not overlap on one machine (testkit always allocates from 10.96.0.0/16).

pub mod container;
pub mod images;
pub mod netns;
pub mod pods;
pub mod probes;
pub mod proxy;
mod store;
pub mod volumes;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use images::ImageMap;
pub use netns::NetConfig;

/// Settings of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The Node name pods are bound to.
    pub node_name: String,
    /// Where pod folders (volumes, logs, overlays) live.
    pub state_dir: PathBuf,
    /// Pod network.
    pub net: NetConfig,
    /// How long endpoint changes take to reach the proxy.
    pub propagation_delay: Duration,
    /// First restart back-off of an exited container (the kubelet's is 10 s).
    pub initial_backoff: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_name: "local".into(),
            state_dir: PathBuf::from("/var/lib/local-node"),
            net: NetConfig::default(),
            propagation_delay: Duration::from_secs(1),
            initial_backoff: Duration::from_secs(10),
        }
    }
}

/// A running node; [`NodeHandle::stop`] shuts it down cleanly (also done, best effort and
/// without waiting for grace periods, when dropped).
pub struct NodeHandle {
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    net: NetConfig,
}

impl NodeHandle {
    /// Kills the pods, removes their namespaces, the ClusterIPs and the bridge.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        if self.task.is_none() {
            return;
        }
        self.shutdown.send_replace(true);
        // the runtime may be going away: remove the host's side synchronously
        let ip = |args: &[&str]| {
            let _ = std::process::Command::new("ip").args(args).output();
        };
        if let Ok(out) = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
        {
            let prefix = format!("{}-", self.net.prefix);
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or_default();
                if name.starts_with(&prefix) {
                    ip(&["netns", "del", name]);
                }
            }
        }
        ip(&["link", "del", &self.net.bridge]);
    }
}

/// Starts a node: sets up the host's network, then runs the kubelet and proxy parts.
pub async fn start(
    client: Client,
    config: NodeConfig,
    images: ImageMap,
) -> anyhow::Result<NodeHandle> {
    if let Err(e) = netns::setup_host(&config.net).await {
        netns::teardown_host(&config.net).await;
        return Err(e);
    }
    std::fs::create_dir_all(config.state_dir.join("pods"))?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let services = store::spawn_store(Api::<Service>::all(client.clone()));
    let slices = store::spawn_store(Api::<EndpointSlice>::all(client.clone()));
    let (pods_tx, pods_rx) = watch::channel(Vec::new());
    let net = config.net.clone();
    let delay = config.propagation_delay;
    let ctx = Arc::new(pods::Ctx {
        client,
        ips: Mutex::new(netns::IpPool::new(&config.net)),
        config,
        images,
        services: services.clone(),
    });
    let proxy = tokio::spawn(proxy::run(
        net.clone(),
        delay,
        services,
        slices,
        pods_rx,
        shutdown_rx.clone(),
    ));
    let kubelet = tokio::spawn(pods::run(ctx, pods_tx, shutdown_rx));
    let teardown_net = net.clone();
    let task = tokio::spawn(async move {
        let _ = kubelet.await;
        let _ = proxy.await;
        netns::teardown_host(&teardown_net).await;
        tracing::info!("node stopped");
    });
    Ok(NodeHandle {
        shutdown,
        task: Some(task),
        net,
    })
}
