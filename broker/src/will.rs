//! Wills: kept by the edge from CONNECT and published through the core like any
//! PUBLISH when a connection ends without DISCONNECT (after its delay, unless the
//! client comes back first).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttd::protocol::{LastWill, LastWillProperties};
use switchboard_router::topic::check_topic_name;
use switchboard_router::{Expiry, Message, MessageProperties};

use crate::Edge;

/// Why a CONNECT's will is refused.
#[derive(Debug)]
pub enum WillRefused {
    /// Ill-formed UTF-8: a malformed packet.
    Malformed(String),
    /// Empty, a wildcard, or a `$`-topic.
    Topic(String),
}

/// A client's will, as given in its CONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub delay: Duration,
    pub expiry_secs: Option<u32>,
    pub properties: Option<Arc<MessageProperties>>,
}

impl Will {
    /// Checks the will topic like a PUBLISH topic. `session_expiry` (v5) bounds the
    /// delay: a will is due when its session ends.
    pub fn from_connect(
        will: LastWill,
        properties: Option<LastWillProperties>,
        session_expiry: u32,
    ) -> Result<Will, WillRefused> {
        let topic = std::str::from_utf8(&will.topic)
            .map_err(|_| WillRefused::Malformed("will topic is not UTF-8".into()))?;
        check_topic_name(topic)
            .map_err(|e| WillRefused::Topic(format!("will topic: {}", e.describe())))?;
        if topic.starts_with('$') {
            return Err(WillRefused::Topic("will topic starts with '$'".into()));
        }
        let delay_secs = properties
            .as_ref()
            .and_then(|p| p.delay_interval)
            .unwrap_or(0)
            .min(session_expiry);
        let expiry_secs = properties.as_ref().and_then(|p| p.message_expiry_interval);
        let properties = properties.map(|p| {
            Arc::new(MessageProperties {
                payload_format_indicator: p.payload_format_indicator,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
            })
        });
        Ok(Will {
            topic: Arc::from(topic),
            payload: will.message,
            qos: (will.qos as u8).min(2),
            retain: will.retain,
            delay: Duration::from_secs(u64::from(delay_secs)),
            expiry_secs,
            properties,
        })
    }
}

/// Publishes `will` for `client_id` now: into the core, and to the store if retained.
pub fn publish_now(edge: &Edge, client_id: &Arc<str>, will: Will) {
    if will.retain {
        edge.events.retained_changed(
            Bytes::copy_from_slice(will.topic.as_bytes()),
            will.payload.clone(),
            will.qos,
            will.expiry_secs,
        );
    }
    let mut message = Message::new(will.topic, will.payload, will.qos, will.retain);
    message.properties = will.properties;
    message.expiry = will.expiry_secs.map(Expiry::after_secs);
    message.publisher = Some(client_id.clone());
    edge.router.publish(message);
}

/// Publishes the will now, or after its delay unless the client connects again.
pub fn publish(edge: &Arc<Edge>, client_id: &Arc<str>, will: Will, taken_over: bool) {
    // A session taken over continues on the new connection: a delayed will is void.
    if taken_over && !will.delay.is_zero() {
        return;
    }
    // Delayed wills wait in memory: at most one per connection slot, else they go now.
    let room_to_wait = edge.sessions.delayed_will_count() < edge.config.mqtt.max_connections;
    if will.delay.is_zero() || !room_to_wait {
        publish_now(edge, client_id, will);
    } else {
        let delay = will.delay;
        let later = edge.clone();
        let id = client_id.clone();
        edge.sessions.schedule_will(client_id, delay, async move {
            publish_now(&later, &id, will);
        });
    }
}
