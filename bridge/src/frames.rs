//! Rooms protocol v1 on the wire, server side: the error codes and every frame the
//! server sends, as typed structs (docs/protocol.md is their description).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Number;

/// The subprotocol of JSON text frames (the default).
pub const JSON_SUBPROTOCOL: &str = "switchboard.v1.json";
/// The subprotocol of MessagePack binary frames: the same objects, payloads as bytes.
pub const MSGPACK_SUBPROTOCOL: &str = "switchboard.v1.msgpack";

/// How one connection's frames are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Json,
    MsgPack,
}

impl Codec {
    /// The first subprotocol of the client's offer that we speak (JSON without one).
    pub fn negotiate<'a>(
        mut offered: impl Iterator<Item = &'a str>,
    ) -> (Codec, Option<&'static str>) {
        offered
            .find_map(|name| match name {
                JSON_SUBPROTOCOL => Some((Codec::Json, Some(JSON_SUBPROTOCOL))),
                MSGPACK_SUBPROTOCOL => Some((Codec::MsgPack, Some(MSGPACK_SUBPROTOCOL))),
                _ => None,
            })
            .unwrap_or((Codec::Json, None))
    }

    /// Encodes a frame in this codec (MessagePack maps with field names).
    pub fn encode<T: Serialize>(self, frame: &T) -> Bytes {
        match self {
            Codec::Json => encode(frame),
            Codec::MsgPack => Bytes::from(rmp_serde::to_vec_named(frame).unwrap_or_default()),
        }
    }

    /// A frame the session encoded as JSON (replies and pushes without payloads),
    /// in this codec.
    pub fn recode_json(self, json: Bytes) -> Bytes {
        match self {
            Codec::Json => json,
            Codec::MsgPack => match serde_json::from_slice::<serde_json::Value>(&json) {
                Ok(value) => self.encode(&value),
                Err(_) => Bytes::new(),
            },
        }
    }
}

/// A push many connections get (device and member events): encoded once as JSON by
/// the hub, and once as MessagePack by the first MessagePack connection writing it.
#[derive(Debug)]
pub struct PushFrame {
    json: Bytes,
    msgpack: OnceLock<Bytes>,
}

impl PushFrame {
    pub fn new(json: Bytes) -> Arc<PushFrame> {
        Arc::new(PushFrame {
            json,
            msgpack: OnceLock::new(),
        })
    }

    pub fn encoded(&self, codec: Codec) -> Bytes {
        match codec {
            Codec::Json => self.json.clone(),
            Codec::MsgPack => self
                .msgpack
                .get_or_init(|| codec.recode_json(self.json.clone()))
                .clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.json.len()
    }
}

/// A request's `id`, echoed in its reply.
pub type RequestId = Option<Number>;

/// Stable `error.code` values (the table in docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownType,
    TooLarge,
    RateLimited,
    InvalidRoom,
    Forbidden,
    InvalidTopic,
    NotJoined,
    AlreadyJoined,
    TooManyRooms,
    Unsupported,
    Unauthorized,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidTopic => "invalid_topic",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::Unsupported => "unsupported",
        }
    }
}

/// Encodes a frame. Our own types always serialise; an empty frame would be a bug.
pub fn encode<T: Serialize>(frame: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(frame).unwrap_or_default())
}

#[derive(Serialize)]
pub struct Limits {
    pub max_frame: usize,
    pub max_rooms: usize,
    pub max_requests_per_sec: u32,
    pub max_payload: usize,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "welcome")]
pub struct Welcome<'a> {
    pub session: &'a str,
    /// The token's `sub`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    pub heartbeat_ms: u64,
    pub limits: Limits,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "error")]
pub struct ErrorFrame<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: &'a RequestId,
    pub code: ErrorCode,
    pub message: &'a str,
}

/// Replies without fields of their own: `ack`, `pong`.
#[derive(Serialize)]
pub struct Bare<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: &'a RequestId,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "left")]
pub struct Left<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: &'a RequestId,
    pub room: &'a str,
    /// Why the server made it leave (`forbidden`: a fresh token no longer grants it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The token expired: a fresh `auth` within `grace_ms`, or the connection closes (4002).
#[derive(Serialize)]
#[serde(tag = "type", rename = "token_expired")]
pub struct TokenExpired {
    pub grace_ms: u64,
}

/// A room member as others see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberInfo {
    pub session: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Arc<str>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "presence")]
pub struct PresenceReply<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: &'a RequestId,
    pub room: &'a str,
    pub members: Vec<MemberInfo>,
    /// More members than `[bridge] max_reply_bytes` holds.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "member")]
pub struct MemberEvent<'a> {
    pub room: &'a str,
    pub event: &'static str,
    pub member: &'a MemberInfo,
}

/// A `$devices` state item or push.
#[derive(Serialize)]
pub struct DeviceFrame<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    pub client_id: &'a str,
    pub online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_offered_subprotocol_we_speak_is_chosen() {
        let pick = |offer: &[&str]| Codec::negotiate(offer.iter().copied());
        assert_eq!(pick(&[]), (Codec::Json, None));
        assert_eq!(pick(&["mqtt"]), (Codec::Json, None));
        assert_eq!(
            pick(&["x", MSGPACK_SUBPROTOCOL, JSON_SUBPROTOCOL]),
            (Codec::MsgPack, Some(MSGPACK_SUBPROTOCOL))
        );
        assert_eq!(
            pick(&[JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL]),
            (Codec::Json, Some(JSON_SUBPROTOCOL))
        );
        let ack = Codec::MsgPack.recode_json(encode(&Bare {
            kind: "ack",
            id: &Some(Number::from(3)),
        }));
        let value: serde_json::Value = rmp_serde::from_slice(&ack).unwrap();
        assert_eq!(value, serde_json::json!({"type": "ack", "id": 3}));
        let push = PushFrame::new(Bytes::from_static(br#"{"type":"member","event":"join"}"#));
        let packed = push.encoded(Codec::MsgPack);
        assert_eq!(packed, push.encoded(Codec::MsgPack), "encoded once, shared");
        let value: serde_json::Value = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(value["event"], "join");
        assert_eq!(
            &push.encoded(Codec::Json)[..],
            br#"{"type":"member","event":"join"}"#
        );
    }

    #[test]
    fn frames_serialise_as_the_protocol_says() {
        let id: RequestId = Some(Number::from(3));
        let error = ErrorFrame {
            id: &id,
            code: ErrorCode::NotJoined,
            message: "m",
        };
        assert_eq!(
            String::from_utf8(encode(&error).to_vec()).unwrap(),
            r#"{"type":"error","id":3,"code":"not_joined","message":"m"}"#
        );
        let ack = Bare {
            kind: "ack",
            id: &None,
        };
        assert_eq!(&encode(&ack)[..], br#"{"type":"ack"}"#);
        for code in [ErrorCode::BadRequest, ErrorCode::TooManyRooms] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(code.as_str())
            );
        }
    }
}
