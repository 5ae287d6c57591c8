//! One MQTT client's life: CONNECT, a link to the router, packets pumped both ways
//! with backpressure, keep-alive, and an orderly end (will, presence, router cleanup).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use metrics::{counter, gauge, Counter};
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{
    ConnAck, ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode, Packet,
    PingResp, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason,
};
use rumqttd::Notification;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use crate::codec::Codec;
use crate::connect::{client_id_problem, read_connect, ConnectRequest};
use crate::events::{now_ms, DeviceInfo, OfflineReason, RetainedChange};
use crate::packet::{
    client_may_send, fixed_header, kind, publish_qos_and_pkid, refusal, Refusal, Version,
};
use crate::sessions::{Kick, SessionClaim};
use crate::transport::MqttIo;
use crate::will::Will;
use crate::Edge;

/// Packets waiting in our link's buffer for the router before we stop reading the
/// socket (backpressure on publishers the router itself never throttles).
const INCOMING_HIGH_WATER: usize = 1_000;
/// Router channel events in flight before every connection pauses its reads.
const ROUTER_HIGH_WATER: usize = 800;
/// Bytes gathered from the router before one socket write.
const WRITE_BATCH: usize = 256 * 1024;
/// Room for topic, properties and header on top of `max_payload`.
const PACKET_OVERHEAD: usize = 64 * 1024 + 16;
/// How long a paused reader waits before checking the router again.
const BACKPRESSURE_POLL: Duration = Duration::from_millis(1);

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// The client sent DISCONNECT (v5 may ask for its will anyway).
    Disconnect {
        with_will: bool,
    },
    Closed,
    KeepAlive,
    TakenOver,
    Shutdown,
    /// We ended it for a protocol or limit violation; v5 clients get this reason code.
    Violation(DisconnectReasonCode, String),
    Io(String),
    RouterGone,
}

impl End {
    fn offline_reason(&self, had_will: bool) -> OfflineReason {
        match self {
            End::Disconnect { with_will: false } => OfflineReason::Disconnect,
            End::KeepAlive => OfflineReason::KeepAlive,
            End::TakenOver => OfflineReason::TakenOver,
            End::Shutdown | End::Violation(..) => OfflineReason::Kicked,
            _ if had_will => OfflineReason::Will,
            _ => OfflineReason::Error,
        }
    }

    fn publishes_will(&self) -> bool {
        !matches!(self, End::Disconnect { with_will: false } | End::Shutdown)
    }
}

/// Serves one connection whose TLS / WebSocket handshake (if any) is done.
/// `admitted` is false when the server is at `max_connections`: the client is then
/// told "server busy" in its own protocol version.
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
}

/// A connection past CONNACK: what its packet loop and its end need.
struct Live<I> {
    connection: Connection<I>,
    claim: SessionClaim,
    accepted: Accepted,
    presence: Presence,
    peer: SocketAddr,
    buf: BytesMut,
}

impl<I: MqttIo> Live<I> {
    /// The packet loop: socket → router, router → socket, keep-alive, kicks.
    async fn run(&mut self) -> End {
        let Live {
            connection,
            claim,
            accepted,
            buf,
            ..
        } = self;
        let idle_limit = (accepted.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(accepted.keep_alive) * 1500));
        let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut idle_deadline = idle_limit.map_or(far_future, |d| Instant::now() + d);
        let mut paused = false;
        loop {
            if !buf.is_empty() && !paused {
                match Box::pin(connection.take_incoming(buf)).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Pause) => paused = true,
                    Err(end) => return end,
                }
            }
            if buf.is_empty() {
                // Idle connections hold no read buffer; the transport reserves one
                // when bytes arrive.
                *buf = BytesMut::new();
            }
            // One timer serves both the keep-alive deadline and, while paused, the
            // check whether the router has caught up.
            let wake_at = if paused {
                idle_deadline.min(Instant::now() + BACKPRESSURE_POLL)
            } else {
                idle_deadline
            };
            let io = &mut connection.io;
            tokio::select! {
                kick = &mut claim.kicked => return match kick {
                    Ok(Kick::Shutdown) => End::Shutdown,
                    Ok(Kick::TakenOver(finished)) => {
                        claim.finished = Some(finished);
                        End::TakenOver
                    }
                    Err(_) => End::TakenOver,
                },
                read = std::future::poll_fn(|cx| io.poll_read_into(cx, buf)), if !paused => match read {
                    Ok(0) => return End::Closed,
                    Ok(_) => {
                        if let Some(limit) = idle_limit {
                            idle_deadline = Instant::now() + limit;
                        }
                    }
                    Err(e) => return End::Io(e.to_string()),
                },
                notification = next_notification(&mut connection.link) => match notification {
                    Ok(first) => {
                        if let Err(end) = Box::pin(connection.deliver(first)).await {
                            return end;
                        }
                    }
                    Err(_) => return End::RouterGone,
                },
                _ = sleep_until(wake_at) => {
                    if Instant::now() >= idle_deadline {
                        return End::KeepAlive;
                    }
                    paused = connection.router_is_behind();
                }
            }
        }
    }

    /// After the packet loop: DISCONNECT, router cleanup, will, log line, presence.
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
        connection.finish(&end).await;
        if end.publishes_will() {
            if let Some(will) = accepted.will.take() {
                publish_will(
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
        info!(
            client_id = %connection.client_id,
            %peer,
            listener,
            reason = reason.label(),
            detail,
            "client disconnected"
        );
        presence.offline(reason);
        drop(claim);
    }
}

/// Reads CONNECT, answers it (refusing or accepting) and claims the client id.
async fn establish<I: MqttIo>(incoming: Box<Incoming<I>>) -> Option<Box<Live<I>>> {
    let Incoming {
        mut io,
        edge,
        peer,
        listener,
        admitted,
        deadline: handshake_deadline,
    } = *incoming;
    let config = &edge.config.mqtt;
    let max_remaining = config.max_payload.as_usize() + PACKET_OVERHEAD;
    let mut buf = BytesMut::new();

    let read = timeout_at(
        handshake_deadline,
        read_connect(&mut io, &mut buf, max_remaining),
    )
    .await;
    let (request, codec) = match read {
        None => {
            refuse_quietly(
                &mut io,
                peer,
                listener,
                Refusal::Timeout,
                "no CONNECT before the deadline",
            )
            .await;
            return None;
        }
        Some(Err(failure)) => {
            if let Some(version) = failure.version {
                refuse(
                    &mut io,
                    &codec_for(version),
                    peer,
                    listener,
                    failure.refusal,
                    &failure.detail,
                )
                .await;
            } else {
                refuse_quietly(&mut io, peer, listener, failure.refusal, &failure.detail).await;
            }
            return None;
        }
        Some(Ok(parsed)) => parsed,
    };

    if !admitted {
        let detail = format!("at max_connections ({})", config.max_connections);
        refuse(
            &mut io,
            &codec,
            peer,
            listener,
            Refusal::ServerBusy,
            &detail,
        )
        .await;
        return None;
    }
    let accepted = match admit(&edge, request, peer) {
        Ok(accepted) => accepted,
        Err((reason, detail)) => {
            refuse(&mut io, &codec, peer, listener, reason, &detail).await;
            return None;
        }
    };

    let (claim, took_over) = edge.sessions.claim(&accepted.client_id).await;
    // A clean session has nothing in the router yet: its link (rumqttd reserves
    // ~12 KiB per link) is opened when the client first needs the router.
    let mut link = None;
    let mut session_present = false;
    if !accepted.router_clean_session {
        match edge.links.open(accepted.client_id.to_string(), false).await {
            Ok((link_tx, link_rx, connack)) => {
                session_present = matches!(
                    Option::<Packet>::from(connack),
                    Some(Packet::ConnAck(
                        ConnAck {
                            session_present: true,
                            ..
                        },
                        _
                    ))
                ) && !accepted.clean_start;
                link = Some(RouterLink::new(link_tx, link_rx));
            }
            Err(e) => {
                let detail = format!("router refused the link: {e}");
                refuse(
                    &mut io,
                    &codec,
                    peer,
                    listener,
                    Refusal::ServerBusy,
                    &detail,
                )
                .await;
                return None;
            }
        }
    }

    let mut connection = Connection {
        io,
        codec,
        edge: edge.clone(),
        client_id: accepted.client_id.clone(),
        link,
        out: BytesMut::new(),
        aliases: BTreeMap::new(),
        self_completed_qos2: BTreeSet::new(),
        client_max_packet: accepted.client_max_packet,
        packets_in: counter!("switchboard_mqtt_packets_in_total", "listener" => listener),
        packets_out: counter!("switchboard_mqtt_packets_out_total", "listener" => listener),
        retained_writes: Vec::new(),
    };
    let connack = connack_packet(&edge, &accepted, session_present);
    if let Err(e) = connection.write_now(connack).await {
        warn!(client_id = %accepted.client_id, %peer, listener, "could not send CONNACK: {e}");
        connection.leave_router().await;
        return None;
    }
    let presence = Presence::online(&edge, &accepted, listener, peer, took_over);
    Some(Box::new(Live {
        connection,
        claim,
        accepted,
        presence,
        peer,
        buf,
    }))
}

fn codec_for(version: Version) -> Codec {
    Codec::new(version)
}

async fn timeout_at<F: std::future::Future>(deadline: Instant, f: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, f).await.ok()
}

/// What CONNECT asked for, after the edge's checks.
struct Accepted {
    version: Version,
    /// Shared by the connection, its session claim and its presence entries.
    client_id: Arc<str>,
    assigned_id: bool,
    username: Option<String>,
    clean_start: bool,
    /// v5: clean start, or a session that ends with the connection (expiry 0).
    router_clean_session: bool,
    keep_alive: u16,
    server_keep_alive: Option<u16>,
    client_max_packet: Option<usize>,
    will: Option<Box<Will>>,
}

fn admit(
    edge: &Edge,
    request: ConnectRequest,
    peer: SocketAddr,
) -> Result<Accepted, (Refusal, String)> {
    let config = &edge.config.mqtt;
    let ConnectRequest {
        version,
        client_id,
        keep_alive,
        clean_start,
        properties,
        will,
        will_properties,
        login,
    } = request;

    let (client_id, assigned_id) = if client_id.is_empty() {
        if version == Version::V311 && !clean_start {
            return Err((
                Refusal::ClientIdInvalid,
                "an empty client id needs clean session in MQTT 3.1.1".into(),
            ));
        }
        (format!("auto-{}", uuid::Uuid::new_v4().simple()), true)
    } else {
        (client_id, false)
    };
    if let Some(problem) = client_id_problem(&client_id, config.max_client_id_len) {
        return Err((Refusal::ClientIdInvalid, problem));
    }

    let (keep_alive, server_keep_alive) = match (config.max_keepalive, version) {
        (0, _) => (keep_alive, None),
        (max, Version::V5) if keep_alive == 0 || keep_alive > max => (max, Some(max)),
        (max, Version::V311) if keep_alive == 0 || keep_alive > max => {
            return Err((
                Refusal::KeepAliveTooLong,
                format!("keep-alive {keep_alive}s is over max_keepalive {max}s"),
            ))
        }
        _ => (keep_alive, None),
    };

    let session_expiry = properties
        .as_ref()
        .and_then(|p| p.session_expiry_interval)
        .unwrap_or(0);
    let router_clean_session = match version {
        Version::V311 => clean_start,
        Version::V5 => clean_start || session_expiry == 0,
    };
    let client_max_packet = properties
        .as_ref()
        .and_then(|p| p.max_packet_size)
        .map(|n| n as usize);
    let will = will.map(|w| {
        let expiry = if version == Version::V5 {
            session_expiry
        } else {
            0
        };
        Box::new(Will::from_connect(w, will_properties, expiry))
    });
    debug!(%client_id, %peer, "CONNECT accepted");
    Ok(Accepted {
        version,
        client_id: Arc::from(client_id),
        assigned_id,
        username: login.map(|l| l.username).filter(|u| !u.is_empty()),
        clean_start,
        router_clean_session,
        keep_alive,
        server_keep_alive,
        client_max_packet,
        will,
    })
}

fn connack_packet(edge: &Edge, accepted: &Accepted, session_present: bool) -> Packet {
    let config = &edge.config.mqtt;
    let properties = (accepted.version == Version::V5).then(|| ConnAckProperties {
        assigned_client_identifier: accepted.assigned_id.then(|| accepted.client_id.to_string()),
        server_keep_alive: accepted.server_keep_alive,
        topic_alias_max: Some(config.topic_alias_max),
        max_packet_size: u32::try_from(config.max_payload.as_usize() + PACKET_OVERHEAD).ok(),
        retain_available: Some(1),
        wildcard_subscription_available: Some(1),
        shared_subscription_available: Some(1),
        subscription_identifiers_available: Some(0),
        ..Default::default()
    });
    Packet::ConnAck(
        ConnAck {
            session_present,
            code: ConnectReturnCode::Success,
        },
        properties,
    )
}

/// Sends a refusing CONNACK, then closes. One log line, one metric.
async fn refuse<I: MqttIo>(
    io: &mut I,
    codec: &Codec,
    peer: SocketAddr,
    listener: &'static str,
    reason: Refusal,
    detail: &str,
) {
    let mut out = BytesMut::new();
    if codec
        .write(refusal(codec.version(), reason, detail), &mut out)
        .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(2), io.write_bytes(&out)).await;
    }
    refuse_quietly(io, peer, listener, reason, detail).await;
}

/// Closes without a CONNACK (no CONNECT was understood), with a log line and a metric.
async fn refuse_quietly<I: MqttIo>(
    io: &mut I,
    peer: SocketAddr,
    listener: &'static str,
    reason: Refusal,
    detail: &str,
) {
    counter!("switchboard_mqtt_refusals_total", "reason" => reason.label()).increment(1);
    warn!(%peer, listener, reason = reason.label(), "connection refused: {detail}");
    let _ = tokio::time::timeout(Duration::from_secs(1), io.close()).await;
}

fn publish_will(edge: &Arc<Edge>, client_id: &str, will: Will, taken_over: bool) {
    // A session taken over continues on the new connection: a delayed will is void.
    if taken_over && !will.delay.is_zero() {
        return;
    }
    let publisher = edge.internal.clone();
    let id = client_id.to_string();
    // Delayed wills wait in memory: at most one per connection slot, else they go now.
    let room_to_wait = edge.sessions.delayed_will_count() < edge.config.mqtt.max_connections;
    if will.delay.is_zero() || !room_to_wait {
        tokio::spawn(async move { publisher.publish_will(&id, will).await });
    } else {
        let delay = will.delay;
        let task_id = id.clone();
        edge.sessions.schedule_will(&id, delay, async move {
            publisher.publish_will(&task_id, will).await;
        });
    }
}

/// Device presence for one connection: the online event when made, the offline one
/// when finished (also if the task panics, with reason `error`).
struct Presence {
    edge: Arc<Edge>,
    client_id: Arc<str>,
    listener: &'static str,
    reason: Option<OfflineReason>,
}

impl Presence {
    fn online(
        edge: &Arc<Edge>,
        accepted: &Accepted,
        listener: &'static str,
        peer: SocketAddr,
        took_over: bool,
    ) -> Presence {
        gauge!("switchboard_mqtt_connections", "listener" => listener).increment(1.0);
        counter!("switchboard_mqtt_connections_total", "listener" => listener).increment(1);
        info!(
            client_id = %accepted.client_id,
            %peer,
            listener,
            protocol = accepted.version.label(),
            keep_alive = accepted.keep_alive,
            clean_start = accepted.clean_start,
            took_over,
            "client connected"
        );
        edge.events.device_online(DeviceInfo {
            client_id: accepted.client_id.clone(),
            username: accepted.username.clone(),
            since_ms: now_ms(),
            listener,
        });
        Presence {
            edge: edge.clone(),
            client_id: accepted.client_id.clone(),
            listener,
            reason: None,
        }
    }

    fn offline(mut self, reason: OfflineReason) {
        self.reason = Some(reason);
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        gauge!("switchboard_mqtt_connections", "listener" => self.listener).decrement(1.0);
        let reason = self.reason.unwrap_or(OfflineReason::Error);
        self.edge.events.device_offline(&self.client_id, reason);
    }
}

struct Connection<I> {
    io: I,
    codec: Codec,
    edge: Arc<Edge>,
    client_id: Arc<str>,
    /// The router link; `None` until a clean-session client first needs the router.
    link: Option<Box<RouterLink>>,
    out: BytesMut,
    /// v5 topic aliases the client set up (bounded by our Topic Alias Maximum).
    aliases: BTreeMap<u16, Bytes>,
    /// QoS 2 deliveries we dropped (too large for the client) and complete ourselves.
    self_completed_qos2: BTreeSet<u16>,
    client_max_packet: Option<usize>,
    packets_in: Counter,
    packets_out: Counter,
    /// Retained changes of the current batch, queued for the store after the router has them.
    retained_writes: Vec<RetainedChange>,
}

impl<I: MqttIo> Connection<I> {
    fn max_payload(&self) -> usize {
        self.edge.config.mqtt.max_payload.as_usize()
    }

    fn max_remaining(&self) -> usize {
        self.max_payload() + PACKET_OVERHEAD
    }

    fn router_is_behind(&self) -> bool {
        self.link
            .as_ref()
            .is_some_and(|link| link.tx.buffer().len() > INCOMING_HIGH_WATER)
            || self.edge.links.router_backlog() > ROUTER_HIGH_WATER
            || self.edge.links.pacing().is_behind()
    }

    /// Decodes every whole packet in `buf` and hands them to the router in one go.
    async fn take_incoming(&mut self, buf: &mut BytesMut) -> Result<Flow, End> {
        let mut batch: Vec<Packet> = Vec::new();
        let mut result = Ok(());
        while let Some(step) = self.next_packet(buf).transpose() {
            match step {
                Ok(Some(packet)) => batch.push(packet),
                Ok(None) => {}
                Err(end) => {
                    result = Err(end);
                    break;
                }
            }
        }
        if !self.out.is_empty() {
            if let Err(e) = self.flush().await {
                return Err(End::Io(e.to_string()));
            }
        }
        if !batch.is_empty() {
            self.packets_in.increment(batch.len() as u64);
            if !self.ensure_link().await {
                return Err(End::RouterGone);
            }
            let for_bridge = self
                .link
                .as_mut()
                .map_or(0, |link| link.note_outgoing(&batch));
            // Counted before the router can forward them (see pacing.rs).
            self.edge.links.pacing().handed(for_bridge);
            if !self.send_to_router(batch) {
                return Err(End::RouterGone);
            }
        }
        let patience = Duration::from_millis(self.edge.config.storage.queue_wait_ms);
        for change in self.retained_writes.drain(..) {
            self.edge.events.queue_retained(change, patience).await;
        }
        result?;
        Ok(if self.router_is_behind() {
            Flow::Pause
        } else {
            Flow::Continue
        })
    }

    /// The next packet for the router: `Ok(None)` when more bytes are needed,
    /// `Ok(Some(None))` for a packet answered here (PINGREQ).
    #[allow(clippy::type_complexity)]
    fn next_packet(&mut self, buf: &mut BytesMut) -> Result<Option<Option<Packet>>, End> {
        let (first, header_len, remaining) = match fixed_header(buf) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(None),
            Err(_) => {
                return Err(violation(
                    DisconnectReasonCode::MalformedPacket,
                    "malformed remaining length",
                ))
            }
        };
        let packet_type = first >> 4;
        if packet_type == kind::CONNECT {
            return Err(violation(
                DisconnectReasonCode::ProtocolError,
                "second CONNECT",
            ));
        }
        if !client_may_send(packet_type) {
            let what = if packet_type == kind::AUTH {
                "AUTH is not supported"
            } else {
                "packet type a client may not send"
            };
            return Err(violation(
                DisconnectReasonCode::ProtocolError,
                &format!("{what} ({packet_type})"),
            ));
        }
        if remaining > self.max_remaining() {
            return Err(violation(
                DisconnectReasonCode::PacketTooLarge,
                &format!(
                    "packet of {remaining} bytes is over the limit (max_payload {})",
                    self.max_payload()
                ),
            ));
        }
        if buf.len() < header_len + remaining {
            return Ok(None);
        }
        let publish_header = (packet_type == kind::PUBLISH)
            .then(|| publish_qos_and_pkid(&buf[..header_len + remaining]))
            .flatten();
        let packet = self.codec.read(buf, self.max_remaining()).map_err(|e| {
            violation(
                DisconnectReasonCode::MalformedPacket,
                &format!("malformed packet: {e}"),
            )
        })?;
        match packet {
            Packet::PingReq(_) => {
                self.encode(Packet::PingResp(PingResp));
                Ok(Some(None))
            }
            Packet::Disconnect(disconnect, _) => Err(End::Disconnect {
                with_will: disconnect.reason_code
                    == DisconnectReasonCode::DisconnectWithWillMessage,
            }),
            Packet::Publish(mut publish, mut properties) => {
                if publish.payload.len() > self.max_payload() {
                    return Err(violation(
                        DisconnectReasonCode::PacketTooLarge,
                        &format!(
                            "payload of {} bytes is over max_payload {}",
                            publish.payload.len(),
                            self.max_payload()
                        ),
                    ));
                }
                if let Some(props) = properties.as_mut() {
                    if let Some(alias) = props.topic_alias.take() {
                        self.resolve_alias(alias, &mut publish.topic)?;
                    }
                }
                if let Err(why) = check_topic(&publish.topic) {
                    return Err(violation(DisconnectReasonCode::TopicNameInvalid, why));
                }
                // The router clears a retained topic on an empty payload even without
                // the retain flag: the feed mirrors what it will serve.
                if publish.retain || publish.payload.is_empty() {
                    let qos = publish_header.map_or(0, |(qos, _)| qos);
                    self.retained_writes.push(RetainedChange {
                        topic: publish.topic.clone(),
                        payload: publish.payload.clone(),
                        qos,
                        expiry_secs: properties.as_ref().and_then(|p| p.message_expiry_interval),
                    });
                }
                Ok(Some(Some(Packet::Publish(publish, properties))))
            }
            other => Ok(Some(Some(other))),
        }
    }

    fn resolve_alias(&mut self, alias: u16, topic: &mut Bytes) -> Result<(), End> {
        let max = self.edge.config.mqtt.topic_alias_max;
        if alias == 0 || alias > max {
            return Err(violation(
                DisconnectReasonCode::TopicAliasInvalid,
                &format!("topic alias {alias} outside 1..={max}"),
            ));
        }
        if topic.is_empty() {
            match self.aliases.get(&alias) {
                Some(known) => *topic = known.clone(),
                None => {
                    return Err(violation(
                        DisconnectReasonCode::ProtocolError,
                        &format!("topic alias {alias} used before it was set"),
                    ))
                }
            }
        } else {
            self.aliases.insert(alias, topic.clone());
        }
        Ok(())
    }

    /// Hands packets to the router with one notification: all but the last go
    /// straight into the link's buffer, the last through `send`, which notifies.
    fn send_to_router(&mut self, mut batch: Vec<Packet>) -> bool {
        let Some(last) = batch.pop() else { return true };
        let Some(link) = self.link.as_mut() else {
            return false;
        };
        {
            let mut buffer = link.tx.buffer();
            let router_already_notified = !buffer.is_empty();
            buffer.extend(batch);
            if router_already_notified {
                buffer.push_back(last);
                return true;
            }
        }
        let congested = self.edge.links.router_backlog() > ROUTER_HIGH_WATER;
        let link_tx = &mut link.tx;
        let send = || matches!(link_tx.send(last).now_or_never(), Some(Ok(_)));
        if congested && can_block_in_place() {
            tokio::task::block_in_place(send)
        } else {
            send()
        }
    }

    /// Opens the router link of a clean-session client on first need.
    async fn ensure_link(&mut self) -> bool {
        if self.link.is_some() {
            return true;
        }
        match self.edge.links.open(self.client_id.to_string(), true).await {
            Ok((tx, rx, _connack)) => {
                self.link = Some(RouterLink::new(tx, rx));
                true
            }
            Err(e) => {
                warn!(client_id = %self.client_id, "router refused the link: {e}");
                false
            }
        }
    }

    /// Writes what the router sent: the first notification plus whatever else is
    /// queued, as one socket write.
    async fn deliver(&mut self, first: Option<Box<Notification>>) -> Result<(), End> {
        let mut next = first.map(|boxed| *boxed);
        let mut unscheduled = false;
        let mut acks_for_router = Vec::new();
        loop {
            if let Some(notification) = next.take() {
                if self
                    .link
                    .as_mut()
                    .is_some_and(|link| link.skipped(&notification))
                {
                    self.edge.links.pacing().lost();
                }
                match Option::<Packet>::from(notification) {
                    None => unscheduled = true,
                    Some(Packet::Disconnect(disconnect, _)) => {
                        return Err(End::Violation(
                            disconnect.reason_code,
                            "the router ended the connection".into(),
                        ))
                    }
                    Some(Packet::PubRel(rel, _)) if self.self_completed_qos2.remove(&rel.pkid) => {
                        acks_for_router.push(Packet::PubComp(
                            PubComp {
                                pkid: rel.pkid,
                                reason: PubCompReason::Success,
                            },
                            None,
                        ));
                    }
                    Some(packet) => {
                        if let Some(ack) = self.encode(packet) {
                            acks_for_router.push(ack);
                        }
                    }
                }
            }
            if self.out.len() >= WRITE_BATCH {
                break;
            }
            let Some(link) = self.link.as_mut() else {
                break;
            };
            match link.rx.recv_deadline(std::time::Instant::now()) {
                Ok(Some(more)) => next = Some(more),
                _ => break,
            }
        }
        if !acks_for_router.is_empty() && !self.send_to_router(acks_for_router) {
            return Err(End::RouterGone);
        }
        self.flush().await.map_err(|e| End::Io(e.to_string()))?;
        let woke = match (&self.link, unscheduled) {
            (Some(link), true) => link.rx.wake().await.is_ok(),
            _ => true,
        };
        if !woke {
            return Err(End::RouterGone);
        }
        Ok(())
    }

    /// Encodes `packet` into the write buffer. A PUBLISH larger than the client's
    /// Maximum Packet Size is dropped (MQTT 5 §3.1.2.11.4) and acknowledged to the
    /// router on the client's behalf; the ack to send is returned.
    fn encode(&mut self, packet: Packet) -> Option<Packet> {
        let is_publish = matches!(packet, Packet::Publish(..));
        let start = self.out.len();
        match self.codec.write(packet, &mut self.out) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                self.out.truncate(start);
                warn!(client_id = %self.client_id, "could not encode a packet for the client: {e}");
                return None;
            }
        }
        self.packets_out.increment(1);
        let written = self.out.len() - start;
        match self.client_max_packet {
            Some(max) if is_publish && written > max => {
                let header = publish_qos_and_pkid(&self.out[start..]);
                self.out.truncate(start);
                debug!(client_id = %self.client_id, size = written, max, "dropped a PUBLISH over the client's Maximum Packet Size");
                match header {
                    Some((1, pkid)) => Some(Packet::PubAck(
                        PubAck {
                            pkid,
                            reason: PubAckReason::Success,
                        },
                        None,
                    )),
                    Some((2, pkid)) => {
                        self.self_completed_qos2.insert(pkid);
                        Some(Packet::PubRec(
                            PubRec {
                                pkid,
                                reason: PubRecReason::Success,
                            },
                            None,
                        ))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.io.write_bytes(&self.out).await;
        self.out.clear();
        if self.out.capacity() > 4 * WRITE_BATCH {
            self.out = BytesMut::with_capacity(4096);
        }
        result
    }

    async fn write_now(&mut self, packet: Packet) -> std::io::Result<()> {
        self.encode(packet);
        self.flush().await
    }

    /// Ends the connection: a v5 DISCONNECT where we ended it, the link removed from
    /// the router, the socket closed.
    async fn finish(&mut self, end: &End) {
        let reason = match end {
            End::TakenOver => Some(DisconnectReasonCode::SessionTakenOver),
            End::Shutdown => Some(DisconnectReasonCode::ServerShuttingDown),
            End::KeepAlive => Some(DisconnectReasonCode::KeepAliveTimeout),
            End::Violation(code, _) => Some(*code),
            _ => None,
        };
        if let Some(reason_code) = reason {
            if self.codec.version() == Version::V5 {
                let packet = Packet::Disconnect(Disconnect { reason_code }, None);
                let _ = tokio::time::timeout(Duration::from_secs(1), self.write_now(packet)).await;
            }
        }
        self.leave_router().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.close()).await;
    }

    /// Removes our link from the router (keeping a persistent session's state).
    async fn leave_router(&mut self) {
        if self.link.is_none() {
            return;
        }
        let disconnect = Packet::Disconnect(
            Disconnect {
                reason_code: DisconnectReasonCode::NormalDisconnection,
            },
            None,
        );
        if !self.send_to_router(vec![disconnect]) {
            debug!(client_id = %self.client_id, "router link already gone");
        }
    }
}

struct RouterLink {
    tx: LinkTx,
    rx: LinkRx,
    /// Filters subscribed through this link; loss is detected with exactly one.
    subscriptions: usize,
    /// Log offset of the last message forwarded (one filter: they follow each other).
    last_offset: Option<u64>,
}

impl RouterLink {
    fn new(tx: LinkTx, rx: LinkRx) -> Box<RouterLink> {
        Box::new(RouterLink {
            tx,
            rx,
            subscriptions: 0,
            last_offset: None,
        })
    }

    /// Keeps the subscription count for what goes to the router; returns how many of
    /// the packets are publishes the bridge's `#` will see (not `$` topics).
    fn note_outgoing(&mut self, batch: &[Packet]) -> u64 {
        let mut for_bridge = 0;
        for packet in batch {
            match packet {
                Packet::Publish(publish, _) if !publish.topic.starts_with(b"$") => {
                    for_bridge += 1;
                }
                Packet::Subscribe(subscribe, _) => {
                    self.subscriptions += subscribe.filters.len();
                    self.last_offset = None;
                }
                Packet::Unsubscribe(unsubscribe, _) => {
                    self.subscriptions =
                        self.subscriptions.saturating_sub(unsubscribe.filters.len());
                    self.last_offset = None;
                }
                _ => {}
            }
        }
        for_bridge
    }

    /// Whether this forward skipped messages of the (only) filter's log: the router
    /// dropped them before this subscriber read them.
    fn skipped(&mut self, notification: &Notification) -> bool {
        let Notification::Forward(forward) = notification else {
            return false;
        };
        let (Some((_, offset)), 1) = (forward.cursor, self.subscriptions) else {
            return false;
        };
        let skipped = self.last_offset.is_some_and(|last| offset > last + 1);
        self.last_offset = Some(offset);
        skipped
    }
}

/// The next notification from the router, or never while there is no link. Boxed:
/// the wait is large and idle clean-session connections have no link at all.
#[allow(clippy::type_complexity)]
fn next_notification(
    link: &mut Option<Box<RouterLink>>,
) -> impl std::future::Future<Output = Result<Option<Box<Notification>>, ()>> + '_ {
    match link {
        Some(link) => futures_util::future::Either::Left(
            Box::pin(link.rx.next()).map(|next| next.map(|n| n.map(Box::new)).map_err(|_| ())),
        ),
        None => futures_util::future::Either::Right(std::future::pending()),
    }
}

enum Flow {
    Continue,
    Pause,
}

fn violation(code: DisconnectReasonCode, why: &str) -> End {
    End::Violation(code, why.to_string())
}

fn check_topic(topic: &[u8]) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("empty topic");
    }
    if topic.iter().any(|b| matches!(b, b'+' | b'#' | 0)) {
        return Err("topic contains a wildcard or NUL");
    }
    if std::str::from_utf8(topic).is_err() {
        return Err("topic is not UTF-8");
    }
    Ok(())
}

fn can_block_in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}
