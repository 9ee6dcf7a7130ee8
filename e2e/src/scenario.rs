//! What the scenarios under load share (`tests/update_under_load.rs`,
//! `tests/day2_operations.rs`): the catalog they apply, the backend credentials and the
//! Service address the load client uses, the pod-restart bound, and deleting what an earlier
//! run left.

use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource};
use pgpool_api::{AppBinding, PgpoolVersion, names};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::load::{LoadConfig, read_catalog};
use crate::wait;

/// The catalog file a scenario applies instead of `e2e/manifests/local/catalog.yaml`.
pub const CATALOG_ENV: &str = "E2E_LOAD_CATALOG";
/// `host:port` of the Pgpool as the load client reaches it, instead of the Service's ClusterIP.
pub const ADDR_ENV: &str = "E2E_PGPOOL_ADDR";
/// Set to `1` to run the scenarios under load.
pub const LOAD_ENV: &str = "E2E_LOAD";

/// `E2E_MAX_POD_RESTART_SECONDS`: the longest a successful request may take to replace one pod
/// (unset: no bound; `scripts/e2e-local.sh` sets it, a real cluster's image pulls vary).
pub fn max_pod_restart() -> anyhow::Result<Option<Duration>> {
    match std::env::var("E2E_MAX_POD_RESTART_SECONDS") {
        Ok(v) => Ok(Some(Duration::from_secs(v.parse().with_context(|| {
            format!("E2E_MAX_POD_RESTART_SECONDS={v} is not a number of seconds")
        })?))),
        Err(_) => Ok(None),
    }
}

/// Server-side applies every PgpoolVersion of the scenario's catalog file ([`CATALOG_ENV`] or
/// `e2e/manifests/local/catalog.yaml`) as `field_manager`, after checking that it holds each
/// of `needed`.
pub async fn apply_catalog(
    client: &kube::Client,
    needed: &[&str],
    field_manager: &str,
) -> anyhow::Result<()> {
    let path = std::env::var(CATALOG_ENV)
        .ok()
        .filter(|p| !p.trim().is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            crate::charts::workspace_root().join("e2e/manifests/local/catalog.yaml")
        });
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let versions = read_catalog(&text).with_context(|| format!("parsing {}", path.display()))?;
    for name in needed {
        ensure!(
            versions
                .iter()
                .any(|v| v.metadata.name.as_deref() == Some(name)),
            "{} has no PgpoolVersion {name}",
            path.display()
        );
    }
    let api: Api<PgpoolVersion> = Api::all(client.clone());
    let params = PatchParams::apply(field_manager).force();
    for v in &versions {
        let name = v.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(v))
            .await
            .with_context(|| format!("applying PgpoolVersion {name}"))?;
    }
    Ok(())
}

/// The AppBinding's user and password (from its Secret; never printed).
pub async fn backend_credentials(
    client: &kube::Client,
    ns: &str,
    binding: &str,
) -> anyhow::Result<(String, String)> {
    let binding = Api::<AppBinding>::namespaced(client.clone(), ns)
        .get(binding)
        .await
        .with_context(|| format!("AppBinding {ns}/{binding}: apply e2e/manifests/"))?;
    let secret_name = binding
        .spec
        .secret
        .as_ref()
        .map(|s| s.name.clone())
        .context("the AppBinding names no Secret")?;
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(&secret_name)
        .await
        .with_context(|| format!("reading Secret {secret_name}"))?;
    let key = |k: &str| -> anyhow::Result<String> {
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .with_context(|| format!("Secret {secret_name} has no key {k}"))?;
        String::from_utf8(data.0.clone())
            .with_context(|| format!("Secret {secret_name} key {k} is not UTF-8"))
    };
    Ok((key("username")?, key("password")?))
}

/// Where the load client reaches Pgpool `pgpool`: [`ADDR_ENV`] if set, else its primary
/// Service's ClusterIP and client port.
pub async fn load_address(
    client: &kube::Client,
    ns: &str,
    pgpool: &str,
) -> anyhow::Result<(String, u16)> {
    if let Some(addr) = std::env::var(ADDR_ENV)
        .ok()
        .filter(|a| !a.trim().is_empty())
    {
        return LoadConfig::split_addr(addr.trim());
    }
    let name = names::primary_service(pgpool);
    let service = Api::<Service>::namespaced(client.clone(), ns)
        .get(&name)
        .await
        .with_context(|| format!("reading Service {name}"))?;
    let ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .filter(|ip| !ip.is_empty() && ip != "None")
        .with_context(|| format!("Service {name} has no ClusterIP; set {ADDR_ENV}=host:port"))?;
    Ok((ip, u16::try_from(names::PORT_PRIMARY)?))
}

/// Deletes `name`; false when it did not exist.
pub async fn delete_if_exists<K>(api: &Api<K>, name: &str) -> anyhow::Result<bool>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e).with_context(|| format!("deleting {name}")),
    }
}

/// Deletes `name` if it exists and waits until it is gone.
pub async fn delete_and_wait<K>(api: &Api<K>, name: &str, timeout: Duration) -> anyhow::Result<()>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Serialize + Send + Sync + 'static,
{
    if delete_if_exists(api, name).await? {
        wait::until_gone(api, name, timeout).await?;
    }
    Ok(())
}
