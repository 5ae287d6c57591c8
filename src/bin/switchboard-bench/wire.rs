//! Minimal MQTT 3.1.1 client framing for the load tool: just the packets it sends
//! and reads, written by hand so the tool measures the broker, not a client library.

use bytes::{Buf, BufMut, Bytes, BytesMut};

fn put_remaining_length(out: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_u16(s.len() as u16);
    out.extend_from_slice(s);
}

pub fn connect(client_id: &str, keep_alive: u16) -> BytesMut {
    let mut body = BytesMut::new();
    put_str(&mut body, b"MQTT");
    body.put_u8(4);
    body.put_u8(0b0000_0010); // clean session
    body.put_u16(keep_alive);
    put_str(&mut body, client_id.as_bytes());
    frame(0x10, &body)
}

pub fn subscribe(pkid: u16, filter: &str, qos: u8) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_u16(pkid);
    put_str(&mut body, filter.as_bytes());
    body.put_u8(qos);
    frame(0x82, &body)
}

pub fn publish(out: &mut BytesMut, topic: &str, payload: &[u8], qos: u8, pkid: u16, retain: bool) {
    let len = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload.len();
    out.put_u8(0x30 | (qos << 1) | u8::from(retain));
    put_remaining_length(out, len);
    put_str(out, topic.as_bytes());
    if qos > 0 {
        out.put_u16(pkid);
    }
    out.extend_from_slice(payload);
}

pub fn puback(out: &mut BytesMut, pkid: u16) {
    out.put_u8(0x40);
    out.put_u8(2);
    out.put_u16(pkid);
}

fn frame(first: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(first);
    put_remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A packet read from the broker.
pub enum Incoming {
    ConnAck(u8),
    SubAck,
    Publish {
        qos: u8,
        pkid: u16,
        retain: bool,
        topic: Bytes,
        payload: Bytes,
    },
    PubAck,
    Other,
}

/// Takes the next whole packet from `buf`, if there is one.
pub fn next(buf: &mut BytesMut) -> Option<Result<Incoming, String>> {
    let first = *buf.first()?;
    let mut remaining = 0usize;
    let mut header = 0;
    for i in 0..4 {
        let byte = *buf.get(1 + i)?;
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            header = i + 2;
            break;
        }
    }
    if header == 0 {
        return Some(Err("malformed remaining length".into()));
    }
    if buf.len() < header + remaining {
        return None;
    }
    buf.advance(header);
    let mut body = buf.split_to(remaining).freeze();
    let packet = match first >> 4 {
        2 if body.len() >= 2 => Incoming::ConnAck(body.get(1).copied().unwrap_or_default()),
        9 => Incoming::SubAck,
        4 => Incoming::PubAck,
        3 if body.len() >= 2 => {
            let qos = (first >> 1) & 3;
            let topic_len = usize::from(body.get_u16());
            if body.len() < topic_len {
                return Some(Err("short PUBLISH".into()));
            }
            let topic = body.split_to(topic_len);
            let pkid = if qos > 0 && body.len() >= 2 {
                body.get_u16()
            } else {
                0
            };
            Incoming::Publish {
                qos,
                pkid,
                retain: first & 1 == 1,
                topic,
                payload: body,
            }
        }
        _ => Incoming::Other,
    };
    Some(Ok(packet))
}
