//! UpdateVersion across the real pgpool-II lines (4.3.5 -> 4.6.1 -> 4.7.3) and a failed update
//! that rolls back, with the real provisioner and ops-manager on the testkit API server: every
//! restarted pod mounts a configuration its version reads, and after each success every pod
//! runs the PetSet's current revision.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{
    Env, OpsManager, condition, failed_message, phase, real_lines, uids, version, within,
};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use pgpool_api::conditions::{self, ops, pgpool as types};
use pgpool_api::{OpsRequestPhase, PgpoolVersion, names};
use pgpool_config::{
    CONFIG_DIR, KEY_PGPOOL_CONF, PgpoolRelease, RENAMED_PARAMETERS, RUN_DIR, parse_pgpool_conf,
};
use serde_json::json;
use testkit::{ImageBehavior, KubeletConfig, Wake};

const LIMIT: Duration = Duration::from_secs(60);
const NAME: &str = "pp-lines";
const REPLICAS: usize = 2;
/// A catalog entry of release 4.6.1 whose image the simulated kubelet never makes Ready.
const BROKEN: &str = "4.6.1-never-ready";
const BROKEN_IMAGE: &str = "pgpool-test/pgpool2:4.6.1-never-ready";

/// The catalog entry whose pgpool image is `img`.
fn entry_of<'a>(catalog: &'a [PgpoolVersion], img: &str) -> &'a PgpoolVersion {
    catalog
        .iter()
        .find(|v| v.spec.pgpool.image == img)
        .unwrap_or_else(|| panic!("no catalog entry has image {img}"))
}

fn pgpool_image(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.containers
                .iter()
                .find(|c| c.name == names::CONTAINER_PGPOOL)
        })
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Asserts that the config Secret `pod` mounts (as the API server holds it now) carries, for
/// every renamed parameter, the name that the release of the pod's image reads.
async fn assert_config_fits(env: &Env, pod: &Pod, catalog: &[PgpoolVersion]) {
    let pod_name = pod.name_any();
    let img = pgpool_image(pod);
    let entry = entry_of(catalog, &img);
    let release = PgpoolRelease::parse(&entry.spec.version).expect("release");
    let spec = pod.spec.as_ref().expect("pod spec");
    let pgpool = spec
        .containers
        .iter()
        .find(|c| c.name == names::CONTAINER_PGPOOL)
        .expect("pgpool container");
    let volume = pgpool
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == CONFIG_DIR)
        .map(|m| m.name.clone())
        .unwrap_or_else(|| panic!("{pod_name} mounts nothing at {CONFIG_DIR}"));
    let secret_name = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == volume)
        .and_then(|v| v.secret.as_ref())
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| panic!("{pod_name}: volume {volume} is not a Secret"));
    let secret: Secret = kube::Api::namespaced(env.client.clone(), common::NS)
        .get(&secret_name)
        .await
        .expect("config Secret");
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_PGPOOL_CONF))
        .unwrap_or_else(|| panic!("{secret_name} has no {KEY_PGPOOL_CONF}"));
    let text = String::from_utf8(bytes.0.clone()).expect("utf-8");
    let params = parse_pgpool_conf(&text).expect("pgpool.conf parses");
    for p in RENAMED_PARAMETERS {
        let name = p.name_for(&release);
        let value = params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| {
                panic!(
                    "{pod_name} runs {img} (pgpool-II {}), which reads {name}, but {secret_name} has no {name}:\n{text}",
                    entry.spec.version
                )
            });
        assert!(
            value.contains(RUN_DIR),
            "{pod_name}: {name} = {value}, not {RUN_DIR}"
        );
    }
}

/// Follows ops request `request` until it ends: every pod that appears (a uid not in
/// `before`) while the Pgpool is paused, that is while the ops-manager restarts pods with the
/// configuration the provisioner rendered for the source version, must mount a configuration
/// that fits its image ([`assert_config_fits`]). Returns the pods checked: (name, image).
async fn check_restarts(
    env: &Env,
    request: &str,
    before: &BTreeMap<String, String>,
    catalog: &[PgpoolVersion],
) -> Vec<(String, String)> {
    let mut seen: BTreeSet<String> = before.values().cloned().collect();
    let mut checked = Vec::new();
    let log = env.server.requests();
    within(LIMIT, &format!("request {request} to end"), async {
        loop {
            let next = log.next(Wake::Change);
            let req = env.requests().get(request).await.expect("request");
            let done = phase(&req).is_some_and(|p| p.is_final());
            let pp = env.pgpools().get(NAME).await.expect("Pgpool");
            let paused = pp
                .status
                .as_ref()
                .is_some_and(|s| conditions::get(&s.conditions, types::PAUSED).is_some());
            for (name, pod) in env.pods_of(NAME).await {
                let uid = pod.uid().unwrap_or_default();
                if !paused || seen.contains(&uid) || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                assert_config_fits(env, &pod, catalog).await;
                seen.insert(uid);
                checked.push((name, pgpool_image(&pod)));
            }
            if done {
                return;
            }
            next.await;
        }
    })
    .await;
    checked
}

/// Asserts [`assert_config_fits`] for every pod of the Pgpool.
async fn assert_every_pod_config_fits(env: &Env, catalog: &[PgpoolVersion]) {
    for pod in env.pods_of(NAME).await.values() {
        assert_config_fits(env, pod, catalog).await;
    }
}

/// Waits until the PetSet's status is about its template now and the Pgpool's `PodsUpToDate`
/// condition is about that update revision; then asserts the rollout is complete: the current
/// revision is the update revision, every pod is labelled with it, and the condition is True.
async fn assert_rollout_complete(env: &Env) {
    let update = env
        .server
        .requests()
        .wait_for(
            Wake::Change,
            Duration::from_secs(30),
            "the PetSet status and PodsUpToDate to be about the PetSet's template now",
            || async {
                let ps = env.petsets().get(NAME).await.expect("PetSet");
                let status = ps.status.clone().unwrap_or_default();
                if status.observed_generation != ps.metadata.generation {
                    return None;
                }
                let update = status.update_revision?;
                let pp = env.pgpools().get(NAME).await.expect("Pgpool");
                pp.status
                    .as_ref()
                    .and_then(|s| conditions::get(&s.conditions, types::PODS_UP_TO_DATE))
                    .is_some_and(|c| c.message.contains(&update))
                    .then_some(update)
            },
        )
        .await;
    let ps = env.petsets().get(NAME).await.expect("PetSet");
    let status = ps.status.clone().unwrap_or_default();
    assert_eq!(
        status.current_revision.as_deref(),
        Some(update.as_str()),
        "currentRevision == updateRevision: {status:?}"
    );
    assert_eq!(status.update_revision.as_deref(), Some(update.as_str()));
    let pods = env.pods_of(NAME).await;
    assert_eq!(pods.len(), REPLICAS);
    for (name, p) in &pods {
        assert_eq!(
            p.labels().get(names::LABEL_REVISION_HASH),
            Some(&update),
            "pod {name} runs the update revision"
        );
    }
    let pp = env.pgpools().get(NAME).await.expect("Pgpool");
    let c = conditions::get(
        &pp.status.as_ref().expect("status").conditions,
        types::PODS_UP_TO_DATE,
    )
    .cloned()
    .expect("PodsUpToDate");
    assert_eq!(c.status, conditions::TRUE, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_version_across_parameter_renames_and_a_rollback() {
    // pods take a while to become Ready, so that each restarted pod is seen before the next
    let kubelet = KubeletConfig::default()
        .ready_delay(Duration::from_millis(300))
        .image(BROKEN_IMAGE, ImageBehavior::NeverReady);
    let env = Env::new(kubelet).await;
    let mut catalog = real_lines();
    let mut broken = version(BROKEN, ">= 4.3.5, <= 4.7.3", false);
    broken.spec.version = "4.6.1".into();
    broken.spec.pgpool.image = BROKEN_IMAGE.into();
    catalog.push(broken);
    for v in &catalog {
        env.add_version(v.clone()).await;
    }
    let img = |v: &str| {
        catalog
            .iter()
            .find(|e| e.name_any() == v)
            .map(|e| e.spec.pgpool.image.clone())
            .expect("catalog entry")
    };

    env.ready_pgpool(NAME, "4.3.5", REPLICAS as i32, false)
        .await;
    env.wait_settled_as(NAME, "4.3.5", &img("4.3.5"), REPLICAS)
        .await;
    assert_every_pod_config_fits(&env, &catalog).await;
    assert_rollout_complete(&env).await;

    let ops = OpsManager::start(&env.server).await;
    for target in ["4.6.1", "4.7.3"] {
        let before = uids(&env.pods_of(NAME).await);
        let request = format!("upd-{}", target.replace('.', "-"));
        env.update_request(&request, NAME, target, json!({})).await;
        let checked = check_restarts(&env, &request, &before, &catalog).await;
        let expected: Vec<(String, String)> = (0..REPLICAS)
            .map(|i| (names::pod(NAME, i as i32), img(target)))
            .collect();
        assert_eq!(
            checked, expected,
            "every pod restarted on {target}, each checked"
        );
        let req = env.wait_final(&request, LIMIT).await;
        assert_eq!(
            phase(&req),
            Some(OpsRequestPhase::Successful),
            "{target}: {}",
            failed_message(&req)
        );
        env.wait_settled_as(NAME, target, &img(target), REPLICAS)
            .await;
        let pods = env.pods_of(NAME).await;
        for (name, p) in &pods {
            assert_ne!(before.get(name), p.uid().as_ref(), "{name} was restarted");
            assert_eq!(pgpool_image(p), img(target));
        }
        assert_every_pod_config_fits(&env, &catalog).await;
        assert_rollout_complete(&env).await;
    }

    // a failed update: pod 0 restarts on an image that never becomes Ready -> rollback
    let before = uids(&env.pods_of(NAME).await);
    env.update_request("upd-broken", NAME, BROKEN, json!({"timeout": "3s"}))
        .await;
    let checked = check_restarts(&env, "upd-broken", &before, &catalog).await;
    let pod0 = names::pod(NAME, 0);
    assert_eq!(
        checked,
        [
            (pod0.clone(), BROKEN_IMAGE.to_string()),
            (pod0.clone(), img("4.7.3"))
        ],
        "pod 0 restarted on the target, then back on the source"
    );
    let req = env.wait_final("upd-broken", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    let rollback = condition(&req, ops::ROLLBACK).expect("Rollback condition");
    assert_eq!(rollback.status, conditions::TRUE, "{rollback:?}");

    // back on the source version: spec, PetSet and pods agree, and the Pgpool is Ready
    env.wait_settled_as(NAME, "4.7.3", &img("4.7.3"), REPLICAS)
        .await;
    env.wait_pgpool(NAME, "Ready", common::plan_ready).await;
    assert_every_pod_config_fits(&env, &catalog).await;
    for p in env.pods_of(NAME).await.values() {
        assert_eq!(pgpool_image(p), img("4.7.3"));
    }
    let pp = env.pgpools().get(NAME).await.expect("Pgpool");
    assert_eq!(pp.spec.version, "4.7.3");
    ops.stop().await;
}
