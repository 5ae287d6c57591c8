//! One MQTT client's life after CONNACK: the packet loop (socket in, session out,
//! keep-alive, kicks, publisher backpressure) and an orderly end (will, presence,
//! session kept or ended).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use metrics::Counter;
use rumqttd::protocol::DisconnectReasonCode;
use switchboard_router::{Attached, Session};
use tokio::time::{sleep_until, Instant};
use tracing::info;

use crate::codec::Codec;
use crate::establish::{establish, Accepted};
use crate::events::{OfflineReason, RetainedChange};
use crate::presence::Presence;
use crate::rate::TokenBucket;
use crate::sessions::{Kick, SessionClaim};
use crate::transport::MqttIo;
use crate::Edge;

/// Bytes gathered before one socket write.
pub(crate) const WRITE_BATCH: usize = 256 * 1024;
/// Room for topic, properties and header on top of `max_payload`.
pub(crate) const PACKET_OVERHEAD: usize = 64 * 1024 + 16;

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The client sent DISCONNECT (v5 may ask for its will anyway, and may change
    /// the session expiry).
    Disconnect {
        with_will: bool,
        session_expiry: Option<u32>,
    },
    Closed,
    KeepAlive,
    TakenOver,
    Shutdown,
    /// We ended it for a protocol or limit violation; v5 clients get this reason code.
    Violation(DisconnectReasonCode, String),
    Io(String),
}

impl End {
    fn offline_reason(&self, had_will: bool) -> OfflineReason {
        match self {
            End::Disconnect {
                with_will: false, ..
            } => OfflineReason::Disconnect,
            End::KeepAlive => OfflineReason::KeepAlive,
            End::TakenOver => OfflineReason::TakenOver,
            End::Shutdown | End::Violation(..) => OfflineReason::Kicked,
            _ if had_will => OfflineReason::Will,
            _ => OfflineReason::Error,
        }
    }

    fn publishes_will(&self) -> bool {
        !matches!(
            self,
            End::Disconnect {
                with_will: false,
                ..
            } | End::Shutdown
        )
    }
}

pub(crate) fn violation(code: DisconnectReasonCode, why: &str) -> End {
    End::Violation(code, why.to_string())
}

/// Serves one connection whose TLS / WebSocket handshake (if any) is done.
///
/// The connection's state lives in one box and start and end run boxed apart from the
/// packet loop, so an idle connection's task holds little more than the loop's waits
/// (tens of thousands of them are kept in memory).
pub async fn serve<I: MqttIo>(incoming: Box<Incoming<I>>) {
    let opened = Box::pin(establish(incoming)).await;
    if let Some(mut live) = opened {
        let end = live.run().await;
        Box::pin(live.wrap_up(end)).await;
    }
}

/// A connection whose TLS / WebSocket handshake (if any) is done, boxed so the
/// connection's task does not keep room for it after CONNECT.
pub struct Incoming<I> {
    pub io: I,
    pub edge: Arc<Edge>,
    pub peer: SocketAddr,
    pub listener: &'static str,
    /// False when the server is at `max_connections`: the client is then told
    /// "server busy" in its own protocol version.
    pub admitted: bool,
    /// When CONNECT must have arrived.
    pub deadline: Instant,
    /// The CN of a verified TLS client certificate: the client's username.
    pub identity: Option<String>,
}

type Waiting = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Packets and bytes in and out, per listener.
pub(crate) struct PacketCounters {
    pub packets_in: Counter,
    pub packets_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

impl PacketCounters {
    /// Registered at start-up, so every listener's series exist (at zero) before its
    /// first client.
    pub fn for_listener(listener: &'static str) -> Arc<PacketCounters> {
        Arc::new(PacketCounters {
            packets_in: metrics::counter!("switchboard_mqtt_packets_in_total", "listener" => listener),
            packets_out: metrics::counter!("switchboard_mqtt_packets_out_total", "listener" => listener),
            bytes_in: metrics::counter!("switchboard_mqtt_bytes_in_total", "listener" => listener),
            bytes_out: metrics::counter!("switchboard_mqtt_bytes_out_total", "listener" => listener),
        })
    }
}

/// A connection past CONNACK: what its packet loop and its end need.
pub(crate) struct Live<I> {
    pub connection: Connection<I>,
    pub claim: SessionClaim,
    pub accepted: Accepted,
    pub presence: Presence,
    pub peer: SocketAddr,
    pub buf: BytesMut,
    /// While set, the socket is not read: a subscriber this client published to is
    /// over its queue bound.
    pub waiting: Option<Waiting>,
}

/// Per-connection state the packet handlers share.
pub(crate) struct Connection<I> {
    pub io: I,
    pub codec: Codec,
    pub edge: Arc<Edge>,
    pub client_id: Arc<str>,
    /// The session in the core. A clean session that ends with the connection is
    /// opened on first need (an idle client then holds none).
    pub attached: Option<Attached>,
    /// The client's Receive Maximum, for a session opened later.
    pub send_quota: u16,
    pub out: BytesMut,
    /// v5 topic aliases the client set up (bounded by our Topic Alias Maximum).
    pub aliases: BTreeMap<u16, Bytes>,
    pub client_max_packet: Option<usize>,
    /// Shared by every connection of its listener.
    pub counters: Arc<PacketCounters>,
    /// Retained changes of the current read, queued for the store after routing.
    pub retained_writes: Vec<RetainedChange>,
    /// Sessions over their bound that this read's QoS 1/2 publishes went to.
    pub congested: Vec<Arc<Session>>,
    /// The session expiry in force (seconds; v5 DISCONNECT may change it).
    pub session_expiry: u32,
    /// What the ACL lets this client read and write.
    pub access: crate::auth::ClientAccess,
    /// PUBLISH packets taken from the current read (for `max_messages_per_sec`).
    pub publishes_read: u32,
    /// `[mqtt] max_messages_per_sec`, when set, over the client's PUBLISH packets:
    /// past it, the socket is not read until the client is back within its rate
    /// (TCP backpressure, nothing dropped).
    pub publish_rate: Option<TokenBucket>,
}

impl<I: MqttIo> Live<I> {
    /// The packet loop: socket → core, session → socket, keep-alive, kicks.
    async fn run(&mut self) -> End {
        let Live {
            connection,
            claim,
            accepted,
            buf,
            waiting,
            ..
        } = self;
        let idle_limit = (accepted.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(accepted.keep_alive) * 1500));
        let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut idle_deadline = idle_limit.map_or(far_future, |d| Instant::now() + d);
        // A login by token ends when the token does (EMQX's disconnect_after_expire).
        let token_deadline = match connection.access.token_left() {
            Some(left) => Instant::now()
                .checked_add(left)
                .unwrap_or(far_future)
                .min(far_future),
            None => far_future,
        };
        let patience = Duration::from_millis(connection.edge.config.mqtt.publisher_wait_ms);
        let packet_timeout = Duration::from_secs(connection.edge.config.mqtt.packet_timeout_secs);
        // When the first bytes of a packet not yet complete arrived.
        let mut partial_since: Option<Instant> = None;
        loop {
            if !buf.is_empty() && waiting.is_none() {
                if let Err(end) = Box::pin(connection.take_incoming(buf)).await {
                    return end;
                }
                if !connection.congested.is_empty() {
                    let congested = std::mem::take(&mut connection.congested);
                    *waiting = Some(Box::pin(wait_for_room(congested, patience)));
                }
                let published = std::mem::take(&mut connection.publishes_read);
                if let Some(pause) = connection
                    .publish_rate
                    .as_mut()
                    .and_then(|r| r.take_owing(published))
                {
                    if waiting.is_none() {
                        metrics::counter!("switchboard_mqtt_rate_limited_total").increment(1);
                        *waiting = Some(Box::pin(tokio::time::sleep(pause)));
                    }
                }
            }
            // What is left in the buffer is the start of a packet (unless decoding
            // stopped for a congested subscriber).
            partial_since = match (buf.is_empty() || waiting.is_some(), partial_since) {
                (true, _) => None,
                (false, since) => since.or_else(|| Some(Instant::now())),
            };
            let packet_deadline = partial_since.map_or(far_future, |since| since + packet_timeout);
            if let Err(end) = connection.send_outbound().await {
                return end;
            }
            if buf.is_empty() {
                // Idle connections hold no read buffer; the transport reserves one
                // when bytes arrive.
                *buf = BytesMut::new();
            }
            let io = &mut connection.io;
            let session = connection.attached.as_ref().map(|a| &*a.session);
            tokio::select! {
                kick = &mut claim.kicked => return match kick {
                    Ok(Kick::Shutdown) => End::Shutdown,
                    Ok(Kick::TakenOver(finished)) => {
                        claim.finished = Some(finished);
                        End::TakenOver
                    }
                    Err(_) => End::TakenOver,
                },
                read = std::future::poll_fn(|cx| io.poll_read_into(cx, buf)), if waiting.is_none() => match read {
                    Ok(0) => return End::Closed,
                    Ok(read) => {
                        connection.counters.bytes_in.increment(read as u64);
                        if let Some(limit) = idle_limit {
                            idle_deadline = Instant::now() + limit;
                        }
                    }
                    Err(e) => return End::Io(e.to_string()),
                },
                _ = work(session) => {}
                _ = until_done(waiting) => {
                    *waiting = None;
                    if let Some(limit) = idle_limit {
                        idle_deadline = Instant::now() + limit;
                    }
                }
                // One timer for the three deadlines: every idle connection holds
                // this future, and each timer in it costs its size.
                _ = sleep_until(token_deadline.min(packet_deadline).min(idle_deadline)) => {
                    let now = Instant::now();
                    if now >= token_deadline {
                        return End::Violation(DisconnectReasonCode::NotAuthorized, "token expired".into());
                    }
                    if now >= packet_deadline {
                        return End::Io("packet not finished in time ([mqtt] packet_timeout_secs)".into());
                    }
                    if now >= idle_deadline {
                        if waiting.is_none() {
                            return End::KeepAlive;
                        }
                        // Not read while paused: the client cannot be blamed for silence.
                        idle_deadline = idle_limit.map_or(far_future, |d| Instant::now() + d);
                    }
                }
            }
        }
    }

    /// After the packet loop: DISCONNECT, session kept or ended, will, log line,
    /// presence.
    async fn wrap_up(self: Box<Self>, end: End) {
        let Live {
            mut connection,
            claim,
            mut accepted,
            presence,
            peer,
            ..
        } = *self;
        let listener = presence.listener;
        let reason = end.offline_reason(accepted.will.is_some());
        if let End::Disconnect {
            session_expiry: Some(secs),
            ..
        } = &end
        {
            connection.session_expiry = accepted.grant_session_expiry(*secs);
        }
        connection.finish(&end).await;
        let expiry = Duration::from_secs(u64::from(connection.session_expiry));
        if let Some(attached) = &connection.attached {
            connection.edge.router.disconnect(attached, expiry);
        }
        if end.publishes_will() {
            if let Some(will) = accepted.will.take() {
                crate::will::publish(
                    &connection.edge,
                    &connection.client_id,
                    *will,
                    matches!(end, End::TakenOver),
                );
            }
        }
        let detail = match &end {
            End::Violation(_, why) | End::Io(why) => why.as_str(),
            _ => "",
        };
        if crate::repeats::allow("client disconnected") {
            info!(
                client_id = %connection.client_id,
                %peer,
                listener,
                reason = reason.label(),
                detail,
                "client disconnected"
            );
        }
        presence.offline(reason);
        drop(claim);
    }
}

/// Waits for each congested subscriber to have room (or to be given up on).
async fn wait_for_room(sessions: Vec<Arc<Session>>, patience: Duration) {
    for session in sessions {
        session.wait_for_room(patience).await;
    }
}

async fn work(session: Option<&Session>) {
    match session {
        Some(session) => session.work().await,
        None => std::future::pending().await,
    }
}

impl<I> Connection<I> {
    /// The session, opened now if this clean session has none yet.
    pub fn session(&mut self) -> Result<Arc<Session>, End> {
        if let Some(attached) = &self.attached {
            return Ok(attached.session.clone());
        }
        let attached = self
            .edge
            .router
            .connect(&self.client_id, true, self.send_quota, Duration::ZERO)
            .map_err(|_| {
                violation(
                    DisconnectReasonCode::QuotaExceeded,
                    "at max_sessions: no session for this client",
                )
            })?;
        let session = attached.session.clone();
        self.attached = Some(attached);
        Ok(session)
    }

    /// The session if it has been opened.
    pub fn opened_session(&self) -> Option<Arc<Session>> {
        self.attached.as_ref().map(|a| a.session.clone())
    }
}

async fn until_done(waiting: &mut Option<Waiting>) {
    match waiting.as_mut() {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}
