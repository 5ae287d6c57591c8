//! PUBLISH packets to clients, encoded here for both protocol versions: rumqttd's
//! `Publish` keeps QoS and packet id crate-private, and the core's messages carry
//! what MQTT 5 forwards (properties, remaining expiry, subscription identifiers).

use std::time::Instant;

use bytes::{BufMut, BytesMut};
use switchboard_router::Delivery;

use crate::packet::Version;

/// The header fields of one outgoing PUBLISH.
pub struct PublishHeader {
    pub qos: u8,
    pub pkid: u16,
    pub dup: bool,
}

/// Appends `delivery` as a PUBLISH to `out`; returns the bytes written, or `None`
/// when the message expired on the way (nothing written).
pub fn encode_publish(
    delivery: &Delivery,
    header: &PublishHeader,
    version: Version,
    now: Instant,
    out: &mut BytesMut,
) -> Option<usize> {
    let message = &delivery.message;
    let remaining_expiry = match message.expiry {
        Some(expiry) => Some(expiry.remaining_secs(now)?),
        None => None,
    };
    let mut properties = BytesMut::new();
    if version == Version::V5 {
        if let Some(props) = message.properties.as_deref() {
            if let Some(indicator) = props.payload_format_indicator {
                properties.put_u8(0x01);
                properties.put_u8(indicator);
            }
            if let Some(secs) = remaining_expiry {
                properties.put_u8(0x02);
                properties.put_u32(secs);
            }
            if let Some(content_type) = &props.content_type {
                properties.put_u8(0x03);
                put_string(&mut properties, content_type.as_bytes());
            }
            if let Some(response_topic) = &props.response_topic {
                properties.put_u8(0x08);
                put_string(&mut properties, response_topic.as_bytes());
            }
            if let Some(data) = &props.correlation_data {
                properties.put_u8(0x09);
                put_string(&mut properties, data);
            }
            for (key, value) in &props.user_properties {
                properties.put_u8(0x26);
                put_string(&mut properties, key.as_bytes());
                put_string(&mut properties, value.as_bytes());
            }
        } else if let Some(secs) = remaining_expiry {
            properties.put_u8(0x02);
            properties.put_u32(secs);
        }
        for id in &delivery.subscription_ids {
            properties.put_u8(0x0B);
            put_varint(&mut properties, *id as usize);
        }
    }
    let topic = message.topic.as_bytes();
    let pkid_len = if header.qos > 0 { 2 } else { 0 };
    let properties_len = if version == Version::V5 {
        varint_len(properties.len()) + properties.len()
    } else {
        0
    };
    let remaining = 2 + topic.len() + pkid_len + properties_len + message.payload.len();
    let start = out.len();
    let first = 0x30
        | (u8::from(header.dup && header.qos > 0) << 3)
        | ((header.qos & 0b11) << 1)
        | u8::from(delivery.retain);
    out.reserve(1 + varint_len(remaining) + remaining);
    out.put_u8(first);
    put_varint(out, remaining);
    put_string(out, topic);
    if header.qos > 0 {
        out.put_u16(header.pkid);
    }
    if version == Version::V5 {
        put_varint(out, properties.len());
        out.extend_from_slice(&properties);
    }
    out.extend_from_slice(&message.payload);
    Some(out.len() - start)
}

fn put_string(out: &mut BytesMut, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.put_u16(len);
    out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
}

fn varint_len(mut value: usize) -> usize {
    let mut len = 1;
    while value >= 128 {
        value >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rumqttd::protocol::{v4::V4, v5::V5, Packet, Protocol};
    use std::sync::Arc;
    use switchboard_router::{Expiry, Message, MessageProperties};

    fn delivery(qos: u8) -> Delivery {
        let mut message = Message::new("ü/ß", Bytes::from_static(b"hello"), qos, true);
        message.properties = Some(Arc::new(MessageProperties {
            content_type: Some("text/plain".into()),
            response_topic: Some("reply/1".into()),
            correlation_data: Some(Bytes::from_static(b"c1")),
            user_properties: vec![("k".into(), "v".into())],
            payload_format_indicator: Some(1),
        }));
        message.expiry = Some(Expiry::after_secs(60));
        Delivery {
            message: Arc::new(message),
            qos,
            retain: true,
            subscription_ids: vec![7, 300],
        }
    }

    #[test]
    fn both_codecs_read_what_we_write() {
        for qos in 0..=2u8 {
            let header = PublishHeader {
                qos,
                pkid: 513,
                dup: qos > 0,
            };
            let mut out = BytesMut::new();
            encode_publish(
                &delivery(qos),
                &header,
                Version::V5,
                Instant::now(),
                &mut out,
            )
            .unwrap();
            let Packet::Publish(publish, Some(props)) = V5.read_mut(&mut out, 1 << 20).unwrap()
            else {
                panic!("not a v5 publish")
            };
            assert_eq!(&publish.topic[..], "ü/ß".as_bytes());
            assert_eq!(&publish.payload[..], b"hello");
            assert!(publish.retain);
            assert_eq!(props.subscription_identifiers, vec![7, 300]);
            assert_eq!(props.response_topic.as_deref(), Some("reply/1"));
            assert_eq!(props.user_properties, vec![("k".into(), "v".into())]);
            assert!(props
                .message_expiry_interval
                .is_some_and(|s| (59..=60).contains(&s)));

            let mut out = BytesMut::new();
            encode_publish(
                &delivery(qos),
                &header,
                Version::V311,
                Instant::now(),
                &mut out,
            )
            .unwrap();
            let frame = out.clone();
            let Packet::Publish(publish, None) = V4.read_mut(&mut out, 1 << 20).unwrap() else {
                panic!("not a v4 publish")
            };
            assert_eq!(&publish.payload[..], b"hello");
            assert_eq!(
                crate::packet::publish_qos_and_pkid(&frame),
                Some((qos, if qos > 0 { 513 } else { 0 }))
            );
        }
    }

    #[test]
    fn expired_messages_are_not_written() {
        let mut d = delivery(1);
        let mut message = (*d.message).clone();
        message.expiry = Some(Expiry::after_secs(0));
        d.message = Arc::new(message);
        let header = PublishHeader {
            qos: 1,
            pkid: 1,
            dup: false,
        };
        let mut out = BytesMut::new();
        assert!(encode_publish(&d, &header, Version::V5, Instant::now(), &mut out).is_none());
        assert!(out.is_empty());
    }
}
