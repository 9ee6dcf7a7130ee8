//! Wiring: the watches that wake a request (mappers in [`super::mappers`]), the request cache,
//! and the controller's start and stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use operator_kit::api::namespaced_or_all;
use operator_kit::{ControllerHandle, EventRecorder, TaskGuard};
use pgpool_api::{PetSet, Pgpool, PgpoolOpsRequest, names};

use super::context::Ctx;
use super::driver::reconcile;
use super::mappers;
use super::retry::{self, error_policy};
use crate::events::EventQueue;
use crate::metrics::Metrics;
use crate::{OpsManagerConfig, REPORTER};

/// Events the request cache buffers for each of its subscribers (the controller's own trigger
/// and the sibling mapper) before the watch waits for them.
const SHARED_BUFFER: usize = 256;

/// Run the controller until `handle` says stop (see [`crate::run`]).
pub(crate) async fn run(
    client: Client,
    config: OpsManagerConfig,
    metrics: Metrics,
    handle: ControllerHandle,
) {
    let ns = config.namespace.as_deref();
    // One watch on PgpoolOpsRequest feeds one cache, shared by the controller (its trigger and
    // its store), the mappers and the metrics. The handle is marked synced from the watch
    // itself when the first list is in the cache, so the controller stays the only waiter on
    // the store's readiness (a kube store's readiness wakes only one waiter).
    let (store, writer) = reflector::store_shared::<PgpoolOpsRequest>(SHARED_BUFFER);
    let requests = writer
        .subscribe()
        .expect("a shared store hands out subscriptions");
    let siblings = writer
        .subscribe()
        .expect("a shared store hands out subscriptions");
    let mut ready = Some(handle.ready_fn());
    let reflector_task = TaskGuard::spawn(
        reflector(
            writer,
            watcher(
                namespaced_or_all::<PgpoolOpsRequest>(&client, ns),
                watcher::Config::default(),
            )
            .default_backoff(),
        )
        .for_each(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone))
                && let Some(ready) = ready.take()
            {
                ready();
            }
            async {}
        }),
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
        errors: retry::error_backoff(),
        refusals: retry::eviction_backoff(),
        marks: Mutex::default(),
        max_requeue: config.max_requeue.max(Duration::from_secs(1)),
    });

    let stopping = handle.token().clone();
    let (s1, s2, s3, s4) = (store.clone(), store.clone(), store.clone(), store.clone());
    let pod_selector = format!("{}={}", names::LABEL_NAME, names::LABEL_NAME_VALUE);
    Controller::for_shared_stream(requests, store)
        .with_config(ControllerConfig::default().concurrency(config.concurrency.max(1)))
        .watches(
            namespaced_or_all::<Pgpool>(&client, ns),
            watcher::Config::default(),
            move |pp: Pgpool| mappers::for_pgpool(&s1, &pp),
        )
        .watches(
            namespaced_or_all::<PetSet>(&client, ns),
            watcher::Config::default(),
            move |ps: PetSet| mappers::for_petset(&s2, &ps),
        )
        .watches(
            namespaced_or_all::<Pod>(&client, ns),
            watcher::Config::default().labels(&pod_selector),
            move |pod: Pod| mappers::for_pod(&s3, &pod),
        )
        // A request that arrives, waits or ends wakes the other live requests of its Pgpool, so
        // the queue moves on at once (writes of a Progressing request wake nobody).
        .watches_shared_stream(siblings, move |r: Arc<PgpoolOpsRequest>| {
            mappers::for_sibling(&s4, &r)
        })
        .graceful_shutdown_on(handle.shutdown_signal())
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
    drop(reflector_task);
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
