//! The HTTP server: `/ws` (rooms protocol), health, readiness and Prometheus metrics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use metrics::counter;
use metrics_exporter_prometheus::PrometheusHandle;
use switchboard_broker::{Supervisor, TaskDone};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::protocol::JSON_SUBPROTOCOL;
use crate::{BridgeError, BridgeState};

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: PrometheusHandle,
    /// Set once every listener is serving; cleared when shutdown begins.
    pub ready: Arc<AtomicBool>,
    pub bridge: BridgeState,
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

    /// Serves until `shutdown` turns true (a supervised core task).
    pub fn serve(
        self,
        state: HttpState,
        mut shutdown: watch::Receiver<bool>,
        supervisor: &Supervisor,
    ) -> TaskDone {
        let mut app = Router::new()
            .route("/", get(dashboard))
            .route("/ws", get(websocket))
            .route("/sse", get(crate::sse::stream))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics));
        if state.bridge.hub.config().http.admin {
            app = app.route("/admin/retained", get(admin_list).delete(admin_delete));
        }
        let app = app.with_state(state);
        if let Some(addr) = self.local_addr() {
            info!("HTTP listening on {addr} (/ dashboard, /ws, /healthz, /readyz, /metrics)");
        }
        supervisor.spawn("http server", async move {
            let stop = async move {
                let _ = shutdown.wait_for(|stopping| *stopping).await;
            };
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            // Without TCP_NODELAY, small frames wait for the peer's delayed ACK (40 ms).
            let listener = self.listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(stop)
                .await
            {
                error!("HTTP server failed: {e}");
            }
        })
    }
}

async fn websocket(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let bridge = state.bridge;
    let config = bridge.hub.config();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let Err(why) = origin_allowed(
        origin,
        &config.http.allowed_origins,
        config.http.require_origin,
    ) {
        counter!("switchboard_bridge_refusals_total", "reason" => "origin").increment(1);
        warn!(%peer, "browser refused: {why}");
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    let Ok(permit) = bridge.connections.clone().try_acquire_owned() else {
        counter!("switchboard_bridge_refusals_total", "reason" => "max_connections").increment(1);
        warn!(%peer, "browser refused: at bridge.max_connections");
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    let hard_limit = config.bridge.max_frame.as_usize().saturating_mul(4);
    upgrade
        .protocols([JSON_SUBPROTOCOL])
        // Browsers send little: a small read buffer (it grows for a larger frame)
        // instead of tungstenite's 128 KiB, held by every idle connection.
        .read_buffer_size(BROWSER_READ_BUFFER)
        .write_buffer_size(8 * 1024)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| crate::ws::serve(socket, bridge, peer.to_string(), permit))
}

const BROWSER_READ_BUFFER: usize = 256;

fn origin_allowed(origin: Option<&str>, allowed: &[String], required: bool) -> Result<(), String> {
    match origin {
        None if required => Err("an Origin header is required\n".into()),
        None => Ok(()),
        Some(_) if allowed.is_empty() => Ok(()),
        Some(origin) if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) => Ok(()),
        Some(origin) => Err(format!("origin {origin} is not allowed\n")),
    }
}

/// A small live view of rooms and devices, for trying Switchboard in a browser.
async fn dashboard() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../assets/dashboard.html"),
    )
}

#[derive(serde::Deserialize)]
struct FilterQuery {
    filter: String,
}

/// `GET /admin/retained?filter=F`: the retained messages matching F.
async fn admin_list(State(state): State<HttpState>, Query(query): Query<FilterQuery>) -> Response {
    if !crate::topic::valid_filter(&query.filter) {
        return (
            StatusCode::BAD_REQUEST,
            "filter is not an MQTT topic filter\n",
        )
            .into_response();
    }
    let (items, _) = state
        .bridge
        .hub
        .retained
        .matching(&[query.filter], usize::MAX);
    let items: Vec<serde_json::Value> = items.iter().map(|v| v.state_item()).collect();
    axum::Json(serde_json::json!({"retained": items})).into_response()
}

/// `DELETE /admin/retained?filter=F`: clears every retained message matching F, for
/// MQTT subscribers, `joined.state` and the store alike.
async fn admin_delete(
    State(state): State<HttpState>,
    Query(query): Query<FilterQuery>,
) -> Response {
    if !crate::topic::valid_filter(&query.filter) {
        return (
            StatusCode::BAD_REQUEST,
            "filter is not an MQTT topic filter\n",
        )
            .into_response();
    }
    let bridge = state.bridge;
    let (items, _) = bridge.hub.retained.matching(&[query.filter], usize::MAX);
    for item in &items {
        bridge
            .publisher
            .publish(&item.topic, bytes::Bytes::new(), 0, true);
        bridge.events.retained_changed(
            bytes::Bytes::copy_from_slice(item.topic.as_bytes()),
            bytes::Bytes::new(),
            0,
            None,
        );
    }
    info!(count = items.len(), "admin: deleted retained messages");
    axum::Json(serde_json::json!({"deleted": items.len()})).into_response()
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
