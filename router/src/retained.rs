//! The retained index: the last retained message per topic, ordered by topic so that
//! a filter's matches are a range scan from its literal prefix, read in pages.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::message::Message;
use crate::topic::{literal_prefix, matches};

/// Topics looked at per page at most, matching or not: a page never holds the lock long.
const SCAN_BUDGET: usize = 4096;

#[derive(Default)]
pub struct RetainedIndex {
    topics: RwLock<BTreeMap<Arc<str>, Arc<Message>>>,
    /// Topics whose retained message has a Message Expiry, by when it expires
    /// (entries of overwritten messages are skipped when they come up).
    expiring: parking_lot::Mutex<BTreeMap<(Instant, Arc<str>), ()>>,
}

/// One page of a filter's retained messages.
pub struct RetainedPage {
    pub messages: Vec<Arc<Message>>,
    /// Where the next page starts (exclusive); `None` when the scan is done.
    pub next: Option<Arc<str>>,
}

impl RetainedIndex {
    /// Stores `message` as its topic's retained value; an empty payload clears it.
    /// Returns whether the topic had a value before.
    pub fn set(&self, message: &Arc<Message>) -> bool {
        if let (Some(expiry), false) = (message.expiry, message.payload.is_empty()) {
            self.expiring
                .lock()
                .insert((expiry.at, message.topic.clone()), ());
        }
        let mut topics = self.topics.write();
        let had = if message.payload.is_empty() {
            topics.remove(&message.topic).is_some()
        } else {
            topics
                .insert(message.topic.clone(), message.clone())
                .is_some()
        };
        metrics::gauge!("switchboard_retained_topics").set(topics.len() as f64);
        had
    }

    /// Loads many at start-up (before clients connect; `$SYS` may already be there)
    /// and returns how many it loaded. Built in one go: sorted input (the store's
    /// order) makes that a linear bulk build.
    pub fn load(&self, messages: impl IntoIterator<Item = Message>) -> usize {
        let mut topics = self.topics.write();
        let mut expiring = self.expiring.lock();
        let loaded: BTreeMap<Arc<str>, Arc<Message>> = messages
            .into_iter()
            .filter(|m| !m.payload.is_empty())
            .map(|m| {
                if let Some(expiry) = m.expiry {
                    expiring.insert((expiry.at, m.topic.clone()), ());
                }
                (m.topic.clone(), Arc::new(m))
            })
            .collect();
        let count = loaded.len();
        if topics.is_empty() {
            *topics = loaded;
        } else {
            topics.extend(loaded);
        }
        metrics::gauge!("switchboard_retained_topics").set(topics.len() as f64);
        count
    }

    pub fn len(&self) -> usize {
        self.topics.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.read().is_empty()
    }

    /// Up to `limit` unexpired messages matching `filter`, after `after` (exclusive).
    pub fn page(&self, filter: &str, after: Option<&str>, limit: usize) -> RetainedPage {
        let prefix = literal_prefix(filter);
        let now = Instant::now();
        let topics = self.topics.read();
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Included(prefix),
        };
        let mut messages = Vec::new();
        let mut last: Option<&Arc<str>> = None;
        let range = topics.range::<str, _>((start, Bound::Unbounded));
        for (scanned, (topic, message)) in range.enumerate() {
            if !topic.starts_with(prefix) {
                return RetainedPage {
                    messages,
                    next: None,
                };
            }
            if messages.len() == limit || scanned == SCAN_BUDGET {
                return RetainedPage {
                    messages,
                    next: last.cloned(),
                };
            }
            last = Some(topic);
            if matches(filter, topic) && !message.expired(now) {
                messages.push(message.clone());
            }
        }
        RetainedPage {
            messages,
            next: None,
        }
    }

    /// Every unexpired message matching any of `filters`, by topic, at most `limit`;
    /// the flag says whether more matched.
    pub fn matching(&self, filters: &[String], limit: usize) -> (Vec<Arc<Message>>, bool) {
        let mut found: BTreeMap<Arc<str>, Arc<Message>> = BTreeMap::new();
        let mut truncated = false;
        for filter in filters {
            let mut after: Option<Arc<str>> = None;
            loop {
                let page = self.page(filter, after.as_deref(), 1024);
                for message in page.messages {
                    if found.contains_key(&message.topic) {
                        continue;
                    }
                    if found.len() == limit {
                        truncated = true;
                        break;
                    }
                    found.insert(message.topic.clone(), message);
                }
                match page.next {
                    Some(next) if !truncated => after = Some(next),
                    _ => break,
                }
            }
        }
        (found.into_values().collect(), truncated)
    }

    /// Drops expired messages; returns their topics (for the store). Looks only at
    /// messages that have an expiry, in expiry order.
    pub fn remove_expired(&self) -> Vec<Arc<str>> {
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut expiring = self.expiring.lock();
            while let Some(entry) = expiring.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove_entry().0);
            }
        }
        if due.is_empty() {
            return Vec::new();
        }
        let mut topics = self.topics.write();
        let mut gone = Vec::new();
        for (at, topic) in due {
            // Only if the message there now is the one that expired.
            let current = topics
                .get(&topic)
                .is_some_and(|m| m.expiry.is_some_and(|e| e.at == at));
            if current {
                topics.remove(&topic);
                gone.push(topic);
            }
        }
        metrics::gauge!("switchboard_retained_topics").set(topics.len() as f64);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn retained(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message::new(topic, Bytes::from_static(payload), 1, true))
    }

    #[test]
    fn pages_cover_every_match_once() {
        let index = RetainedIndex::default();
        for i in 0..10_000 {
            index.set(&retained(&format!("dur/{i:05}"), b"x"));
            index.set(&retained(&format!("other/{i}"), b"x"));
        }
        let mut seen = 0;
        let mut after: Option<Arc<str>> = None;
        loop {
            let page = index.page("dur/#", after.as_deref(), 100);
            seen += page.messages.len();
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, 10_000);
        let (all, truncated) = index.matching(&["+/00001".into(), "#".into()], 50_000);
        assert_eq!(all.len(), 20_000);
        assert!(!truncated);
    }

    #[test]
    fn empty_payload_clears() {
        let index = RetainedIndex::default();
        index.set(&retained("ü/ß", b"1"));
        assert_eq!(index.page("+/ß", None, 10).messages.len(), 1);
        index.set(&retained("ü/ß", b""));
        assert!(index.is_empty());
    }

    #[test]
    fn expired_messages_leave_and_their_overwritten_entries_do_not_count() {
        let index = RetainedIndex::default();
        let mut short = Message::new("e/1", Bytes::from_static(b"x"), 0, true);
        short.expiry = Some(crate::Expiry::after_secs(0));
        index.set(&Arc::new(short));
        let mut replaced = Message::new("e/2", Bytes::from_static(b"x"), 0, true);
        replaced.expiry = Some(crate::Expiry::after_secs(0));
        index.set(&Arc::new(replaced));
        index.set(&retained("e/2", b"kept"));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let gone: Vec<String> = index
            .remove_expired()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(gone, vec!["e/1"]);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_trailing_hash_matches_the_parent_level() {
        let index = RetainedIndex::default();
        index.set(&retained("a", b"parent"));
        index.set(&retained("a/b", b"child"));
        index.set(&retained("ab", b"other"));
        let page = index.page("a/#", None, 10);
        let topics: Vec<&str> = page.messages.iter().map(|m| &*m.topic).collect();
        assert_eq!(topics, vec!["a", "a/b"]);
    }
}
