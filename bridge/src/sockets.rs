//! Every open browser WebSocket's queue, so shutdown can close them all (1001) and
//! wait until their close frames are out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::hub::ConnId;
use crate::outbound::{close_code, OutboundQueue};

const SHUTTING_DOWN: &str = "server shutting down";

#[derive(Default)]
pub struct OpenSockets {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    queues: HashMap<ConnId, Arc<OutboundQueue>>,
    /// Set at shutdown: a connection opened later is closed at once.
    closing: bool,
    /// Connections added and not yet removed (their tasks still run).
    open: usize,
}

impl OpenSockets {
    /// Every `add` is matched by one `remove` when the connection's task ends.
    pub fn add(&self, conn: ConnId, queue: &Arc<OutboundQueue>) {
        let mut inner = self.inner.lock();
        inner.open += 1;
        if inner.closing {
            drop(inner);
            queue.close(close_code::GOING_AWAY, SHUTTING_DOWN);
            return;
        }
        inner.queues.insert(conn, queue.clone());
    }

    pub fn remove(&self, conn: ConnId) {
        let mut inner = self.inner.lock();
        inner.queues.remove(&conn);
        inner.open = inner.open.saturating_sub(1);
    }

    /// After `close_all`: waits until every connection's task has ended (its close
    /// frame written, the closing handshake done or timed out), at most `within`.
    /// True when all did.
    pub async fn all_closed(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.inner.lock().open == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes every open connection with "going away", and any opened from now on.
    pub fn close_all(&self) {
        let queues: Vec<Arc<OutboundQueue>> = {
            let mut inner = self.inner.lock();
            inner.closing = true;
            inner.queues.drain().map(|(_, queue)| queue).collect()
        };
        for queue in queues {
            queue.close(close_code::GOING_AWAY, SHUTTING_DOWN);
        }
    }
}
