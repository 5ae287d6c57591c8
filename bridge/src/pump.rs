//! The bridge's link to the router: one in-process link subscribed to `#`, drained
//! on its own task into the hub, and the way browser publishes enter MQTT. A second
//! task feeds the hub from the edge's device presence events.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use parking_lot::Mutex;
use rumqttd::local::LinkTx;
use rumqttd::protocol::{Packet, Publish};
use rumqttd::Notification;
use switchboard_broker::{BrokerEvent, EventFeed, LinkFactory, INTERNAL_ID_PREFIX};
use tokio::sync::broadcast::error::RecvError;
use tracing::{error, warn};

use crate::hub::Hub;

/// Router events in flight above which a publish may block: run it under
/// `block_in_place` then.
const ROUTER_HIGH_WATER: usize = 800;

/// Messages between two progress reports to the publisher pacing.
const PROGRESS_EVERY: u64 = 1024;

/// Publishes browser messages into the router.
#[derive(Clone)]
pub struct RouterPublisher {
    link: Arc<Mutex<LinkTx>>,
    links: LinkFactory,
}

impl RouterPublisher {
    /// Hands a QoS 0 publish to the router. True once the router has it.
    pub fn publish(&self, topic: &str, payload: Bytes, retain: bool) -> bool {
        if !topic.starts_with('$') {
            // The bridge's own `#` will see it: part of the pacing count.
            self.links.pacing().handed(1);
        }
        let publish = Publish::new(Bytes::copy_from_slice(topic.as_bytes()), payload, retain);
        let send = || {
            let mut link = self.link.lock();
            {
                // A non-empty buffer means the router has a notification pending.
                let mut buffer = link.buffer();
                if !buffer.is_empty() {
                    buffer.push_back(Packet::Publish(publish, None));
                    return true;
                }
            }
            matches!(
                link.send(Packet::Publish(publish, None)).now_or_never(),
                Some(Ok(_))
            )
        };
        let congested = self.links.router_backlog() > ROUTER_HIGH_WATER;
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if congested && multi_thread {
            tokio::task::block_in_place(send)
        } else {
            send()
        }
    }
}

/// Opens the bridge link, subscribes it to `#`, and starts the pump and the event
/// feed task. Call inside the runtime, before listeners open.
pub fn start(
    hub: Arc<Hub>,
    links: LinkFactory,
    events: EventFeed,
) -> Result<RouterPublisher, String> {
    let (mut tx, mut rx, _connack) = links
        .open_blocking(&format!("{INTERNAL_ID_PREFIX}bridge"), true)
        .map_err(|e| format!("cannot open the bridge link: {e}"))?;
    tx.subscribe("#")
        .map_err(|e| format!("cannot subscribe the bridge link: {e}"))?;

    let pump_hub = hub.clone();
    let pacing_links = links.clone();
    tokio::spawn(async move {
        let mut scratch = Vec::new();
        loop {
            let first = match rx.next().await {
                Ok(notification) => notification,
                Err(e) => {
                    error!("bridge link closed by the router: {e}; browsers get no more messages");
                    return;
                }
            };
            let mut next = first;
            let mut unscheduled = false;
            let mut forwarded = 0;
            loop {
                match next.take() {
                    // Retained messages the router hands a new subscription (its
                    // `#` at start: everything restored) come without a log cursor.
                    // They are not news: the retained view already has them.
                    Some(Notification::Forward(forward)) if forward.cursor.is_none() => {}
                    Some(Notification::Forward(forward)) => {
                        forwarded += 1;
                        if forwarded == PROGRESS_EVERY {
                            pacing_links.pacing().forwarded(forwarded);
                            forwarded = 0;
                        }
                        let publish = forward.publish;
                        match std::str::from_utf8(&publish.topic) {
                            Ok(topic) => {
                                pump_hub.dispatch(topic, publish.payload, false, &mut scratch)
                            }
                            Err(_) => warn!("dropped a message with a non-UTF-8 topic"),
                        }
                    }
                    Some(Notification::Unschedule) => unscheduled = true,
                    _ => {}
                }
                match rx.recv_deadline(std::time::Instant::now()) {
                    Ok(Some(more)) => next = Some(more),
                    _ => break,
                }
            }
            pacing_links.pacing().forwarded(forwarded);
            if unscheduled && rx.wake().await.is_err() {
                error!("bridge link lost while waking it");
                return;
            }
        }
    });

    let mut feed = events.subscribe();
    tokio::spawn(async move {
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

    Ok(RouterPublisher {
        link: Arc::new(Mutex::new(tx)),
        links,
    })
}
