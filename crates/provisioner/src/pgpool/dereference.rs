//! Dereference: read what a Pgpool points at (catalog version, AppBinding, its Secret, the
//! standby Service, user Secrets) and the children that exist. Reads only; a missing object
//! is `None`, not an error.

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use pgpool_api::{AppBinding, PetSet, Pgpool, PgpoolVersion, names};

use super::validate::{appbinding_namespace, auth_secret_name, user_config_secret_name};

/// The ServiceMonitor kind of the Prometheus operator.
pub fn service_monitor_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor")
}

/// The children of a Pgpool as they exist.
#[derive(Debug, Clone, Default)]
pub struct Children {
    /// The auth Secret (default `<name>-auth`, or `spec.authSecret.name`).
    pub auth_secret: Option<Secret>,
    /// `<name>-config`.
    pub config_secret: Option<Secret>,
    /// `<name>`.
    pub primary_service: Option<Service>,
    /// `<name>-pods`.
    pub pods_service: Option<Service>,
    /// `<name>-stats`.
    pub stats_service: Option<Service>,
    /// `<name>`.
    pub petset: Option<PetSet>,
    /// `<name>`.
    pub pdb: Option<PodDisruptionBudget>,
    /// `<name>-stats`, when the ServiceMonitor CRD exists.
    pub service_monitor: Option<DynamicObject>,
}

/// An AppBinding named in `spec.configuration.backends[].group`.
#[derive(Debug, Clone)]
pub struct GroupBackend {
    /// The AppBinding's name (in the Pgpool's namespace).
    pub name: String,
    /// The AppBinding, when it exists.
    pub appbinding: Option<AppBinding>,
    /// Whether `<service>-standby` exists next to its Service.
    pub standby_exists: bool,
}

/// Everything read for one reconcile.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The catalog entry named by `spec.version`.
    pub version: Option<PgpoolVersion>,
    /// The AppBinding of `spec.postgresRef`.
    pub appbinding: Option<AppBinding>,
    /// The AppBinding's Secret.
    pub backend_secret: Option<Secret>,
    /// Whether `<service>-standby` exists next to the AppBinding's Service.
    pub standby_exists: bool,
    /// AppBindings named as backend groups.
    pub group_backends: Vec<GroupBackend>,
    /// The user configuration Secret.
    pub user_config_secret: Option<Secret>,
    /// The ServiceMonitor API, when its CRD is installed and ServiceMonitors may be read.
    pub service_monitor_api: Option<ApiResource>,
    /// The CRD is installed but reading ServiceMonitors is forbidden (RBAC).
    pub service_monitor_forbidden: bool,
    /// Existing children.
    pub children: Children,
}

async fn standby_exists(client: &Client, ab: &AppBinding) -> kube::Result<bool> {
    let Some(svc) = &ab.spec.client_config.service else {
        return Ok(false);
    };
    let ns = ab.namespace().unwrap_or_default();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    Ok(services
        .get_opt(&names::standby_service(&svc.name))
        .await?
        .is_some())
}

/// Looks up the ServiceMonitor API; `None` when the CRD is not installed.
pub async fn service_monitor_api(client: &Client) -> kube::Result<Option<ApiResource>> {
    match kube::discovery::pinned_kind(client, &service_monitor_gvk()).await {
        Ok((resource, _)) => Ok(Some(resource)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The ServiceMonitor API when its CRD is installed and ServiceMonitors in the Pgpool's
/// namespace may be read; the flag is true when the CRD is there but reading is forbidden
/// (the chart grants it only with `rbac.serviceMonitors`).
pub async fn usable_service_monitor_api(
    client: &Client,
    pgpool: &Pgpool,
) -> kube::Result<(Option<ApiResource>, bool)> {
    let Some(ar) = service_monitor_api(client).await? else {
        return Ok((None, false));
    };
    let ns = pgpool.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    match api.get_opt(&names::stats_service(&pgpool.name_any())).await {
        Ok(_) => Ok((Some(ar), false)),
        Err(kube::Error::Api(e)) if e.code == 403 => Ok((None, true)),
        Err(e) => Err(e),
    }
}

/// Reads the existing children of `pgpool` (and the ServiceMonitor when `sm_api` is given).
pub async fn children(
    client: &Client,
    pgpool: &Pgpool,
    sm_api: Option<&ApiResource>,
) -> kube::Result<Children> {
    let name = pgpool.name_any();
    let ns = pgpool.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let petsets: Api<PetSet> = Api::namespaced(client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let service_monitor = match sm_api {
        Some(ar) => {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, ar);
            api.get_opt(&names::stats_service(&name)).await?
        }
        None => None,
    };
    Ok(Children {
        auth_secret: secrets.get_opt(&auth_secret_name(pgpool)).await?,
        config_secret: secrets.get_opt(&names::config_secret(&name)).await?,
        primary_service: services.get_opt(&names::primary_service(&name)).await?,
        pods_service: services.get_opt(&names::pods_service(&name)).await?,
        stats_service: services.get_opt(&names::stats_service(&name)).await?,
        petset: petsets.get_opt(&names::petset(&name)).await?,
        pdb: pdbs.get_opt(&names::pdb(&name)).await?,
        service_monitor,
    })
}

/// Reads everything the Pgpool points at and its children. Stops early (leaving later fields
/// empty) when the version or AppBinding is missing: validation reports that first.
pub async fn dereference(client: &Client, pgpool: &Pgpool) -> kube::Result<Observed> {
    let ns = pgpool.namespace().unwrap_or_default();
    let mut observed = Observed::default();

    let versions: Api<PgpoolVersion> = Api::all(client.clone());
    observed.version = versions.get_opt(&pgpool.spec.version).await?;

    let ab_ns = appbinding_namespace(pgpool);
    let appbindings: Api<AppBinding> = Api::namespaced(client.clone(), &ab_ns);
    observed.appbinding = appbindings.get_opt(&pgpool.spec.postgres_ref.name).await?;
    if let Some(ab) = &observed.appbinding {
        if let Some(secret) = &ab.spec.secret {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &ab_ns);
            observed.backend_secret = secrets.get_opt(&secret.name).await?;
        }
        observed.standby_exists = standby_exists(client, ab).await?;
    }

    let groups = pgpool
        .spec
        .configuration
        .iter()
        .flat_map(|c| c.backends.iter())
        .filter_map(|b| b.group.clone());
    let local_appbindings: Api<AppBinding> = Api::namespaced(client.clone(), &ns);
    for group in groups {
        let appbinding = local_appbindings.get_opt(&group).await?;
        let standby = match &appbinding {
            Some(ab) => standby_exists(client, ab).await?,
            None => false,
        };
        observed.group_backends.push(GroupBackend {
            name: group,
            appbinding,
            standby_exists: standby,
        });
    }

    if let Some(name) = user_config_secret_name(&pgpool.spec) {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        observed.user_config_secret = secrets.get_opt(&name).await?;
    }

    // looked up even without spec.monitor, so that a ServiceMonitor left from an earlier
    // spec is found and removed
    (
        observed.service_monitor_api,
        observed.service_monitor_forbidden,
    ) = usable_service_monitor_api(client, pgpool).await?;
    observed.children = children(client, pgpool, observed.service_monitor_api.as_ref()).await?;
    Ok(observed)
}
