//! Wills, published by the edge itself: the router only publishes a will on an
//! internal event outside code cannot raise, so the edge keeps each client's will
//! and publishes it through its own link when the connection ends abnormally.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use parking_lot::Mutex;
use rumqttd::local::LinkTx;
use rumqttd::protocol::{LastWill, LastWillProperties, Packet, Publish, PublishProperties};
use rumqttd::Notification;
use tracing::warn;

use crate::events::EventFeed;
use crate::router::{LinkFactory, LinkOpenError, INTERNAL_ID_PREFIX};

/// A client's will, as given in its CONNECT.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub delay: Duration,
    pub properties: Option<PublishProperties>,
}

impl Will {
    /// `session_expiry` (v5) bounds the delay: a will is due when its session ends.
    pub fn from_connect(
        will: LastWill,
        properties: Option<LastWillProperties>,
        session_expiry: u32,
    ) -> Will {
        let delay_secs = properties
            .as_ref()
            .and_then(|p| p.delay_interval)
            .unwrap_or(0)
            .min(session_expiry);
        let properties = properties.map(|p| PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            topic_alias: None,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            subscription_identifiers: Vec::new(),
            content_type: p.content_type,
        });
        Will {
            topic: will.topic,
            payload: will.message,
            qos: will.qos as u8,
            retain: will.retain,
            delay: Duration::from_secs(u64::from(delay_secs)),
            properties,
        }
    }
}

/// Publishes into the router on behalf of the edge (wills; later, restored retained
/// messages) through one internal link.
#[derive(Clone)]
pub struct InternalPublisher {
    link: Arc<Mutex<LinkTx>>,
    events: EventFeed,
    /// For the pacing count (wills reach the bridge's `#` like any publish).
    links: LinkFactory,
}

impl InternalPublisher {
    /// Opens the internal link and a task that drains what the router sends it.
    /// Call from inside the runtime.
    pub fn open(
        links: &LinkFactory,
        events: EventFeed,
    ) -> Result<InternalPublisher, LinkOpenError> {
        let (tx, mut rx, _connack) =
            links.open_blocking(&format!("{INTERNAL_ID_PREFIX}edge"), true)?;
        tokio::spawn(async move {
            loop {
                match rx.next().await {
                    Ok(Some(Notification::Unschedule)) => {
                        if rx.wake().await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(InternalPublisher {
            link: Arc::new(Mutex::new(tx)),
            events,
            links: links.clone(),
        })
    }

    /// Publishes retained messages through the internal link, waiting for the router
    /// to take each chunk. Blocking: run on the blocking pool.
    pub fn restore_retained<I: IntoIterator<Item = (Bytes, Bytes)>>(&self, items: I) -> usize {
        const CHUNK: usize = 4096;
        let mut restored = 0;
        let mut chunk: Vec<Packet> = Vec::with_capacity(CHUNK);
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            chunk.extend(
                items.by_ref().take(CHUNK).map(|(topic, payload)| {
                    Packet::Publish(Publish::new(topic, payload, true), None)
                }),
            );
            let Some(last) = chunk.pop() else { break };
            let count = chunk.len() + 1;
            let mut link = self.link.lock();
            link.buffer().extend(chunk.drain(..));
            if !matches!(link.send(last).now_or_never(), Some(Ok(_))) {
                warn!("the router stopped taking restored retained messages");
                break;
            }
            restored += count;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !link.buffer().is_empty() {
                if std::time::Instant::now() > deadline {
                    warn!(
                        restored,
                        "the router took no restored retained messages for 30 s; giving up"
                    );
                    return restored;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        restored
    }

    /// Publishes `will` now. Runs on the blocking pool: the router's channel is
    /// synchronous and may be full.
    pub async fn publish_will(&self, client_id: &str, will: Will) {
        if will.retain {
            self.events.retained_changed(
                will.topic.clone(),
                will.payload.clone(),
                will.qos,
                will.properties
                    .as_ref()
                    .and_then(|p| p.message_expiry_interval),
            );
        }
        if !will.topic.starts_with(b"$") {
            self.links.pacing().handed(1);
        }
        let publish = Publish::new(will.topic, will.payload, will.retain);
        let packet = Packet::Publish(publish, will.properties);
        let link = self.link.clone();
        let sent = tokio::task::spawn_blocking(move || {
            matches!(link.lock().send(packet).now_or_never(), Some(Ok(_)))
        })
        .await;
        if !matches!(sent, Ok(true)) {
            warn!(client_id, "could not hand the will to the router");
        }
    }
}
