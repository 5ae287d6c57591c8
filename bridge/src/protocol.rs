//! Rooms protocol v1 on the wire: error codes and the frames the server sends.

use serde::Serialize;
use serde_json::{json, Value};

/// The subprotocol of JSON text frames.
pub const JSON_SUBPROTOCOL: &str = "switchboard.v1.json";

/// Stable `error.code` values (documented in docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            ErrorCode::InvalidTopic => "invalid_topic",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::Unsupported => "unsupported",
        }
    }
}

pub fn error_frame(id: Option<&Value>, code: ErrorCode, message: &str) -> Value {
    let mut frame = json!({"type": "error", "code": code.as_str(), "message": message});
    if let (Some(id), Some(map)) = (id, frame.as_object_mut()) {
        map.insert("id".into(), id.clone());
    }
    frame
}

/// `{"type": kind, "id": id, ...fields}`.
pub fn reply(kind: &str, id: Option<&Value>, fields: Value) -> Value {
    let mut frame = json!({"type": kind});
    if let Some(map) = frame.as_object_mut() {
        if let Some(id) = id {
            map.insert("id".into(), id.clone());
        }
        if let Value::Object(extra) = fields {
            map.extend(extra);
        }
    }
    frame
}

#[derive(Serialize)]
pub struct Limits {
    pub max_frame: usize,
    pub max_rooms: usize,
    pub max_requests_per_sec: u32,
    pub max_payload: usize,
}
