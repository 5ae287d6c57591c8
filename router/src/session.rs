//! One client's session: its subscriptions, the bounded queue of messages waiting
//! for it, the QoS 1/2 messages in flight each way, and the retained messages still
//! to be served for new subscriptions. Publishers push into it from their own task
//! and wake the connection that drains it.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::index::{SessionId, SubscriptionOptions};
use crate::message::Delivery;
use crate::topic::FilterSpec;

/// Queue bounds, from `[mqtt]`.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Messages queued for one session before its publishers are made to wait
    /// (Mosquitto's `max_queued_messages`).
    pub max_messages: usize,
    /// The same in bytes (Mosquitto's `max_queued_bytes`).
    pub max_bytes: usize,
}

impl QueueLimits {
    pub(crate) fn over_soft(&self, len: usize, bytes: usize) -> bool {
        len >= self.max_messages || bytes >= self.max_bytes
    }

    /// Copies beyond the bound are still taken while publishers slow down, up to
    /// twice the bound; past that the slow subscriber loses them.
    fn over_hard(&self, len: usize, bytes: usize) -> bool {
        len >= self.max_messages.saturating_mul(2) || bytes >= self.max_bytes.saturating_mul(2)
    }
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued, but the session is over its bound: the publisher should wait.
    QueuedOverBound,
    /// Dropped: past twice the bound, QoS 0 to a stalled or offline session, or
    /// anything to a full offline one.
    Dropped,
}

/// A packet the connection should send for this session.
#[derive(Debug, Clone)]
pub enum Outbound {
    Publish {
        /// 0 for QoS 0.
        pkid: u16,
        dup: bool,
        delivery: Delivery,
    },
    PubRel {
        pkid: u16,
    },
}

#[derive(Debug)]
pub(crate) struct InFlight {
    pub delivery: Delivery,
    /// PUBREC received and PUBREL sent (QoS 2, second half).
    pub released: bool,
}

/// Retained messages still to be served for one new subscription.
#[derive(Debug)]
pub(crate) struct Replay {
    pub filter: String,
    pub options: SubscriptionOptions,
    pub after: Option<Arc<str>>,
}

/// The result of registering an inbound QoS 2 PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomingQos2 {
    /// First time: route it.
    New,
    /// A retransmission of one not yet released: do not route it again.
    Duplicate,
    /// The client exceeded our Receive Maximum.
    OverReceiveMaximum,
}

#[derive(Debug)]
pub(crate) struct State {
    pub connected: bool,
    /// Incremented at every connect; a disconnect only counts for its own connection.
    pub epoch: u64,
    pub queue: VecDeque<Delivery>,
    pub queued_bytes: usize,
    pub inflight: BTreeMap<u16, InFlight>,
    /// The client's Receive Maximum (3.1.1: `max_inflight`).
    pub send_quota: usize,
    pub next_pkid: u16,
    incoming_qos2: HashSet<u16>,
    pub subscriptions: BTreeMap<FilterSpec, SubscriptionOptions>,
    pub replays: VecDeque<Replay>,
    /// Set when publishers gave up waiting for this session: over the bound it
    /// loses QoS 0 (QoS 1/2 past twice the bound) instead of slowing publishers.
    pub stalled: bool,
    pub expires_at: Option<Instant>,
    /// How long the session outlives its connection (zero: it ends with it).
    pub expiry: Duration,
}

pub struct Session {
    pub id: SessionId,
    pub client_id: Arc<str>,
    pub(crate) limits: QueueLimits,
    pub(crate) state: Mutex<State>,
    /// The connection has something to send.
    pub(crate) work: Notify,
    /// The queue went back under its bound.
    pub(crate) room: Notify,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl Session {
    pub fn new(id: SessionId, client_id: Arc<str>, limits: QueueLimits) -> Session {
        Session {
            id,
            client_id,
            limits,
            state: Mutex::new(State {
                connected: false,
                epoch: 0,
                queue: VecDeque::new(),
                queued_bytes: 0,
                inflight: BTreeMap::new(),
                send_quota: 1,
                next_pkid: 1,
                incoming_qos2: HashSet::new(),
                subscriptions: BTreeMap::new(),
                replays: VecDeque::new(),
                stalled: false,
                expires_at: None,
                expiry: Duration::ZERO,
            }),
            work: Notify::new(),
            room: Notify::new(),
        }
    }

    /// Marks the session connected with the client's Receive Maximum; returns the
    /// connection's epoch.
    pub(crate) fn attach(&self, send_quota: u16, expiry: Duration) -> u64 {
        let mut state = self.state.lock();
        state.expiry = expiry;
        state.connected = true;
        state.epoch += 1;
        state.send_quota = usize::from(send_quota.max(1));
        state.expires_at = None;
        state.stalled = false;
        state.epoch
    }

    /// Marks it disconnected if `epoch` is still its connection. True if it was.
    pub(crate) fn detach(&self, epoch: u64, expiry: Duration) -> bool {
        let mut state = self.state.lock();
        if state.epoch != epoch || !state.connected {
            return false;
        }
        state.connected = false;
        state.expiry = expiry;
        state.expires_at = Instant::now().checked_add(expiry);
        // QoS 0 is not kept for an offline session.
        let before = state.queue.len();
        state.queue.retain(|d| d.qos > 0);
        if state.queue.len() != before {
            state.queued_bytes = state.queue.iter().map(Delivery::cost).sum();
        }
        self.room.notify_waiters();
        true
    }

    pub fn is_connected(&self) -> bool {
        self.state.lock().connected
    }

    pub(crate) fn expires_at(&self) -> Option<Instant> {
        self.state.lock().expires_at
    }

    /// Pushes a message for this session and wakes its connection.
    ///
    /// Over the bound, a connected subscriber still takes copies up to twice the
    /// bound and its publishers are told to wait; once it is stalled (publishers gave
    /// up waiting) QoS 0 is dropped at the bound and QoS 1/2 at twice the bound. An
    /// offline session takes QoS 1/2 only, up to the bound.
    pub fn push(&self, delivery: Delivery) -> Pushed {
        let pushed = {
            let mut state = self.state.lock();
            if !state.connected && delivery.qos == 0 {
                return Pushed::Dropped;
            }
            let (len, bytes) = (state.queue.len(), state.queued_bytes);
            let over_hard = self.limits.over_hard(len, bytes);
            let pushed = if !self.limits.over_soft(len, bytes) {
                Pushed::Queued
            } else if !state.connected || over_hard || (state.stalled && delivery.qos == 0) {
                Pushed::Dropped
            } else if state.stalled {
                Pushed::Queued
            } else {
                Pushed::QueuedOverBound
            };
            if pushed == Pushed::Dropped {
                return pushed;
            }
            state.queued_bytes += delivery.cost();
            state.queue.push_back(delivery);
            pushed
        };
        if pushed != Pushed::Dropped {
            self.work.notify_one();
        }
        pushed
    }

    /// Waits until the queue is back under its bound, the session goes offline, or
    /// `patience` runs out (then it is marked stalled: publishers stop waiting for it).
    pub async fn wait_for_room(&self, patience: Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let room = self.room.notified();
            {
                let state = self.state.lock();
                if !state.connected
                    || state.stalled
                    || !self.limits.over_soft(state.queue.len(), state.queued_bytes)
                {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                self.state.lock().stalled = true;
                tracing::warn!(client_id = %self.client_id, "subscriber not reading: publishers stop waiting for it; its QoS 1/2 messages over twice max_queued_messages are dropped");
                metrics::counter!("switchboard_router_stalled_subscribers_total").increment(1);
                return;
            }
        }
    }

    /// Resolves when there may be something to send.
    pub async fn work(&self) {
        self.work.notified().await
    }

    /// An inbound QoS 2 PUBLISH, bounded by our Receive Maximum.
    pub fn incoming_qos2(&self, pkid: u16, receive_maximum: u16) -> IncomingQos2 {
        let mut state = self.state.lock();
        if state.incoming_qos2.contains(&pkid) {
            return IncomingQos2::Duplicate;
        }
        if state.incoming_qos2.len() >= usize::from(receive_maximum) {
            return IncomingQos2::OverReceiveMaximum;
        }
        state.incoming_qos2.insert(pkid);
        IncomingQos2::New
    }

    /// PUBREL from the client: releases exactly the packet id it names.
    pub fn release_incoming(&self, pkid: u16) -> bool {
        self.state.lock().incoming_qos2.remove(&pkid)
    }

    /// Records a subscription; returns the options it replaced, if any.
    pub(crate) fn remember(
        &self,
        spec: &FilterSpec,
        options: SubscriptionOptions,
    ) -> Option<SubscriptionOptions> {
        self.state
            .lock()
            .subscriptions
            .insert(spec.clone(), options)
    }

    pub(crate) fn forget(&self, spec: &FilterSpec) -> bool {
        let mut state = self.state.lock();
        state.replays.retain(|r| r.filter != spec.filter);
        state.subscriptions.remove(spec).is_some()
    }

    pub(crate) fn forget_all(&self) {
        let mut state = self.state.lock();
        state.replays.clear();
        state.subscriptions.clear();
    }

    /// Whether this session has a subscription to `spec` and how many it has.
    pub fn subscription_count(&self, spec: &FilterSpec) -> (bool, usize) {
        let state = self.state.lock();
        (
            state.subscriptions.contains_key(spec),
            state.subscriptions.len(),
        )
    }

    pub fn subscriptions(&self) -> Vec<(FilterSpec, SubscriptionOptions)> {
        let state = self.state.lock();
        state
            .subscriptions
            .iter()
            .map(|(s, o)| (s.clone(), *o))
            .collect()
    }

    /// Serves `filter`'s retained messages to this session, in pages, from now on.
    pub(crate) fn replay(&self, filter: &str, options: SubscriptionOptions) {
        self.state.lock().replays.push_back(Replay {
            filter: filter.to_string(),
            options,
            after: None,
        });
        self.work.notify_one();
    }
}
