//! The HTTP server: its routes — `/` dashboard, `/ws` (rooms protocol), `/sse`,
//! health, readiness, Prometheus metrics and (opt-in) admin — on the accept loop of
//! accept.rs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use switchboard_broker::{Supervisor, TaskDone};
use switchboard_config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{info, warn};

use crate::state::HttpState;
use crate::BridgeError;

pub struct HttpServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    /// `[http] ops_listen`: metrics and health on their own address.
    ops: Option<TcpListener>,
}

impl HttpServer {
    /// Binds `addr`; with `[http] tls = true` it serves HTTPS (and WSS) with the
    /// `[tls]` certificate.
    pub async fn bind(addr: SocketAddr, config: &Config) -> Result<HttpServer, BridgeError> {
        let tls = match config.http.tls {
            true => Some(
                switchboard_broker::tls::acceptor(&config.tls.cert, &config.tls.key, None)
                    .map_err(|e| BridgeError::Tls(e.to_string()))?,
            ),
            false => None,
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BridgeError::Bind { addr, source })?;
        let ops = match config.http.ops_listen.addr() {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| BridgeError::Bind { addr, source })?,
            ),
            None => None,
        };
        Ok(HttpServer { listener, tls, ops })
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
            .route("/", get(crate::assets::index))
            .route("/{file}", get(crate::assets::named))
            .route("/vitals", get(crate::live_vitals::vitals))
            .route("/ws", get(crate::upgrade::websocket))
            .route("/sse", get(crate::sse::stream));
        let ops = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics));
        let ops_app = match self.ops.is_some() {
            true => Some(ops.with_state(state.clone())),
            false => {
                app = app.merge(ops);
                None
            }
        };
        if config.admin {
            app = app.route(
                "/admin/retained",
                get(crate::admin::list).delete(crate::admin::delete),
            );
        }
        let browsers = match state.bridge.auth.current().browsers_need_tokens() {
            true => "browsers with a JWT, within its claims",
            false => "anonymous browsers ([auth] browser = \"off\")",
        };
        let mut app = app.with_state(state);
        if let Some(cors) = cors(&config.allowed_origins) {
            app = app.layer(cors);
        }
        let served = match ops_app.is_some() {
            true => "/ dashboard, /client.js, /vitals, /ws, /sse",
            false => "/ dashboard, /client.js, /vitals, /ws, /sse, /healthz, /readyz, /metrics",
        };
        if let Some(addr) = self.local_addr() {
            let scheme = if self.tls.is_some() { "HTTPS" } else { "HTTP" };
            info!("{scheme} listening on {addr} ({served}): {browsers}");
            if !addr.ip().is_loopback() && browsers.starts_with("anonymous") {
                warn!("anonymous browsers may join any room on {addr}, beyond loopback: set [auth] browser = \"jwt\" or [http] allowed_origins");
            }
        }
        let ops = self.ops.zip(ops_app);
        if let Some(addr) = ops
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
        {
            info!("HTTP listening on {addr} for /metrics, /healthz, /readyz");
        }
        supervisor.spawn("http server", async move {
            let main =
                crate::accept::serve(self.listener, self.tls, app, &config, shutdown.clone());
            match ops {
                Some((listener, ops_app)) => {
                    let ops = crate::accept::serve(listener, None, ops_app, &config, shutdown);
                    tokio::join!(main, ops);
                }
                None => main.await,
            }
        })
    }
}

/// CORS for the listed origins (credentials included: the token cookie); none when
/// the list is empty (same-origin pages only).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .allow_credentials(true)
            .max_age(std::time::Duration::from_secs(600)),
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
