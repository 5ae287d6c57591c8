//! Persistent sessions as plain data: what the store writes (at every autosave and at
//! shutdown) and what the core restores at start — subscriptions, the expiry, and the
//! QoS 1/2 messages queued or in flight. Clean sessions are never written.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::index::SubscriptionOptions;
use crate::message::{Delivery, Expiry, Message, MessageProperties};
use crate::session::Session;
use crate::topic::FilterSpec;
use crate::Router;

/// One persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    pub client_id: String,
    /// Seconds it lives on while offline (for an offline one: what is left).
    pub expiry_secs: u64,
    /// Raw filters as subscribed (`$share/…` included) with their options.
    pub subscriptions: Vec<(String, SubscriptionOptions)>,
    /// In-flight messages first, then the queue, in order.
    pub messages: Vec<StoredDelivery>,
}

/// One message waiting for a persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    pub topic: String,
    pub payload: Bytes,
    /// The QoS it is delivered at (1 or 2).
    pub qos: u8,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    pub properties: Option<MessageProperties>,
    /// Message Expiry left, in seconds.
    pub expiry_secs: Option<u32>,
    pub publisher: Option<String>,
    pub ts_ms: u64,
}

impl StoredDelivery {
    fn of(delivery: &Delivery, now: Instant) -> Option<StoredDelivery> {
        let message = &delivery.message;
        let expiry_secs = match message.expiry {
            Some(expiry) => Some(expiry.remaining_secs(now)?),
            None => None,
        };
        Some(StoredDelivery {
            topic: message.topic.to_string(),
            payload: message.payload.clone(),
            qos: delivery.qos,
            retain: delivery.retain,
            subscription_ids: delivery.subscription_ids.clone(),
            properties: message.properties.as_deref().cloned(),
            expiry_secs,
            publisher: message.publisher.as_deref().map(str::to_string),
            ts_ms: message.ts_ms,
        })
    }

    fn into_delivery(self) -> Delivery {
        let mut message = Message::new(self.topic, self.payload, self.qos, self.retain);
        message.properties = self.properties.map(Arc::new);
        message.expiry = self.expiry_secs.map(Expiry::after_secs);
        message.publisher = self.publisher.map(Arc::from);
        message.ts_ms = self.ts_ms;
        Delivery {
            qos: self.qos,
            retain: self.retain,
            subscription_ids: self.subscription_ids,
            message: Arc::new(message),
        }
    }
}

impl Session {
    fn snapshot(&self, now: Instant) -> Option<SessionSnapshot> {
        let state = self.state.lock();
        if state.expiry.is_zero() {
            return None;
        }
        let expiry_secs = match (state.connected, state.expires_at) {
            (true, _) | (false, None) => state.expiry.as_secs(),
            (false, Some(at)) => at.checked_duration_since(now)?.as_secs(),
        };
        let in_flight = state
            .inflight
            .values()
            .filter(|f| !f.released)
            .map(|f| &f.delivery);
        let queued = state.queue.iter().filter(|d| d.qos > 0);
        Some(SessionSnapshot {
            client_id: self.client_id.to_string(),
            expiry_secs,
            subscriptions: state
                .subscriptions
                .iter()
                .map(|(spec, options)| (spec.raw(), *options))
                .collect(),
            messages: in_flight
                .chain(queued)
                .filter_map(|d| StoredDelivery::of(d, now))
                .collect(),
        })
    }
}

impl Router {
    /// Every persistent session, connected or not, for the store.
    pub fn snapshot_sessions(&self) -> Vec<SessionSnapshot> {
        let sessions: Vec<Arc<Session>> = self
            .sessions
            .lock()
            .by_client_id
            .values()
            .cloned()
            .collect();
        let now = Instant::now();
        sessions.iter().filter_map(|s| s.snapshot(now)).collect()
    }

    /// Restores stored sessions as offline sessions (before any client connects);
    /// returns how many. Invalid filters and sessions past `max_sessions` are skipped.
    pub fn restore_sessions(&self, snapshots: Vec<SessionSnapshot>) -> usize {
        let mut restored = 0;
        for snapshot in snapshots {
            let mut table = self.sessions.lock();
            if table.by_client_id.len() >= self.limits.max_sessions {
                break;
            }
            let client_id: Arc<str> = Arc::from(snapshot.client_id.as_str());
            if table.by_client_id.contains_key(&client_id) {
                continue;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let session = Arc::new(Session::new(id, client_id.clone(), self.limits.queue));
            let expiry = Duration::from_secs(snapshot.expiry_secs);
            {
                let mut index = self.index.write();
                for (raw, options) in &snapshot.subscriptions {
                    if let Ok(spec) = FilterSpec::parse(raw) {
                        index.insert(&spec, id, session.clone(), *options);
                        session.remember(&spec, *options);
                    }
                }
                self.stats
                    .subscriptions
                    .store(index.len() as u64, Ordering::Relaxed);
            }
            let at = session.restore_offline(
                expiry,
                snapshot
                    .messages
                    .into_iter()
                    .map(StoredDelivery::into_delivery),
            );
            if let Some(at) = at {
                table.expiring.insert((at, id), client_id.clone());
            }
            table.by_client_id.insert(client_id, session);
            self.stats
                .sessions
                .store(table.by_client_id.len() as u64, Ordering::Relaxed);
            restored += 1;
        }
        restored
    }
}

impl Session {
    /// Fills a new offline session from the store; returns when it expires.
    fn restore_offline(
        &self,
        expiry: Duration,
        deliveries: impl Iterator<Item = Delivery>,
    ) -> Option<Instant> {
        let mut state = self.state.lock();
        state.expiry = expiry;
        state.expires_at = Instant::now().checked_add(expiry);
        for delivery in deliveries {
            state.queued_bytes += delivery.cost();
            state.queue.push_back(delivery);
        }
        state.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, QueueLimits, RetainedIndex};

    fn router() -> Router {
        let limits = Limits {
            queue: QueueLimits {
                max_messages: 100,
                max_bytes: 1 << 20,
            },
            max_sessions: 10,
        };
        Router::new(limits, Arc::new(RetainedIndex::default()))
    }

    #[test]
    fn a_persistent_session_survives_snapshot_and_restore() {
        let before = router();
        let id: Arc<str> = Arc::from("dev-1");
        let attached = before
            .connect(&id, false, 10, Duration::from_secs(3600))
            .unwrap();
        let options = SubscriptionOptions {
            qos: 1,
            ..Default::default()
        };
        before.subscribe(
            &attached.session,
            &FilterSpec::parse("ps/#").unwrap(),
            options,
        );
        before.disconnect(&attached, Duration::from_secs(3600));
        for n in 0..3 {
            before.publish(Message::new("ps/x", Bytes::from(format!("m{n}")), 1, false));
        }
        let clean: Arc<str> = Arc::from("clean");
        before.connect(&clean, true, 10, Duration::ZERO).unwrap();
        let snapshots = before.snapshot_sessions();
        assert_eq!(snapshots.len(), 1, "clean sessions are not stored");
        assert_eq!(snapshots[0].messages.len(), 3);

        let after = router();
        assert_eq!(after.restore_sessions(snapshots), 1);
        after.publish(Message::new("ps/y", Bytes::from_static(b"m3"), 1, false));
        let back = after
            .connect(&id, false, 10, Duration::from_secs(3600))
            .unwrap();
        assert!(back.present);
        let mut out = Vec::new();
        back.session.take_outbound(after.retained(), &mut out, 100);
        let payloads: Vec<Bytes> = out
            .into_iter()
            .filter_map(|o| match o {
                crate::Outbound::Publish { delivery, .. } => Some(delivery.message.payload.clone()),
                crate::Outbound::PubRel { .. } => None,
            })
            .collect();
        assert_eq!(payloads, vec!["m0", "m1", "m2", "m3"]);
    }
}
