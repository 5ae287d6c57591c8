//! `GET /ws`: the checks before a browser gets a WebSocket (Origin, connection cap,
//! a valid upgrade request), then the upgrade itself, over a byte stream that
//! watches for unfinished frames, with frames bounded in bytes.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use metrics::counter;
use switchboard_broker::watched::Watched;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};

use crate::frames::Codec;
use crate::grant::admission;
use crate::BridgeState;

/// Browsers send little: a small read buffer (it grows for a larger frame) instead
/// of tungstenite's 128 KiB, held by every idle connection.
const BROWSER_READ_BUFFER: usize = 256;

pub async fn websocket(
    State(state): State<BridgeState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let config = state.hub.config();
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let Err(why) = switchboard_broker::origin::check(origin, &config.http) {
        refused(peer, "origin", &why);
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    let key = match upgrade_key(headers) {
        Ok(key) => key,
        Err(why) => {
            refused(peer, "bad_upgrade", why);
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
    };
    let Ok(permit) = state.connections.clone().try_acquire_owned() else {
        refused(peer, "max_connections", "at bridge.max_connections");
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    let (codec, subprotocol) = Codec::negotiate(offered_protocols(headers));
    let admission = admission(&state.auth.current(), &config.auth, headers, request.uri());
    let on_upgrade = hyper::upgrade::on(&mut request);
    // Unfinished frames are bounded: 4 × max_frame, and frame_timeout_ms.
    let hard_limit = config.bridge.max_frame.as_usize().saturating_mul(4);
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(BROWSER_READ_BUFFER)
        .write_buffer_size(8 * 1024)
        .max_message_size(Some(hard_limit))
        .max_frame_size(Some(hard_limit));
    let bridge = state.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = Watched::new(TokioIo::new(upgraded));
                let socket =
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await;
                crate::socket::serve(socket, bridge, peer.to_string(), permit, admission, codec)
                    .await;
            }
            Err(e) => debug!(%peer, "WebSocket upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(subprotocol) = subprotocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(subprotocol),
        );
    }
    response
}

fn refused(peer: SocketAddr, reason: &'static str, why: &str) {
    counter!("switchboard_bridge_refusals_total", "reason" => reason).increment(1);
    if switchboard_broker::repeats::allow_refusal(reason) {
        warn!(%peer, reason, "browser refused: {}", why.trim_end());
    }
}

/// The `Sec-WebSocket-Key` of a valid RFC 6455 upgrade request.
fn upgrade_key(headers: &HeaderMap) -> Result<String, &'static str> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err("/ws needs a WebSocket upgrade request");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return Err("Sec-WebSocket-Version must be 13");
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or("missing Sec-WebSocket-Key")
}

fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}
