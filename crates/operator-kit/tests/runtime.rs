//! The runtime against a small fake API server that knows Leases and Events:
//! leader election, standby, loss of leadership, shutdown, HTTP endpoints, events.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use operator_kit::{
    CancellationToken, CommonArgs, Error, EventType, Operator, OperatorInfo, Phase, Readiness,
    RunContext, try_parse_args_from,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const INFO: OperatorInfo = OperatorInfo {
    name: "runtime-test",
    version: "0.0.0",
    default_lease: "runtime-test-leader",
};

const WAIT: Duration = Duration::from_secs(10);

/// What the fake server stores: Leases by name, and every request seen.
#[derive(Default)]
struct FakeState {
    leases: BTreeMap<String, Value>,
    requests: Vec<(Method, String, Value)>,
    reject_events: bool,
}

#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
}

fn respond(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    respond(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": reason, "reason": reason, "code": code.as_u16()}),
    )
}

impl Fake {
    fn client(&self) -> kube::Client {
        let fake = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.handle(req).await) }
        });
        kube::Client::new(service, "default")
    }

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut state = self.state.lock().expect("fake state");
        state
            .requests
            .push((method.clone(), path.clone(), body.clone()));

        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                rest @ ..,
            ] => {
                let ns = ns.to_string();
                match (method, rest) {
                    (Method::GET, [name]) => match state.leases.get(*name) {
                        Some(lease) => respond(StatusCode::OK, lease.clone()),
                        None => status(StatusCode::NOT_FOUND, "NotFound"),
                    },
                    (Method::POST, []) => {
                        let name = body["metadata"]["name"].as_str().unwrap_or_default();
                        if state.leases.contains_key(name) {
                            return status(StatusCode::CONFLICT, "AlreadyExists");
                        }
                        let mut lease = body.clone();
                        lease["metadata"]["namespace"] = json!(ns);
                        lease["metadata"]["resourceVersion"] = json!("1");
                        state.leases.insert(name.to_string(), lease.clone());
                        respond(StatusCode::CREATED, lease)
                    }
                    (Method::PATCH, [name]) => {
                        let Some(lease) = state.leases.get_mut(*name) else {
                            return status(StatusCode::NOT_FOUND, "NotFound");
                        };
                        merge_spec(lease, &body["spec"]);
                        respond(StatusCode::OK, lease.clone())
                    }
                    _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
                }
            }
            ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]
                if method == Method::POST =>
            {
                if state.reject_events {
                    status(StatusCode::FORBIDDEN, "Forbidden")
                } else {
                    respond(StatusCode::CREATED, body)
                }
            }
            _ => status(StatusCode::NOT_FOUND, "NotFound"),
        }
    }

    fn lease(&self, name: &str) -> Option<Value> {
        self.state
            .lock()
            .expect("fake state")
            .leases
            .get(name)
            .cloned()
    }

    fn holder(&self, name: &str) -> Option<String> {
        self.lease(name)
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    }

    /// Makes `holder` the holder of Lease `name`, renewed now, valid for `seconds`.
    fn set_holder(&self, name: &str, holder: &str, seconds: u64) {
        let now = jiff_now();
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
            "spec": {
                "holderIdentity": holder,
                "acquireTime": now,
                "renewTime": now,
                "leaseDurationSeconds": seconds,
            },
        });
        self.state
            .lock()
            .expect("fake state")
            .leases
            .insert(name.to_string(), lease);
    }

    fn requests(&self) -> Vec<(Method, String, Value)> {
        self.state.lock().expect("fake state").requests.clone()
    }
}

/// Applies a merge patch to `lease.spec` (a `null` value removes the field), which is
/// all the fake needs of strategic-merge and apply patches on a Lease.
fn merge_spec(lease: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        return;
    };
    if !lease["spec"].is_object() {
        lease["spec"] = json!({});
    }
    if let Some(spec) = lease["spec"].as_object_mut() {
        for (key, value) in patch {
            if value.is_null() {
                spec.remove(key);
            } else {
                spec.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The current time as a Kubernetes MicroTime string.
fn jiff_now() -> Value {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    serde_json::to_value(now).expect("MicroTime serializes")
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn args(extra: &[&str]) -> CommonArgs {
    let argv = [
        "runtime-test",
        "--identity",
        "me",
        "--lease-namespace",
        "default",
    ]
    .into_iter()
    .chain(extra.iter().copied());
    try_parse_args_from::<Cli, _, _>(&INFO, argv)
        .expect("parse")
        .common
}

async fn operator(
    fake: &Fake,
    extra: &[&str],
) -> (Operator, CancellationToken, std::net::SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let op = Operator::new(INFO, args(extra))
        .expect("operator")
        .with_client(fake.client())
        .with_listener(listener)
        .with_shutdown(shutdown.clone())
        .with_signals(false)
        .with_tracing(false);
    (op, shutdown, addr)
}

/// Polls `cond` every 20 ms until it holds, failing after [`WAIT`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "timed out waiting until {what}");
}

/// A minimal HTTP/1.1 GET; returns the status code and body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (code, body.to_string())
}

#[tokio::test]
async fn without_leader_election_controllers_run_at_once_and_stop_on_shutdown() {
    let fake = Fake::default();
    let (op, shutdown, addr) = operator(
        &fake,
        &[
            "--leader-elect=false",
            "--namespace",
            "db",
            "--concurrency",
            "7",
        ],
    )
    .await;
    let readiness = op.readiness();
    let (seen_tx, seen_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let run = tokio::spawn(op.run(move |ctx: RunContext| async move {
        let ready = ctx.readiness.controller("things");
        let _ = seen_tx.send((
            ctx.watch_namespace.clone(),
            ctx.concurrency,
            ctx.identity.clone(),
        ));
        // Synced only when the test says so, to observe 503 before.
        let _ = release_rx.await;
        ready.set_synced();
        ctx.shutdown.cancelled().await;
        Ok(())
    }));

    let (ns, concurrency, identity) = tokio::time::timeout(WAIT, seen_rx)
        .await
        .expect("controllers started")
        .expect("context sent");
    assert_eq!(ns.as_deref(), Some("db"));
    assert_eq!(concurrency, 7);
    assert_eq!(identity, "me");

    let (code, body) = http_get(addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("waiting for controllers: things"), "{body}");
    let (code, _) = http_get(addr, "/healthz").await;
    assert_eq!(code, 200);

    release_tx.send(()).expect("controllers waiting");
    wait_until("ready", || readiness.is_ready()).await;
    let (code, body) = http_get(addr, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("leader: true"), "{body}");
    let (code, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("pgpool_operator_leader{binary=\"runtime-test\"} 1"),
        "{metrics}"
    );

    shutdown.cancel();
    let result = tokio::time::timeout(WAIT, run)
        .await
        .expect("stops in time");
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");
    assert!(
        fake.requests()
            .iter()
            .all(|(_, path, _)| !path.contains("leases")),
        "no Lease traffic without leader election"
    );
    assert_eq!(readiness.status().phase, Phase::ShuttingDown);
    assert!(!readiness.status().leader);
}

#[tokio::test]
async fn leader_takes_free_lease_runs_controllers_and_releases_it_on_shutdown() {
    let fake = Fake::default();
    let (op, shutdown, _) = operator(&fake, &[]).await;
    let readiness = op.readiness();
    let (started_tx, started_rx) = oneshot::channel();
    let (stopped_tx, stopped_rx) = oneshot::channel();
    let run = tokio::spawn(op.run(move |ctx: RunContext| async move {
        ctx.readiness.controller("c").set_synced();
        let _ = started_tx.send(());
        ctx.shutdown.cancelled().await;
        let _ = stopped_tx.send(());
        Ok(())
    }));

    tokio::time::timeout(WAIT, started_rx)
        .await
        .expect("became leader")
        .expect("started");
    assert_eq!(fake.holder("runtime-test-leader").as_deref(), Some("me"));
    let status = readiness.status();
    assert!(status.ready && status.leader, "{}", status.message);

    shutdown.cancel();
    let result = tokio::time::timeout(WAIT, run)
        .await
        .expect("stops in time");
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");
    stopped_rx.await.expect("controllers saw the shutdown");
    assert_eq!(
        fake.holder("runtime-test-leader"),
        None,
        "Lease released on the way out"
    );
}

/// A controller stuck in a call that ignores the shutdown (a reconcile waiting on an API
/// request that never answers) is aborted: the operator still stops within 5 s of the
/// shutdown signal, and the Lease is released so a standby takes over at once.
#[tokio::test]
async fn controllers_that_ignore_the_shutdown_are_aborted_and_the_lease_released_within_5s() {
    let fake = Fake::default();
    let (op, shutdown, _) = operator(&fake, &[]).await;
    let (started_tx, started_rx) = oneshot::channel();
    let run = tokio::spawn(op.run(move |ctx: RunContext| async move {
        ctx.readiness.controller("c").set_synced();
        let _ = started_tx.send(());
        std::future::pending::<()>().await;
        Ok(())
    }));
    tokio::time::timeout(WAIT, started_rx)
        .await
        .expect("became leader")
        .expect("started");
    let signalled = std::time::Instant::now();
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("stopped within 5 s of the shutdown");
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert_eq!(
        fake.holder("runtime-test-leader"),
        None,
        "Lease released on the way out"
    );
}

#[tokio::test]
async fn standby_runs_no_controller_and_is_ready_as_standby() {
    let fake = Fake::default();
    fake.set_holder("runtime-test-leader", "other-replica", 3600);
    let (op, shutdown, addr) = operator(&fake, &[]).await;
    let readiness = op.readiness();
    let ran = Arc::new(Mutex::new(false));
    let ran_in = ran.clone();
    let run = tokio::spawn(op.run(move |_ctx: RunContext| async move {
        *ran_in.lock().expect("flag") = true;
        Ok(())
    }));

    wait_until("standby", || readiness.status().phase == Phase::Standby).await;
    let (code, body) = http_get(addr, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("standby: not leader"), "{body}");
    assert!(body.contains("leader: false"), "{body}");
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains("pgpool_operator_leader{binary=\"runtime-test\"} 0"),
        "{metrics}"
    );

    shutdown.cancel();
    let result = tokio::time::timeout(WAIT, run)
        .await
        .expect("stops in time");
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");
    assert!(
        !*ran.lock().expect("flag"),
        "a standby must not run controllers"
    );
    assert_eq!(
        fake.holder("runtime-test-leader").as_deref(),
        Some("other-replica"),
        "a standby must not release someone else's Lease"
    );
}

#[tokio::test]
async fn losing_the_lease_stops_controllers_and_fails() {
    let fake = Fake::default();
    let (op, _shutdown, _) = operator(
        &fake,
        &[
            "--lease-duration-seconds=2",
            "--lease-renew-grace-seconds=1",
        ],
    )
    .await;
    let (started_tx, started_rx) = oneshot::channel();
    let (stopped_tx, stopped_rx) = oneshot::channel();
    let run = tokio::spawn(op.run(move |ctx: RunContext| async move {
        ctx.readiness.controller("c").set_synced();
        let _ = started_tx.send(());
        ctx.shutdown.cancelled().await;
        let _ = stopped_tx.send(());
        Ok(())
    }));
    tokio::time::timeout(WAIT, started_rx)
        .await
        .expect("became leader")
        .expect("started");

    // Another replica takes the Lease over (e.g. after a long pause of this one).
    fake.set_holder("runtime-test-leader", "usurper", 3600);

    let result = tokio::time::timeout(WAIT, run)
        .await
        .expect("notices the loss in time")
        .expect("no panic");
    match result {
        Err(Error::LeadershipLost { lease, reason }) => {
            assert_eq!(lease, "default/runtime-test-leader");
            assert!(reason.contains("another replica"), "{reason}");
        }
        other => panic!("expected LeadershipLost, got {other:?}"),
    }
    stopped_rx.await.expect("controllers were told to stop");
    assert_eq!(
        fake.holder("runtime-test-leader").as_deref(),
        Some("usurper"),
        "the new holder keeps the Lease"
    );
}

#[tokio::test]
async fn controllers_returning_early_or_failing_is_an_error() {
    let fake = Fake::default();
    let (op, _, _) = operator(&fake, &["--leader-elect=false"]).await;
    let result = op.run(|_ctx: RunContext| async { Ok(()) }).await;
    assert!(
        matches!(result, Err(Error::ControllersExited)),
        "{result:?}"
    );

    let (op, _, _) = operator(&fake, &["--leader-elect=false"]).await;
    let result = op
        .run(|_ctx: RunContext| async {
            Err(anyhow::anyhow!("watch failed").context("pgpool controller"))
        })
        .await;
    match result {
        Err(Error::Controllers(message)) => {
            assert_eq!(message, "pgpool controller: watch failed")
        }
        other => panic!("expected Controllers error, got {other:?}"),
    }
}

#[tokio::test]
async fn grace_must_be_shorter_than_duration() {
    let fake = Fake::default();
    let (op, _, _) = operator(
        &fake,
        &[
            "--lease-duration-seconds=5",
            "--lease-renew-grace-seconds=5",
        ],
    )
    .await;
    let result = op.run(|_ctx: RunContext| async { Ok(()) }).await;
    match result {
        Err(e @ Error::LeaderElection { .. }) => {
            assert!(e.to_string().contains("must be less than"), "{e}")
        }
        other => panic!("expected LeaderElection error, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_before_leadership_exits_cleanly_without_controllers() {
    let fake = Fake::default();
    fake.set_holder("runtime-test-leader", "other-replica", 3600);
    let (op, shutdown, _) = operator(&fake, &[]).await;
    shutdown.cancel();
    let result = tokio::time::timeout(WAIT, op.run(|_ctx: RunContext| async { Ok(()) }))
        .await
        .expect("stops in time");
    assert!(result.is_ok(), "{result:?}");
}

fn config_map() -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some("pg".into()),
            namespace: Some("ns1".into()),
            uid: Some("uid-1".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

#[tokio::test]
async fn event_recorder_publishes_events_for_an_object() {
    let fake = Fake::default();
    let ctx_recorder =
        operator_kit::EventRecorder::new(fake.client(), "pgpool-provisioner", "pod-0");
    ctx_recorder
        .warning(&config_map(), "ReconcileFailed", "backend unreachable")
        .await;
    ctx_recorder
        .normal(&config_map(), "PhaseChanged", &"x".repeat(3000))
        .await;

    let events: Vec<(String, Value)> = fake
        .requests()
        .into_iter()
        .filter(|(m, _, _)| m == Method::POST)
        .map(|(_, path, body)| (path, body))
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let (path, warning) = &events[0];
    assert_eq!(path, "/apis/events.k8s.io/v1/namespaces/ns1/events");
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["reason"], "ReconcileFailed");
    assert_eq!(warning["action"], "ReconcileFailed");
    assert_eq!(warning["note"], "backend unreachable");
    assert_eq!(warning["regarding"]["kind"], "ConfigMap");
    assert_eq!(warning["regarding"]["name"], "pg");
    assert_eq!(warning["reportingController"], "pgpool-provisioner");
    assert_eq!(warning["reportingInstance"], "pod-0");
    let (_, normal) = &events[1];
    assert_eq!(normal["type"], "Normal");
    assert_eq!(
        normal["note"].as_str().map(str::len),
        Some(1024),
        "note cut to the API limit"
    );
}

#[tokio::test]
async fn event_failures_are_reported_by_publish_and_swallowed_by_helpers() {
    let fake = Fake::default();
    fake.state.lock().expect("fake state").reject_events = true;
    let recorder = operator_kit::EventRecorder::new(fake.client(), "pgpool-ops-manager", "pod-1");
    let regarding = kube::Resource::object_ref(&config_map(), &());
    let err = recorder
        .publish(&regarding, EventType::Warning, "Failed", "x")
        .await
        .expect_err("rejected");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err:?}"
    );
    // Best-effort helpers return normally.
    recorder.warning(&config_map(), "Failed", "x").await;
}

#[test]
fn readiness_is_cheap_to_share() {
    let r = Readiness::new();
    let clone = r.clone();
    clone.set_phase(Phase::Standby);
    assert_eq!(r.status().phase, Phase::Standby);
}
