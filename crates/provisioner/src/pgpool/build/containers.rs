//! The containers of the pod: pgpool (with its probes and preStop hook), the init container
//! that prepares the pool key, and the exporter sidecar; resources and security contexts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, Lifecycle,
    LifecycleHandler, PodSecurityContext, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use pgpool_api::pgpool::{ContainerOverride, PodSpecOverrides};
use pgpool_api::{Pgpool, names};

use super::common::{
    KEY_MONITOR_PASSWORD, KEY_MONITOR_USERNAME, VOLUME_CONFIG, VOLUME_KEY, VOLUME_RUN, VOLUME_TMP,
};
use super::services::exporter_port;
use crate::pgpool::validate::Plan;
use pgpool_config as config;

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
        // liveness: the pcp port, never the client port (a saturated pool must not restart)
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

pub(super) fn init_container(plan: &Plan, overrides: Option<&PodSpecOverrides>) -> Container {
    let mut script = format!(
        "cp {src}/{key} {dst} && chmod 0600 {dst}",
        src = config::CONFIG_DIR,
        key = config::KEY_POOL_KEY,
        dst = config::KEY_FILE
    );
    let tls_step = super::tls_secrets::init_tls_step(plan);
    if let Some(step) = &tls_step {
        script.push_str(" && ");
        script.push_str(step);
    }
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
    if tls_step.is_some()
        && let Some(mounts) = c.volume_mounts.as_mut()
    {
        mounts.push(mount(
            super::tls_secrets::VOLUME_TLS,
            super::tls_secrets::TLS_SOURCE_DIR,
            true,
        ));
    }
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
                    "localhost:{}/postgres?{}",
                    names::PORT_PRIMARY,
                    super::tls_secrets::exporter_ssl_params(plan)
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
        volume_mounts: super::tls_secrets::serving(plan).map(|_| {
            vec![mount(
                super::tls_secrets::VOLUME_TLS_CLIENT,
                super::tls_secrets::TLS_CLIENT_DIR,
                true,
            )]
        }),
        ..Container::default()
    };
    apply_container_override(
        &mut c,
        overrides.and_then(|o| find_override(&o.containers, names::CONTAINER_EXPORTER)),
    );
    c
}
