//! Rooms protocol v1 requests: one JSON object per text frame (or MessagePack map
//! per binary frame), parsed into a typed enum; what cannot be parsed becomes the
//! error the protocol names for it.

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::frames::{ErrorCode, RequestId};

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Join {
        room: String,
        since: Option<Since>,
        rewind: Option<u64>,
    },
    Leave {
        room: String,
    },
    Publish(PublishRequest),
    Presence {
        room: String,
    },
    Ping,
    Auth {
        token: Option<String>,
    },
}

const TYPES: [&str; 6] = ["join", "leave", "publish", "presence", "ping", "auth"];

#[derive(Debug, Deserialize)]
pub struct Since {
    pub epoch: String,
    pub offset: Offset,
}

/// Offsets are strings on the wire; a number is accepted too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Offset {
    Text(String),
    Number(u64),
}

impl Offset {
    /// `None` for a string that is no offset of ours (the resume is then incomplete).
    pub fn value(&self) -> Option<u64> {
        match self {
            Offset::Text(text) => text.parse().ok(),
            Offset::Number(n) => Some(*n),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct PublishRequest {
    pub topic: String,
    payload: Option<Value>,
    payload_b64: Option<String>,
    encoding: Option<String>,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
}

impl PublishRequest {
    /// The bytes to publish: `payload` as JSON text (raw text with
    /// `"encoding":"text"`), or `payload_b64` decoded.
    pub fn payload_bytes(&self) -> Result<Bytes, String> {
        if let Some(b64) = &self.payload_b64 {
            return base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(Bytes::from)
                .map_err(|e| format!("payload_b64 is not base64: {e}"));
        }
        let payload = self
            .payload
            .as_ref()
            .ok_or("missing field `payload` (or `payload_b64`)")?;
        match (self.encoding.as_deref(), payload) {
            (Some("text"), Value::String(text)) => Ok(Bytes::from(text.clone())),
            (Some("text"), _) => Err("encoding \"text\" needs a string payload".into()),
            (Some(other), _) => Err(format!(
                "unknown encoding {other:?} (use \"text\" or payload_b64)"
            )),
            (None, value) => serde_json::to_vec(value)
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
        }
    }
}

/// The two fields every request is first read for.
#[derive(Deserialize)]
struct Envelope {
    id: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
}

/// Why a frame is not a request, and the `id` to answer with if one was readable.
#[derive(Debug)]
pub struct Refused {
    pub id: RequestId,
    pub code: ErrorCode,
    pub message: String,
}

/// Parses one text frame of at most `max_frame` bytes.
pub fn parse(text: &str, max_frame: usize) -> Result<(RequestId, Request), Refused> {
    let refuse = |id: RequestId, code, message: String| Refused { id, code, message };
    if text.len() > max_frame {
        let message = format!(
            "frame of {} bytes is over the {max_frame}-byte limit",
            text.len()
        );
        return Err(refuse(leading_id(text), ErrorCode::TooLarge, message));
    }
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            refuse(
                None,
                ErrorCode::BadRequest,
                "a request is one JSON object".into(),
            )
        } else {
            refuse(
                leading_id(text),
                ErrorCode::BadRequest,
                format!("malformed JSON: {e}"),
            )
        }
    })?;
    let (id, kind) = read_envelope(envelope.id.as_ref(), envelope.kind.as_ref())?;
    match serde_json::from_str::<Request>(text) {
        Ok(request) => Ok((id, request)),
        Err(e) => Err(refuse(id, ErrorCode::BadRequest, format!("{kind}: {e}"))),
    }
}

/// Parses one binary frame of the MessagePack subprotocol.
pub fn parse_binary(frame: &[u8], max_frame: usize) -> Result<(RequestId, Request), Refused> {
    let refuse = |id: RequestId, code, message: String| Refused { id, code, message };
    if frame.len() > max_frame {
        let message = format!(
            "frame of {} bytes is over the {max_frame}-byte limit",
            frame.len()
        );
        return Err(refuse(None, ErrorCode::TooLarge, message));
    }
    let object = crate::msgpack::request_object(frame)
        .map_err(|message| refuse(None, ErrorCode::BadRequest, message))?;
    let (id, kind) = read_envelope(object.get("id"), object.get("type"))?;
    match serde_json::from_value::<Request>(object) {
        Ok(request) => Ok((id, request)),
        Err(e) => Err(refuse(id, ErrorCode::BadRequest, format!("{kind}: {e}"))),
    }
}

/// The request's `id` (when numeric) and its known `type`.
fn read_envelope(id: Option<&Value>, kind: Option<&Value>) -> Result<(RequestId, String), Refused> {
    let refuse = |id: RequestId, code, message: String| Refused { id, code, message };
    let id = match id {
        Some(Value::Number(n)) => Some(n.clone()),
        _ => None,
    };
    let kind = match kind {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => {
            let message = "field `type` must be a string".into();
            return Err(refuse(id, ErrorCode::BadRequest, message));
        }
        None => {
            return Err(refuse(
                id,
                ErrorCode::BadRequest,
                "missing field `type`".into(),
            ))
        }
    };
    if !TYPES.contains(&kind.as_str()) {
        let message = format!("unknown request type {kind:?}");
        return Err(refuse(id, ErrorCode::UnknownType, message));
    }
    Ok((id, kind))
}

/// The `id` of a request too large or malformed to parse, if it leads the object.
fn leading_id(text: &str) -> RequestId {
    let start = text.find("\"id\"")?;
    let rest = text
        .get(start + 4..)?
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..end)?.parse::<u64>().ok().map(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(text: &str) -> PublishRequest {
        match parse(text, 1 << 16).unwrap().1 {
            Request::Publish(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn browser_payloads_become_mqtt_bytes() {
        let json = publish(r#"{"type":"publish","topic":"t","payload":{"on":true}}"#);
        assert_eq!(&json.payload_bytes().unwrap()[..], b"{\"on\":true}");
        let text = publish(r#"{"type":"publish","topic":"t","payload":"hello","encoding":"text"}"#);
        assert_eq!(&text.payload_bytes().unwrap()[..], b"hello");
        let quoted = publish(r#"{"type":"publish","topic":"t","payload":"hello"}"#);
        assert_eq!(&quoted.payload_bytes().unwrap()[..], b"\"hello\"");
        let binary = publish(r#"{"type":"publish","topic":"t","payload_b64":"/wA="}"#);
        assert_eq!(&binary.payload_bytes().unwrap()[..], &[0xff, 0x00]);
        assert!(publish(r#"{"type":"publish","topic":"t"}"#)
            .payload_bytes()
            .is_err());
    }

    #[test]
    fn refusals_carry_the_protocol_code_and_the_id() {
        let code = |text: &str| parse(text, 64).unwrap_err().code;
        assert_eq!(code("[1]"), ErrorCode::BadRequest);
        assert_eq!(code("{\"id\":1,"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"id":1}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"join","room":5}"#), ErrorCode::BadRequest);
        let long = format!(
            r#"{{"id": 42, "type":"join","room":"{}"}}"#,
            "a".repeat(100)
        );
        let refused = parse(&long, 64).unwrap_err();
        assert_eq!(
            (refused.code, refused.id),
            (ErrorCode::TooLarge, Some(42.into()))
        );
        let packed =
            rmp_serde::to_vec_named(&serde_json::json!({"type": "ping", "id": 8})).unwrap();
        let (id, request) = parse_binary(&packed, 64).unwrap();
        assert_eq!(id, Some(8.into()));
        assert!(matches!(request, Request::Ping));
        let packed =
            rmp_serde::to_vec_named(&serde_json::json!({"type": "dance", "id": 9})).unwrap();
        assert_eq!(
            parse_binary(&packed, 64).unwrap_err().code,
            ErrorCode::UnknownType
        );
        assert_eq!(
            parse_binary(&[0u8; 65], 64).unwrap_err().code,
            ErrorCode::TooLarge
        );
        let (id, request) = parse(r#"{"type":"ping","id":7}"#, 64).unwrap();
        assert_eq!(id, Some(7.into()));
        assert!(matches!(request, Request::Ping));
    }
}
