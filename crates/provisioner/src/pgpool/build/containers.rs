//! The containers of the pod: pgpool (with its probes and preStop hook), the init container
//! that prepares the pool key, and the exporter sidecar; resources and security contexts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, Lifecycle,
    LifecycleHandler, PodSecurityContext, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecurityContext, TCPSocketAction, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgpool_api::pgpool::{ContainerOverride, PodSpecOverrides};
use pgpool_api::{Pgpool, names};

use super::common::{
    KEY_MONITOR_PASSWORD, KEY_MONITOR_USERNAME, VOLUME_CONFIG, VOLUME_KEY, VOLUME_RUN, VOLUME_TMP,
};
use super::services::exporter_port;
use crate::config;
use crate::pgpool::validate::Plan;

/// Seconds the preStop hook waits so that endpoints drain before pgpool gets SIGTERM.
pub const PRE_STOP_SLEEP_SECONDS: i32 = 5;

pub(super) fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

pub(super) fn resources(
    requests: &[(&str, &str)],
    limits: &[(&str, &str)],
) -> ResourceRequirements {
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

pub(super) fn default_exporter_resources() -> ResourceRequirements {
    resources(
        &[("cpu", "50m"), ("memory", "64Mi")],
        &[("memory", "128Mi")],
    )
}

pub(super) fn default_init_resources() -> ResourceRequirements {
    resources(&[("cpu", "50m"), ("memory", "32Mi")], &[("memory", "64Mi")])
}

/// The restricted container security context.
pub(super) fn restricted_security_context() -> SecurityContext {
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

pub(super) fn merge_security_context(
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

pub(super) fn merge_pod_security_context(
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

pub(super) fn find_override<'a>(
    list: &'a [ContainerOverride],
    name: &str,
) -> Option<&'a ContainerOverride> {
    list.iter().find(|c| c.name == name)
}

/// Adds a container override's env, mounts, resources and security context.
pub(super) fn apply_container_override(c: &mut Container, o: Option<&ContainerOverride>) {
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

pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

pub(super) fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
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

pub(super) fn exec(command: &[&str]) -> Option<ExecAction> {
    Some(ExecAction {
        command: Some(command.iter().map(|s| s.to_string()).collect()),
    })
}

pub(super) fn pgpool_container(
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
        // the binary itself is PID 1, so SIGTERM reaches pgpool (smart shutdown)
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
        // liveness: the pcp port, never the client port (a saturated pool must not restart)
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(names::PORT_PCP),
                ..TCPSocketAction::default()
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
                exec: exec(&["sleep", &PRE_STOP_SLEEP_SECONDS.to_string()]),
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

pub(super) fn init_container(plan: &Plan, overrides: Option<&PodSpecOverrides>) -> Container {
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

pub(super) fn exporter_container(
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
