//! A listener address in config: `"host:port"`, or `""` for off.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen(Option<SocketAddr>);

impl Listen {
    /// A listener on `addr` (a literal of our own defaults; a malformed one is off,
    /// which the defaults' test would catch).
    pub fn on(addr: &str) -> Listen {
        Listen(addr.parse().ok())
    }

    pub fn off() -> Listen {
        Listen(None)
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.0
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() {
            return Ok(Listen(None));
        }
        text.trim().parse::<SocketAddr>().map(|a| Listen(Some(a))).map_err(|_| {
            let port = text.trim().rsplit_once(':').map(|(_, port)| port);
            let message = match port.map(str::parse::<u64>) {
                Some(Ok(port)) if port > 65_535 => {
                    format!("{text:?}: port {port} is out of range (1 to 65535, or 0 for any free port)")
                }
                _ => format!(
                    "{text:?} is not a listen address like \"0.0.0.0:1883\" or \"[::1]:1883\" (use \"\" to turn the listener off)"
                ),
            };
            serde::de::Error::custom(message)
        })
    }
}

impl Serialize for Listen {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(addr) => serializer.serialize_str(&addr.to_string()),
            None => serializer.serialize_str(""),
        }
    }
}
