//! Switchboard's browser side: the HTTP server on `[http] listen` with the rooms
//! protocol at `/ws`, health, readiness and Prometheus metrics.
//!
//! Start-up: [`Bridge::start`] registers the hub as an in-process subscriber of the
//! routing core and follows the edge's event feed; [`HttpServer::bind`] then
//! [`HttpServer::serve`] expose it.

mod accept;
mod admin;
mod assets;
mod devices;
mod frames;
mod grant;
mod history;
mod http;
mod hub;
mod joined;
mod live_vitals;
mod message;
mod msgpack;
mod outbound;
mod request;
mod retained;
mod room_index;
mod rooms;
mod session;
mod socket;
mod sockets;
mod sse;
mod state;
pub mod store;
mod subscriber;
mod token_stage;
pub mod topic;
mod upgrade;
pub mod vitals;
mod written;

use std::sync::Arc;

use switchboard_broker::auth::AuthState;
use switchboard_broker::router::Router;
use switchboard_broker::{EventFeed, Supervisor};
use switchboard_config::Config;
use tokio::sync::{watch, Semaphore};

pub use frames::JSON_SUBPROTOCOL;
pub use http::HttpServer;
pub use state::HttpState;

use hub::Hub;
use retained::RetainedView;
use sockets::OpenSockets;
use store::{spawn_writer, RetainedStore, StoreWriter};
use subscriber::CorePublisher;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("http listener: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("bridge: {0}")]
    Store(String),
    #[error("http listener: {0}")]
    Tls(String),
}

/// What every browser connection shares.
#[derive(Clone)]
pub struct BridgeState {
    hub: Arc<Hub>,
    publisher: CorePublisher,
    events: EventFeed,
    connections: Arc<Semaphore>,
    auth: Arc<AuthState>,
    /// Open `/ws` connections, closed together at shutdown.
    sockets: Arc<OpenSockets>,
    shutdown: watch::Receiver<bool>,
}

pub struct Bridge {
    state: BridgeState,
    store: Arc<dyn RetainedStore>,
    writer: Option<StoreWriter>,
    /// Tells the writer to drain and flush; sent by [`Bridge::finish`], after the MQTT
    /// connections (which may still publish retained messages) have ended.
    stop_writer: watch::Sender<bool>,
}

impl Bridge {
    /// Subscribes the hub to the core, follows the edge's events, and starts the
    /// writer that persists retained changes to `store`. Call inside the runtime,
    /// after the core's retained index is loaded, before MQTT listeners open.
    pub fn start(
        config: Arc<Config>,
        router: Arc<Router>,
        events: EventFeed,
        store: Arc<dyn RetainedStore>,
        auth: Arc<AuthState>,
        shutdown: watch::Receiver<bool>,
        supervisor: &Supervisor,
    ) -> Result<Bridge, BridgeError> {
        let view = Arc::new(RetainedView::new(router.retained().clone()));
        let saved = store
            .take_history()
            .map_err(|e| BridgeError::Store(e.to_string()))?;
        let hub = Arc::new(Hub::new(
            config.clone(),
            events.clone(),
            view.clone(),
            saved,
        ));
        let publisher = subscriber::start(hub.clone(), router, events.clone(), supervisor);
        let (stop_writer, writer_stop) = watch::channel(false);
        let writer = events.take_retained_changes().map(|changes| {
            let flush_every = std::time::Duration::from_millis(config.storage.flush_ms);
            spawn_writer(supervisor, store.clone(), changes, flush_every, writer_stop)
        });
        let sockets = Arc::new(OpenSockets::default());
        let mut stopping = shutdown.clone();
        let to_close = sockets.clone();
        tokio::spawn(async move {
            if stopping.wait_for(|stop| *stop).await.is_ok() {
                to_close.close_all();
            }
        });
        Ok(Bridge {
            state: BridgeState {
                hub,
                publisher,
                events,
                connections: Arc::new(Semaphore::new(config.bridge.max_connections)),
                auth,
                sockets,
                shutdown,
            },
            store,
            writer,
            stop_writer,
        })
    }

    /// At shutdown, after the browsers were told (1001): waits up to `within` until
    /// their sockets closed, so none is cut off before its close frame. False when
    /// some were still open.
    pub async fn browsers_closed(&self, within: std::time::Duration) -> bool {
        self.state.sockets.all_closed(within).await
    }

    /// Waits until every retained change accepted before shutdown is on disk, then
    /// saves the history log so the next start continues its epoch.
    pub async fn finish(self) {
        let _ = self.stop_writer.send(true);
        if let Some(writer) = self.writer {
            writer.finished().await;
        }
        let saved = self.state.hub.saved_history();
        let count = saved.records.len();
        let store = self.store;
        match tokio::task::spawn_blocking(move || store.save_history(&saved)).await {
            Ok(Ok(())) => tracing::info!(messages = count, "history saved"),
            Ok(Err(e)) => tracing::error!("could not save the history: {e}"),
            Err(e) => tracing::error!("history save failed: {e}"),
        }
    }

    pub fn state(&self) -> BridgeState {
        self.state.clone()
    }
}
