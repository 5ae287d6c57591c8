//! What the core routes: a published message, shared by every subscriber it reaches,
//! and one subscriber's copy of it (its QoS, retain flag and subscription ids).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// MQTT 5 properties a message carries from publisher to subscriber unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
}

impl MessageProperties {
    fn heap_size(&self) -> usize {
        self.content_type.as_ref().map_or(0, String::len)
            + self.response_topic.as_ref().map_or(0, String::len)
            + self.correlation_data.as_ref().map_or(0, Bytes::len)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
    }
}

/// A published message. Immutable once routed; subscribers share it through `Arc`.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: u8,
    pub retain: bool,
    pub properties: Option<Arc<MessageProperties>>,
    /// MQTT 5 Message Expiry: when it stops being delivered, and the interval given.
    pub expiry: Option<Expiry>,
    /// The publishing client id (No Local); `None` for the server's own messages.
    pub publisher: Option<Arc<str>>,
    /// Milliseconds since the Unix epoch when it was accepted.
    pub ts_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub at: Instant,
}

impl Expiry {
    pub fn after_secs(secs: u32) -> Expiry {
        Expiry {
            at: Instant::now() + Duration::from_secs(u64::from(secs)),
        }
    }

    /// Whole seconds left (what is forwarded), `None` once expired.
    pub fn remaining_secs(&self, now: Instant) -> Option<u32> {
        let left = self.at.checked_duration_since(now)?;
        if left.is_zero() {
            return None;
        }
        Some(u32::try_from(left.as_secs().max(1)).unwrap_or(u32::MAX))
    }
}

impl Message {
    pub fn new(topic: impl Into<Arc<str>>, payload: Bytes, qos: u8, retain: bool) -> Message {
        Message {
            topic: topic.into(),
            payload,
            qos: qos.min(2),
            retain,
            properties: None,
            expiry: None,
            publisher: None,
            ts_ms: now_ms(),
        }
    }

    pub fn expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e.remaining_secs(now).is_none())
    }

    /// Bytes this message holds on the heap, for queue byte limits.
    pub fn cost(&self) -> usize {
        const OVERHEAD: usize = 160;
        OVERHEAD
            + self.topic.len()
            + self.payload.len()
            + self.properties.as_ref().map_or(0, |p| p.heap_size())
    }
}

/// One subscriber's copy of a message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// min(published QoS, granted QoS).
    pub qos: u8,
    /// The retain flag as this subscriber sees it (Retain As Published, or a
    /// retained message served on subscribe).
    pub retain: bool,
    /// Identifiers of every subscription of this client that matched.
    pub subscription_ids: Vec<u32>,
}

impl Delivery {
    pub fn cost(&self) -> usize {
        self.message.cost() + self.subscription_ids.len() * 4
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
