//! The start of a connection: read CONNECT within the deadline, check it, claim the
//! client id (taking over an older connection), open or resume the session in the
//! core, and answer with CONNACK — or refuse with the right code.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use metrics::counter;
use rumqttd::protocol::{ConnAck, ConnAckProperties, ConnectReturnCode, Packet};
use tracing::{debug, warn};

use crate::auth::{ClientAccess, LoginRefused};
use crate::codec::Codec;
use crate::connect::{client_id_problem, read_connect, ConnectRequest};
use crate::connection::{Connection, Incoming, Live, PACKET_OVERHEAD};
use crate::packet::{refusal, Refusal, Version};
use crate::presence::Presence;
use crate::rate::TokenBucket;
use crate::transport::MqttIo;
use crate::will::{Will, WillRefused};
use crate::Edge;

/// What CONNECT asked for, after the edge's checks.
pub(crate) struct Accepted {
    pub version: Version,
    /// Shared by the connection, its session claim and its presence entries.
    pub client_id: Arc<str>,
    pub assigned_id: bool,
    pub username: Option<String>,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub server_keep_alive: Option<u16>,
    pub client_max_packet: Option<usize>,
    /// QoS 1/2 messages the client takes in flight (its Receive Maximum).
    pub send_quota: u16,
    /// Seconds the session outlives the connection (granted).
    pub session_expiry: u32,
    /// Whether the client asked for more expiry than granted (CONNACK says so).
    pub expiry_capped: bool,
    pub will: Option<Box<Will>>,
    max_session_expiry: Option<u32>,
}

impl Accepted {
    /// The session expiry a v5 DISCONNECT asks for, within our cap.
    pub fn grant_session_expiry(&self, asked: u32) -> u32 {
        self.max_session_expiry.map_or(asked, |max| asked.min(max))
    }
}

/// Reads CONNECT, answers it (refusing or accepting) and claims the client id.
pub(crate) async fn establish<I: MqttIo>(incoming: Box<Incoming<I>>) -> Option<Box<Live<I>>> {
    let Incoming {
        mut io,
        edge,
        peer,
        listener,
        admitted,
        deadline,
        identity,
    } = *incoming;
    let config = &edge.config.mqtt;
    let max_remaining = config.max_payload.as_usize() + PACKET_OVERHEAD;
    let mut buf = BytesMut::new();

    let read = tokio::time::timeout_at(deadline, read_connect(&mut io, &mut buf, max_remaining))
        .await
        .ok();
    let (request, codec) = match read {
        None => {
            let why = "no CONNECT before the deadline";
            refuse_quietly(&mut io, peer, listener, Refusal::Timeout, why).await;
            return None;
        }
        Some(Err(failure)) => {
            match failure.version {
                Some(version) => {
                    let codec = Codec::new(version);
                    refuse(
                        &mut io,
                        &codec,
                        peer,
                        listener,
                        failure.refusal,
                        &failure.detail,
                    )
                    .await
                }
                None => {
                    refuse_quietly(&mut io, peer, listener, failure.refusal, &failure.detail).await
                }
            }
            return None;
        }
        Some(Ok(parsed)) => parsed,
    };

    if !admitted {
        let detail = format!("at max_connections ({})", config.max_connections);
        refuse_busy(&mut io, &codec, peer, listener, &detail).await;
        return None;
    }
    let login = request.login.clone();
    let mut accepted = match admit(&edge, request, peer) {
        Ok(accepted) => accepted,
        Err((reason, detail)) => {
            refuse(&mut io, &codec, peer, listener, reason, &detail).await;
            return None;
        }
    };
    let (username, password) = match login {
        Some(login) => (
            Some(login.username).filter(|u| !u.is_empty()),
            login.password.into_bytes(),
        ),
        None => (None, Vec::new()),
    };
    let loopback = edge.loopback(listener);
    let login = match &identity {
        // The certificate is the credential (Mosquitto's use_identity_as_username).
        Some(_) => Ok(None),
        None => edge.auth.login(username.clone(), password, loopback).await,
    };
    if identity.is_some() {
        accepted.username = identity;
    }
    let claims = match login {
        Ok(claims) => claims,
        Err(refused) => {
            let (reason, detail) = match refused {
                LoginRefused::BadCredentials => (
                    Refusal::BadCredentials,
                    format!(
                        "bad username or password (user {:?})",
                        username.unwrap_or_default()
                    ),
                ),
                LoginRefused::AnonymousNotAllowed => (
                    Refusal::NotAuthorized,
                    if loopback {
                        "anonymous clients are not allowed ([auth] allow_anonymous)".to_string()
                    } else {
                        "anonymous clients are refused beyond loopback unless [auth] allow_anonymous = true".to_string()
                    },
                ),
            };
            refuse(&mut io, &codec, peer, listener, reason, &detail).await;
            return None;
        }
    };
    if !edge
        .auth
        .current()
        .may_take_client_id(accepted.username.as_deref(), &accepted.client_id)
    {
        let detail = format!(
            "client id {:?} is not one user {:?} may take ([auth] client_id_pattern)",
            accepted.client_id,
            accepted.username.as_deref().unwrap_or_default()
        );
        refuse(
            &mut io,
            &codec,
            peer,
            listener,
            Refusal::ClientIdInvalid,
            &detail,
        )
        .await;
        return None;
    }

    let (claim, took_over) = edge.sessions.claim(&accepted.client_id).await;
    let attached = if accepted.clean_start && accepted.session_expiry == 0 {
        // Nothing to resume and nothing to keep: the session is opened on first need.
        edge.router.end_session(&accepted.client_id);
        None
    } else {
        match edge.router.connect(
            &accepted.client_id,
            accepted.clean_start,
            accepted.send_quota,
            Duration::from_secs(u64::from(accepted.session_expiry)),
        ) {
            Ok(attached) => Some(attached),
            Err(_) => {
                let detail = format!("at max_sessions ({})", config.max_sessions);
                refuse_busy(&mut io, &codec, peer, listener, &detail).await;
                return None;
            }
        }
    };
    let session_present = attached.as_ref().is_some_and(|a| a.present);

    let mut connection = Connection {
        io,
        codec,
        edge: edge.clone(),
        client_id: accepted.client_id.clone(),
        attached,
        send_quota: accepted.send_quota,
        out: BytesMut::new(),
        aliases: BTreeMap::new(),
        client_max_packet: accepted.client_max_packet,
        counters: edge.packet_counters(listener),
        publishes_read: 0,
        publish_rate: (config.max_messages_per_sec > 0)
            .then(|| TokenBucket::new(config.max_messages_per_sec)),
        access: ClientAccess::new(
            &edge.auth,
            accepted.username.clone(),
            accepted.client_id.clone(),
            claims.as_ref(),
        ),
        retained_writes: Vec::new(),
        congested: Vec::new(),
        session_expiry: accepted.session_expiry,
    };
    // The CONNECT was read before the connection had its counters.
    connection.counters.packets_in.increment(1);
    let connack = connack_packet(&edge, &accepted, session_present);
    connection.encode(connack);
    if session_present {
        connection.resend_inflight();
    }
    if let Err(e) = connection.flush().await {
        warn!(client_id = %accepted.client_id, %peer, listener, "could not send CONNACK: {e}");
        let expiry = Duration::from_secs(u64::from(accepted.session_expiry));
        if let Some(attached) = &connection.attached {
            edge.router.disconnect(attached, expiry);
        }
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
        waiting: None,
    }))
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

    let max_session_expiry = config
        .max_session_expiry
        .duration()
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let (session_expiry, expiry_capped) = match version {
        Version::V311 if clean_start => (0, false),
        Version::V311 => (
            config
                .persistent_client_expiration
                .duration()
                .map_or(u32::MAX, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
            false,
        ),
        Version::V5 => {
            let asked = properties
                .as_ref()
                .and_then(|p| p.session_expiry_interval)
                .unwrap_or(0);
            let granted = max_session_expiry.map_or(asked, |max| asked.min(max));
            (granted, granted != asked)
        }
    };
    let client_max_packet = properties
        .as_ref()
        .and_then(|p| p.max_packet_size)
        .map(|n| n as usize);
    let send_quota = match version {
        Version::V311 => config.max_inflight,
        Version::V5 => properties
            .as_ref()
            .and_then(|p| p.receive_maximum)
            .unwrap_or(u16::MAX),
    };
    if send_quota == 0 {
        return Err((Refusal::ProtocolError, "Receive Maximum of 0".into()));
    }
    let will = match will {
        Some(w) => {
            let expiry = if version == Version::V5 {
                session_expiry
            } else {
                0
            };
            let will =
                Will::from_connect(w, will_properties, expiry).map_err(
                    |refused| match refused {
                        WillRefused::Malformed(why) => (Refusal::Malformed, why),
                        WillRefused::Topic(why) => (Refusal::WillTopicInvalid, why),
                    },
                )?;
            Some(Box::new(will))
        }
        None => None,
    };
    debug!(%client_id, %peer, "CONNECT accepted");
    Ok(Accepted {
        version,
        client_id: Arc::from(client_id),
        assigned_id,
        username: login.map(|l| l.username).filter(|u| !u.is_empty()),
        clean_start,
        keep_alive,
        server_keep_alive,
        client_max_packet,
        send_quota,
        session_expiry,
        expiry_capped,
        will,
        max_session_expiry,
    })
}

fn connack_packet(edge: &Edge, accepted: &Accepted, session_present: bool) -> Packet {
    let config = &edge.config.mqtt;
    let properties = (accepted.version == Version::V5).then(|| ConnAckProperties {
        assigned_client_identifier: accepted.assigned_id.then(|| accepted.client_id.to_string()),
        server_keep_alive: accepted.server_keep_alive,
        session_expiry_interval: accepted.expiry_capped.then_some(accepted.session_expiry),
        receive_max: Some(config.receive_maximum),
        topic_alias_max: Some(config.topic_alias_max),
        max_packet_size: u32::try_from(config.max_payload.as_usize() + PACKET_OVERHEAD).ok(),
        retain_available: Some(1),
        wildcard_subscription_available: Some(1),
        shared_subscription_available: Some(1),
        subscription_identifiers_available: Some(1),
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

/// Sends a refusing CONNACK (where the version has a code for it), then closes. One
/// log line, one metric.
async fn refuse<I: MqttIo>(
    io: &mut I,
    codec: &Codec,
    peer: SocketAddr,
    listener: &'static str,
    reason: Refusal,
    detail: &str,
) {
    if let Some(packet) = refusal(codec.version(), reason, detail) {
        let mut out = BytesMut::new();
        if codec.write(packet, &mut out).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), io.write_bytes(&out)).await;
        }
    }
    refuse_quietly(io, peer, listener, reason, detail).await;
}

/// "Server busy" (a connection or session limit), in the client's version.
async fn refuse_busy<I: MqttIo>(
    io: &mut I,
    codec: &Codec,
    peer: SocketAddr,
    listener: &'static str,
    detail: &str,
) {
    refuse(io, codec, peer, listener, Refusal::ServerBusy, detail).await
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
    if crate::repeats::allow_refusal(reason.label()) {
        warn!(%peer, listener, reason = reason.label(), "connection refused: {detail}");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), io.close()).await;
}
