//! Switchboard's configuration: typed TOML with defaults, strict keys and clear errors.
//!
//! `Config::load(Some(path))` reads a file, `Config::load(None)` gives the embedded
//! defaults. Unknown keys and bad values are errors that name the key and the file.
//! Relative paths resolve against the config file's folder (the working directory
//! when there is no file).

mod auth;
mod listen;
mod log_filter;
mod period;
mod sections;
mod size;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use auth::{AuthConfig, BrowserAuth};
pub use listen::Listen;
pub use period::Period;
pub use sections::*;
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
    pub auth: AuthConfig,
    /// Where this configuration came from (`None`: embedded defaults). Not a key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
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
            (
                "mqtt.packet_timeout_secs",
                self.mqtt.packet_timeout_secs as usize,
            ),
            ("mqtt.max_topic_length", self.mqtt.max_topic_length),
            ("mqtt.max_topic_levels", self.mqtt.max_topic_levels),
            ("history.max_bytes", self.history.max_bytes.as_usize()),
            (
                "http.header_timeout_secs",
                self.http.header_timeout_secs as usize,
            ),
            ("http.max_pending", self.http.max_pending),
            ("http.max_pending_per_ip", self.http.max_pending_per_ip),
            (
                "bridge.frame_timeout_ms",
                self.bridge.frame_timeout_ms as usize,
            ),
            (
                "bridge.max_reply_bytes",
                self.bridge.max_reply_bytes.as_usize(),
            ),
            (
                "log.max_repeats_per_sec",
                self.log.max_repeats_per_sec as usize,
            ),
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
        log_filter::check(&self.log).map_err(|(key, message)| invalid(&key, &message))?;
        if self.http.admin && self.http.admin_token.as_ref().is_none_or(|t| t.len() < 16) {
            return Err(invalid(
                "http.admin_token",
                "the admin API needs a token of at least 16 characters (e.g. `openssl rand -hex 16`)",
            ));
        }
        if self.tls.require_client_cert && self.tls.client_ca.is_none() {
            return Err(invalid(
                "tls.require_client_cert",
                "needs tls.client_ca (the CA client certificates are signed by)",
            ));
        }
        if let Some((key, message)) = self.auth.problem() {
            return Err(invalid(key, &message));
        }
        Ok(())
    }

    /// `[log] level` and `[log] modules` as one tracing filter.
    pub fn log_filter(&self) -> String {
        let mut filter = self.log.level.clone();
        for (module, level) in &self.log.modules {
            filter.push_str(&format!(",{module}={level}"));
        }
        filter
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
        for path in [
            &mut self.auth.password_file,
            &mut self.auth.acl_file,
            &mut self.auth.jwt_public_key,
            &mut self.auth.jwks_file,
            &mut self.tls.client_ca,
        ]
        .into_iter()
        .flatten()
        {
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
    fn a_wrong_log_level_is_refused_with_its_key() {
        for bad in ["verbose", "info,switchboard_bridge=loud", ""] {
            let text = format!("[log]\nlevel = {bad:?}\n");
            let err = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(err.contains("log.level"), "{err}");
        }
        let err = Config::parse("[log]\nmodules = { sled = \"chatty\" }\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.modules.sled"), "{err}");
        let ok = Config::parse(
            "[log]\nlevel = \"warn,switchboard_broker=debug\"\nmodules = { sled = \"error\" }\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(ok.log_filter(), "warn,switchboard_broker=debug,sled=error");
    }

    #[test]
    fn an_ambiguous_size_and_a_port_out_of_range_get_their_own_messages() {
        let err = Config::parse("[mqtt]\nmax_payload = \"256 KB\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_payload") && err.contains("256KiB"),
            "{err}"
        );
        let err = Config::parse("[mqtt]\ntcp = \"127.0.0.1:70000\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("out of range"), "{err}");
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
