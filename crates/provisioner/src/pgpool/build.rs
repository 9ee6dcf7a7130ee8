//! Build (pure): the desired children of a Pgpool from its spec and a validated [`Plan`]
//! (DESIGN.md §4).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    ExecAction, KeyToPath, Lifecycle, LifecycleHandler, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    Secret, SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;
use pgpool_api::petset::{PetSetUpdateStrategy, PodManagementPolicy, UpdateStrategyType};
use pgpool_api::pgpool::{
    ContainerOverride, MonitorAgent, NamedServiceTemplateSpec, PodSpecOverrides, ServiceAlias,
    ServiceType,
};
use pgpool_api::{PetSet, PetSetSpec, Pgpool, names};
use serde_json::json;

use super::validate::{AuthPlan, Plan, string_data};
use crate::config;

/// Config Secret key with the database user the exporter logs in as (monitoring only; not
/// mounted into the pgpool container).
pub const KEY_MONITOR_USERNAME: &str = "monitor-username";
/// Config Secret key with that user's password (monitoring only).
pub const KEY_MONITOR_PASSWORD: &str = "monitor-password";
/// Label that tells the stats Service apart from the client Service.
pub const LABEL_ROLE: &str = "kubedb.com/role";
/// Seconds the preStop hook waits so that endpoints drain before pgpool shuts down.
pub const PRE_STOP_SLEEP_SECONDS: i32 = 5;

/// The preStop hook: wait [`PRE_STOP_SLEEP_SECONDS`] while the pod leaves the Service's
/// endpoints (new connections go elsewhere; short sessions on this pod finish), then ask pgpool
/// for a **fast** shutdown (SIGINT through its pid file), and return once pgpool has begun it.
///
/// Why not leave it to the kubelet's SIGTERM: SIGTERM is pgpool's *smart* shutdown, which waits
/// for every client to disconnect. One open long-lived session then holds the pod for the whole
/// `terminationGracePeriodSeconds` until SIGKILL. pgpool's signal handler only records the last
/// signal for its main loop, so the kubelet's SIGTERM right after the hook would turn a SIGINT
/// not yet taken up into a smart shutdown (measured on 4.3, 4.6 and 4.7: SIGINT then SIGTERM at
/// once ends smart; 20 ms apart, fast). The hook therefore waits (at most 1 s, in 10 ms steps)
/// until one of pgpool's children is gone, which shows the fast shutdown under way; pgpool then
/// takes another 0.1 to 0.6 s to exit, so the hook ends with exit 0 before the container does
/// (no FailedPreStopHook event). With the fast shutdown a pod is gone about 5 s after its
/// deletion instead of about 35 s, and a client whose session was on it gets "server closed the
/// connection unexpectedly" at its next statement, 30 s sooner. When the pid file cannot be read
/// the hook fails and the kubelet's SIGTERM (smart shutdown) is the fallback.
pub fn pre_stop_command() -> Vec<String> {
    let pid_file = format!("{}/{}", config::RUN_DIR, config::PID_FILE_NAME);
    let script = [
        format!("sleep {PRE_STOP_SLEEP_SECONDS}"),
        format!("pid=\"$(cat {pid_file})\""),
        "set -- $(cat \"/proc/$pid/task/$pid/children\" 2>/dev/null)".to_string(),
        "kill -INT \"$pid\" || exit 1".to_string(),
        "i=0".to_string(),
        "while [ -n \"$1\" ] && [ -d \"/proc/$1\" ] && [ $i -lt 100 ]; do sleep 0.01; i=$((i+1)); done"
            .to_string(),
    ];
    vec!["/bin/sh".into(), "-c".into(), script.join("\n")]
}

/// The liveness check: is the pcp port `port` listening in the pod's network namespace?
///
/// It reads `/proc/net/tcp{,6}` for a socket on `port` in state LISTEN (`0A`) instead of
/// connecting: a `tcpSocket` probe that connects and closes makes every pgpool line log
/// `pcp_child: FATAL: unable to read from client` each period, and a real pcp command
/// (`pcp_node_count`) makes 4.3 to 4.6 log three LOG lines per run and needs the pcp password
/// in the probe. A listening socket is exactly what a `tcpSocket` probe established, so the
/// check is as strong as before and leaves pgpool's log clean. It never touches the client
/// port: a saturated pool must not be restarted.
pub fn liveness_command(port: i32) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "grep -Eqs '^ *[0-9]+: [0-9A-F]+:{port:04X} [0-9A-F]+:0000 0A ' /proc/net/tcp /proc/net/tcp6"
        ),
    ]
}

/// Volume names (reserved in the Pgpool CRD).
const VOLUME_CONFIG: &str = "pgpool-config";
const VOLUME_RUN: &str = "pgpool-run";
const VOLUME_KEY: &str = "pgpool-key";
const VOLUME_TMP: &str = "tmp";

/// All desired children.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The auth Secret, when the provisioner manages it.
    pub auth_secret: Option<Secret>,
    /// `<name>-config`.
    pub config_secret: Secret,
    /// `<name>`.
    pub primary_service: Service,
    /// `<name>-pods`.
    pub pods_service: Service,
    /// `<name>-stats`, when monitoring.
    pub stats_service: Option<Service>,
    /// `<name>`.
    pub petset: PetSet,
    /// `<name>`, when replicas > 1.
    pub pdb: Option<PodDisruptionBudget>,
    /// `<name>-stats`, when wanted and possible.
    pub service_monitor: Option<DynamicObject>,
}

/// Builds every child.
pub fn build(pgpool: &Pgpool, plan: &Plan) -> Desired {
    Desired {
        auth_secret: auth_secret(plan),
        config_secret: config_secret(pgpool, plan),
        primary_service: primary_service(pgpool, plan),
        pods_service: pods_service(plan),
        stats_service: stats_service(pgpool, plan),
        petset: petset(pgpool, plan),
        pdb: pdb(pgpool, plan),
        service_monitor: service_monitor(pgpool, plan),
    }
}

fn meta(plan: &Plan, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(plan.namespace.clone()),
        labels: Some(names::labels(&plan.name)),
        owner_references: Some(vec![plan.owner.clone()]),
        ..ObjectMeta::default()
    }
}

fn some_map(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

fn some_vec<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// The basic-auth Secret with the pcp credentials, when the provisioner manages it.
pub fn auth_secret(plan: &Plan) -> Option<Secret> {
    let AuthPlan::Managed {
        name,
        username,
        password,
        ..
    } = &plan.auth
    else {
        return None;
    };
    Some(Secret {
        metadata: meta(plan, name.clone()),
        type_: Some("kubernetes.io/basic-auth".into()),
        data: Some(string_data([
            ("username", username.as_str()),
            ("password", password.as_str()),
        ])),
        ..Secret::default()
    })
}

/// The config Secret: the rendered files and the pool key (plus the exporter's credentials
/// when monitoring).
pub fn config_secret(pgpool: &Pgpool, plan: &Plan) -> Secret {
    let mut data = plan.rendered.secret_data();
    if pgpool.spec.monitoring_enabled() {
        data.insert(KEY_MONITOR_USERNAME.into(), plan.backend_user.clone());
        data.insert(KEY_MONITOR_PASSWORD.into(), plan.backend_password.clone());
    }
    Secret {
        metadata: meta(plan, names::config_secret(&plan.name)),
        type_: Some("Opaque".into()),
        data: Some(string_data(
            data.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )),
        ..Secret::default()
    }
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn service_template(pgpool: &Pgpool, alias: ServiceAlias) -> Option<&NamedServiceTemplateSpec> {
    pgpool
        .spec
        .service_templates
        .iter()
        .find(|t| t.alias == alias)
}

/// Applies `spec.serviceTemplates[alias]` to a Service.
fn apply_service_template(service: &mut Service, template: Option<&NamedServiceTemplateSpec>) {
    let Some(template) = template else { return };
    if let Some(m) = &template.metadata {
        let mut labels = m.labels.clone();
        // ours win: the selector and the owner's bookkeeping depend on them
        labels.extend(service.metadata.labels.take().unwrap_or_default());
        service.metadata.labels = some_map(labels);
        let mut annotations = service.metadata.annotations.take().unwrap_or_default();
        annotations.extend(m.annotations.clone());
        service.metadata.annotations = some_map(annotations);
    }
    let (Some(o), Some(spec)) = (&template.spec, service.spec.as_mut()) else {
        return;
    };
    if let Some(t) = o.type_ {
        spec.type_ = Some(
            match t {
                ServiceType::ClusterIP => "ClusterIP",
                ServiceType::NodePort => "NodePort",
                ServiceType::LoadBalancer => "LoadBalancer",
            }
            .into(),
        );
    }
    for p in &o.ports {
        if let Some(sp) = spec
            .ports
            .iter_mut()
            .flatten()
            .find(|sp| sp.name.as_deref() == Some(p.name.as_str()))
        {
            if let Some(port) = p.port {
                sp.port = port;
            }
            if p.node_port.is_some() {
                sp.node_port = p.node_port;
            }
        }
    }
    if o.cluster_ip.is_some() {
        spec.cluster_ip = o.cluster_ip.clone();
    }
    if !o.external_ips.is_empty() {
        spec.external_ips = Some(o.external_ips.clone());
    }
    if o.load_balancer_ip.is_some() {
        spec.load_balancer_ip = o.load_balancer_ip.clone();
    }
    if !o.load_balancer_source_ranges.is_empty() {
        spec.load_balancer_source_ranges = Some(o.load_balancer_source_ranges.clone());
    }
    if o.external_traffic_policy.is_some() {
        spec.external_traffic_policy = o.external_traffic_policy.clone();
    }
    if o.session_affinity.is_some() {
        spec.session_affinity = o.session_affinity.clone();
    }
}

/// `<name>`: the client Service (ports `primary` 9999, `pcp` 9595).
pub fn primary_service(pgpool: &Pgpool, plan: &Plan) -> Service {
    let mut service = Service {
        metadata: meta(plan, names::primary_service(&plan.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::selector(&plan.name)),
            ports: Some(vec![
                port(names::PORT_NAME_PRIMARY, names::PORT_PRIMARY),
                port(names::PORT_NAME_PCP, names::PORT_PCP),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    apply_service_template(
        &mut service,
        service_template(pgpool, ServiceAlias::Primary),
    );
    service
}

/// `<name>-pods`: the headless governing Service; not-ready pods are published so that the
/// pods' DNS names exist from the start.
pub fn pods_service(plan: &Plan) -> Service {
    Service {
        metadata: meta(plan, names::pods_service(&plan.name)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::selector(&plan.name)),
            ports: Some(vec![port(names::PORT_NAME_PRIMARY, names::PORT_PRIMARY)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The exporter's port: `spec.monitor.prometheus.exporter.port`, default 9719.
pub fn exporter_port(pgpool: &Pgpool) -> i32 {
    pgpool
        .spec
        .monitor
        .as_ref()
        .and_then(|m| m.prometheus.as_ref())
        .and_then(|p| p.exporter.as_ref())
        .and_then(|e| e.port)
        .unwrap_or(names::PORT_METRICS)
}

/// `<name>-stats`: the exporter's Service, only with `spec.monitor`.
pub fn stats_service(pgpool: &Pgpool, plan: &Plan) -> Option<Service> {
    let monitor = pgpool.spec.monitor.as_ref()?;
    let metrics_port = exporter_port(pgpool);
    let mut metadata = meta(plan, names::stats_service(&plan.name));
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(LABEL_ROLE.into(), "stats".into());
    }
    if matches!(
        monitor.agent,
        Some(MonitorAgent::PrometheusBuiltin | MonitorAgent::Prometheus)
    ) {
        metadata.annotations = Some(BTreeMap::from([
            ("prometheus.io/scrape".to_string(), "true".to_string()),
            ("prometheus.io/port".to_string(), metrics_port.to_string()),
            ("prometheus.io/path".to_string(), "/metrics".to_string()),
        ]));
    }
    let mut service = Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::selector(&plan.name)),
            ports: Some(vec![port(names::PORT_NAME_METRICS, metrics_port)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    apply_service_template(&mut service, service_template(pgpool, ServiceAlias::Stats));
    Some(service)
}

/// `<name>-stats` ServiceMonitor, when the plan has its API (wanted, CRD installed).
pub fn service_monitor(pgpool: &Pgpool, plan: &Plan) -> Option<DynamicObject> {
    let api = plan.service_monitor.as_ref()?;
    let sm = pgpool
        .spec
        .monitor
        .as_ref()
        .and_then(|m| m.prometheus.as_ref())
        .and_then(|p| p.service_monitor.as_ref());
    let mut metadata = meta(plan, names::stats_service(&plan.name));
    if let (Some(labels), Some(sm)) = (metadata.labels.as_mut(), sm) {
        for (k, v) in &sm.labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let mut endpoint = json!({"port": names::PORT_NAME_METRICS, "path": "/metrics"});
    if let Some(interval) = sm.and_then(|s| s.interval.clone()) {
        endpoint["interval"] = json!(interval);
    }
    let mut selector = names::selector(&plan.name);
    selector.insert(LABEL_ROLE.into(), "stats".into());
    let mut object = DynamicObject::new(&names::stats_service(&plan.name), api);
    object.metadata = metadata;
    object.data = json!({
        "spec": {
            "namespaceSelector": {"matchNames": [plan.namespace]},
            "selector": {"matchLabels": selector},
            "endpoints": [endpoint],
        }
    });
    Some(object)
}

/// `<name>` PodDisruptionBudget when replicas > 1: an integer `minAvailable: replicas - 1`
/// and `unhealthyPodEvictionPolicy: AlwaysAllow`.
///
/// With `maxUnavailable` (or a percentage) the disruption controller must look up the owner's
/// scale through discovery; on a cluster whose PetSet CRD is younger than its discovery cache
/// (every fresh install) the budget stays `SyncFailed` and refuses every eviction until some
/// pod changes (seen on a real kube-apiserver 1.36). An integer `minAvailable` needs no owner
/// lookup: the controller counts the pods it selects. `AlwaysAllow` lets a pod that is not
/// Ready (a broken image mid-rollback) be evicted whatever the budget says.
pub fn pdb(pgpool: &Pgpool, plan: &Plan) -> Option<PodDisruptionBudget> {
    let replicas = pgpool.spec.replicas();
    (replicas > 1).then(|| PodDisruptionBudget {
        metadata: meta(plan, names::pdb(&plan.name)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(replicas - 1)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
            selector: Some(LabelSelector {
                match_labels: Some(names::selector(&plan.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// The PetSet: OnDelete, OrderedReady, governed by `<name>-pods`.
pub fn petset(pgpool: &Pgpool, plan: &Plan) -> PetSet {
    let mut petset = PetSet::new(
        &names::petset(&plan.name),
        PetSetSpec {
            replicas: Some(pgpool.spec.replicas()),
            selector: LabelSelector {
                match_labels: Some(names::selector(&plan.name)),
                ..LabelSelector::default()
            },
            template: pod_template(pgpool, plan),
            service_name: Some(names::pods_service(&plan.name)),
            pod_management_policy: Some(PodManagementPolicy::OrderedReady),
            update_strategy: Some(PetSetUpdateStrategy {
                type_: Some(UpdateStrategyType::OnDelete),
                rolling_update: None,
            }),
            ..PetSetSpec::default()
        },
    );
    petset.metadata = meta(plan, names::petset(&plan.name));
    petset
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(requests)),
        limits: Some(quantities(limits)),
        ..ResourceRequirements::default()
    }
}

/// Default resources of the pgpool container.
pub fn default_pgpool_resources() -> ResourceRequirements {
    resources(
        &[("cpu", "100m"), ("memory", "256Mi")],
        &[("memory", "512Mi")],
    )
}

fn default_exporter_resources() -> ResourceRequirements {
    resources(
        &[("cpu", "50m"), ("memory", "64Mi")],
        &[("memory", "128Mi")],
    )
}

fn default_init_resources() -> ResourceRequirements {
    resources(&[("cpu", "50m"), ("memory", "32Mi")], &[("memory", "64Mi")])
}

/// The restricted container security context.
fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// Copies every field that `over` sets onto `base`.
macro_rules! overlay {
    ($base:expr, $over:expr, $($field:ident),+ $(,)?) => {
        $( if $over.$field.is_some() { $base.$field = $over.$field.clone(); } )+
    };
}

fn merge_security_context(
    mut base: SecurityContext,
    over: Option<&SecurityContext>,
) -> SecurityContext {
    if let Some(o) = over {
        overlay!(
            base,
            o,
            allow_privilege_escalation,
            app_armor_profile,
            capabilities,
            privileged,
            proc_mount,
            read_only_root_filesystem,
            run_as_group,
            run_as_non_root,
            run_as_user,
            se_linux_options,
            seccomp_profile,
            windows_options,
        );
    }
    base
}

fn merge_pod_security_context(
    mut base: PodSecurityContext,
    over: Option<&PodSecurityContext>,
) -> PodSecurityContext {
    if let Some(o) = over {
        overlay!(
            base,
            o,
            app_armor_profile,
            fs_group,
            fs_group_change_policy,
            run_as_group,
            run_as_non_root,
            run_as_user,
            se_linux_change_policy,
            se_linux_options,
            seccomp_profile,
            supplemental_groups,
            supplemental_groups_policy,
            sysctls,
            windows_options,
        );
    }
    base
}

fn find_override<'a>(list: &'a [ContainerOverride], name: &str) -> Option<&'a ContainerOverride> {
    list.iter().find(|c| c.name == name)
}

/// Adds a container override's env, mounts, resources and security context.
fn apply_container_override(c: &mut Container, o: Option<&ContainerOverride>) {
    let Some(o) = o else { return };
    if let Some(r) = &o.resources {
        c.resources = Some(r.clone());
    }
    if !o.env.is_empty() {
        let mut env = c.env.take().unwrap_or_default();
        env.extend(o.env.iter().cloned());
        c.env = Some(env);
    }
    if !o.volume_mounts.is_empty() {
        let mut mounts = c.volume_mounts.take().unwrap_or_default();
        mounts.extend(o.volume_mounts.iter().cloned());
        c.volume_mounts = Some(mounts);
    }
    if o.security_context.is_some() {
        c.security_context = Some(merge_security_context(
            c.security_context.take().unwrap_or_default(),
            o.security_context.as_ref(),
        ));
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn exec(command: &[&str]) -> Option<ExecAction> {
    Some(ExecAction {
        command: Some(command.iter().map(|s| s.to_string()).collect()),
    })
}

fn pgpool_container(
    pgpool: &Pgpool,
    plan: &Plan,
    overrides: Option<&PodSpecOverrides>,
) -> Container {
    let health = pgpool.spec.health_checker();
    let args = config::pgpool_args(&config::Paths::default());
    let port_text = names::PORT_PRIMARY.to_string();
    let mut c = Container {
        name: names::CONTAINER_PGPOOL.into(),
        image: Some(plan.pgpool_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        // the binary itself is PID 1, so signals reach pgpool itself (see `pre_stop_command`)
        command: Some(vec![config::PGPOOL_BINARY.into()]),
        args: Some(args),
        ports: Some(vec![
            ContainerPort {
                name: Some(names::PORT_NAME_PRIMARY.into()),
                container_port: names::PORT_PRIMARY,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some(names::PORT_NAME_PCP.into()),
                container_port: names::PORT_PCP,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        env: Some(vec![
            secret_env("PGPOOL_PCP_USER", plan.auth.name(), "username"),
            secret_env("PGPOOL_PCP_PASSWORD", plan.auth.name(), "password"),
        ]),
        resources: Some(default_pgpool_resources()),
        // readiness: a login through pgpool on its local socket, as a user the backend knows
        readiness_probe: Some(Probe {
            exec: exec(&[
                "pg_isready",
                "-h",
                config::RUN_DIR,
                "-p",
                &port_text,
                "-U",
                &plan.backend_user,
                "-d",
                "postgres",
            ]),
            initial_delay_seconds: Some(5),
            period_seconds: health.period_seconds,
            timeout_seconds: health.timeout_seconds,
            failure_threshold: health.failure_threshold,
            success_threshold: Some(1),
            ..Probe::default()
        }),
        // liveness: the pcp port listens (see `liveness_command`), never the client port
        liveness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(liveness_command(names::PORT_PCP)),
            }),
            initial_delay_seconds: Some(10),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            success_threshold: Some(1),
            ..Probe::default()
        }),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(pre_stop_command()),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(restricted_security_context()),
        volume_mounts: Some(vec![
            mount(VOLUME_CONFIG, config::CONFIG_DIR, true),
            mount(VOLUME_RUN, config::RUN_DIR, false),
            mount(VOLUME_KEY, config::KEY_DIR, true),
            mount(VOLUME_TMP, "/tmp", false),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    if let Some(r) = overrides.and_then(|o| o.resources.clone()) {
        c.resources = Some(r);
    }
    apply_container_override(
        &mut c,
        overrides.and_then(|o| find_override(&o.containers, names::CONTAINER_PGPOOL)),
    );
    c
}

fn init_container(plan: &Plan, overrides: Option<&PodSpecOverrides>) -> Container {
    let script = format!(
        "cp {src}/{key} {dst} && chmod 0600 {dst}",
        src = config::CONFIG_DIR,
        key = config::KEY_POOL_KEY,
        dst = config::KEY_FILE
    );
    let mut c = Container {
        name: names::CONTAINER_INIT.into(),
        image: Some(plan.pgpool_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), script]),
        resources: Some(default_init_resources()),
        security_context: Some(restricted_security_context()),
        volume_mounts: Some(vec![
            mount(VOLUME_CONFIG, config::CONFIG_DIR, true),
            mount(VOLUME_KEY, config::KEY_DIR, false),
        ]),
        ..Container::default()
    };
    apply_container_override(
        &mut c,
        overrides.and_then(|o| find_override(&o.init_containers, names::CONTAINER_INIT)),
    );
    c
}

fn exporter_container(
    pgpool: &Pgpool,
    plan: &Plan,
    image: &str,
    overrides: Option<&PodSpecOverrides>,
) -> Container {
    let metrics_port = exporter_port(pgpool);
    let exporter = pgpool
        .spec
        .monitor
        .as_ref()
        .and_then(|m| m.prometheus.as_ref())
        .and_then(|p| p.exporter.as_ref());
    let config_secret = names::config_secret(&plan.name);
    let mut c = Container {
        name: names::CONTAINER_EXPORTER.into(),
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(vec![format!("--web.listen-address=:{metrics_port}")]),
        ports: Some(vec![ContainerPort {
            name: Some(names::PORT_NAME_METRICS.into()),
            container_port: metrics_port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(vec![
            EnvVar {
                name: "DATA_SOURCE_URI".into(),
                value: Some(format!(
                    "localhost:{}/postgres?sslmode=disable",
                    names::PORT_PRIMARY
                )),
                ..EnvVar::default()
            },
            secret_env("DATA_SOURCE_USER", &config_secret, KEY_MONITOR_USERNAME),
            secret_env("DATA_SOURCE_PASS", &config_secret, KEY_MONITOR_PASSWORD),
        ]),
        resources: Some(
            exporter
                .and_then(|e| e.resources.clone())
                .unwrap_or_else(default_exporter_resources),
        ),
        security_context: Some(merge_security_context(
            restricted_security_context(),
            exporter.and_then(|e| e.security_context.as_ref()),
        )),
        ..Container::default()
    };
    apply_container_override(
        &mut c,
        overrides.and_then(|o| find_override(&o.containers, names::CONTAINER_EXPORTER)),
    );
    c
}

fn default_affinity(name: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(names::selector(name)),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn volumes(plan: &Plan, overrides: Option<&PodSpecOverrides>) -> Vec<Volume> {
    let config_items = [
        config::KEY_PGPOOL_CONF,
        config::KEY_POOL_HBA_CONF,
        config::KEY_PCP_CONF,
        config::KEY_POOL_PASSWD,
        config::KEY_POOL_KEY,
    ]
    .iter()
    .map(|k| KeyToPath {
        key: k.to_string(),
        path: k.to_string(),
        mode: None,
    })
    .collect();
    let mut out = vec![
        Volume {
            name: VOLUME_CONFIG.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::config_secret(&plan.name)),
                // owner and group (fsGroup) may read
                default_mode: Some(0o440),
                items: Some(config_items),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: VOLUME_RUN.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: VOLUME_KEY.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity("1Mi".into())),
            }),
            ..Volume::default()
        },
        Volume {
            name: VOLUME_TMP.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if let Some(o) = overrides {
        out.extend(o.volumes.iter().cloned());
    }
    out
}

/// The pod template of DESIGN.md §4 with `spec.podTemplate` merged over it.
pub fn pod_template(pgpool: &Pgpool, plan: &Plan) -> PodTemplateSpec {
    let template = pgpool.spec.pod_template.as_ref();
    let overrides = template.and_then(|t| t.spec.as_ref());
    let user_meta = template.and_then(|t| t.metadata.as_ref());

    let mut labels = user_meta.map(|m| m.labels.clone()).unwrap_or_default();
    labels.extend(names::labels(&plan.name));
    let mut annotations = user_meta.map(|m| m.annotations.clone()).unwrap_or_default();
    annotations.insert(
        names::ANNOTATION_CONFIG_HASH.into(),
        plan.config_hash.clone(),
    );

    let mut containers = vec![pgpool_container(pgpool, plan, overrides)];
    if let Some(image) = &plan.exporter_image {
        containers.push(exporter_container(pgpool, plan, image, overrides));
    }

    let uid = plan.run_as_user;
    let pod_security = merge_pod_security_context(
        PodSecurityContext {
            run_as_user: Some(uid),
            run_as_group: Some(uid),
            fs_group: Some(uid),
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        },
        overrides.and_then(|o| o.security_context.as_ref()),
    );

    let o = overrides.cloned().unwrap_or_default();
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            init_containers: Some(vec![init_container(plan, overrides)]),
            containers,
            volumes: Some(volumes(plan, overrides)),
            security_context: Some(pod_security),
            affinity: Some(o.affinity.unwrap_or_else(|| default_affinity(&plan.name))),
            node_selector: some_map(o.node_selector),
            tolerations: some_vec(o.tolerations),
            topology_spread_constraints: some_vec(o.topology_spread_constraints),
            image_pull_secrets: some_vec(o.image_pull_secrets),
            service_account_name: o.service_account_name,
            priority_class_name: o.priority_class_name,
            scheduler_name: o.scheduler_name,
            runtime_class_name: o.runtime_class_name,
            termination_grace_period_seconds: Some(
                o.termination_grace_period_seconds.unwrap_or(30),
            ),
            enable_service_links: Some(false),
            automount_service_account_token: Some(false),
            ..PodSpec::default()
        }),
    }
}
