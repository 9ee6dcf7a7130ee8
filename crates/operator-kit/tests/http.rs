//! `/healthz`, `/readyz` and `/metrics` through the router.

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use operator_kit::{OperatorInfo, Phase, Readiness, new_registry, router};
use tower::ServiceExt;

const INFO: OperatorInfo = OperatorInfo {
    name: "http-test",
    version: "9.9.9",
    default_lease: "http-test-leader",
};

async fn get(app: &axum::Router, path: &str) -> (StatusCode, String, Option<String>) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible router");
    let status = response.status();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        String::from_utf8(body.to_vec()).expect("utf-8 body"),
        content_type,
    )
}

#[tokio::test]
async fn healthz_is_ok_from_the_start() {
    let (registry, _) = new_registry(&INFO).expect("registry");
    let app = router(registry, Readiness::new());
    let (status, body, _) = get(&app, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ok\n");
}

#[tokio::test]
async fn readyz_is_503_until_controllers_synced_then_200() {
    let (registry, leader) = new_registry(&INFO).expect("registry");
    let readiness = Readiness::with_leader_gauge(leader);
    let app = router(registry, readiness.clone());

    let (status, body, _) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("starting"), "{body}");

    readiness.set_leader(true);
    readiness.set_phase(Phase::Running);
    let pgpool = readiness.controller("pgpool");
    let (status, body, _) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("waiting for controllers: pgpool"), "{body}");
    assert!(body.contains("leader: true"), "{body}");

    pgpool.set_synced();
    let (status, body, _) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("controller pgpool: synced"), "{body}");
}

#[tokio::test]
async fn readyz_standby_is_200_and_says_not_leader() {
    let (registry, leader) = new_registry(&INFO).expect("registry");
    let readiness = Readiness::with_leader_gauge(leader);
    let app = router(registry, readiness.clone());
    readiness.set_phase(Phase::Standby);
    let (status, body, _) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("standby: not leader"), "{body}");
    assert!(body.contains("leader: false"), "{body}");

    let (_, metrics, _) = get(&app, "/metrics").await;
    assert!(
        metrics.contains("pgpool_operator_leader{binary=\"http-test\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_process_and_leader_metrics() {
    let (registry, leader) = new_registry(&INFO).expect("registry");
    let readiness = Readiness::with_leader_gauge(leader);
    readiness.set_leader(true);
    let app = router(registry, readiness);
    let (status, body, content_type) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/plain")),
        "{content_type:?}"
    );
    for needle in [
        "# TYPE process_cpu_seconds_total counter",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "pgpool_operator_leader{binary=\"http-test\"} 1",
        "pgpool_operator_build_info{binary=\"http-test\",version=\"9.9.9\"} 1",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in:\n{body}");
    }
}

#[tokio::test]
async fn unknown_path_is_404() {
    let (registry, _) = new_registry(&INFO).expect("registry");
    let app = router(registry, Readiness::new());
    let (status, _, _) = get(&app, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
