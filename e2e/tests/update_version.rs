//! The end-to-end scenario `make e2e` runs, against the cluster in `KUBECONFIG` with both
//! operators installed, the default catalog, and `e2e/manifests/` applied (a PostgreSQL
//! behind Service `ha-postgres` and the AppBinding of `examples/appbinding.yaml`):
//!
//! 1. create `examples/pgpool.yaml` (Pgpool `pp-update` on 4.5.3) and wait until Ready;
//! 2. `SELECT 1` through the Pgpool Service from a client pod;
//! 3. start a client that keeps querying through the pooler;
//! 4. create `examples/update-version.yaml` (UpdateVersion to 4.6.0), wait for Successful;
//! 5. check spec.version, the PetSet's and the pods' images, the request's conditions in
//!    order, that `Paused` is gone, and count the client's failed queries;
//! 6. check both operators' `/metrics` show the update;
//! 7. a failing update: PgpoolVersion `4.6.0-broken` with an image no registry serves,
//!    allowed from 4.6.0; the request must end Failed with the Pgpool back on 4.6.0;
//! 8. with the chart's ValidatingAdmissionPolicy installed, deleting the Pgpool with
//!    deletionPolicy DoNotTerminate is refused.
//!
//! Without `E2E=1` and a reachable cluster the test prints one line and passes. With
//! `E2E_SIMULATE_KUBELET=1` it marks pods Running/Ready itself (a control plane without
//! nodes) and leaves out the steps that need a real pod (the SQL clients).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use e2e::cluster::{self, Cluster};
use e2e::kubelet::SimulatedKubelet;
use e2e::metrics::{self, Endpoint};
use e2e::psql::{self, QueryLoop, Target};
use e2e::scenario::delete_if_exists;
use e2e::scenario_request::create_and_wait;
use e2e::wait;
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use pgpool_api::conditions::{self, ops};
use pgpool_api::ops::UpdateVersionSpec;
use pgpool_api::{
    AppBinding, OpsRequestPhase, PetSet, Pgpool, PgpoolOpsRequest, PgpoolPhase, PgpoolVersion,
    names,
};

/// The catalog entry of the failing update.
const BROKEN_VERSION: &str = "4.6.0-broken";
/// An image no registry serves: `.invalid` never resolves.
const BROKEN_IMAGE: &str = "registry.invalid/pgpool-operator-e2e/pgpool2:4.6.0";
/// The failing request.
const BROKEN_REQUEST: &str = "pgpool-version-update-broken";
/// Step timeout of the failing request, so that it fails within minutes.
const BROKEN_REQUEST_TIMEOUT: &str = "2m";

/// Creating a Pgpool until Ready (image pulls included).
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// An UpdateVersion until it ends (a pod restart per replica, image pulls included).
const UPDATE_TIMEOUT: Duration = Duration::from_secs(600);
/// The failing update until it ends: its step timeout, then the rollback.
const FAILED_UPDATE_TIMEOUT: Duration = Duration::from_secs(600);
/// Deleting what an earlier run left.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_version_end_to_end() {
    let Some(cluster) = Cluster::connect_or_skip("update_version_end_to_end").await else {
        return;
    };
    let mut scenario = Scenario::new(cluster);
    if let Err(e) = scenario.run().await {
        panic!("e2e failed in step \"{}\": {e:#}", scenario.step);
    }
}

struct Scenario {
    cluster: Cluster,
    started: Instant,
    step: String,
}

/// What the examples ask for.
struct Plan {
    pgpool: Pgpool,
    request: PgpoolOpsRequest,
    source: PgpoolVersion,
    target: PgpoolVersion,
}

impl Plan {
    fn name(&self) -> String {
        self.pgpool.metadata.name.clone().unwrap_or_default()
    }
}

impl Scenario {
    fn new(cluster: Cluster) -> Scenario {
        Scenario {
            cluster,
            started: Instant::now(),
            step: "start".to_string(),
        }
    }

    fn step(&mut self, step: &str) {
        self.step = step.to_string();
        println!("e2e [{:>4} s] {step}", self.started.elapsed().as_secs());
    }

    fn note(&self, line: &str) {
        println!("e2e [{:>4} s]   {line}", self.started.elapsed().as_secs());
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace)
    }

    fn versions(&self) -> Api<PgpoolVersion> {
        Api::all(self.cluster.client.clone())
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        self.step("preflight: catalog, AppBinding, operators");
        let plan = self.preflight().await?;
        self.step("clean up what an earlier run left");
        self.cleanup(&plan).await?;
        let _kubelet = self.cluster.simulate_kubelet.then(|| {
            self.note("E2E_SIMULATE_KUBELET=1: this test marks pods Running/Ready itself");
            SimulatedKubelet::start(self.cluster.client.clone(), &self.cluster.namespace)
        });

        self.step(&format!(
            "create Pgpool {} on {} and wait until Ready",
            plan.name(),
            plan.pgpool.spec.version
        ));
        self.create_pgpool(&plan).await?;
        self.check_on_version(&plan, &plan.source).await?;

        let target = Target::through_pgpool(
            &self.cluster.client,
            &self.cluster.namespace,
            &plan.name(),
            &plan.pgpool.spec.postgres_ref.name,
        )
        .await?;
        let query_loop = if self.cluster.simulate_kubelet {
            self.note("simulated kubelet: no pod really runs, so the SQL steps are left out");
            None
        } else {
            self.step(&format!("SELECT 1 through {}:{}", target.host, target.port));
            let out = psql::select_one(
                &self.cluster.client,
                &self.cluster.namespace,
                &self.cluster.psql_image,
                &target,
                Duration::from_secs(180),
            )
            .await?;
            self.note(&format!("psql said: {}", out.trim().replace('\n', " | ")));

            self.step("start a client that keeps querying through the pooler");
            let query_loop = QueryLoop::start(
                &self.cluster.client,
                &self.cluster.namespace,
                &self.cluster.psql_image,
                &target,
            )
            .await?;
            query_loop
                .wait_for_successes(0, 3, Duration::from_secs(60))
                .await
                .context("the client's first queries")?;
            Some(query_loop)
        };

        self.step(&format!(
            "UpdateVersion {} -> {} ({})",
            plan.source.spec.version,
            plan.target.spec.version,
            plan.request.metadata.name.as_deref().unwrap_or_default()
        ));
        let update_started = now_unix();
        let request = self.run_request(&plan.request, UPDATE_TIMEOUT).await?;
        let phase = request.status.as_ref().and_then(|s| s.phase);
        if phase != Some(OpsRequestPhase::Successful) {
            bail!(
                "the UpdateVersion request ended {phase:?}: {}",
                describe_conditions(request_conditions(&request))
            );
        }
        let update_done = now_unix();
        self.note(&format!(
            "Successful after {} s",
            update_done - update_started
        ));

        self.step("check the Pgpool, PetSet, pods and the request's conditions");
        self.check_after_success(&plan, &request).await?;

        if let Some(query_loop) = query_loop {
            self.step("count the client's failed queries during the update");
            let log = query_loop
                .wait_for_successes(update_done, 5, Duration::from_secs(120))
                .await
                .context("queries after the update")?;
            query_loop.stop().await?;
            let during: Vec<_> = log
                .results
                .iter()
                .filter(|r| r.at >= update_started && r.at <= update_done)
                .collect();
            self.note(&format!(
                "client: {} queries, {} failed ({} during the update of {} s), longest outage {} s",
                log.results.len(),
                log.failed(),
                during.iter().filter(|r| !r.ok).count(),
                update_done - update_started,
                log.longest_outage_secs()
            ));
            for (error, count) in log.errors().iter().take(5) {
                self.note(&format!("  {count} x {error}"));
            }
            ensure!(
                log.results.iter().any(|r| r.ok && r.at < update_started),
                "no successful query before the update"
            );
            let last: Vec<_> = log.results.iter().rev().take(5).collect();
            ensure!(
                last.iter().all(|r| r.ok),
                "the last queries after the update failed: {last:?}"
            );
        }

        self.step("both operators' /metrics show the update");
        self.check_metrics_after_success().await?;

        self.step(&format!(
            "failing update to {BROKEN_VERSION} (image {BROKEN_IMAGE})"
        ));
        self.failing_update(&plan).await?;

        self.step("the admission policy refuses deleting a DoNotTerminate Pgpool");
        self.do_not_terminate(&plan).await?;

        self.step("done");
        Ok(())
    }

    /// Reads the examples and checks what the scenario needs is in the cluster.
    async fn preflight(&self) -> anyhow::Result<Plan> {
        let ns = &self.cluster.namespace;
        let mut pgpool: Pgpool = cluster::example("pgpool.yaml", ns)?;
        // The backend (e2e/manifests/) lives next to the Pgpool, in the scenario's namespace.
        if pgpool.spec.postgres_ref.namespace.is_some() {
            pgpool.spec.postgres_ref.namespace = Some(ns.clone());
        }
        let request: PgpoolOpsRequest = cluster::example("update-version.yaml", ns)?;
        let target_name = request
            .spec
            .update_version
            .as_ref()
            .map(|u| u.target_version.clone())
            .context("examples/update-version.yaml has no updateVersion.targetVersion")?;
        let catalog_hint =
            "install the pgpool-provisioner chart with its default catalog (catalog.enabled=true)";
        let source = self
            .versions()
            .get(&pgpool.spec.version)
            .await
            .with_context(|| format!("PgpoolVersion {}: {catalog_hint}", pgpool.spec.version))?;
        let target = self
            .versions()
            .get(&target_name)
            .await
            .with_context(|| format!("PgpoolVersion {target_name}: {catalog_hint}"))?;
        let backend = &pgpool.spec.postgres_ref;
        let backend_ns = backend.namespace.clone().unwrap_or_else(|| ns.clone());
        let bindings: Api<AppBinding> = Api::namespaced(self.cluster.client.clone(), &backend_ns);
        bindings.get(&backend.name).await.with_context(|| {
            format!(
                "AppBinding {backend_ns}/{}: apply e2e/manifests/ (PostgreSQL, its Secret and Service, the AppBinding)",
                backend.name
            )
        })?;
        Ok(Plan {
            pgpool,
            request,
            source,
            target,
        })
    }

    /// Deletes the requests, the Pgpool, the broken version and client pods of an earlier run.
    async fn cleanup(&self, plan: &Plan) -> anyhow::Result<()> {
        let pods: Api<Pod> = self.api();
        for name in ["e2e-select-1", "e2e-query-loop"] {
            psql::delete_and_wait(&pods, name).await?;
        }
        let requests: Api<PgpoolOpsRequest> = self.api();
        for name in [
            plan.request.metadata.name.clone().unwrap_or_default(),
            BROKEN_REQUEST.to_string(),
        ] {
            if delete_if_exists(&requests, &name).await? {
                self.note(&format!("deleting PgpoolOpsRequest {name}"));
                wait::until_gone(&requests, &name, CLEANUP_TIMEOUT).await?;
            }
        }
        let pgpools: Api<Pgpool> = self.api();
        if delete_if_exists(&pgpools, &plan.name()).await? {
            self.note(&format!("deleting Pgpool {}", plan.name()));
            wait::until_gone(&pgpools, &plan.name(), CLEANUP_TIMEOUT)
                .await
                .context("is the provisioner running? it removes the finalizer")?;
        }
        if delete_if_exists(&self.versions(), BROKEN_VERSION).await? {
            wait::until_gone(&self.versions(), BROKEN_VERSION, CLEANUP_TIMEOUT).await?;
        }
        Ok(())
    }

    async fn create_pgpool(&self, plan: &Plan) -> anyhow::Result<()> {
        let pgpools: Api<Pgpool> = self.api();
        pgpools
            .create(&PostParams::default(), &plan.pgpool)
            .await
            .context("creating the Pgpool")?;
        let pgpool = wait::for_object(
            &pgpools,
            &plan.name(),
            "Pgpool Ready",
            READY_TIMEOUT,
            pgpool_ready,
        )
        .await?;
        self.note(&format!(
            "Ready; conditions: {}",
            describe_conditions(pgpool_conditions(&pgpool))
        ));
        Ok(())
    }

    /// The PetSet and every pod run `version`'s images, and the pods are Ready.
    async fn check_on_version(&self, plan: &Plan, version: &PgpoolVersion) -> anyhow::Result<()> {
        let name = plan.name();
        let petsets: Api<PetSet> = self.api();
        let petset = petsets
            .get(&names::petset(&name))
            .await
            .context("reading the PetSet")?;
        let spec = petset.spec.template.spec.clone().unwrap_or_default();
        let wanted = |c: &Container| wanted_image(c, version);
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            if let Some(want) = wanted(c) {
                ensure!(
                    c.image.as_deref() == Some(want.as_str()),
                    "PetSet container {} runs {:?}, not {want}",
                    c.name,
                    c.image
                );
            }
        }
        ensure!(
            spec.containers
                .iter()
                .any(|c| c.name == names::CONTAINER_PGPOOL),
            "the PetSet has no {} container",
            names::CONTAINER_PGPOOL
        );

        let replicas = usize::try_from(plan.pgpool.spec.replicas()).unwrap_or(1);
        let pods: Api<Pod> = self.api();
        let version_name = version.metadata.name.clone().unwrap_or_default();
        let pods = wait::for_list(
            &pods,
            &names::selector_string(&name),
            &format!("{replicas} pod(s) Ready on {version_name}"),
            READY_TIMEOUT,
            |pods: &[Pod]| {
                pods.len() == replicas && pods.iter().all(|p| pod_ready(p) && pod_runs(p, version))
            },
            describe_pods,
        )
        .await?;
        self.note(&format!("pods: {}", describe_pods(&pods)));
        Ok(())
    }

    /// Creates `request` (replacing nothing: cleanup removed it) and waits for its end.
    async fn run_request(
        &self,
        request: &PgpoolOpsRequest,
        timeout: Duration,
    ) -> anyhow::Result<PgpoolOpsRequest> {
        let requests: Api<PgpoolOpsRequest> = self.api();
        let name = request.metadata.name.clone().unwrap_or_default();
        let done = create_and_wait(&requests, request, timeout).await?;
        self.note(&format!(
            "{name}: {:?}; conditions: {}",
            done.status.as_ref().and_then(|s| s.phase),
            describe_conditions(request_conditions(&done))
        ));
        Ok(done)
    }

    async fn check_after_success(
        &self,
        plan: &Plan,
        request: &PgpoolOpsRequest,
    ) -> anyhow::Result<()> {
        let target_name = plan.target.metadata.name.clone().unwrap_or_default();
        let pgpools: Api<Pgpool> = self.api();
        let pgpool = pgpools.get(&plan.name()).await?;
        ensure!(
            pgpool.spec.version == target_name,
            "Pgpool spec.version is {}, not {target_name}",
            pgpool.spec.version
        );
        ensure!(
            conditions::get(pgpool_conditions(&pgpool), conditions::pgpool::PAUSED).is_none(),
            "the Pgpool is still Paused: {}",
            describe_conditions(pgpool_conditions(&pgpool))
        );
        self.check_on_version(plan, &plan.target).await?;
        let pgpool = wait::for_object(
            &pgpools,
            &plan.name(),
            "Pgpool Ready after the update",
            READY_TIMEOUT,
            pgpool_ready,
        )
        .await?;
        self.note(&format!(
            "Pgpool {} on {}, phase {:?}, no Paused condition",
            plan.name(),
            pgpool.spec.version,
            pgpool.status.as_ref().and_then(|s| s.phase)
        ));

        // The request's record of the workflow, in the order of DESIGN.md §5.
        let conds = request_conditions(request);
        let pods: Api<Pod> = self.api();
        let pod_names: Vec<String> = pods
            .list(&ListParams::default().labels(&names::selector_string(&plan.name())))
            .await?
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        check_update_conditions(conds, &pod_names)?;
        self.note("conditions in order: UpdateVersion, DatabasePauseSucceeded, UpdatePetSets, EvictPod--/CheckPodRunning-- per pod, RestartPods, UpdateDatabase, Successful");
        Ok(())
    }

    async fn check_metrics_after_success(&self) -> anyhow::Result<()> {
        let ops = Endpoint::from_env("E2E_OPS_MANAGER_METRICS_URL", "pgpool-ops-manager");
        let provisioner = Endpoint::from_env("E2E_PROVISIONER_METRICS_URL", "pgpool-provisioner");
        let client = &self.cluster.client;
        let update = [("type", "UpdateVersion")];
        let successful = [("type", "UpdateVersion"), ("phase", "Successful")];

        let succeeded =
            metric_at_least(client, &ops, "pgpool_operator_ops_requests", &successful).await?;
        let durations = metric_at_least(
            client,
            &ops,
            "pgpool_operator_ops_request_duration_seconds_count",
            &update,
        )
        .await?;
        let steps = metric_at_least(
            client,
            &ops,
            "pgpool_operator_ops_step_duration_seconds_count",
            &update,
        )
        .await?;
        self.note(&format!(
            "ops-manager: ops_requests{{UpdateVersion,Successful}} = {succeeded}, {durations} request duration sample(s), {steps} step duration sample(s)"
        ));

        let reconciles = metric_at_least(
            client,
            &provisioner,
            "pgpool_operator_reconcile_total",
            &[("controller", "pgpool")],
        )
        .await?;
        let ready = metric_at_least(
            client,
            &provisioner,
            "pgpool_operator_pgpools",
            &[("phase", PgpoolPhase::Ready.as_str())],
        )
        .await?;
        self.note(&format!(
            "provisioner: {reconciles} Pgpool reconciles, {ready} Pgpool(s) Ready"
        ));
        Ok(())
    }

    async fn failing_update(&self, plan: &Plan) -> anyhow::Result<()> {
        let name = plan.name();
        let target_name = plan.target.metadata.name.clone().unwrap_or_default();

        // A catalog entry like the target, with an image no registry serves; the target's
        // allowlist (">= 4.6.0, <= 4.6.0") admits it, since its version is 4.6.0.
        let mut broken = PgpoolVersion::new(BROKEN_VERSION, plan.target.spec.clone());
        broken.spec.pgpool.image = BROKEN_IMAGE.to_string();
        broken.spec.deprecated = None;
        self.versions()
            .create(&PostParams::default(), &broken)
            .await
            .context("creating the broken PgpoolVersion")?;

        let mut request = PgpoolOpsRequest::new(BROKEN_REQUEST, plan.request.spec.clone());
        request.metadata.namespace = Some(self.cluster.namespace.clone());
        request.spec.update_version = Some(UpdateVersionSpec {
            target_version: BROKEN_VERSION.to_string(),
        });
        request.spec.timeout = Some(BROKEN_REQUEST_TIMEOUT.to_string());
        let done = self.run_request(&request, FAILED_UPDATE_TIMEOUT).await?;
        let phase = done.status.as_ref().and_then(|s| s.phase);
        ensure!(
            phase == Some(OpsRequestPhase::Failed),
            "the update to {BROKEN_VERSION} ended {phase:?}, not Failed: {}",
            describe_conditions(request_conditions(&done))
        );
        if let Some(failed) = conditions::get(request_conditions(&done), ops::FAILED) {
            self.note(&format!("why: {}", failed.message));
        }

        // Back on the version it had, no pause left, pods on the old images and Ready.
        let pgpools: Api<Pgpool> = self.api();
        let pgpool = pgpools.get(&name).await?;
        ensure!(
            pgpool.spec.version == target_name,
            "after the failed update the Pgpool is on {}, not back on {target_name}",
            pgpool.spec.version
        );
        ensure!(
            conditions::get(pgpool_conditions(&pgpool), conditions::pgpool::PAUSED).is_none(),
            "the Pgpool is still Paused after the failed update"
        );
        self.check_on_version(plan, &plan.target).await?;
        wait::for_object(
            &pgpools,
            &name,
            "Pgpool Ready after the rollback",
            READY_TIMEOUT,
            pgpool_ready,
        )
        .await?;
        self.note(&format!("Pgpool {name} is Ready on {target_name} again"));

        let ops = Endpoint::from_env("E2E_OPS_MANAGER_METRICS_URL", "pgpool-ops-manager");
        let failed = metric_at_least(
            &self.cluster.client,
            &ops,
            "pgpool_operator_ops_requests",
            &[("type", "UpdateVersion"), ("phase", "Failed")],
        )
        .await?;
        self.note(&format!(
            "ops-manager: ops_requests{{UpdateVersion,Failed}} = {failed}"
        ));
        Ok(())
    }

    /// With the chart's ValidatingAdmissionPolicy installed, DELETE of a Pgpool whose
    /// deletionPolicy is DoNotTerminate is refused; the policy is put back afterwards.
    async fn do_not_terminate(&self, plan: &Plan) -> anyhow::Result<()> {
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(self.cluster.client.clone());
        let installed = policies
            .list(&ListParams::default().labels("app.kubernetes.io/name=pgpool-provisioner"))
            .await
            .map(|l| !l.items.is_empty());
        match installed {
            Ok(true) => {}
            Ok(false) => {
                self.note("no ValidatingAdmissionPolicy of the pgpool-provisioner chart: left out");
                return Ok(());
            }
            Err(e) => {
                self.note(&format!(
                    "cannot list ValidatingAdmissionPolicies ({e}): left out"
                ));
                return Ok(());
            }
        }
        let name = plan.name();
        let pgpools: Api<Pgpool> = self.api();
        let set_policy = |policy: &'static str| {
            let pgpools = pgpools.clone();
            let name = name.clone();
            async move {
                let patch = serde_json::json!({"spec": {"deletionPolicy": policy}});
                pgpools
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .with_context(|| format!("setting deletionPolicy {policy}"))
            }
        };
        set_policy("DoNotTerminate").await?;
        let refused = pgpools.delete(&name, &DeleteParams::default()).await;
        let restored = set_policy("WipeOut").await;
        match refused {
            Err(kube::Error::Api(e)) if e.message.contains("DoNotTerminate") => {
                self.note(&format!("refused ({}): {}", e.code, e.message));
            }
            Err(e) => bail!("deleting a DoNotTerminate Pgpool failed, but not for its policy: {e}"),
            Ok(_) => bail!(
                "deleting a DoNotTerminate Pgpool was accepted: the admission policy did not apply"
            ),
        }
        restored?;
        let pgpool = pgpools.get(&name).await?;
        ensure!(
            pgpool.metadata.deletion_timestamp.is_none(),
            "the Pgpool is being deleted"
        );
        Ok(())
    }
}

/// How long an operator gets to show a metric (a gauge is refreshed on its next reconcile).
const METRICS_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until the sum of `name{labels}` reaches at least 1 on some replica of the operator
/// (only the leader runs controllers), reading its metrics every 2 s; returns the value.
async fn metric_at_least(
    client: &kube::Client,
    endpoint: &Endpoint,
    name: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<f64> {
    let mut last = 0.0;
    let mut last_error = None;
    let polling = async {
        let mut interval = tokio::time::interval(Duration::from_secs(2));
        loop {
            interval.tick().await;
            match metrics::scrape(client, endpoint).await {
                Ok(texts) => {
                    last = texts
                        .iter()
                        .map(|t| metrics::sum(&metrics::parse(t), name, labels))
                        .fold(0.0, f64::max);
                    if last >= 1.0 {
                        return;
                    }
                }
                Err(e) => last_error = Some(format!("{e:#}")),
            }
        }
    };
    if tokio::time::timeout(METRICS_TIMEOUT, polling).await.is_ok() {
        return Ok(last);
    }
    match last_error {
        Some(e) if last < 1.0 => bail!("{name}{labels:?}: cannot read the metrics: {e}"),
        _ => bail!(
            "{name}{labels:?} is {last} after {} s, expected at least 1 ({endpoint:?})",
            METRICS_TIMEOUT.as_secs()
        ),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn pgpool_conditions(p: &Pgpool) -> &[Condition] {
    p.status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[])
}

fn request_conditions(r: &PgpoolOpsRequest) -> &[Condition] {
    r.status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[])
}

/// Ready phase, Ready condition, status about the current generation.
fn pgpool_ready(p: &Pgpool) -> bool {
    let Some(status) = &p.status else {
        return false;
    };
    status.phase == Some(PgpoolPhase::Ready)
        && conditions::is_true(&status.conditions, conditions::pgpool::READY)
        && status.observed_generation >= p.metadata.generation
}

fn describe_conditions(conds: &[Condition]) -> String {
    if conds.is_empty() {
        return "(none)".to_string();
    }
    conds
        .iter()
        .map(|c| {
            if c.message.is_empty() {
                format!("{}={}", c.type_, c.status)
            } else {
                format!("{}={} ({})", c.type_, c.status, c.message)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The image `version` wants for container `c`, if it speaks of that container.
fn wanted_image(c: &Container, version: &PgpoolVersion) -> Option<String> {
    match c.name.as_str() {
        names::CONTAINER_PGPOOL | names::CONTAINER_INIT => Some(version.spec.pgpool.image.clone()),
        names::CONTAINER_EXPORTER => version.spec.exporter.as_ref().map(|e| e.image.clone()),
        _ => None,
    }
}

/// `docker.io/library/postgres:16` and `postgres:16` are the same image.
fn same_image(a: &str, b: &str) -> bool {
    fn normal(s: &str) -> &str {
        let s = s.strip_prefix("docker.io/").unwrap_or(s);
        s.strip_prefix("library/").unwrap_or(s)
    }
    normal(a) == normal(b)
}

/// The pod's spec and its running containers use `version`'s images.
fn pod_runs(pod: &Pod, version: &PgpoolVersion) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    let statuses: BTreeMap<&str, &str> = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|cs| (cs.name.as_str(), cs.image.as_str()))
        .collect();
    spec.containers
        .iter()
        .all(|c| match wanted_image(c, version) {
            None => true,
            Some(want) => {
                c.image.as_deref() == Some(want.as_str())
                    && statuses
                        .get(c.name.as_str())
                        .is_some_and(|s| same_image(s, &want))
            }
        })
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn describe_pods(pods: &[Pod]) -> String {
    if pods.is_empty() {
        return "(no pods)".to_string();
    }
    pods.iter()
        .map(|p| {
            let image = p
                .spec
                .as_ref()
                .and_then(|s| {
                    s.containers
                        .iter()
                        .find(|c| c.name == names::CONTAINER_PGPOOL)
                })
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let waiting: Vec<String> = p
                .status
                .iter()
                .flat_map(|s| {
                    s.init_container_statuses
                        .iter()
                        .flatten()
                        .chain(s.container_statuses.iter().flatten())
                })
                .filter_map(|cs| {
                    let w = cs.state.as_ref()?.waiting.as_ref()?;
                    Some(format!(
                        "{} {}",
                        cs.name,
                        w.reason.clone().unwrap_or_default()
                    ))
                })
                .collect();
            format!(
                "{} {} {}{}{}",
                p.metadata.name.clone().unwrap_or_default(),
                p.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "-".into()),
                if pod_ready(p) { "Ready" } else { "not-ready" },
                if p.metadata.deletion_timestamp.is_some() {
                    " terminating"
                } else {
                    ""
                },
                if waiting.is_empty() {
                    format!(" {image}")
                } else {
                    format!(" {image} waiting: {}", waiting.join(", "))
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The request's conditions tell the workflow in DESIGN.md §5's order, every step True:
/// UpdateVersion, DatabasePauseSucceeded, UpdatePetSets, RestartPods, UpdateDatabase,
/// Successful; for each pod EvictPod--<pod> before CheckPodRunning--<pod>, both after
/// UpdatePetSets and before UpdateDatabase.
fn check_update_conditions(conds: &[Condition], pods: &[String]) -> anyhow::Result<()> {
    let position = |type_: &str| -> anyhow::Result<usize> {
        let i = conds
            .iter()
            .position(|c| c.type_ == type_)
            .with_context(|| format!("no {type_} condition in {}", describe_conditions(conds)))?;
        ensure!(
            conds[i].status == conditions::TRUE,
            "condition {type_} is {} ({})",
            conds[i].status,
            conds[i].message
        );
        Ok(i)
    };
    let main = [
        ops::UPDATE_VERSION,
        ops::DATABASE_PAUSE_SUCCEEDED,
        ops::UPDATE_PETSETS,
        ops::RESTART_PODS,
        ops::UPDATE_DATABASE,
        ops::SUCCESSFUL,
    ];
    let mut previous: Option<(&str, usize)> = None;
    for type_ in main {
        let i = position(type_)?;
        if let Some((before, j)) = previous {
            ensure!(
                j < i,
                "{before} must come before {type_}: {}",
                describe_conditions(conds)
            );
        }
        previous = Some((type_, i));
    }
    let petsets = position(ops::UPDATE_PETSETS)?;
    let database = position(ops::UPDATE_DATABASE)?;
    for pod in pods {
        let evict = position(&ops::evict_pod(pod))?;
        let check = position(&ops::check_pod_running(pod))?;
        ensure!(
            petsets < evict && evict < check && check < database,
            "pod {pod}: expected UpdatePetSets < EvictPod < CheckPodRunning < UpdateDatabase: {}",
            describe_conditions(conds)
        );
    }
    ensure!(
        conds.iter().all(|c| c.type_ != ops::FAILED),
        "a Successful request with a Failed condition: {}",
        describe_conditions(conds)
    );
    Ok(())
}

#[test]
fn update_conditions_are_checked_in_order() {
    fn cond(type_: &str, status: &str) -> Condition {
        serde_json::from_value(serde_json::json!({
            "type": type_, "status": status, "reason": "R", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }))
        .expect("condition")
    }
    let good: Vec<Condition> = [
        "UpdateVersion",
        "DatabasePauseSucceeded",
        "UpdatePetSets",
        "EvictPod--pp-update-0",
        "CheckPodRunning--pp-update-0",
        "RestartPods",
        "UpdateDatabase",
        "Successful",
    ]
    .iter()
    .map(|t| cond(t, "True"))
    .collect();
    let pods = vec!["pp-update-0".to_string()];
    check_update_conditions(&good, &pods).expect("in order");

    let mut swapped = good.clone();
    swapped.swap(1, 2);
    assert!(check_update_conditions(&swapped, &pods).is_err());

    let mut not_true = good.clone();
    not_true[6] = cond("UpdateDatabase", "False");
    assert!(check_update_conditions(&not_true, &pods).is_err());

    let missing_pod = vec!["pp-update-1".to_string()];
    assert!(check_update_conditions(&good, &missing_pod).is_err());
}

#[test]
fn images_compare_with_and_without_the_default_registry() {
    assert!(same_image("docker.io/library/postgres:16", "postgres:16"));
    assert!(same_image("ghcr.io/a/b:1", "ghcr.io/a/b:1"));
    assert!(!same_image("ghcr.io/a/b:1", "ghcr.io/a/b:2"));
}
