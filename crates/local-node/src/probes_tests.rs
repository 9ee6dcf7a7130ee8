use std::sync::Arc;

use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, HTTPGetAction, TCPSocketAction};
use tokio::net::TcpListener;

use super::*;

fn spec(action: Action, success: u32, failure: u32) -> ProbeSpec {
    ProbeSpec {
        action,
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        success_threshold: success,
        failure_threshold: failure,
    }
}

/// A local HTTP server answering every request with `status`.
async fn http_server(status: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn tcp_succeeds_on_a_listener_and_fails_on_a_closed_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let t = Duration::from_secs(1);
    assert!(check(&Action::Tcp(listener.local_addr().unwrap()), &HostExec, t).await);
    assert!(!check(&Action::Tcp(closed_port()), &HostExec, t).await);
}

#[tokio::test]
async fn http_counts_2xx_and_3xx_as_success_only() {
    let t = Duration::from_secs(1);
    for (status, ok) in [(200, true), (302, true), (404, false), (503, false)] {
        let addr = http_server(status).await;
        let action = Action::Http {
            addr,
            path: "/healthz".into(),
        };
        assert_eq!(check(&action, &HostExec, t).await, ok, "status {status}");
    }
    let action = Action::Http {
        addr: closed_port(),
        path: "/".into(),
    };
    assert!(!check(&action, &HostExec, t).await);
}

#[tokio::test]
async fn exec_follows_the_exit_code_and_the_timeout() {
    let t = Duration::from_secs(1);
    let cmd = |c: &[&str]| Action::Exec(c.iter().map(|s| s.to_string()).collect());
    assert!(check(&cmd(&["true"]), &HostExec, t).await);
    assert!(!check(&cmd(&["false"]), &HostExec, t).await);
    assert!(!check(&cmd(&["/nonexistent/binary"]), &HostExec, t).await);
    let started = std::time::Instant::now();
    assert!(!check(&cmd(&["sleep", "30"]), &HostExec, t).await);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn tracker_flips_only_at_the_thresholds() {
    let mut t = Tracker::new(&spec(Action::Exec(vec![]), 2, 3), false);
    assert_eq!(t.record(true), None);
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(true), None);
    assert_eq!(t.record(true), Some(true));
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(true), None);
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(false), Some(false));
    assert!(!t.state());
}

#[test]
fn from_probe_resolves_named_ports_the_pod_ip_and_defaults() {
    let container = Container {
        name: "c".into(),
        ports: Some(vec![ContainerPort {
            name: Some("web".into()),
            container_port: 8080,
            ..ContainerPort::default()
        }]),
        ..Container::default()
    };
    let ip: IpAddr = "10.244.0.5".parse().unwrap();
    let http = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::String("web".into()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    };
    let s = ProbeSpec::from_probe(&http, &container, ip).unwrap();
    assert_eq!(
        s.action,
        Action::Http {
            addr: "10.244.0.5:8080".parse().unwrap(),
            path: "/".into()
        }
    );
    assert_eq!(
        (
            s.period,
            s.timeout,
            s.success_threshold,
            s.failure_threshold
        ),
        (Duration::from_secs(10), Duration::from_secs(1), 1, 3)
    );
    let tcp = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(9595),
            ..TCPSocketAction::default()
        }),
        initial_delay_seconds: Some(10),
        ..Probe::default()
    };
    let s = ProbeSpec::from_probe(&tcp, &container, ip).unwrap();
    assert_eq!(s.action, Action::Tcp("10.244.0.5:9595".parse().unwrap()));
    assert_eq!(s.initial_delay, Duration::from_secs(10));
    let exec = Probe {
        exec: Some(ExecAction {
            command: Some(vec!["true".into()]),
        }),
        ..Probe::default()
    };
    assert_eq!(
        ProbeSpec::from_probe(&exec, &container, ip).unwrap().action,
        Action::Exec(vec!["true".into()])
    );
    let unknown = IntOrString::String("nope".into());
    let bad = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: unknown,
            ..TCPSocketAction::default()
        }),
        ..Probe::default()
    };
    assert_eq!(ProbeSpec::from_probe(&bad, &container, ip), None);
}

#[tokio::test]
async fn run_loop_reports_ready_after_the_initial_delay_and_stops_when_dropped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut s = spec(Action::Tcp(listener.local_addr().unwrap()), 1, 1);
    s.initial_delay = Duration::from_millis(300);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = std::time::Instant::now();
    let task = tokio::spawn(run_loop(s, Arc::new(HostExec), false, "ready", tx));
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap();
    assert_eq!(got, Some(("ready", true)));
    assert!(started.elapsed() >= Duration::from_millis(300));
    drop(listener);
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap();
    assert_eq!(got, Some(("ready", false)));
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
