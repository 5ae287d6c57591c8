//! Switchboard's MQTT side: our own network edge (TCP, TLS, WebSocket, secure
//! WebSocket; MQTT 3.1.1 and 5 on every port) on Switchboard's routing core
//! (`switchboard-router`), speaking rumqttd's v4/v5 codecs.
//!
//! Start-up order: [`Broker::start`] creates the core; the caller may then load
//! retained messages into [`Broker::router`]'s retained index; [`Broker::bind`]
//! binds every listener (an address in use is an error naming the listener);
//! [`Broker::serve`] starts accepting; [`Broker::shutdown`] stops accepting, ends
//! every connection and waits for them within a grace period.

pub mod auth;
mod codec;
mod connect;
mod connection;
mod establish;
pub mod events;
mod inbound;
mod listener;
pub mod origin;
mod outbound;
pub mod packet;
mod per_ip;
mod presence;
mod publish_wire;
pub mod rate;
pub mod repeats;
mod sessions;
mod subscribe;
pub mod supervisor;
mod sys;
pub mod tls;
mod transport;
pub mod watched;
mod will;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchboard_config::{Config, Listen};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{info, warn};

pub use events::{BrokerEvent, DeviceInfo, EventFeed, OfflineReason, RetainedChange};
pub use listener::{BoundListener, ListenerKind, MQTT_WS_PATH};
pub use supervisor::{Supervisor, TaskDone, TaskFailure};
pub use switchboard_router as router;

use listener::{accept_loop, AcceptContext};
use sessions::Sessions;
use switchboard_router::{Limits, QueueLimits, RetainedIndex, Router};

/// Client ids starting with this are reserved for Switchboard's own use.
pub const INTERNAL_ID_PREFIX: &str = "switchboard-internal-";

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{listener} listener: cannot listen on {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {path}: {message}")]
    Tls { path: PathBuf, message: String },
}

/// What every connection task shares.
pub struct Edge {
    pub(crate) config: Arc<Config>,
    pub(crate) auth: Arc<auth::AuthState>,
    pub(crate) router: Arc<Router>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) events: EventFeed,
    pub(crate) supervisor: Supervisor,
    /// Packet counters per listener label.
    counters: Vec<(&'static str, Arc<connection::PacketCounters>)>,
}

impl Edge {
    /// Whether the listener with this label is bound to a loopback address.
    pub(crate) fn loopback(&self, listener: &str) -> bool {
        let config = &self.config;
        let listen = match listener {
            "tcp" => config.mqtt.tcp.clone(),
            "tls" => config.tls_listen(),
            "ws" => config.mqtt.ws.clone(),
            "wss" => config.wss_listen(),
            _ => return false,
        };
        listen.addr().is_some_and(|addr| addr.ip().is_loopback())
    }

    pub(crate) fn packet_counters(
        &self,
        listener: &'static str,
    ) -> Arc<connection::PacketCounters> {
        self.counters
            .iter()
            .find(|(label, _)| *label == listener)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| connection::PacketCounters::for_listener(listener))
    }
}

pub struct Broker {
    edge: Arc<Edge>,
    shutdown: watch::Sender<bool>,
    alive_tx: mpsc::Sender<()>,
    alive_rx: mpsc::Receiver<()>,
}

impl Broker {
    /// Creates the routing core and its housekeeping tasks (session expiry, `$SYS`).
    /// Call inside the runtime.
    pub fn start(
        config: Arc<Config>,
        auth: Arc<auth::AuthState>,
        supervisor: Supervisor,
    ) -> Broker {
        let mqtt = &config.mqtt;
        let limits = Limits {
            queue: QueueLimits {
                max_messages: mqtt.max_queued_messages,
                max_bytes: mqtt.max_queued_bytes.as_usize(),
            },
            max_sessions: mqtt.max_sessions,
        };
        let router = Arc::new(Router::new(limits, Arc::new(RetainedIndex::default())));
        let events = EventFeed::new(config.storage.write_queue);
        supervisor.spawn(
            "housekeeping",
            sys::housekeeping(router.clone(), config.clone(), events.clone()),
        );
        let (shutdown, _) = watch::channel(false);
        let (alive_tx, alive_rx) = mpsc::channel(1);
        let edge = Arc::new(Edge {
            config,
            auth,
            router,
            sessions: Arc::default(),
            events,
            supervisor,
            counters: [
                ListenerKind::Tcp,
                ListenerKind::Tls,
                ListenerKind::Ws,
                ListenerKind::Wss,
            ]
            .iter()
            .map(|k| {
                (
                    k.label(),
                    connection::PacketCounters::for_listener(k.label()),
                )
            })
            .collect(),
        });
        Broker {
            edge,
            shutdown,
            alive_tx,
            alive_rx,
        }
    }

    /// The routing core (the browser bridge subscribes to it; start-up loads the
    /// retained index).
    pub fn router(&self) -> Arc<Router> {
        self.edge.router.clone()
    }

    /// Device presence and retained changes seen at the edge.
    pub fn events(&self) -> EventFeed {
        self.edge.events.clone()
    }

    /// Binds every configured MQTT listener, or fails naming the one that could not.
    pub async fn bind(&self) -> Result<Vec<BoundListener>, BrokerError> {
        let config = &self.edge.config;
        let secure_wanted = [config.tls_listen(), config.wss_listen()]
            .iter()
            .any(|l| l.addr().is_some());
        let acceptor = if secure_wanted {
            let clients = config.tls.client_ca.as_deref().map(|ca| tls::ClientCerts {
                ca,
                required: config.tls.require_client_cert,
            });
            Some(tls::acceptor(&config.tls.cert, &config.tls.key, clients)?)
        } else {
            None
        };
        let plan: [(ListenerKind, Listen); 4] = [
            (ListenerKind::Tcp, config.mqtt.tcp.clone()),
            (ListenerKind::Tls, config.tls_listen()),
            (ListenerKind::Ws, config.mqtt.ws.clone()),
            (ListenerKind::Wss, config.wss_listen()),
        ];
        let mut bound = Vec::new();
        for (kind, listen) in plan {
            let Some(addr) = listen.addr() else { continue };
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| BrokerError::Bind {
                    listener: kind.label(),
                    addr,
                    source,
                })?;
            let tls = matches!(kind, ListenerKind::Tls | ListenerKind::Wss)
                .then(|| acceptor.clone())
                .flatten();
            bound.push(BoundListener {
                kind,
                listener,
                tls,
            });
        }
        Ok(bound)
    }

    /// Starts accepting on every bound listener.
    pub fn serve(&self, listeners: Vec<BoundListener>) {
        let mqtt = &self.edge.config.mqtt;
        let ctx = AcceptContext {
            edge: self.edge.clone(),
            connections: Arc::new(Semaphore::new(mqtt.max_connections)),
            refusals: Arc::new(Semaphore::new(mqtt.max_refusals_in_flight)),
            per_ip: Arc::new(per_ip::PerIp::new(
                mqtt.max_connections_per_ip,
                mqtt.max_connect_rate_per_ip,
            )),
            shutdown: self.shutdown.subscribe(),
            alive: self.alive_tx.clone(),
        };
        for bound in listeners {
            if let Some(addr) = bound.local_addr() {
                let scheme = match bound.kind {
                    ListenerKind::Ws | ListenerKind::Wss => MQTT_WS_PATH,
                    _ => "",
                };
                let loopback = addr.ip().is_loopback();
                let auth = self.edge.auth.current();
                let tls = &self.edge.config.tls;
                let certificates = match (bound.kind, &tls.client_ca, tls.require_client_cert) {
                    (ListenerKind::Tls | ListenerKind::Wss, Some(_), true) => {
                        " — only clients with a certificate from tls.client_ca (its CN as username)"
                    }
                    (ListenerKind::Tls | ListenerKind::Wss, Some(_), false) => {
                        "; or by a certificate from tls.client_ca (its CN as username)"
                    }
                    _ => "",
                };
                info!(
                    listener = bound.kind.label(),
                    "MQTT listening on {addr}{scheme}: {}{certificates}",
                    auth.describe_listener(loopback)
                );
                if auth.anonymous_exposed(loopback) {
                    warn!(
                        listener = bound.kind.label(),
                        "anonymous clients may connect on {addr}, beyond loopback ([auth] allow_anonymous = true): anyone who reaches it may read and publish"
                    );
                }
            }
            let task = match bound.kind {
                ListenerKind::Tcp => "mqtt tcp listener",
                ListenerKind::Tls => "mqtt tls listener",
                ListenerKind::Ws => "mqtt ws listener",
                ListenerKind::Wss => "mqtt wss listener",
            };
            self.edge
                .supervisor
                .spawn(task, accept_loop(bound, ctx.clone()));
        }
    }

    /// Stops accepting, ends every connection (v5 clients get "server shutting
    /// down"), and waits for them up to `grace`.
    pub async fn shutdown(self, grace: Duration) {
        let Broker {
            edge,
            shutdown,
            alive_tx,
            mut alive_rx,
            ..
        } = self;
        let _ = shutdown.send(true);
        edge.sessions.kick_all();
        drop(alive_tx);
        if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
            warn!("some MQTT connections were still closing after {grace:?}");
        }
    }
}
