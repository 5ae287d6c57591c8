//! Wire-level helpers the codecs do not offer: packet types, QoS and packet ids read
//! from raw bytes, and making a packet safe to write for the client's protocol version.

use rumqttd::protocol::{ConnAck, ConnAckProperties, ConnectReturnCode, Packet};

/// The MQTT protocol a connection speaks, decided by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

impl Version {
    pub fn label(self) -> &'static str {
        match self {
            Version::V311 => "3.1.1",
            Version::V5 => "5",
        }
    }
}

/// Control packet types (the high nibble of the first byte).
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const PINGREQ: u8 = 12;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// Whether a client may send this packet type after CONNECT. Everything else is a
/// protocol error, and is refused before the codec sees it (the v5 codec panics on
/// server-to-client types such as CONNACK).
pub fn client_may_send(packet_type: u8) -> bool {
    use kind::*;
    matches!(
        packet_type,
        PUBLISH
            | PUBACK
            | PUBREC
            | PUBREL
            | PUBCOMP
            | SUBSCRIBE
            | UNSUBSCRIBE
            | PINGREQ
            | DISCONNECT
    )
}

/// A remaining length longer than MQTT's four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedLength;

/// Fixed header of the frame at the start of `buf`: (first byte, header length,
/// remaining length), or `None` when more bytes are needed.
pub fn fixed_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, MalformedLength> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut remaining: usize = 0;
    for (i, byte) in buf.iter().skip(1).enumerate().take(4) {
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((first, i + 2, remaining)));
        }
    }
    if buf.len() >= 5 {
        Err(MalformedLength)
    } else {
        Ok(None)
    }
}

/// QoS and packet id of an encoded PUBLISH frame (`frame` starts at its fixed header).
pub fn publish_qos_and_pkid(frame: &[u8]) -> Option<(u8, u16)> {
    let (first, header_len, _) = fixed_header(frame).ok()??;
    let qos = (first >> 1) & 0b11;
    if qos == 0 {
        return Some((0, 0));
    }
    let topic_len_at = header_len;
    let topic_len = u16::from_be_bytes([*frame.get(topic_len_at)?, *frame.get(topic_len_at + 1)?]);
    let pkid_at = topic_len_at + 2 + usize::from(topic_len);
    let pkid = u16::from_be_bytes([*frame.get(pkid_at)?, *frame.get(pkid_at + 1)?]);
    Some((qos, pkid))
}

/// Strips what a 3.1.1 client cannot receive: every property, and DISCONNECT, which
/// 3.1.1 servers never send. The v4 writer has `unreachable!` for both.
pub fn for_version(packet: Packet, version: Version) -> Option<Packet> {
    if version == Version::V5 {
        return Some(packet);
    }
    Some(match packet {
        Packet::Publish(p, _) => Packet::Publish(p, None),
        Packet::PubAck(p, _) => Packet::PubAck(p, None),
        Packet::PubRec(p, _) => Packet::PubRec(p, None),
        Packet::PubRel(p, _) => Packet::PubRel(p, None),
        Packet::PubComp(p, _) => Packet::PubComp(p, None),
        Packet::SubAck(p, _) => Packet::SubAck(p, None),
        Packet::UnsubAck(p, _) => Packet::UnsubAck(p, None),
        Packet::ConnAck(p, _) => Packet::ConnAck(p, None),
        Packet::PingResp(p) => Packet::PingResp(p),
        Packet::Disconnect(..) => return None,
        _ => return None,
    })
}

/// A CONNACK refusing the connection, with the code each version understands, or
/// `None` where 3.1.1 has no code and the connection is just closed.
pub fn refusal(version: Version, reason: Refusal, message: &str) -> Option<Packet> {
    let code = match version {
        Version::V311 => reason.v311_code()?,
        Version::V5 => reason.v5_code(),
    };
    let properties = (version == Version::V5).then(|| ConnAckProperties {
        reason_string: Some(message.to_string()),
        ..Default::default()
    });
    Some(Packet::ConnAck(
        ConnAck {
            session_present: false,
            code,
        },
        properties,
    ))
}

/// Why a connection was refused; the label is the `reason` in logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnsupportedProtocol,
    ClientIdInvalid,
    KeepAliveTooLong,
    ServerBusy,
    Malformed,
    Timeout,
    ProtocolError,
    Handshake,
    WillTopicInvalid,
    /// Unknown user or wrong password.
    BadCredentials,
    /// No username where one is required.
    NotAuthorized,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::UnsupportedProtocol => "unsupported_protocol",
            Refusal::ClientIdInvalid => "client_id_invalid",
            Refusal::KeepAliveTooLong => "keepalive_too_long",
            Refusal::ServerBusy => "server_busy",
            Refusal::Malformed => "malformed",
            Refusal::Timeout => "connect_timeout",
            Refusal::ProtocolError => "protocol_error",
            Refusal::Handshake => "handshake_failed",
            Refusal::WillTopicInvalid => "will_topic_invalid",
            Refusal::BadCredentials => "bad_credentials",
            Refusal::NotAuthorized => "not_authorized",
        }
    }

    fn v311_code(self) -> Option<ConnectReturnCode> {
        Some(match self {
            Refusal::UnsupportedProtocol => ConnectReturnCode::RefusedProtocolVersion,
            // 3.1.1 has no code for a refused keep-alive; Mosquitto uses this one too.
            Refusal::ClientIdInvalid | Refusal::KeepAliveTooLong => {
                ConnectReturnCode::ClientIdentifierNotValid
            }
            // A protocol violation: 3.1.1 closes the connection without CONNACK.
            Refusal::WillTopicInvalid => return None,
            Refusal::BadCredentials => ConnectReturnCode::BadUserNamePassword,
            Refusal::NotAuthorized => ConnectReturnCode::NotAuthorized,
            _ => ConnectReturnCode::ServiceUnavailable,
        })
    }

    fn v5_code(self) -> ConnectReturnCode {
        match self {
            Refusal::UnsupportedProtocol => ConnectReturnCode::UnsupportedProtocolVersion,
            Refusal::ClientIdInvalid => ConnectReturnCode::ClientIdentifierNotValid,
            Refusal::KeepAliveTooLong => ConnectReturnCode::ProtocolError,
            Refusal::ServerBusy => ConnectReturnCode::ServerBusy,
            Refusal::Malformed => ConnectReturnCode::MalformedPacket,
            Refusal::ProtocolError | Refusal::Timeout | Refusal::Handshake => {
                ConnectReturnCode::ProtocolError
            }
            Refusal::WillTopicInvalid => ConnectReturnCode::TopicNameInvalid,
            Refusal::BadCredentials => ConnectReturnCode::BadUserNamePassword,
            Refusal::NotAuthorized => ConnectReturnCode::NotAuthorized,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_qos_and_pkid_from_a_qos1_publish() {
        // PUBLISH qos1, topic "a/b", pkid 7, payload "x"
        let frame = [0x32, 8, 0, 3, b'a', b'/', b'b', 0, 7, b'x'];
        assert_eq!(publish_qos_and_pkid(&frame), Some((1, 7)));
    }

    #[test]
    fn malformed_remaining_length_is_an_error() {
        assert!(fixed_header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert_eq!(fixed_header(&[0x30, 0xff]), Ok(None));
        assert_eq!(fixed_header(&[0x30, 0x05]), Ok(Some((0x30, 2, 5))));
    }
}
