use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::json;

use crate::plan::*;

fn budget(
    name: &str,
    match_labels: serde_json::Value,
    status: serde_json::Value,
) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {"selector": {"matchLabels": match_labels}, "maxUnavailable": 0},
        "status": status
    }))
    .unwrap()
}

#[test]
fn the_budget_of_a_pod_is_the_one_whose_selector_matches() {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "pp-0", "namespace": "demo", "labels": {"app": "pp", "x": "1"}}
    }))
    .unwrap();
    let other = budget("other", json!({"app": "other"}), json!(null));
    let mine = budget("mine", json!({"app": "pp"}), json!(null));
    let mut elsewhere = budget("elsewhere", json!({"app": "pp"}), json!(null));
    elsewhere.metadata.namespace = Some("prod".into());
    let mut no_selector = budget("none", json!({}), json!(null));
    no_selector.spec.as_mut().unwrap().selector = None;
    let all = [other.clone(), elsewhere, no_selector, mine];
    assert_eq!(
        budget_of(&pod, &all).and_then(|b| b.metadata.name.as_deref()),
        Some("mine")
    );
    assert!(budget_of(&pod, &[other]).is_none());
}

#[test]
fn a_refused_eviction_says_which_budget_why_and_until_when() {
    let b = budget(
        "pp-maintenance",
        json!({"app": "pp"}),
        json!({
            "currentHealthy": 1, "desiredHealthy": 1, "disruptionsAllowed": 0, "expectedPods": 1,
            "conditions": [{
                "type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]
        }),
    );
    let m = eviction_refused_message(
        "pp-0",
        "u-1",
        "Cannot evict pod as it would violate the pod's disruption budget.",
        Some(&b),
        "2026-01-01T00:05:01Z",
    );
    assert_eq!(
        m,
        "eviction of pod pp-0 refused: Cannot evict pod as it would violate the pod's \
         disruption budget; PodDisruptionBudget pp-maintenance: DisruptionAllowed=False, \
         reason InsufficientPods (1 of 1 pods healthy, 0 disruptions allowed); retrying until \
         2026-01-01T00:05:01Z (uid u-1)"
    );
    assert_eq!(recorded_uid(&m), Some("u-1"));

    // a condition message is quoted; no budget: the API's answer alone
    let mut b2 = b.clone();
    b2.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].message = "paused".into();
    assert!(
        eviction_refused_message("pp-0", "u-1", "x", Some(&b2), "t")
            .contains("reason InsufficientPods, message \"paused\" (")
    );
    assert_eq!(
        eviction_refused_message("pp-0", "u-1", "forbidden", None, "t"),
        "eviction of pod pp-0 refused: forbidden; retrying until t (uid u-1)"
    );
}
