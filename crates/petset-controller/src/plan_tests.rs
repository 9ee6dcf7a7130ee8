//! Unit tests of the planner: which pods are created and deleted under each policy, the
//! revisions and the status.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use pgpool_api::PetSet;
use pgpool_api::names::LABEL_REVISION_HASH;
use serde_json::json;

use crate::plan::{DeleteReason, Input, Plan, PlanError, PodAction, plan};
use crate::pods;
use crate::revision;

const UID: &str = "petset-uid";

fn petset(replicas: i32, policy: &str, strategy: serde_json::Value, image: &str) -> PetSet {
    let mut ps: PetSet = serde_json::from_value(json!({
        "apiVersion": "apps.k8s.appscode.com/v1",
        "kind": "PetSet",
        "metadata": {"name": "web", "namespace": "ns", "uid": UID, "generation": 3},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "serviceName": "web-pods",
            "podManagementPolicy": policy,
            "updateStrategy": strategy,
            "template": {
                "metadata": {"labels": {"app": "web", "extra": "x"}},
                "spec": {"containers": [{"name": "main", "image": image}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
    .unwrap();
    ps.metadata.generation = Some(3);
    ps
}

fn ordered(replicas: i32) -> PetSet {
    petset(
        replicas,
        "OrderedReady",
        json!({"type": "RollingUpdate"}),
        "img:1",
    )
}

fn parallel(replicas: i32) -> PetSet {
    petset(
        replicas,
        "Parallel",
        json!({"type": "RollingUpdate"}),
        "img:1",
    )
}

fn revision_of_template(ps: &PetSet) -> String {
    revision::revision_name(
        "web",
        &revision::template_hash(&ps.spec.template, 0).unwrap(),
    )
}

/// The revision object the planner creates for `ps`'s template.
fn stored_revision(ps: &PetSet, number: i64) -> ControllerRevision {
    let mut r = run(ps, &[], &[]).revisions.create.expect("a new revision");
    r.revision = number;
    r
}

#[derive(Clone, Copy)]
enum State {
    Pending,
    RunningUnready,
    Ready,
    ReadySince(i64),
    Terminating,
    Failed,
    Succeeded,
}

fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

fn pod(ordinal: i32, revision: &str, state: State) -> Pod {
    let name = format!("web-{ordinal}");
    let (phase, ready_since, deleting) = match state {
        State::Pending => ("Pending", None, false),
        State::RunningUnready => ("Running", None, false),
        State::Ready => ("Running", Some(3600), false),
        State::ReadySince(secs) => ("Running", Some(secs), false),
        State::Terminating => ("Running", Some(3600), true),
        State::Failed => ("Failed", None, false),
        State::Succeeded => ("Succeeded", None, false),
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some("ns".to_string()),
            uid: Some(format!("uid-{name}-{revision}")),
            labels: Some(
                [
                    ("app", "web"),
                    (LABEL_REVISION_HASH, revision),
                    ("statefulset.kubernetes.io/pod-name", name.as_str()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            owner_references: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: "apps.k8s.appscode.com/v1".to_string(),
                    kind: "PetSet".to_string(),
                    name: "web".to_string(),
                    uid: UID.to_string(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                },
            ]),
            deletion_timestamp: deleting.then(|| Time(now())),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.to_string()),
            conditions: ready_since.map(|secs| {
                vec![PodCondition {
                    type_: "Ready".to_string(),
                    status: "True".to_string(),
                    last_transition_time: Some(Time(now() - SignedDuration::from_secs(secs))),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

fn run(ps: &PetSet, pods: &[Pod], revisions: &[ControllerRevision]) -> Plan {
    plan(&Input {
        petset: ps,
        pods,
        revisions,
        now: now(),
    })
    .unwrap()
}

/// The actions as short strings: `create web-0@<revision>` / `delete web-2 (reason)`.
fn summary(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .map(|a| match a {
            PodAction::Create { pod, .. } => format!(
                "create {}@{}",
                pod.metadata.name.as_deref().unwrap(),
                pods::revision_of(pod).unwrap()
            ),
            PodAction::Delete { name, reason, .. } => {
                format!("delete {name} ({})", reason.as_str())
            }
        })
        .collect()
}

fn created_image(p: &Plan, index: usize) -> String {
    match &p.actions[index] {
        PodAction::Create { pod, .. } => pod.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap(),
        other => panic!("not a create: {other:?}"),
    }
}

#[test]
fn ordered_ready_creates_one_pod_at_a_time() {
    let ps = ordered(3);
    let rev = revision_of_template(&ps);
    let p = run(&ps, &[], &[]);
    assert_eq!(summary(&p), vec![format!("create web-0@{rev}")]);
    assert_eq!(p.revisions.update_name, rev);
    assert!(p.revisions.create.is_some());

    let revs = [stored_revision(&ps, 1)];
    let p = run(&ps, &[pod(0, &rev, State::Pending)], &revs);
    assert!(p.actions.is_empty(), "waits for pod 0: {:?}", summary(&p));
    let p = run(&ps, &[pod(0, &rev, State::RunningUnready)], &revs);
    assert!(p.actions.is_empty());

    let p = run(&ps, &[pod(0, &rev, State::Ready)], &revs);
    assert_eq!(summary(&p), vec![format!("create web-1@{rev}")]);
    assert!(p.revisions.create.is_none(), "the revision exists");

    // A lower pod going away is replaced before anything above it.
    let p = run(&ps, &[pod(1, &rev, State::Ready)], &revs);
    assert_eq!(summary(&p), vec![format!("create web-0@{rev}")]);
}

#[test]
fn ordered_ready_honours_min_ready_seconds() {
    let mut ps = ordered(2);
    ps.spec.min_ready_seconds = Some(30);
    let rev = revision_of_template(&ps);
    let revs = [stored_revision(&ps, 1)];
    let p = run(&ps, &[pod(0, &rev, State::ReadySince(10))], &revs);
    assert!(p.actions.is_empty());
    assert_eq!(p.requeue_after, Some(std::time::Duration::from_secs(20)));
    assert_eq!(p.status.ready_replicas, Some(1));
    assert_eq!(p.status.available_replicas, Some(0));
    let p = run(&ps, &[pod(0, &rev, State::ReadySince(30))], &revs);
    assert_eq!(summary(&p), vec![format!("create web-1@{rev}")]);
    assert_eq!(p.status.available_replicas, Some(1));
    assert_eq!(p.requeue_after, None);
}

#[test]
fn parallel_creates_all_missing_pods_at_once() {
    let ps = parallel(3);
    let rev = revision_of_template(&ps);
    let p = run(&ps, &[], &[]);
    assert_eq!(
        summary(&p),
        vec![
            format!("create web-0@{rev}"),
            format!("create web-1@{rev}"),
            format!("create web-2@{rev}")
        ]
    );
    let revs = [stored_revision(&ps, 1)];
    let p = run(&ps, &[pod(1, &rev, State::Pending)], &revs);
    assert_eq!(
        summary(&p),
        vec![format!("create web-0@{rev}"), format!("create web-2@{rev}")]
    );
}

#[test]
fn created_pods_carry_their_claims() {
    let ps = ordered(1);
    let p = run(&ps, &[], &[]);
    match &p.actions[0] {
        PodAction::Create { pod, claims } => {
            assert_eq!(claims.len(), 1);
            assert_eq!(claims[0].metadata.name.as_deref(), Some("data-web-0"));
            let volumes = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap();
            assert_eq!(
                volumes[0]
                    .persistent_volume_claim
                    .as_ref()
                    .unwrap()
                    .claim_name,
                "data-web-0"
            );
        }
        other => panic!("expected a create, got {other:?}"),
    }
}

#[test]
fn ordered_scale_down_from_the_highest_one_at_a_time() {
    let ps = ordered(1);
    let rev = revision_of_template(&ps);
    let revs = [stored_revision(&ps, 1)];
    let all_ready = [
        pod(0, &rev, State::Ready),
        pod(1, &rev, State::Ready),
        pod(2, &rev, State::Ready),
    ];
    let p = run(&ps, &all_ready, &revs);
    assert_eq!(summary(&p), vec!["delete web-2 (scale-down)"]);
    match &p.actions[0] {
        PodAction::Delete { uid, reason, .. } => {
            assert_eq!(uid.as_deref(), Some(format!("uid-web-2-{rev}").as_str()));
            assert_eq!(*reason, DeleteReason::ScaleDown);
        }
        other => panic!("{other:?}"),
    }
    // Waits for the termination before the next one.
    let p = run(
        &ps,
        &[
            pod(0, &rev, State::Ready),
            pod(1, &rev, State::Ready),
            pod(2, &rev, State::Terminating),
        ],
        &revs,
    );
    assert!(p.actions.is_empty());
    let p = run(&ps, &all_ready[..2], &revs);
    assert_eq!(summary(&p), vec!["delete web-1 (scale-down)"]);
    // An unhealthy pod other than the target blocks the scale-down.
    let p = run(
        &ps,
        &[
            pod(0, &rev, State::Ready),
            pod(1, &rev, State::Pending),
            pod(2, &rev, State::Ready),
        ],
        &revs,
    );
    assert!(p.actions.is_empty());
    // ...and so does an unhealthy wanted pod.
    let p = run(
        &ps,
        &[pod(0, &rev, State::Pending), pod(1, &rev, State::Ready)],
        &revs,
    );
    assert!(p.actions.is_empty());
}

#[test]
fn parallel_scale_down_deletes_all_extra_pods_highest_first() {
    let ps = parallel(1);
    let rev = revision_of_template(&ps);
    let revs = [stored_revision(&ps, 1)];
    let p = run(
        &ps,
        &[
            pod(0, &rev, State::Pending),
            pod(1, &rev, State::Ready),
            pod(2, &rev, State::Terminating),
            pod(3, &rev, State::Ready),
        ],
        &revs,
    );
    assert_eq!(
        summary(&p),
        vec!["delete web-3 (scale-down)", "delete web-1 (scale-down)"]
    );
}

#[test]
fn terminal_pods_are_deleted_then_recreated() {
    let ps = ordered(2);
    let rev = revision_of_template(&ps);
    let revs = [stored_revision(&ps, 1)];
    for state in [State::Failed, State::Succeeded] {
        let p = run(
            &ps,
            &[pod(0, &rev, state), pod(1, &rev, State::Ready)],
            &revs,
        );
        assert_eq!(summary(&p), vec!["delete web-0 (terminal)"]);
    }
    let mut failed_deleting = pod(0, &rev, State::Failed);
    failed_deleting.metadata.deletion_timestamp = Some(Time(now()));
    let p = run(&ps, &[failed_deleting], &revs);
    assert!(p.actions.is_empty(), "{:?}", summary(&p));
    let p = run(&ps, &[pod(1, &rev, State::Ready)], &revs);
    assert_eq!(summary(&p), vec![format!("create web-0@{rev}")]);

    let ps = parallel(2);
    let p = run(&ps, &[pod(0, &rev, State::Failed)], &revs);
    assert_eq!(
        summary(&p),
        vec![
            "delete web-0 (terminal)".to_string(),
            format!("create web-1@{rev}")
        ]
    );
}

#[test]
fn on_delete_leaves_pods_alone_and_recreates_from_the_new_template() {
    let old = petset(2, "OrderedReady", json!({"type": "OnDelete"}), "img:1");
    let old_rev = revision_of_template(&old);
    let mut ps = petset(2, "OrderedReady", json!({"type": "OnDelete"}), "img:2");
    ps.status = Some(pgpool_api::PetSetStatus {
        current_revision: Some(old_rev.clone()),
        update_revision: Some(old_rev.clone()),
        ..Default::default()
    });
    let new_rev = revision_of_template(&ps);
    assert_ne!(old_rev, new_rev);
    let revs = [stored_revision(&old, 1)];

    let p = run(
        &ps,
        &[
            pod(0, &old_rev, State::Ready),
            pod(1, &old_rev, State::Ready),
        ],
        &revs,
    );
    assert!(p.actions.is_empty(), "{:?}", summary(&p));
    let created = p.revisions.create.as_ref().expect("new revision");
    assert_eq!(created.revision, 2);
    assert_eq!(p.status.current_revision.as_deref(), Some(old_rev.as_str()));
    assert_eq!(p.status.update_revision.as_deref(), Some(new_rev.as_str()));
    assert_eq!(p.status.current_replicas, Some(2));
    assert_eq!(p.status.updated_replicas, Some(0));

    // Pod 1 was deleted (e.g. evicted): it comes back on the new template.
    let revs = [stored_revision(&old, 1), stored_revision(&ps, 2)];
    let p = run(&ps, &[pod(0, &old_rev, State::Ready)], &revs);
    assert_eq!(summary(&p), vec![format!("create web-1@{new_rev}")]);
    assert_eq!(created_image(&p, 0), "img:2");

    // Once every pod runs the new revision and is Ready, it becomes current.
    let p = run(
        &ps,
        &[
            pod(0, &new_rev, State::Ready),
            pod(1, &new_rev, State::Ready),
        ],
        &revs,
    );
    assert!(p.actions.is_empty());
    assert_eq!(p.status.current_revision.as_deref(), Some(new_rev.as_str()));
    assert_eq!(p.status.current_replicas, Some(2));
    assert_eq!(p.status.updated_replicas, Some(2));
}

#[test]
fn rolling_update_goes_from_the_highest_ordinal_one_at_a_time() {
    let old = ordered(3);
    let old_rev = revision_of_template(&old);
    let mut ps = petset(3, "OrderedReady", json!({"type": "RollingUpdate"}), "img:2");
    ps.status = Some(pgpool_api::PetSetStatus {
        current_revision: Some(old_rev.clone()),
        ..Default::default()
    });
    let new_rev = revision_of_template(&ps);
    let revs = [stored_revision(&old, 1), stored_revision(&ps, 2)];

    let p = run(
        &ps,
        &[
            pod(0, &old_rev, State::Ready),
            pod(1, &old_rev, State::Ready),
            pod(2, &old_rev, State::Ready),
        ],
        &revs,
    );
    assert_eq!(summary(&p), vec!["delete web-2 (update)"]);

    // Replacement not Ready yet: wait.
    let p = run(
        &ps,
        &[
            pod(0, &old_rev, State::Ready),
            pod(1, &old_rev, State::Ready),
            pod(2, &new_rev, State::RunningUnready),
        ],
        &revs,
    );
    assert!(p.actions.is_empty());
    // The deleted pod is recreated on the update revision.
    let p = run(
        &ps,
        &[
            pod(0, &old_rev, State::Ready),
            pod(1, &old_rev, State::Ready),
        ],
        &revs,
    );
    assert_eq!(summary(&p), vec![format!("create web-2@{new_rev}")]);
    assert_eq!(created_image(&p, 0), "img:2");

    let p = run(
        &ps,
        &[
            pod(0, &old_rev, State::Ready),
            pod(1, &old_rev, State::Ready),
            pod(2, &new_rev, State::Ready),
        ],
        &revs,
    );
    assert_eq!(summary(&p), vec!["delete web-1 (update)"]);
    assert_eq!(p.status.current_revision.as_deref(), Some(old_rev.as_str()));
    assert_eq!(p.status.current_replicas, Some(2));
    assert_eq!(p.status.updated_replicas, Some(1));

    let done = [
        pod(0, &new_rev, State::Ready),
        pod(1, &new_rev, State::Ready),
        pod(2, &new_rev, State::Ready),
    ];
    let p = run(&ps, &done, &revs);
    assert!(p.actions.is_empty());
    assert_eq!(p.status.current_revision.as_deref(), Some(new_rev.as_str()));
    assert_eq!(p.status.current_replicas, Some(3));
}

#[test]
fn rolling_update_honours_the_partition() {
    let old = ordered(3);
    let old_rev = revision_of_template(&old);
    let mut ps = petset(
        3,
        "OrderedReady",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}),
        "img:2",
    );
    ps.status = Some(pgpool_api::PetSetStatus {
        current_revision: Some(old_rev.clone()),
        ..Default::default()
    });
    let new_rev = revision_of_template(&ps);
    let revs = [stored_revision(&old, 1), stored_revision(&ps, 2)];
    let p = run(
        &ps,
        &[
            pod(0, &old_rev, State::Ready),
            pod(1, &old_rev, State::Ready),
            pod(2, &new_rev, State::Ready),
        ],
        &revs,
    );
    assert!(
        p.actions.is_empty(),
        "pods below the partition stay: {:?}",
        summary(&p)
    );
    assert_eq!(p.status.current_revision.as_deref(), Some(old_rev.as_str()));

    // A pod below the partition that goes away comes back on the current revision.
    let p = run(
        &ps,
        &[
            pod(0, &old_rev, State::Ready),
            pod(2, &new_rev, State::Ready),
        ],
        &revs,
    );
    assert_eq!(summary(&p), vec![format!("create web-1@{old_rev}")]);
    assert_eq!(created_image(&p, 0), "img:1");
}

#[test]
fn parallel_rolling_update_waits_for_all_pods_healthy() {
    let old = parallel(2);
    let old_rev = revision_of_template(&old);
    let mut ps = petset(2, "Parallel", json!({"type": "RollingUpdate"}), "img:2");
    ps.status = Some(pgpool_api::PetSetStatus {
        current_revision: Some(old_rev.clone()),
        ..Default::default()
    });
    let revs = [stored_revision(&old, 1), stored_revision(&ps, 2)];
    let p = run(
        &ps,
        &[
            pod(0, &old_rev, State::Pending),
            pod(1, &old_rev, State::Ready),
        ],
        &revs,
    );
    assert!(p.actions.is_empty(), "{:?}", summary(&p));
    let p = run(
        &ps,
        &[
            pod(0, &old_rev, State::Ready),
            pod(1, &old_rev, State::Ready),
        ],
        &revs,
    );
    assert_eq!(summary(&p), vec!["delete web-1 (update)"]);
}

#[test]
fn status_counts() {
    let mut ps = ordered(3);
    ps.spec.min_ready_seconds = Some(60);
    let rev = revision_of_template(&ps);
    let revs = [stored_revision(&ps, 1)];
    let p = run(
        &ps,
        &[
            pod(0, &rev, State::Ready),
            pod(1, &rev, State::ReadySince(5)),
            pod(2, &rev, State::Terminating),
            pod(3, "web-other", State::Pending),
        ],
        &revs,
    );
    let s = &p.status;
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.replicas, 4);
    assert_eq!(s.ready_replicas, Some(3));
    assert_eq!(s.available_replicas, Some(2));
    assert_eq!(
        s.updated_replicas,
        Some(2),
        "terminating pods are not counted"
    );
    assert_eq!(s.current_replicas, Some(2));
    assert_eq!(s.current_revision.as_deref(), Some(rev.as_str()));
    assert_eq!(s.update_revision.as_deref(), Some(rev.as_str()));
    assert_eq!(s.selector.as_deref(), Some("app=web"));
    assert_eq!(s.collision_count, None);
    assert!(p.status_changed);
}

#[test]
fn steady_state_plans_no_writes() {
    let ps0 = ordered(2);
    let rev = revision_of_template(&ps0);
    let revs = [stored_revision(&ps0, 1)];
    let all = [pod(0, &rev, State::Ready), pod(1, &rev, State::Ready)];
    let first = run(&ps0, &all, &revs);
    assert!(first.status_changed);
    let mut ps = ps0.clone();
    ps.status = Some(first.status.clone());
    let p = run(&ps, &all, &revs);
    assert!(p.is_noop(), "{p:?}");
    // A new generation (e.g. replicas unchanged but labels edited) is a status change.
    ps.metadata.generation = Some(4);
    assert!(run(&ps, &all, &revs).status_changed);
}

#[test]
fn ignores_pods_it_does_not_control_or_cannot_place() {
    let ps = parallel(1);
    let rev = revision_of_template(&ps);
    let mut foreign = pod(0, &rev, State::Ready);
    foreign.metadata.owner_references = None;
    let mut odd = pod(0, &rev, State::Ready);
    odd.metadata.name = Some("web-00".to_string());
    let p = run(&ps, &[foreign, odd], &[]);
    assert_eq!(summary(&p), vec![format!("create web-0@{rev}")]);
    assert_eq!(p.status.replicas, 0);
}

#[test]
fn history_is_trimmed_but_live_revisions_stay() {
    let mut ps = ordered(1);
    ps.spec.revision_history_limit = Some(2);
    let rev = revision_of_template(&ps);
    // Revisions 1..=5 of other templates, then the current template as 6.
    let mut revs: Vec<ControllerRevision> = (1..=5)
        .map(|i| {
            stored_revision(
                &petset(
                    1,
                    "OrderedReady",
                    json!({"type": "RollingUpdate"}),
                    &format!("old:{i}"),
                ),
                i,
            )
        })
        .collect();
    revs.push(stored_revision(&ps, 6));
    let names: Vec<String> = revs
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    // A pod still runs revision 1, so it is live.
    let p = run(&ps, &[pod(0, &names[0], State::Ready)], &revs);
    assert_eq!(p.revisions.update_name, rev);
    // Non-live: 2,3,4,5 -> keep the newest 2 (4, 5).
    assert_eq!(p.history_deletes, vec![names[1].clone(), names[2].clone()]);

    // Revisions owned by someone else are never touched.
    let mut foreign = revs.clone();
    for r in &mut foreign[..5] {
        r.metadata.owner_references = None;
    }
    let p = run(&ps, &[pod(0, &rev, State::Ready)], &foreign);
    assert!(p.history_deletes.is_empty());
}

#[test]
fn default_history_limit_is_ten() {
    let ps = ordered(1);
    let rev = revision_of_template(&ps);
    let mut revs: Vec<ControllerRevision> = (1..=12)
        .map(|i| {
            stored_revision(
                &petset(
                    1,
                    "OrderedReady",
                    json!({"type": "RollingUpdate"}),
                    &format!("old:{i}"),
                ),
                i,
            )
        })
        .collect();
    revs.push(stored_revision(&ps, 13));
    let p = run(&ps, &[pod(0, &rev, State::Ready)], &revs);
    assert_eq!(p.history_deletes.len(), 2);
    assert_eq!(p.history_deletes[0], revs[0].metadata.name.clone().unwrap());
    assert_eq!(p.history_deletes[1], revs[1].metadata.name.clone().unwrap());
}

#[test]
fn revision_objects_are_owned_and_labelled() {
    let ps = ordered(1);
    let p = run(&ps, &[], &[]);
    let r = p.revisions.create.unwrap();
    let labels = r.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels[LABEL_REVISION_HASH], p.revisions.update_name);
    let owner = &r.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, UID);
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        revision::stored_template(&r),
        Some(ps.spec.template.clone())
    );
    assert_eq!(r.revision, 1);
}

#[test]
fn invalid_petsets_are_refused() {
    let mut ps = ordered(1);
    ps.spec.selector.match_labels = Some([("app".to_string(), "other".to_string())].into());
    let err = plan(&Input {
        petset: &ps,
        pods: &[],
        revisions: &[],
        now: now(),
    })
    .unwrap_err();
    assert!(matches!(err, PlanError::TemplateLabels), "{err}");

    let mut ps = ordered(1);
    ps.spec.selector = Default::default();
    let err = plan(&Input {
        petset: &ps,
        pods: &[],
        revisions: &[],
        now: now(),
    })
    .unwrap_err();
    assert!(matches!(err, PlanError::Selector(_)), "{err}");

    let mut ps = ordered(1);
    ps.metadata.uid = None;
    assert!(matches!(
        plan(&Input {
            petset: &ps,
            pods: &[],
            revisions: &[],
            now: now()
        }),
        Err(PlanError::Incomplete("uid"))
    ));
}

#[test]
fn zero_replicas_deletes_everything_and_completes() {
    let ps = ordered(0);
    let rev = revision_of_template(&ps);
    let revs = [stored_revision(&ps, 1)];
    let p = run(&ps, &[pod(0, &rev, State::Ready)], &revs);
    assert_eq!(summary(&p), vec!["delete web-0 (scale-down)"]);
    let p = run(&ps, &[], &revs);
    assert!(p.actions.is_empty());
    assert_eq!(p.status.replicas, 0);
}

/// `ps` and `revs` in the compact form the caches hold.
fn compact(ps: &PetSet, revs: &[ControllerRevision]) -> (PetSet, Vec<ControllerRevision>) {
    let mut c = ps.clone();
    c.spec.template = revision::compact_template(
        None,
        revision::template_digest(&ps.spec.template).unwrap(),
        Some(true),
    );
    c.spec.volume_claim_templates.clear();
    let revs = revs
        .iter()
        .map(|r| revision::compact_revision(r.clone(), revision::stored_digest(r).unwrap()))
        .collect();
    (c, revs)
}

fn try_run(ps: &PetSet, pods: &[Pod], revisions: &[ControllerRevision]) -> Result<Plan, PlanError> {
    plan(&Input {
        petset: ps,
        pods,
        revisions,
        now: now(),
    })
}

#[test]
fn compact_input_plans_like_full_input_when_nothing_is_created() {
    let ps0 = ordered(3);
    let rev = revision_of_template(&ps0);
    let revs = [stored_revision(&ps0, 1)];
    let all = [
        pod(0, &rev, State::Ready),
        pod(1, &rev, State::Ready),
        pod(2, &rev, State::Ready),
    ];
    let mut ps = ps0.clone();
    ps.status = Some(run(&ps0, &all, &revs).status);
    let (c, crevs) = compact(&ps, &revs);
    let full = run(&ps, &all, &revs);
    let lite = try_run(&c, &all, &crevs).expect("no template needed");
    assert!(lite.is_noop(), "{lite:?}");
    assert_eq!(lite.status, full.status);
    assert_eq!(lite.revisions.update_name, full.revisions.update_name);

    // deletions need no template: scale down and a terminal pod
    let mut smaller = c.clone();
    smaller.spec.replicas = Some(2);
    assert_eq!(
        summary(&try_run(&smaller, &all, &crevs).unwrap()),
        vec!["delete web-2 (scale-down)"]
    );
    let failed = [
        pod(0, &rev, State::Ready),
        pod(1, &rev, State::Failed),
        pod(2, &rev, State::Ready),
    ];
    assert_eq!(
        summary(&try_run(&c, &failed, &crevs).unwrap()),
        vec!["delete web-1 (terminal)"]
    );
}

#[test]
fn compact_input_asks_for_the_full_objects_to_create_anything() {
    let ps = ordered(2);
    let rev = revision_of_template(&ps);
    let revs = [stored_revision(&ps, 1)];
    let (c, crevs) = compact(&ps, &revs);
    // a missing pod
    let err = try_run(&c, &[pod(0, &rev, State::Ready)], &crevs).unwrap_err();
    assert!(err.needs_full_objects(), "{err}");
    // a template without a revision yet
    let newer = petset(2, "OrderedReady", json!({"type": "RollingUpdate"}), "img:2");
    let (c2, _) = compact(&newer, &[]);
    let err = try_run(&c2, &[pod(0, &rev, State::Ready)], &crevs).unwrap_err();
    assert!(err.needs_full_objects(), "{err}");
    // other errors are not that
    let mut bad = c.clone();
    bad.spec.template = revision::compact_template(
        None,
        revision::template_digest(&ps.spec.template).unwrap(),
        Some(false),
    );
    let err = try_run(&bad, &[], &crevs).unwrap_err();
    assert!(matches!(err, PlanError::TemplateLabels), "{err}");
    assert!(!err.needs_full_objects());
}

#[test]
fn compact_current_revision_keeps_its_name() {
    // an update in progress (OnDelete): the current revision stays the old one
    let old = petset(2, "OrderedReady", json!({"type": "OnDelete"}), "img:1");
    let old_rev = revision_of_template(&old);
    let mut ps = petset(2, "OrderedReady", json!({"type": "OnDelete"}), "img:2");
    ps.status = Some(pgpool_api::PetSetStatus {
        current_revision: Some(old_rev.clone()),
        ..Default::default()
    });
    let revs = [stored_revision(&old, 1), stored_revision(&ps, 2)];
    let pods = [
        pod(0, &old_rev, State::Ready),
        pod(1, &old_rev, State::Ready),
    ];
    let (c, crevs) = compact(&ps, &revs);
    let lite = try_run(&c, &pods, &crevs).unwrap();
    let full = run(&ps, &pods, &revs);
    assert_eq!(lite.status, full.status);
    assert_eq!(
        lite.status.current_revision.as_deref(),
        Some(old_rev.as_str())
    );
    assert!(lite.actions.is_empty());
}
