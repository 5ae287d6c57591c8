//! The bridge's view of retained messages, kept in step with what MQTT subscribers
//! get: fed by the edge (which sees each PUBLISH's retain flag) and by browser
//! publishes. An empty payload clears a topic, as the router does.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::message::RetainedValue;
use crate::topic::{literal_prefix, matches};

#[derive(Default)]
pub struct RetainedView {
    topics: RwLock<BTreeMap<Arc<str>, RetainedValue>>,
}

impl RetainedView {
    /// A view holding what the store had at start.
    pub fn loaded(stored: &[crate::store::StoredRetained]) -> RetainedView {
        let view = RetainedView::default();
        {
            let mut topics = view.topics.write();
            for item in stored {
                let topic: Arc<str> = Arc::from(item.topic.as_str());
                topics.insert(
                    topic.clone(),
                    RetainedValue {
                        topic,
                        payload: item.payload.clone(),
                        ts_ms: item.ts_ms,
                    },
                );
            }
            metrics::gauge!("switchboard_bridge_retained_topics").set(topics.len() as f64);
        }
        view
    }

    pub fn set(&self, topic: &str, payload: Bytes, ts_ms: u64) {
        let mut topics = self.topics.write();
        if payload.is_empty() {
            topics.remove(topic);
        } else {
            let topic: Arc<str> = Arc::from(topic);
            topics.insert(
                topic.clone(),
                RetainedValue {
                    topic,
                    payload,
                    ts_ms,
                },
            );
        }
        metrics::gauge!("switchboard_bridge_retained_topics").set(topics.len() as f64);
    }

    /// Retained values of topics matching any of `filters`, sorted by topic, at most
    /// `limit`; the flag says whether more matched.
    pub fn matching(&self, filters: &[String], limit: usize) -> (Vec<RetainedValue>, bool) {
        let topics = self.topics.read();
        let mut found: BTreeMap<Arc<str>, RetainedValue> = BTreeMap::new();
        let mut truncated = false;
        for filter in filters {
            let prefix = literal_prefix(filter);
            let range = topics
                .range::<str, _>((
                    std::ops::Bound::Included(prefix),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|(topic, _)| topic.starts_with(prefix));
            for (topic, value) in range {
                if !matches(filter, topic) || found.contains_key(topic) {
                    continue;
                }
                if found.len() == limit {
                    truncated = true;
                    break;
                }
                found.insert(topic.clone(), value.clone());
            }
        }
        (found.into_values().collect(), truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_filters_and_clears_on_empty_payload() {
        let view = RetainedView::default();
        view.set("sensors/a/temp", Bytes::from_static(b"1"), 1);
        view.set("sensors/b/temp", Bytes::from_static(b"2"), 1);
        view.set("sensors/b/hum", Bytes::from_static(b"3"), 1);
        let (found, truncated) = view.matching(&["sensors/+/temp".into()], 10);
        assert_eq!(found.len(), 2);
        assert!(!truncated);
        let (found, truncated) = view.matching(&["#".into()], 2);
        assert_eq!(found.len(), 2);
        assert!(truncated);
        view.set("sensors/a/temp", Bytes::new(), 2);
        assert_eq!(view.matching(&["sensors/+/temp".into()], 10).0.len(), 1);
    }
}
