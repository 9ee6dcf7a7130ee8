use super::*;
use chrono::{TimeZone, Utc};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use pgpool_api::conditions::NewCondition;
use pgpool_api::conditions::{self, ops};
use pgpool_api::ops::ApplyPolicy;
use pgpool_api::{OpsRequestType, PetSet, Pgpool, PgpoolOpsRequest, PgpoolVersion};
use serde_json::json;

const V453: &str = "ghcr.io/appscode-images/pgpool2:4.5.3";
const V460: &str = "ghcr.io/appscode-images/pgpool2:4.6.0";
const EXPORTER: &str = "ghcr.io/appscode-images/pgpool2_exporter:v1.2.2";

fn version(name: &str, allow: &str, deprecated: bool) -> PgpoolVersion {
    serde_json::from_value(json!({
        "apiVersion": "catalog.kubedb.com/v1alpha1",
        "kind": "PgpoolVersion",
        "metadata": {"name": name},
        "spec": {
            "version": name,
            "pgpool": {"image": format!("ghcr.io/appscode-images/pgpool2:{name}")},
            "exporter": {"image": EXPORTER},
            "deprecated": deprecated,
            "updateConstraints": {"allowlist": [allow]}
        }
    }))
    .unwrap()
}

fn pgpool(version: &str, phase: &str, halted: bool) -> Pgpool {
    serde_json::from_value(json!({
        "apiVersion": "kubedb.com/v1alpha2",
        "kind": "Pgpool",
        "metadata": {"name": "pp", "namespace": "demo"},
        "spec": {"version": version, "postgresRef": {"name": "pg"}, "halted": halted},
        "status": {"phase": phase}
    }))
    .unwrap()
}

fn request(
    name: &str,
    type_: &str,
    target: &str,
    created: i64,
    phase: Option<&str>,
) -> PgpoolOpsRequest {
    let mut v = json!({
        "apiVersion": "ops.kubedb.com/v1alpha1",
        "kind": "PgpoolOpsRequest",
        "metadata": {
            "name": name,
            "namespace": "demo",
            "creationTimestamp": Utc.timestamp_opt(1_700_000_000 + created, 0).unwrap().to_rfc3339(),
        },
        "spec": {"type": type_, "databaseRef": {"name": "pp"}, "updateVersion": {"targetVersion": target}}
    });
    if let Some(p) = phase {
        v["status"] = json!({"phase": p});
    }
    serde_json::from_value(v).unwrap()
}

fn update(target: &str) -> PgpoolOpsRequest {
    request("r", "UpdateVersion", target, 0, None)
}

fn run(
    req: &PgpoolOpsRequest,
    pp: Option<&Pgpool>,
    cur: Option<&PgpoolVersion>,
    tgt: Option<&PgpoolVersion>,
) -> Verdict {
    validate(ValidationInput {
        request: req,
        pgpool: pp,
        current: cur,
        target: tgt,
    })
}

fn fail_reason(v: Verdict) -> (&'static str, String) {
    match v {
        Verdict::Fail { reason, message } => (reason, message),
        other => panic!("expected Fail, got {other:?}"),
    }
}

#[test]
fn validation_table() {
    let v453 = version("4.5.3", ">= 4.5.3, <= 4.6.0", false);
    let v460 = version("4.6.0", ">= 4.6.0, <= 4.6.0", false);
    let old = version("4.4.5", ">= 4.4.5, <= 4.6.0", true);
    let ready = pgpool("4.5.3", "Ready", false);

    assert_eq!(
        run(&update("4.6.0"), Some(&ready), Some(&v453), Some(&v460)),
        Verdict::Proceed {
            from: "4.5.3".into(),
            to: "4.6.0".into()
        }
    );
    let (r, m) = fail_reason(run(&update("4.6.0"), None, None, Some(&v460)));
    assert_eq!(r, "PgpoolNotFound");
    assert!(m.contains("demo/pp not found"), "{m}");
    let (r, m) = fail_reason(run(&update("9.9.9"), Some(&ready), Some(&v453), None));
    assert_eq!(r, "VersionNotFound");
    assert!(m.contains("\"9.9.9\" not found"), "{m}");
    let (r, m) = fail_reason(run(&update("4.4.5"), Some(&ready), Some(&v453), Some(&old)));
    assert_eq!(r, "VersionDeprecated");
    assert!(m.contains("deprecated"), "{m}");
    let on460 = pgpool("4.6.0", "Ready", false);
    let (r, m) = fail_reason(run(
        &update("4.5.3"),
        Some(&on460),
        Some(&v460),
        Some(&v453),
    ));
    assert_eq!(r, "UpdateNotAllowed");
    assert!(m.contains("from 4.6.0 to 4.5.3"), "{m}");
    assert!(m.contains(">= 4.6.0, <= 4.6.0"), "{m}");
    let halted = pgpool("4.5.3", "Halted", true);
    let (r, m) = fail_reason(run(
        &update("4.6.0"),
        Some(&halted),
        Some(&v453),
        Some(&v460),
    ));
    assert_eq!(r, "PgpoolHalted");
    assert!(m.contains("spec.halted"), "{m}");
    let critical = pgpool("4.5.3", "Critical", false);
    assert!(matches!(
        run(&update("4.6.0"), Some(&critical), Some(&v453), Some(&v460)),
        Verdict::WaitForReady { message } if message.contains("Critical")
    ));
    // Same version: done, even when not Ready.
    assert!(matches!(
        run(&update("4.5.3"), Some(&critical), Some(&v453), Some(&v453)),
        Verdict::AlreadyDone { .. }
    ));
    // Current version missing from the catalog.
    let (r, _) = fail_reason(run(&update("4.6.0"), Some(&ready), None, Some(&v460)));
    assert_eq!(r, "CurrentVersionNotFound");
    // apply: Always does not wait.
    let mut always = update("4.6.0");
    always.spec.apply = Some(ApplyPolicy::Always);
    assert!(matches!(
        run(&always, Some(&critical), Some(&v453), Some(&v460)),
        Verdict::Proceed { .. }
    ));
}

#[test]
fn constraints_use_the_target_spec_version() {
    // The catalog name differs from spec.version: constraints read spec.version.
    let v453 = version("4.5.3", ">= 4.5.3, <= 4.6.0", false);
    let mut custom = version("custom", "", false);
    custom.spec.version = "4.6.0".into();
    let ready = pgpool("4.5.3", "Ready", false);
    assert!(matches!(
        run(&update("custom"), Some(&ready), Some(&v453), Some(&custom)),
        Verdict::Proceed { .. }
    ));
    custom.spec.version = "4.7.0".into();
    assert_eq!(
        fail_reason(run(
            &update("custom"),
            Some(&ready),
            Some(&v453),
            Some(&custom)
        ))
        .0,
        "UpdateNotAllowed"
    );
}

#[test]
fn restart_validation() {
    let req = request("r", "Restart", "", 0, None);
    let ready = pgpool("4.5.3", "Ready", false);
    assert_eq!(
        run(&req, Some(&ready), None, None),
        Verdict::Proceed {
            from: "4.5.3".into(),
            to: "4.5.3".into()
        }
    );
    let halted = pgpool("4.5.3", "Halted", true);
    assert_eq!(
        fail_reason(run(&req, Some(&halted), None, None)).0,
        "PgpoolHalted"
    );
}

#[test]
fn queue_rules() {
    let a = request("a", "UpdateVersion", "4.6.0", 0, Some("Pending"));
    let b = request("b", "UpdateVersion", "4.6.0", 5, None);
    let r = request("r", "Restart", "", 3, Some("Pending"));
    let p = request("p", "Restart", "", 1, Some("Progressing"));
    let done = request("d", "UpdateVersion", "4.6.0", 10, Some("Successful"));

    // Alone: start.
    assert_eq!(
        queue_decision(&a, std::slice::from_ref(&a)),
        QueueDecision::Start
    );
    // A final request does not count.
    assert_eq!(
        queue_decision(&a, &[a.clone(), done.clone()]),
        QueueDecision::Start
    );
    // Something Progressing: wait behind it.
    assert_eq!(
        queue_decision(&b, &[a.clone(), b.clone(), p.clone()]),
        QueueDecision::Wait { behind: "p".into() }
    );
    // A newer UpdateVersion already Progressing: the older pending one is skipped.
    let newer_running = request("n", "UpdateVersion", "4.6.0", 9, Some("Progressing"));
    assert_eq!(
        queue_decision(&a, &[a.clone(), newer_running.clone()]),
        QueueDecision::Skip { newer: "n".into() }
    );
    // Two UpdateVersion pending: the older is skipped, naming the newer.
    assert_eq!(
        queue_decision(&a, &[a.clone(), b.clone()]),
        QueueDecision::Skip { newer: "b".into() }
    );
    assert_eq!(
        queue_decision(&b, &[a.clone(), b.clone()]),
        QueueDecision::Start
    );
    // An older request of another type goes first.
    assert_eq!(
        queue_decision(&b, &[a.clone(), b.clone(), r.clone()]),
        QueueDecision::Wait { behind: "r".into() }
    );
    assert_eq!(
        queue_decision(&r, &[a.clone(), b.clone(), r.clone()]),
        QueueDecision::Start
    );
    // Same creation time: the name orders.
    let x = request("x", "UpdateVersion", "4.6.0", 7, None);
    let y = request("y", "UpdateVersion", "4.6.0", 7, None);
    assert_eq!(
        queue_decision(&x, &[x.clone(), y.clone()]),
        QueueDecision::Skip { newer: "y".into() }
    );
    // A pending request being deleted does not block.
    let mut gone = request("g", "Restart", "", -5, Some("Pending"));
    gone.metadata.deletion_timestamp = a.metadata.creation_timestamp.clone();
    assert_eq!(queue_decision(&b, &[b.clone(), gone]), QueueDecision::Start);
}

fn pod(uid: &str, image: &str, ready: bool, terminating: bool) -> Pod {
    let mut v = json!({
        "metadata": {"name": "pp-0", "namespace": "demo", "uid": uid},
        "spec": {
            "initContainers": [{"name": "pgpool-init", "image": image}],
            "containers": [
                {"name": "pgpool", "image": image},
                {"name": "exporter", "image": EXPORTER}
            ]
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]
        }
    });
    if terminating {
        v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    }
    serde_json::from_value(v).unwrap()
}

fn images(pgpool: &str) -> Images {
    Images {
        pgpool: pgpool.into(),
        exporter: Some(EXPORTER.into()),
    }
}

fn cond(conds: &mut Vec<Condition>, t: &str, status: &str, message: String) {
    conditions::set(
        conds,
        NewCondition {
            type_: t,
            status,
            reason: "R",
            message,
            observed_generation: None,
        },
        Utc::now(),
    );
}

#[test]
fn images_of_specs() {
    let p = pod("u1", V453, true, false);
    assert!(pod_on_images(&p, &images(V453)));
    assert!(!pod_on_images(&p, &images(V460)));
    let mut spec = p.spec.clone().unwrap();
    assert!(set_spec_images(&mut spec, &images(V460)));
    assert!(
        !set_spec_images(&mut spec, &images(V460)),
        "second time: no change"
    );
    assert!(spec_on_images(&spec, &images(V460)));
    assert_eq!(
        spec.init_containers.as_ref().unwrap()[0].image.as_deref(),
        Some(V460)
    );
    // Without an exporter image, the exporter is left alone.
    let bare = Images {
        pgpool: V453.into(),
        exporter: None,
    };
    assert!(set_spec_images(&mut spec, &bare));
    assert_eq!(spec.containers[1].image.as_deref(), Some(EXPORTER));
    // No pgpool container: not on any images.
    let empty = PodSpec::default();
    assert!(!spec_on_images(&empty, &bare));
}

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
fn steps_follow_the_conditions() {
    let t = OpsRequestType::UpdateVersion;
    let mut conds = Vec::new();
    assert_eq!(next_step(t, &conds), Step::Validate);
    cond(&mut conds, ops::UPDATE_VERSION, "Unknown", String::new());
    assert_eq!(next_step(t, &conds), Step::Validate);
    cond(&mut conds, ops::UPDATE_VERSION, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::Pause);
    cond(
        &mut conds,
        ops::DATABASE_PAUSE_SUCCEEDED,
        "True",
        String::new(),
    );
    assert_eq!(next_step(t, &conds), Step::UpdatePetSets);
    assert_eq!(next_step(OpsRequestType::Restart, &conds), Step::Validate);
    cond(&mut conds, ops::UPDATE_PETSETS, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::RestartPods);
    cond(&mut conds, ops::RESTART_PODS, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::UpdateDatabase);
    cond(&mut conds, ops::UPDATE_DATABASE, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::Resume);
    cond(&mut conds, ops::ROLLBACK, "Unknown", String::new());
    assert_eq!(next_step(t, &conds), Step::Rollback);
    cond(&mut conds, ops::FAILED, "True", String::new());
    assert_eq!(next_step(t, &conds), Step::Done);

    let r = OpsRequestType::Restart;
    let mut conds = Vec::new();
    cond(&mut conds, ops::RESTART, "True", String::new());
    cond(
        &mut conds,
        ops::DATABASE_PAUSE_SUCCEEDED,
        "True",
        String::new(),
    );
    assert_eq!(next_step(r, &conds), Step::RestartPods);
    cond(&mut conds, ops::RESTART_PODS, "True", String::new());
    assert_eq!(next_step(r, &conds), Step::Resume);
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
