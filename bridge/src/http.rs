//! The HTTP server: its routes — `/` dashboard, `/ws` (rooms protocol), `/sse`,
//! health, readiness, Prometheus metrics and (opt-in) admin — on the accept loop of
//! accept.rs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use switchboard_broker::{Supervisor, TaskDone};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::state::HttpState;
use crate::BridgeError;

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

    /// Serves until `shutdown` turns true (a supervised core task).
    pub fn serve(
        self,
        state: HttpState,
        shutdown: watch::Receiver<bool>,
        supervisor: &Supervisor,
    ) -> TaskDone {
        let config = state.bridge.hub.config().http.clone();
        let mut app = Router::new()
            .route("/", get(dashboard))
            .route("/ws", get(crate::upgrade::websocket))
            .route("/sse", get(crate::sse::stream))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics));
        if config.admin {
            app = app.route(
                "/admin/retained",
                get(crate::admin::list).delete(crate::admin::delete),
            );
        }
        let app = app.with_state(state);
        if let Some(addr) = self.local_addr() {
            info!("HTTP listening on {addr} (/ dashboard, /ws, /sse, /healthz, /readyz, /metrics)");
        }
        supervisor.spawn("http server", async move {
            crate::accept::serve(self.listener, app, &config, shutdown).await;
        })
    }
}

/// A small live view of rooms and devices, for trying Switchboard in a browser.
async fn dashboard() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../assets/dashboard.html"),
    )
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    crate::vitals::record_process();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
