//! A pod's running containers as [`terminate`](crate::pods::terminate) drives them.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::container;
use crate::pods::containers::run_handler;
use crate::pods::terminate::{Processes, Signal};
use crate::probes::BoxFuture;

pub(super) type ProcEntry = (
    k8s_openapi::api::core::v1::Container,
    i32,
    Arc<container::ContainerExec>,
    watch::Receiver<bool>,
);

/// The running containers of a pod, for [`terminate`].
pub(super) struct PodProcs {
    pub(super) ctrs: Vec<ProcEntry>,
    pub(super) ip: Option<IpAddr>,
}

impl Processes for PodProcs {
    fn pre_stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some((spec, _, exec, _)) = self.ctrs.iter().find(|c| c.0.name == name) else {
                return;
            };
            let hook = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
            if let (Some(hook), Some(ip)) = (hook, self.ip)
                && !run_handler(hook, spec, ip, exec).await
            {
                // the kubelet's FailedPreStopHook; the container gets SIGTERM all the same
                tracing::warn!(container = name, "preStop hook failed");
            }
        })
    }

    fn signal(&self, name: &str, signal: Signal) {
        if let Some((_, pid, _, _)) = self.ctrs.iter().find(|c| c.0.name == name) {
            let sig = match signal {
                Signal::Term => rustix::process::Signal::TERM,
                Signal::Kill => rustix::process::Signal::KILL,
            };
            container::signal(*pid, sig);
        }
    }

    fn all_exited(&self) -> BoxFuture<'_, ()> {
        let mut rxs: Vec<_> = self.ctrs.iter().map(|c| c.3.clone()).collect();
        Box::pin(async move {
            for rx in &mut rxs {
                let _ = rx.wait_for(|exited| *exited).await;
            }
        })
    }
}
