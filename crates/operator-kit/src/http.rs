//! The HTTP server for `/metrics`, `/healthz` and `/readyz`.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::readiness::Readiness;

#[derive(Clone)]
struct AppState {
    registry: Registry,
    readiness: Readiness,
}

/// The router: `GET /metrics` (Prometheus text format), `GET /healthz` (200 while the
/// process runs) and `GET /readyz` (200 or 503 with a text body saying why, see
/// [`Readiness`]).
pub fn router(registry: Registry, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            registry,
            readiness,
        })
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets open requests
/// finish for at most two seconds.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stopped = shutdown.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
    let server = std::pin::pin!(server.into_future());
    tokio::select! {
        res = server => res,
        () = async {
            stopped.cancelled().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        } => Ok(()),
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, TEXT)], "ok\n").into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let status = state.readiness.status();
    let code = if status.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, [(header::CONTENT_TYPE, TEXT)], status.message).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_string())],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, TEXT.to_string())],
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response(),
    }
}
