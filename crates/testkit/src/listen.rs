//! Serving the in-memory API server over plain HTTP on 127.0.0.1, with a kubeconfig.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::server::TestServer;

/// A server listening on 127.0.0.1. Dropping it (or [`shutdown`](Self::shutdown)) stops
/// listening, ends open connections and removes the kubeconfig.
pub struct Listening {
    addr: SocketAddr,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("addr", &self.addr)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl Listening {
    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Path of a kubeconfig file pointing at the server (context `testkit`, namespace
    /// `default`); pass it as `KUBECONFIG` to processes.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Stop listening and end open connections.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Kubeconfig YAML for a plain-HTTP server at `url`.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testkit\n  cluster:\n    server: {url}\ncontexts:\n- name: testkit\n  context:\n    cluster: testkit\n    user: testkit\n    namespace: default\ncurrent-context: testkit\nusers:\n- name: testkit\n  user: {{}}\npreferences: {{}}\n"
    )
}

impl TestServer {
    /// Serve plain HTTP on 127.0.0.1 at a random port and write a kubeconfig for it.
    /// Requests from remote clients are logged under their `User-Agent` (or `remote`).
    pub async fn listen(&self) -> anyhow::Result<Listening> {
        self.listen_as("").await
    }

    /// Like [`listen`](Self::listen), but every request through this listener is logged (and
    /// matched by faults) as coming from `agent`: give each spawned process its own listener
    /// to tell their requests apart.
    pub async fn listen_as(&self, agent: &str) -> anyhow::Result<Listening> {
        let agent: std::sync::Arc<str> = std::sync::Arc::from(agent);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&format!("http://{addr}")))?;
        let cancel = CancellationToken::new();
        let server = self.clone();
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => break,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!("testkit accept failed: {e}");
                            continue;
                        }
                    },
                };
                let server = server.clone();
                let stop = stop.clone();
                let agent = agent.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        let server = server.clone();
                        let agent = agent.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let (parts, body) = req.into_parts();
                            let bytes = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(
                                server
                                    .handle(http::Request::from_parts(parts, bytes), &agent)
                                    .await,
                            )
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        r = conn => {
                            if let Err(e) = r {
                                tracing::debug!("testkit connection ended: {e}");
                            }
                        }
                    }
                });
            }
        });
        Ok(Listening {
            addr,
            kubeconfig,
            _dir: dir,
            cancel,
        })
    }
}
