//! Shared pieces of the root-only tests: a node on its own bridge and subnet, waits.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use local_node::{ImageMap, NetConfig, NodeConfig, NodeHandle};

/// Whether the namespace tests can run; prints one skip line when not.
pub fn root_or_skip(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        say(&format!(
            "skipping {test}: needs root (namespaces, mounts, links)"
        ));
    }
    root
}

/// Prints a line past the test harness's output capture, so a plain `cargo test` shows it.
pub fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A node named `local` on bridge `<tag>br`, subnet 10.250.<n>.0/24, with an image map
/// given as YAML text (host paths absolute).
pub async fn node(
    client: kube::Client,
    tag: &str,
    n: u8,
    images: &str,
    state: &std::path::Path,
) -> NodeHandle {
    let images = ImageMap::parse(images, std::path::Path::new("/")).expect("image map");
    node_with(client, tag, n, images, state).await
}

/// [`node`] with a parsed image map.
pub async fn node_with(
    client: kube::Client,
    tag: &str,
    n: u8,
    images: ImageMap,
    state: &std::path::Path,
) -> NodeHandle {
    let config = NodeConfig {
        node_name: "local".into(),
        state_dir: state.to_path_buf(),
        net: NetConfig {
            bridge: format!("{tag}br"),
            prefix: tag.into(),
            subnet: std::net::Ipv4Addr::new(10, 250, n, 0),
            prefix_len: 24,
        },
        propagation_delay: Duration::from_millis(300),
        initial_backoff: Duration::from_secs(1),
    };
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "local_node=info".into()),
        )
        .try_init();
    local_node::start(client, config, images)
        .await
        .expect("node")
}

/// Polls `check` every 100 ms until it returns `Some`, failing after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod once `pred` holds for it, from a watch (its last status is printed on a timeout).
pub async fn wait_pod(
    api: &Api<Pod>,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Pod) -> bool,
) -> Pod {
    let cond = kube::runtime::wait::await_condition(api.clone(), name, move |p: Option<&Pod>| {
        p.is_some_and(&pred)
    });
    match tokio::time::timeout(timeout, cond).await {
        Ok(Ok(Some(p))) => p,
        Ok(other) => panic!("watching pod {name} for {what}: {other:?}"),
        Err(_) => {
            let last = api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|p| p.status);
            panic!(
                "timed out after {timeout:?} waiting for {what}; last status: {}",
                serde_json::to_string_pretty(&last).unwrap_or_default()
            )
        }
    }
}

/// Whether a pod's Ready condition is True.
pub fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Network namespaces whose names start with `<prefix>-`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

/// Whether a link exists.
pub fn link_exists(name: &str) -> bool {
    std::process::Command::new("ip")
        .args(["link", "show", name])
        .output()
        .is_ok_and(|o| o.status.success())
}
