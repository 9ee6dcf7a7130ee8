//! Running controllers in tests: a [`Harness`] (a server and a client for the test itself)
//! and [`Controller`], a future spawned as a controller task with a [`CancellationToken`] to
//! stop it, that is stopped (and awaited) by [`Controller::stop`] and cancelled on drop.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use testkit::harness::Harness;
//! let h = Harness::new(testkit::TestServer::new());
//! let ctl = h
//!     .spawn_ready("my-controller", Duration::from_secs(10), |client, stop, ready| async move {
//!         // build caches with `client`, then:
//!         ready.signal();
//!         stop.cancelled().await;
//!         Ok::<(), kube::Error>(())
//!     })
//!     .await;
//! // ... assert on h.server / h.client ...
//! ctl.stop(Duration::from_secs(10)).await.expect("stops cleanly");
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::TestServer;

/// A server and a client for the test itself (requests logged under agent `"test"`).
#[derive(Clone)]
pub struct Harness {
    /// The API server.
    pub server: TestServer,
    /// A client for the test (agent `"test"`).
    pub client: kube::Client,
}

impl Harness {
    /// A harness around `server`.
    pub fn new(server: TestServer) -> Self {
        let client = server.client_as("test");
        Self { server, client }
    }

    /// Spawn `run(client, stop)` as a controller whose requests are logged under `agent`.
    pub fn spawn<F, Fut, T>(&self, agent: &str, run: F) -> Controller<T>
    where
        F: FnOnce(kube::Client, CancellationToken) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let client = self.server.client_as(agent);
        Controller::spawn(|stop| run(client, stop))
    }

    /// Like [`spawn`](Self::spawn), and wait (at most `timeout`, else panic) until the
    /// controller calls [`Ready::signal`].
    pub async fn spawn_ready<F, Fut, T>(
        &self,
        agent: &str,
        timeout: Duration,
        run: F,
    ) -> Controller<T>
    where
        F: FnOnce(kube::Client, CancellationToken, Ready) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let client = self.server.client_as(agent);
        Controller::spawn_ready(timeout, |stop, ready| run(client, stop, ready)).await
    }
}

/// Handed to a controller started with [`Controller::spawn_ready`]: signal once ready.
#[derive(Clone, Debug)]
pub struct Ready(watch::Sender<bool>);

impl Ready {
    /// The controller is ready (caches synced); may be called any number of times.
    pub fn signal(&self) {
        self.0.send_replace(true);
    }
}

/// A future running as a controller task. Cancelled (its token) and aborted on drop.
#[derive(Debug)]
pub struct Controller<T> {
    stop: CancellationToken,
    task: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Controller<T> {
    /// Spawn `run(stop)`; the controller should return once `stop` is cancelled.
    pub fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(stop.clone()));
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Spawn `run(stop, ready)` and wait (at most `timeout`, else panic) until it calls
    /// [`Ready::signal`]. Panics too if it returns or panics before.
    pub async fn spawn_ready<F, Fut>(timeout: Duration, run: F) -> Self
    where
        F: FnOnce(CancellationToken, Ready) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (tx, mut rx) = watch::channel(false);
        let ctl = Self::spawn(|stop| run(stop, Ready(tx)));
        let waited = tokio::time::timeout(timeout, rx.wait_for(|ready| *ready)).await;
        match waited {
            Ok(Ok(_)) => ctl,
            Ok(Err(_)) => panic!("the controller ended before it was ready"),
            Err(_) => panic!("the controller was not ready within {timeout:?}"),
        }
    }

    /// Whether the controller is still running (has neither returned nor panicked).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The token that stops the controller.
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Cancel the token and wait (at most `timeout`, else panic) for the controller to
    /// return; its output. Panics if the controller panicked.
    pub async fn stop(mut self, timeout: Duration) -> T {
        self.stop.cancel();
        let task = self.task.take().expect("a running controller");
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!("the controller task failed: {e}"),
            Err(_) => panic!("the controller did not stop within {timeout:?}"),
        }
    }

    /// Abort the task wherever it is (like a crashed process) and wait until it is gone.
    pub async fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl<T> Drop for Controller<T> {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
