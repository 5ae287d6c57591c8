//! What a session sends: queued messages within the client's Receive Maximum (each
//! given a packet id and kept in flight until acknowledged), retained pages for new
//! subscriptions, and what was in flight when its last connection ended.

use std::time::Instant;

use crate::message::Delivery;
use crate::retained::RetainedIndex;
use crate::session::{InFlight, Outbound, Session, State};

/// Retained messages taken per page when a subscription is served.
const REPLAY_PAGE: usize = 256;
/// Pages looked at per step while they come back empty (many subscriptions with
/// no retained messages), so one step stays short.
const REPLAY_PAGES: usize = 64;

impl Session {
    /// Moves what may be sent now into `out`: queued messages (QoS 1/2 while the
    /// client's Receive Maximum allows), and retained messages for new subscriptions
    /// one page at a time when the queue is empty. At most `max` packets.
    pub fn take_outbound(&self, retained: &RetainedIndex, out: &mut Vec<Outbound>, max: usize) {
        let now = Instant::now();
        let mut state = self.state.lock();
        if !state.connected {
            return;
        }
        let mut taken = 0;
        loop {
            let mut pages = 0;
            while state.queue.is_empty() && !state.replays.is_empty() && pages < REPLAY_PAGES {
                refill_from_replays(&mut state, retained);
                pages += 1;
            }
            if taken == max {
                break;
            }
            let Some(front) = state.queue.front() else {
                break;
            };
            if front.qos > 0 && state.inflight.len() >= state.send_quota {
                break;
            }
            let Some(delivery) = state.queue.pop_front() else {
                break;
            };
            state.queued_bytes = state.queued_bytes.saturating_sub(delivery.cost());
            if delivery.message.expired(now) {
                continue;
            }
            let pkid = if delivery.qos > 0 {
                let Some(pkid) = next_free_pkid(&mut state) else {
                    state.queued_bytes += delivery.cost();
                    state.queue.push_front(delivery);
                    break;
                };
                state.inflight.insert(
                    pkid,
                    InFlight {
                        delivery: delivery.clone(),
                        released: false,
                    },
                );
                pkid
            } else {
                0
            };
            out.push(Outbound::Publish {
                pkid,
                dup: false,
                delivery,
            });
            taken += 1;
        }
        if !self.limits.over_soft(state.queue.len(), state.queued_bytes) {
            state.stalled = false;
            self.room.notify_waiters();
        }
    }

    /// Whether more can be sent now without waiting for a push or an ack.
    pub fn has_sendable(&self) -> bool {
        let state = self.state.lock();
        if !state.connected {
            return false;
        }
        let front_sendable = state
            .queue
            .front()
            .is_some_and(|d| d.qos == 0 || state.inflight.len() < state.send_quota);
        front_sendable || (state.queue.is_empty() && !state.replays.is_empty())
    }

    /// What was in flight when the last connection ended, to send again (PUBLISH
    /// with DUP, or PUBREL), in packet id order.
    pub fn resend_inflight(&self, out: &mut Vec<Outbound>) {
        let state = self.state.lock();
        for (pkid, flight) in &state.inflight {
            out.push(if flight.released {
                Outbound::PubRel { pkid: *pkid }
            } else {
                Outbound::Publish {
                    pkid: *pkid,
                    dup: true,
                    delivery: flight.delivery.clone(),
                }
            });
        }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): the message is done. False if unknown.
    pub fn complete(&self, pkid: u16) -> bool {
        let done = self.state.lock().inflight.remove(&pkid).is_some();
        if done {
            self.work.notify_one();
        }
        done
    }

    /// PUBREC: the client has a QoS 2 message; PUBREL follows. False if unknown.
    pub fn received(&self, pkid: u16) -> bool {
        match self.state.lock().inflight.get_mut(&pkid) {
            Some(flight) if flight.delivery.qos == 2 => {
                flight.released = true;
                true
            }
            _ => false,
        }
    }
}

/// Queues the next page of the first pending replay. Runs under the session lock, so
/// a live message published after the page was read is queued after it: a
/// subscriber never ends on an older retained value than a concurrent publish.
fn refill_from_replays(state: &mut State, retained: &RetainedIndex) {
    let Some(replay) = state.replays.front_mut() else {
        return;
    };
    let page = retained.page(&replay.filter, replay.after.as_deref(), REPLAY_PAGE);
    let options = replay.options;
    match page.next {
        Some(next) => replay.after = Some(next),
        None => {
            state.replays.pop_front();
        }
    }
    for message in page.messages {
        let delivery = Delivery {
            qos: message.qos.min(options.qos),
            retain: true,
            subscription_ids: options.identifier.into_iter().collect(),
            message,
        };
        state.queued_bytes += delivery.cost();
        state.queue.push_back(delivery);
    }
}

fn next_free_pkid(state: &mut State) -> Option<u16> {
    if state.inflight.len() >= usize::from(u16::MAX) {
        return None;
    }
    loop {
        let pkid = state.next_pkid;
        state.next_pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
        if !state.inflight.contains_key(&pkid) {
            return Some(pkid);
        }
    }
}
