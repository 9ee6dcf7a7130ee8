use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use pgpool_api::OpsRequestType;
use pgpool_api::conditions::ops;
use pgpool_api::ops::ApplyPolicy;
use serde_json::json;

use super::super::fixtures::*;
use crate::plan::*;

fn scaling_request(type_: &str, extra: serde_json::Value) -> pgpool_api::PgpoolOpsRequest {
    let mut v = json!({
        "apiVersion": "ops.kubedb.com/v1alpha1",
        "kind": "PgpoolOpsRequest",
        "metadata": {"name": "r", "namespace": "demo"},
        "spec": {"type": type_, "databaseRef": {"name": "pp"}}
    });
    for (k, val) in extra.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn horizontal(node: i32) -> pgpool_api::PgpoolOpsRequest {
    scaling_request(
        "HorizontalScaling",
        json!({"horizontalScaling": {"node": node}}),
    )
}

fn resources(cpu: &str) -> ResourceRequirements {
    serde_json::from_value(json!({"requests": {"cpu": cpu}, "limits": {"cpu": cpu}})).unwrap()
}

fn vertical(r: serde_json::Value) -> pgpool_api::PgpoolOpsRequest {
    scaling_request("VerticalScaling", json!({"verticalScaling": {"node": r}}))
}

fn with_replicas(n: i32) -> pgpool_api::Pgpool {
    let mut pp = pgpool("4.5.3", "Ready", false);
    pp.spec.replicas = Some(n);
    pp
}

fn run(req: &pgpool_api::PgpoolOpsRequest, pp: &pgpool_api::Pgpool) -> Verdict {
    validate(ValidationInput {
        request: req,
        pgpool: Some(pp),
        current: None,
        target: None,
    })
}

#[test]
fn scaling_steps_follow_the_conditions() {
    for (t, start) in [
        (OpsRequestType::HorizontalScaling, ops::HORIZONTAL_SCALING),
        (OpsRequestType::VerticalScaling, ops::VERTICAL_SCALING),
    ] {
        assert_eq!(start_condition(t), start);
        let mut conds = Vec::new();
        assert_eq!(next_step(t, &conds), Step::Validate);
        cond(&mut conds, start, "True", String::new());
        assert_eq!(next_step(t, &conds), Step::Pause);
        cond(
            &mut conds,
            ops::DATABASE_PAUSE_SUCCEEDED,
            "True",
            String::new(),
        );
        if t == OpsRequestType::HorizontalScaling {
            assert_eq!(next_step(t, &conds), Step::HorizontalScale);
            let mut down = conds.clone();
            cond(
                &mut conds,
                ops::HORIZONTAL_SCALE_UP,
                "Unknown",
                String::new(),
            );
            assert_eq!(next_step(t, &conds), Step::HorizontalScale);
            cond(&mut conds, ops::HORIZONTAL_SCALE_UP, "True", String::new());
            assert_eq!(next_step(t, &conds), Step::UpdateReplicas);
            cond(&mut down, ops::HORIZONTAL_SCALE_DOWN, "True", String::new());
            assert_eq!(next_step(t, &down), Step::UpdateReplicas);
        } else {
            assert_eq!(next_step(t, &conds), Step::UpdatePetSetResources);
            cond(&mut conds, ops::UPDATE_PETSETS, "True", String::new());
            assert_eq!(next_step(t, &conds), Step::RestartPods);
            cond(&mut conds, ops::RESTART_PODS, "True", String::new());
            assert_eq!(next_step(t, &conds), Step::UpdateResources);
        }
        cond(&mut conds, ops::UPDATE_DATABASE, "True", String::new());
        assert_eq!(next_step(t, &conds), Step::Resume);
        cond(&mut conds, ops::ROLLBACK, "Unknown", String::new());
        assert_eq!(next_step(t, &conds), Step::Rollback);
    }
    assert_eq!(next_scaling_step(OpsRequestType::Restart, &[]), None);
}

#[test]
fn horizontal_validation_table() {
    let two = with_replicas(2);
    assert_eq!(
        run(&horizontal(3), &two),
        Verdict::Proceed {
            from: "2".into(),
            to: "3".into()
        }
    );
    assert_eq!(
        run(&horizontal(1), &two),
        Verdict::Proceed {
            from: "2".into(),
            to: "1".into()
        }
    );
    assert!(matches!(
        run(&horizontal(2), &two),
        Verdict::AlreadyDone { .. }
    ));
    for bad in [0, -1, 10] {
        match run(&horizontal(bad), &two) {
            Verdict::Fail { reason, message } => {
                assert_eq!(reason, "InvalidReplicas");
                assert!(message.contains("between 1 and 9"), "{message}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let missing = scaling_request("HorizontalScaling", json!({}));
    assert!(matches!(
        run(&missing, &two),
        Verdict::Fail {
            reason: "InvalidReplicas",
            ..
        }
    ));
    let mut halted = with_replicas(2);
    halted.spec.halted = Some(true);
    assert!(matches!(
        run(&horizontal(3), &halted),
        Verdict::Fail {
            reason: "PgpoolHalted",
            ..
        }
    ));
    let mut critical = with_replicas(2);
    critical.status.as_mut().unwrap().phase = Some(pgpool_api::PgpoolPhase::Critical);
    assert!(matches!(
        run(&horizontal(3), &critical),
        Verdict::WaitForReady { .. }
    ));
    let mut always = horizontal(3);
    always.spec.apply = Some(ApplyPolicy::Always);
    assert!(matches!(run(&always, &critical), Verdict::Proceed { .. }));
}

#[test]
fn vertical_validation_table() {
    let pp = with_replicas(2);
    assert_eq!(
        run(
            &vertical(json!({"resources": {"requests": {"cpu": "1"}}})),
            &pp
        ),
        Verdict::Proceed {
            from: "4.5.3".into(),
            to: "4.5.3".into()
        }
    );
    for empty in [
        json!({}),
        json!({"resources": {}}),
        json!({"resources": {"requests": {}}}),
    ] {
        assert!(
            matches!(
                run(&vertical(empty.clone()), &pp),
                Verdict::Fail {
                    reason: "ResourcesMissing",
                    ..
                }
            ),
            "{empty}"
        );
    }
}

fn spod(name: &str, uid: &str, ready: bool, terminating: bool) -> (String, Pod) {
    let mut p = pod(uid, "img", ready, terminating);
    p.metadata.name = Some(name.into());
    (name.to_string(), p)
}

fn pods(list: &[(&str, &str, bool, bool)]) -> HashMap<String, Pod> {
    list.iter().map(|(n, u, r, t)| spod(n, u, *r, *t)).collect()
}

#[test]
fn scale_up_table() {
    let none = Vec::new();
    let two = pods(&[("pp-0", "a", true, false), ("pp-1", "b", true, false)]);
    assert_eq!(
        scale_action("pp", 2, 3, 2, &two, &none),
        ScaleAction::SetReplicas(3)
    );
    assert!(matches!(
        scale_action("pp", 2, 3, 3, &two, &none),
        ScaleAction::Wait { why } if why.contains("pp-2 to be created")
    ));
    let mut three = two.clone();
    three.extend(pods(&[("pp-2", "c", false, false)]));
    assert!(matches!(
        scale_action("pp", 2, 3, 3, &three, &none),
        ScaleAction::Wait { why } if why.contains("pp-2 to be Running and Ready")
    ));
    three.extend(pods(&[("pp-2", "c", true, false)]));
    assert_eq!(
        scale_action("pp", 2, 3, 3, &three, &none),
        ScaleAction::PodReady { pod: "pp-2".into() }
    );
    let mut conds = Vec::new();
    cond(
        &mut conds,
        &ops::check_pod_running("pp-2"),
        "True",
        String::new(),
    );
    assert_eq!(
        scale_action("pp", 2, 3, 3, &three, &conds),
        ScaleAction::Done
    );
}

#[test]
fn scale_down_table() {
    let none = Vec::new();
    let three = pods(&[
        ("pp-0", "a", true, false),
        ("pp-1", "b", true, false),
        ("pp-2", "c", true, false),
    ]);
    // The highest pod is evicted first, recorded before.
    assert_eq!(
        scale_action("pp", 3, 1, 3, &three, &none),
        ScaleAction::Evict {
            pod: "pp-2".into(),
            uid: "c".into(),
            record: true
        }
    );
    // Recorded, still there (a refusal, or a crash before the eviction): evict again.
    let mut conds = Vec::new();
    cond(
        &mut conds,
        &ops::evict_pod("pp-2"),
        "Unknown",
        evict_message("pp-2", "c"),
    );
    assert_eq!(
        scale_action("pp", 3, 1, 3, &three, &conds),
        ScaleAction::Evict {
            pod: "pp-2".into(),
            uid: "c".into(),
            record: false
        }
    );
    // Evicted: terminating, gone, or already created again: lower the count.
    let mut going = three.clone();
    going.extend(pods(&[("pp-2", "c", true, true)]));
    assert_eq!(
        scale_action("pp", 3, 1, 3, &going, &conds),
        ScaleAction::SetReplicas(2)
    );
    let mut again = three.clone();
    again.extend(pods(&[("pp-2", "new", false, false)]));
    assert_eq!(
        scale_action("pp", 3, 1, 3, &again, &conds),
        ScaleAction::SetReplicas(2)
    );
    let mut gone = three.clone();
    gone.remove("pp-2");
    assert_eq!(
        scale_action("pp", 3, 1, 3, &gone, &conds),
        ScaleAction::SetReplicas(2)
    );
    // Count lowered, pod still terminating: wait for it.
    assert!(matches!(
        scale_action("pp", 3, 2, 2, &going, &conds),
        ScaleAction::Wait { why } if why.contains("pp-2 to go away")
    ));
    // Next one down; then done when only the wanted pods are left and Ready.
    assert!(matches!(
        scale_action("pp", 3, 1, 2, &gone, &conds),
        ScaleAction::Evict { pod, record: true, .. } if pod == "pp-1"
    ));
    let one = pods(&[("pp-0", "a", true, false)]);
    assert_eq!(scale_action("pp", 3, 1, 1, &one, &conds), ScaleAction::Done);
}

#[test]
fn a_broken_new_pod_ends_the_wait() {
    let mut crash = pods(&[("pp-0", "a", true, false), ("pp-1", "b", false, false)]);
    let p = crash.get_mut("pp-1").unwrap();
    p.status = Some(
        serde_json::from_value(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "pgpool", "image": "img", "imageID": "", "ready": false,
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}
            }]
        }))
        .unwrap(),
    );
    assert!(matches!(
        scale_action("pp", 1, 2, 2, &crash, &[]),
        ScaleAction::Broken { why } if why.contains("pp-1")
    ));
}

#[test]
fn the_budget_is_lowered_only_when_it_would_refuse() {
    let pdb = |min: serde_json::Value| -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "pp"}, "spec": {"minAvailable": min}}))
            .unwrap()
    };
    // Three pods, budget for three: evicting one is allowed already.
    assert_eq!(lowered_budget(&pdb(json!(2)), 3), None);
    // Two pods left, budget still for three: lower it to what two pods get.
    assert_eq!(lowered_budget(&pdb(json!(2)), 2), Some(1));
    // Not the provisioner's shape: leave it.
    assert_eq!(lowered_budget(&pdb(json!("50%")), 2), None);
    assert_eq!(budget_min_available(1), 0);
}

#[test]
fn resources_are_recorded_and_set() {
    let old = resources("100m");
    let msg = resources_message("pp", &resources("1"), Some(&old));
    assert_eq!(recorded_resources(&msg), Some(old.clone()));
    assert_eq!(
        recorded_resources(&resources_message("pp", &old, None)),
        Some(Default::default())
    );
    let mut p = pod("a", "img", true, false);
    let spec = p.spec.as_mut().unwrap();
    assert!(set_spec_resources(spec, &old));
    assert!(
        !set_spec_resources(spec, &old),
        "setting again changes nothing"
    );
    assert_eq!(spec_resources(spec), Some(&old));
    assert!(pod_on_resources(&p, &old));
    assert!(!pod_on_resources(&p, &resources("1")));
    assert!(pod_on_resources(&p, &resources("0.1")), "compared by value");
    assert_eq!(ordinal_of("pp", "pp-12"), Some(12));
    assert_eq!(ordinal_of("pp", "ppx-1"), None);
}
