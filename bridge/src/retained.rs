//! The bridge's view of retained messages: the core's retained index (the one MQTT
//! subscribers are served from, loaded from the store at start), as `joined.state`
//! items.

use std::sync::Arc;

use switchboard_broker::router::RetainedIndex;

use crate::message::RetainedValue;

pub struct RetainedView {
    index: Arc<RetainedIndex>,
}

impl RetainedView {
    pub fn new(index: Arc<RetainedIndex>) -> RetainedView {
        RetainedView { index }
    }

    /// Retained values of topics matching any of `filters`, sorted by topic, at most
    /// `limit`; the flag says whether more matched.
    pub fn matching(&self, filters: &[String], limit: usize) -> (Vec<RetainedValue>, bool) {
        let (messages, truncated) = self.index.matching(filters, limit);
        let values = messages
            .into_iter()
            .map(|m| RetainedValue {
                topic: m.topic.clone(),
                payload: m.payload.clone(),
                ts_ms: m.ts_ms,
            })
            .collect();
        (values, truncated)
    }
}
