//! Switchboard's configuration: typed TOML with defaults, strict keys and clear errors.
//!
//! `Config::load(Some(path))` reads a file, `Config::load(None)` gives the embedded
//! defaults. Unknown keys and bad values are errors that name the key and the file.
//! Relative paths resolve against the config file's folder (the working directory
//! when there is no file).

mod listen;
mod size;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use listen::Listen;
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
    pub router: RouterConfig,
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Listen::on("0.0.0.0:8080"),
        }
    }
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Bytes per segment of each subscribed filter's in-memory log.
    pub segment_size: ByteSize,
    /// Segments kept per filter; a subscriber further behind than this loses messages.
    pub segment_count: usize,
    /// Messages the router hands a QoS 0 subscriber per read, and retained messages
    /// a new QoS 0 subscription receives at most.
    pub max_outgoing_batch: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            segment_size: ByteSize(4 * 1024 * 1024),
            segment_count: 4,
            max_outgoing_batch: 1_000_000,
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
        if self.router.segment_count == 0 {
            return Err(invalid("router.segment_count", "must be at least 1"));
        }
        if self.router.segment_size.0 < 1024 {
            return Err(invalid("router.segment_size", "must be at least 1KiB"));
        }
        if self.router.max_outgoing_batch == 0 {
            return Err(invalid("router.max_outgoing_batch", "must be at least 1"));
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
