//! Requests of the `switchboard.v1.msgpack` subprotocol: one MessagePack map per
//! binary frame, read (depth-bounded) as the JSON object the JSON subprotocol would
//! carry, so both share one parser. A binary `payload` becomes `payload_b64`.

use base64::Engine;
use rmpv::Value as Packed;
use serde_json::{Map, Number, Value};

/// Requests are flat; claims and payloads nest a little. Deeper input is refused
/// by the decoder before anything recurses further.
const MAX_DEPTH: usize = 16;

/// The request object in one binary frame.
pub fn request_object(frame: &[u8]) -> Result<Value, String> {
    let mut rest = frame;
    let value = rmpv::decode::read_value_with_max_depth(&mut rest, MAX_DEPTH)
        .map_err(|e| format!("malformed MessagePack: {e}"))?;
    if !rest.is_empty() {
        return Err("one MessagePack value per frame".into());
    }
    let Packed::Map(entries) = value else {
        return Err("a request is one MessagePack map".into());
    };
    let mut object = Map::new();
    for (key, value) in entries {
        let Packed::String(key) = key else {
            return Err("map keys must be strings".into());
        };
        let key = key.into_str().ok_or("map keys must be UTF-8")?;
        match (key.as_str(), value) {
            ("payload", Packed::Binary(bytes)) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                object.insert("payload_b64".into(), Value::String(b64));
            }
            (_, value) => {
                object.insert(key, json(value)?);
            }
        }
    }
    Ok(Value::Object(object))
}

/// Recursion is bounded by `MAX_DEPTH`, which the decoder enforced.
fn json(value: Packed) -> Result<Value, String> {
    Ok(match value {
        Packed::Nil => Value::Null,
        Packed::Boolean(b) => Value::Bool(b),
        Packed::Integer(n) => match (n.as_u64(), n.as_i64()) {
            (Some(n), _) => Value::from(n),
            (None, Some(n)) => Value::from(n),
            (None, None) => return Err("integer out of range".into()),
        },
        Packed::F32(f) => float(f64::from(f))?,
        Packed::F64(f) => float(f)?,
        Packed::String(s) => Value::String(s.into_str().ok_or("strings must be UTF-8")?),
        Packed::Array(items) => {
            Value::Array(items.into_iter().map(json).collect::<Result<_, _>>()?)
        }
        Packed::Map(entries) => {
            let mut object = Map::new();
            for (key, value) in entries {
                let Packed::String(key) = key else {
                    return Err("map keys must be strings".into());
                };
                object.insert(
                    key.into_str().ok_or("map keys must be UTF-8")?,
                    json(value)?,
                );
            }
            Value::Object(object)
        }
        Packed::Binary(_) => return Err("bytes only as `payload`".into()),
        Packed::Ext(..) => return Err("MessagePack extension types are not used".into()),
    })
}

fn float(f: f64) -> Result<Value, String> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| "numbers must be finite".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_become_request_objects_and_bytes_payloads() {
        let frame =
            rmp_serde::to_vec_named(&serde_json::json!({"type": "join", "id": 1, "room": "a/#"}))
                .unwrap();
        assert_eq!(
            request_object(&frame).unwrap(),
            serde_json::json!({"type": "join", "id": 1, "room": "a/#"})
        );
        let publish = Packed::Map(vec![
            (Packed::from("type"), Packed::from("publish")),
            (Packed::from("topic"), Packed::from("t")),
            (Packed::from("payload"), Packed::Binary(vec![0xff, 0])),
        ]);
        let mut frame = Vec::new();
        rmpv::encode::write_value(&mut frame, &publish).unwrap();
        assert_eq!(request_object(&frame).unwrap()["payload_b64"], "/wA=");
    }

    #[test]
    fn hostile_frames_are_refused_without_deep_recursion() {
        let deep: Vec<u8> = std::iter::repeat_n(0x91u8, 100_000).chain([0xc0]).collect();
        assert!(request_object(&deep).unwrap_err().contains("malformed"));
        assert!(request_object(&[0x93, 1]).is_err(), "truncated array");
        assert!(
            request_object(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err(),
            "huge array header"
        );
        assert!(request_object(&[0x01]).unwrap_err().contains("map"));
        assert!(request_object(&[0x80, 0x80]).unwrap_err().contains("one"));
        assert!(request_object(&[0x81, 0x01, 0x01])
            .unwrap_err()
            .contains("keys"));
        let nan = [0x81, 0xa1, b'x', 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0];
        assert!(request_object(&nan).unwrap_err().contains("finite"));
    }
}
