//! The message log behind `since` and `rewind`: one append-only sequence for every
//! room, filtered on read, so a wildcard room resumes as cheaply as an exact one.
//! Bounded by count and age; the epoch names this log's lifetime.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

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
    Incomplete,
}

pub struct MemoryHistory {
    entries: VecDeque<Entry>,
    /// Offset of `entries[0]`.
    first_offset: u64,
    /// Offset the next message gets.
    next_offset: u64,
    max_messages: usize,
    max_age: Duration,
    filters: Vec<String>,
}

impl MemoryHistory {
    pub fn new(max_messages: usize, max_age: Duration, filters: Vec<String>) -> MemoryHistory {
        MemoryHistory {
            entries: VecDeque::new(),
            first_offset: 1,
            next_offset: 1,
            max_messages,
            max_age,
            filters,
        }
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
        self.entries.push_back(Entry { message, kept });
        self.next_offset += 1;
        let max_age_ms = self.max_age.as_millis() as u64;
        while self.entries.len() > self.max_messages
            || self
                .entries
                .front()
                .is_some_and(|e| now.saturating_sub(e.message.ts_ms) > max_age_ms)
        {
            self.entries.pop_front();
            self.first_offset += 1;
        }
    }

    /// Messages after `offset` matching any of `filters`, at most `limit`.
    pub fn since(&self, offset: u64, filters: &[String], limit: usize) -> Resume {
        if offset > self.head() || offset + 1 < self.first_offset {
            return Resume::Incomplete;
        }
        let start = (offset + 1 - self.first_offset) as usize;
        let mut found = Vec::new();
        for entry in self.entries.iter().skip(start) {
            if !filters.iter().any(|f| matches(f, &entry.message.topic)) {
                continue;
            }
            if !entry.kept || found.len() == limit {
                return Resume::Incomplete;
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
            Resume::Incomplete => None,
        }
    }

    #[test]
    fn resumes_within_the_window_and_refuses_beyond_it() {
        let mut history = MemoryHistory::new(5, Duration::from_secs(60), vec!["#".into()]);
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
        let mut history = MemoryHistory::new(100, Duration::from_secs(60), vec!["kept/#".into()]);
        push(&mut history, "kept/a", 1);
        push(&mut history, "other/b", 1);
        assert_eq!(
            offsets(history.since(0, &["kept/#".to_string()], 100)),
            Some(vec![1])
        );
        assert_eq!(offsets(history.since(0, &["#".to_string()], 100)), None);
    }

    #[test]
    fn old_messages_expire() {
        let mut history = MemoryHistory::new(100, Duration::from_secs(1), vec!["#".into()]);
        push(&mut history, "a", 1_000);
        push(&mut history, "a", 5_000);
        assert_eq!(offsets(history.since(0, &["#".to_string()], 100)), None);
        assert_eq!(
            offsets(history.since(1, &["#".to_string()], 100)),
            Some(vec![2])
        );
    }
}
