//! Endpoint selection (pure): which backends each Service port sends new connections to, and
//! the propagation delay with which a change reaches the proxy.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Frontend (ClusterIP:port) -> backends, in a stable order.
pub type Table = BTreeMap<SocketAddr, Vec<SocketAddr>>;

/// Whether a pod takes new connections: has an IP, Ready, not terminating.
pub fn pod_serving(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    pod.metadata.deletion_timestamp.is_none()
        && status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn target_port(port: &ServicePort, pod: &Pod) -> Option<u16> {
    match &port.target_port {
        None => u16::try_from(port.port).ok(),
        Some(IntOrString::Int(p)) => u16::try_from(*p).ok(),
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Backends of a selector Service's port: serving pods of its namespace that it selects.
pub fn from_pods(svc: &Service, port: &ServicePort, pods: &[Pod]) -> Vec<SocketAddr> {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = pods
        .iter()
        .filter(|p| p.metadata.namespace == svc.metadata.namespace)
        .filter(|p| selects(selector, p) && pod_serving(p))
        .filter_map(|p| {
            let ip: IpAddr = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
            Some(SocketAddr::new(ip, target_port(port, p)?))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Backends of a Service port from the EndpointSlices of its namespace labelled with its
/// name: endpoints not marked unready or terminating, on the slice port of the same name.
pub fn from_slices(svc: &Service, port: &ServicePort, slices: &[EndpointSlice]) -> Vec<SocketAddr> {
    let name = svc.metadata.name.as_deref();
    let port_name = port.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for slice in slices {
        let owned = slice.metadata.namespace == svc.metadata.namespace
            && slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                == name;
        if !owned {
            continue;
        }
        let Some(number) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            if !ready || terminating {
                continue;
            }
            out.extend(
                ep.addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, number)),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The ClusterIP of a Service that has one (not headless, not ExternalName).
pub fn cluster_ip(svc: &Service) -> Option<IpAddr> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.cluster_ip.as_deref()?.parse().ok()
}

/// The whole table: every TCP port of every Service with a ClusterIP; selector Services from
/// pods, selector-less ones from EndpointSlices.
pub fn table(services: &[Service], pods: &[Pod], slices: &[EndpointSlice]) -> Table {
    let mut out = Table::new();
    for svc in services {
        let (Some(ip), Some(spec)) = (cluster_ip(svc), svc.spec.as_ref()) else {
            continue;
        };
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                continue;
            }
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let backends = if spec.selector.as_ref().is_some_and(|s| !s.is_empty()) {
                from_pods(svc, port, pods)
            } else {
                from_slices(svc, port, slices)
            };
            out.insert(SocketAddr::new(ip, number), backends);
        }
    }
    out
}

/// The table as the proxy sees it: each change takes effect `delay` after it was observed
/// (the first table at once), as endpoint changes take time to reach every node.
#[derive(Debug, Clone)]
pub struct Delayed {
    delay: Duration,
    history: VecDeque<(Instant, Table)>,
}

impl Delayed {
    /// An empty history with this propagation delay.
    pub fn new(delay: Duration) -> Self {
        Delayed {
            delay,
            history: VecDeque::new(),
        }
    }

    /// Records the desired table seen at `now`.
    pub fn observe(&mut self, now: Instant, table: Table) {
        if self.history.back().map(|(_, t)| t) != Some(&table) {
            self.history.push_back((now, table));
        }
    }

    /// The table in effect at `now`: the newest one observed at least `delay` ago, or the
    /// first one ever observed.
    pub fn effective(&mut self, now: Instant) -> Table {
        while self.history.len() > 1
            && now.saturating_duration_since(self.history[1].0) >= self.delay
        {
            self.history.pop_front();
        }
        self.history
            .front()
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
