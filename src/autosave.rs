//! Persistent MQTT sessions to the store: every `[storage] autosave_interval` and
//! once more at shutdown, after the last connection has ended.

use std::sync::Arc;
use std::time::Duration;

use switchboard_bridge::store::RetainedStore;
use switchboard_broker::router::Router;
use switchboard_broker::Supervisor;
use tracing::{debug, error, info};

/// Starts the periodic save (none when `every_secs` is 0).
pub fn spawn(
    supervisor: &Supervisor,
    router: Arc<Router>,
    store: Arc<dyn RetainedStore>,
    every_secs: u64,
) {
    if every_secs == 0 {
        return;
    }
    supervisor.spawn("session autosave", async move {
        let mut tick = tokio::time::interval(Duration::from_secs(every_secs));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Some(count) = save(&router, &store).await {
                debug!(sessions = count, "persistent sessions saved");
            }
        }
    });
}

/// The final save at shutdown.
pub async fn save_at_shutdown(router: &Arc<Router>, store: &Arc<dyn RetainedStore>) {
    if let Some(count) = save(router, store).await {
        info!(sessions = count, "persistent sessions saved");
    }
}

async fn save(router: &Arc<Router>, store: &Arc<dyn RetainedStore>) -> Option<usize> {
    let (router, store) = (router.clone(), store.clone());
    let saved = tokio::task::spawn_blocking(move || {
        let sessions = router.snapshot_sessions();
        store.save_sessions(&sessions).map(|()| sessions.len())
    })
    .await;
    match saved {
        Ok(Ok(count)) => Some(count),
        Ok(Err(e)) => {
            error!("could not save the persistent sessions: {e}");
            None
        }
        Err(e) => {
            error!("saving the persistent sessions failed: {e}");
            None
        }
    }
}
