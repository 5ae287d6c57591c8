//! The HTTP server: health, readiness and Prometheus metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info};

use crate::BridgeError;

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: PrometheusHandle,
    /// Set once every listener is serving; cleared when shutdown begins.
    pub ready: Arc<AtomicBool>,
}

pub struct HttpServer {
    listener: TcpListener,
}

impl HttpServer {
    pub async fn bind(addr: SocketAddr) -> Result<HttpServer, BridgeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BridgeError::Bind { addr, source })?;
        Ok(HttpServer { listener })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` turns true.
    pub fn serve(
        self,
        state: HttpState,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(state);
        if let Some(addr) = self.local_addr() {
            info!("HTTP listening on {addr} (/healthz, /readyz, /metrics)");
        }
        tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            };
            if let Err(e) = axum::serve(self.listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                error!("HTTP server failed: {e}");
            }
        })
    }
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
