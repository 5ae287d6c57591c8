//! Accept loops for the four MQTT listeners: connection cap, handshake deadline,
//! then one task per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{error, warn};

use crate::connection::{serve, Incoming};
use crate::packet::Refusal;
use crate::transport::{ByteStream, MqttIo, WsStream};
use crate::watched::Watched;
use crate::Edge;

/// Initial read buffer of an MQTT-over-WebSocket connection (it grows for larger
/// frames; tungstenite's default of 128 KiB would be held by every idle client).
const WS_READ_BUFFER: usize = 4096;

/// The WebSocket path MQTT clients connect to.
pub const MQTT_WS_PATH: &str = "/mqtt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl ListenerKind {
    pub fn label(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }
}

/// A bound MQTT listener, ready to accept.
pub struct BoundListener {
    pub kind: ListenerKind,
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

impl BoundListener {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }
}

/// What every accept loop shares.
#[derive(Clone)]
pub struct AcceptContext {
    pub edge: Arc<Edge>,
    pub connections: Arc<Semaphore>,
    pub refusals: Arc<Semaphore>,
    pub per_ip: Arc<crate::per_ip::PerIp>,
    pub shutdown: watch::Receiver<bool>,
    /// Held by every connection task; the broker waits for all clones to drop.
    pub alive: mpsc::Sender<()>,
}

pub async fn accept_loop(bound: BoundListener, ctx: AcceptContext) {
    let BoundListener {
        kind,
        listener,
        tls,
    } = bound;
    let mut shutdown = ctx.shutdown.clone();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // Usually out of file descriptors: wait, do not spin.
                error!(
                    listener = kind.label(),
                    "accept failed: {e}; retrying in {backoff:?}"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let per_ip = match ctx.per_ip.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(reason) => {
                counter!("switchboard_mqtt_refusals_total", "reason" => reason).increment(1);
                if crate::repeats::allow_refusal(reason) {
                    warn!(%peer, listener = kind.label(), reason, "connection refused at accept ([mqtt] {reason})");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let permit = ctx.connections.clone().try_acquire_owned().ok();
        let refusal_slot = match permit {
            Some(_) => None,
            None => match ctx.refusals.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    counter!("switchboard_mqtt_refusals_total", "reason" => Refusal::ServerBusy.label()).increment(1);
                    if crate::repeats::allow_refusal("mqtt refused: server_busy") {
                        warn!(%peer, listener = kind.label(), reason = "server_busy", "connection refused: at max_connections, closed without CONNACK");
                    }
                    continue;
                }
            },
        };
        let held = Held {
            _per_ip: per_ip,
            admitted: permit,
            _refusal_slot: refusal_slot,
            _alive: ctx.alive.clone(),
        };
        let deadline = handshake_deadline(&ctx.edge);
        let handshake = match (kind, &tls) {
            (ListenerKind::Tcp, _) => {
                // Plain TCP, by far the most connections, needs no handshake task:
                // the connection's task holds nothing but the connection.
                let incoming = held.incoming(ByteStream::new(stream), &ctx, peer, kind, deadline);
                tokio::spawn(async move {
                    serve(incoming).await;
                    drop(held);
                });
                continue;
            }
            (ListenerKind::Ws, _) => Handshake::WebSocket,
            (ListenerKind::Tls, Some(acceptor)) => Handshake::Tls(acceptor.clone()),
            (ListenerKind::Wss, Some(acceptor)) => Handshake::TlsWebSocket(acceptor.clone()),
            (_, None) => {
                error!(
                    listener = kind.label(),
                    "secure listener without a TLS acceptor"
                );
                continue;
            }
        };
        tokio::spawn(handshake_then_serve(
            stream,
            peer,
            kind,
            handshake,
            ctx.clone(),
            held,
            deadline,
        ));
    }
}

/// What a connection holds until it ends: its connection slot (or, refused, its
/// refusal slot) and the broker's liveness token.
struct Held {
    _per_ip: Option<crate::per_ip::PerIpSlot>,
    /// `None` when the server is at `max_connections`.
    admitted: Option<OwnedSemaphorePermit>,
    _refusal_slot: Option<OwnedSemaphorePermit>,
    _alive: mpsc::Sender<()>,
}

impl Held {
    fn incoming<I: MqttIo>(
        &self,
        io: I,
        ctx: &AcceptContext,
        peer: SocketAddr,
        kind: ListenerKind,
        deadline: Instant,
    ) -> Box<Incoming<I>> {
        Box::new(Incoming {
            io,
            edge: ctx.edge.clone(),
            peer,
            listener: kind.label(),
            admitted: self.admitted.is_some(),
            deadline,
            identity: None,
        })
    }
}

/// The handshake a listener needs before MQTT starts.
enum Handshake {
    WebSocket,
    Tls(TlsAcceptor),
    TlsWebSocket(TlsAcceptor),
}

/// Each transport's handshake is boxed on its own, so that a connection's task holds
/// only what its transport needs.
async fn handshake_then_serve(
    stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    handshake: Handshake,
    ctx: AcceptContext,
    held: Held,
    deadline: Instant,
) {
    let label = kind.label();
    let limits = WsLimits::of(&ctx.edge.config);
    let (acceptor, then_websocket) = match handshake {
        Handshake::WebSocket => {
            Box::pin(async {
                if let Some(ws) = websocket(stream, peer, label, deadline, &limits).await {
                    serve(held.incoming(ws, &ctx, peer, kind, deadline)).await;
                }
            })
            .await;
            return;
        }
        Handshake::Tls(acceptor) => (acceptor, false),
        Handshake::TlsWebSocket(acceptor) => (acceptor, true),
    };
    Box::pin(async {
        let tls_stream = match timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return handshake_failed(
                    peer,
                    label,
                    Refusal::Handshake,
                    &format!("TLS handshake failed: {e}"),
                )
            }
            Err(_) => {
                return handshake_failed(peer, label, Refusal::Timeout, "TLS handshake timed out")
            }
        };
        let identity = crate::tls::client_identity(tls_stream.get_ref().1);
        if !then_websocket {
            let io = ByteStream::new(tls_stream);
            let mut incoming = held.incoming(io, &ctx, peer, kind, deadline);
            incoming.identity = identity;
            serve(incoming).await;
        } else if let Some(ws) = websocket(tls_stream, peer, label, deadline, &limits).await {
            let mut incoming = held.incoming(ws, &ctx, peer, kind, deadline);
            incoming.identity = identity;
            serve(incoming).await;
        }
    })
    .await;
}

/// When the TLS / WebSocket handshake and CONNECT must be done by.
fn handshake_deadline(edge: &Edge) -> Instant {
    Instant::now() + Duration::from_secs(edge.config.mqtt.connect_timeout_secs)
}

/// A TLS or WebSocket handshake that failed (`Refusal::Handshake`) or did not finish
/// within `connect_timeout_secs` (`Refusal::Timeout`).
fn handshake_failed(peer: SocketAddr, listener: &'static str, reason: Refusal, detail: &str) {
    counter!("switchboard_mqtt_refusals_total", "reason" => reason.label()).increment(1);
    if crate::repeats::allow_refusal(reason.label()) {
        warn!(%peer, listener, reason = reason.label(), "connection refused: {detail}");
    }
}

/// What an MQTT WebSocket frame may hold, how long it may take, and which browser
/// pages may open one (`[http] allowed_origins`, as for `/ws`).
struct WsLimits<'a> {
    /// One packet: `max_payload` plus room for topic and properties.
    max_message: usize,
    frame_timeout: Duration,
    http: &'a switchboard_config::HttpConfig,
}

impl WsLimits<'_> {
    fn of(config: &switchboard_config::Config) -> WsLimits<'_> {
        WsLimits {
            max_message: config.mqtt.max_payload.as_usize() + 128 * 1024,
            frame_timeout: Duration::from_secs(config.mqtt.packet_timeout_secs),
            http: &config.http,
        }
    }
}

/// The WebSocket upgrade for MQTT: path `/mqtt`, answering the `mqtt` subprotocol.
async fn websocket<S>(
    stream: S,
    peer: SocketAddr,
    listener: &'static str,
    deadline: Instant,
    limits: &WsLimits<'_>,
) -> Option<WsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.max_message))
        .max_frame_size(Some(limits.max_message))
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0);
    let http = limits.http;
    // The callback's error is tungstenite's response type: its size is not ours.
    #[allow(clippy::result_large_err)]
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        Watched::new(stream),
        |request: &Request, response: Response| choose_subprotocol(request, response, http),
        Some(config),
    );
    match timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => Some(WsStream::new(ws, limits.frame_timeout)),
        Ok(Err(e)) => {
            handshake_failed(
                peer,
                listener,
                Refusal::Handshake,
                &format!("WebSocket handshake failed: {e}"),
            );
            None
        }
        Err(_) => {
            handshake_failed(
                peer,
                listener,
                Refusal::Timeout,
                "WebSocket handshake timed out",
            );
            None
        }
    }
}

#[allow(clippy::result_large_err)]
fn choose_subprotocol(
    request: &Request,
    mut response: Response,
    http: &switchboard_config::HttpConfig,
) -> Result<Response, ErrorResponse> {
    let origin = request
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok());
    if let Err(why) = crate::origin::check(origin, http) {
        counter!("switchboard_mqtt_refusals_total", "reason" => "origin").increment(1);
        let mut refusal = ErrorResponse::new(Some(why));
        *refusal.status_mut() = StatusCode::FORBIDDEN;
        return Err(refusal);
    }
    if request.uri().path() != MQTT_WS_PATH {
        let mut refusal = ErrorResponse::new(Some(format!(
            "MQTT over WebSocket is served at {MQTT_WS_PATH}"
        )));
        *refusal.status_mut() = StatusCode::NOT_FOUND;
        return Err(refusal);
    }
    let offered = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| matches!(*p, "mqtt" | "mqttv3.1"))
        .map(str::to_string);
    if let Some(protocol) = offered {
        if let Ok(value) = HeaderValue::from_str(&protocol) {
            response
                .headers_mut()
                .insert("sec-websocket-protocol", value);
        }
    }
    Ok(response)
}
