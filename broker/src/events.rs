//! What the edge tells the rest of Switchboard: devices coming and going, and the
//! retained messages it accepted. The bridge consumes this feed; the broker never
//! imports the bridge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};
use tracing::warn;

/// How many events a slow consumer may fall behind before it misses some (it is
/// then told how many it lost, by `broadcast`'s `Lagged`).
pub const EVENT_FEED_CAPACITY: usize = 65_536;

/// Why a device went offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineReason {
    /// The client sent DISCONNECT.
    Disconnect,
    /// Nothing arrived within 1.5 × keep-alive.
    KeepAlive,
    /// The connection ended without DISCONNECT (its will, if any, was published).
    Will,
    /// Another connection took over the client id.
    TakenOver,
    /// The server ended it (shutdown, limits, protocol errors).
    Kicked,
    /// A network or protocol error.
    Error,
}

impl OfflineReason {
    pub fn label(self) -> &'static str {
        match self {
            OfflineReason::Disconnect => "disconnect",
            OfflineReason::KeepAlive => "keepalive",
            OfflineReason::Will => "will",
            OfflineReason::TakenOver => "taken_over",
            OfflineReason::Kicked => "kicked",
            OfflineReason::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub client_id: Arc<str>,
    pub username: Option<String>,
    /// Milliseconds since the Unix epoch when it connected.
    pub since_ms: u64,
    pub listener: &'static str,
}

#[derive(Debug, Clone)]
pub enum BrokerEvent {
    DeviceOnline(DeviceInfo),
    DeviceOffline {
        client_id: Arc<str>,
        reason: OfflineReason,
    },
}

/// A retained message the edge accepted (an empty payload clears the topic).
#[derive(Debug, Clone)]
pub struct RetainedChange {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: u8,
    /// MQTT 5 Message Expiry Interval, in seconds from now.
    pub expiry_secs: Option<u32>,
}

/// The event feed, the table of devices online now, and the queue of retained
/// changes (a bounded queue of its own: durability must not depend on a consumer
/// keeping up with a broadcast).
#[derive(Clone)]
pub struct EventFeed {
    sender: broadcast::Sender<BrokerEvent>,
    online: Arc<Mutex<HashMap<Arc<str>, DeviceInfo>>>,
    retained_tx: mpsc::Sender<RetainedChange>,
    retained_rx: Arc<Mutex<Option<mpsc::Receiver<RetainedChange>>>>,
    last_full_log: Arc<AtomicU64>,
}

impl EventFeed {
    /// `retained_queue`: retained changes waiting for their consumer at most.
    pub fn new(retained_queue: usize) -> EventFeed {
        let (sender, _) = broadcast::channel(EVENT_FEED_CAPACITY);
        let (retained_tx, retained_rx) = mpsc::channel(retained_queue.max(1));
        EventFeed {
            sender,
            online: Arc::default(),
            retained_tx,
            retained_rx: Arc::new(Mutex::new(Some(retained_rx))),
            last_full_log: Arc::default(),
        }
    }

    /// The retained changes, for the one consumer that persists them (once).
    pub fn take_retained_changes(&self) -> Option<mpsc::Receiver<RetainedChange>> {
        self.retained_rx.lock().take()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<BrokerEvent> {
        self.sender.subscribe()
    }

    /// Devices online now, for a `$devices` snapshot.
    pub fn online_devices(&self) -> Vec<DeviceInfo> {
        self.online.lock().values().cloned().collect()
    }

    /// How many devices are online now.
    pub fn online_count(&self) -> usize {
        self.online.lock().len()
    }

    pub(crate) fn device_online(&self, info: DeviceInfo) {
        self.online
            .lock()
            .insert(info.client_id.clone(), info.clone());
        let _ = self.sender.send(BrokerEvent::DeviceOnline(info));
    }

    pub(crate) fn device_offline(&self, client_id: &Arc<str>, reason: OfflineReason) {
        self.online.lock().remove(client_id);
        let _ = self.sender.send(BrokerEvent::DeviceOffline {
            client_id: client_id.clone(),
            reason,
        });
    }

    /// Queues a retained change without waiting; when the queue is full it is
    /// dropped, counted and logged (the router still serves it, but it is not on
    /// disk after a restart). For rare writers: wills, admin deletes.
    pub fn retained_changed(
        &self,
        topic: Bytes,
        payload: Bytes,
        qos: u8,
        expiry_secs: Option<u32>,
    ) {
        let change = RetainedChange {
            topic,
            payload,
            qos,
            expiry_secs,
        };
        if let Err(mpsc::error::TrySendError::Full(change)) = self.retained_tx.try_send(change) {
            self.queue_full(&change);
        }
    }

    /// Queues a retained change, waiting up to `patience` for room: a client
    /// publishing retained messages faster than the disk takes them is slowed down
    /// (only that client). Past `patience` the change is dropped, counted and logged.
    pub async fn queue_retained(&self, change: RetainedChange, patience: Duration) {
        if let Err(mpsc::error::SendTimeoutError::Timeout(change)) =
            self.retained_tx.send_timeout(change, patience).await
        {
            self.queue_full(&change);
        }
    }

    fn queue_full(&self, change: &RetainedChange) {
        metrics::counter!("switchboard_store_queue_full_total").increment(1);
        // One line per second at most: a full queue under a flood must not flood the log.
        let now = now_ms();
        let last = self.last_full_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_full_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                topic = %String::from_utf8_lossy(&change.topic),
                "retained write queue full ([storage] write_queue): changes are dropped and will not survive a restart (see switchboard_store_queue_full_total)"
            );
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
