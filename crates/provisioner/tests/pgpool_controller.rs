//! The Pgpool controller against the testkit API server with its simulated kubelet (and the
//! real PetSet controller): provisioning, problems, pause, halt, deletion policies, drift,
//! faults, restarts and the zero-write steady state.

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use pgpool_api::conditions::{self, pgpool as types};
use pgpool_api::{PetSet, Pgpool, PgpoolPhase, names};
use pgpool_provisioner::pgpool::diff::ANNOTATION_DESIRED_HASH;
use serde_json::json;
use testkit::{FaultRule, Verb};

fn pgpool_named(name: &str) -> Pgpool {
    let mut p = example_pgpool();
    p.metadata.name = Some(name.to_string());
    p
}

async fn events_for(env: &Env, name: &str) -> Vec<(String, String, String)> {
    let events: Api<Event> = env.api();
    let mut out: Vec<(String, String, String)> = events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect();
    // core/v1 events too, should a recorder write those
    let core: Api<CoreEvent> = env.api();
    if let Ok(list) = core.list(&ListParams::default()).await {
        out.extend(
            list.items
                .into_iter()
                .filter(|e| e.involved_object.name.as_deref() == Some(name))
                .map(|e| {
                    (
                        e.type_.unwrap_or_default(),
                        e.reason.unwrap_or_default(),
                        e.message.unwrap_or_default(),
                    )
                }),
        );
    }
    out
}

async fn pods_ready(env: &Env, name: &str, n: usize) -> bool {
    let pods = env.pods(name).await;
    pods.len() == n
        && pods.iter().all(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
}

/// Writes by the provisioner since `mark`, with the records for the failure message.
fn provisioner_writes(env: &Env, mark: &testkit::LogMark) -> (u64, String) {
    let writes = env.server.requests().since(mark).writes_by(AGENT);
    let records: Vec<String> = env
        .server
        .requests()
        .records_since(mark)
        .into_iter()
        .filter(|r| r.key.agent == AGENT && r.key.verb.is_write())
        .map(|r| r.to_string())
        .collect();
    (writes, records.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_pgpool_becomes_ready_with_its_children() {
    let env = Env::start().await;
    let created = env.create(&example_pgpool()).await;
    let uid = created.uid().unwrap();
    let ready = env.wait_phase(NAME, PgpoolPhase::Ready).await;

    // status
    let status = ready.status.clone().unwrap();
    assert_eq!(status.observed_generation, ready.metadata.generation);
    for t in [
        types::PROVISIONING_STARTED,
        types::REPLICA_READY,
        types::ACCEPTING_CONNECTION,
        types::READY,
        types::PROVISIONED,
    ] {
        assert!(
            conditions::is_true(&status.conditions, t),
            "{t} true: {status:?}"
        );
    }
    assert!(ready.finalizers().iter().any(|f| f == names::FINALIZER));

    // one pod on the 4.5.3 image
    let pods = env.pods(NAME).await;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].name_any(), "pp-update-0");
    let spec = pods[0].spec.as_ref().unwrap();
    assert_eq!(spec.containers[0].image.as_deref(), Some(IMAGE_453));
    assert_eq!(spec.containers.len(), 1, "no exporter without spec.monitor");

    // children, labels, owner references
    let auth = env.api::<Secret>().get("pp-update-auth").await.unwrap();
    assert_eq!(auth.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(
        env.secret_value("pp-update-auth", "username")
            .await
            .as_deref(),
        Some("pcp")
    );
    let password = env
        .secret_value("pp-update-auth", "password")
        .await
        .unwrap();
    assert!(password.len() >= 16);
    let config = env.api::<Secret>().get("pp-update-config").await.unwrap();
    let keys: Vec<&String> = config.data.as_ref().unwrap().keys().collect();
    for k in [
        "pgpool.conf",
        "pool_hba.conf",
        "pcp.conf",
        "pool_passwd",
        "pgpoolkey",
    ] {
        assert!(keys.iter().any(|key| *key == k), "config Secret has {k}");
    }
    let conf = env
        .secret_value("pp-update-config", "pgpool.conf")
        .await
        .unwrap();
    assert!(
        conf.contains("ha-postgres.demo.svc"),
        "backend from the AppBinding"
    );
    assert!(
        !conf.contains("standby"),
        "no standby Service, no standby backend"
    );

    let svc = env.api::<Service>().get("pp-update").await.unwrap();
    let ports: Vec<(String, i32)> = svc
        .spec
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.port))
        .collect();
    assert_eq!(
        ports,
        vec![("primary".to_string(), 9999), ("pcp".to_string(), 9595)]
    );
    let pods_svc = env.api::<Service>().get("pp-update-pods").await.unwrap();
    let pods_spec = pods_svc.spec.as_ref().unwrap();
    assert_eq!(pods_spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(pods_spec.publish_not_ready_addresses, Some(true));
    assert!(
        env.api::<Service>()
            .get_opt("pp-update-stats")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        env.api::<PodDisruptionBudget>()
            .get_opt("pp-update")
            .await
            .unwrap()
            .is_none(),
        "no PDB for one replica"
    );
    let petset = env.api::<PetSet>().get("pp-update").await.unwrap();
    for meta in [
        auth.meta(),
        config.meta(),
        svc.meta(),
        pods_svc.meta(),
        petset.meta(),
    ] {
        let labels = meta.labels.clone().unwrap_or_default();
        for (k, v) in names::labels(NAME) {
            assert_eq!(labels.get(&k), Some(&v), "{:?} label {k}", meta.name);
        }
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.uid == uid)
            .unwrap_or_else(|| panic!("{:?} owned by the Pgpool", meta.name));
        assert_eq!(owner.controller, Some(true));
        assert!(
            meta.annotations
                .as_ref()
                .unwrap()
                .contains_key(ANNOTATION_DESIRED_HASH)
        );
    }
    // children are written with server-side apply
    let applies = env
        .server
        .requests()
        .snapshot()
        .sum(|k| k.agent == AGENT && k.verb == Verb::Apply);
    assert!(
        applies >= 4,
        "children applied with server-side apply ({applies})"
    );

    // metrics and events
    assert_eq!(
        env.metric("pgpool_operator_pgpools", ("phase", "Ready")),
        Some(1.0)
    );
    assert!(
        env.metric("pgpool_operator_reconcile_total", ("result", "success"))
            .unwrap()
            >= 1.0
    );
    let events = events_for(&env, NAME).await;
    assert!(
        events.iter().any(|(t, reason, note)| t == "Normal"
            && reason == "PhaseReady"
            && note.contains("Provisioning -> Ready")),
        "{events:?} {}",
        env.server
            .requests()
            .records()
            .iter()
            .filter(|r| r.key.agent == AGENT && r.key.verb.is_write())
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_give_three_pods_and_a_pdb() {
    let env = Env::start().await;
    let mut p = example_pgpool();
    p.spec.replicas = Some(3);
    env.create(&p).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let names: Vec<String> = env.pods(NAME).await.iter().map(|p| p.name_any()).collect();
    assert_eq!(names, ["pp-update-0", "pp-update-1", "pp-update-2"]);
    let pdb = env
        .api::<PodDisruptionBudget>()
        .get("pp-update")
        .await
        .unwrap();
    let spec = pdb.spec.unwrap();
    assert_eq!(spec.min_available, Some(IntOrString::Int(2)));
    assert_eq!(spec.max_unavailable, None);
    assert_eq!(
        spec.unhealthy_pod_eviction_policy.as_deref(),
        Some("AlwaysAllow")
    );
    assert_eq!(
        spec.selector.unwrap().match_labels,
        Some(names::selector(NAME))
    );

    // scale down to one: the PDB goes
    env.patch_spec(NAME, json!({"replicas": 1})).await;
    wait_until("the PDB is removed", || async {
        env.api::<PodDisruptionBudget>()
            .get_opt("pp-update")
            .await
            .unwrap()
            .is_none()
    })
    .await;
    wait_until("one pod left", || pods_ready(&env, NAME, 1)).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_version_is_a_false_condition_and_nothing_is_built() {
    let env = Env::start().await;
    let mut p = example_pgpool();
    p.spec.version = "9.9.9".into();
    env.create(&p).await;
    env.wait_condition(
        NAME,
        types::PROVISIONING_STARTED,
        "False",
        "VersionNotFound",
    )
    .await;
    let got = env.pgpool(NAME).await.unwrap();
    let status = got.status.unwrap();
    let cond = conditions::get(&status.conditions, types::PROVISIONING_STARTED).unwrap();
    assert!(cond.message.contains("9.9.9"), "{}", cond.message);
    assert!(
        cond.message.contains("spec.version"),
        "names the fix: {}",
        cond.message
    );
    assert_eq!(status.phase, Some(PgpoolPhase::Provisioning));
    assert_eq!(status.observed_generation, got.metadata.generation);

    // no half-built children
    env.wait_reconciles(3).await;
    assert!(env.api::<PetSet>().get_opt(NAME).await.unwrap().is_none());
    for s in ["pp-update-auth", "pp-update-config"] {
        assert!(
            env.api::<Secret>().get_opt(s).await.unwrap().is_none(),
            "{s}"
        );
    }
    for s in ["pp-update", "pp-update-pods"] {
        assert!(
            env.api::<Service>().get_opt(s).await.unwrap().is_none(),
            "{s}"
        );
    }
    let events = events_for(&env, NAME).await;
    assert!(
        events
            .iter()
            .any(|(t, r, n)| t == "Warning" && r == "VersionNotFound" && n.contains("9.9.9")),
        "{events:?}"
    );

    // fixing it is enough
    env.patch_spec(NAME, json!({"version": "4.5.3"})).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_appbinding_and_bad_secret_are_reported_and_recovered_by_watches() {
    // a long resync: recovery must come from the watches, not from the timer
    let mut config = test_config();
    config.resync = std::time::Duration::from_secs(3600);
    let env = Env::start_with(config).await;
    let mut p = example_pgpool();
    p.spec.postgres_ref.name = "other-postgres".into();
    env.create(&p).await;
    env.wait_condition(
        NAME,
        types::PROVISIONING_STARTED,
        "False",
        "AppBindingNotFound",
    )
    .await;

    // an AppBinding whose Secret has no password
    let secrets = env.api::<Secret>();
    secrets
        .create(
            &PostParams::default(),
            &testkit::fixtures::secret(NS, "other-auth", [("username", "postgres")]),
        )
        .await
        .unwrap();
    let ab: pgpool_api::AppBinding = serde_json::from_value(json!({
        "apiVersion": "appcatalog.appscode.com/v1alpha1",
        "kind": "AppBinding",
        "metadata": {"name": "other-postgres", "namespace": NS},
        "spec": {"clientConfig": {"service": {"name": "ha-postgres", "port": 5432}},
                 "secret": {"name": "other-auth"}}
    }))
    .unwrap();
    env.api::<pgpool_api::AppBinding>()
        .create(&PostParams::default(), &ab)
        .await
        .unwrap();
    env.wait_condition(
        NAME,
        types::PROVISIONING_STARTED,
        "False",
        "BackendSecretInvalid",
    )
    .await;
    assert!(env.api::<PetSet>().get_opt(NAME).await.unwrap().is_none());

    // the password arrives: Ready
    secrets
        .patch(
            "other-auth",
            &PatchParams::default(),
            &Patch::Merge(&json!({"data": {"password": "cHc="}})),
        )
        .await
        .unwrap();
    env.wait_phase(NAME, PgpoolPhase::Ready).await;

    // a standby Service appears: the config gets a second backend (Service watch)
    env.api::<Service>()
        .create(
            &PostParams::default(),
            &testkit::fixtures::service(NS, "ha-postgres-standby", [("app", "pg")], 5432),
        )
        .await
        .unwrap();
    wait_until("the standby backend in pgpool.conf", || async {
        env.secret_value("pp-update-config", "pgpool.conf")
            .await
            .is_some_and(|c| c.contains("ha-postgres-standby.demo.svc"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_writes() {
    let env = Env::start_with(ProvisionerConfigExt::fast_resync()).await;
    let mut p = example_pgpool();
    p.spec.replicas = Some(2);
    env.create(&p).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    // let the last status writes and events settle
    env.wait_reconciles(5).await;
    let mark = env.server.requests().mark();
    // 60 s of resyncs at the default interval would be 60/300 reconciles; here hundreds
    env.wait_reconciles(100).await;
    let (writes, records) = provisioner_writes(&env, &mark);
    assert_eq!(writes, 0, "writes in steady state:\n{records}");
    // the reconciles read the watch caches only
    let reads: Vec<String> = env
        .server
        .requests()
        .records_since(&mark)
        .into_iter()
        .filter(|r| r.key.agent == AGENT && matches!(r.key.verb, Verb::Get | Verb::List))
        .map(|r| r.to_string())
        .collect();
    assert!(
        reads.is_empty(),
        "reads in steady state:\n{}",
        reads.join("\n")
    );
}

/// Test configurations.
struct ProvisionerConfigExt;
impl ProvisionerConfigExt {
    fn fast_resync() -> pgpool_provisioner::ProvisionerConfig {
        let mut c = test_config();
        c.resync = std::time::Duration::from_millis(10);
        c
    }
}

async fn set_paused(env: &Env, status: Option<&str>) {
    let ops = env.server.client_as("ops-manager");
    let api: Api<Pgpool> = Api::namespaced(ops, NS);
    for _ in 0..10 {
        let mut p = api.get(NAME).await.unwrap();
        let st = p.status.get_or_insert_with(Default::default);
        match status {
            Some(s) => {
                conditions::set(
                    &mut st.conditions,
                    conditions::NewCondition {
                        type_: types::PAUSED,
                        status: s,
                        reason: "PauseRequested",
                        message: "PgpoolOpsRequest demo/upd".into(),
                        observed_generation: p.metadata.generation,
                    },
                    chrono::Utc::now(),
                );
            }
            None => {
                conditions::remove(&mut st.conditions, types::PAUSED);
            }
        }
        match api.replace_status(NAME, &PostParams::default(), &p).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("write Paused: {e}"),
        }
    }
    panic!("could not write Paused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_all_child_writes() {
    let env = Env::start().await;
    env.create(&example_pgpool()).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;

    set_paused(&env, Some("Unknown")).await;
    env.wait_condition(NAME, types::PAUSED, "True", "PauseAcknowledged")
        .await;
    // The acknowledging reconcile publishes its events after the status write: let it end, so
    // that they are not counted as writes made while paused.
    env.wait_reconciles(1).await;
    let mark = env.server.requests().mark();

    // while paused: replicas change, a child is edited, another deleted
    env.patch_spec(NAME, json!({"replicas": 2})).await;
    env.api::<Service>()
        .patch(
            "pp-update",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"metadata": {"labels": {"app.kubernetes.io/instance": "edited"}}}),
            ),
        )
        .await
        .unwrap();
    env.api::<Service>()
        .delete("pp-update-pods", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_reconciles(10).await;
    let counts = env.server.requests().since(&mark);
    // Only the Secrets are rendered while paused (Reconfigure and RotateAuth wait for them):
    // the config Secret says which generation it was rendered from.
    let child_writes = counts.sum(|k| {
        k.agent == AGENT
            && k.verb.is_write()
            && k.resource_path() != "pgpools/status"
            && k.resource_path() != "secrets"
    });
    let (_, records) = provisioner_writes(&env, &mark);
    assert_eq!(child_writes, 0, "writes while paused:\n{records}");
    let generation = env
        .api::<Pgpool>()
        .get(NAME)
        .await
        .unwrap()
        .metadata
        .generation;
    let config = env.api::<Secret>().get("pp-update-config").await.unwrap();
    let rendered = config
        .annotations()
        .get(names::ANNOTATION_RENDERED_GENERATION)
        .cloned();
    assert_eq!(
        rendered,
        generation.map(|g| g.to_string()),
        "rendered while paused"
    );
    assert!(
        env.api::<Service>()
            .get_opt("pp-update-pods")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        env.api::<PetSet>().get(NAME).await.unwrap().spec.replicas,
        Some(1)
    );

    // resume: everything catches up
    set_paused(&env, None).await;
    wait_until("two ready pods after resume", || pods_ready(&env, NAME, 2)).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    assert!(
        env.api::<Service>()
            .get_opt("pp-update-pods")
            .await
            .unwrap()
            .is_some()
    );
    let labels = env
        .api::<Service>()
        .get("pp-update")
        .await
        .unwrap()
        .labels()
        .clone();
    assert_eq!(
        labels.get("app.kubernetes.io/instance").map(String::as_str),
        Some(NAME),
        "drift corrected after resume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_and_unhalt_keep_the_credentials() {
    let env = Env::start().await;
    env.create(&example_pgpool()).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let password = env
        .secret_value("pp-update-auth", "password")
        .await
        .unwrap();
    let key = env
        .secret_value("pp-update-config", "pgpoolkey")
        .await
        .unwrap();

    env.patch_spec(NAME, json!({"halted": true})).await;
    env.wait_phase(NAME, PgpoolPhase::Halted).await;
    wait_until("PetSet, Services and pods gone", || async {
        env.api::<PetSet>().get_opt(NAME).await.unwrap().is_none()
            && env
                .api::<Service>()
                .get_opt("pp-update")
                .await
                .unwrap()
                .is_none()
            && env
                .api::<Service>()
                .get_opt("pp-update-pods")
                .await
                .unwrap()
                .is_none()
            && env.pods(NAME).await.is_empty()
    })
    .await;
    assert!(
        env.secret_value("pp-update-auth", "password")
            .await
            .is_some()
    );
    assert!(
        env.secret_value("pp-update-config", "pgpoolkey")
            .await
            .is_some()
    );
    // halted and quiet
    env.wait_reconciles(3).await;
    let mark = env.server.requests().mark();
    env.wait_reconciles(5).await;
    let (writes, records) = provisioner_writes(&env, &mark);
    assert_eq!(writes, 0, "halted steady state:\n{records}");

    env.patch_spec(NAME, json!({"halted": false})).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    assert_eq!(
        env.secret_value("pp-update-auth", "password")
            .await
            .unwrap(),
        password
    );
    assert_eq!(
        env.secret_value("pp-update-config", "pgpoolkey")
            .await
            .unwrap(),
        key
    );
}

async fn deleted(env: &Env, name: &str) {
    env.api::<Pgpool>()
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    wait_until(&format!("Pgpool {name} gone"), || async {
        env.pgpool(name).await.is_none()
    })
    .await;
}

async fn runtime_children_gone(env: &Env, name: &str) {
    wait_until(
        "PetSet, Services, PDB, config Secret and pods gone",
        || async {
            env.api::<PetSet>().get_opt(name).await.unwrap().is_none()
                && env.api::<Service>().get_opt(name).await.unwrap().is_none()
                && env
                    .api::<Service>()
                    .get_opt(&format!("{name}-pods"))
                    .await
                    .unwrap()
                    .is_none()
                && env
                    .api::<PodDisruptionBudget>()
                    .get_opt(name)
                    .await
                    .unwrap()
                    .is_none()
                && env
                    .api::<Secret>()
                    .get_opt(&format!("{name}-config"))
                    .await
                    .unwrap()
                    .is_none()
                && env.pods(name).await.is_empty()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policy_delete_and_halt_keep_the_auth_secret() {
    let env = Env::start().await;
    for (name, policy) in [("pp-delete", "Delete"), ("pp-halt", "Halt")] {
        let mut p = pgpool_named(name);
        p.spec.replicas = Some(2);
        p.spec.deletion_policy = serde_json::from_value(json!(policy)).unwrap();
        let uid = env.create(&p).await.uid().unwrap();
        env.wait_phase(name, PgpoolPhase::Ready).await;
        let auth = format!("{name}-auth");
        let password = env.secret_value(&auth, "password").await.unwrap();

        deleted(&env, name).await;
        runtime_children_gone(&env, name).await;
        let kept = env.api::<Secret>().get(&auth).await.unwrap();
        assert!(
            kept.owner_references().iter().all(|o| o.uid != uid),
            "{policy}: owner reference dropped"
        );

        // a re-created Pgpool finds the same credentials
        env.create(&p).await;
        env.wait_phase(name, PgpoolPhase::Ready).await;
        assert_eq!(
            env.secret_value(&auth, "password").await.unwrap(),
            password,
            "{policy}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policy_wipeout_removes_everything() {
    let env = Env::start().await;
    let mut p = pgpool_named("pp-wipe");
    p.spec.replicas = Some(2);
    p.spec.deletion_policy = serde_json::from_value(json!("WipeOut")).unwrap();
    env.create(&p).await;
    env.wait_phase("pp-wipe", PgpoolPhase::Ready).await;
    deleted(&env, "pp-wipe").await;
    runtime_children_gone(&env, "pp-wipe").await;
    wait_until("auth Secret gone", || async {
        env.api::<Secret>()
            .get_opt("pp-wipe-auth")
            .await
            .unwrap()
            .is_none()
    })
    .await;
    // the backend's objects are not ours
    assert!(
        env.api::<Secret>()
            .get_opt("ha-postgres-auth")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        env.api::<Service>()
            .get_opt("ha-postgres")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policy_do_not_terminate_keeps_everything() {
    let env = Env::start().await;
    let mut p = pgpool_named("pp-keep");
    p.spec.deletion_policy = serde_json::from_value(json!("DoNotTerminate")).unwrap();
    env.create(&p).await;
    env.wait_phase("pp-keep", PgpoolPhase::Ready).await;
    env.api::<Pgpool>()
        .delete("pp-keep", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("a DeletionRefused event", || async {
        events_for(&env, "pp-keep")
            .await
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "DeletionRefused")
    })
    .await;
    env.wait_reconciles(5).await;
    let p = env.pgpool("pp-keep").await.expect("still there");
    assert!(p.metadata.deletion_timestamp.is_some());
    assert!(
        env.api::<PetSet>()
            .get_opt("pp-keep")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        env.api::<Secret>()
            .get_opt("pp-keep-config")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(env.pods("pp-keep").await.len(), 1);

    // changing the policy lets it go
    env.patch_spec("pp-keep", json!({"deletionPolicy": "Delete"}))
        .await;
    wait_until("Pgpool gone", || async {
        env.pgpool("pp-keep").await.is_none()
    })
    .await;
    runtime_children_gone(&env, "pp-keep").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_corrected_and_deleted_children_come_back() {
    // a long resync: corrections must come from the watches
    let mut config = test_config();
    config.resync = std::time::Duration::from_secs(3600);
    let env = Env::start_with(config).await;
    env.create(&example_pgpool()).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let password = env
        .secret_value("pp-update-auth", "password")
        .await
        .unwrap();

    // edit the client Service's port
    env.api::<Service>()
        .patch(
            "pp-update",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"ports": [{"name": "primary", "port": 1234, "targetPort": 1234, "protocol": "TCP"}]}})),
        )
        .await
        .unwrap();
    wait_until("the Service's ports restored", || async {
        let svc = env.api::<Service>().get("pp-update").await.unwrap();
        let ports: Vec<i32> = svc
            .spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .map(|p| p.port)
            .collect();
        ports == [9999, 9595]
    })
    .await;

    // edit the PetSet's replicas
    env.api::<PetSet>()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    wait_until("the PetSet's replicas restored", || async {
        env.api::<PetSet>().get(NAME).await.unwrap().spec.replicas == Some(1)
    })
    .await;

    // delete the config Secret, the headless Service and the PetSet
    env.api::<Secret>()
        .delete("pp-update-config", &DeleteParams::default())
        .await
        .unwrap();
    env.api::<Service>()
        .delete("pp-update-pods", &DeleteParams::default())
        .await
        .unwrap();
    env.api::<PetSet>()
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    wait_until("deleted children re-created", || async {
        env.api::<Secret>()
            .get_opt("pp-update-config")
            .await
            .unwrap()
            .is_some()
            && env
                .api::<Service>()
                .get_opt("pp-update-pods")
                .await
                .unwrap()
                .is_some()
            && env.api::<PetSet>().get_opt(NAME).await.unwrap().is_some()
    })
    .await;
    wait_until("the pod back", || pods_ready(&env, NAME, 1)).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    assert_eq!(
        env.secret_value("pp-update-auth", "password")
            .await
            .unwrap(),
        password
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_server_errors_are_retried() {
    let env = Env::start().await;
    let faults = env.server.faults();
    faults.inject(
        FaultRule::new(500)
            .agent(AGENT)
            .verb(Verb::Apply)
            .resource("services")
            .times(3),
    );
    faults.inject(
        FaultRule::new(409)
            .agent(AGENT)
            .verb(Verb::Apply)
            .resource("petsets")
            .times(2),
    );
    faults.inject(
        FaultRule::new(409)
            .agent(AGENT)
            .verb(Verb::Update)
            .resource("pgpools/status")
            .times(2),
    );
    faults.inject(
        FaultRule::new(500)
            .agent(AGENT)
            .verb(Verb::Create)
            .resource("secrets")
            .times(1),
    );
    // the backend Secret, the one object the first reconcile reads from the API server
    faults.inject(
        FaultRule::new(500)
            .agent(AGENT)
            .verb(Verb::Get)
            .resource("secrets")
            .times(2),
    );
    env.create(&example_pgpool()).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    assert_eq!(faults.pending(), 0, "every fault was hit");
    assert!(env.operator_running());
    assert!(
        env.metric("pgpool_operator_reconcile_total", ("result", "error"))
            .unwrap()
            >= 1.0,
        "errors were counted"
    );
    let events = events_for(&env, NAME).await;
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "ReconcileFailed"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recreates_nothing_and_keeps_passwords() {
    let mut env = Env::start().await;
    let mut p = example_pgpool();
    p.spec.replicas = Some(2);
    env.create(&p).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    env.wait_reconciles(3).await;

    let snapshot = |env: &Env| {
        let env_client = env.client.clone();
        async move {
            let mut out = BTreeMap::new();
            let secrets: Api<Secret> = Api::namespaced(env_client.clone(), NS);
            for s in ["pp-update-auth", "pp-update-config"] {
                let o = secrets.get(s).await.unwrap();
                out.insert(format!("secret/{s}"), (o.uid(), o.resource_version()));
            }
            let services: Api<Service> = Api::namespaced(env_client.clone(), NS);
            for s in ["pp-update", "pp-update-pods"] {
                let o = services.get(s).await.unwrap();
                out.insert(format!("service/{s}"), (o.uid(), o.resource_version()));
            }
            let ps = Api::<PetSet>::namespaced(env_client.clone(), NS)
                .get(NAME)
                .await
                .unwrap();
            out.insert("petset".into(), (ps.uid(), ps.resource_version()));
            let pdb = Api::<PodDisruptionBudget>::namespaced(env_client.clone(), NS)
                .get(NAME)
                .await
                .unwrap();
            out.insert("pdb".into(), (pdb.uid(), pdb.resource_version()));
            for pod in Api::<Pod>::namespaced(env_client, NS)
                .list(&ListParams::default().labels(&names::selector_string(NAME)))
                .await
                .unwrap()
            {
                out.insert(format!("pod/{}", pod.name_any()), (pod.uid(), None));
            }
            out
        }
    };
    let before = snapshot(&env).await;
    let password = env
        .secret_value("pp-update-auth", "password")
        .await
        .unwrap();

    env.stop_operator().await;
    let mark = env.server.requests().mark();
    env.start_operator().await;
    env.wait_reconciles(10).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let after = snapshot(&env).await;
    assert_eq!(before, after, "nothing re-created or rewritten");
    assert_eq!(
        env.secret_value("pp-update-auth", "password")
            .await
            .unwrap(),
        password
    );
    let (writes, records) = provisioner_writes(&env, &mark);
    assert_eq!(
        writes, 0,
        "a restart on a Ready Pgpool writes nothing:\n{records}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_provisioning_keeps_the_generated_credentials() {
    let mut env = Env::start().await;
    // the PetSet cannot be applied: provisioning stops half-way, after the Secrets
    env.server.faults().inject(
        FaultRule::new(500)
            .agent(AGENT)
            .verb(Verb::Apply)
            .resource("petsets")
            .times(usize::MAX),
    );
    env.create(&example_pgpool()).await;
    wait_until("auth and config Secrets", || async {
        env.secret_value("pp-update-auth", "password")
            .await
            .is_some()
            && env
                .secret_value("pp-update-config", "pgpoolkey")
                .await
                .is_some()
    })
    .await;
    let password = env
        .secret_value("pp-update-auth", "password")
        .await
        .unwrap();
    let key = env
        .secret_value("pp-update-config", "pgpoolkey")
        .await
        .unwrap();
    let auth_uid = env
        .api::<Secret>()
        .get("pp-update-auth")
        .await
        .unwrap()
        .uid();
    env.stop_operator().await;
    env.server.faults().clear();

    env.start_operator().await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    assert_eq!(
        env.secret_value("pp-update-auth", "password")
            .await
            .unwrap(),
        password
    );
    assert_eq!(
        env.secret_value("pp-update-config", "pgpoolkey")
            .await
            .unwrap(),
        key
    );
    assert_eq!(
        env.api::<Secret>()
            .get("pp-update-auth")
            .await
            .unwrap()
            .uid(),
        auth_uid,
        "not re-created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_supplied_auth_secret_is_used_as_is_and_never_deleted() {
    let env = Env::start().await;
    env.api::<Secret>()
        .create(
            &PostParams::default(),
            &testkit::fixtures::secret(NS, "my-pcp", [("username", "admin"), ("password", "mine")]),
        )
        .await
        .unwrap();
    let mut p = example_pgpool();
    p.spec.auth_secret =
        serde_json::from_value(json!({"name": "my-pcp", "externallyManaged": true})).unwrap();
    env.create(&p).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let pcp = env
        .secret_value("pp-update-config", "pcp.conf")
        .await
        .unwrap();
    assert!(pcp.starts_with("admin:"), "{pcp}");
    let mine = env.api::<Secret>().get("my-pcp").await.unwrap();
    assert!(mine.owner_references().is_empty(), "never written");
    assert!(
        env.api::<Secret>()
            .get_opt("pp-update-auth")
            .await
            .unwrap()
            .is_none()
    );
    deleted(&env, NAME).await;
    runtime_children_gone(&env, NAME).await;
    assert!(
        env.api::<Secret>()
            .get_opt("my-pcp")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_adds_the_exporter_and_stats_service_and_a_service_monitor_when_possible() {
    let env = Env::start().await;
    let mut p = example_pgpool();
    p.spec.monitor = serde_json::from_value(json!({
        "agent": "prometheus.io/operator",
        "prometheus": {"serviceMonitor": {"labels": {"release": "prometheus"}, "interval": "10s"}}
    }))
    .unwrap();
    env.create(&p).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let pods = env.pods(NAME).await;
    let containers: Vec<(String, Option<String>)> = pods[0]
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| (c.name.clone(), c.image.clone()))
        .collect();
    assert_eq!(
        containers,
        vec![
            ("pgpool".to_string(), Some(IMAGE_453.to_string())),
            ("exporter".to_string(), Some(EXPORTER_IMAGE.to_string()))
        ]
    );
    let stats = env.api::<Service>().get("pp-update-stats").await.unwrap();
    assert_eq!(stats.spec.unwrap().ports.unwrap()[0].port, 9719);
    // no ServiceMonitor CRD in this cluster: said so in the condition, not an error
    env.wait_condition(
        NAME,
        types::PROVISIONING_STARTED,
        "True",
        "ProvisioningStarted",
    )
    .await;
    let status = env.pgpool(NAME).await.unwrap().status.unwrap();
    let msg = &conditions::get(&status.conditions, types::PROVISIONING_STARTED)
        .unwrap()
        .message;
    assert!(msg.contains("ServiceMonitor"), "{msg}");

    // the CRD appears: a ServiceMonitor is made (on the next resync)
    env.server.register_crd(&service_monitor_crd());
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    );
    let sms: Api<kube::api::DynamicObject> = Api::namespaced_with(env.client.clone(), NS, &ar);
    wait_until("a ServiceMonitor", || async {
        sms.get_opt("pp-update-stats")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    let sm = sms.get("pp-update-stats").await.unwrap();
    assert_eq!(
        sm.labels().get("release").map(String::as_str),
        Some("prometheus")
    );
    assert_eq!(sm.data["spec"]["endpoints"][0]["port"], "metrics");

    // monitoring off: exporter Service and ServiceMonitor go
    env.patch_spec(NAME, json!({"monitor": null})).await;
    wait_until("stats Service and ServiceMonitor removed", || async {
        env.api::<Service>()
            .get_opt("pp-update-stats")
            .await
            .unwrap()
            .is_none()
            && sms
                .get_opt("pp-update-stats")
                .await
                .ok()
                .flatten()
                .is_none()
    })
    .await;
}

fn service_monitor_crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    testkit::fixtures::schemaless_crd(
        "monitoring.coreos.com",
        "ServiceMonitor",
        "servicemonitors",
        "Namespaced",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaced_provisioner_reads_a_backend_in_another_namespace() {
    let mut config = test_config();
    config.namespace = Some(NS.to_string());
    let env = Env::start_with(config).await;
    // the backend lives in "db", outside the namespace the provisioner watches
    let db = "db";
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    let _ = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": db}})).unwrap(),
        )
        .await;
    Api::<Secret>::namespaced(env.client.clone(), db)
        .create(
            &PostParams::default(),
            &testkit::fixtures::secret(
                db,
                "ha-postgres-auth",
                [("username", "postgres"), ("password", "other-backend")],
            ),
        )
        .await
        .unwrap();
    Api::<Service>::namespaced(env.client.clone(), db)
        .create(
            &PostParams::default(),
            &testkit::fixtures::service(db, "ha-postgres", [("app", "postgres")], 5432),
        )
        .await
        .unwrap();
    let mut appbinding: pgpool_api::AppBinding =
        serde_yaml::from_str(&example("appbinding.yaml")).unwrap();
    appbinding.metadata.namespace = Some(db.to_string());
    Api::<pgpool_api::AppBinding>::namespaced(env.client.clone(), db)
        .create(&PostParams::default(), &appbinding)
        .await
        .unwrap();

    let mut p = example_pgpool();
    p.metadata.name = Some("pp-cross".into());
    p.spec.postgres_ref.namespace = Some(db.to_string());
    env.create(&p).await;
    env.wait_phase("pp-cross", PgpoolPhase::Ready).await;
    let conf = env
        .secret_value("pp-cross-config", "pgpool.conf")
        .await
        .unwrap();
    assert!(conf.contains("ha-postgres.db.svc"), "{conf}");
}

/// The `PodsUpToDate` condition of Pgpool `name`: (status, reason, message).
async fn pods_up_to_date(env: &Env, name: &str) -> Option<(String, String, String)> {
    env.pgpool(name)
        .await
        .and_then(|p| p.status)
        .and_then(|s| conditions::get(&s.conditions, types::PODS_UP_TO_DATE).cloned())
        .map(|c| (c.status, c.reason, c.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_edit_outside_an_ops_request_names_the_outdated_pods_until_they_are_rolled() {
    let env = Env::start_with(ProvisionerConfigExt::fast_resync()).await;
    let mut p = example_pgpool();
    p.spec.replicas = Some(2);
    env.create(&p).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    env.wait_condition(NAME, types::PODS_UP_TO_DATE, "True", "AllPodsUpToDate")
        .await;
    let petsets: Api<PetSet> = env.api();
    let before = petsets.get(NAME).await.unwrap();
    let old_rev = before
        .status
        .as_ref()
        .unwrap()
        .update_revision
        .clone()
        .unwrap();

    // a user's edit of the pod template: OnDelete replaces no pod
    env.patch_spec(
        NAME,
        json!({"podTemplate": {"metadata": {"annotations": {"example.com/edited": "yes"}}}}),
    )
    .await;
    env.wait_condition(NAME, types::PODS_UP_TO_DATE, "False", "OutdatedPods")
        .await;
    let ps = petsets.get(NAME).await.unwrap();
    let new_rev = ps.status.as_ref().unwrap().update_revision.clone().unwrap();
    assert_ne!(new_rev, old_rev);
    let (_, _, message) = pods_up_to_date(&env, NAME).await.unwrap();
    for part in [
        "2 of 2 pods",
        &format!("pp-update-0 (revision {old_rev})"),
        &format!("pp-update-1 (revision {old_rev})"),
        &format!("update revision is {new_rev}"),
        "PgpoolOpsRequest of type Restart",
    ] {
        assert!(message.contains(part), "{part:?} in {message:?}");
    }
    let pods = env.pods(NAME).await;
    assert!(
        pods.iter()
            .all(|p| p.labels().get(names::LABEL_REVISION_HASH) == Some(&old_rev))
    );
    let phase = env.pgpool(NAME).await.unwrap().status.unwrap().phase;
    assert_eq!(phase, Some(PgpoolPhase::Ready), "the old pods still serve");

    // one Warning, and at rest no status write
    wait_until("the OutdatedPods warning", || async {
        events_for(&env, NAME)
            .await
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "OutdatedPods")
    })
    .await;
    env.wait_reconciles(5).await;
    let mark = env.server.requests().mark();
    env.wait_reconciles(50).await;
    let (writes, records) = provisioner_writes(&env, &mark);
    assert_eq!(writes, 0, "writes at rest with outdated pods:\n{records}");
    let warnings = events_for(&env, NAME)
        .await
        .into_iter()
        .filter(|(t, r, _)| t == "Warning" && r == "OutdatedPods")
        .count();
    assert_eq!(warnings, 1, "one warning per transition");

    // the pods are deleted (what a Restart request does): the PetSet controller recreates
    // them on the update revision, and the condition clears itself
    let pod_api: Api<Pod> = env.api();
    pod_api
        .delete("pp-update-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("pp-update-0 back on the update revision", || async {
        let (pods, rev) = (env.pods(NAME).await, new_rev.clone());
        pods.iter().any(|p| {
            p.name_any() == "pp-update-0"
                && p.labels().get(names::LABEL_REVISION_HASH) == Some(&rev)
        })
    })
    .await;
    env.wait_condition(NAME, types::PODS_UP_TO_DATE, "False", "OutdatedPods")
        .await;
    wait_until("only pp-update-1 named", || async {
        pods_up_to_date(&env, NAME).await.is_some_and(|(_, _, m)| {
            m.contains("1 of 2 pods") && m.contains("pp-update-1") && !m.contains("pp-update-0")
        })
    })
    .await;
    pod_api
        .delete("pp-update-1", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_condition(NAME, types::PODS_UP_TO_DATE, "True", "AllPodsUpToDate")
        .await;
    wait_until("both pods back on the update revision", || async {
        let pods = env.pods(NAME).await;
        pods.len() == 2
            && pods
                .iter()
                .all(|p| p.labels().get(names::LABEL_REVISION_HASH) == Some(&new_rev))
    })
    .await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let (status, _, message) = pods_up_to_date(&env, NAME).await.unwrap();
    assert_eq!(status, "True");
    assert!(message.contains(&new_rev), "{message}");
}
