//! Switchboard's browser side: the HTTP server on `[http] listen` with the rooms
//! protocol at `/ws`, health, readiness and Prometheus metrics.
//!
//! Start-up: [`Bridge::start`] opens the bridge's link to the router (subscribed to
//! `#`) and follows the edge's event feed; [`HttpServer::bind`] then
//! [`HttpServer::serve`] expose it.

mod history;
mod http;
mod hub;
mod message;
mod outbound;
mod protocol;
mod pump;
mod retained;
mod room_index;
mod rooms;
mod topic;
mod ws;

use std::sync::Arc;

use switchboard_broker::{EventFeed, LinkFactory};
use switchboard_config::Config;
use tokio::sync::{watch, Semaphore};

pub use http::{HttpServer, HttpState};
pub use protocol::JSON_SUBPROTOCOL;

use hub::Hub;
use pump::RouterPublisher;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("http listener: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("bridge: {0}")]
    Link(String),
}

/// What every browser connection shares.
#[derive(Clone)]
pub struct BridgeState {
    hub: Arc<Hub>,
    publisher: RouterPublisher,
    connections: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

pub struct Bridge {
    state: BridgeState,
}

impl Bridge {
    /// Opens the bridge link and starts following the router and the edge's events.
    /// Call inside the runtime, before MQTT listeners open.
    pub fn start(
        config: Arc<Config>,
        links: LinkFactory,
        events: EventFeed,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Bridge, BridgeError> {
        let hub = Arc::new(Hub::new(config.clone(), events.clone()));
        let publisher = pump::start(hub.clone(), links, events).map_err(BridgeError::Link)?;
        Ok(Bridge {
            state: BridgeState {
                hub,
                publisher,
                connections: Arc::new(Semaphore::new(config.bridge.max_connections)),
                shutdown,
            },
        })
    }

    pub fn state(&self) -> BridgeState {
        self.state.clone()
    }
}
