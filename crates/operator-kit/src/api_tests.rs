//! Tests of [`super`] against a fake API server that holds one ConfigMap and can make
//! writes conflict or the object disappear.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use super::*;

#[derive(Default)]
struct State {
    /// The stored ConfigMap `demo/cm` (`None`: it does not exist).
    object: Option<Value>,
    version: u64,
    /// Writes still to answer with 409 as if another writer had come first (that writer's
    /// change bumps the version).
    conflicts: u32,
    /// Delete the object when the next write arrives.
    vanish_on_write: bool,
    /// `(method, path)` of every request.
    requests: Vec<(Method, String)>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

fn respond(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response
}

fn status(code: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    respond(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": format!("{reason} from the fake"), "reason": reason,
               "code": code.as_u16()}),
    )
}

impl Fake {
    fn with_object() -> Self {
        let fake = Fake::default();
        {
            let mut s = fake.0.lock().unwrap();
            s.version = 1;
            s.object = Some(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cm", "namespace": "demo", "resourceVersion": "1"},
                "data": {"n": "0"}
            }));
        }
        fake
    }

    fn api(&self) -> Api<ConfigMap> {
        let fake = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.handle(req).await) }
        });
        Api::namespaced(Client::new(service, "demo"), "demo")
    }

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut s = self.0.lock().unwrap();
        s.requests.push((method.clone(), path.clone()));
        match method {
            Method::GET => match &s.object {
                Some(obj) => respond(StatusCode::OK, obj.clone()),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            Method::PUT => {
                if std::mem::take(&mut s.vanish_on_write) {
                    s.object = None;
                }
                if s.object.is_none() {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                }
                if s.conflicts > 0 {
                    s.conflicts -= 1;
                    s.version += 1;
                    let version = s.version.to_string();
                    if let Some(obj) = s.object.as_mut() {
                        obj["metadata"]["resourceVersion"] = json!(version);
                    }
                }
                let current = s.version.to_string();
                if body["metadata"]["resourceVersion"].as_str() != Some(current.as_str()) {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                if body["metadata"]["name"] == "reject" {
                    return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid");
                }
                s.version += 1;
                let mut obj = body;
                obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
                s.object = Some(obj.clone());
                respond(StatusCode::OK, obj)
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }

    fn data(&self) -> Option<String> {
        let s = self.0.lock().unwrap();
        s.object
            .as_ref()
            .map(|o| o["data"]["n"].as_str().unwrap_or("").to_string())
    }

    fn writes(&self) -> Vec<String> {
        let s = self.0.lock().unwrap();
        s.requests
            .iter()
            .filter(|(m, _)| *m == Method::PUT)
            .map(|(_, p)| p.clone())
            .collect()
    }
}

fn bump(cm: &mut ConfigMap) -> Change<u32> {
    let data = cm.data.get_or_insert_with(Default::default);
    let n: u32 = data.get("n").and_then(|n| n.parse().ok()).unwrap_or(0) + 1;
    data.insert("n".into(), n.to_string());
    Change::Write(n)
}

#[tokio::test]
async fn writes_the_change_once_without_contention() {
    let fake = Fake::with_object();
    let got = modify(&fake.api(), "cm", Target::Object, bump)
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    assert_eq!(fake.data().as_deref(), Some("1"));
    assert_eq!(fake.writes(), ["/api/v1/namespaces/demo/configmaps/cm"]);
}

#[tokio::test]
async fn rereads_and_retries_after_conflicts() {
    let fake = Fake::with_object();
    fake.0.lock().unwrap().conflicts = 3;
    let mut calls = 0;
    let got = modify(&fake.api(), "cm", Target::Object, |cm| {
        calls += 1;
        bump(cm)
    })
    .await
    .unwrap();
    assert_eq!(got, Some(1));
    assert_eq!(calls, 4, "one mutation per read");
    assert_eq!(fake.writes().len(), 4);
    assert_eq!(fake.data().as_deref(), Some("1"));
}

#[tokio::test]
async fn gives_up_after_the_bound() {
    let fake = Fake::with_object();
    fake.0.lock().unwrap().conflicts = u32::MAX;
    let err = modify(&fake.api(), "cm", Target::Object, bump)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ModifyError::Conflicts { attempts } if attempts == MODIFY_ATTEMPTS),
        "{err:?}"
    );
    assert_eq!(fake.writes().len(), MODIFY_ATTEMPTS as usize);
}

#[tokio::test]
async fn keep_returns_without_writing() {
    let fake = Fake::with_object();
    let got = modify(&fake.api(), "cm", Target::Object, |_| {
        Change::Keep("as wanted")
    })
    .await
    .unwrap();
    assert_eq!(got, Some("as wanted"));
    assert!(fake.writes().is_empty());
}

#[tokio::test]
async fn a_missing_or_vanished_object_is_none() {
    let fake = Fake::default();
    let got = modify(&fake.api(), "cm", Target::Object, bump)
        .await
        .unwrap();
    assert_eq!(got, None);
    assert!(fake.writes().is_empty());

    let fake = Fake::with_object();
    fake.0.lock().unwrap().vanish_on_write = true;
    let got = modify(&fake.api(), "cm", Target::Object, bump)
        .await
        .unwrap();
    assert_eq!(got, None);
}

#[tokio::test]
async fn status_target_writes_the_subresource() {
    let fake = Fake::with_object();
    modify(&fake.api(), "cm", Target::Status, bump)
        .await
        .unwrap();
    assert_eq!(
        fake.writes(),
        ["/api/v1/namespaces/demo/configmaps/cm/status"]
    );
}

#[tokio::test]
async fn other_errors_are_returned_and_classified() {
    let fake = Fake::with_object();
    let err = modify(&fake.api(), "cm", Target::Object, |cm| {
        cm.metadata.name = Some("reject".into());
        Change::Write(())
    })
    .await
    .unwrap_err();
    let ModifyError::Kube(e) = err else {
        panic!("expected an API error, got {err:?}");
    };
    assert!(is_invalid(&e));
    assert!(!is_conflict(&e) && !is_not_found(&e) && !is_forbidden(&e));
    assert_eq!(status_code(&e), Some(422));
    assert_eq!(api_message(&e), "Invalid from the fake");

    fake.0.lock().unwrap().object = None;
    let missing = fake.api().get("cm").await.unwrap_err();
    assert!(is_not_found(&missing));
    assert_eq!(status_code(&missing), Some(404));
}

#[tokio::test]
async fn namespaced_or_all_picks_the_scope() {
    let fake = Fake::default();
    let client = fake.api().into_client();
    let one: Api<ConfigMap> = namespaced_or_all(&client, Some("demo"));
    let all: Api<ConfigMap> = namespaced_or_all(&client, None);
    assert_eq!(one.resource_url(), "/api/v1/namespaces/demo/configmaps");
    assert_eq!(all.resource_url(), "/api/v1/configmaps");
}

#[test]
fn non_api_errors_have_no_status() {
    let e = kube::Error::LinesCodecMaxLineLengthExceeded;
    assert_eq!(status_code(&e), None);
    assert!(!is_not_found(&e) && !is_conflict(&e) && !is_already_exists(&e));
    assert_eq!(api_message(&e), e.to_string());
}

fn api_error(code: u16, reason: &str) -> kube::Error {
    kube::Error::Api(Box::new(
        serde_json::from_value(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "", "reason": reason, "code": code
        }))
        .unwrap(),
    ))
}

#[test]
fn errors_are_classified_by_code_whatever_the_reason() {
    assert!(is_not_found(&api_error(404, "")));
    assert!(is_not_found(&api_error(404, "NotFound")));
    assert!(is_conflict(&api_error(409, "")));
    assert!(is_conflict(&api_error(409, "AlreadyExists")));
    assert!(is_already_exists(&api_error(409, "AlreadyExists")));
    assert!(!is_already_exists(&api_error(409, "Conflict")));
    assert!(is_forbidden(&api_error(403, "")));
    assert!(is_invalid(&api_error(422, "")));
    assert!(!is_not_found(&api_error(410, "Gone")));
    let empty = api_error(500, "");
    assert_eq!(
        api_message(&empty),
        empty.to_string(),
        "no message: the error's text"
    );
}
