use pgpool_api::conditions::ops;
use pgpool_api::{OpsRequestType, PetSet};
use serde_json::json;

use super::super::fixtures::*;
use crate::plan::*;

#[test]
fn update_pod_steps() {
    let t = OpsRequestType::UpdateVersion;
    let target = images(V460);
    let mut conds = Vec::new();
    // Old pod: evict it, recording its uid.
    let old = pod("u1", V453, true, false);
    assert_eq!(
        pod_step(t, "pp-0", Some(&old), &conds, Some(&target)),
        PodStep::StartEvict { uid: "u1".into() }
    );
    // Already on target and Ready: skipped.
    let new = pod("u2", V460, true, false);
    assert_eq!(
        pod_step(t, "pp-0", Some(&new), &conds, Some(&target)),
        PodStep::Done
    );
    // Eviction recorded, pod still there: evict (again).
    cond(
        &mut conds,
        &ops::evict_pod("pp-0"),
        "Unknown",
        evict_message("pp-0", "u1"),
    );
    assert_eq!(
        pod_step(t, "pp-0", Some(&old), &conds, Some(&target)),
        PodStep::Evict { uid: "u1".into() }
    );
    // Pod going away, or gone, or replaced: evicted.
    let going = pod("u1", V453, true, true);
    assert_eq!(
        pod_step(t, "pp-0", Some(&going), &conds, Some(&target)),
        PodStep::Evicted
    );
    assert_eq!(
        pod_step(t, "pp-0", None, &conds, Some(&target)),
        PodStep::Evicted
    );
    assert_eq!(
        pod_step(t, "pp-0", Some(&new), &conds, Some(&target)),
        PodStep::Evicted
    );
    // After the eviction: wait for a new pod on target that is Ready.
    cond(
        &mut conds,
        &ops::evict_pod("pp-0"),
        "True",
        evict_message("pp-0", "u1"),
    );
    assert!(matches!(
        pod_step(t, "pp-0", Some(&going), &conds, Some(&target)),
        PodStep::Wait { .. }
    ));
    assert!(matches!(
        pod_step(t, "pp-0", None, &conds, Some(&target)),
        PodStep::Wait { .. }
    ));
    let starting = pod("u2", V460, false, false);
    assert!(matches!(
        pod_step(t, "pp-0", Some(&starting), &conds, Some(&target)),
        PodStep::Wait { .. }
    ));
    assert_eq!(
        pod_step(t, "pp-0", Some(&new), &conds, Some(&target)),
        PodStep::Ready
    );
    // A crash-looping replacement is broken.
    let mut crashing = starting.clone();
    crashing.status.as_mut().unwrap().container_statuses = Some(vec![
        serde_json::from_value(json!({
            "name": "pgpool", "image": V460, "imageID": "", "ready": false, "restartCount": 1,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
        }))
        .unwrap(),
    ]);
    assert!(matches!(
        pod_step(t, "pp-0", Some(&crashing), &conds, Some(&target)),
        PodStep::Broken { why } if why.contains("CrashLoopBackOff")
    ));
    cond(
        &mut conds,
        &ops::check_pod_running("pp-0"),
        "True",
        String::new(),
    );
    assert_eq!(
        pod_step(t, "pp-0", Some(&old), &conds, Some(&target)),
        PodStep::Done
    );
}

#[test]
fn restart_pod_steps_use_the_uid() {
    let t = OpsRequestType::Restart;
    let mut conds = Vec::new();
    let old = pod("u1", V453, true, false);
    assert_eq!(
        pod_step(t, "pp-0", Some(&old), &conds, None),
        PodStep::StartEvict { uid: "u1".into() }
    );
    cond(
        &mut conds,
        &ops::evict_pod("pp-0"),
        "True",
        evict_message("pp-0", "u1"),
    );
    // Same uid, same image: still the old pod.
    assert!(matches!(
        pod_step(t, "pp-0", Some(&old), &conds, None),
        PodStep::Wait { .. }
    ));
    let new = pod("u2", V453, true, false);
    assert_eq!(
        pod_step(t, "pp-0", Some(&new), &conds, None),
        PodStep::Ready
    );
}

#[test]
fn uid_round_trip() {
    assert_eq!(
        recorded_uid(&evict_message("pp-0", "abc-123")),
        Some("abc-123")
    );
    assert_eq!(recorded_uid("no uid here"), None);
    assert_eq!(recorded_uid("(uid )"), None);
}

#[test]
fn rollback_steps() {
    let source = images(V453);
    assert_eq!(
        rollback_pod_step("pp-0", Some(&pod("u", V453, true, false)), &source),
        RollbackPodStep::Done
    );
    assert_eq!(
        rollback_pod_step("pp-0", Some(&pod("u", V460, false, false)), &source),
        RollbackPodStep::Evict { ready: false }
    );
    assert!(matches!(
        rollback_pod_step("pp-0", Some(&pod("u", V460, true, true)), &source),
        RollbackPodStep::Wait { .. }
    ));
    assert!(matches!(
        rollback_pod_step("pp-0", None, &source),
        RollbackPodStep::Wait { .. }
    ));
    assert!(matches!(
        rollback_pod_step("pp-0", Some(&pod("u", V453, false, false)), &source),
        RollbackPodStep::Wait { .. }
    ));
}

#[test]
fn petset_observed_compares_observed_generation_with_generation() {
    let ps = |generation: Option<i64>, observed: Option<i64>| -> PetSet {
        serde_json::from_value(json!({
            "apiVersion": "apps.k8s.appscode.com/v1",
            "kind": "PetSet",
            "metadata": {"name": "pp", "namespace": "demo", "generation": generation},
            "spec": {"selector": {}, "template": {}},
            "status": {"observedGeneration": observed, "replicas": 1}
        }))
        .unwrap()
    };
    assert!(
        !petset_observed(&ps(Some(2), Some(1))),
        "template not seen yet"
    );
    assert!(petset_observed(&ps(Some(2), Some(2))));
    assert!(petset_observed(&ps(Some(2), Some(3))));
    assert!(
        petset_observed(&ps(Some(2), None)),
        "a controller that writes no observedGeneration is not waited for"
    );
    assert!(petset_observed(&ps(None, Some(1))));
}

#[test]
fn a_rollback_moves_a_pod_that_is_not_ready_first() {
    use RollbackPodStep::*;
    let wait = || Wait { why: "w".into() };
    // two pods moved and Ready, the third moved and broken: the broken one first, or the
    // budget (minAvailable 2 of 3) refuses every eviction
    let steps = [
        Evict { ready: true },
        Evict { ready: true },
        Evict { ready: false },
    ];
    assert_eq!(rollback_pick(&steps), Some(2));
    assert_eq!(rollback_pick(&[Evict { ready: true }, Done, Done]), Some(0));
    assert_eq!(
        rollback_pick(&[Done, wait(), Evict { ready: true }]),
        Some(1)
    );
    assert_eq!(rollback_pick(&[Done, Done]), None);
}
