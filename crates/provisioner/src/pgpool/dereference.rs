//! Dereference: read what a Pgpool points at (catalog version, AppBinding, its Secret, the
//! standby Service, user Secrets) and the children that exist. Reads only; a missing object
//! is `None`, not an error. What the watch caches hold is read from them; the children and
//! the Secrets' contents come from the API server when the metadata index says they exist
//! (and, for Secrets the Pgpool does not own, changed).

use operator_kit::api::{is_forbidden, is_not_found};
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use pgpool_api::{AppBinding, PetSet, Pgpool, PgpoolVersion, names};

use super::index::{Kind, KindIndex, MetaIndex, rv_hash};

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
    /// TLS Secrets, issuer and Certificates.
    pub tls: crate::pgpool::tls::observe::TlsObserved,
}

/// The children of a Pgpool as (kind, name), the ServiceMonitor only when `service_monitor`.
pub fn child_slots(pgpool: &Pgpool, service_monitor: bool) -> Vec<(Kind, String)> {
    let mut slots = vec![
        (Kind::Secret, pgpool.auth_secret_name()),
        (Kind::Secret, pgpool.config_secret_name()),
        (Kind::Service, pgpool.primary_service_name()),
        (Kind::Service, pgpool.pods_service_name()),
        (Kind::Service, pgpool.stats_service_name()),
        (Kind::PetSet, pgpool.petset_name()),
        (Kind::Pdb, pgpool.pdb_name()),
    ];
    if service_monitor {
        slots.push((Kind::ServiceMonitor, pgpool.stats_service_name()));
    }
    for name in crate::pgpool::tls::names::secret_names(pgpool) {
        slots.push((Kind::Secret, name));
    }
    slots
}

/// Contents of Secrets the Pgpools point at but do not own (an AppBinding's Secret, a user
/// configuration Secret), kept by resourceVersion: read again only when the metadata index
/// shows another version (or does not show the Secret at all).
#[derive(Debug, Default)]
pub struct SecretCache {
    entries: Mutex<SecretsByName>,
}

/// (namespace, name) -> (hash of the resourceVersion, Secret).
type SecretsByName = HashMap<(String, String), (u64, Arc<Secret>)>;

impl SecretCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, SecretsByName> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Secret `ns`/`name`, from the cache when `index` shows the cached version.
    pub async fn get(
        &self,
        client: &Client,
        index: &KindIndex,
        ns: &str,
        name: &str,
    ) -> kube::Result<Option<Arc<Secret>>> {
        let key = (ns.to_string(), name.to_string());
        if let Some(record) = index.get(ns, name)
            && let Some((rv, secret)) = self.entries().get(&key)
            && *rv == record.resource_version
        {
            return Ok(Some(secret.clone()));
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        match secrets.get_opt(name).await? {
            Some(secret) => {
                let secret = Arc::new(secret);
                let rv = rv_hash(secret.metadata.resource_version.as_deref());
                self.entries().insert(key, (rv, secret.clone()));
                Ok(Some(secret))
            }
            None => {
                self.entries().remove(&key);
                Ok(None)
            }
        }
    }

    /// Forgets `ns`/`name` (deleted).
    pub fn evict(&self, ns: &str, name: &str) {
        self.entries().remove(&(ns.to_string(), name.to_string()));
    }

    /// Number of cached Secrets.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether none is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ServiceMonitor API from discovery, looked up at most once per `ttl` (the resync
/// interval: a CRD installed later is found by the next resync).
#[derive(Debug)]
pub struct ServiceMonitorDiscovery {
    ttl: Duration,
    last: Mutex<Option<(Instant, Option<ApiResource>)>>,
}

impl ServiceMonitorDiscovery {
    /// Lookups reused for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            last: Mutex::new(None),
        }
    }

    /// The ServiceMonitor API; `None` when the CRD is not installed.
    pub async fn api(&self, client: &Client) -> kube::Result<Option<ApiResource>> {
        if let Some((at, api)) = self.last.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(api.clone());
        }
        let api = service_monitor_api(client).await?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), api.clone()));
        Ok(api)
    }

    /// The last lookup's answer, without asking again.
    pub fn cached(&self) -> Option<Option<ApiResource>> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(_, api)| api.clone())
    }
}

/// Looks up the ServiceMonitor API; `None` when the CRD is not installed.
pub async fn service_monitor_api(client: &Client) -> kube::Result<Option<ApiResource>> {
    match kube::discovery::pinned_kind(client, &service_monitor_gvk()).await {
        Ok((resource, _)) => Ok(Some(resource)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The ServiceMonitor of a Pgpool, when `api` is given: `(usable api, forbidden, object)`.
/// Reading it is forbidden without `rbac.serviceMonitors` in the chart: then no API.
pub async fn read_service_monitor(
    client: &Client,
    pgpool: &Pgpool,
    api: Option<ApiResource>,
) -> kube::Result<(Option<ApiResource>, bool, Option<DynamicObject>)> {
    let Some(ar) = api else {
        return Ok((None, false, None));
    };
    let ns = pgpool.namespace().unwrap_or_default();
    let sms: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    match sms.get_opt(&pgpool.stats_service_name()).await {
        Ok(sm) => Ok((Some(ar), false, sm)),
        Err(e) if is_forbidden(&e) => Ok((None, true, None)),
        Err(e) => Err(e),
    }
}

/// Where [`dereference`] and [`children`] read from.
pub struct Sources<'a> {
    /// API client (for what the caches do not hold).
    pub client: &'a Client,
    /// Catalog entries.
    pub versions: &'a Store<PgpoolVersion>,
    /// AppBindings.
    pub appbindings: &'a Store<AppBinding>,
    /// Metadata of Secrets, Services, PetSets and PDBs.
    pub index: &'a MetaIndex,
    /// Contents of Secrets the Pgpools point at.
    pub secrets: &'a SecretCache,
    /// The ServiceMonitor API.
    pub discovery: &'a ServiceMonitorDiscovery,
    /// The namespace the caches cover; `None`: all.
    pub namespace: Option<&'a str>,
}

impl Sources<'_> {
    /// Whether the caches cover namespace `ns`.
    fn covers(&self, ns: &str) -> bool {
        self.namespace.is_none_or(|scope| scope == ns)
    }
}

/// Where the objects a Pgpool points at are found: the controller's caches and API server
/// ([`Sources`]), or the files given to `pgpool-provisioner render`. A missing object is
/// `None`, not an error.
pub trait Lookup {
    /// The catalog entry `name`.
    fn version(&self, name: &str) -> Option<PgpoolVersion>;
    /// AppBinding `ns`/`name`.
    fn appbinding(
        &self,
        ns: &str,
        name: &str,
    ) -> impl Future<Output = kube::Result<Option<AppBinding>>> + Send;
    /// Secret `ns`/`name` (with its contents).
    fn secret(
        &self,
        ns: &str,
        name: &str,
    ) -> impl Future<Output = kube::Result<Option<Secret>>> + Send;
    /// Whether Service `ns`/`name` exists.
    fn service_exists(
        &self,
        ns: &str,
        name: &str,
    ) -> impl Future<Output = kube::Result<bool>> + Send;
}

impl Lookup for Sources<'_> {
    fn version(&self, name: &str) -> Option<PgpoolVersion> {
        self.versions
            .get(&ObjectRef::new(name))
            .map(|v| (*v).clone())
    }

    /// From the cache, or read when it lies outside the namespace the caches cover.
    async fn appbinding(&self, ns: &str, name: &str) -> kube::Result<Option<AppBinding>> {
        if !self.covers(ns) {
            return Api::<AppBinding>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await;
        }
        Ok(self
            .appbindings
            .get(&ObjectRef::new(name).within(ns))
            .map(|ab| (*ab).clone()))
    }

    /// From the [`SecretCache`] (read again when the index shows another version).
    async fn secret(&self, ns: &str, name: &str) -> kube::Result<Option<Secret>> {
        Ok(self
            .secrets
            .get(self.client, &self.index.secrets, ns, name)
            .await?
            .map(|s| (*s).clone()))
    }

    /// From the index, or read when it lies outside the namespace the caches cover.
    async fn service_exists(&self, ns: &str, name: &str) -> kube::Result<bool> {
        if !self.covers(ns) {
            return Ok(Api::<Service>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await?
                .is_some());
        }
        Ok(self.index.services.contains(ns, name))
    }
}

/// Whether the standby Service of `ab` (`<service>-standby`) exists.
async fn standby_exists(lookup: &impl Lookup, ab: &AppBinding) -> kube::Result<bool> {
    let Some(svc) = &ab.spec.client_config.service else {
        return Ok(false);
    };
    let ns = ab.namespace().unwrap_or_default();
    lookup
        .service_exists(&ns, &names::standby_service(&svc.name))
        .await
}

/// Reads the existing children of `pgpool`: those the index (or `known`: the last reconcile
/// left it there) says exist are read from the API server, the rest are absent. The
/// ServiceMonitor is passed in (see [`read_service_monitor`]).
pub async fn children(
    src: &Sources<'_>,
    pgpool: &Pgpool,
    known: impl Fn(Kind, &str) -> bool,
    service_monitor: Option<DynamicObject>,
) -> kube::Result<Children> {
    let client = src.client;
    let ns = pgpool.namespace().unwrap_or_default();
    let exists = |kind: Kind, child: &str| {
        known(kind, child)
            || src
                .index
                .of(kind)
                .is_some_and(|index| index.contains(&ns, child))
    };
    async fn read<K>(api: Api<K>, name: String, exists: bool) -> kube::Result<Option<K>>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        if exists {
            api.get_opt(&name).await
        } else {
            Ok(None)
        }
    }
    let secrets = || Api::<Secret>::namespaced(client.clone(), &ns);
    let services = || Api::<Service>::namespaced(client.clone(), &ns);
    let (auth, config) = (pgpool.auth_secret_name(), pgpool.config_secret_name());
    let (primary, pods, stats) = (
        pgpool.primary_service_name(),
        pgpool.pods_service_name(),
        pgpool.stats_service_name(),
    );
    let (petset, pdb) = (pgpool.petset_name(), pgpool.pdb_name());
    Ok(Children {
        auth_secret: read(secrets(), auth.clone(), exists(Kind::Secret, &auth)).await?,
        config_secret: read(secrets(), config.clone(), exists(Kind::Secret, &config)).await?,
        primary_service: read(services(), primary.clone(), exists(Kind::Service, &primary)).await?,
        pods_service: read(services(), pods.clone(), exists(Kind::Service, &pods)).await?,
        stats_service: read(services(), stats.clone(), exists(Kind::Service, &stats)).await?,
        petset: read(
            Api::<PetSet>::namespaced(client.clone(), &ns),
            petset.clone(),
            exists(Kind::PetSet, &petset),
        )
        .await?,
        pdb: read(
            Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
            pdb.clone(),
            exists(Kind::Pdb, &pdb),
        )
        .await?,
        service_monitor,
    })
}

/// Reads what `pgpool` points at through `lookup`: the catalog entry, the AppBinding, its
/// Secret and standby Service, the backend groups' AppBindings and the user configuration
/// Secret (the children and the ServiceMonitor API are left empty). Stops early (leaving
/// later fields empty) when the AppBinding is missing: validation reports that first.
pub async fn references(lookup: &impl Lookup, pgpool: &Pgpool) -> kube::Result<Observed> {
    let ns = pgpool.namespace().unwrap_or_default();
    let mut observed = Observed {
        version: lookup.version(&pgpool.spec.version),
        ..Observed::default()
    };

    let ab_ns = pgpool.appbinding_namespace();
    observed.appbinding = lookup
        .appbinding(&ab_ns, &pgpool.spec.postgres_ref.name)
        .await?;
    if let Some(ab) = &observed.appbinding {
        if let Some(secret) = &ab.spec.secret {
            observed.backend_secret = lookup.secret(&ab_ns, &secret.name).await?;
        }
        observed.standby_exists = standby_exists(lookup, ab).await?;
    }

    let groups = pgpool
        .spec
        .configuration
        .iter()
        .flat_map(|c| c.backends.iter())
        .filter_map(|b| b.group.clone());
    for group in groups {
        let appbinding = lookup.appbinding(&ns, &group).await?;
        let standby = match &appbinding {
            Some(ab) => standby_exists(lookup, ab).await?,
            None => false,
        };
        observed.group_backends.push(GroupBackend {
            name: group,
            appbinding,
            standby_exists: standby,
        });
    }

    if let Some(name) = pgpool.spec.user_config_secret_name() {
        observed.user_config_secret = lookup.secret(&ns, &name).await?;
    }
    Ok(observed)
}

/// Reads everything the Pgpool points at (see [`references`]; from the caches) and its
/// children (see [`children`]).
pub async fn dereference(
    src: &Sources<'_>,
    pgpool: &Pgpool,
    known: impl Fn(Kind, &str) -> bool,
) -> kube::Result<Observed> {
    let mut observed = references(src, pgpool).await?;
    // looked up even without spec.monitor, so that a ServiceMonitor left from an earlier
    // spec is found and removed
    let api = src.discovery.api(src.client).await?;
    let (api, forbidden, service_monitor) = read_service_monitor(src.client, pgpool, api).await?;
    observed.service_monitor_api = api;
    observed.service_monitor_forbidden = forbidden;
    observed.children = children(src, pgpool, known, service_monitor).await?;
    observed.tls = crate::pgpool::tls::observe::read(src.client, pgpool).await?;
    Ok(observed)
}

/// Counts reads of objects outside the caches' namespace (see [`dependencies`]).
static UNWATCHED: AtomicU64 = AtomicU64::new(0);

/// A hash of everything outside its children that a reconcile of `pgpool` depends on, from
/// the caches: the Pgpool's spec (generation), the catalog entry (and, for a deprecated one,
/// whether the Pgpool was provisioned already), the
/// AppBindings, their Secrets and standby Services, the user configuration Secret and whether
/// ServiceMonitors can be made. An AppBinding outside the namespace the caches cover is not
/// watched: a Pgpool that points at one gets a different hash every time (a full reconcile,
/// which reads it).
pub fn dependencies(src: &Sources<'_>, pgpool: &Pgpool) -> u64 {
    let mut h = DefaultHasher::new();
    let ns = pgpool.namespace().unwrap_or_default();
    (pgpool.uid(), pgpool.metadata.generation).hash(&mut h);
    let version = src.versions.get(&ObjectRef::new(&pgpool.spec.version));
    version.as_ref().map(|v| v.resource_version()).hash(&mut h);
    // a deprecated version is refused only to Pgpools that were never provisioned
    version
        .is_some_and(|v| v.spec.is_deprecated() && !pgpool.was_provisioned())
        .hash(&mut h);
    let mut appbinding = |ab_ns: &str, name: &str| {
        if !src.covers(ab_ns) {
            // not watched: never the same, so that every reconcile reads it
            UNWATCHED.fetch_add(1, Ordering::Relaxed).hash(&mut h);
            return;
        }
        let ab = src.appbindings.get(&ObjectRef::new(name).within(ab_ns));
        ab.as_ref().map(|ab| ab.resource_version()).hash(&mut h);
        if let Some(ab) = ab {
            let secret = ab
                .spec
                .secret
                .as_ref()
                .and_then(|s| src.index.secrets.get(ab_ns, &s.name));
            secret.map(|r| r.resource_version).hash(&mut h);
            let standby = ab.spec.client_config.service.as_ref().is_some_and(|svc| {
                src.index
                    .services
                    .contains(ab_ns, &names::standby_service(&svc.name))
            });
            standby.hash(&mut h);
        }
    };
    for (ab_ns, name) in pgpool.appbindings() {
        appbinding(&ab_ns, &name);
    }
    if let Some(name) = pgpool.spec.user_config_secret_name() {
        src.index
            .secrets
            .get(&ns, &name)
            .map(|r| r.resource_version)
            .hash(&mut h);
    }
    src.discovery.cached().map(|api| api.is_some()).hash(&mut h);
    h.finish()
}
