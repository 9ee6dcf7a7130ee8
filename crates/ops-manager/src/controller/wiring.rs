//! Wiring: the watches that wake a request, the mappers from other objects to requests, and
//! the controller's start and stop.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use operator_kit::EventRecorder;
use pgpool_api::{OpsRequestPhase, PetSet, Pgpool, PgpoolOpsRequest, names};

use super::context::Ctx;
use super::driver::reconcile;
use super::retry::error_policy;
use crate::events::EventQueue;
use crate::metrics::Metrics;
use crate::plan;
use crate::{OpsManagerConfig, REPORTER};

pub(crate) async fn run(
    client: Client,
    config: OpsManagerConfig,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl Fn() + Send + Sync + 'static,
) {
    let ns = config.namespace.clone();
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let controller = Controller::new(
        api::<PgpoolOpsRequest>(&client, &ns),
        watcher::Config::default(),
    );
    // The mappers and the metrics read requests from a reflector of our own: it is the only
    // store `ready` waits on (a kube store's readiness wakes only one waiter, and that one must
    // stay the controller's).
    let (store, writer) = reflector::store::<PgpoolOpsRequest>();
    let reflector_task = tokio::spawn(
        reflector(
            writer,
            watcher(
                api::<PgpoolOpsRequest>(&client, &ns),
                watcher::Config::default(),
            )
            .default_backoff(),
        )
        .for_each(|_| async {}),
    );
    let (events, events_task) = EventQueue::start(EventRecorder::new(
        client.clone(),
        REPORTER,
        config.instance.clone(),
    ));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        store: store.clone(),
        metrics,
        events,
        queue_lock: tokio::sync::Mutex::new(()),
        errors: Mutex::default(),
        refusals: Mutex::default(),
        marks: Mutex::default(),
        max_requeue: config.max_requeue.max(Duration::from_secs(1)),
    });

    let ready_store = store.clone();
    let ready_task = tokio::spawn(async move {
        if ready_store.wait_until_ready().await.is_ok() {
            ready();
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping = operator_kit::CancellationToken::new();
    let stop_task = {
        let stopping = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopping.cancel();
            let _ = stop_tx.send(());
        })
    };

    let (s1, s2, s3, s4) = (store.clone(), store.clone(), store.clone(), store.clone());
    let pod_selector = format!("{}={}", names::LABEL_NAME, names::LABEL_NAME_VALUE);
    controller
        .with_config(ControllerConfig::default().concurrency(config.concurrency.max(1)))
        .watches(
            api::<Pgpool>(&client, &ns),
            watcher::Config::default(),
            move |pp: Pgpool| {
                live_requests_for(&s1, &pp.namespace().unwrap_or_default(), &pp.name_any())
            },
        )
        .watches(
            api::<PetSet>(&client, &ns),
            watcher::Config::default(),
            move |ps: PetSet| {
                let owner = ps
                    .labels()
                    .get(names::LABEL_INSTANCE)
                    .cloned()
                    .unwrap_or_else(|| ps.name_any());
                live_requests_for(&s2, &ps.namespace().unwrap_or_default(), &owner)
            },
        )
        .watches(
            api::<Pod>(&client, &ns),
            watcher::Config::default().labels(&pod_selector),
            move |pod: Pod| match pod.labels().get(names::LABEL_INSTANCE) {
                Some(owner) => live_requests_for(&s3, &pod.namespace().unwrap_or_default(), owner),
                None => Vec::new(),
            },
        )
        // A request that arrives, waits or ends wakes the other live requests of its Pgpool, so
        // the queue moves on at once (writes of a Progressing request wake nobody).
        .watches(
            api::<PgpoolOpsRequest>(&client, &ns),
            watcher::Config::default(),
            move |r: PgpoolOpsRequest| {
                if plan::phase_of(&r) == OpsRequestPhase::Progressing
                    && r.metadata.deletion_timestamp.is_none()
                {
                    return Vec::new();
                }
                let name = r.name_any();
                live_requests_for(
                    &s4,
                    &r.namespace().unwrap_or_default(),
                    &r.spec.database_ref.name,
                )
                .into_iter()
                .filter(|o| o.name != name)
                .collect()
            },
        )
        .graceful_shutdown_on(async move {
            let _ = stop_rx.await;
        })
        // A reconcile still running at shutdown is dropped where it waits: every step is
        // idempotent, so that is no worse than a crash, and the process stops at once.
        .run(
            move |obj, ctx| {
                let stopping = stopping.clone();
                async move {
                    tokio::select! {
                        biased;
                        () = stopping.cancelled() => Ok(Action::await_change()),
                        result = reconcile(obj, ctx) => result,
                    }
                }
            },
            error_policy,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(error) = res {
                tracing::debug!(%error, "controller event");
            }
        })
        .await;
    ready_task.abort();
    stop_task.abort();
    reflector_task.abort();
    // The controller has dropped the context and with it the event queue: publish what is
    // still queued (bounded, so that an unreachable API server cannot hold up the exit: the
    // process must stop within 5 s of SIGTERM, see operator_kit::SHUTDOWN_GRACE).
    if tokio::time::timeout(Duration::from_secs(1), events_task)
        .await
        .is_err()
    {
        tracing::warn!("events still queued at exit were dropped");
    }
}

/// Requests of Pgpool `pgpool` in `ns` that have not ended, from the cache.
pub(super) fn live_requests_for(
    store: &Store<PgpoolOpsRequest>,
    ns: &str,
    pgpool: &str,
) -> Vec<ObjectRef<PgpoolOpsRequest>> {
    store
        .state()
        .iter()
        .filter(|r| {
            r.metadata.namespace.as_deref() == Some(ns)
                && r.spec.database_ref.name == pgpool
                && !plan::phase_of(r).is_final()
        })
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}
