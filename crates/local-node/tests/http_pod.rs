//! A pod running a small HTTP server as a real process (root only): bound, Ready through its
//! readiness probe, reachable through its Service's ClusterIP from the host, and removed on
//! delete after its preStop hook; the node's network is gone after it stops.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, HostPathVolumeSource, Lifecycle,
    LifecycleHandler, Pod, PodSecurityContext, PodSpec, Probe, SecretVolumeSource, SecurityContext,
    Service, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::*;

const IMAGES: &str = "images:\n  test/http:1:\n    mounts: {}\n";

fn sh(script: &str) -> Option<ExecAction> {
    Some(ExecAction {
        command: Some(vec!["sh".into(), "-c".into(), script.into()]),
    })
}

fn web_pod(shared: &str) -> Pod {
    // passes only inside the pod: its user, PID 1, the Secret volume and /etc/hosts
    let startup = "[ \"$(id -u)\" = 1000 ] && grep -q http.server /proc/1/cmdline \
                   && grep -qx hello /etc/web/greeting && grep -q 'web.default.svc' /etc/hosts \
                   && grep -Eq '^[0-9]+ [0-9]+ [0-9:]+ / / ro[, ]' /proc/self/mountinfo";
    Pod {
        metadata: testkit::fixtures::meta("default", "web-0"),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some("test/http:1".into()),
                command: Some(vec!["python3".into(), "-m".into(), "http.server".into()]),
                args: Some(vec!["8080".into(), "--directory".into(), "/etc/web".into()]),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..ContainerPort::default()
                }]),
                startup_probe: Some(Probe {
                    exec: sh(startup),
                    period_seconds: Some(1),
                    failure_threshold: Some(30),
                    ..Probe::default()
                }),
                readiness_probe: Some(Probe {
                    http_get: Some(HTTPGetAction {
                        port: IntOrString::String("http".into()),
                        path: Some("/greeting".into()),
                        ..HTTPGetAction::default()
                    }),
                    period_seconds: Some(1),
                    ..Probe::default()
                }),
                lifecycle: Some(Lifecycle {
                    pre_stop: Some(LifecycleHandler {
                        exec: sh("id -u > /shared/prestop"),
                        ..LifecycleHandler::default()
                    }),
                    ..Lifecycle::default()
                }),
                volume_mounts: Some(vec![
                    VolumeMount {
                        name: "greeting".into(),
                        mount_path: "/etc/web".into(),
                        ..VolumeMount::default()
                    },
                    VolumeMount {
                        name: "shared".into(),
                        mount_path: "/shared".into(),
                        ..VolumeMount::default()
                    },
                ]),
                security_context: Some(SecurityContext {
                    read_only_root_filesystem: Some(true),
                    allow_privilege_escalation: Some(false),
                    ..SecurityContext::default()
                }),
                ..Container::default()
            }],
            volumes: Some(vec![
                Volume {
                    name: "greeting".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some("greeting".into()),
                        default_mode: Some(0o400),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "shared".into(),
                    host_path: Some(HostPathVolumeSource {
                        path: shared.into(),
                        type_: None,
                    }),
                    ..Volume::default()
                },
            ]),
            security_context: Some(PodSecurityContext {
                run_as_user: Some(1000),
                fs_group: Some(1000),
                ..PodSecurityContext::default()
            }),
            // python as PID 1 has no SIGTERM handler: the grace period ends in SIGKILL
            termination_grace_period_seconds: Some(2),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(body)
}

#[tokio::test]
async fn http_pod_becomes_ready_serves_its_service_and_is_removed_after_prestop() {
    if !root_or_skip("http_pod") {
        return;
    }
    let server = testkit::TestServer::new();
    let client = server.client();
    let state = tempfile::tempdir().unwrap();
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        shared.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let node = node(client.clone(), "lth", 1, IMAGES, state.path()).await;

    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    secrets
        .create(
            &pp,
            &testkit::fixtures::secret("default", "greeting", [("greeting", "hello\n")]),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut svc = testkit::fixtures::service("default", "web", [("app", "web")], 80);
    svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].target_port =
        Some(IntOrString::Int(8080));
    let svc = services.create(&pp, &svc).await.unwrap();
    let cluster_ip: std::net::IpAddr = svc.spec.unwrap().cluster_ip.unwrap().parse().unwrap();
    let frontend = std::net::SocketAddr::new(cluster_ip, 80);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut pod = web_pod(&shared.path().to_string_lossy());
    pod.metadata.labels = Some(BTreeMap::from([("app".to_string(), "web".to_string())]));
    pods.create(&pp, &pod).await.unwrap();

    let ready_pod = wait_pod(
        &pods,
        "web-0",
        "web-0 Ready",
        Duration::from_secs(60),
        ready,
    )
    .await;
    let spec = ready_pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("local"));
    let status = ready_pod.status.as_ref().unwrap();
    let ip = status.pod_ip.clone().unwrap();
    assert!(ip.starts_with("10.250.1."), "{ip}");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let cs = &status.container_statuses.as_ref().unwrap()[0];
    assert!(cs.ready && cs.state.as_ref().unwrap().running.is_some());
    assert_eq!(cs.image_id, "local://test/http:1");

    let body = wait_for("the service answering", Duration::from_secs(10), || {
        http_get(frontend, "/greeting")
    })
    .await;
    assert!(body.starts_with("HTTP/1.0 200"), "{body}");
    assert!(body.ends_with("hello\n"), "{body}");

    let started = Instant::now();
    pods.delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("web-0 gone", Duration::from_secs(30), || async {
        pods.get_opt("web-0").await.unwrap().is_none().then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "SIGKILL came before the grace: {took:?}"
    );
    let prestop = std::fs::read_to_string(shared.path().join("prestop")).unwrap();
    assert_eq!(
        prestop.trim(),
        "1000",
        "the preStop hook ran as the pod's user"
    );
    wait_for(
        "the pod's network namespace gone",
        Duration::from_secs(10),
        || async { netns_with_prefix("lth").is_empty().then_some(()) },
    )
    .await;
    wait_for(
        "the service without endpoints",
        Duration::from_secs(10),
        || async {
            http_get(frontend, "/greeting")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;

    node.stop().await;
    assert!(!link_exists("lthbr"));
}
