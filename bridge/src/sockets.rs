//! Every open browser WebSocket's queue, so shutdown can close them all (1001).

use std::collections::HashMap;
use std::sync::Arc;

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
}

impl OpenSockets {
    pub fn add(&self, conn: ConnId, queue: &Arc<OutboundQueue>) {
        let mut inner = self.inner.lock();
        if inner.closing {
            drop(inner);
            queue.close(close_code::GOING_AWAY, SHUTTING_DOWN);
            return;
        }
        inner.queues.insert(conn, queue.clone());
    }

    pub fn remove(&self, conn: ConnId) {
        self.inner.lock().queues.remove(&conn);
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
