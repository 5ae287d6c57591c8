//! Switchboard's configuration: typed TOML with defaults, strict keys and clear errors.
//!
//! `Config::load(Some(path))` reads a file, `Config::load(None)` gives the embedded
//! defaults. Unknown keys and bad values are errors that name the key and the file.
//! Relative paths resolve against the config file's folder (the working directory
//! when there is no file).

mod listen;
mod period;
mod size;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use listen::Listen;
pub use period::Period;
pub use size::ByteSize;

/// The configuration Switchboard starts with when no file is given, as TOML.
pub const DEFAULT_TOML: &str = include_str!("../switchboard.default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path}: `{key}`: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub mqtt: MqttConfig,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub storage: StorageConfig,
    pub bridge: BridgeConfig,
    pub history: HistoryConfig,
    /// Configured rooms by name.
    pub rooms: BTreeMap<String, RoomConfig>,
    pub log: LogConfig,
    /// Where this configuration came from (`None`: embedded defaults). Not a key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

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
    /// Longest client id accepted (bytes).
    pub max_client_id_len: usize,
    /// Topic aliases a v5 client may use towards us (CONNACK Topic Alias Maximum).
    pub topic_alias_max: u16,
    /// Connections over `max_connections` that may still be told "server busy" at once.
    pub max_refusals_in_flight: usize,
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
            tcp: Listen::on("0.0.0.0:1883"),
            ws: Listen::on("0.0.0.0:8083"),
            tls: None,
            wss: None,
            max_connections: 100_000,
            max_payload: ByteSize(256 * 1024),
            max_keepalive: 0,
            connect_timeout_secs: 10,
            max_client_id_len: 256,
            topic_alias_max: 32,
            max_refusals_in_flight: 64,
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

pub const DEFAULT_TLS_LISTEN: &str = "0.0.0.0:8883";
pub const DEFAULT_WSS_LISTEN: &str = "0.0.0.0:8084";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Browser bridge, metrics and health.
    pub listen: Listen,
    /// Serve `/admin/retained` (list, get, delete retained messages). Unauthenticated:
    /// turn on only where the HTTP listener is not reachable by untrusted clients.
    pub admin: bool,
    /// Origins allowed to open `/ws` (exact `scheme://host:port`); empty = any.
    pub allowed_origins: Vec<String>,
    /// Refuse WebSocket upgrades without an `Origin` header (non-browser clients).
    pub require_origin: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Listen::on("0.0.0.0:8080"),
            admin: false,
            allowed_origins: Vec::new(),
            require_origin: false,
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
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            topics: vec!["#".into()],
            max_messages: 10_000,
            max_age_secs: 300,
            max_resume: 10_000,
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
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::from("certs-dev/server.pem"),
            key: PathBuf::from("certs-dev/server.key"),
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
    /// A tracing filter such as `info` or `switchboard_broker=debug,info`; RUST_LOG wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Reads `path`, or returns the defaults when `path` is `None`, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => {
                let mut config = Config::parse(DEFAULT_TOML, "<embedded defaults>")?;
                let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
                config.resolve_paths(&cwd);
                Ok(config)
            }
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let mut config = Config::parse(&text, &path.display().to_string())?;
                let base = match path.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                config.resolve_paths(&base);
                config.source = Some(path.to_path_buf());
                Ok(config)
            }
        }
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: origin.to_string(),
            key: key.to_string(),
            message: message.to_string(),
        };
        if self.mqtt.max_connections == 0 {
            return Err(invalid("mqtt.max_connections", "must be at least 1"));
        }
        if self.mqtt.max_payload.0 == 0 || self.mqtt.max_payload.0 > 256 * 1024 * 1024 {
            return Err(invalid(
                "mqtt.max_payload",
                "must be between 1 byte and 256MiB (MQTT's limit)",
            ));
        }
        if self.mqtt.connect_timeout_secs == 0 {
            return Err(invalid("mqtt.connect_timeout_secs", "must be at least 1"));
        }
        if self.mqtt.max_client_id_len == 0 || self.mqtt.max_client_id_len > 65_535 {
            return Err(invalid("mqtt.max_client_id_len", "must be 1..=65535"));
        }
        for (key, value) in [
            ("mqtt.max_queued_messages", self.mqtt.max_queued_messages),
            (
                "mqtt.max_queued_bytes",
                self.mqtt.max_queued_bytes.as_usize(),
            ),
            ("mqtt.max_inflight", usize::from(self.mqtt.max_inflight)),
            (
                "mqtt.receive_maximum",
                usize::from(self.mqtt.receive_maximum),
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.mqtt.max_sessions < self.mqtt.max_connections {
            return Err(invalid(
                "mqtt.max_sessions",
                "must be at least mqtt.max_connections",
            ));
        }
        for (i, filter) in self.bridge.browser_publish.iter().enumerate() {
            if !valid_filter(filter) {
                return Err(invalid(
                    &format!("bridge.browser_publish[{i}]"),
                    &format!("{filter:?} is not an MQTT topic filter"),
                ));
            }
        }
        for (i, filter) in self.history.topics.iter().enumerate() {
            if !valid_filter(filter) {
                return Err(invalid(
                    &format!("history.topics[{i}]"),
                    &format!("{filter:?} is not an MQTT topic filter"),
                ));
            }
        }
        for (name, room) in &self.rooms {
            if name.is_empty() || name.starts_with('$') {
                return Err(invalid(
                    &format!("rooms.{name}"),
                    "room names must be non-empty and not start with '$'",
                ));
            }
            if room.topics.is_empty() {
                return Err(invalid(
                    &format!("rooms.{name}.topics"),
                    "a room needs at least one topic filter",
                ));
            }
            for (key, list) in [("topics", &room.topics), ("publish", &room.publish)] {
                for (i, filter) in list.iter().enumerate() {
                    if !valid_filter(filter) {
                        return Err(invalid(
                            &format!("rooms.{name}.{key}[{i}]"),
                            &format!("{filter:?} is not an MQTT topic filter"),
                        ));
                    }
                }
            }
        }
        let positive = [
            ("bridge.heartbeat_ms", self.bridge.heartbeat_ms as usize),
            (
                "bridge.heartbeat_timeout_ms",
                self.bridge.heartbeat_timeout_ms as usize,
            ),
            ("bridge.max_connections", self.bridge.max_connections),
            (
                "bridge.max_rooms_per_connection",
                self.bridge.max_rooms_per_connection,
            ),
            ("bridge.max_frame", self.bridge.max_frame.as_usize()),
            (
                "bridge.max_requests_per_sec",
                self.bridge.max_requests_per_sec as usize,
            ),
            ("bridge.conflate_after", self.bridge.conflate_after),
            (
                "bridge.slow_client_timeout_ms",
                self.bridge.slow_client_timeout_ms as usize,
            ),
            ("history.max_messages", self.history.max_messages),
            ("storage.flush_ms", self.storage.flush_ms as usize),
            ("storage.write_queue", self.storage.write_queue),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.bridge.close_after <= self.bridge.conflate_after {
            return Err(invalid(
                "bridge.close_after",
                "must be larger than bridge.conflate_after",
            ));
        }
        if self.data_dir_is_empty() {
            return Err(invalid("node.data_dir", "must not be empty"));
        }
        Ok(())
    }

    fn data_dir_is_empty(&self) -> bool {
        self.node.data_dir.as_os_str().is_empty()
    }

    fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.node.data_dir,
            &mut self.tls.cert,
            &mut self.tls.key,
        ] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The TLS listener address: explicit, or the default when certificates exist.
    pub fn tls_listen(&self) -> Listen {
        self.secure_listener(self.mqtt.tls.as_ref(), DEFAULT_TLS_LISTEN)
    }

    /// The WSS listener address, chosen like [`Config::tls_listen`].
    pub fn wss_listen(&self) -> Listen {
        self.secure_listener(self.mqtt.wss.as_ref(), DEFAULT_WSS_LISTEN)
    }

    /// True when a secure listener was asked for explicitly (startup must then fail
    /// without certificates instead of skipping the listener).
    pub fn tls_explicitly_requested(&self) -> bool {
        [&self.mqtt.tls, &self.mqtt.wss]
            .iter()
            .any(|l| matches!(l, Some(listen) if listen.addr().is_some()))
    }

    fn secure_listener(&self, explicit: Option<&Listen>, default: &str) -> Listen {
        match explicit {
            Some(listen) => listen.clone(),
            None if self.tls.cert.exists() && self.tls.key.exists() => Listen::on(default),
            None => Listen::off(),
        }
    }

    /// The effective configuration as TOML (for `switchboard print-config`).
    pub fn to_toml(&self) -> String {
        let mut effective = self.clone();
        effective.mqtt.tls = Some(self.tls_listen());
        effective.mqtt.wss = Some(self.wss_listen());
        toml::to_string_pretty(&effective)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

/// An MQTT topic filter: non-empty, `#` only as the whole last level, `+` only as a
/// whole level, no NUL.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        other => !other.contains('#') && !other.contains('+'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse() {
        let config = Config::parse(DEFAULT_TOML, "defaults").expect("defaults are valid");
        assert_eq!(config.mqtt.tcp.addr().map(|a| a.port()), Some(1883));
        assert_eq!(config.mqtt.max_payload.0, 256 * 1024);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[mqtt]\ntcpp = \"1\"\n", "x.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("tcpp"), "{text}");
        assert!(text.contains("x.toml"), "{text}");
    }

    #[test]
    fn filters_are_checked() {
        assert!(valid_filter("a/+/c"));
        assert!(valid_filter("#"));
        assert!(valid_filter("a/#"));
        assert!(!valid_filter("a/#/c"));
        assert!(!valid_filter("a+/b"));
        assert!(!valid_filter(""));
        let err = Config::parse("[rooms.plant]\ntopics = [\"a/#/b\"]\n", "x").unwrap_err();
        assert!(err.to_string().contains("rooms.plant.topics[0]"), "{err}");
    }

    #[test]
    fn empty_string_turns_a_listener_off() {
        let config = Config::parse("[mqtt]\nws = \"\"\n", "x").unwrap();
        assert!(config.mqtt.ws.addr().is_none());
        assert!(config.mqtt.tcp.addr().is_some());
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = Config::parse("[mqtt]\nmax_payload = \"lots\"\n", "x").unwrap_err();
        assert!(err.to_string().contains("max_payload"), "{err}");
        let err = Config::parse("[mqtt]\nmax_connections = 0\n", "x").unwrap_err();
        assert!(err.to_string().contains("mqtt.max_connections"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let dir = std::env::temp_dir().join(format!("sbcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[node]\ndata_dir = \"state\"\n").unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.node.data_dir, dir.join("state"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
