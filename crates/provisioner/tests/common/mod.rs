//! Shared harness of the provisioner's controller tests: a testkit API server, its simulated
//! kubelet, the catalog and backend fixtures, and the provisioner started with `run`.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use operator_kit::{Phase, Readiness};
use pgpool_api::{AppBinding, Pgpool, PgpoolPhase, PgpoolVersion, conditions, names};
use pgpool_provisioner::{Controllers, ProvisionerConfig, run};
use prometheus::Registry;
use serde_json::json;
use testkit::harness::Controller;
use testkit::{Kubelet, KubeletConfig, KubeletHandle, TestServer};

/// Namespace of the examples.
pub const NS: &str = "demo";
/// Agent the provisioner's requests are logged under.
pub const AGENT: &str = "pgpool-provisioner";
/// Longest wait for any condition.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Name of the example Pgpool.
pub const NAME: &str = "pp-update";
/// The 4.5.3 pgpool image.
pub const IMAGE_453: &str = "ghcr.io/appscode-images/pgpool2:4.5.3";
/// The exporter image.
pub const EXPORTER_IMAGE: &str = pgpool_api::fixtures::EXPORTER_IMAGE;

/// Path of a file in the repository's `examples/`.
pub fn example(file: &str) -> String {
    let path = format!("{}/../../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The example Pgpool (`examples/pgpool.yaml`).
pub fn example_pgpool() -> Pgpool {
    serde_yaml::from_str(&example("pgpool.yaml")).expect("examples/pgpool.yaml is a Pgpool")
}

/// A catalog entry as in DESIGN.md §3.
pub fn version(v: &str, allow: &str) -> PgpoolVersion {
    pgpool_api::fixtures::pgpool_version(v, allow)
}

/// Waits until `check` returns true, polling every 20 ms; panics after [`TIMEOUT`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if waited.is_err() {
        panic!("timed out waiting for: {what}");
    }
}

/// The provisioner under test, with its server and kubelet.
pub struct Env {
    /// The API server.
    pub server: TestServer,
    /// A client for the test itself (agent `test`).
    pub client: Client,
    /// The registry of the running provisioner.
    pub registry: Registry,
    /// The configuration `run` gets.
    pub config: ProvisionerConfig,
    /// The readiness the running provisioner's controllers report to (`/readyz`'s).
    pub readiness: Readiness,
    operator: Option<Controller<Result<(), pgpool_provisioner::Error>>>,
    _kubelet: KubeletHandle,
}

/// A short-resync configuration for tests.
pub fn test_config() -> ProvisionerConfig {
    ProvisionerConfig {
        namespace: None,
        concurrency: 4,
        resync: Duration::from_millis(200),
        instance: "test".into(),
        error_backoff: Duration::from_millis(50),
    }
}

impl Env {
    /// Server, kubelet, catalog and backend; the provisioner running.
    pub async fn start() -> Env {
        Self::start_with(test_config()).await
    }

    /// Like [`Env::start`] with a given configuration.
    pub async fn start_with(config: ProvisionerConfig) -> Env {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = operator_kit::init_tracing(&filter, operator_kit::LogFormat::Text);
        }
        let server = TestServer::with_crds(pgpool_api::crds::all());
        let kubelet = Kubelet::start(
            server.client_as("kubelet"),
            KubeletConfig::default().ready_delay(Duration::from_millis(20)),
        );
        let client = server.client_as("test");
        install_catalog_and_backend(&client).await;
        let mut env = Env {
            server,
            client,
            registry: Registry::new(),
            config,
            readiness: Readiness::new(),
            operator: None,
            _kubelet: kubelet,
        };
        env.start_operator().await;
        env
    }

    /// Starts `run` (with a fresh registry) and waits for `ready`.
    pub async fn start_operator(&mut self) {
        assert!(self.operator.is_none(), "already running");
        let registry = Registry::new();
        let client = self.server.client_as(AGENT);
        let config = self.config.clone();
        let reg = registry.clone();
        let readiness = Readiness::new();
        readiness.set_phase(Phase::Running);
        self.readiness = readiness.clone();
        let operator = Controller::spawn_ready(TIMEOUT, |stop, ready| async move {
            let controllers = Controllers::new(&readiness, &stop, true);
            let _signal = tokio::spawn(async move {
                readiness.wait_until_ready().await;
                ready.signal();
            });
            run(client, config, &reg, controllers).await
        })
        .await;
        self.registry = registry;
        self.operator = Some(operator);
    }

    /// Stops `run` and waits for it to return.
    pub async fn stop_operator(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.stop(TIMEOUT).await.expect("run returns Ok");
        }
    }

    /// Typed API in the test namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    /// Reconciles of Pgpools counted by the running provisioner.
    pub fn reconciles(&self) -> u64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == "pgpool_operator_reconcile_total")
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "controller" && l.value() == "pgpool")
            })
            .map(|m| m.get_counter().value() as u64)
            .sum()
    }

    /// Waits until the provisioner has reconciled at least `n` more times.
    pub async fn wait_reconciles(&self, n: u64) {
        let start = self.reconciles();
        wait_until(&format!("{n} more reconciles"), || async {
            self.reconciles() >= start + n
        })
        .await;
    }

    /// Value of a gauge/counter sample with one label (of the Pgpool controller's series,
    /// where the metric has a `controller` label).
    pub fn metric(&self, name: &str, label: (&str, &str)) -> Option<f64> {
        self.registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)?
            .get_metric()
            .iter()
            .find(|m| {
                let labels = m.get_label();
                labels
                    .iter()
                    .any(|l| l.name() == label.0 && l.value() == label.1)
                    && labels
                        .iter()
                        .all(|l| l.name() != "controller" || l.value() == "pgpool")
            })
            .map(|m| {
                if m.get_gauge().has_value() {
                    m.get_gauge().value()
                } else {
                    m.get_counter().value()
                }
            })
    }

    /// Creates a Pgpool.
    pub async fn create(&self, pgpool: &Pgpool) -> Pgpool {
        self.api::<Pgpool>()
            .create(&PostParams::default(), pgpool)
            .await
            .expect("create Pgpool")
    }

    /// Merge-patches a Pgpool's spec.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.api::<Pgpool>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .expect("patch Pgpool spec");
    }

    /// The Pgpool, if it exists.
    pub async fn pgpool(&self, name: &str) -> Option<Pgpool> {
        self.api::<Pgpool>()
            .get_opt(name)
            .await
            .expect("get Pgpool")
    }

    /// Waits for a phase.
    pub async fn wait_phase(&self, name: &str, phase: PgpoolPhase) -> Pgpool {
        wait_until(&format!("Pgpool {name} in phase {phase}"), || async {
            self.pgpool(name)
                .await
                .and_then(|p| p.status)
                .and_then(|s| s.phase)
                == Some(phase)
        })
        .await;
        self.pgpool(name).await.expect("Pgpool exists")
    }

    /// Waits until a condition has a status and reason.
    pub async fn wait_condition(&self, name: &str, type_: &str, status: &str, reason: &str) {
        wait_until(
            &format!("Pgpool {name} condition {type_}={status} ({reason})"),
            || async {
                self.pgpool(name)
                    .await
                    .and_then(|p| p.status)
                    .and_then(|s| conditions::get(&s.conditions, type_).cloned())
                    .is_some_and(|c| c.status == status && c.reason == reason)
            },
        )
        .await;
    }

    /// Pods of Pgpool `name`, sorted by name.
    pub async fn pods(&self, name: &str) -> Vec<Pod> {
        let mut pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&names::selector_string(name)))
            .await
            .expect("list pods")
            .items;
        pods.sort_by_key(|p| p.name_any());
        pods
    }

    /// A Secret's key as text.
    pub async fn secret_value(&self, secret: &str, key: &str) -> Option<String> {
        let s = self
            .api::<Secret>()
            .get_opt(secret)
            .await
            .expect("get Secret")?;
        let bytes = s.data?.get(key)?.0.clone();
        String::from_utf8(bytes).ok()
    }

    /// Waits until `run` has stopped by itself or panics; used to check no crash happened.
    pub fn operator_running(&self) -> bool {
        self.operator.as_ref().is_some_and(Controller::is_running)
    }
}

/// Secret data from strings.
pub fn data(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, ByteString> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// The PgpoolVersions 4.5.3 and 4.6.0, the example AppBinding, its Secret `ha-postgres-auth`
/// and its Service `ha-postgres`.
pub async fn install_catalog_and_backend(client: &Client) {
    let versions: Api<PgpoolVersion> = Api::all(client.clone());
    for (v, allow) in [
        ("4.5.3", ">= 4.5.3, <= 4.6.0"),
        ("4.6.0", ">= 4.6.0, <= 4.6.0"),
    ] {
        versions
            .create(&PostParams::default(), &version(v, allow))
            .await
            .expect("create PgpoolVersion");
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    secrets
        .create(
            &PostParams::default(),
            &testkit::fixtures::secret(
                NS,
                "ha-postgres-auth",
                [("username", "postgres"), ("password", "s3cret-backend")],
            ),
        )
        .await
        .expect("create backend Secret");
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    services
        .create(
            &PostParams::default(),
            &testkit::fixtures::service(NS, "ha-postgres", [("app", "postgres")], 5432),
        )
        .await
        .expect("create backend Service");
    let appbinding: AppBinding =
        serde_yaml::from_str(&example("appbinding.yaml")).expect("examples/appbinding.yaml");
    Api::<AppBinding>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &appbinding)
        .await
        .expect("create AppBinding");
}
