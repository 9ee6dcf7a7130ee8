//! The Pgpool controller (DESIGN.md §4): Pgpool -> Secrets, Services, PetSet, PDB,
//! ServiceMonitor, and the Pgpool's status.
//!
//! Pipeline per reconcile: [`dereference`] (reads) -> [`validate`] (pure) -> [`build`] (pure)
//! -> apply (server-side apply, skipped when nothing differs, see [`diff`]) -> [`status`].

pub mod build;
pub mod dereference;
pub mod diff;
pub mod reconcile;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::core::ObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use operator_kit::CancellationToken;
use pgpool_api::{AppBinding, PetSet, Pgpool, PgpoolVersion, names};
use tracing::{debug, warn};

pub use reconcile::{Context, FIELD_MANAGER, ReconcileError};

use validate::{appbinding_namespace, auth_secret_name, user_config_secret_name};

/// Label selector of the objects the provisioner labels (children and pods).
pub fn managed_selector() -> String {
    format!("{}={}", names::LABEL_NAME, names::LABEL_NAME_VALUE)
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Pgpools named in `meta`'s owner references.
fn owners(meta: &ObjectMeta) -> Vec<ObjectRef<Pgpool>> {
    let ns = meta.namespace.clone().unwrap_or_default();
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == "Pgpool" && o.api_version.starts_with("kubedb.com/"))
        .map(|o| ObjectRef::new(&o.name).within(&ns))
        .collect()
}

/// The AppBindings a Pgpool reads: `spec.postgresRef` and backend groups, as (ns, name).
fn appbindings_of(p: &Pgpool) -> Vec<(String, String)> {
    let mut out = vec![(appbinding_namespace(p), p.spec.postgres_ref.name.clone())];
    let ns = p.namespace().unwrap_or_default();
    for b in p.spec.configuration.iter().flat_map(|c| c.backends.iter()) {
        if let Some(group) = &b.group {
            out.push((ns.clone(), group.clone()));
        }
    }
    out
}

fn pgpools_using_appbindings(
    pgpools: &Store<Pgpool>,
    matches: impl Fn(&(String, String)) -> bool,
) -> Vec<ObjectRef<Pgpool>> {
    pgpools
        .state()
        .iter()
        .filter(|p| appbindings_of(p).iter().any(&matches))
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// Secret -> Pgpools: owners, and Pgpools that read it (auth, user config, AppBinding Secret).
fn map_secret(
    s: &Secret,
    pgpools: &Store<Pgpool>,
    appbindings: &Store<AppBinding>,
) -> Vec<ObjectRef<Pgpool>> {
    let mut out = owners(&s.metadata);
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    let referring: Vec<(String, String)> = appbindings
        .state()
        .iter()
        .filter(|ab| {
            ab.namespace().as_deref() == Some(ns.as_str())
                && ab.spec.secret.as_ref().is_some_and(|r| r.name == name)
        })
        .map(|ab| (ns.clone(), ab.name_any()))
        .collect();
    for p in pgpools.state() {
        let same_ns = p.namespace().as_deref() == Some(ns.as_str());
        let reads = same_ns
            && (auth_secret_name(&p) == name
                || user_config_secret_name(&p.spec).as_deref() == Some(name.as_str()));
        let via_appbinding = appbindings_of(&p).iter().any(|r| referring.contains(r));
        if reads || via_appbinding {
            out.push(ObjectRef::from_obj(&*p));
        }
    }
    out
}

/// Service -> Pgpools: owners, and Pgpools whose AppBinding's standby Service it is.
fn map_service(
    s: &Service,
    pgpools: &Store<Pgpool>,
    appbindings: &Store<AppBinding>,
) -> Vec<ObjectRef<Pgpool>> {
    let mut out = owners(&s.metadata);
    let ns = s.namespace().unwrap_or_default();
    let name = s.name_any();
    let standby_of: Vec<(String, String)> = appbindings
        .state()
        .iter()
        .filter(|ab| {
            ab.namespace().as_deref() == Some(ns.as_str())
                && ab
                    .spec
                    .client_config
                    .service
                    .as_ref()
                    .is_some_and(|svc| names::standby_service(&svc.name) == name)
        })
        .map(|ab| (ns.clone(), ab.name_any()))
        .collect();
    if !standby_of.is_empty() {
        out.extend(pgpools_using_appbindings(pgpools, |r| {
            standby_of.contains(r)
        }));
    }
    out
}

/// Pod -> its Pgpool, by the instance label.
fn map_pod(p: &Pod) -> Option<ObjectRef<Pgpool>> {
    let labels = p.labels();
    if labels.get(names::LABEL_NAME).map(String::as_str) != Some(names::LABEL_NAME_VALUE) {
        return None;
    }
    let instance = labels.get(names::LABEL_INSTANCE)?;
    Some(ObjectRef::new(instance).within(&p.namespace().unwrap_or_default()))
}

/// Waits until `store` is filled; false when its writer is gone. Re-polls every 100 ms:
/// kube-runtime 5's store readiness keeps a single waker, so when the controller's own runner
/// waits on the same store, one of the two waiters may never be woken.
pub async fn store_ready<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(result) =
            tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await
        {
            return result.is_ok();
        }
    }
}

/// Settings of the Pgpool controller.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// Namespace to watch; all when `None`.
    pub namespace: Option<String>,
    /// Reconciles at the same time.
    pub concurrency: u16,
}

/// Runs the Pgpool controller until `shutdown` is cancelled. Calls `ready` once the Pgpool
/// and AppBinding caches are filled.
pub async fn run_controller(
    ctx: Arc<Context>,
    settings: ControllerSettings,
    shutdown: CancellationToken,
    ready: impl FnOnce() + Send + 'static,
) {
    let client = ctx.client.clone();
    let ns = settings.namespace.as_deref();
    let managed = watcher::Config::default().labels(&managed_selector());

    let pgpools_api: Api<Pgpool> = api(&client, ns);
    let controller = Controller::new(pgpools_api, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(settings.concurrency));
    let pgpools = controller.store();

    // AppBindings are cached for the Secret and Service mappers, and watched as triggers.
    let (appbindings, ab_writer) = reflector::store::<AppBinding>();
    let ab_stream = reflector::reflector(
        ab_writer,
        watcher(api::<AppBinding>(&client, ns), watcher::Config::default()).default_backoff(),
    )
    .touched_objects();
    let ab_task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let drain = ab_stream.for_each(|_| futures::future::ready(()));
            tokio::select! {
                _ = drain => {}
                _ = shutdown.cancelled() => {}
            }
        })
    };

    {
        let pgpools = pgpools.clone();
        let appbindings = appbindings.clone();
        tokio::spawn(async move {
            if store_ready(&pgpools).await && store_ready(&appbindings).await {
                debug!("Pgpool and AppBinding caches filled");
                ready();
            }
        });
    }

    let (p1, p2, p3, p4) = (
        pgpools.clone(),
        pgpools.clone(),
        pgpools.clone(),
        pgpools.clone(),
    );
    let (a1, a2) = (appbindings.clone(), appbindings);
    let controller = controller
        .owns(api::<PetSet>(&client, ns), managed.clone())
        .owns(api::<PodDisruptionBudget>(&client, ns), managed.clone())
        .watches(
            api::<Secret>(&client, ns),
            watcher::Config::default(),
            move |s: Secret| map_secret(&s, &p1, &a1),
        )
        .watches(
            api::<Service>(&client, ns),
            watcher::Config::default(),
            move |s: Service| map_service(&s, &p2, &a2),
        )
        .watches(api::<Pod>(&client, ns), managed, |p: Pod| map_pod(&p))
        .watches(
            Api::<PgpoolVersion>::all(client.clone()),
            watcher::Config::default(),
            move |v: PgpoolVersion| {
                let name = v.name_any();
                p3.state()
                    .iter()
                    .filter(|p| p.spec.version == name)
                    .map(|p| ObjectRef::from_obj(&**p))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            api::<AppBinding>(&client, ns),
            watcher::Config::default(),
            move |ab: AppBinding| {
                let key = (ab.namespace().unwrap_or_default(), ab.name_any());
                pgpools_using_appbindings(&p4, |r| *r == key)
            },
        )
        .graceful_shutdown_on(shutdown.cancelled_owned());

    controller
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(pgpool = %obj.name, "reconciled"),
                Err(controller::Error::ReconcilerFailed(_, _)) => {}
                Err(e) => warn!("Pgpool controller: {e}"),
            }
        })
        .await;
    ab_task.abort();
}
