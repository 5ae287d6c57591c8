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

/// Why a connection is told to end from outside.
#[derive(Debug)]
pub enum Kick {
    /// Another connection claimed the same client id; it waits until this sender is
    /// dropped (keep it in [`SessionClaim::finished`]).
    TakenOver(oneshot::Sender<()>),
    /// The server is shutting down.
    Shutdown,
}

struct Holder {
    generation: u64,
    /// Taken when used: a connection is kicked once.
    kick: Option<oneshot::Sender<Kick>>,
}

#[derive(Default)]
struct Holders {
    by_client_id: HashMap<Arc<str>, Holder>,
    /// Set at shutdown: later claims are kicked at once.
    closing: bool,
}

#[derive(Default)]
pub struct Sessions {
    holders: Mutex<Holders>,
    delayed_wills: Mutex<HashMap<String, AbortHandle>>,
    generations: AtomicU64,
}

/// A connection's hold on its client id. Dropping it releases the id and tells a
/// connection waiting to take over that this one has finished.
pub struct SessionClaim {
    sessions: Arc<Sessions>,
    client_id: Arc<str>,
    generation: u64,
    /// Resolves when the connection must end: taken over, or the server is stopping.
    pub kicked: oneshot::Receiver<Kick>,
    /// Held until the claim drops: tells the connection taking over that this one
    /// has finished.
    pub finished: Option<oneshot::Sender<()>>,
}

impl Sessions {
    /// Claims `client_id`: ends the connection holding it (session takeover) and
    /// cancels a will still waiting for its delay. Returns whether there was a holder.
    pub async fn claim(self: &Arc<Self>, client_id: &Arc<str>) -> (SessionClaim, bool) {
        if let Some(pending) = self.delayed_wills.lock().remove(&**client_id) {
            pending.abort();
        }
        let (kick, kicked) = oneshot::channel();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let previous = {
            let mut holders = self.holders.lock();
            if holders.closing {
                let _ = kick.send(Kick::Shutdown);
                None
            } else {
                holders.by_client_id.insert(
                    client_id.clone(),
                    Holder {
                        generation,
                        kick: Some(kick),
                    },
                )
            }
        };
        let took_over = previous.is_some();
        if let Some(previous) = previous {
            if let Some(kick) = previous.kick {
                let (finished, done) = oneshot::channel();
                if kick.send(Kick::TakenOver(finished)).is_ok() {
                    let _ = tokio::time::timeout(TAKEOVER_WAIT, done).await;
                }
            }
        }
        let claim = SessionClaim {
            sessions: self.clone(),
            client_id: client_id.clone(),
            generation,
            kicked,
            finished: None,
        };
        (claim, took_over)
    }

    /// Tells every connection, and every one that claims an id from now on, to end.
    pub fn kick_all(&self) {
        let mut holders = self.holders.lock();
        holders.closing = true;
        for kick in holders
            .by_client_id
            .values_mut()
            .filter_map(|h| h.kick.take())
        {
            let _ = kick.send(Kick::Shutdown);
        }
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
            .by_client_id
            .get(&self.client_id)
            .is_some_and(|h| h.generation == self.generation)
        {
            holders.by_client_id.remove(&self.client_id);
        }
    }
}
