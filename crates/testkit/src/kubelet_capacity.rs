//! The node capacity of the simulated kubelet: what the scheduler checks before binding a pod
//! (the sum of the containers' requests, or of their limits where a container sets only
//! limits, against the node's allocatable CPU and memory).

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

/// A node's allocatable CPU (millicores) and memory (bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocatable {
    /// CPU in millicores.
    pub cpu_millis: i128,
    /// Memory in bytes.
    pub memory_bytes: i128,
}

/// A quantity in thousandths of its unit (CPU `0.7` is 700, memory `1Ki` is 1 024 000).
pub fn millis(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    // Nine fractional digits at most, in billionths.
    let frac: i128 = format!("{:0<9}", frac.get(..9).unwrap_or(frac))
        .parse()
        .ok()?;
    let nanos = int * 1_000_000_000 + frac;
    let (mul, div): (i128, i128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1_000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        _ => return None,
    };
    Some(nanos * mul / div / 1_000_000)
}

impl Allocatable {
    /// From quantities; `None` when one does not parse.
    pub fn new(cpu: &str, memory: &str) -> Option<Self> {
        Some(Self {
            cpu_millis: millis(cpu)?,
            memory_bytes: millis(memory)? / 1000,
        })
    }

    /// Why the pod does not fit next to pods that use `used` already, in the scheduler's
    /// words; `None` when it fits.
    pub fn refuses(&self, pod: &Pod, used: Usage) -> Option<String> {
        let need = usage(pod);
        let mut short = Vec::new();
        if need.cpu_millis + used.cpu_millis > self.cpu_millis {
            short.push("Insufficient cpu");
        }
        if need.memory_bytes + used.memory_bytes > self.memory_bytes {
            short.push("Insufficient memory");
        }
        (!short.is_empty()).then(|| format!("0/1 nodes are available: 1 {}.", short.join(", 1 ")))
    }
}

/// What pods ask for: CPU (millicores) and memory (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU in millicores.
    pub cpu_millis: i128,
    /// Memory in bytes.
    pub memory_bytes: i128,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory_bytes: self.memory_bytes + o.memory_bytes,
        }
    }
}

/// What the scheduler counts for a pod.
pub fn usage(pod: &Pod) -> Usage {
    let Some(spec) = pod.spec.as_ref() else {
        return Usage::default();
    };
    let need = |resource: &str| -> i128 {
        let sum: i128 = spec.containers.iter().map(|c| request(c, resource)).sum();
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| request(c, resource))
            .max()
            .unwrap_or(0);
        sum.max(init)
    };
    Usage {
        cpu_millis: need("cpu"),
        memory_bytes: need("memory") / 1000,
    }
}

/// A container's request of `resource` in thousandths (its limit when it sets no request).
fn request(c: &Container, resource: &str) -> i128 {
    let r = c.resources.as_ref();
    let q = r
        .and_then(|r| r.requests.as_ref())
        .and_then(|m| m.get(resource))
        .or_else(|| {
            r.and_then(|r| r.limits.as_ref())
                .and_then(|m| m.get(resource))
        });
    q.and_then(|q| millis(&q.0)).unwrap_or(0)
}

/// True when the pod already reports that it cannot be scheduled.
pub(crate) fn reported_unschedulable(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
        })
}

/// The status the scheduler leaves on a pod no node fits.
pub(crate) fn unschedulable_status(why: &str) -> Value {
    let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"status": {
        "phase": "Pending",
        "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": why, "lastTransitionTime": t
        }]
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(cpu: &str, memory: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "a", "resources": {"requests": {"cpu": cpu, "memory": memory}}},
                {"name": "b", "resources": {"limits": {"cpu": "100m"}}}
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn pods_that_ask_for_more_than_the_node_has_are_refused() {
        assert_eq!(millis("0.7"), Some(700));
        assert_eq!(millis("700m"), Some(700));
        assert_eq!(millis("1Ki"), Some(1_024_000));
        let node = Allocatable::new("2", "4Gi").unwrap();
        let none = Usage::default();
        assert_eq!(node.refuses(&pod("1", "1Gi"), none), None);
        assert_eq!(
            node.refuses(&pod("1.95", "1Gi"), none),
            Some("0/1 nodes are available: 1 Insufficient cpu.".into())
        );
        assert_eq!(
            node.refuses(&pod("1", "1Gi"), usage(&pod("1", "1Gi"))),
            Some("0/1 nodes are available: 1 Insufficient cpu.".into()),
            "the pods on the node count"
        );
        assert_eq!(
            node.refuses(&pod("64", "8Gi"), none),
            Some("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.".into())
        );
    }
}
