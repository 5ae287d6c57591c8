//! Durable state behind one small trait, so single node and cluster share every line
//! above it: the embedded sled store now, a Redis one later.

mod sessions;
mod sled_store;
mod writer;

use std::path::PathBuf;

use bytes::Bytes;
pub use switchboard_broker::router::SessionSnapshot;

pub use sled_store::SledStore;
pub use writer::{spawn_writer, StoreWriter};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data dir {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("storage: {0}")]
    Io(String),
    #[error("storage: corrupt record for topic {topic:?}: {message}")]
    Corrupt { topic: String, message: String },
}

/// A retained message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRetained {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub ts_ms: u64,
    /// When it expires (MQTT 5 Message Expiry), ms since the Unix epoch; an expired
    /// message is not restored.
    pub expires_at_ms: Option<u64>,
}

impl StoredRetained {
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// The retained message the core serves, its expiry counted from `now_ms`.
    pub fn into_message(self, now_ms: u64) -> switchboard_broker::router::Message {
        use switchboard_broker::router::{Expiry, Message};
        let mut message = Message::new(self.topic, self.payload, self.qos, true);
        message.ts_ms = self.ts_ms;
        message.expiry = self.expires_at_ms.map(|at| {
            let secs = at.saturating_sub(now_ms).div_ceil(1000);
            Expiry::after_secs(u32::try_from(secs).unwrap_or(u32::MAX))
        });
        message
    }
}

/// One change to apply: a payload to keep, or `None` to delete the topic.
#[derive(Debug, Clone)]
pub struct RetainedWrite {
    pub topic: String,
    pub value: Option<StoredRetained>,
}

/// One message of the history log, as saved at a graceful shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub offset: u64,
    pub topic: String,
    pub payload: Bytes,
    pub ts_ms: u64,
    /// False for a message outside `[history] topics` (its place, not its content).
    pub kept: bool,
}

/// The history log saved at a graceful shutdown: it continues under the same epoch.
#[derive(Debug, Clone, Default)]
pub struct SavedHistory {
    pub epoch: String,
    pub next_offset: u64,
    pub records: Vec<HistoryRecord>,
}

/// What `switchboard data check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub retained: usize,
    pub bytes: u64,
}

pub trait RetainedStore: Send + Sync + 'static {
    /// Applies changes in order (not yet durable: see [`RetainedStore::flush`]).
    fn apply(&self, writes: &[RetainedWrite]) -> Result<(), StoreError>;
    /// Makes every applied change durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Every stored retained message, sorted by topic.
    fn load(&self) -> Result<Vec<StoredRetained>, StoreError>;
    /// Reads every record, checking each decodes.
    fn check(&self) -> Result<CheckReport, StoreError>;
    /// Saves the history log (graceful shutdown), replacing any saved before.
    fn save_history(&self, history: &SavedHistory) -> Result<(), StoreError>;
    /// Takes the saved history, removing it durably: after a crash the next start
    /// finds none and begins a new epoch.
    fn take_history(&self) -> Result<Option<SavedHistory>, StoreError>;
    /// Replaces the stored persistent MQTT sessions with `sessions`, atomically, and
    /// makes it durable.
    fn save_sessions(&self, sessions: &[SessionSnapshot]) -> Result<(), StoreError>;
    /// The stored persistent MQTT sessions.
    fn load_sessions(&self) -> Result<Vec<SessionSnapshot>, StoreError>;
}
