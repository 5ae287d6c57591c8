//! A message as browsers see it, and its JSON encoding (payload rules of protocol v1:
//! JSON embedded, other UTF-8 as text, anything else base64).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

/// How a payload appears in JSON frames, decided once per message.
#[derive(Debug)]
pub enum EncodedPayload {
    Json(Box<RawValue>),
    Text(Arc<str>),
    Base64(String),
}

impl EncodedPayload {
    pub fn of(payload: &[u8]) -> EncodedPayload {
        let Ok(text) = std::str::from_utf8(payload) else {
            return EncodedPayload::Base64(
                base64::engine::general_purpose::STANDARD.encode(payload),
            );
        };
        if !text.trim().is_empty() {
            if let Ok(raw) = serde_json::from_str::<&RawValue>(text) {
                return EncodedPayload::Json(raw.to_owned());
            }
        }
        EncodedPayload::Text(Arc::from(text))
    }

    fn parts(&self) -> (PayloadRef<'_>, Option<&'static str>) {
        match self {
            EncodedPayload::Json(raw) => (PayloadRef::Json(raw), None),
            EncodedPayload::Text(text) => (PayloadRef::Str(text), Some("text")),
            EncodedPayload::Base64(b64) => (PayloadRef::Str(b64), Some("base64")),
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum PayloadRef<'a> {
    Json(&'a RawValue),
    Str(&'a str),
}

/// One MQTT message that reached the bridge.
#[derive(Debug)]
pub struct Message {
    /// Position in the history log (the protocol's opaque `offset`).
    pub offset: u64,
    pub topic: Arc<str>,
    pub payload: Bytes,
    /// The payload's JSON form, made on first use: most messages reach no room.
    encoded: OnceLock<EncodedPayload>,
    pub ts_ms: u64,
    pub retain: bool,
    /// When it reached the bridge (delivery-latency metric).
    pub arrived: Instant,
}

impl Message {
    pub fn new(
        offset: u64,
        topic: Arc<str>,
        payload: Bytes,
        ts_ms: u64,
        retain: bool,
        arrived: Instant,
    ) -> Message {
        Message {
            offset,
            topic,
            payload,
            encoded: OnceLock::new(),
            ts_ms,
            retain,
            arrived,
        }
    }

    fn encoded(&self) -> &EncodedPayload {
        self.encoded
            .get_or_init(|| EncodedPayload::of(&self.payload))
    }

    /// The `message` frame for `room`.
    pub fn frame(&self, room: &str, conflated: bool) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.frame_ref(room, conflated)).unwrap_or_default())
    }

    /// The same frame, to serialise inside another (`missed` lists), in JSON or
    /// (payload as bytes) MessagePack.
    pub fn frame_ref<'a>(&'a self, room: &'a str, conflated: bool) -> MessageFrame<'a> {
        MessageFrame {
            message: self,
            room,
            conflated,
        }
    }

    /// About how many bytes its frame takes (payloads may grow by base64's third).
    pub fn frame_size_estimate(&self, room: &str) -> usize {
        size_estimate(self.payload.len(), self.topic.len() + room.len())
    }
}

/// About how many bytes a frame carrying `payload` bytes and `names` bytes of topic
/// and room takes: base64 grows a payload by a third, the fields add ~100 bytes.
pub fn size_estimate(payload: usize, names: usize) -> usize {
    payload + payload / 3 + names + 100
}

/// One room's `message` frame of a message, shared by every member of the room and
/// encoded by the first writer that needs it in each codec (not under the hub's lock).
#[derive(Debug, Default)]
pub struct RoomFrame {
    json: OnceLock<Bytes>,
    msgpack: OnceLock<Bytes>,
}

impl RoomFrame {
    pub fn encoded(&self, codec: crate::frames::Codec, message: &Message, room: &str) -> Bytes {
        let cell = match codec {
            crate::frames::Codec::Json => &self.json,
            crate::frames::Codec::MsgPack => &self.msgpack,
        };
        cell.get_or_init(|| codec.encode(&message.frame_ref(room, false)))
            .clone()
    }
}

/// A `message` frame. Human-readable formats (JSON) follow the payload rules;
/// binary ones (MessagePack) carry the payload's bytes and no `encoding`.
pub struct MessageFrame<'a> {
    message: &'a Message,
    room: &'a str,
    conflated: bool,
}

impl Serialize for MessageFrame<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let message = self.message;
        let payload = match serializer.is_human_readable() {
            true => Some(message.encoded().parts()),
            false => None,
        };
        let encoding = payload.as_ref().and_then(|(_, encoding)| *encoding);
        let fields = 7 + usize::from(encoding.is_some()) + usize::from(self.conflated);
        let mut frame = serializer.serialize_struct("message", fields)?;
        frame.serialize_field("type", "message")?;
        frame.serialize_field("room", self.room)?;
        frame.serialize_field("topic", &*message.topic)?;
        match payload {
            Some((payload, _)) => frame.serialize_field("payload", &payload)?,
            None => frame.serialize_field("payload", &Raw(&message.payload))?,
        }
        if let Some(encoding) = encoding {
            frame.serialize_field("encoding", encoding)?;
        }
        frame.serialize_field("offset", &message.offset.to_string())?;
        frame.serialize_field("ts", &message.ts_ms)?;
        frame.serialize_field("retain", &message.retain)?;
        if self.conflated {
            frame.serialize_field("conflated", &true)?;
        }
        frame.end()
    }
}

/// Payload bytes as bytes (MessagePack `bin`).
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A retained value, as an item of `joined.state`.
#[derive(Debug, Clone)]
pub struct RetainedValue {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub ts_ms: u64,
}

impl RetainedValue {
    /// Its `joined.state` item; `room` is added for SSE `state` events.
    pub fn item<'a>(&'a self, room: Option<&'a str>) -> StateItem<'a> {
        StateItem { value: self, room }
    }

    pub fn size_estimate(&self) -> usize {
        size_estimate(self.payload.len(), self.topic.len())
    }
}

pub struct StateItem<'a> {
    value: &'a RetainedValue,
    room: Option<&'a str>,
}

impl Serialize for StateItem<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Item<'a, P> {
            topic: &'a str,
            payload: P,
            #[serde(skip_serializing_if = "Option::is_none")]
            encoding: Option<&'static str>,
            ts: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            room: Option<&'a str>,
        }
        if !serializer.is_human_readable() {
            return Item {
                topic: &self.value.topic,
                payload: Raw(&self.value.payload),
                encoding: None,
                ts: self.value.ts_ms,
                room: self.room,
            }
            .serialize(serializer);
        }
        let encoded = EncodedPayload::of(&self.value.payload);
        let (payload, encoding) = encoded.parts();
        Item {
            topic: &self.value.topic,
            payload,
            encoding,
            ts: self.value.ts_ms,
            room: self.room,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &[u8]) -> Message {
        Message::new(
            7,
            Arc::from("a/b"),
            Bytes::copy_from_slice(payload),
            1,
            false,
            Instant::now(),
        )
    }

    #[test]
    fn payloads_are_encoded_by_the_protocol_rules() {
        let json: serde_json::Value =
            serde_json::from_slice(&message(b"{\"t\": 21.5}").frame("r", false)).unwrap();
        assert_eq!(json["payload"]["t"], 21.5);
        assert!(json.get("encoding").is_none());
        assert_eq!(json["offset"], "7");

        let text: serde_json::Value =
            serde_json::from_slice(&message(b"hello").frame("r", false)).unwrap();
        assert_eq!(text["payload"], "hello");
        assert_eq!(text["encoding"], "text");

        let bin: serde_json::Value =
            serde_json::from_slice(&message(&[0xff, 0x00]).frame("r", true)).unwrap();
        assert_eq!(bin["payload"], "/wA=");
        assert_eq!(bin["encoding"], "base64");
        assert_eq!(bin["conflated"], true);

        let number: serde_json::Value =
            serde_json::from_slice(&message(b"22.0").frame("r", false)).unwrap();
        assert_eq!(number["payload"], 22.0);

        #[derive(serde::Deserialize)]
        struct Binary {
            #[serde(rename = "type")]
            kind: String,
            payload: serde_bytes_like::Bytes,
            encoding: Option<String>,
            offset: String,
            conflated: Option<bool>,
        }
        let packed =
            crate::frames::Codec::MsgPack.encode(&message(&[0xff, 0x00]).frame_ref("r", true));
        let binary: Binary = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(
            (
                binary.kind.as_str(),
                &binary.payload.0[..],
                binary.encoding,
                binary.offset.as_str(),
                binary.conflated
            ),
            ("message", &[0xff, 0x00][..], None, "7", Some(true))
        );
    }
}

/// Reads a MessagePack `bin` in tests.
#[cfg(test)]
mod serde_bytes_like {
    pub struct Bytes(pub Vec<u8>);

    impl<'de> serde::Deserialize<'de> for Bytes {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }
            }
            d.deserialize_bytes(Visit)
        }
    }
}
