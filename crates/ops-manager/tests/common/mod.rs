//! Shared scenario-test harness: a testkit API server with the simulated kubelet, the version
//! catalog and a PostgreSQL backend, a provisioner, and the ops-manager started and stopped
//! through `pgpool_ops_manager::run`.
#![allow(dead_code)]

pub mod fake_provisioner;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use operator_kit::{ControllerHandle, Phase, Readiness};
use pgpool_api::conditions;
use pgpool_api::{
    AppBinding, OpsRequestPhase, PetSet, Pgpool, PgpoolOpsRequest, PgpoolVersion, names,
};
use pgpool_ops_manager::OpsManagerConfig;
use prometheus::Registry;
use serde_json::json;
use testkit::harness::Controller;
use testkit::{Kubelet, KubeletConfig, KubeletHandle, TestServer, Verb, Wake, fixtures};

/// Namespace of the scenarios.
pub const NS: &str = "demo";
/// Request-log agent of the ops-manager.
pub const OPS_AGENT: &str = "pgpool-ops-manager";
/// Request-log agent of the provisioner.
pub const PROV_AGENT: &str = "pgpool-provisioner";

/// The pgpool image of a catalog version.
pub fn image(version: &str) -> String {
    pgpool_api::fixtures::pgpool_image(version)
}

/// The test catalog of the real pgpool-II lines (4.3.5, 4.6.1, 4.7.3 on `pgpool-test/pgpool2`
/// images; updates allowed between them), as multi-document YAML: usable by any test, and by
/// `pgpool-provisioner render -f`.
pub const REAL_LINES_YAML: &str = include_str!("catalog-real-lines.yaml");

/// The entries of [`REAL_LINES_YAML`].
pub fn real_lines() -> Vec<PgpoolVersion> {
    serde_yaml::Deserializer::from_str(REAL_LINES_YAML)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("catalog-real-lines.yaml"))
        .collect()
}

/// The exporter image of the catalog.
pub const EXPORTER: &str = pgpool_api::fixtures::EXPORTER_IMAGE;

/// Fail with `what` if `f` does not finish within `limit`.
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A running ops-manager.
pub struct OpsManager {
    ctl: Controller<Result<(), pgpool_ops_manager::Error>>,
    /// The registry its metrics went into.
    pub registry: Registry,
}

impl OpsManager {
    /// Start it against `server` (watching all namespaces) and wait until its cache is synced.
    pub async fn start(server: &TestServer) -> Self {
        let client = server.client_as(OPS_AGENT);
        let registry = Registry::new();
        let reg = registry.clone();
        let config = OpsManagerConfig {
            concurrency: 4,
            ..OpsManagerConfig::default()
        };
        let ctl = Controller::spawn_ready(Duration::from_secs(10), |stop, ready| async move {
            let readiness = Readiness::new();
            readiness.set_phase(Phase::Running);
            let handle = ControllerHandle::new(&readiness, pgpool_ops_manager::CONTROLLER, stop);
            let _signal = tokio::spawn(async move {
                readiness.wait_until_ready().await;
                ready.signal();
            });
            pgpool_ops_manager::run(client, config, &reg, handle).await
        })
        .await;
        Self { ctl, registry }
    }

    /// Stop it gracefully and wait until `run` returned.
    pub async fn stop(self) {
        self.ctl
            .stop(Duration::from_secs(20))
            .await
            .expect("ops-manager run");
    }

    /// Kill it at whatever point it is (like a crashed process).
    pub async fn kill(self) {
        self.ctl.kill().await;
    }

    /// The metrics text.
    pub fn metrics(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .expect("encode metrics")
    }
}

/// A provisioner: the real one (`pgpool_provisioner::run`, with its PetSet controller), or
/// the small fake in [`fake_provisioner`] when `OPS_TEST_FAKE_PROVISIONER` is set.
pub struct Provisioner {
    _ctl: Controller<()>,
}

impl Provisioner {
    /// Start it against `server` and wait until its caches are synced.
    pub async fn start(server: &TestServer) -> Self {
        let client = server.client_as(PROV_AGENT);
        if std::env::var_os("OPS_TEST_FAKE_PROVISIONER").is_some() {
            return Self {
                _ctl: Controller::spawn(|_stop| fake_provisioner::run(client)),
            };
        }
        let config = pgpool_provisioner::ProvisionerConfig {
            resync: Duration::from_secs(30),
            error_backoff: Duration::from_millis(100),
            ..pgpool_provisioner::ProvisionerConfig::default()
        };
        let ctl = Controller::spawn_ready(Duration::from_secs(10), |stop, ready| async move {
            let registry = Registry::new();
            let readiness = Readiness::new();
            readiness.set_phase(Phase::Running);
            let controllers = pgpool_provisioner::Controllers::new(&readiness, &stop, true);
            let _signal = tokio::spawn(async move {
                readiness.wait_until_ready().await;
                ready.signal();
            });
            let res = pgpool_provisioner::run(client, config, &registry, controllers).await;
            if let Err(e) = res {
                panic!("provisioner: {e}");
            }
        })
        .await;
        Self { _ctl: ctl }
    }
}

/// The test environment.
pub struct Env {
    /// The API server.
    pub server: TestServer,
    /// An admin client (agent `test`).
    pub client: Client,
    kubelet: Option<KubeletHandle>,
    provisioner: Option<Provisioner>,
}

/// Catalog entry `name` with pgpool image `image(name)`, allowlist `allow`.
pub fn version(name: &str, allow: &str, deprecated: bool) -> PgpoolVersion {
    let mut v = pgpool_api::fixtures::pgpool_version(name, allow);
    v.spec.deprecated = Some(deprecated);
    v
}

impl Env {
    /// Server, kubelet (`kubelet` settings), catalog 4.5.3 and 4.6.0, backend, provisioner.
    pub async fn new(kubelet: KubeletConfig) -> Self {
        let env = Self::without_provisioner(kubelet).await;
        env.with_provisioner().await
    }

    /// The same without a provisioner.
    pub async fn without_provisioner(kubelet: KubeletConfig) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let server = TestServer::with_crds(pgpool_api::crds::all());
        let client = server.client_as("test");
        let kubelet = Kubelet::start(server.client_as("kubelet"), kubelet);
        let env = Self {
            server,
            client,
            kubelet: Some(kubelet),
            provisioner: None,
        };
        env.add_version(version("4.5.3", ">= 4.5.3, <= 4.6.0", false))
            .await;
        env.add_version(version("4.6.0", ">= 4.6.0, <= 4.6.0", false))
            .await;
        env.backend().await;
        env
    }

    /// Start the provisioner.
    pub async fn with_provisioner(mut self) -> Self {
        self.provisioner = Some(Provisioner::start(&self.server).await);
        self
    }

    /// Add a catalog entry.
    pub async fn add_version(&self, v: PgpoolVersion) {
        let api: Api<PgpoolVersion> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &v)
            .await
            .expect("create version");
    }

    /// The PostgreSQL the Pgpools point at: Service, Secret, AppBinding.
    async fn backend(&self) {
        let pp = PostParams::default();
        let svc: Api<Service> = Api::namespaced(self.client.clone(), NS);
        svc.create(
            &pp,
            &fixtures::service(NS, "ha-postgres", [("app", "pg")], 5432),
        )
        .await
        .expect("service");
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), NS);
        secrets
            .create(
                &pp,
                &fixtures::secret(
                    NS,
                    "ha-postgres-auth",
                    [("username", "postgres"), ("password", "test-only-password")],
                ),
            )
            .await
            .expect("secret");
        let ab = pgpool_api::fixtures::app_binding(NS, "ha-postgres", "ha-postgres-auth");
        let abs: Api<AppBinding> = Api::namespaced(self.client.clone(), NS);
        abs.create(&pp, &ab).await.expect("appbinding");
    }

    /// Typed APIs in the scenario namespace.
    pub fn pgpools(&self) -> Api<Pgpool> {
        Api::namespaced(self.client.clone(), NS)
    }
    /// PetSets.
    pub fn petsets(&self) -> Api<PetSet> {
        Api::namespaced(self.client.clone(), NS)
    }
    /// Pods.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }
    /// Requests.
    pub fn requests(&self) -> Api<PgpoolOpsRequest> {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Create Pgpool `name` on `version` (KubeDB's example, with replicas and monitoring).
    pub async fn create_pgpool(&self, name: &str, version: &str, replicas: i32, monitor: bool) {
        let mut pp = pgpool_api::fixtures::pgpool(NS, name, version, replicas);
        if monitor {
            pp.spec.monitor = Some(
                serde_json::from_value(json!({"agent": "prometheus.io/builtin"})).expect("monitor"),
            );
        }
        self.pgpools()
            .create(&PostParams::default(), &pp)
            .await
            .expect("create pgpool");
    }

    /// Create Pgpool `name` and wait until it is Ready.
    pub async fn ready_pgpool(&self, name: &str, version: &str, replicas: i32, monitor: bool) {
        self.create_pgpool(name, version, replicas, monitor).await;
        self.wait_pgpool(name, "Ready", plan_ready).await;
    }

    /// Wait until the Pgpool satisfies `cond`.
    pub async fn wait_pgpool(
        &self,
        name: &str,
        what: &str,
        cond: impl Fn(&Pgpool) -> bool,
    ) -> Pgpool {
        let api = self.pgpools();
        let found = within(
            Duration::from_secs(30),
            &format!("Pgpool {name}: {what}"),
            await_condition(api, name, move |o: Option<&Pgpool>| o.is_some_and(&cond)),
        )
        .await
        .expect("watch");
        found.expect("pgpool exists")
    }

    /// Create a request.
    pub async fn create_request(&self, name: &str, spec: serde_json::Value) -> PgpoolOpsRequest {
        let r: PgpoolOpsRequest = serde_json::from_value(json!({
            "apiVersion": "ops.kubedb.com/v1alpha1",
            "kind": "PgpoolOpsRequest",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec
        }))
        .expect("request");
        self.requests()
            .create(&PostParams::default(), &r)
            .await
            .expect("create request")
    }

    /// Create an UpdateVersion request of `pgpool` to `target`, with extra spec fields.
    pub async fn update_request(
        &self,
        name: &str,
        pgpool: &str,
        target: &str,
        extra: serde_json::Value,
    ) -> PgpoolOpsRequest {
        let mut spec = json!({
            "type": "UpdateVersion",
            "databaseRef": {"name": pgpool},
            "updateVersion": {"targetVersion": target}
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        self.create_request(name, spec).await
    }

    /// Wait until the request satisfies `cond` (at most `limit`).
    pub async fn wait_request(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        cond: impl Fn(&PgpoolOpsRequest) -> bool + Send + 'static,
    ) -> PgpoolOpsRequest {
        let api = self.requests();
        let res = tokio::time::timeout(
            limit,
            await_condition(api, name, move |o: Option<&PgpoolOpsRequest>| {
                o.is_some_and(&cond)
            }),
        )
        .await;
        match res {
            Ok(found) => found.expect("watch").expect("request exists"),
            Err(_) => {
                let now = self.requests().get_opt(name).await.ok().flatten();
                panic!(
                    "timed out after {limit:?} waiting for request {name}: {what}; it is now: {}",
                    serde_json::to_string_pretty(&now.map(|r| r.status)).unwrap_or_default()
                );
            }
        }
    }

    /// Wait until the request reaches a final phase; return it.
    pub async fn wait_final(&self, name: &str, limit: Duration) -> PgpoolOpsRequest {
        self.wait_request(name, limit, "a final phase", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_final())
        })
        .await
    }

    /// Pods of Pgpool `name` by pod name.
    pub async fn pods_of(&self, name: &str) -> BTreeMap<String, Pod> {
        let lp = ListParams::default().labels(&names::selector_string(name));
        self.pods()
            .list(&lp)
            .await
            .expect("list pods")
            .items
            .into_iter()
            .map(|p| (p.name_any(), p))
            .collect()
    }

    /// Delete an object's request.
    pub async fn delete_request(&self, name: &str) {
        self.requests()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete request");
    }

    /// Eviction requests per pod since `mark`.
    pub fn evictions_since(&self, mark: &testkit::LogMark) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in self.server.requests().records_since(mark) {
            if r.key.verb == Verb::Create
                && r.key.resource == "pods"
                && r.key.subresource.as_deref() == Some("eviction")
            {
                *out.entry(r.name.unwrap_or_default()).or_insert(0) += 1;
            }
        }
        out
    }

    /// Creates PodDisruptionBudget `name` over the pods of Pgpool `pgpool` with an integer
    /// `minAvailable` (the disruption controller counts the selected pods).
    pub async fn create_pdb(&self, name: &str, pgpool: &str, min_available: i32) {
        let selector = names::selector(pgpool);
        let pdb = fixtures::pdb_min_available(
            NS,
            name,
            selector.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(min_available),
        );
        let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
            Api::namespaced(self.client.clone(), NS);
        pdbs.create(&PostParams::default(), &pdb)
            .await
            .expect("create pdb");
    }

    /// Wait until Pgpool `name`, its PetSet and all its pods run `version`'s images, the pods
    /// are Ready and the Pgpool is not paused.
    pub async fn wait_settled_on(&self, name: &str, version: &str, replicas: usize) {
        let img = &image(version);
        self.server
            .requests()
            .wait_for(
                Wake::Change,
                Duration::from_secs(30),
                &format!("Pgpool {name} to settle on {version}"),
                move || async move { self.settled_on(name, img, replicas).await.ok() },
            )
            .await;
    }

    /// Ok when Pgpool `name`, its PetSet and its pods all run `img`, every pod is Ready and
    /// the Pgpool is not paused; else what differs.
    pub async fn settled_on(&self, name: &str, img: &str, replicas: usize) -> Result<(), String> {
        let pp = self.pgpools().get(name).await.map_err(|e| e.to_string())?;
        if image(&pp.spec.version) != img {
            return Err(format!("spec.version is {}", pp.spec.version));
        }
        self.runs(name, img, replicas).await
    }

    /// Wait until Pgpool `name` has `spec.version` `version`, and its PetSet and all its pods
    /// run `img` (the catalog entry's image), the pods are Ready and the Pgpool is not paused.
    pub async fn wait_settled_as(&self, name: &str, version: &str, img: &str, replicas: usize) {
        self.server
            .requests()
            .wait_for(
                Wake::Change,
                Duration::from_secs(30),
                &format!("Pgpool {name} to settle on {version} ({img})"),
                move || async move {
                    let pp = self.pgpools().get(name).await.expect("get Pgpool");
                    (pp.spec.version == version && self.runs(name, img, replicas).await.is_ok())
                        .then_some(())
                },
            )
            .await;
    }

    /// Ok when the PetSet and the pods of Pgpool `name` run `img`, every pod is Ready and the
    /// Pgpool is not paused; else what differs.
    pub async fn runs(&self, name: &str, img: &str, replicas: usize) -> Result<(), String> {
        let pp = self.pgpools().get(name).await.map_err(|e| e.to_string())?;
        if let Some(c) = pp
            .status
            .as_ref()
            .and_then(|s| conditions::get(&s.conditions, conditions::pgpool::PAUSED))
        {
            return Err(format!("still paused: {c:?}"));
        }
        let ps = self.petsets().get(name).await.map_err(|e| e.to_string())?;
        let spec = ps.spec.template.spec.clone().unwrap_or_default();
        for c in &spec.containers {
            if c.name == names::CONTAINER_PGPOOL && c.image.as_deref() != Some(img) {
                return Err(format!("PetSet container pgpool runs {:?}", c.image));
            }
        }
        let pods = self.pods_of(name).await;
        if pods.len() != replicas {
            return Err(format!("{} pods", pods.len()));
        }
        for (n, p) in &pods {
            let spec = p.spec.clone().unwrap_or_default();
            let pg = spec
                .containers
                .iter()
                .find(|c| c.name == names::CONTAINER_PGPOOL)
                .and_then(|c| c.image.clone());
            if pg.as_deref() != Some(img) {
                return Err(format!("pod {n} runs {pg:?}"));
            }
            if !pod_ready(p) {
                return Err(format!("pod {n} is not Ready"));
            }
        }
        Ok(())
    }
}

/// The Pgpool is Ready.
pub fn plan_ready(pp: &Pgpool) -> bool {
    pp.status.as_ref().and_then(|s| s.phase) == Some(pgpool_api::PgpoolPhase::Ready)
}

/// The pod is Running and Ready and not terminating.
pub fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Phase of a request.
pub fn phase(r: &PgpoolOpsRequest) -> Option<OpsRequestPhase> {
    r.status.as_ref().and_then(|s| s.phase)
}

/// Condition types of a request, in order.
pub fn condition_types(r: &PgpoolOpsRequest) -> Vec<String> {
    r.status
        .as_ref()
        .map(|s| s.conditions.iter().map(|c| c.type_.clone()).collect())
        .unwrap_or_default()
}

/// A condition of a request.
pub fn condition<'a>(
    r: &'a PgpoolOpsRequest,
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    r.status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, t))
}

/// The message of the request's `Failed` condition.
pub fn failed_message(r: &PgpoolOpsRequest) -> String {
    condition(r, conditions::ops::FAILED)
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_else(|| format!("no Failed condition in {:?}", r.status))
}

/// UIDs of pods.
pub fn uids(pods: &BTreeMap<String, Pod>) -> BTreeMap<String, String> {
    pods.iter()
        .map(|(n, p)| (n.clone(), p.uid().unwrap_or_default()))
        .collect()
}
