//! Unit tests of the pure status computation.

use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0).unwrap()
}

fn h(replicas: i32, ready: i32) -> Health {
    Health { replicas, ready }
}

#[test]
fn running_walks_provisioning_to_ready_and_stays_quiet() {
    let notes = vec![];
    let (s1, e1) = next_status(
        None,
        Some(1),
        false,
        &Outcome::Running {
            health: h(1, 0),
            notes: &notes,
            revisions: None,
        },
        now(),
    );
    assert_eq!(s1.phase, Some(PgpoolPhase::Provisioning));
    assert_eq!(s1.observed_generation, Some(1));
    assert_eq!(e1.len(), 1, "phase event: {e1:?}");
    let (s2, e2) = next_status(
        Some(&s1),
        Some(1),
        false,
        &Outcome::Running {
            health: h(1, 1),
            notes: &notes,
            revisions: None,
        },
        now(),
    );
    assert_eq!(s2.phase, Some(PgpoolPhase::Ready));
    assert!(conditions::is_true(&s2.conditions, types::PROVISIONED));
    assert_eq!(e2.len(), 1);
    let (s3, e3) = next_status(
        Some(&s2),
        Some(1),
        false,
        &Outcome::Running {
            health: h(1, 1),
            notes: &notes,
            revisions: None,
        },
        now(),
    );
    assert_eq!(s3, s2, "nothing changed, nothing to write");
    assert!(e3.is_empty());
    // a pod goes away after provisioning: Critical (accepting) or NotReady
    let (s4, _) = next_status(
        Some(&s3),
        Some(1),
        false,
        &Outcome::Running {
            health: h(2, 1),
            notes: &notes,
            revisions: None,
        },
        now(),
    );
    assert_eq!(s4.phase, Some(PgpoolPhase::Critical));
}

#[test]
fn problem_is_a_false_condition_with_one_warning() {
    let p = Problem {
        reason: "VersionNotFound",
        message: "PgpoolVersion \"9.9.9\" not found".into(),
    };
    let (s1, e1) = next_status(None, Some(3), false, &Outcome::Problem(&p, h(1, 0)), now());
    let started = conditions::get(&s1.conditions, types::PROVISIONING_STARTED).unwrap();
    assert_eq!(started.status, FALSE);
    assert_eq!(started.reason, "VersionNotFound");
    assert!(started.message.contains("9.9.9"));
    assert!(
        e1.iter()
            .any(|e| e.warning && e.reason == "VersionNotFound")
    );
    let (s2, e2) = next_status(
        Some(&s1),
        Some(3),
        false,
        &Outcome::Problem(&p, h(1, 0)),
        now(),
    );
    assert_eq!(s1, s2);
    assert!(e2.is_empty(), "same problem again: no new event");
}

#[test]
fn pause_is_acknowledged_and_generation_held() {
    let mut s = PgpoolStatus {
        observed_generation: Some(2),
        ..PgpoolStatus::default()
    };
    conditions::set(
        &mut s.conditions,
        NewCondition {
            type_: types::PAUSED,
            status: UNKNOWN,
            reason: "PauseRequested",
            message: "ops request x".into(),
            observed_generation: None,
        },
        now(),
    );
    assert!(is_paused(Some(&s)));
    let (next, events) = next_status(Some(&s), Some(5), false, &Outcome::Paused(h(1, 1)), now());
    let paused = conditions::get(&next.conditions, types::PAUSED).unwrap();
    assert_eq!(paused.status, TRUE);
    assert_eq!(paused.reason, REASON_PAUSE_ACKNOWLEDGED);
    assert_eq!(paused.message, "ops request x");
    assert_eq!(next.observed_generation, Some(2));
    assert!(events.iter().any(|e| e.reason == REASON_PAUSE_ACKNOWLEDGED));
}

#[test]
fn halted_phase() {
    let (s, _) = next_status(None, Some(1), true, &Outcome::Halted, now());
    assert_eq!(s.phase, Some(PgpoolPhase::Halted));
    assert!(!conditions::is_true(&s.conditions, types::READY));
}

fn revisions(update: &str, pods: &[(&str, &str)]) -> PodRevisions {
    PodRevisions {
        current_revision: Some("pg-old".into()),
        update_revision: update.into(),
        pods: pods
            .iter()
            .map(|(n, r)| (n.to_string(), Some(r.to_string())))
            .collect(),
    }
}

fn running<'a>(notes: &'a [crate::pgpool::validate::Note], r: &'a PodRevisions) -> Outcome<'a> {
    Outcome::Running {
        health: h(2, 2),
        notes,
        revisions: Some(r),
    }
}

#[test]
fn outdated_pods_are_named_with_the_fix_and_warned_once() {
    let notes = vec![];
    let same = revisions("pg-old", &[("pg-0", "pg-old"), ("pg-1", "pg-old")]);
    let (s1, _) = next_status(None, Some(1), false, &running(&notes, &same), now());
    let c = conditions::get(&s1.conditions, types::PODS_UP_TO_DATE).unwrap();
    assert_eq!(c.status, TRUE);
    assert_eq!(c.reason, REASON_PODS_UP_TO_DATE);

    // the template changed (a user's edit): the pods stay on the old revision
    let drift = revisions("pg-new", &[("pg-1", "pg-old"), ("pg-0", "pg-old")]);
    let (s2, e2) = next_status(Some(&s1), Some(2), false, &running(&notes, &drift), now());
    let c = conditions::get(&s2.conditions, types::PODS_UP_TO_DATE).unwrap();
    assert_eq!(c.status, FALSE);
    assert_eq!(c.reason, REASON_OUTDATED_PODS);
    for part in [
        "2 of 2 pods",
        "pg-0 (revision pg-old), pg-1 (revision pg-old)",
        "update revision is pg-new",
        "current revision pg-old",
        "PgpoolOpsRequest of type Restart",
    ] {
        assert!(c.message.contains(part), "{part:?} in {:?}", c.message);
    }
    assert_eq!(s2.phase, Some(PgpoolPhase::Ready), "the pods still serve");
    let warnings: Vec<_> = e2
        .iter()
        .filter(|e| e.reason == REASON_OUTDATED_PODS)
        .collect();
    assert_eq!(warnings.len(), 1, "{e2:?}");
    assert!(warnings[0].warning);

    // at rest: nothing to write, no second warning
    let (s3, e3) = next_status(Some(&s2), Some(2), false, &running(&notes, &drift), now());
    assert_eq!(s3, s2);
    assert!(e3.is_empty(), "{e3:?}");

    // one pod replaced: still False, named alone, no new warning
    let half = revisions("pg-new", &[("pg-0", "pg-new"), ("pg-1", "pg-old")]);
    let (s4, e4) = next_status(Some(&s3), Some(2), false, &running(&notes, &half), now());
    let c = conditions::get(&s4.conditions, types::PODS_UP_TO_DATE).unwrap();
    assert_eq!(c.status, FALSE);
    assert!(
        c.message
            .contains("1 of 2 pods run an outdated template: pg-1")
    );
    assert!(!c.message.contains("pg-0 (revision"));
    assert!(e4.is_empty(), "{e4:?}");

    // every pod on the update revision: True again
    let done = revisions("pg-new", &[("pg-0", "pg-new"), ("pg-1", "pg-new")]);
    let (s5, e5) = next_status(Some(&s4), Some(2), false, &running(&notes, &done), now());
    let c = conditions::get(&s5.conditions, types::PODS_UP_TO_DATE).unwrap();
    assert_eq!(c.status, TRUE);
    assert!(
        e5.iter()
            .any(|e| !e.warning && e.reason == REASON_PODS_UP_TO_DATE)
    );
}

#[test]
fn a_pause_leaves_the_pods_condition_alone() {
    let notes = vec![];
    let drift = revisions("pg-new", &[("pg-0", "pg-old")]);
    let (s1, _) = next_status(None, Some(1), false, &running(&notes, &drift), now());
    let mut paused = s1.clone();
    conditions::set(
        &mut paused.conditions,
        NewCondition {
            type_: types::PAUSED,
            status: TRUE,
            reason: REASON_PAUSE_ACKNOWLEDGED,
            message: "ops request x".into(),
            observed_generation: None,
        },
        now(),
    );
    let (s2, e2) = next_status(
        Some(&paused),
        Some(1),
        false,
        &Outcome::Paused(h(1, 1)),
        now(),
    );
    assert_eq!(
        conditions::get(&s2.conditions, types::PODS_UP_TO_DATE),
        conditions::get(&s1.conditions, types::PODS_UP_TO_DATE)
    );
    assert!(!e2.iter().any(|e| e.reason.contains("Pods")), "{e2:?}");
}

#[test]
fn a_pod_without_a_revision_label_is_outdated() {
    let r = PodRevisions {
        current_revision: None,
        update_revision: "pg-new".into(),
        pods: vec![("pg-0".into(), None)],
    };
    assert_eq!(r.outdated(), vec![("pg-0", "none")]);
    let (ok, _, message) = pods_up_to_date(&r);
    assert!(!ok);
    assert!(!message.contains("current revision"), "{message}");
}
