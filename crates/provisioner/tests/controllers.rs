//! The provisioner's two controllers side by side: each reports its own readiness and
//! counts its reconciles under its own `controller` label in operator-kit's shared metrics.

mod common;

use common::*;
use operator_kit::reconcile_metrics::{RECONCILE_DURATION, RECONCILE_TOTAL};
use pgpool_api::PgpoolPhase;
use pgpool_provisioner::{PETSET_CONTROLLER, PGPOOL_CONTROLLER};

/// Sum of `family`'s samples whose `controller` label is `controller`.
fn samples(env: &Env, family: &str, controller: &str) -> f64 {
    env.registry
        .gather()
        .iter()
        .filter(|f| f.name() == family)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "controller" && l.value() == controller)
        })
        .map(|m| {
            if m.get_histogram().has_sample_count() {
                m.get_histogram().get_sample_count() as f64
            } else {
                m.get_counter().value()
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_controller_reports_readiness_and_reconciles_under_its_own_name() {
    let env = Env::start().await;
    // `start` returned once both registered controllers synced
    let status = env.readiness.status();
    assert!(status.ready, "{}", status.message);
    for name in [PGPOOL_CONTROLLER, PETSET_CONTROLLER] {
        assert!(
            status
                .message
                .contains(&format!("controller {name}: synced")),
            "{}",
            status.message
        );
    }

    env.create(&example_pgpool()).await;
    env.wait_phase(NAME, PgpoolPhase::Ready).await;
    wait_until("PetSet reconciles counted as controller=petset", || async {
        samples(&env, RECONCILE_TOTAL, PETSET_CONTROLLER) >= 1.0
    })
    .await;
    assert!(samples(&env, RECONCILE_TOTAL, PGPOOL_CONTROLLER) >= 1.0);
    assert!(samples(&env, RECONCILE_DURATION, PETSET_CONTROLLER) >= 1.0);
    let families: Vec<String> = env
        .registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    assert!(
        !families.iter().any(|f| f.contains("petset_reconcile")),
        "no PetSet-only reconcile families: {families:?}"
    );
}
