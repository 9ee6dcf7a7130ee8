//! One way for a controller to take its stop signal and report readiness.
//!
//! The runtime hands every controller the same [`CancellationToken`]; a controller asks
//! [`RunContext::controller`](crate::RunContext::controller) for a [`ControllerHandle`],
//! which registers it with `/readyz` (not ready until its caches sync) and gives it the
//! token in each form a kube-runtime controller needs, so nobody converts it by hand:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use k8s_openapi::api::core::v1::ConfigMap;
//! # use kube::runtime::{Controller, controller::Action, watcher};
//! # use futures::StreamExt;
//! # async fn example(ctx: operator_kit::RunContext) {
//! let handle = ctx.controller("configmap");
//! let api = kube::Api::<ConfigMap>::all(ctx.client.clone());
//! let controller = Controller::new(api, watcher::Config::default());
//! let _synced = handle.set_synced_when({
//!     let store = controller.store();
//!     async move { store.wait_until_ready().await.is_ok() }
//! });
//! controller
//!     .graceful_shutdown_on(handle.shutdown_signal())
//!     .run(
//!         |_, _| async { Ok::<_, kube::Error>(Action::await_change()) },
//!         |_, _, _| Action::await_change(),
//!         Arc::new(()),
//!     )
//!     .for_each(|_| async {})
//!     .await;
//! # }
//! ```

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::readiness::{ControllerReadiness, Readiness};

/// A controller's view of the runtime: its readiness entry and the stop signal.
#[derive(Clone, Debug)]
pub struct ControllerHandle {
    readiness: ControllerReadiness,
    shutdown: CancellationToken,
}

impl ControllerHandle {
    /// Registers controller `name` in `readiness` (not ready until
    /// [`set_synced`](Self::set_synced)) and keeps `shutdown` as its stop signal.
    pub fn new(readiness: &Readiness, name: &str, shutdown: CancellationToken) -> Self {
        Self {
            readiness: readiness.controller(name),
            shutdown,
        }
    }

    /// The controller's name in `/readyz`.
    pub fn name(&self) -> &str {
        self.readiness.name()
    }

    /// The controller's readiness entry.
    pub fn readiness(&self) -> &ControllerReadiness {
        &self.readiness
    }

    /// The stop signal as a token (for `select!`, child tokens, background tasks).
    pub fn token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// `true` once the controller must stop.
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// A future that resolves when the controller must stop; `Send + Sync + 'static`, as
    /// `kube::runtime::Controller::graceful_shutdown_on` wants it.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        self.shutdown.clone().cancelled_owned()
    }

    /// Marks the controller's caches as synced: `/readyz` counts it as ready.
    pub fn set_synced(&self) {
        self.readiness.set_synced();
    }

    /// A closure that marks the controller synced, for code that takes `ready: impl Fn()`.
    pub fn ready_fn(&self) -> impl Fn() + Send + Sync + 'static {
        let readiness = self.readiness.clone();
        move || readiness.set_synced()
    }

    /// Marks the controller synced once `synced` resolves to `true` (e.g. a store's
    /// `wait_until_ready`); gives up when the controller stops first. The task is aborted
    /// when the returned guard is dropped.
    pub fn set_synced_when<F>(&self, synced: F) -> TaskGuard
    where
        F: Future<Output = bool> + Send + 'static,
    {
        let readiness = self.readiness.clone();
        let shutdown = self.shutdown.clone();
        TaskGuard::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                ok = synced => if ok {
                    readiness.set_synced();
                },
            }
        })
    }
}

/// A spawned task that is aborted when the guard is dropped: for the reflectors, relays
/// and tickers a controller runs beside itself, so that they end with it however it ends.
#[derive(Debug)]
pub struct TaskGuard(JoinHandle<()>);

impl TaskGuard {
    /// Spawns `task` on the current runtime.
    pub fn spawn<F>(task: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Self(tokio::spawn(task))
    }

    /// Guards an already spawned task.
    pub fn new(handle: JoinHandle<()>) -> Self {
        Self(handle)
    }

    /// `true` once the task has ended.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::readiness::Phase;

    const WAIT: Duration = Duration::from_secs(5);

    fn running() -> Readiness {
        let r = Readiness::new();
        r.set_phase(Phase::Running);
        r
    }

    #[test]
    fn shutdown_signal_is_send_sync_static() {
        fn controller_accepts(_: impl Future<Output = ()> + Send + Sync + 'static) {}
        let handle = ControllerHandle::new(&running(), "c", CancellationToken::new());
        controller_accepts(handle.shutdown_signal());
    }

    #[tokio::test]
    async fn shutdown_signal_resolves_when_the_token_is_cancelled() {
        let token = CancellationToken::new();
        let handle = ControllerHandle::new(&running(), "c", token.clone());
        let signal = handle.shutdown_signal();
        let mut signal = std::pin::pin!(signal);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut signal)
                .await
                .is_err(),
            "not before the token is cancelled"
        );
        assert!(!handle.is_stopping());
        token.cancel();
        tokio::time::timeout(WAIT, signal).await.expect("stops");
        assert!(handle.is_stopping() && handle.token().is_cancelled());
    }

    #[tokio::test]
    async fn readiness_is_tracked_per_controller() {
        let readiness = running();
        let token = CancellationToken::new();
        let pgpool = ControllerHandle::new(&readiness, "pgpool", token.clone());
        let petset = ControllerHandle::new(&readiness, "petset", token);
        assert_eq!(pgpool.name(), "pgpool");
        assert!(!readiness.is_ready());
        pgpool.ready_fn()();
        let status = readiness.status();
        assert!(!status.ready, "petset still syncing");
        assert!(status.message.contains("waiting for controllers: petset"));
        petset.set_synced();
        assert!(readiness.is_ready());
    }

    #[tokio::test]
    async fn set_synced_when_waits_for_the_caches() {
        let readiness = running();
        let handle = ControllerHandle::new(&readiness, "c", CancellationToken::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<bool>();
        let guard = handle.set_synced_when(async move { rx.await.unwrap_or(false) });
        assert!(!readiness.is_ready());
        tx.send(true).unwrap();
        tokio::time::timeout(WAIT, async {
            while !guard.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("task ends");
        assert!(readiness.is_ready());
    }

    #[tokio::test]
    async fn set_synced_when_gives_up_on_shutdown_or_failure() {
        let readiness = running();
        let token = CancellationToken::new();
        let handle = ControllerHandle::new(&readiness, "c", token.clone());
        let guard = handle.set_synced_when(std::future::pending());
        token.cancel();
        tokio::time::timeout(WAIT, async {
            while !guard.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("task ends on shutdown");
        assert!(!readiness.is_ready());

        let handle = ControllerHandle::new(&readiness, "d", CancellationToken::new());
        let guard = handle.set_synced_when(async { false });
        tokio::time::timeout(WAIT, async {
            while !guard.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("task ends");
        assert!(!readiness.is_ready(), "a failed sync is not synced");
    }

    #[tokio::test]
    async fn dropping_the_guard_aborts_the_task() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let guard = TaskGuard::spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(guard);
        // The sender is dropped with the aborted task: recv ends with None.
        let got = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("aborted");
        assert!(got.is_none());
    }
}
