//! The first packet: read CONNECT within the deadline, pick the codec from its
//! protocol level, and check the client id.

use bytes::BytesMut;
use rumqttd::protocol::{ConnectProperties, LastWill, LastWillProperties, Login, Packet};

use crate::codec::Codec;
use crate::packet::{fixed_header, kind, Refusal, Version};
use crate::transport::{read_into, MqttIo};
use crate::INTERNAL_ID_PREFIX;

/// A decoded CONNECT.
pub struct ConnectRequest {
    pub version: Version,
    pub client_id: String,
    pub keep_alive: u16,
    pub clean_start: bool,
    pub properties: Option<ConnectProperties>,
    pub will: Option<LastWill>,
    pub will_properties: Option<LastWillProperties>,
    pub login: Option<Login>,
}

/// Why no CONNECT could be read. `version` is known when the refusal can be answered
/// with a CONNACK the client understands.
pub struct ConnectFailure {
    pub refusal: Refusal,
    pub version: Option<Version>,
    pub detail: String,
}

impl ConnectFailure {
    fn new(refusal: Refusal, version: Option<Version>, detail: impl Into<String>) -> Self {
        ConnectFailure {
            refusal,
            version,
            detail: detail.into(),
        }
    }
}

/// Reads bytes until a whole CONNECT frame is buffered, then decodes it.
pub async fn read_connect<I: MqttIo>(
    io: &mut I,
    buf: &mut BytesMut,
    max_remaining: usize,
) -> Result<(ConnectRequest, Codec), ConnectFailure> {
    loop {
        match fixed_header(buf) {
            Err(_) => {
                return Err(ConnectFailure::new(
                    Refusal::Malformed,
                    None,
                    "malformed remaining length in the first packet",
                ))
            }
            Ok(Some((first, _, _))) if first >> 4 != kind::CONNECT => {
                return Err(ConnectFailure::new(
                    Refusal::ProtocolError,
                    None,
                    format!("first packet was type {} instead of CONNECT", first >> 4),
                ))
            }
            Ok(Some((_, header_len, remaining))) => {
                if remaining > max_remaining {
                    return Err(ConnectFailure::new(
                        Refusal::Malformed,
                        None,
                        format!(
                            "CONNECT of {remaining} bytes is over the {max_remaining}-byte limit"
                        ),
                    ));
                }
                if buf.len() >= header_len + remaining {
                    return decode(buf, header_len, max_remaining);
                }
            }
            Ok(None) => {}
        }
        match read_into(io, buf).await {
            Ok(0) => {
                return Err(ConnectFailure::new(
                    Refusal::ProtocolError,
                    None,
                    "closed before CONNECT",
                ))
            }
            Ok(_) => {}
            Err(e) => {
                return Err(ConnectFailure::new(
                    Refusal::ProtocolError,
                    None,
                    format!("read error before CONNECT: {e}"),
                ))
            }
        }
    }
}

fn decode(
    buf: &mut BytesMut,
    header_len: usize,
    max_remaining: usize,
) -> Result<(ConnectRequest, Codec), ConnectFailure> {
    let version = protocol_version(buf.get(header_len..).unwrap_or_default())?;
    let mut codec = Codec::new(version);
    let packet = codec.read(buf, max_remaining).map_err(|e| {
        ConnectFailure::new(
            Refusal::Malformed,
            Some(version),
            format!("malformed CONNECT: {e}"),
        )
    })?;
    let Packet::Connect(connect, properties, will, will_properties, login) = packet else {
        return Err(ConnectFailure::new(
            Refusal::ProtocolError,
            Some(version),
            "first packet was not CONNECT",
        ));
    };
    Ok((
        ConnectRequest {
            version,
            client_id: connect.client_id,
            keep_alive: connect.keep_alive,
            clean_start: connect.clean_session,
            properties,
            will,
            will_properties,
            login,
        },
        codec,
    ))
}

/// The protocol level from CONNECT's variable header: "MQTT" level 4 or 5.
fn protocol_version(variable_header: &[u8]) -> Result<Version, ConnectFailure> {
    let malformed =
        || ConnectFailure::new(Refusal::Malformed, None, "CONNECT has no protocol name");
    let name_len = match variable_header {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => return Err(malformed()),
    };
    let name = variable_header.get(2..2 + name_len).ok_or_else(malformed)?;
    let level = *variable_header.get(2 + name_len).ok_or_else(malformed)?;
    match (name, level) {
        (b"MQTT", 4) => Ok(Version::V311),
        (b"MQTT", 5) => Ok(Version::V5),
        (b"MQIsdp", 3) => Err(ConnectFailure::new(
            Refusal::UnsupportedProtocol,
            Some(Version::V311),
            "MQTT 3.1 (MQIsdp) is not supported; use 3.1.1 or 5",
        )),
        _ => Err(ConnectFailure::new(
            Refusal::UnsupportedProtocol,
            Some(Version::V311),
            format!(
                "unsupported protocol {:?} level {level}",
                String::from_utf8_lossy(name)
            ),
        )),
    }
}

/// Why a client id cannot be used, or `None` when it can. Any UTF-8 is accepted
/// (as Mosquitto does) but NUL, which MQTT strings may not hold, and our reserved
/// prefix.
pub fn client_id_problem(client_id: &str, max_len: usize) -> Option<String> {
    if client_id.len() > max_len {
        return Some(format!(
            "client id of {} bytes is over the {max_len}-byte limit",
            client_id.len()
        ));
    }
    if client_id.contains('\0') {
        return Some("client id contains NUL".into());
    }
    if client_id.starts_with(INTERNAL_ID_PREFIX) {
        return Some(format!(
            "client ids starting with {INTERNAL_ID_PREFIX:?} are reserved"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_utf8_client_id_is_accepted_but_reserved_ones() {
        assert!(client_id_problem("dev#1", 64).is_none());
        assert!(client_id_problem("a/b+", 64).is_none());
        assert!(client_id_problem("$sys", 64).is_none());
        assert!(client_id_problem("ü", 64).is_none());
        assert!(client_id_problem("a\0b", 64).is_some());
        assert!(client_id_problem("switchboard-internal-x", 64).is_some());
        assert!(client_id_problem(&"x".repeat(65), 64).is_some());
        assert!(client_id_problem("sensor-17", 64).is_none());
    }

    #[test]
    fn protocol_level_picks_the_codec() {
        assert_eq!(
            protocol_version(b"\0\x04MQTT\x04").ok(),
            Some(Version::V311)
        );
        assert_eq!(protocol_version(b"\0\x04MQTT\x05").ok(), Some(Version::V5));
        assert!(protocol_version(b"\0\x06MQIsdp\x03").is_err());
        assert!(protocol_version(b"\0").is_err());
    }
}
