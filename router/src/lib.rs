//! Switchboard's routing core. Publishes are routed in the publisher's own task
//! against a shared subscription index and pushed into each subscriber session's
//! bounded queue, waking the connection that drains it: one hop per message.
//!
//! The core knows no sockets and no wire format: the MQTT edge (`broker/`) turns
//! packets into calls here and [`Outbound`] packets back into bytes; the browser
//! bridge is an in-process [`MessageSink`] of the same core.

mod index;
mod message;
mod outbound;
mod persist;
mod retained;
mod session;
mod stats;
pub mod topic;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

pub use index::{Matched, SessionId, SubscriptionIndex, SubscriptionOptions};
pub use message::{now_ms, Delivery, Expiry, Message, MessageProperties};
pub use persist::{SessionSnapshot, StoredDelivery};
pub use retained::{RetainedIndex, RetainedPage};
pub use session::{IncomingQos2, Outbound, Pushed, QueueLimits, Session};
pub use stats::Stats;
pub use topic::{FilterSpec, TopicError};

/// Receives every routed message whose topic does not start with `$`, in the
/// publisher's task (the browser bridge).
pub trait MessageSink: Send + Sync {
    fn deliver(&self, message: &Arc<Message>);
}

/// Bounds the core enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub queue: QueueLimits,
    /// Sessions kept at most, connected or not.
    pub max_sessions: usize,
}

/// Why a session could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySessions;

/// A connection's hold on its session, returned by [`Router::connect`].
#[derive(Debug, Clone)]
pub struct Attached {
    pub session: Arc<Session>,
    /// The session existed before (CONNACK Session Present, when not a clean start).
    pub present: bool,
    pub epoch: u64,
}

/// What subscribing one filter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    /// False when it replaced an existing subscription to the same filter.
    pub new: bool,
}

/// The outcome of routing one message.
#[derive(Debug, Default)]
pub struct Routed {
    /// Sessions it was queued for.
    pub delivered: usize,
    /// Sessions over their queue bound: the publisher should wait for them (QoS 1/2).
    pub congested: Vec<Arc<Session>>,
}

#[derive(Default)]
pub(crate) struct SessionTable {
    pub by_client_id: HashMap<Arc<str>, Arc<Session>>,
    /// Offline sessions by when they expire.
    pub expiring: BTreeMap<(Instant, SessionId), Arc<str>>,
}

pub struct Router {
    pub(crate) index: RwLock<SubscriptionIndex<Arc<Session>>>,
    pub(crate) sessions: Mutex<SessionTable>,
    retained: Arc<RetainedIndex>,
    sinks: RwLock<Vec<Arc<dyn MessageSink>>>,
    pub(crate) limits: Limits,
    pub(crate) next_id: AtomicU64,
    pub stats: Stats,
}

impl Router {
    pub fn new(limits: Limits, retained: Arc<RetainedIndex>) -> Router {
        Router {
            index: RwLock::default(),
            sessions: Mutex::default(),
            retained,
            sinks: RwLock::default(),
            limits,
            next_id: AtomicU64::new(1),
            stats: Stats::default(),
        }
    }

    pub fn retained(&self) -> &Arc<RetainedIndex> {
        &self.retained
    }

    pub fn add_sink(&self, sink: Arc<dyn MessageSink>) {
        self.sinks.write().push(sink);
    }

    /// Opens (or, without `clean_start`, resumes) `client_id`'s session for a new
    /// connection. The caller has already ended any other connection with this id.
    /// `expiry`: how long the session is to outlive this connection (it may change
    /// at [`Router::disconnect`]).
    pub fn connect(
        &self,
        client_id: &Arc<str>,
        clean_start: bool,
        send_quota: u16,
        expiry: Duration,
    ) -> Result<Attached, TooManySessions> {
        let mut table = self.sessions.lock();
        let existing = table.by_client_id.get(client_id).cloned();
        let (session, present) = match existing {
            Some(session) if !clean_start => (session, true),
            other => {
                if let Some(old) = other {
                    self.drop_session(&mut table, &old);
                }
                if table.by_client_id.len() >= self.limits.max_sessions {
                    return Err(TooManySessions);
                }
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let session = Arc::new(Session::new(id, client_id.clone(), self.limits.queue));
                table
                    .by_client_id
                    .insert(client_id.clone(), session.clone());
                (session, false)
            }
        };
        if let Some(at) = session.expires_at() {
            table.expiring.remove(&(at, session.id));
        }
        let epoch = session.attach(send_quota, expiry);
        self.stats
            .sessions
            .store(table.by_client_id.len() as u64, Ordering::Relaxed);
        Ok(Attached {
            session,
            present,
            epoch,
        })
    }

    /// The connection of `attached` ended; the session lives on for `expiry`
    /// (`Duration::ZERO`: it ends now).
    pub fn disconnect(&self, attached: &Attached, expiry: Duration) {
        let mut table = self.sessions.lock();
        let session = &attached.session;
        let current = table
            .by_client_id
            .get(&session.client_id)
            .is_some_and(|s| s.id == session.id);
        if !current {
            return;
        }
        if !session.detach(attached.epoch, expiry) {
            return;
        }
        if expiry.is_zero() {
            self.drop_session(&mut table, session);
        } else if let Some(at) = session.expires_at() {
            table
                .expiring
                .insert((at, session.id), session.client_id.clone());
        }
    }

    /// Ends `client_id`'s session, if it has one (a clean start whose session is
    /// opened later, on first need).
    pub fn end_session(&self, client_id: &str) {
        let mut table = self.sessions.lock();
        if let Some(session) = table.by_client_id.get(client_id).cloned() {
            self.drop_session(&mut table, &session);
        }
    }

    /// Ends offline sessions whose expiry has passed; returns how many.
    pub fn expire_sessions(&self, now: Instant) -> usize {
        let mut table = self.sessions.lock();
        let mut ended = 0;
        while let Some(entry) = table.expiring.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let client_id = entry.remove();
            if let Some(session) = table.by_client_id.get(&client_id).cloned() {
                if !session.is_connected() {
                    self.drop_session(&mut table, &session);
                    ended += 1;
                }
            }
        }
        ended
    }

    fn drop_session(&self, table: &mut SessionTable, session: &Arc<Session>) {
        let subscriptions = session.subscriptions();
        {
            let mut index = self.index.write();
            for (spec, _) in &subscriptions {
                index.remove(spec, session.id);
            }
        }
        session.forget_all();
        if let Some(at) = session.expires_at() {
            table.expiring.remove(&(at, session.id));
        }
        if table
            .by_client_id
            .get(&session.client_id)
            .is_some_and(|s| s.id == session.id)
        {
            table.by_client_id.remove(&session.client_id);
        }
        self.stats
            .subscriptions
            .store(self.index.read().len() as u64, Ordering::Relaxed);
        self.stats
            .sessions
            .store(table.by_client_id.len() as u64, Ordering::Relaxed);
    }

    /// Sessions held now, connected or not.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().by_client_id.len()
    }

    /// Adds or replaces a subscription, then queues the retained messages its
    /// Retain Handling asks for (never for shared subscriptions).
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        spec: &FilterSpec,
        options: SubscriptionOptions,
    ) -> Subscribed {
        let new = {
            let mut index = self.index.write();
            let new = index.insert(spec, session.id, session.clone(), options);
            self.stats
                .subscriptions
                .store(index.len() as u64, Ordering::Relaxed);
            new
        };
        session.remember(spec, options);
        let send_retained = match options.retain_handling {
            0 => true,
            1 => new,
            _ => false,
        };
        if send_retained && spec.share_group.is_none() {
            session.replay(&spec.filter, options);
        }
        Subscribed { new }
    }

    /// Removes a subscription; false if there was none.
    pub fn unsubscribe(&self, session: &Arc<Session>, spec: &FilterSpec) -> bool {
        let removed = {
            let mut index = self.index.write();
            let removed = index.remove(spec, session.id);
            self.stats
                .subscriptions
                .store(index.len() as u64, Ordering::Relaxed);
            removed
        };
        session.forget(spec);
        removed
    }

    /// Trie nodes the index holds (for memory tests and metrics).
    pub fn index_nodes(&self) -> usize {
        self.index.read().node_count()
    }

    /// Routes `message`: retained index first (so a concurrent subscribe never ends
    /// on an older value), then every matching session, then the sinks.
    pub fn publish(&self, message: Message) -> Routed {
        let message = Arc::new(message);
        self.stats.received(&message);
        if message.retain {
            self.retained.set(&message);
        }
        let mut targets = self.targets(&message);
        let mut routed = Routed::default();
        for (session, options) in targets.drain(..) {
            let delivery = Delivery {
                message: message.clone(),
                qos: message.qos.min(options.qos),
                retain: message.retain && options.retain_as_published,
                subscription_ids: options.ids,
            };
            match session.push(delivery) {
                Pushed::Queued => routed.delivered += 1,
                Pushed::QueuedOverBound => {
                    routed.delivered += 1;
                    routed.congested.push(session);
                }
                Pushed::Dropped => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            };
        }
        if !message.topic.starts_with('$') {
            for sink in self.sinks.read().iter() {
                sink.deliver(&message);
            }
        }
        routed
    }

    /// One entry per receiving session: overlapping subscriptions of a client give
    /// one copy at the highest granted QoS carrying every matching identifier, its
    /// retain flag kept if any of them has Retain As Published. A shared group gives
    /// one member (connected ones first, round robin) a copy of its own.
    fn targets(&self, message: &Message) -> Vec<(Arc<Session>, Aggregate)> {
        let index = self.index.read();
        let mut direct: Vec<(SessionId, Arc<Session>, Aggregate)> = Vec::new();
        let mut shared: Vec<(Arc<Session>, Aggregate)> = Vec::new();
        let local = |session: &Session, options: &SubscriptionOptions| {
            options.no_local && message.publisher.as_deref() == Some(&*session.client_id)
        };
        index.for_each_match(&message.topic, |matched| match matched {
            Matched::Direct(entry) => {
                if !local(&entry.subscriber, &entry.options) {
                    direct.push((
                        entry.id,
                        entry.subscriber.clone(),
                        Aggregate::from(&entry.options),
                    ));
                }
            }
            Matched::Shared(group) => {
                let count = group.members.len();
                if count == 0 {
                    return;
                }
                let start = group.next_start();
                let pick = (0..count)
                    .filter_map(|i| group.members.get((start + i) % count))
                    .find(|m| m.subscriber.is_connected())
                    .or_else(|| group.members.get(start % count));
                if let Some(member) = pick {
                    shared.push((member.subscriber.clone(), Aggregate::from(&member.options)));
                }
            }
        });
        drop(index);
        direct.sort_unstable_by_key(|(id, _, _)| *id);
        let mut merged: Vec<(Arc<Session>, Aggregate)> = Vec::with_capacity(direct.len());
        let mut last_id = None;
        for (id, session, aggregate) in direct {
            match merged.last_mut() {
                Some((_, existing)) if last_id == Some(id) => existing.merge(aggregate),
                _ => merged.push((session, aggregate)),
            }
            last_id = Some(id);
        }
        merged.extend(shared);
        merged
    }
}

/// What a client's matching subscriptions add up to for one message.
struct Aggregate {
    qos: u8,
    retain_as_published: bool,
    ids: Vec<u32>,
}

impl From<&SubscriptionOptions> for Aggregate {
    fn from(options: &SubscriptionOptions) -> Aggregate {
        Aggregate {
            qos: options.qos,
            retain_as_published: options.retain_as_published,
            ids: options.identifier.into_iter().collect(),
        }
    }
}

impl Aggregate {
    fn merge(&mut self, other: Aggregate) {
        self.qos = self.qos.max(other.qos);
        self.retain_as_published |= other.retain_as_published;
        self.ids.extend(other.ids);
        self.ids.sort_unstable();
        self.ids.dedup();
    }
}
