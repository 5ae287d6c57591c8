//! One browser connection's bounded outbound queue: replies and pushes in order,
//! conflation (newest message per room and topic) when the client falls behind, and
//! a close with 1013 when it falls too far behind.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use metrics::counter;
use parking_lot::Mutex;
use std::task::{Context, Poll};

use crate::frames::PushFrame;
use crate::joined::Joined;
use crate::message::{Message, RoomFrame};

/// Close codes the bridge uses (RFC 6455 and the protocol's 4xxx range).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    /// No token, a bad one, or none in time: authenticate.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The token expired: reconnect with a fresh one.
    pub const TOKEN_EXPIRED: u16 = 4002;
}

#[derive(Debug, Clone)]
pub struct QueueLimits {
    pub conflate_after: usize,
    pub close_after: usize,
    pub max_bytes: usize,
    pub stall_timeout: Duration,
}

impl QueueLimits {
    pub fn from_config(bridge: &switchboard_config::BridgeConfig) -> QueueLimits {
        QueueLimits {
            conflate_after: bridge.conflate_after,
            close_after: bridge.close_after,
            max_bytes: bridge.max_queue_bytes.as_usize(),
            stall_timeout: Duration::from_millis(bridge.slow_client_timeout_ms),
        }
    }
}

/// What the writer sends next.
#[derive(Debug)]
pub enum Outgoing {
    /// A reply or a push that is never conflated.
    Frame(Bytes),
    /// A push shared by many connections (never conflated).
    Push(Arc<PushFrame>),
    /// A `joined` reply, encoded by the writer (outside the hub's lock).
    Joined(Box<Joined>),
    /// A room message; `frame` is shared by every member of the room.
    Message {
        frame: Arc<RoomFrame>,
        message: Arc<Message>,
        room: Arc<str>,
        conflated: bool,
    },
    Ping,
}

impl Outgoing {
    fn size(&self) -> usize {
        match self {
            Outgoing::Frame(frame) => frame.len(),
            Outgoing::Push(frame) => frame.len(),
            Outgoing::Message { message, room, .. } => message.frame_size_estimate(room),
            Outgoing::Joined(joined) => joined.size,
            Outgoing::Ping => 0,
        }
    }
}

/// (room, topic): conflation keeps the newest message of each.
type ConflationKey = (Arc<str>, Arc<str>);

struct State {
    /// `None` marks a message replaced by a newer one for the same room and topic.
    entries: VecDeque<Option<Outgoing>>,
    /// Sequence number of `entries[0]`.
    head_seq: u64,
    /// While conflating: (room, topic) → sequence number of its queued message.
    latest: HashMap<ConflationKey, u64>,
    conflating: bool,
    queued_messages: usize,
    queued_entries: usize,
    queued_bytes: usize,
    last_progress: Instant,
    closed: Option<(u16, String)>,
}

pub struct OutboundQueue {
    state: Mutex<State>,
    /// The one consumer (the connection's task), woken by pushes and by a close.
    consumer: AtomicWaker,
    limits: QueueLimits,
}

impl OutboundQueue {
    pub fn new(limits: QueueLimits) -> OutboundQueue {
        OutboundQueue {
            state: Mutex::new(State {
                entries: VecDeque::new(),
                head_seq: 0,
                latest: HashMap::new(),
                conflating: false,
                queued_messages: 0,
                queued_entries: 0,
                queued_bytes: 0,
                last_progress: Instant::now(),
                closed: None,
            }),
            consumer: AtomicWaker::new(),
            limits,
        }
    }

    /// Queues a reply or push frame (never conflated).
    pub fn push_frame(&self, frame: Bytes) {
        self.push(Outgoing::Frame(frame), None);
    }

    /// Queues a push that other connections get too (never conflated).
    pub fn push_shared(&self, frame: &Arc<PushFrame>) {
        self.push(Outgoing::Push(frame.clone()), None);
    }

    /// Queues a `joined` reply; its estimated size counts against `max_queue_bytes`.
    pub fn push_joined(&self, joined: Joined) {
        self.push(Outgoing::Joined(Box::new(joined)), None);
    }

    pub fn push_ping(&self) {
        self.push(Outgoing::Ping, None);
    }

    /// Queues a room message, conflating if the client is behind.
    pub fn push_message(&self, room: &Arc<str>, message: &Arc<Message>, frame: &Arc<RoomFrame>) {
        let key = (room.clone(), message.topic.clone());
        self.push(
            Outgoing::Message {
                frame: frame.clone(),
                message: message.clone(),
                room: room.clone(),
                conflated: false,
            },
            Some(key),
        );
    }

    fn push(&self, mut entry: Outgoing, conflation_key: Option<ConflationKey>) {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return;
        }
        if state.queued_entries > 0 && state.last_progress.elapsed() > self.limits.stall_timeout {
            drop(state);
            self.close_slow("the client has not read for too long");
            return;
        }
        if let Some(key) = conflation_key {
            if !state.conflating && state.queued_messages >= self.limits.conflate_after {
                start_conflating(&mut state);
            }
            if state.conflating {
                let seq = state.head_seq + state.entries.len() as u64;
                if replace_older(&mut state, key, seq) {
                    if let Outgoing::Message { conflated, .. } = &mut entry {
                        *conflated = true;
                    }
                }
            }
            state.queued_messages += 1;
        }
        state.queued_entries += 1;
        state.queued_bytes += entry.size();
        state.entries.push_back(Some(entry));
        let too_long = state.queued_entries > self.limits.close_after;
        let too_big = state.queued_bytes > self.limits.max_bytes;
        drop(state);
        if too_long || too_big {
            self.close_slow("too many messages queued for the client");
            return;
        }
        self.consumer.wake();
    }

    /// Closes the queue if it has not moved for the stall timeout (called on a timer:
    /// a stalled client may receive nothing new that would notice).
    pub fn check_stalled(&self) {
        let stalled = {
            let state = self.state.lock();
            state.closed.is_none()
                && state.queued_entries > 0
                && state.last_progress.elapsed() > self.limits.stall_timeout
        };
        if stalled {
            self.close_slow("the client has not read for too long");
        }
    }

    fn close_slow(&self, why: &str) {
        counter!("switchboard_bridge_closed_slow_total").increment(1);
        self.close(close_code::TRY_AGAIN_LATER, why);
    }

    /// Marks the queue closed: queued entries are dropped, the writer sends a close
    /// frame with `code` and stops.
    pub fn close(&self, code: u16, reason: &str) {
        let mut state = self.state.lock();
        if state.closed.is_none() {
            let dropped = state.queued_messages as u64;
            if dropped > 0 {
                counter!("switchboard_bridge_dropped_total").increment(dropped);
            }
            state.closed = Some((code, reason.to_string()));
            // Replies and pushes already queued still go out before the close frame
            // (the client learns why); room messages do not: it resumes with `since`.
            state.entries.retain(|slot| {
                matches!(
                    slot,
                    Some(Outgoing::Frame(_) | Outgoing::Push(_) | Outgoing::Joined(_))
                )
            });
            state.latest.clear();
            state.queued_messages = 0;
            state.queued_entries = state.entries.len();
            state.queued_bytes = state.entries.iter().flatten().map(Outgoing::size).sum();
        }
        drop(state);
        self.consumer.wake();
    }

    /// Waits for entries (or a close) and moves up to `max` of them into `out`.
    /// Returns the close code and reason once the queue is closed.
    pub async fn next_batch(&self, out: &mut Vec<Outgoing>, max: usize) -> Option<(u16, String)> {
        std::future::poll_fn(|cx| self.poll_take(cx, out, max)).await
    }

    /// Moves up to `max` entries into `out` (ready with `None`), or, once the queue is
    /// closed and drained, is ready with the close code and reason. Pending (until a
    /// push or a close) when there is nothing to take.
    pub fn poll_take(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Outgoing>,
        max: usize,
    ) -> Poll<Option<(u16, String)>> {
        // Registered before looking, so a push in between is not missed.
        self.consumer.register(cx.waker());
        let mut state = self.state.lock();
        while out.len() < max {
            let Some(slot) = state.entries.pop_front() else {
                break;
            };
            state.head_seq += 1;
            if let Some(entry) = slot {
                state.queued_entries -= 1;
                state.queued_bytes -= entry.size();
                if matches!(entry, Outgoing::Message { .. }) {
                    state.queued_messages -= 1;
                }
                out.push(entry);
            }
        }
        state.last_progress = Instant::now();
        if state.conflating && state.queued_messages <= self.limits.conflate_after / 2 {
            state.conflating = false;
            state.latest.clear();
        }
        if !out.is_empty() {
            return Poll::Ready(None);
        }
        match &state.closed {
            Some(closed) => Poll::Ready(Some(closed.clone())),
            None => Poll::Pending,
        }
    }
}

/// Indexes the queued messages by (room, topic) so newer ones can replace them.
fn start_conflating(state: &mut State) {
    state.conflating = true;
    state.latest.clear();
    let head = state.head_seq;
    let keys: Vec<(ConflationKey, u64)> = state
        .entries
        .iter()
        .enumerate()
        .filter_map(|(i, slot)| match slot {
            Some(Outgoing::Message { message, room, .. }) => {
                Some(((room.clone(), message.topic.clone()), head + i as u64))
            }
            _ => None,
        })
        .collect();
    for (key, seq) in keys {
        if replace_older(state, key, seq) {
            if let Some(Some(Outgoing::Message { conflated, .. })) =
                state.entries.get_mut((seq - head) as usize)
            {
                *conflated = true;
            }
        }
    }
}

/// Records `seq` as the newest queued message for `key` and empties the slot of the
/// one it replaces, if that one is still queued (the writer may have taken it: its
/// sequence number is then below the head). True when a message was replaced.
fn replace_older(state: &mut State, key: ConflationKey, seq: u64) -> bool {
    let Some(previous) = state.latest.insert(key, seq) else {
        return false;
    };
    let Some(index) = previous.checked_sub(state.head_seq) else {
        return false;
    };
    let Some(replaced) = state.entries.get_mut(index as usize).and_then(Option::take) else {
        return false;
    };
    state.queued_messages -= 1;
    state.queued_entries -= 1;
    state.queued_bytes -= replaced.size();
    counter!("switchboard_bridge_conflated_total").increment(1);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, offset: u64) -> Arc<Message> {
        Arc::new(Message::new(
            offset,
            Arc::from(topic),
            Bytes::from_static(b"1"),
            0,
            false,
            Instant::now(),
        ))
    }

    fn limits() -> QueueLimits {
        QueueLimits {
            conflate_after: 4,
            close_after: 20,
            max_bytes: 1 << 20,
            stall_timeout: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn conflates_to_the_newest_per_topic_in_offset_order() {
        let queue = OutboundQueue::new(limits());
        let room: Arc<str> = Arc::from("r");
        for offset in 1..=12 {
            let topic = if offset % 2 == 0 { "even" } else { "odd" };
            let m = message(topic, offset);
            queue.push_message(&room, &m, &Arc::default());
        }
        let mut out = Vec::new();
        assert!(queue.next_batch(&mut out, 100).await.is_none());
        let delivered: Vec<(u64, bool)> = out
            .iter()
            .filter_map(|o| match o {
                Outgoing::Message {
                    message, conflated, ..
                } => Some((message.offset, *conflated)),
                _ => None,
            })
            .collect();
        assert_eq!(delivered, vec![(11, true), (12, true)]);
    }

    #[tokio::test]
    async fn a_slow_reader_while_conflating_replaces_only_what_is_still_queued() {
        let queue = OutboundQueue::new(QueueLimits {
            conflate_after: 4,
            close_after: 1_000,
            ..limits()
        });
        let room: Arc<str> = Arc::from("r");
        let mut out = Vec::new();
        let mut offset = 0;
        for _ in 0..50 {
            for topic in ["a", "b", "c", "d", "e", "f"] {
                offset += 1;
                queue.push_message(&room, &message(topic, offset), &Arc::default());
            }
            // Reads a little: entries leave, their sequence numbers stay indexed.
            out.clear();
            assert!(queue.next_batch(&mut out, 2).await.is_none());
        }
        out.clear();
        assert!(queue.next_batch(&mut out, 1_000).await.is_none());
        let last: Vec<u64> = out
            .iter()
            .filter_map(|o| match o {
                Outgoing::Message { message, .. } => Some(message.offset),
                _ => None,
            })
            .collect();
        assert_eq!(
            last.last(),
            Some(&offset),
            "the newest message is delivered"
        );
        let state = queue.state.lock();
        assert_eq!(state.queued_entries, 0);
        assert_eq!(state.queued_bytes, 0);
    }

    #[tokio::test]
    async fn closes_with_1013_past_the_bound() {
        let queue = OutboundQueue::new(limits());
        let room: Arc<str> = Arc::from("r");
        for offset in 1..=30 {
            let m = message(&format!("t{offset}"), offset);
            queue.push_message(&room, &m, &Arc::default());
        }
        let mut out = Vec::new();
        let closed = queue.next_batch(&mut out, 100).await;
        assert_eq!(closed.map(|c| c.0), Some(close_code::TRY_AGAIN_LATER));
    }
}
