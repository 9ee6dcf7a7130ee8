//! Updates that take a PetSet back to a template it ran before: a failed update's rollback
//! and an update back to an earlier version (A -> B -> A). On a real kube-apiserver the
//! earlier ControllerRevision cannot be patched (its `data` is compared byte for byte after
//! the patch; testkit models that), so these runs prove the PetSet controller gets past it.

mod common;

use std::time::Duration;

use common::{Env, OpsManager, failed_message, image, phase, plan_ready};
use kube::api::{Patch, PatchParams};
use pgpool_api::{OpsRequestPhase, PgpoolVersion};
use serde_json::json;
use testkit::{ImageBehavior, KubeletConfig};

const LIMIT: Duration = Duration::from_secs(60);
/// Long enough to see a retrying controller (its first back-off steps are 1 s and 2 s).
const QUIET_WINDOW: Duration = Duration::from_secs(3);

fn kubelet() -> KubeletConfig {
    KubeletConfig::default().ready_delay(Duration::from_millis(30))
}

/// The PetSet's current and update revisions are one, and every pod is labelled with it.
async fn assert_one_revision(env: &Env, name: &str) {
    let ps = env.petsets().get(name).await.expect("petset");
    let status = ps.status.expect("petset status");
    assert_eq!(
        status.current_revision, status.update_revision,
        "PetSet {name}: current and update revisions differ"
    );
    let rev = status.update_revision.expect("update revision");
    for (pod, p) in env.pods_of(name).await {
        assert_eq!(
            p.labels().get("controller-revision-hash"),
            Some(&rev),
            "pod {pod}"
        );
    }
}

use kube::ResourceExt as _;

/// No API writes but the kubelet's while nothing changes.
async fn assert_quiet(env: &Env) {
    let mark = env.server.requests().mark();
    tokio::time::sleep(QUIET_WINDOW).await;
    let since = env.server.requests().since(&mark);
    assert_eq!(
        since.writes_excluding(&["kubelet"]),
        0,
        "writes in a quiet {QUIET_WINDOW:?}: {since:?}"
    );
}

#[tokio::test]
async fn a_failed_update_leaves_the_pgpool_whole_on_its_source_version_and_quiet() {
    let env = Env::new(kubelet().image(&image("4.6.0"), ImageBehavior::NeverReady)).await;
    env.ready_pgpool("pp", "4.5.3", 2, false).await;
    let ops = OpsManager::start(&env.server).await;
    env.update_request("upd", "pp", "4.6.0", json!({"timeout": "3s"}))
        .await;
    let req = env.wait_final("upd", LIMIT).await;
    assert_eq!(phase(&req), Some(OpsRequestPhase::Failed));
    assert!(
        failed_message(&req).starts_with("PodNotReady"),
        "{}",
        failed_message(&req)
    );
    env.wait_settled_on("pp", "4.5.3", 2).await;
    env.wait_pgpool("pp", "Ready", plan_ready).await;
    assert_one_revision(&env, "pp").await;
    assert_quiet(&env).await;
    ops.stop().await;
}

#[tokio::test]
async fn an_update_back_to_the_version_the_pgpool_ran_before_succeeds() {
    let env = Env::new(kubelet()).await;
    let versions: kube::Api<PgpoolVersion> = kube::Api::all(env.client.clone());
    versions
        .patch(
            "4.6.0",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"updateConstraints": {"allowlist": [">= 4.5.3, <= 4.6.0"]}}}),
            ),
        )
        .await
        .expect("allow 4.6.0 -> 4.5.3");
    env.ready_pgpool("pp", "4.5.3", 2, false).await;
    let ops = OpsManager::start(&env.server).await;
    for (req, target) in [("there", "4.6.0"), ("back", "4.5.3"), ("again", "4.6.0")] {
        env.update_request(req, "pp", target, json!({"timeout": "20s"}))
            .await;
        let done = env.wait_final(req, LIMIT).await;
        assert_eq!(
            phase(&done),
            Some(OpsRequestPhase::Successful),
            "{req} -> {target}: {}",
            failed_message(&done)
        );
        env.wait_settled_on("pp", target, 2).await;
        assert_one_revision(&env, "pp").await;
    }
    env.wait_pgpool("pp", "Ready", plan_ready).await;
    assert_quiet(&env).await;
    ops.stop().await;
}
