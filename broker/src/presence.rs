//! Device presence for one connection: the online event and log line when it is
//! made, the offline event when it is finished (also if the task panics, with reason
//! `error`), after everything the device published has been routed.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics::{counter, gauge};
use tracing::info;

use crate::establish::Accepted;
use crate::events::{now_ms, DeviceInfo, OfflineReason};
use crate::Edge;

pub(crate) struct Presence {
    edge: Arc<Edge>,
    client_id: Arc<str>,
    pub listener: &'static str,
    reason: Option<OfflineReason>,
}

impl Presence {
    pub fn online(
        edge: &Arc<Edge>,
        accepted: &Accepted,
        listener: &'static str,
        peer: SocketAddr,
        took_over: bool,
    ) -> Presence {
        gauge!("switchboard_mqtt_connections", "listener" => listener).increment(1.0);
        counter!("switchboard_mqtt_connections_total", "listener" => listener).increment(1);
        if crate::repeats::allow("client connected") {
            info!(
                client_id = %accepted.client_id,
                %peer,
                listener,
                protocol = accepted.version.label(),
                keep_alive = accepted.keep_alive,
                clean_start = accepted.clean_start,
                took_over,
                "client connected"
            );
        }
        edge.events.device_online(DeviceInfo {
            client_id: accepted.client_id.clone(),
            username: accepted.username.clone(),
            since_ms: now_ms(),
            listener,
        });
        Presence {
            edge: edge.clone(),
            client_id: accepted.client_id.clone(),
            listener,
            reason: None,
        }
    }

    pub fn offline(mut self, reason: OfflineReason) {
        self.reason = Some(reason);
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        gauge!("switchboard_mqtt_connections", "listener" => self.listener).decrement(1.0);
        let reason = self.reason.unwrap_or(OfflineReason::Error);
        self.edge.events.device_offline(&self.client_id, reason);
    }
}
