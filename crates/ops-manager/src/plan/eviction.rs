//! Which PodDisruptionBudget covers a pod, and what a refused eviction tells the user.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::{Selector, SelectorExt};

/// The PodDisruptionBudget that covers `pod` (the first whose selector matches its labels; the
/// Eviction API refuses pods with more than one). A budget without a selector covers nothing.
pub fn budget_of<'a>(
    pod: &Pod,
    budgets: &'a [PodDisruptionBudget],
) -> Option<&'a PodDisruptionBudget> {
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    budgets.iter().find(|b| {
        b.metadata.namespace == pod.metadata.namespace
            && b.spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .and_then(|sel| Selector::try_from(sel).ok())
                .is_some_and(|sel| sel.matches(labels))
    })
}

/// The message of an `EvictPod--<pod>` condition while the Eviction API refuses the eviction:
/// why (the API's answer and, when a budget covers the pod, its name, its `DisruptionAllowed`
/// condition and counts) and until when the ops-manager keeps trying (`until`, RFC 3339). It
/// ends with the pod's UID like [`evict_message`].
pub fn eviction_refused_message(
    pod: &str,
    uid: &str,
    why: &str,
    budget: Option<&PodDisruptionBudget>,
    until: &str,
) -> String {
    let mut m = format!(
        "eviction of pod {pod} refused: {}",
        why.trim_end_matches('.')
    );
    if let Some(b) = budget {
        let name = b.metadata.name.as_deref().unwrap_or_default();
        m.push_str(&format!("; PodDisruptionBudget {name}"));
        let status = b.status.as_ref();
        match status.and_then(|s| {
            s.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "DisruptionAllowed")
        }) {
            Some(c) => {
                m.push_str(&format!(": DisruptionAllowed={}", c.status));
                if !c.reason.is_empty() {
                    m.push_str(&format!(", reason {}", c.reason));
                }
                if !c.message.is_empty() {
                    m.push_str(&format!(", message {:?}", c.message));
                }
            }
            None => m.push_str(": no DisruptionAllowed condition yet"),
        }
        if let Some(s) = status {
            m.push_str(&format!(
                " ({} of {} pods healthy, {} disruptions allowed)",
                s.current_healthy, s.desired_healthy, s.disruptions_allowed
            ));
        }
    }
    m.push_str(&format!("; retrying until {until} (uid {uid})"));
    m
}

#[cfg(test)]
#[path = "eviction_tests.rs"]
mod tests;
