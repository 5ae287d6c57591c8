//! The bridge as an in-process subscriber of the routing core: every message (not
//! `$`-topics) reaches the hub in the publisher's own task, and browser publishes
//! enter the core exactly like MQTT publishes. A task feeds the hub from the edge's
//! device presence events.

use std::sync::Arc;

use bytes::Bytes;
use switchboard_broker::router::{Message, MessageSink, Router};
use switchboard_broker::{BrokerEvent, EventFeed, Supervisor};
use tokio::sync::broadcast::error::RecvError;
use tracing::warn;

use crate::hub::Hub;

/// Publishes browser messages into the core.
#[derive(Clone)]
pub struct CorePublisher {
    router: Arc<Router>,
}

impl CorePublisher {
    /// Routes a browser's publish; `session` is the browser's session id (No Local).
    pub fn publish(&self, topic: &str, payload: Bytes, qos: u8, retain: bool) {
        let message = Message::new(topic, payload, qos, retain);
        self.router.publish(message);
    }
}

struct HubSink(Arc<Hub>);

impl MessageSink for HubSink {
    fn deliver(&self, message: &Arc<Message>) {
        // Retain as published: browsers see which updates became the retained value.
        self.0
            .dispatch(&message.topic, message.payload.clone(), message.retain);
    }
}

/// Registers the hub with the core and follows the edge's device presence events.
/// Call inside the runtime, before listeners open.
pub fn start(
    hub: Arc<Hub>,
    router: Arc<Router>,
    events: EventFeed,
    supervisor: &Supervisor,
) -> CorePublisher {
    router.add_sink(Arc::new(HubSink(hub.clone())));
    let mut feed = events.subscribe();
    supervisor.spawn("bridge device feed", async move {
        loop {
            match feed.recv().await {
                Ok(BrokerEvent::DeviceOnline(info)) => hub.device_online(&info),
                Ok(BrokerEvent::DeviceOffline { client_id, reason }) => {
                    hub.device_offline(&client_id, reason)
                }
                Err(RecvError::Lagged(missed)) => {
                    warn!(missed, "the bridge fell behind the edge's event feed; some device presence updates were missed");
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    CorePublisher { router }
}
