//! Which connection holds each client id, so a new CONNECT with the same id takes the
//! session over cleanly, and the wills waiting for their delay to pass.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

/// How long a new connection waits for the one it takes over to finish.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

struct Holder {
    generation: u64,
    kick: oneshot::Sender<()>,
    done: oneshot::Receiver<()>,
}

#[derive(Default)]
pub struct Sessions {
    holders: Mutex<HashMap<String, Holder>>,
    delayed_wills: Mutex<HashMap<String, AbortHandle>>,
    generations: AtomicU64,
}

/// A connection's hold on its client id. Dropping it releases the id and tells a
/// connection waiting to take over that this one has finished.
pub struct SessionClaim {
    sessions: Arc<Sessions>,
    client_id: String,
    generation: u64,
    /// Resolves when another connection takes this client id over.
    pub taken_over: oneshot::Receiver<()>,
    _done: oneshot::Sender<()>,
}

impl Sessions {
    /// Claims `client_id`: ends the connection holding it (session takeover) and
    /// cancels a will still waiting for its delay. Returns whether there was a holder.
    pub async fn claim(self: &Arc<Self>, client_id: &str) -> (SessionClaim, bool) {
        if let Some(pending) = self.delayed_wills.lock().remove(client_id) {
            pending.abort();
        }
        let (kick, taken_over) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let previous = self.holders.lock().insert(
            client_id.to_string(),
            Holder {
                generation,
                kick,
                done,
            },
        );
        let took_over = previous.is_some();
        if let Some(previous) = previous {
            let _ = previous.kick.send(());
            let _ = tokio::time::timeout(TAKEOVER_WAIT, previous.done).await;
        }
        let claim = SessionClaim {
            sessions: self.clone(),
            client_id: client_id.to_string(),
            generation,
            taken_over,
            _done: done_tx,
        };
        (claim, took_over)
    }

    /// Wills waiting for their delay now.
    pub fn delayed_will_count(&self) -> usize {
        self.delayed_wills.lock().len()
    }

    /// Runs `publish` after `delay` unless `client_id` connects again first.
    pub fn schedule_will<F>(self: &Arc<Self>, client_id: &str, delay: Duration, publish: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let sessions = self.clone();
        let id = client_id.to_string();
        let mut wills = self.delayed_wills.lock();
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            sessions.delayed_wills.lock().remove(&id);
            publish.await;
        });
        if let Some(replaced) = wills.insert(client_id.to_string(), task.abort_handle()) {
            replaced.abort();
        }
    }
}

impl Drop for SessionClaim {
    fn drop(&mut self) {
        let mut holders = self.sessions.holders.lock();
        if holders
            .get(&self.client_id)
            .is_some_and(|h| h.generation == self.generation)
        {
            holders.remove(&self.client_id);
        }
    }
}
