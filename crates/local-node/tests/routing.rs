//! Service routing with real pods (root only): new connections alternate between the Ready
//! pods; once a pod is terminating, new connections go to the others while a connection
//! already established to it keeps working until its process ends.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, Lifecycle, LifecycleHandler, Pod, PodSpec, Probe, Service,
    TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use common::*;

const SERVER: &str = "
import socket, socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        for _ in self.rfile:
            self.wfile.write(socket.gethostname().encode() + b'\\n')
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(('', 7000), H).serve_forever()
";

fn echo_pod(name: &str) -> Pod {
    let mut meta = testkit::fixtures::meta("default", name);
    meta.labels = Some([("app".to_string(), "echo".to_string())].into());
    Pod {
        metadata: meta,
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "echo".into(),
                image: Some("test/echo:1".into()),
                command: Some(vec!["python3".into(), "-c".into(), SERVER.into()]),
                readiness_probe: Some(Probe {
                    tcp_socket: Some(TCPSocketAction {
                        port: IntOrString::Int(7000),
                        ..TCPSocketAction::default()
                    }),
                    period_seconds: Some(1),
                    ..Probe::default()
                }),
                lifecycle: Some(Lifecycle {
                    pre_stop: Some(LifecycleHandler {
                        exec: Some(ExecAction {
                            command: Some(vec!["sleep".into(), "4".into()]),
                        }),
                        ..LifecycleHandler::default()
                    }),
                    ..Lifecycle::default()
                }),
                ..Container::default()
            }],
            termination_grace_period_seconds: Some(6),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// A connection through the Service: sends a line, reads the answering pod's name.
struct Conn(BufReader<TcpStream>);

impl Conn {
    async fn open(addr: SocketAddr) -> Option<Conn> {
        let s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        Some(Conn(BufReader::new(s)))
    }

    async fn ask(&mut self) -> Option<String> {
        self.0.get_mut().write_all(b"who\n").await.ok()?;
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(2), self.0.read_line(&mut line))
            .await
            .ok()?
            .ok()?;
        (n > 0).then(|| line.trim().to_string())
    }
}

async fn ask_new(addr: SocketAddr) -> Option<String> {
    Conn::open(addr).await?.ask().await
}

#[tokio::test]
async fn new_connections_round_robin_and_leave_a_terminating_pod_but_old_ones_stay() {
    if !root_or_skip("routing") {
        return;
    }
    let server = testkit::TestServer::new();
    let client = server.client();
    let state = tempfile::tempdir().unwrap();
    let node = node(
        client.clone(),
        "ltr",
        4,
        "images:\n  test/echo:1: {}\n",
        state.path(),
    )
    .await;
    let pp = PostParams::default();
    let svc = testkit::fixtures::service("default", "echo", [("app", "echo")], 7000);
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .create(&pp, &svc)
        .await
        .unwrap();
    let ip = svc.spec.unwrap().cluster_ip.unwrap().parse().unwrap();
    let frontend = SocketAddr::new(ip, 7000);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["echo-a", "echo-b"] {
        pods.create(&pp, &echo_pod(name)).await.unwrap();
    }
    for name in ["echo-a", "echo-b"] {
        wait_pod(
            &pods,
            name,
            "echo pods Ready",
            Duration::from_secs(30),
            ready,
        )
        .await;
    }

    // once both are published, consecutive new connections alternate between them
    let both = wait_for("both pods answering", Duration::from_secs(10), || async {
        let mut seen = BTreeSet::new();
        for _ in 0..4 {
            seen.insert(ask_new(frontend).await?);
        }
        (seen.len() == 2).then_some(seen)
    })
    .await;
    assert_eq!(
        both,
        BTreeSet::from(["echo-a".to_string(), "echo-b".to_string()])
    );

    // an established connection to echo-a
    let mut kept = loop {
        let mut c = Conn::open(frontend).await.unwrap();
        if c.ask().await.as_deref() == Some("echo-a") {
            break c;
        }
    };
    pods.delete("echo-a", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "new connections only to echo-b",
        Duration::from_secs(3),
        || async {
            for _ in 0..6 {
                if ask_new(frontend).await.as_deref() != Some("echo-b") {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    // still within echo-a's preStop: its process runs and the old connection is not cut
    assert_eq!(kept.ask().await.as_deref(), Some("echo-a"));

    wait_for("echo-a removed", Duration::from_secs(20), || async {
        pods.get_opt("echo-a")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        kept.ask().await,
        None,
        "the connection ends with its process"
    );
    node.stop().await;
    assert!(netns_with_prefix("ltr").is_empty());
}
