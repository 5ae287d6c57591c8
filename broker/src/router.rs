//! The embedded rumqttd router, configured from our config, and the factory every
//! part of Switchboard uses to open links to it.

use std::sync::Arc;

use crate::pacing::Pacing;

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Notification, Router};
use switchboard_config::Config;

/// Links the router accepts beyond `mqtt.max_connections`: internal links (wills,
/// retained restore) and the browser bridge.
pub const INTERNAL_LINK_ALLOWANCE: usize = 1024;

/// Client ids starting with this are reserved for Switchboard's own links.
pub const INTERNAL_ID_PREFIX: &str = "switchboard-internal-";

pub type LinkParts = (LinkTx, LinkRx, Notification);

type OpenFn = dyn Fn(&str, bool) -> Result<LinkParts, LinkOpenError> + Send + Sync;
type BacklogFn = dyn Fn() -> usize + Send + Sync;

/// The router would not open a link (rumqttd's reason, as text).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LinkOpenError(pub String);

/// Opens links to the router. Cheap to clone.
///
/// The router's sender has a type we cannot name (its event type is private), so it
/// lives inside these closures, created where the router is spawned.
#[derive(Clone)]
pub struct LinkFactory {
    open: Arc<OpenFn>,
    backlog: Arc<BacklogFn>,
    pacing: Arc<Pacing>,
}

impl LinkFactory {
    /// Opens a link, blocking the calling thread until the router answers. From async
    /// code use [`LinkFactory::open`].
    pub fn open_blocking(
        &self,
        client_id: &str,
        clean_session: bool,
    ) -> Result<LinkParts, LinkOpenError> {
        (self.open)(client_id, clean_session)
    }

    /// Opens a link on the blocking pool: the router's channel is synchronous.
    pub async fn open(
        &self,
        client_id: String,
        clean_session: bool,
    ) -> Result<LinkParts, LinkOpenError> {
        let factory = self.clone();
        tokio::task::spawn_blocking(move || factory.open_blocking(&client_id, clean_session))
            .await
            .unwrap_or_else(|e| Err(LinkOpenError(format!("link task failed: {e}"))))
    }

    /// Events waiting in the router's inbound channel (1000 slots). Near full means
    /// a send may block.
    pub fn router_backlog(&self) -> usize {
        (self.backlog)()
    }

    /// How far forwarding is behind what publishers handed the router.
    pub fn pacing(&self) -> &Pacing {
        &self.pacing
    }
}

/// Starts the router thread configured from `config`.
pub fn spawn_router(config: &Config) -> LinkFactory {
    let router_config = rumqttd::RouterConfig {
        max_connections: config.mqtt.max_connections + INTERNAL_LINK_ALLOWANCE,
        max_outgoing_packet_count: config.router.max_outgoing_batch,
        max_segment_size: config.router.segment_size.as_usize(),
        max_segment_count: config.router.segment_count,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let router_tx = Router::new(0, router_config).spawn();
    let backlog_tx = router_tx.clone();
    LinkFactory {
        open: Arc::new(move |client_id, clean_session| {
            rumqttd::local::LinkBuilder::new(client_id, router_tx.clone())
                .clean_session(clean_session)
                .build()
                .map_err(|e| LinkOpenError(e.to_string()))
        }),
        backlog: Arc::new(move || backlog_tx.len()),
        pacing: Arc::new(Pacing::new(
            config.router.pace_after,
            config.router.pace_on_loss,
        )),
    }
}
