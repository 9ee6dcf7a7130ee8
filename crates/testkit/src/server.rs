//! The in-memory API server: [`TestServer`] and its tower [`TestService`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value, json};

use crate::apply::{self, Managed, Scope, strip_nulls};
use crate::error::ApiError;
use crate::faults::Faults;
use crate::latency::Latency;
use crate::log::{RequestKey, RequestLog, Verb};
use crate::pdb;
use crate::registry::{self, ResourceInfo};
use crate::revision;
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::{
    DeleteOpts, DeleteOutcome, ObjKey, Ownership, State, meta, meta_mut, meta_str, now_rfc3339,
};
use crate::watch::{Filter, WatchSpec, WatchStream};

/// Response body type of the server.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Tunables of a [`TestServer`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Watch events kept per kind for resuming watches; older resourceVersions get `410 Gone`.
    pub history_limit: usize,
    /// How often watches that asked for bookmarks get one while idle.
    pub bookmark_interval: Duration,
    /// Register every CRD from `pgpool_api::crds::all()` at start.
    pub register_api_crds: bool,
    /// Namespaces that exist from the start.
    pub namespaces: Vec<String>,
    /// Round-trip and watch delays ([`Latency::OFF`] by default).
    pub latency: Latency,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
            register_api_crds: true,
            namespaces: vec!["default".into(), "kube-system".into()],
            latency: Latency::OFF,
        }
    }
}

pub(crate) struct Inner {
    state: Mutex<State>,
    pub faults: Faults,
    pub log: RequestLog,
    pub config: ServerConfig,
}

impl Inner {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

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

fn success_status(info: &ResourceInfo, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": meta_str(obj, "name").unwrap_or_default(),
            "group": info.group,
            "kind": info.plural,
            "uid": meta_str(obj, "uid").unwrap_or_default(),
        }
    })
}

/// Decode `a=b&c=d` with percent-encoding and `+` as space.
fn parse_query(q: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

struct Query(HashMap<String, String>);

impl Query {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
    fn filter(&self, namespace: Option<String>) -> Result<Filter, ApiError> {
        Ok(Filter {
            namespace,
            labels: LabelSelector::parse(self.get("labelSelector").unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            fields: FieldSelector::parse(self.get("fieldSelector").unwrap_or(""))
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?,
        })
    }
}

/// A resolved resource path.
struct Target {
    kind: usize,
    info: Arc<ResourceInfo>,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Target {
    fn key(&self) -> ObjKey {
        (
            self.namespace.clone().unwrap_or_default(),
            self.name.clone().unwrap_or_default(),
        )
    }
    fn api_version(&self) -> String {
        self.info.api_version(&self.version)
    }
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}

enum Route {
    Discovery(Value),
    Resource(Target),
}

/// An answer to a resource request.
enum Reply {
    Json(u16, Value),
    Obj(u16, Arc<Value>),
    Raw(u16, Vec<u8>),
    Watch(WatchStream),
}

fn status_of(v: &Value) -> Option<Value> {
    v.get("status").cloned()
}

fn set_status(obj: &mut Value, status: Option<Value>) {
    if let Value::Object(m) = obj {
        match status {
            Some(s) => {
                m.insert("status".into(), s);
            }
            None => {
                m.remove("status");
            }
        }
    }
}

fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, p| cur.get(p))
}

fn set_path(v: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        if !cur.get(p).is_some_and(Value::is_object) {
            if let Value::Object(m) = cur {
                m.insert(p.clone(), Value::Object(Map::new()));
            } else {
                return;
            }
        }
        let Some(next) = cur.get_mut(p) else {
            return;
        };
        cur = next;
    }
    if let Value::Object(m) = cur {
        m.insert(last.clone(), value);
    }
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

impl TestServer {
    /// A server with the built-in kinds and every CRD from `pgpool_api::crds::all()`.
    pub fn new() -> Self {
        Self::with_config(ServerConfig::default())
    }

    /// A server with explicit tunables.
    pub fn with_config(config: ServerConfig) -> Self {
        let mut st = State::new(config.history_limit);
        for info in registry::builtins() {
            st.register(info);
        }
        let server = Self {
            inner: Arc::new(Inner {
                state: Mutex::new(st),
                faults: Faults::default(),
                log: RequestLog::default(),
                config,
            }),
        };
        if server.inner.config.register_api_crds {
            for crd in pgpool_api::crds::all() {
                server.register_crd(&crd);
            }
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
            None => self.dispatch(verb, &target, &query, &content_type, &body, &manager),
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

    fn dispatch(
        &self,
        verb: Verb,
        t: &Target,
        q: &Query,
        content_type: &str,
        body: &[u8],
        manager: &str,
    ) -> Result<(Reply, bool), ApiError> {
        let updater = Ownership::Update(apply::manager_key(manager, "update"));
        let mut guard = self.inner.lock();
        let st = &mut *guard;
        let result = self.dispatch_locked(st, verb, t, q, content_type, body, updater);
        pdb::refresh(st);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch_locked(
        &self,
        st: &mut State,
        verb: Verb,
        t: &Target,
        q: &Query,
        content_type: &str,
        body: &[u8],
        updater: Ownership,
    ) -> Result<(Reply, bool), ApiError> {
        // A ControllerRevision's data is compared byte for byte (see `revision`).
        if t.sub.is_none()
            && revision::is_revisions(&t.info)
            && matches!(verb, Verb::Update | Verb::Patch | Verb::Apply)
            && let Some(stored) = st.revision_raw(t.kind, &t.key())
        {
            revision::check_write(&t.info, t.name(), &stored, verb == Verb::Update, body)?;
        }
        match (verb, t.sub.as_deref()) {
            (Verb::Get, None | Some("status")) => {
                let s = st
                    .get(t.kind, &t.key())
                    .ok_or_else(|| ApiError::not_found(&t.info, t.name()))?;
                Ok((Reply::Obj(200, s.obj.clone()), false))
            }
            (Verb::Get, Some("scale")) => {
                let s = st
                    .get(t.kind, &t.key())
                    .ok_or_else(|| ApiError::not_found(&t.info, t.name()))?;
                Ok((Reply::Json(200, scale_of(&t.info, &s.obj)?), false))
            }
            (Verb::List, None) => list(st, t, q).map(|r| (r, false)),
            (Verb::Watch, None) => {
                let rv = match q.get("resourceVersion") {
                    None | Some("0") => None,
                    Some(s) => Some(s.parse::<u64>().map_err(|_| {
                        ApiError::bad_request(format!("invalid resourceVersion {s:?}"))
                    })?),
                };
                let spec = WatchSpec {
                    kind: t.kind,
                    filter: q.filter(t.namespace.clone())?,
                    rv,
                    send_initial: q.flag("sendInitialEvents"),
                    bookmarks: q.flag("allowWatchBookmarks"),
                    timeout: q
                        .get("timeoutSeconds")
                        .and_then(|s| s.parse::<u64>().ok())
                        .map(Duration::from_secs),
                    api_version: t.api_version(),
                };
                let w = WatchStream::start(self.inner.clone(), st, spec)?;
                Ok((Reply::Watch(w), false))
            }
            (Verb::Create, None) => {
                if t.name.is_some() {
                    return Err(ApiError::method_not_allowed("POST to a named object"));
                }
                let obj = parse_body(body)?;
                let (obj, changed) = create_object(
                    st,
                    t.kind,
                    &t.version,
                    t.namespace.as_deref(),
                    obj,
                    q.dry_run(),
                    updater,
                )?;
                if changed && revision::is_revisions(&t.info) {
                    let key = (
                        t.namespace.clone().unwrap_or_default(),
                        meta_str(&obj, "name").unwrap_or_default().to_string(),
                    );
                    let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
                    let raw = revision::stored_raw(revision::raw_data(body).as_deref(), &obj);
                    st.revision_data.insert(key, (uid, raw));
                }
                Ok((Reply::Obj(201, obj), changed))
            }
            (Verb::Create, Some("eviction")) if is_pods(&t.info) => {
                evict(st, t, &parse_body(body)?, q.dry_run())
            }
            (Verb::Create, Some("binding")) if is_pods(&t.info) => {
                bind(st, t, &parse_body(body)?, updater)
            }
            (Verb::Update, None | Some("status") | Some("scale")) => {
                update(st, t, parse_body(body)?, q.dry_run(), updater)
            }
            (Verb::Patch, None | Some("status") | Some("scale")) => {
                patch(st, t, content_type, body, q.dry_run(), updater)
            }
            (Verb::Apply, None | Some("status")) => apply_patch(st, t, q, body),
            (Verb::Delete, None) => {
                let opts = delete_opts(body, q)?;
                match st.delete_object(t.kind, &t.key(), &opts)? {
                    DeleteOutcome::Removed(last) => Ok((
                        Reply::Json(200, success_status(&t.info, &last)),
                        !opts.dry_run,
                    )),
                    DeleteOutcome::Pending(obj) => Ok((Reply::Obj(200, obj), !opts.dry_run)),
                }
            }
            (Verb::DeleteCollection, None) => {
                let opts = delete_opts(body, q)?;
                let filter = q.filter(t.namespace.clone())?;
                let keys: Vec<ObjKey> = st.kinds[t.kind]
                    .objects
                    .iter()
                    .filter(|(_, s)| filter.matches(&s.obj))
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut items = Vec::new();
                for k in keys {
                    match st.delete_object(t.kind, &k, &opts) {
                        Ok(DeleteOutcome::Removed(o) | DeleteOutcome::Pending(o)) => {
                            items.push((*o).clone())
                        }
                        Err(e) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
                let changed = !items.is_empty() && !opts.dry_run;
                Ok((
                    Reply::Json(
                        200,
                        json!({
                            "kind": format!("{}List", t.info.kind),
                            "apiVersion": t.api_version(),
                            "metadata": {"resourceVersion": st.rv.to_string()},
                            "items": items,
                        }),
                    ),
                    changed,
                ))
            }
            (_, Some(sub)) => Err(ApiError::path_not_found(&format!(
                "{}/{} does not support {}",
                t.info.plural,
                sub,
                verb.as_str()
            ))),
        }
    }
}

fn is_pods(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "pods"
}

fn api_resources(info: &ResourceInfo) -> Vec<Value> {
    let mut out = vec![json!({
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        "shortNames": info.short_names,
    })];
    if info.status {
        out.push(json!({"name": format!("{}/status", info.plural), "singularName": "", "namespaced": info.namespaced, "kind": info.kind, "verbs": ["get", "patch", "update"]}));
    }
    if info.scale.is_some() {
        out.push(json!({"name": format!("{}/scale", info.plural), "singularName": "", "namespaced": info.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    if is_pods(info) {
        out.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
        out.push(json!({"name": "pods/binding", "singularName": "", "namespaced": true, "kind": "Binding", "verbs": ["create"]}));
    }
    out
}

fn route(st: &State, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let infos = || st.kinds.iter().map(|k| k.info.clone());
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => {
            return Ok(Route::Discovery(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-testkit",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "go", "compiler": "gc", "platform": "linux/amd64"
            })));
        }
        ["api"] => {
            return Ok(Route::Discovery(json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}]
            })));
        }
        ["apis"] => {
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for i in infos().filter(|i| !i.group.is_empty()) {
                match groups.iter_mut().find(|(g, _)| *g == i.group) {
                    Some((_, vs)) => {
                        for v in &i.versions {
                            if !vs.contains(v) {
                                vs.push(v.clone());
                            }
                        }
                    }
                    None => groups.push((i.group.clone(), i.versions.clone())),
                }
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
                })
                .collect();
            return Ok(Route::Discovery(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g] => {
            let vs: Vec<String> = infos()
                .filter(|i| i.group == *g)
                .flat_map(|i| i.versions.clone())
                .collect();
            if vs.is_empty() {
                return Err(ApiError::path_not_found(path));
            }
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            return Ok(Route::Discovery(json!({
                "kind": "APIGroup", "apiVersion": "v1", "name": g,
                "versions": versions, "preferredVersion": versions[0]
            })));
        }
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found(path)),
    };
    if rest.is_empty() {
        let resources: Vec<Value> = infos()
            .filter(|i| i.group == group && i.versions.iter().any(|x| x == version))
            .flat_map(|i| api_resources(&i))
            .collect();
        if resources.is_empty() {
            return Err(ApiError::path_not_found(path));
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        return Ok(Route::Discovery(json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources
        })));
    }
    let lookup = |plural: &str| -> Option<(usize, Arc<ResourceInfo>)> {
        let k = st.kind_index(group, plural)?;
        let info = st.kinds[k].info.clone();
        info.versions
            .iter()
            .any(|v| v == version)
            .then_some((k, info))
    };
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && lookup(rest[2]).is_some_and(|(_, i)| i.namespaced);
    let (namespace, tail) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (kind, info) = lookup(tail[0]).ok_or_else(|| ApiError::path_not_found(path))?;
    if tail.len() > 3 {
        return Err(ApiError::path_not_found(path));
    }
    let name = tail.get(1).map(|s| s.to_string());
    let sub = tail.get(2).map(|s| s.to_string());
    if namespace.is_none() && info.namespaced && name.is_some() {
        return Err(ApiError::path_not_found(path));
    }
    if let Some(s) = &sub {
        let ok = match s.as_str() {
            "status" => info.status,
            "scale" => info.scale.is_some(),
            "eviction" | "binding" => is_pods(&info),
            _ => false,
        };
        if !ok {
            return Err(ApiError::path_not_found(path));
        }
    }
    Ok(Route::Resource(Target {
        kind,
        info,
        version: version.to_string(),
        namespace,
        name,
        sub,
    }))
}

fn list(st: &State, t: &Target, q: &Query) -> Result<Reply, ApiError> {
    let filter = q.filter(t.namespace.clone())?;
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    // Continue tokens are `<rv>:<namespace>/<name>` of the last item returned.
    let (list_rv, after) = match q.get("continue") {
        Some(tok) => {
            let (rv, rest) = tok
                .split_once(':')
                .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
            let (ns, name) = rest
                .split_once('/')
                .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
            let rv: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request("invalid continue token"))?;
            if rv < st.kinds[t.kind].compacted_rv {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result.",
                ));
            }
            (rv, Some((ns.to_string(), name.to_string())))
        }
        None => (st.rv, None),
    };
    let ks = &st.kinds[t.kind];
    let range_start = match (&after, &filter.namespace) {
        (Some(a), _) => std::ops::Bound::Excluded(a.clone()),
        (None, Some(ns)) => std::ops::Bound::Included((ns.clone(), String::new())),
        (None, None) => std::ops::Bound::Unbounded,
    };
    let mut items: Vec<Arc<Value>> = Vec::new();
    let mut cont = None;
    for ((ns, name), s) in ks.objects.range((range_start, std::ops::Bound::Unbounded)) {
        if let Some(want) = &filter.namespace
            && ns != want
        {
            break;
        }
        if !filter.matches(&s.obj) {
            continue;
        }
        if limit.is_some_and(|l| items.len() >= l) {
            let last = items.last().map(|o| {
                (
                    meta_str(o, "namespace").unwrap_or_default().to_string(),
                    meta_str(o, "name").unwrap_or_default().to_string(),
                )
            });
            if let Some((lns, lname)) = last {
                cont = Some(format!("{list_rv}:{lns}/{lname}"));
            }
            break;
        }
        let _ = name;
        items.push(s.obj.clone());
    }
    let mut buf = Vec::with_capacity(64 + items.len() * 512);
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
    }
    let head = json!({
        "kind": format!("{}List", t.info.kind),
        "apiVersion": t.api_version(),
        "metadata": metadata,
    });
    let head = serde_json::to_string(&head).map_err(|e| ApiError::internal(e.to_string()))?;
    buf.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    buf.extend_from_slice(b",\"items\":[");
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        serde_json::to_writer(&mut buf, &**o).map_err(|e| ApiError::internal(e.to_string()))?;
    }
    buf.extend_from_slice(b"]}");
    Ok(Reply::Raw(200, buf))
}

/// Create an object (also used by apply-create and startup). Returns the stored object.
fn create_object(
    st: &mut State,
    kind: usize,
    version: &str,
    namespace: Option<&str>,
    mut obj: Value,
    dry_run: bool,
    ownership: Ownership,
) -> Result<(Arc<Value>, bool), ApiError> {
    let info = st.kinds[kind].info.clone();
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && k != info.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind {k:?} in the body does not match {:?} of the request path",
            info.kind
        )));
    }
    strip_nulls(&mut obj);
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), json!(info.api_version(version)));
        m.insert("kind".into(), json!(info.kind));
    }
    let mut name = meta_str(&obj, "name").unwrap_or_default().to_string();
    if name.is_empty() {
        let Some(prefix) = meta_str(&obj, "generateName").map(str::to_string) else {
            return Err(ApiError::invalid(
                &info,
                "",
                vec![(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        };
        loop {
            name = format!("{prefix}{}", st.random_suffix());
            let ns = namespace.unwrap_or_default().to_string();
            if st.get(kind, &(ns, name.clone())).is_none() {
                break;
            }
        }
    }
    if info.namespaced {
        let Some(ns) = namespace else {
            return Err(ApiError::path_not_found(
                "namespaced resource without a namespace",
            ));
        };
        if let Some(body_ns) = meta_str(&obj, "namespace")
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let key: ObjKey = (namespace.unwrap_or_default().to_string(), name.clone());
    if st.get(kind, &key).is_some() {
        return Err(ApiError::already_exists(&info, &name));
    }
    let uid = st.new_uid();
    {
        let m = meta_mut(&mut obj);
        m.insert("name".into(), json!(name));
        if info.namespaced {
            m.insert("namespace".into(), json!(key.0));
        } else {
            m.remove("namespace");
        }
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            m.remove(f);
        }
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        m.insert("generation".into(), json!(1));
    }
    apply_create_defaults(st, &info, &mut obj);
    crate::validate::normalize(&info, &mut obj);
    crate::validate::validate(&info, &name, &obj)?;
    if dry_run {
        return Ok((Arc::new(obj), false));
    }
    let is_crd = info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions";
    if is_crd {
        let crd: CustomResourceDefinition = serde_json::from_value(obj.clone())
            .map_err(|e| ApiError::bad_request(format!("invalid CustomResourceDefinition: {e}")))?;
        st.register(registry::from_crd(&crd));
        let names = obj.pointer("/spec/names").cloned().unwrap_or(Value::Null);
        let stored: Vec<Value> = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.storage)
            .map(|v| json!(v.name))
            .collect();
        let now = now_rfc3339();
        set_status(
            &mut obj,
            Some(json!({
                "acceptedNames": names,
                "storedVersions": stored,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                ]
            })),
        );
    }
    let mut managed = match ownership {
        Ownership::Apply(m) => m,
        Ownership::Update(manager_key) => {
            let mut m = Managed::new();
            apply::record_update(&mut m, None, &obj, &manager_key);
            m
        }
        Ownership::System => Managed::new(),
    };
    apply::prune(&mut managed, &obj);
    let stored = st.insert(kind, key, obj, managed);
    Ok((stored, true))
}

/// What the real API server's create strategies and defaulting do that operators observe.
fn apply_create_defaults(st: &mut State, info: &ResourceInfo, obj: &mut Value) {
    if !info.group.is_empty() {
        if info.status {
            set_status(obj, None);
        }
        return;
    }
    match info.plural.as_str() {
        "pods" => set_status(obj, Some(json!({"phase": "Pending"}))),
        "namespaces" => set_status(obj, Some(json!({"phase": "Active"}))),
        "persistentvolumeclaims" => set_status(obj, Some(json!({"phase": "Pending"}))),
        "services" => {
            set_status(obj, Some(json!({"loadBalancer": {}})));
            let ty = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string();
            let ip = obj
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty())
                .map(str::to_string);
            // a real API server allocates for an absent or empty clusterIP; "None" (headless)
            // is kept and mirrored into clusterIPs
            if ty != "ExternalName" && ip.as_deref() == Some("None") {
                set_path(obj, &["spec".into(), "clusterIPs".into()], json!(["None"]));
            } else if ty != "ExternalName" && ip.is_none() {
                let n = st.next_counter();
                let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1);
                set_path(obj, &["spec".into(), "clusterIP".into()], json!(ip));
                set_path(obj, &["spec".into(), "clusterIPs".into()], json!([ip]));
            }
        }
        _ => {
            if info.status {
                set_status(obj, None);
            }
        }
    }
}

fn check_rv(t: &Target, current: &Value, body: &Value) -> Result<(), ApiError> {
    if let Some(rv) = meta_str(body, "resourceVersion").filter(|s| !s.is_empty())
        && Some(rv) != meta_str(current, "resourceVersion")
    {
        return Err(ApiError::stale(&t.info, t.name()));
    }
    Ok(())
}

fn scale_of(info: &ResourceInfo, obj: &Value) -> Result<Value, ApiError> {
    let sc = info
        .scale
        .as_ref()
        .ok_or_else(|| ApiError::path_not_found("scale"))?;
    let spec = get_path(obj, &sc.spec_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = get_path(obj, &sc.status_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = sc
        .label_selector_path
        .as_ref()
        .and_then(|p| get_path(obj, p))
        .map(|s| match s {
            Value::String(s) => s.clone(),
            other => LabelSelector::from_json(other)
                .map(|l| l.to_query())
                .unwrap_or_default(),
        })
        .unwrap_or_default();
    let m = meta(obj).cloned().unwrap_or_default();
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"), "namespace": m.get("namespace"), "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"), "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": spec},
        "status": {"replicas": status, "selector": selector},
    }))
}

/// Turn the requested content of the main object / status / scale into the full new object.
fn merge_into(t: &Target, old: &Value, requested: Value) -> Result<Value, ApiError> {
    match t.sub.as_deref() {
        None => {
            let mut new = requested;
            if t.info.status {
                set_status(&mut new, status_of(old));
            }
            Ok(new)
        }
        Some("status") => {
            let mut new = old.clone();
            set_status(&mut new, status_of(&requested));
            Ok(new)
        }
        Some("scale") => {
            let sc = t
                .info
                .scale
                .as_ref()
                .ok_or_else(|| ApiError::path_not_found("scale"))?;
            let replicas = requested
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    ApiError::invalid(
                        &t.info,
                        t.name(),
                        vec![("spec.replicas".into(), "Required value".into())],
                    )
                })?;
            let mut new = old.clone();
            set_path(&mut new, &sc.spec_replicas_path, json!(replicas));
            Ok(new)
        }
        Some(other) => Err(ApiError::path_not_found(other)),
    }
}

fn respond_written(t: &Target, obj: Arc<Value>) -> Result<Reply, ApiError> {
    if t.sub.as_deref() == Some("scale") {
        Ok(Reply::Json(200, scale_of(&t.info, &obj)?))
    } else {
        Ok(Reply::Obj(200, obj))
    }
}

fn reregister_crd(st: &mut State, t: &Target, obj: &Value) {
    if t.info.group == "apiextensions.k8s.io"
        && t.info.plural == "customresourcedefinitions"
        && let Ok(crd) = serde_json::from_value::<CustomResourceDefinition>(obj.clone())
    {
        st.register(registry::from_crd(&crd));
    }
}

fn update(
    st: &mut State,
    t: &Target,
    body: Value,
    dry_run: bool,
    ownership: Ownership,
) -> Result<(Reply, bool), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ));
    }
    let key = t.key();
    let old = st
        .get(t.kind, &key)
        .ok_or_else(|| ApiError::not_found(&t.info, t.name()))?
        .obj
        .clone();
    if t.sub.as_deref() != Some("scale")
        && let Some(n) = meta_str(&body, "name")
        && n != t.name()
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    check_rv(t, &old, &body)?;
    let new = merge_into(t, &old, body)?;
    let (obj, changed) = st.commit_update(t.kind, &key, new, ownership, dry_run)?;
    reregister_crd(st, t, &obj);
    Ok((respond_written(t, obj)?, changed))
}

fn patch(
    st: &mut State,
    t: &Target,
    content_type: &str,
    body: &[u8],
    dry_run: bool,
    ownership: Ownership,
) -> Result<(Reply, bool), ApiError> {
    let key = t.key();
    let old = st
        .get(t.kind, &key)
        .ok_or_else(|| ApiError::not_found(&t.info, t.name()))?
        .obj
        .clone();
    let mut target = if t.sub.as_deref() == Some("scale") {
        scale_of(&t.info, &old)?
    } else {
        (*old).clone()
    };
    let before_rv = meta_str(&target, "resourceVersion").map(str::to_string);
    let patch_value = parse_body(body)?;
    match content_type {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            json_patch::merge(&mut target, &patch_value);
        }
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_value(patch_value)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut target, &p).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
        other => {
            return Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"
            )));
        }
    }
    if meta_str(&target, "resourceVersion").map(str::to_string) != before_rv
        && meta_str(&target, "resourceVersion").is_some()
    {
        return Err(ApiError::stale(&t.info, t.name()));
    }
    if t.sub.is_none() && (meta_str(&target, "name") != Some(t.name())) {
        return Err(ApiError::bad_request("a patch cannot change metadata.name"));
    }
    let new = merge_into(t, &old, target)?;
    let (obj, changed) = st.commit_update(t.kind, &key, new, ownership, dry_run)?;
    reregister_crd(st, t, &obj);
    Ok((respond_written(t, obj)?, changed))
}

fn apply_patch(
    st: &mut State,
    t: &Target,
    q: &Query,
    body: &[u8],
) -> Result<(Reply, bool), ApiError> {
    let manager = q
        .get("fieldManager")
        .ok_or_else(|| ApiError::bad_request("PATCH /apply requires fieldManager to be set"))?;
    let applied: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid apply configuration: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "the apply configuration is not an object",
        ));
    }
    if applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        || applied
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(
            "invalid object type: apiVersion and kind must be set in an apply configuration",
        ));
    }
    if applied.get("kind").and_then(Value::as_str) != Some(t.info.kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "the kind in the apply configuration does not match {}",
            t.info.kind
        )));
    }
    if let Some(n) = meta_str(&applied, "name")
        && n != t.name()
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    let force = q.flag("force");
    let dry_run = q.dry_run();
    let scope = match t.sub.as_deref() {
        None => Scope::Main {
            status_subresource: t.info.status,
        },
        _ => Scope::Status,
    };
    let manager_key = match scope {
        Scope::Status => apply::manager_key(manager, "apply/status"),
        Scope::Main { .. } => apply::manager_key(manager, "apply"),
    };
    let scoped = apply::scoped(&applied, scope);
    let key = t.key();
    let existing = st
        .get(t.kind, &key)
        .map(|s| (s.obj.clone(), s.managed.clone()));
    match existing {
        None => {
            if scope == Scope::Status {
                return Err(ApiError::not_found(&t.info, t.name()));
            }
            let mut managed = Managed::new();
            let mut obj = apply::apply(None, &scoped, &manager_key, force, &mut managed)
                .map_err(|c| ApiError::new(409, "Conflict", apply::conflict_message(&c)))?;
            if let Value::Object(m) = &mut obj {
                m.insert("apiVersion".into(), json!(t.api_version()));
                m.insert("kind".into(), json!(t.info.kind));
            }
            meta_mut(&mut obj).insert("name".into(), json!(t.name()));
            let (obj, changed) = create_object(
                st,
                t.kind,
                &t.version,
                t.namespace.as_deref(),
                obj,
                dry_run,
                Ownership::Apply(managed),
            )?;
            Ok((Reply::Obj(201, obj), changed))
        }
        Some((old, mut managed)) => {
            check_rv(t, &old, &applied)?;
            let merged = apply::apply(Some(&old), &scoped, &manager_key, force, &mut managed)
                .map_err(|c| {
                    let causes: Vec<Value> = c
                        .iter()
                        .map(|x| json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{}\"", x.manager), "field": x.field}))
                        .collect();
                    ApiError::new(409, "Conflict", apply::conflict_message(&c)).with_details(json!({
                        "name": t.name(), "group": t.info.group, "kind": t.info.plural, "causes": causes
                    }))
                })?;
            let (obj, changed) =
                st.commit_update(t.kind, &key, merged, Ownership::Apply(managed), dry_run)?;
            reregister_crd(st, t, &obj);
            Ok((Reply::Obj(200, obj), changed))
        }
    }
}

fn delete_opts(body: &[u8], q: &Query) -> Result<DeleteOpts, ApiError> {
    let b = parse_body(body)?;
    Ok(parse_delete_options(&b, q))
}

fn parse_delete_options(b: &Value, q: &Query) -> DeleteOpts {
    let dry = b
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "All"));
    DeleteOpts {
        propagation: b
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(q.get("propagationPolicy"))
            .map(str::to_string),
        grace: b
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| q.get("gracePeriodSeconds").and_then(|s| s.parse().ok())),
        precondition_uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run: dry || q.dry_run(),
    }
}

fn evict(
    st: &mut State,
    t: &Target,
    body: &Value,
    dry_run_q: bool,
) -> Result<(Reply, bool), ApiError> {
    let key = t.key();
    let pod = st
        .get(t.kind, &key)
        .ok_or_else(|| ApiError::not_found(&t.info, t.name()))?
        .obj
        .clone();
    let empty = Query(HashMap::new());
    let dopts = body
        .get("deleteOptions")
        .or_else(|| body.get("delete_options"))
        .filter(|v| v.is_object())
        .map(|v| parse_delete_options(v, &empty))
        .unwrap_or_default();
    let dry_run = dopts.dry_run || dry_run_q;
    if meta_str(&pod, "deletionTimestamp").is_none() {
        let pdbs = pdb::matching(st, &key.0, pod.pointer("/metadata/labels"));
        if pdbs.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(budget_obj) = pdbs.first() {
            let b = pdb::budget(st, &key.0, budget_obj);
            let always = budget_obj
                .pointer("/spec/unhealthyPodEvictionPolicy")
                .and_then(Value::as_str)
                == Some("AlwaysAllow");
            let allowed = if pdb::pod_ready(&pod) {
                b.disruptions_allowed() >= 1
            } else {
                always || (b.sync_error.is_none() && b.desired > 0 && b.healthy >= b.desired)
            };
            if !allowed {
                let pdb_name = meta_str(budget_obj, "name").unwrap_or_default();
                return Err(ApiError::new(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                )
                .with_details(json!({"causes": [{
                    "reason": "DisruptionBudget",
                    "message": format!(
                        "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                        b.desired, b.healthy
                    ),
                }]})));
            }
        }
    }
    let opts = DeleteOpts { dry_run, ..dopts };
    st.delete_object(t.kind, &key, &opts)?;
    Ok((
        Reply::Json(
            201,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ),
        !dry_run,
    ))
}

fn bind(
    st: &mut State,
    t: &Target,
    body: &Value,
    ownership: Ownership,
) -> Result<(Reply, bool), ApiError> {
    let key = t.key();
    let pod = st
        .get(t.kind, &key)
        .ok_or_else(|| ApiError::not_found(&t.info, t.name()))?
        .obj
        .clone();
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("binding target name is required"))?;
    if let Some(current) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return Err(ApiError::conflict(
            &t.info,
            t.name(),
            &format!("pod {} is already assigned to node \"{current}\"", t.name()),
        ));
    }
    let mut new = (*pod).clone();
    set_path(&mut new, &["spec".into(), "nodeName".into()], json!(node));
    let (_, changed) = st.commit_update(t.kind, &key, new, ownership, false)?;
    Ok((
        Reply::Json(
            201,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        ),
        changed,
    ))
}
