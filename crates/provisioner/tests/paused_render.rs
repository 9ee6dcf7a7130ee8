//! A paused Pgpool: the provisioner issues certificates for a changed spec without touching
//! the PetSet, and renders everything once (the PetSet too, no pod moved) when the ops request
//! holding the pause asks for it (`Paused=Unknown`, reason `RenderRequested`), answering
//! `Rendered`, or `RenderFailed` with the reason when it cannot.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use pgpool_api::conditions::{self, pgpool as types};
use pgpool_api::{PetSet, Pgpool, PgpoolPhase};
use serde_json::json;
use testkit::Verb;

const TLS_HASH: &str = "pgpool.kubedb.com/tls-hash";

/// Writes the Pgpool's `Paused` condition as the ops-manager does.
async fn ask(env: &Env, status: &str, reason: &str) {
    let api: Api<Pgpool> = Api::namespaced(env.server.client_as("ops-manager"), NS);
    for _ in 0..10 {
        let mut p = api.get(NAME).await.expect("pgpool");
        let generation = p.metadata.generation;
        let st = p.status.get_or_insert_with(Default::default);
        conditions::set(
            &mut st.conditions,
            conditions::NewCondition {
                type_: types::PAUSED,
                status,
                reason,
                message: "paused for PgpoolOpsRequest demo/tls".into(),
                observed_generation: generation,
            },
            chrono::Utc::now(),
        );
        match api.replace_status(NAME, &PostParams::default(), &p).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("write Paused: {e}"),
        }
    }
    panic!("could not write Paused");
}

async fn template_tls_hash(env: &Env) -> Option<String> {
    let ps = env.api::<PetSet>().get(NAME).await.expect("petset");
    ps.spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(TLS_HASH).cloned())
}

async fn pod_uids(env: &Env) -> Vec<String> {
    let mut uids: Vec<String> = env
        .pods(NAME)
        .await
        .iter()
        .map(|p: &Pod| p.uid().unwrap_or_default())
        .collect();
    uids.sort();
    uids
}

async fn paused(env: &Env) -> (String, String, String) {
    let pp = env.pgpool(NAME).await.expect("pgpool");
    let c = pp
        .status
        .and_then(|s| conditions::get(&s.conditions, types::PAUSED).cloned())
        .expect("Paused");
    (c.status, c.reason, c.message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_pgpool_gets_certificates_and_its_petset_only_when_a_render_is_asked() {
    let env = Env::start().await;
    env.create(&example_pgpool()).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    let pods = pod_uids(&env).await;
    ask(&env, conditions::UNKNOWN, types::REASON_PAUSE_REQUESTED).await;
    env.wait_condition(NAME, types::PAUSED, "True", "PauseAcknowledged")
        .await;

    // while paused, TLS is turned on: the certificates are issued, the PetSet stays
    env.patch_spec(NAME, json!({"tls": {}, "sslMode": "require"}))
        .await;
    wait_until("the server certificate issued while paused", || async {
        env.secret_value("pp-update-server-cert", "tls.crt")
            .await
            .is_some()
    })
    .await;
    env.wait_reconciles(2).await;
    assert_eq!(template_tls_hash(&env).await, None, "PetSet untouched");

    // a render: the PetSet carries the certificates, no pod moved, still paused
    let mark = env.server.requests().mark();
    ask(&env, conditions::UNKNOWN, types::REASON_RENDER_REQUESTED).await;
    env.wait_condition(NAME, types::PAUSED, "True", types::REASON_RENDERED)
        .await;
    assert!(template_tls_hash(&env).await.is_some(), "PetSet rendered");
    let evictions = env
        .server
        .requests()
        .records_since(&mark)
        .into_iter()
        .filter(|r| r.key.verb == Verb::Create && r.key.subresource.as_deref() == Some("eviction"))
        .count();
    assert_eq!(evictions, 0, "no pod evicted");
    env.wait_reconciles(2).await;
    assert_eq!(pod_uids(&env).await, pods, "no pod replaced");
    assert_eq!(paused(&env).await.1, types::REASON_RENDERED);

    // a spec that cannot be rendered: the answer says why
    env.patch_spec(NAME, json!({"version": "9.9.9"})).await;
    ask(&env, conditions::UNKNOWN, types::REASON_RENDER_REQUESTED).await;
    env.wait_condition(NAME, types::PAUSED, "True", types::REASON_RENDER_FAILED)
        .await;
    let (_, _, message) = paused(&env).await;
    assert!(message.contains("9.9.9"), "{message}");
    assert_eq!(pod_uids(&env).await, pods, "no pod replaced");
}
