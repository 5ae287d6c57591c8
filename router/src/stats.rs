//! Counters the `$SYS` tree and metrics report.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::message::Message;

#[derive(Debug, Default)]
pub struct Stats {
    pub messages_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Deliveries dropped on full queues.
    pub dropped: AtomicU64,
    pub sessions: AtomicU64,
    pub subscriptions: AtomicU64,
}

impl Stats {
    pub(crate) fn received(&self, message: &Message) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(message.payload.len() as u64, Ordering::Relaxed);
    }

    /// Counts a PUBLISH written to a client.
    pub fn sent(&self, payload_len: usize) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent
            .fetch_add(payload_len as u64, Ordering::Relaxed);
    }
}
