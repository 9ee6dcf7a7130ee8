//! The in-memory API server: [`TestServer`] and its tower [`TestService`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::faults::Faults;
use crate::handlers::{self, Reply, create_object};
use crate::latency::Latency;
use crate::log::{RequestKey, RequestLog, Verb};
use crate::pdb;
use crate::registry;
use crate::routing::{Query, Route, parse_query, route};
use crate::shared::{Inner, ServerConfig};
use crate::state::{Ownership, State, meta_str};

/// Response body type of the server.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// An in-memory Kubernetes API server. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct TestServer {
    pub(crate) inner: Arc<Inner>,
}

impl Default for TestServer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("resource_version", &self.resource_version())
            .finish()
    }
}

/// A tower `Service` answering Kubernetes API requests from a [`TestServer`].
#[derive(Clone)]
pub struct TestService {
    server: TestServer,
    agent: Arc<str>,
}

impl<B> tower::Service<Request<B>> for TestService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let server = self.server.clone();
        let agent = self.agent.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    return Ok(error_response(&ApiError::bad_request(
                        "unreadable request body",
                    )));
                }
            };
            Ok(server
                .handle(Request::from_parts(parts, bytes), &agent)
                .await)
        })
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

impl TestServer {
    /// A server with the built-in kinds only (no CRDs; see [`with_crds`](Self::with_crds)).
    pub fn new() -> Self {
        Self::with_config(ServerConfig::default())
    }

    /// A server with the built-in kinds and the kinds of `crds`, e.g.
    /// `TestServer::with_crds(pgpool_api::crds::all())`.
    pub fn with_crds(crds: impl IntoIterator<Item = CustomResourceDefinition>) -> Self {
        Self::builder().crds(crds).build()
    }

    /// A builder for a server with CRDs and tunables other than the defaults.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// A server with explicit tunables.
    pub fn with_config(config: ServerConfig) -> Self {
        let mut st = State::new(config.history_limit);
        for info in registry::builtins() {
            st.register(info);
        }
        let server = Self {
            inner: Arc::new(Inner::new(
                st,
                Faults::default(),
                RequestLog::default(),
                config,
            )),
        };
        for crd in server.inner.config.crds.clone() {
            server.register_crd(&crd);
        }
        {
            let mut st = server.inner.lock();
            if let Some(k) = st.kind_index("", "namespaces") {
                for ns in server.inner.config.namespaces.clone() {
                    let obj =
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                    let _ = create_object(&mut st, k, "v1", None, obj, false, Ownership::System);
                }
            }
        }
        server
    }

    /// Serve a CRD's kind (scope, plural, versions, subresources taken from the CRD) and
    /// store the CRD object itself, as if it had been created through the API.
    pub fn register_crd(&self, crd: &CustomResourceDefinition) {
        let mut st = self.inner.lock();
        st.register(registry::from_crd(crd));
        let Ok(obj) = serde_json::to_value(crd) else {
            return;
        };
        let Some(k) = st.kind_index("apiextensions.k8s.io", "customresourcedefinitions") else {
            return;
        };
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        if st.get(k, &(String::new(), name)).is_none() {
            let _ = create_object(&mut st, k, "v1", None, obj, false, Ownership::System);
        }
    }

    /// A `kube::Client` whose requests this server answers in-process. Requests are logged
    /// with agent `"client"`.
    pub fn client(&self) -> kube::Client {
        self.client_as("client")
    }

    /// Like [`client`](Self::client), but requests are logged (and can be targeted by faults)
    /// under `agent`, e.g. `"kubelet"`, `"provisioner"`.
    pub fn client_as(&self, agent: &str) -> kube::Client {
        kube::Client::new(self.service_as(agent), "default")
    }

    /// The tower service behind [`client`](Self::client).
    pub fn service(&self) -> TestService {
        self.service_as("client")
    }

    /// The tower service behind [`client_as`](Self::client_as).
    pub fn service_as(&self, agent: &str) -> TestService {
        TestService {
            server: self.clone(),
            agent: Arc::from(agent),
        }
    }

    /// Fault injection.
    pub fn faults(&self) -> Faults {
        self.inner.faults.clone()
    }

    /// The request log.
    pub fn requests(&self) -> RequestLog {
        self.inner.log.clone()
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.lock().rv
    }

    /// Lets the disruption controller look up the scale of custom kind `kind` in API group
    /// `group`, as a real one does once its discovery cache knows the kind (about 30 s after
    /// the CRD appeared). Until then a PodDisruptionBudget that needs the owner's scale
    /// (`maxUnavailable`, or a percentage `minAvailable`) over pods of that kind is
    /// `SyncFailed` and allows no disruption.
    pub fn disruption_controller_knows(&self, group: &str, kind: &str) {
        let mut st = self.inner.lock();
        st.disruption_known
            .insert((group.to_string(), kind.to_string()));
        if let Some(k) = st.kind_index("policy", "poddisruptionbudgets") {
            let namespaces: Vec<String> = st.kinds[k]
                .objects
                .keys()
                .map(|(ns, _)| ns.clone())
                .collect();
            st.pdb_dirty.extend(namespaces);
        }
        pdb::refresh(&mut st);
    }

    /// Forget all watch history: resuming a watch from any earlier resourceVersion now gets
    /// `410 Gone` (as after an etcd compaction).
    pub fn compact_history(&self) {
        self.inner.lock().compact();
    }

    /// Answer one HTTP request (body already collected). `agent` is recorded in the request log.
    pub async fn handle(&self, req: Request<Bytes>, agent: &str) -> Response<Body> {
        let latency = self.inner.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let (parts, body) = req.into_parts();
        let query = Query(parse_query(parts.uri.query().unwrap_or("")));
        let route = {
            let st = self.inner.lock();
            route(&st, parts.uri.path())
        };
        let target = match route {
            Ok(Route::Discovery(v)) => return json_response(200, &v),
            Ok(Route::Resource(t)) => t,
            Err(e) => return error_response(&e),
        };
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let verb = match (&parts.method, target.name.is_some()) {
            (&Method::GET, true) => Verb::Get,
            (&Method::GET, false) if query.flag("watch") => Verb::Watch,
            (&Method::GET, false) => Verb::List,
            (&Method::POST, _) => Verb::Create,
            (&Method::PUT, _) => Verb::Update,
            (&Method::PATCH, _) if content_type == "application/apply-patch+yaml" => Verb::Apply,
            (&Method::PATCH, _) => Verb::Patch,
            (&Method::DELETE, true) => Verb::Delete,
            (&Method::DELETE, false) => Verb::DeleteCollection,
            _ => {
                return error_response(&ApiError::method_not_allowed(format!(
                    "method {} not supported",
                    parts.method
                )));
            }
        };
        let agent = if agent.is_empty() {
            parts
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("remote")
                .to_string()
        } else {
            agent.to_string()
        };
        let key = RequestKey {
            verb,
            group: target.info.group.clone(),
            resource: target.info.plural.clone(),
            subresource: target.sub.clone(),
            agent,
        };
        let ns = target.namespace.clone();
        let name = target.name.clone();
        let manager = query.get("fieldManager").unwrap_or(&key.agent).to_string();
        self.inner.config.latency.before(verb).await;
        let result = match self
            .inner
            .faults
            .check(&key, ns.as_deref(), name.as_deref())
        {
            Some(e) => Err(e),
            None => handlers::dispatch(
                &self.inner,
                verb,
                &target,
                &query,
                &content_type,
                &body,
                &manager,
            ),
        };
        let (code, changed, response) = match result {
            Ok((reply, changed)) => {
                let (code, resp) = match reply {
                    Reply::Json(code, v) => (code, json_response(code, &v)),
                    Reply::Obj(code, v) => (code, json_response(code, &v)),
                    Reply::Raw(code, bytes) => (
                        code,
                        Response::builder()
                            .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .body(full(bytes))
                            .unwrap_or_else(|_| Response::new(full(Bytes::new()))),
                    ),
                    Reply::Watch(stream) => {
                        let events = self.inner.config.latency.delay_events(stream.into_stream());
                        let body = StreamBody::new(
                            events.map(|b| Ok::<_, Infallible>(http_body::Frame::data(b))),
                        );
                        (
                            200,
                            Response::builder()
                                .status(StatusCode::OK)
                                .header(http::header::CONTENT_TYPE, "application/json")
                                .body(body.boxed_unsync())
                                .unwrap_or_else(|_| Response::new(full(Bytes::new()))),
                        )
                    }
                };
                (code, changed, resp)
            }
            Err(e) => (e.code, false, error_response(&e)),
        };
        self.inner.log.record(key, ns, name, code, changed);
        response
    }
}

/// Builds a [`TestServer`]: [`ServerConfig`] field by field.
#[derive(Clone, Debug, Default)]
pub struct TestServerBuilder {
    config: ServerConfig,
}

impl TestServerBuilder {
    /// Serve these CRDs' kinds from the start (added to those given before).
    pub fn crds(mut self, crds: impl IntoIterator<Item = CustomResourceDefinition>) -> Self {
        self.config.crds.extend(crds);
        self
    }

    /// Round-trip and watch delays.
    pub fn latency(mut self, latency: Latency) -> Self {
        self.config.latency = latency;
        self
    }

    /// Watch events kept per kind for resuming watches.
    pub fn history_limit(mut self, limit: usize) -> Self {
        self.config.history_limit = limit;
        self
    }

    /// How often watches that asked for bookmarks get one while idle.
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.config.bookmark_interval = every;
        self
    }

    /// Namespaces that exist from the start (instead of `default` and `kube-system`).
    pub fn namespaces(mut self, namespaces: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.config.namespaces = namespaces.into_iter().map(Into::into).collect();
        self
    }

    /// The server.
    pub fn build(self) -> TestServer {
        TestServer::with_config(self.config)
    }
}
