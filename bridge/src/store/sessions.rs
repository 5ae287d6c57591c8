//! Persistent MQTT sessions in the store, one record per client id: subscriptions
//! with their options, the expiry, and the QoS 1/2 messages waiting. Records are
//! JSON (payloads base64): written at every autosave and at shutdown, read at start.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use switchboard_broker::router::{
    MessageProperties, SessionSnapshot, StoredDelivery, SubscriptionOptions,
};

use super::StoreError;

#[derive(Serialize, Deserialize)]
struct SessionRecord {
    expiry_secs: u64,
    subscriptions: Vec<SubscriptionRecord>,
    messages: Vec<MessageRecord>,
}

#[derive(Serialize, Deserialize)]
struct SubscriptionRecord {
    filter: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
    identifier: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct MessageRecord {
    topic: String,
    payload: String,
    qos: u8,
    retain: bool,
    subscription_ids: Vec<u32>,
    expiry_secs: Option<u32>,
    publisher: Option<String>,
    ts_ms: u64,
    properties: Option<PropertiesRecord>,
}

#[derive(Serialize, Deserialize)]
struct PropertiesRecord {
    payload_format_indicator: Option<u8>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<String>,
    user_properties: Vec<(String, String)>,
}

pub fn encode(snapshot: &SessionSnapshot) -> Vec<u8> {
    let record = SessionRecord {
        expiry_secs: snapshot.expiry_secs,
        subscriptions: snapshot
            .subscriptions
            .iter()
            .map(|(filter, o)| SubscriptionRecord {
                filter: filter.clone(),
                qos: o.qos,
                no_local: o.no_local,
                retain_as_published: o.retain_as_published,
                retain_handling: o.retain_handling,
                identifier: o.identifier,
            })
            .collect(),
        messages: snapshot.messages.iter().map(message_record).collect(),
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

fn message_record(m: &StoredDelivery) -> MessageRecord {
    MessageRecord {
        topic: m.topic.clone(),
        payload: STANDARD.encode(&m.payload),
        qos: m.qos,
        retain: m.retain,
        subscription_ids: m.subscription_ids.clone(),
        expiry_secs: m.expiry_secs,
        publisher: m.publisher.clone(),
        ts_ms: m.ts_ms,
        properties: m.properties.as_ref().map(|p| PropertiesRecord {
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.as_ref().map(|d| STANDARD.encode(d)),
            user_properties: p.user_properties.clone(),
        }),
    }
}

pub fn decode(key: &[u8], value: &[u8]) -> Result<SessionSnapshot, StoreError> {
    let client_id = String::from_utf8_lossy(key).into_owned();
    let corrupt = |message: String| StoreError::Corrupt {
        topic: format!("<session {client_id:?}>"),
        message,
    };
    let record: SessionRecord =
        serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
    let bytes = |text: &str| {
        STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(|e| corrupt(e.to_string()))
    };
    let mut messages = Vec::with_capacity(record.messages.len());
    for m in record.messages {
        let properties = match m.properties {
            Some(p) => Some(MessageProperties {
                payload_format_indicator: p.payload_format_indicator,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data.as_deref().map(bytes).transpose()?,
                user_properties: p.user_properties,
            }),
            None => None,
        };
        messages.push(StoredDelivery {
            payload: bytes(&m.payload)?,
            topic: m.topic,
            qos: m.qos,
            retain: m.retain,
            subscription_ids: m.subscription_ids,
            properties,
            expiry_secs: m.expiry_secs,
            publisher: m.publisher,
            ts_ms: m.ts_ms,
        });
    }
    Ok(SessionSnapshot {
        client_id,
        expiry_secs: record.expiry_secs,
        subscriptions: record
            .subscriptions
            .into_iter()
            .map(|s| {
                let options = SubscriptionOptions {
                    qos: s.qos.min(2),
                    no_local: s.no_local,
                    retain_as_published: s.retain_as_published,
                    retain_handling: s.retain_handling,
                    identifier: s.identifier,
                };
                (s.filter, options)
            })
            .collect(),
        messages,
    })
}
