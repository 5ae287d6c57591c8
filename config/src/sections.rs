//! The configuration's sections, one struct each, with their defaults (the same as
//! `switchboard.default.toml`); `Config` in lib.rs puts them together and validates.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ByteSize, Listen, Period};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Folder for sled and other state.
    pub data_dir: PathBuf,
    /// Seconds graceful shutdown waits for connections to close before exiting.
    pub shutdown_grace_secs: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("data"),
            shutdown_grace_secs: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// MQTT 3.1.1 + 5 over TCP.
    pub tcp: Listen,
    /// MQTT over WebSocket (path `/mqtt`, subprotocol `mqtt`).
    pub ws: Listen,
    /// MQTT over TLS. `None` when the key is absent: on when certificates exist.
    pub tls: Option<Listen>,
    /// MQTT over secure WebSocket. `None` when absent, as for `tls`.
    pub wss: Option<Listen>,
    /// Connected MQTT clients at most, over all listeners.
    pub max_connections: usize,
    /// Largest PUBLISH payload accepted from a client (bigger ones: disconnect).
    pub max_payload: ByteSize,
    /// 0 = accept the keep-alive a client asks for; else the most a client gets.
    pub max_keepalive: u16,
    /// Seconds a new connection has for its TLS / WebSocket handshake and for CONNECT.
    pub connect_timeout_secs: u64,
    /// Seconds a packet (and, over WebSocket, a frame) may take from its first byte
    /// to its last; then the client is disconnected. Its bytes are bounded by
    /// `max_payload` plus headers.
    pub packet_timeout_secs: u64,
    /// Longest client id accepted (bytes).
    pub max_client_id_len: usize,
    /// Longest topic name or filter accepted (bytes; MQTT allows 65 535).
    pub max_topic_length: usize,
    /// Most levels (`/`-separated parts) in a topic name or filter.
    pub max_topic_levels: usize,
    /// PUBLISH packets one client may send per second (burst twice that); past it
    /// its socket is read more slowly (TCP backpressure), nothing is dropped.
    /// `0` = no limit.
    pub max_messages_per_sec: u32,
    /// Topic aliases a v5 client may use towards us (CONNACK Topic Alias Maximum).
    pub topic_alias_max: u16,
    /// Connections over `max_connections` that may still be told "server busy" at once.
    pub max_refusals_in_flight: usize,
    /// Connections open at once from one source address (`0` = no limit).
    pub max_connections_per_ip: usize,
    /// New connections per second from one source address, burst twice that
    /// (`0` = no limit).
    pub max_connect_rate_per_ip: u32,
    /// Messages queued for one session (connected or offline) before QoS 0 ones are
    /// dropped and QoS 1/2 publishers are slowed (Mosquitto's `max_queued_messages`).
    pub max_queued_messages: usize,
    /// The same bound in bytes (Mosquitto's `max_queued_bytes`).
    pub max_queued_bytes: ByteSize,
    /// QoS 1/2 messages in flight to a 3.1.1 client (v5: the client's Receive
    /// Maximum). Mosquitto's `max_inflight_messages`.
    pub max_inflight: u16,
    /// Receive Maximum announced to v5 clients: QoS 2 messages a client may have
    /// unreleased (no PUBREL yet) at once; more is a disconnect (0x93). Also bounds
    /// 3.1.1 clients.
    pub receive_maximum: u16,
    /// How long a 3.1.1 persistent session (clean session 0) is kept after its client
    /// went away; `0` = forever (Mosquitto's `persistent_client_expiration`).
    pub persistent_client_expiration: Period,
    /// Most session expiry a v5 client is granted (`0` = what it asks for).
    pub max_session_expiry: Period,
    /// Sessions kept at most, connected or offline; new ones past it are refused.
    pub max_sessions: usize,
    /// Subscriptions one session may hold; more get SUBACK 0x97 (3.1.1: 0x80).
    pub max_subscriptions: usize,
    /// How long a QoS 1/2 publisher is paused for a subscriber whose queue is full
    /// before that subscriber starts losing its messages instead.
    pub publisher_wait_ms: u64,
    /// Seconds between `$SYS/broker/...` updates (`0` = off). Mosquitto's `sys_interval`.
    pub sys_interval: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            tcp: Listen::on("127.0.0.1:1883"),
            ws: Listen::on("127.0.0.1:8083"),
            tls: None,
            wss: None,
            max_connections: 100_000,
            max_payload: ByteSize(256 * 1024),
            max_keepalive: 0,
            connect_timeout_secs: 10,
            packet_timeout_secs: 30,
            max_client_id_len: 256,
            max_topic_length: 65_535,
            max_topic_levels: 128,
            max_messages_per_sec: 0,
            topic_alias_max: 32,
            max_refusals_in_flight: 64,
            max_connections_per_ip: 0,
            max_connect_rate_per_ip: 0,
            max_queued_messages: 1_000,
            max_queued_bytes: ByteSize(8 * 1024 * 1024),
            max_inflight: 20,
            receive_maximum: 100,
            persistent_client_expiration: Period(7 * 86_400),
            max_session_expiry: Period(0),
            max_sessions: 200_000,
            max_subscriptions: 100_000,
            publisher_wait_ms: 5_000,
            sys_interval: 10,
        }
    }
}

impl MqttConfig {
    /// Why a topic name or filter is over `max_topic_length` / `max_topic_levels`.
    pub fn topic_over_limits(&self, topic: &str) -> Option<String> {
        if topic.len() > self.max_topic_length {
            return Some(format!(
                "topic of {} bytes is over max_topic_length {}",
                topic.len(),
                self.max_topic_length
            ));
        }
        let levels = topic.bytes().filter(|b| *b == b'/').count() + 1;
        (levels > self.max_topic_levels).then(|| {
            format!(
                "topic of {levels} levels is over max_topic_levels {}",
                self.max_topic_levels
            )
        })
    }
}

pub const DEFAULT_TLS_LISTEN: &str = "127.0.0.1:8883";
pub const DEFAULT_WSS_LISTEN: &str = "127.0.0.1:8084";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Browser bridge, metrics and health.
    pub listen: Listen,
    /// Serve `/admin/retained` (list, get, delete retained messages), to requests with
    /// `Authorization: Bearer <admin_token>`.
    pub admin: bool,
    /// The admin API's token (required with `admin = true`; at least 16 characters).
    pub admin_token: Option<String>,
    /// Origins allowed to open `/ws`, `/sse` and MQTT over WebSocket (exact
    /// `scheme://host:port`); empty = any.
    pub allowed_origins: Vec<String>,
    /// Refuse WebSocket upgrades without an `Origin` header (non-browser clients).
    pub require_origin: bool,
    /// Seconds a client has to send a request's headers (then the connection closes).
    pub header_timeout_secs: u64,
    /// Serve HTTPS and WSS with the `[tls]` certificate and key.
    pub tls: bool,
    /// Serve `/metrics`, `/healthz` and `/readyz` here (plain HTTP) instead of on
    /// `listen`; `""` (the default): on `listen`.
    pub ops_listen: Listen,
    /// HTTP connections not yet upgraded to a WebSocket (or streaming SSE) at once;
    /// more are closed at accept.
    pub max_pending: usize,
    /// The same bound per source IP address.
    pub max_pending_per_ip: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Listen::on("127.0.0.1:8080"),
            admin: false,
            admin_token: None,
            allowed_origins: Vec::new(),
            require_origin: false,
            header_timeout_secs: 10,
            tls: false,
            ops_listen: Listen::off(),
            max_pending: 2_048,
            max_pending_per_ip: 512,
        }
    }
}

/// Durable state (retained messages) in sled under `[node] data_dir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// A retained message accepted more than this many ms before a crash is on disk.
    pub flush_ms: u64,
    /// Retained changes waiting to be written at most. A client publishing retained
    /// messages into a full queue waits (only that client is slowed down).
    pub write_queue: usize,
    /// How long such a client waits for room before its change is dropped, counted
    /// and logged (the router still serves it, but it does not survive a restart).
    pub queue_wait_ms: u64,
    /// Seconds between saves of the persistent MQTT sessions (subscriptions and
    /// queued QoS 1/2 messages); they are also saved at shutdown. `0`: only at
    /// shutdown. Mosquitto's `autosave_interval`.
    pub autosave_interval: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            flush_ms: 100,
            write_queue: 65_536,
            queue_wait_ms: 5_000,
            autosave_interval: 60,
        }
    }
}

/// The browser bridge: `/ws` rooms protocol limits and behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Any valid MQTT topic filter may be joined as a room.
    pub topic_rooms: bool,
    /// Topic filters browsers may publish to outside any room's `publish` list.
    pub browser_publish: Vec<String>,
    /// WebSocket ping interval, also sent to clients in `welcome`.
    pub heartbeat_ms: u64,
    /// A client silent this long after a ping is dropped.
    pub heartbeat_timeout_ms: u64,
    /// Browser connections at once; more get HTTP 503.
    pub max_connections: usize,
    /// Rooms one connection may be in.
    pub max_rooms_per_connection: usize,
    /// Largest request frame answered with `too_large` and kept open; frames over
    /// 4 × this close the connection (1009).
    pub max_frame: ByteSize,
    /// Requests per second per connection (token bucket, burst 2 ×).
    pub max_requests_per_sec: u32,
    /// Errors within 10 s after which the connection is closed with 1008.
    pub max_errors: u32,
    /// Retained topics returned in `joined.state` at most (`state_truncated` says so).
    pub max_state_topics: usize,
    /// Queued messages for one client before it is conflated (newest per topic).
    pub conflate_after: usize,
    /// Queued entries for one client (after conflation) before it is closed with 1013.
    pub close_after: usize,
    /// Queued bytes for one client before it is closed with 1013.
    pub max_queue_bytes: ByteSize,
    /// A client whose queue has not moved for this long is closed with 1013.
    pub slow_client_timeout_ms: u64,
    /// A frame (or fragmented message) begun must be finished within this; then the
    /// connection is closed (1008). Unfinished frames are also bounded in bytes by
    /// 4 × `max_frame`.
    pub frame_timeout_ms: u64,
    /// Largest reply: `joined` (state and missed messages) or `presence`. Past it,
    /// `state_truncated`, a shorter rewind, or `recovered: false` with a reason.
    pub max_reply_bytes: ByteSize,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            topic_rooms: true,
            browser_publish: Vec::new(),
            heartbeat_ms: 25_000,
            heartbeat_timeout_ms: 10_000,
            max_connections: 50_000,
            max_rooms_per_connection: 100,
            max_frame: ByteSize(64 * 1024),
            max_requests_per_sec: 100,
            max_errors: 20,
            max_state_topics: 10_000,
            conflate_after: 1_000,
            close_after: 10_000,
            max_queue_bytes: ByteSize(8 * 1024 * 1024),
            slow_client_timeout_ms: 10_000,
            frame_timeout_ms: 10_000,
            max_reply_bytes: ByteSize(4 * 1024 * 1024),
        }
    }
}

/// Message history for resume (`since`) and `rewind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Topic filters whose messages are kept (default: everything).
    pub topics: Vec<String>,
    /// Messages kept at most (all rooms share one log).
    pub max_messages: usize,
    /// Seconds a message is kept at most.
    pub max_age_secs: u64,
    /// Messages one `since` or `rewind` returns at most; a longer gap is `recovered: false`.
    pub max_resume: usize,
    /// Payload bytes kept at most; the oldest messages leave first.
    pub max_bytes: ByteSize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            topics: vec!["#".into()],
            max_messages: 10_000,
            max_age_secs: 300,
            max_resume: 10_000,
            max_bytes: ByteSize(64 * 1024 * 1024),
        }
    }
}

/// A configured room: `[rooms.NAME]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomConfig {
    /// MQTT topic filters the room delivers.
    pub topics: Vec<String>,
    /// Topic filters members may publish to.
    pub publish: Vec<String>,
    /// Push member join/leave events to the room.
    pub presence: bool,
    /// Messages a `rewind` or resume may return for this room (0 = none).
    pub history: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain for the TLS and WSS listeners.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificate(s) that client certificates must chain to. Set: a client
    /// certificate is asked for, and its CN is the client's username (no password).
    pub client_ca: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by `client_ca`.
    pub require_client_cert: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::from("certs-dev/server.pem"),
            key: PathBuf::from("certs-dev/server.key"),
            client_ca: None,
            require_client_cert: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// The level of every module: `error`, `warn`, `info`, `debug`, `trace` or `off`
    /// (or a tracing filter such as `info,switchboard_broker=debug`); RUST_LOG wins.
    pub level: String,
    /// Levels of single modules over `level`, e.g. `{ switchboard_bridge = "debug" }`.
    pub modules: std::collections::BTreeMap<String, String>,
    pub format: LogFormat,
    /// Lines of one kind (a refusal reason, a connect or disconnect) written per
    /// second at most; the rest are counted in one "N more like this" line.
    pub max_repeats_per_sec: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            modules: std::collections::BTreeMap::new(),
            format: LogFormat::Text,
            max_repeats_per_sec: 5,
        }
    }
}
