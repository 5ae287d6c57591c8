//! The message log behind `since` and `rewind`: one append-only sequence for every
//! room, filtered on read, so a wildcard room resumes as cheaply as an exact one.
//! Bounded by count, bytes and age; the epoch names this log's lifetime.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::joined::NotRecovered;
use crate::message::Message;
use crate::topic::matches;

struct Entry {
    message: Arc<Message>,
    /// False for messages outside `[history] topics`: their place is known, their
    /// content is not, so a resume across them cannot be complete.
    kept: bool,
}

/// What a resume found.
pub enum Resume {
    /// Every message after the position, in order.
    Complete(Vec<Arc<Message>>),
    /// The gap is not covered (too old, too long, or not kept).
    Incomplete(NotRecovered),
}

pub struct MemoryHistory {
    entries: VecDeque<Entry>,
    /// Offset of `entries[0]`.
    first_offset: u64,
    /// Offset the next message gets.
    next_offset: u64,
    max_messages: usize,
    max_bytes: usize,
    /// Payload bytes of the entries.
    bytes: usize,
    max_age: Duration,
    filters: Vec<String>,
}

impl MemoryHistory {
    pub fn new(
        max_messages: usize,
        max_bytes: usize,
        max_age: Duration,
        filters: Vec<String>,
    ) -> MemoryHistory {
        MemoryHistory {
            entries: VecDeque::new(),
            first_offset: 1,
            next_offset: 1,
            max_messages,
            max_bytes,
            bytes: 0,
            max_age,
            filters,
        }
    }

    /// A log that continues a saved one: same offsets, entries older than `max_age`
    /// (relative to `now_ms`) left out.
    pub fn restore(&mut self, saved: &crate::store::SavedHistory, now_ms: u64) {
        let max_age_ms = self.max_age.as_millis() as u64;
        self.entries.clear();
        self.bytes = 0;
        self.next_offset = saved.next_offset.max(1);
        let mut records: Vec<&crate::store::HistoryRecord> = saved
            .records
            .iter()
            .filter(|r| r.offset < self.next_offset && now_ms.saturating_sub(r.ts_ms) <= max_age_ms)
            .collect();
        records.sort_by_key(|r| r.offset);
        if records.len() > self.max_messages {
            records.drain(..records.len() - self.max_messages);
        }
        // Only a gap-free run ending at the head can be resumed from.
        let mut expected = self.next_offset;
        let mut run = Vec::new();
        for record in records.iter().rev() {
            if record.offset + 1 != expected {
                break;
            }
            expected = record.offset;
            run.push(*record);
        }
        run.reverse();
        self.first_offset = run.first().map_or(self.next_offset, |r| r.offset);
        for record in run {
            let message = Message::new(
                record.offset,
                std::sync::Arc::from(record.topic.as_str()),
                record.payload.clone(),
                record.ts_ms,
                false,
                std::time::Instant::now(),
            );
            self.bytes += message.payload.len();
            self.entries.push_back(Entry {
                message: Arc::new(message),
                kept: record.kept,
            });
        }
        self.evict(now_ms);
    }

    /// The log as records, for saving at shutdown.
    pub fn snapshot(&self) -> Vec<crate::store::HistoryRecord> {
        self.entries
            .iter()
            .map(|e| crate::store::HistoryRecord {
                offset: e.message.offset,
                topic: e.message.topic.to_string(),
                payload: if e.kept {
                    e.message.payload.clone()
                } else {
                    bytes::Bytes::new()
                },
                ts_ms: e.message.ts_ms,
                kept: e.kept,
            })
            .collect()
    }

    /// The offset the next message will get.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The newest offset handed out (0 before any message).
    pub fn head(&self) -> u64 {
        self.next_offset - 1
    }

    /// Appends `message` (whose `offset` must be [`MemoryHistory::next_offset`]).
    pub fn append(&mut self, message: Arc<Message>) {
        let kept = self.filters.iter().any(|f| matches(f, &message.topic));
        let now = message.ts_ms;
        self.bytes += message.payload.len();
        self.entries.push_back(Entry { message, kept });
        self.next_offset += 1;
        self.evict(now);
    }

    /// Drops the oldest entries past the count, byte or age bound.
    fn evict(&mut self, now_ms: u64) {
        let max_age_ms = self.max_age.as_millis() as u64;
        while self.entries.len() > self.max_messages
            || self.bytes > self.max_bytes
            || self
                .entries
                .front()
                .is_some_and(|e| now_ms.saturating_sub(e.message.ts_ms) > max_age_ms)
        {
            let Some(gone) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= gone.message.payload.len();
            self.first_offset += 1;
        }
    }

    /// Messages after `offset` matching any of `filters`, at most `limit`.
    pub fn since(&self, offset: u64, filters: &[String], limit: usize) -> Resume {
        if offset > self.head() || offset + 1 < self.first_offset {
            return Resume::Incomplete(NotRecovered::Gap);
        }
        let start = (offset + 1 - self.first_offset) as usize;
        let mut found = Vec::new();
        for entry in self.entries.iter().skip(start) {
            if !filters.iter().any(|f| matches(f, &entry.message.topic)) {
                continue;
            }
            if !entry.kept {
                return Resume::Incomplete(NotRecovered::Gap);
            }
            if found.len() == limit {
                return Resume::Incomplete(NotRecovered::TooMany);
            }
            found.push(entry.message.clone());
        }
        Resume::Complete(found)
    }

    /// The last `count` kept messages matching `filters`, oldest first.
    pub fn rewind(&self, count: usize, filters: &[String]) -> Vec<Arc<Message>> {
        let mut found: Vec<Arc<Message>> = self
            .entries
            .iter()
            .rev()
            .filter(|e| e.kept && filters.iter().any(|f| matches(f, &e.message.topic)))
            .take(count)
            .map(|e| e.message.clone())
            .collect();
        found.reverse();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Instant;

    fn push(history: &mut MemoryHistory, topic: &str, ts_ms: u64) {
        let message = Message::new(
            history.next_offset(),
            Arc::from(topic),
            Bytes::from_static(b"1"),
            ts_ms,
            false,
            Instant::now(),
        );
        history.append(Arc::new(message));
    }

    fn offsets(resume: Resume) -> Option<Vec<u64>> {
        match resume {
            Resume::Complete(messages) => Some(messages.iter().map(|m| m.offset).collect()),
            Resume::Incomplete(_) => None,
        }
    }

    #[test]
    fn resumes_within_the_window_and_refuses_beyond_it() {
        let mut history =
            MemoryHistory::new(5, usize::MAX, Duration::from_secs(60), vec!["#".into()]);
        for i in 0..8 {
            push(&mut history, if i % 2 == 0 { "a/x" } else { "b/y" }, 1000);
        }
        let a = vec!["a/+".to_string()];
        assert_eq!(offsets(history.since(5, &a, 100)), Some(vec![7]));
        assert_eq!(offsets(history.since(8, &a, 100)), Some(vec![]));
        assert_eq!(
            offsets(history.since(1, &a, 100)),
            None,
            "offsets 2 and 3 are gone"
        );
        assert_eq!(offsets(history.since(9, &a, 100)), None, "a future offset");
        assert_eq!(
            history
                .rewind(2, &["#".to_string()])
                .iter()
                .map(|m| m.offset)
                .collect::<Vec<_>>(),
            vec![7, 8]
        );
    }

    #[test]
    fn messages_outside_history_topics_make_a_resume_incomplete() {
        let mut history = MemoryHistory::new(
            100,
            usize::MAX,
            Duration::from_secs(60),
            vec!["kept/#".into()],
        );
        push(&mut history, "kept/a", 1);
        push(&mut history, "other/b", 1);
        assert_eq!(
            offsets(history.since(0, &["kept/#".to_string()], 100)),
            Some(vec![1])
        );
        assert_eq!(offsets(history.since(0, &["#".to_string()], 100)), None);
    }

    #[test]
    fn a_restored_log_continues_its_offsets_and_resumes() {
        let mut history =
            MemoryHistory::new(100, usize::MAX, Duration::from_secs(60), vec!["#".into()]);
        for _ in 0..5 {
            push(&mut history, "a", 1_000);
        }
        let saved = crate::store::SavedHistory {
            epoch: "e".into(),
            next_offset: history.next_offset(),
            records: history.snapshot(),
        };
        let mut restored =
            MemoryHistory::new(100, usize::MAX, Duration::from_secs(60), vec!["#".into()]);
        restored.restore(&saved, 2_000);
        assert_eq!(restored.next_offset(), 6);
        assert_eq!(
            offsets(restored.since(2, &["#".to_string()], 100)),
            Some(vec![3, 4, 5])
        );

        let mut gappy = saved.clone();
        gappy.records.retain(|r| r.offset != 2);
        let mut restored =
            MemoryHistory::new(100, usize::MAX, Duration::from_secs(60), vec!["#".into()]);
        restored.restore(&gappy, 2_000);
        assert_eq!(
            offsets(restored.since(1, &["#".to_string()], 100)),
            None,
            "offset 2 is gone"
        );
        assert_eq!(
            offsets(restored.since(2, &["#".to_string()], 100)),
            Some(vec![3, 4, 5])
        );
    }

    #[test]
    fn the_oldest_messages_leave_past_the_byte_bound() {
        let mut history = MemoryHistory::new(100, 3, Duration::from_secs(60), vec!["#".into()]);
        for _ in 0..5 {
            push(&mut history, "a", 1_000);
        }
        assert_eq!(history.bytes, 3, "each payload is one byte");
        assert_eq!(offsets(history.since(1, &["#".to_string()], 100)), None);
        assert_eq!(
            offsets(history.since(2, &["#".to_string()], 100)),
            Some(vec![3, 4, 5])
        );
    }

    #[test]
    fn old_messages_expire() {
        let mut history =
            MemoryHistory::new(100, usize::MAX, Duration::from_secs(1), vec!["#".into()]);
        push(&mut history, "a", 1_000);
        push(&mut history, "a", 5_000);
        assert_eq!(offsets(history.since(0, &["#".to_string()], 100)), None);
        assert_eq!(
            offsets(history.since(1, &["#".to_string()], 100)),
            Some(vec![2])
        );
    }
}
