//! Packets to the client: what the session has for it (messages within its Receive
//! Maximum, retained pages, PUBRELs), acknowledgements, and the end of the
//! connection, written in batches.

use std::time::{Duration, Instant};

use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet, PubRel, PubRelReason};
use switchboard_router::Outbound;
use tracing::{debug, warn};

use crate::connection::{Connection, End, WRITE_BATCH};
use crate::packet::Version;
use crate::publish_wire::{encode_publish, PublishHeader};
use crate::transport::MqttIo;

/// Packets taken from the session per step.
const TAKE: usize = 256;

impl<I: MqttIo> Connection<I> {
    /// Writes everything the session may send now.
    pub(crate) async fn send_outbound(&mut self) -> Result<(), End> {
        let Some(session) = self.opened_session() else {
            return self.flush().await.map_err(|e| End::Io(e.to_string()));
        };
        let retained = self.edge.router.retained().clone();
        while session.has_sendable() {
            let mut batch = Vec::new();
            session.take_outbound(&retained, &mut batch, TAKE);
            if batch.is_empty() {
                // Only retained pages with nothing in them this step (subscriptions
                // without retained messages): let other tasks run, then go on.
                tokio::task::yield_now().await;
                continue;
            }
            let now = Instant::now();
            for item in batch.drain(..) {
                self.encode_outbound(item, now);
            }
            if self.out.len() >= WRITE_BATCH {
                self.flush().await.map_err(|e| End::Io(e.to_string()))?;
            }
        }
        self.flush().await.map_err(|e| End::Io(e.to_string()))
    }

    /// Messages in flight when the last connection ended go again, first.
    pub(crate) fn resend_inflight(&mut self) {
        let mut batch = Vec::new();
        if let Some(session) = self.opened_session() {
            session.resend_inflight(&mut batch);
        }
        let now = Instant::now();
        for item in batch {
            self.encode_outbound(item, now);
        }
    }

    /// Encodes one packet from the session. A PUBLISH that expired, or that is
    /// larger than the client's Maximum Packet Size (MQTT 5 §3.1.2.11.4), is not
    /// sent and its QoS 1/2 exchange is completed here.
    fn encode_outbound(&mut self, item: Outbound, now: Instant) {
        match item {
            Outbound::PubRel { pkid } => self.encode(Packet::PubRel(
                PubRel {
                    pkid,
                    reason: PubRelReason::Success,
                },
                None,
            )),
            Outbound::Publish {
                pkid,
                dup,
                delivery,
            } => {
                let header = PublishHeader {
                    qos: delivery.qos,
                    pkid,
                    dup,
                };
                // A wildcard subscription broader than the client's read grant (or
                // rights that shrank on reload): what it may not read is not sent.
                if !self
                    .access
                    .rights(&self.edge.auth)
                    .may_read(&delivery.message.topic)
                {
                    if let (true, Some(session)) = (delivery.qos > 0, self.opened_session()) {
                        session.complete(pkid);
                    }
                    return;
                }
                let start = self.out.len();
                let version = self.codec.version();
                let written = encode_publish(&delivery, &header, version, now, &mut self.out);
                let fits = match (written, self.client_max_packet) {
                    (None, _) => false,
                    (Some(size), Some(max)) if size > max => {
                        self.out.truncate(start);
                        debug!(client_id = %self.client_id, size, max, "dropped a PUBLISH over the client's Maximum Packet Size");
                        false
                    }
                    _ => true,
                };
                if fits {
                    self.counters.packets_out.increment(1);
                    self.edge.router.stats.sent(delivery.message.payload.len());
                } else if let (true, Some(session)) = (delivery.qos > 0, self.opened_session()) {
                    session.complete(pkid);
                }
            }
        }
    }

    /// Encodes a packet into the write buffer.
    pub(crate) fn encode(&mut self, packet: Packet) {
        let start = self.out.len();
        match self.codec.write(packet, &mut self.out) {
            Ok(0) => {}
            Ok(_) => self.counters.packets_out.increment(1),
            Err(e) => {
                self.out.truncate(start);
                warn!(client_id = %self.client_id, "could not encode a packet for the client: {e}");
            }
        }
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.io.write_bytes(&self.out).await;
        if result.is_ok() {
            self.counters.bytes_out.increment(self.out.len() as u64);
        }
        self.out.clear();
        if self.out.capacity() > 4 * WRITE_BATCH {
            self.out = bytes::BytesMut::new();
        }
        result
    }

    /// Ends the connection: a v5 DISCONNECT where we ended it, the socket closed.
    pub(crate) async fn finish(&mut self, end: &End) {
        let reason = match end {
            End::TakenOver => Some(DisconnectReasonCode::SessionTakenOver),
            End::Shutdown => Some(DisconnectReasonCode::ServerShuttingDown),
            End::KeepAlive => Some(DisconnectReasonCode::KeepAliveTimeout),
            End::Violation(code, _) => Some(*code),
            _ => None,
        };
        if let Some(reason_code) = reason {
            if self.codec.version() == Version::V5 {
                self.encode(Packet::Disconnect(Disconnect { reason_code }, None));
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.close()).await;
    }
}
