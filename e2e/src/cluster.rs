//! Is there a cluster to test against? And the objects of the scenario, read from the
//! repository's `examples/`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kube::Client;
use serde::de::DeserializeOwned;

/// Set to `1` to run the e2e tests against the cluster in `KUBECONFIG`.
pub const E2E_ENV: &str = "E2E";
/// Set to `1` to have the tests mark pods Running/Ready themselves (a control plane
/// without nodes).
pub const SIMULATE_KUBELET_ENV: &str = "E2E_SIMULATE_KUBELET";
/// Namespace of the scenario; default `demo`, the examples' namespace.
pub const NAMESPACE_ENV: &str = "E2E_NAMESPACE";
/// Image of the client pods that run `psql`; default `postgres:16` (the backend's image,
/// so the node already has it).
pub const PSQL_IMAGE_ENV: &str = "E2E_PSQL_IMAGE";

/// How to run the e2e tests, printed when they skip.
pub const HOW_TO_RUN: &str = "run `make e2e` (kind cluster, both charts, a PostgreSQL), or set E2E=1 with KUBECONFIG pointing at a cluster where both operators run and e2e/manifests/ is applied";

/// How long the API server gets to answer the first request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A reachable cluster to run the scenario on.
#[derive(Clone)]
pub struct Cluster {
    /// Client for the cluster in `KUBECONFIG` (or in-cluster).
    pub client: Client,
    /// Namespace of the scenario (the Pgpool, the AppBinding, the client pods).
    pub namespace: String,
    /// Mark pods Running/Ready from the test, because no kubelet runs them.
    pub simulate_kubelet: bool,
    /// Image of the psql client pods.
    pub psql_image: String,
}

fn env_is_one(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim() == "1")
}

impl Cluster {
    /// The configured cluster, or `None` after printing one line that says why the test
    /// `test` is skipped and how to run it: `E2E` is not `1`, or no kubeconfig can be
    /// loaded, or the API server does not answer within 10 s.
    pub async fn connect_or_skip(test: &str) -> Option<Cluster> {
        if !env_is_one(E2E_ENV) {
            println!("{test}: skipped: E2E is not set to 1; {HOW_TO_RUN}");
            return None;
        }
        match Self::connect().await {
            Ok(cluster) => Some(cluster),
            Err(e) => {
                let cause = e.root_cause().to_string();
                let reason = if cause == e.to_string() {
                    cause
                } else {
                    format!("{e}: {cause}")
                };
                println!("{test}: skipped: no reachable cluster ({reason}); {HOW_TO_RUN}");
                None
            }
        }
    }

    async fn connect() -> anyhow::Result<Cluster> {
        let config = tokio::time::timeout(CONNECT_TIMEOUT, kube::Config::infer())
            .await
            .context("loading the kubeconfig took too long")?
            .context("no kubeconfig (KUBECONFIG, ~/.kube/config or in-cluster)")?;
        let client = Client::try_from(config).context("cannot build a client")?;
        let version = tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version())
            .await
            .map_err(|_| anyhow::anyhow!("the API server did not answer within 10 s"))?
            .context("the API server did not answer")?;
        let namespace = std::env::var(NAMESPACE_ENV)
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "demo".to_string());
        let psql_image = std::env::var(PSQL_IMAGE_ENV)
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "postgres:16".to_string());
        let simulate_kubelet = env_is_one(SIMULATE_KUBELET_ENV);
        println!(
            "e2e: cluster {}.{} (git {}), namespace {namespace}{}",
            version.major,
            version.minor,
            version.git_version,
            if simulate_kubelet {
                ", simulated kubelet"
            } else {
                ""
            }
        );
        Ok(Cluster {
            client,
            namespace,
            simulate_kubelet,
            psql_image,
        })
    }
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    crate::charts::workspace_root().join("examples")
}

/// Reads `examples/<file>` into `K`, moved into `namespace` when it is namespaced.
pub fn example<K: DeserializeOwned + kube::Resource>(
    file: &str,
    namespace: &str,
) -> anyhow::Result<K> {
    let path = examples_dir().join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut object: K =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if object.meta().namespace.is_some() {
        object.meta_mut().namespace = Some(namespace.to_string());
    }
    Ok(object)
}
