//! The life of one pod on the node: set up, init containers, containers with probes and
//! restarts, status writes, and deletion as the kubelet does it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::containers::{Ctr, Exit, ProbeKind, Tag, should_restart};
use super::status::{PodView, State, pod_status};
use super::terminate::{Outcome, deletion_wait, terminate};
use super::{Ctx, spec};

mod procs;
mod setup;

use crate::container::Launch;
use crate::volumes::{Sources, VolumePlan};
use crate::{container, netns};
use procs::PodProcs;

/// Why the worker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// deletionTimestamp: graceful, then the final delete.
    Deleted,
    /// The object is gone, or the node shuts down: kill at once.
    Now,
}

/// Upper bound on the restart back-off, as the kubelet's.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

struct Worker {
    ctx: Arc<Ctx>,
    api: Api<Pod>,
    pod_rx: watch::Receiver<Option<Pod>>,
    shutdown: watch::Receiver<bool>,
    pod: Pod,
    uid: String,
    name: String,
    dir: PathBuf,
    view: PodView,
    written: Option<PodStatus>,
    ip: Option<Ipv4Addr>,
    init: Vec<Ctr>,
    ctrs: Vec<Ctr>,
    sources: Sources,
    plans: BTreeMap<String, VolumePlan>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    exits: mpsc::UnboundedReceiver<Exit>,
    reports_tx: mpsc::UnboundedSender<(Tag, bool)>,
    reports: mpsc::UnboundedReceiver<(Tag, bool)>,
}

/// Runs a pod bound to this node until it is gone from the node.
pub async fn run(
    ctx: Arc<Ctx>,
    pod_rx: watch::Receiver<Option<Pod>>,
    shutdown: watch::Receiver<bool>,
) {
    let Some(pod) = pod_rx.borrow().clone() else {
        return;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let (exits_tx, exits) = mpsc::unbounded_channel();
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let mut w = Worker {
        api: Api::namespaced(ctx.client.clone(), &ns),
        dir: ctx.config.state_dir.join("pods").join(&uid),
        view: PodView {
            phase: "Pending".into(),
            host_ip: Some(ctx.config.net.gateway().to_string()),
            start_time: Some(Timestamp::now()),
            ..PodView::default()
        },
        written: pod.status.clone(),
        ctx,
        pod_rx,
        shutdown,
        uid,
        name,
        pod,
        ip: None,
        init: Vec::new(),
        ctrs: Vec::new(),
        sources: Sources::default(),
        plans: BTreeMap::new(),
        exits_tx,
        exits,
        reports_tx,
        reports,
    };
    tracing::info!(pod = %format!("{ns}/{}", w.name), "pod started on the node");
    let stop = w.lifecycle().await;
    w.finish(stop).await;
    tracing::info!(pod = %format!("{ns}/{}", w.name), "pod removed from the node");
}

/// Waits for a change of the pod or of the shutdown flag; true when a channel closed.
async fn wait_change(
    pod_rx: &mut watch::Receiver<Option<Pod>>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        r = pod_rx.changed() => r.is_err(),
        r = shutdown.changed() => r.is_err(),
    }
}

/// Resolves when the pod object is gone (or replaced) or the node shuts down.
async fn wait_gone(
    pod_rx: &mut watch::Receiver<Option<Pod>>,
    shutdown: &mut watch::Receiver<bool>,
    uid: &str,
) {
    loop {
        let gone = pod_rx
            .borrow()
            .as_ref()
            .is_none_or(|p| p.metadata.uid.as_deref() != Some(uid));
        if gone || *shutdown.borrow() || wait_change(pod_rx, shutdown).await {
            return;
        }
    }
}

impl Worker {
    fn stop_reason(&self) -> Option<Stop> {
        if *self.shutdown.borrow() {
            return Some(Stop::Now);
        }
        match &*self.pod_rx.borrow() {
            None => Some(Stop::Now),
            Some(p) if p.metadata.uid.as_deref() != Some(self.uid.as_str()) => Some(Stop::Now),
            Some(p) if p.metadata.deletion_timestamp.is_some() => Some(Stop::Deleted),
            Some(_) => None,
        }
    }

    /// Waits for the next change of the pod or the node; returns a reason to stop, if any.
    async fn changed(&mut self) -> Option<Stop> {
        let closed = wait_change(&mut self.pod_rx, &mut self.shutdown).await;
        self.after_change(closed)
    }

    fn after_change(&mut self, closed: bool) -> Option<Stop> {
        if closed {
            return Some(Stop::Now);
        }
        if let Some(p) = self.pod_rx.borrow().clone() {
            self.pod = p;
        }
        self.stop_reason()
    }

    async fn write_status(&mut self) {
        self.view.init = self.init.iter().map(|c| c.view.clone()).collect();
        self.view.containers = self.ctrs.iter().map(|c| c.view.clone()).collect();
        let status = pod_status(&self.view, self.written.as_ref(), Timestamp::now());
        let same = self.written.as_ref().is_some_and(|w| {
            let strip = |s: &PodStatus| PodStatus {
                conditions: None,
                ..s.clone()
            };
            strip(w) == strip(&status)
                && w.conditions.as_ref().map(|c| c.len())
                    == status.conditions.as_ref().map(|c| c.len())
                && w.conditions
                    .iter()
                    .flatten()
                    .zip(status.conditions.iter().flatten())
                    .all(|(a, b)| a.type_ == b.type_ && a.status == b.status)
        });
        if same {
            return;
        }
        let patch = Patch::Merge(json!({ "status": status }));
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &patch)
            .await
        {
            Ok(p) => self.written = p.status,
            Err(e) => tracing::warn!(pod = %self.name, error = %e, "writing pod status"),
        }
    }

    /// Everything until the pod must stop.
    async fn lifecycle(&mut self) -> Stop {
        if let Some(stop) = self.stop_reason() {
            return stop;
        }
        // images
        let spec = self.pod.spec.clone().unwrap_or_default();
        let mut missing = None;
        let backoff = self.ctx.config.initial_backoff;
        for (list, specs) in [
            (
                &mut self.init,
                spec.init_containers.clone().unwrap_or_default(),
            ),
            (&mut self.ctrs, spec.containers.clone()),
        ] {
            for c in specs {
                let image = c.image.clone().unwrap_or_default();
                let runtime = self.ctx.images.resolve(&image).cloned();
                let mut ctr = Ctr::new(c, runtime.clone().unwrap_or_default(), backoff);
                if runtime.is_none() {
                    let msg = format!("image {image:?} is not in the local node's image map");
                    ctr.view.state = State::waiting("ErrImagePull", Some(msg));
                    missing = Some(image);
                }
                list.push(ctr);
            }
        }
        if let Some(image) = missing {
            tracing::info!(pod = %self.name, %image, "image not mapped: ErrImagePull");
            return self.idle().await;
        }
        // secrets and config maps
        loop {
            match self.fetch_sources().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::info!(pod = %self.name, error = %e, "waiting for volume sources");
                    tokio::select! {
                        s = self.changed() => if let Some(s) = s { return s },
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        // network and volumes
        if let Err(e) = self.setup().await {
            tracing::warn!(pod = %self.name, error = %e, "pod setup failed");
            for c in self.ctrs.iter_mut().chain(self.init.iter_mut()) {
                c.view.state = State::waiting("CreateContainerConfigError", Some(e.to_string()));
            }
            return self.idle().await;
        }
        self.write_status().await;
        // init containers, one after another, each to completion
        for i in 0..self.init.len() {
            loop {
                if let Some(s) = self.stop_reason() {
                    return s;
                }
                if let Err(e) = self.start(true, i).await {
                    tracing::warn!(pod = %self.name, error = %e, "init container start failed");
                }
                self.write_status().await;
                let code = loop {
                    tokio::select! {
                        c = wait_change(&mut self.pod_rx, &mut self.shutdown) => {
                            if let Some(s) = self.after_change(c) { return s }
                        }
                        Some((idx, run_no, code)) = self.exits.recv() => {
                            if idx == i && run_no == self.init[i].run_no { break code }
                        }
                    }
                };
                self.on_exit(true, i, code);
                self.write_status().await;
                if code == 0 {
                    break;
                }
                let wait = self.init[i].restart_at;
                if let Some(at) = wait {
                    tokio::select! {
                        s = self.changed() => if let Some(s) = s { return s },
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
            }
        }
        self.view.initialized = true;
        for i in 0..self.ctrs.len() {
            if let Err(e) = self.start(false, i).await {
                tracing::warn!(pod = %self.name, error = %e, "container start failed");
            }
        }
        self.view.phase = "Running".into();
        self.main_loop().await
    }

    /// Nothing runs: waits for the pod to stop.
    async fn idle(&mut self) -> Stop {
        loop {
            self.write_status().await;
            if let Some(s) = self.changed().await {
                return s;
            }
        }
    }

    async fn main_loop(&mut self) -> Stop {
        let mut services = self.ctx.services.clone();
        loop {
            self.write_status().await;
            if let Some(s) = self.stop_reason() {
                return s;
            }
            let next = self.ctrs.iter().filter_map(|c| c.restart_at).min();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                c = wait_change(&mut self.pod_rx, &mut self.shutdown) => {
                    if let Some(s) = self.after_change(c) { return s }
                }
                _ = services.changed() => self.write_hosts(),
                Some((idx, run_no, code)) = self.exits.recv() => {
                    if self.ctrs.get(idx).is_some_and(|c| c.run_no == run_no) {
                        self.on_exit(false, idx, code);
                    }
                }
                Some(((idx, run_no, kind), ok)) = self.reports.recv() => self.on_probe(idx, run_no, kind, ok),
                _ = tokio::time::sleep_until(next.unwrap_or(far)) => {
                    let now = Instant::now();
                    for i in 0..self.ctrs.len() {
                        if self.ctrs[i].restart_at.is_some_and(|t| t <= now) {
                            self.ctrs[i].restart_at = None;
                            self.ctrs[i].view.restart_count += 1;
                            if let Err(e) = self.start(false, i).await {
                                tracing::warn!(pod = %self.name, error = %e, "container restart failed");
                            }
                        }
                    }
                }
            }
        }
    }

    fn on_exit(&mut self, init: bool, idx: usize, code: i32) {
        let restart = code != 0 || !init;
        let restart = restart && should_restart(&self.pod, code);
        let c = if init {
            &mut self.init[idx]
        } else {
            &mut self.ctrs[idx]
        };
        let started = c
            .run
            .as_ref()
            .map(|r| r.started)
            .unwrap_or_else(Timestamp::now);
        c.run = None;
        let reason = if code == 0 { "Completed" } else { "Error" };
        let terminated = State::Terminated {
            exit_code: code,
            reason: reason.into(),
            started,
            finished: Timestamp::now(),
        };
        c.view.ready = false;
        tracing::info!(pod = %self.name, container = %c.spec.name, code, "container exited");
        if restart {
            c.view.last = Some(terminated);
            let wait = c.backoff;
            c.backoff = (c.backoff * 2).min(MAX_BACKOFF);
            c.restart_at = Some(Instant::now() + wait);
            let msg = format!(
                "back-off {}s restarting failed container={} pod={}",
                wait.as_secs(),
                c.spec.name,
                self.name
            );
            c.view.state = State::waiting("CrashLoopBackOff", Some(msg));
            if init {
                c.view.restart_count += 1;
            }
        } else {
            c.view.state = terminated;
        }
        if !init
            && self
                .ctrs
                .iter()
                .all(|c| matches!(c.view.state, State::Terminated { .. }))
        {
            let ok = self
                .ctrs
                .iter()
                .all(|c| matches!(c.view.state, State::Terminated { exit_code: 0, .. }));
            self.view.phase = if ok { "Succeeded" } else { "Failed" }.into();
        }
    }

    fn on_probe(&mut self, idx: usize, run_no: u64, kind: ProbeKind, ok: bool) {
        let Some(ip) = self.ip else { return };
        let grace = self.grace();
        let Some(c) = self.ctrs.get_mut(idx).filter(|c| c.run_no == run_no) else {
            return;
        };
        let Some(mut run) = c.run.take() else { return };
        tracing::info!(pod = %self.name, container = %c.spec.name, ?kind, ok, "probe result changed");
        match (kind, ok) {
            (ProbeKind::Readiness, ok) => c.view.ready = ok,
            (ProbeKind::Startup, true) => {
                c.view.started = true;
                run.stop_probes();
                c.spawn_after_startup(&mut run, idx, IpAddr::V4(ip), &self.reports_tx);
            }
            (ProbeKind::Startup | ProbeKind::Liveness, false) => {
                // the kubelet kills the container; it restarts after its exit
                run.stop_probes();
                c.view.ready = false;
                let pid = run.pid;
                tokio::spawn(async move {
                    container::signal(pid, rustix::process::Signal::TERM);
                    tokio::time::sleep(grace).await;
                    container::signal(pid, rustix::process::Signal::KILL);
                });
            }
            (ProbeKind::Liveness, true) => {}
        }
        c.run = Some(run);
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    async fn start(&mut self, init: bool, idx: usize) -> anyhow::Result<()> {
        let ip = self.ip.ok_or_else(|| anyhow::anyhow!("no pod IP"))?;
        let c = if init {
            &self.init[idx]
        } else {
            &self.ctrs[idx]
        };
        let env = spec::env(&self.pod, &c.spec, &self.sources, Some(&ip.to_string()))?;
        let mounts = spec::mounts(&c.spec, &c.runtime, &self.plans, &self.dir.join("volumes"))?;
        let tag = if init { "init" } else { "ctr" };
        let launch = Launch {
            base: self
                .dir
                .join("rootfs")
                .join(format!("{tag}-{}-{}", c.spec.name, c.run_no + 1)),
            netns: Some(self.ctx.config.net.netns_name(&self.uid)),
            hostname: self.name.clone(),
            mounts,
            hosts_file: Some(self.dir.join("hosts")),
            user: spec::user(&self.pod, &c.spec),
            no_new_privs: spec::no_new_privs(&c.spec),
            read_only_root: spec::read_only_root(&c.spec),
            workdir: c.spec.working_dir.clone(),
            argv: spec::argv(&c.spec, &c.runtime),
            env,
            log: self.dir.join("logs").join(format!("{}.log", c.spec.name)),
        };
        let (exits, reports) = (self.exits_tx.clone(), self.reports_tx.clone());
        let uid = self.uid.clone();
        let c = if init {
            &mut self.init[idx]
        } else {
            &mut self.ctrs[idx]
        };
        let res = c
            .start(idx, &uid, launch, IpAddr::V4(ip), exits, reports)
            .await;
        match &res {
            Ok(()) => {
                tracing::info!(pod = %self.name, container = %c.spec.name, "container started")
            }
            Err(e) => {
                c.view.state = State::waiting("RunContainerError", Some(e.to_string()));
                c.restart_at = Some(Instant::now() + c.backoff);
            }
        }
        res
    }

    /// Stops what runs (gracefully on deletion), writes the last status, removes the pod
    /// object (deletion) and cleans up the node's side.
    async fn finish(&mut self, stop: Stop) {
        let deadline = Instant::now() + deletion_wait(&self.pod, self.grace(), Timestamp::now());
        let ip = self.ip.map(IpAddr::V4);
        let procs = PodProcs {
            ctrs: self
                .ctrs
                .iter()
                .chain(self.init.iter())
                .filter_map(|c| {
                    let run = c.run.as_ref()?;
                    Some((
                        c.spec.clone(),
                        run.pid,
                        run.exec.clone(),
                        run.exited.clone(),
                    ))
                })
                .collect(),
            ip,
        };
        let names: Vec<String> = procs.ctrs.iter().map(|c| c.0.name.clone()).collect();
        let hooks: Vec<String> = procs
            .ctrs
            .iter()
            .filter(|c| {
                c.0.lifecycle
                    .as_ref()
                    .and_then(|l| l.pre_stop.as_ref())
                    .is_some()
            })
            .map(|c| c.0.name.clone())
            .collect();
        if stop == Stop::Deleted {
            tracing::info!(pod = %self.name, grace = ?self.grace(), "terminating pod");
            let graceful = terminate(&procs, &names, &hooks, deadline);
            // a force delete (the object gone) or the node's shutdown ends the wait
            let outcome = tokio::select! {
                o = graceful => o,
                _ = wait_gone(&mut self.pod_rx, &mut self.shutdown, &self.uid) => {
                    terminate(&procs, &names, &[], Instant::now()).await
                }
            };
            match outcome {
                Outcome::Killed => tracing::info!(pod = %self.name, "grace period over: killed"),
                Outcome::Graceful => {
                    tracing::info!(pod = %self.name, "containers stopped within the grace period")
                }
            }
        } else {
            terminate(&procs, &names, &[], Instant::now()).await;
        }
        for c in self.ctrs.iter_mut().chain(self.init.iter_mut()) {
            if let Some(run) = c.run.take() {
                c.view.state = State::Terminated {
                    exit_code: 137,
                    reason: "Error".into(),
                    started: run.started,
                    finished: Timestamp::now(),
                };
            }
            c.view.ready = false;
        }
        if stop == Stop::Deleted {
            self.write_status().await;
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = self.api.delete(&self.name, &dp).await {
                tracing::debug!(pod = %self.name, error = %e, "final delete");
            }
        }
        netns::remove_pod(&self.ctx.config.net, &self.uid).await;
        if let Some(ip) = self.ip.take() {
            self.ctx.ips.lock().expect("ip pool").release(ip);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
