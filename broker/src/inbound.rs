//! Packets from the client: each whole packet in the read buffer is decoded and
//! applied to the core at once (PUBLISH routed in this task; SUBSCRIBE and
//! UNSUBSCRIBE in subscribe.rs), acknowledgements batched into one write.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::{
    DisconnectReasonCode, Packet, PingResp, PubAck, PubAckReason, PubComp, PubCompReason, PubRec,
    PubRecReason, PubRel, PubRelReason, Publish, PublishProperties,
};
use switchboard_router::topic::check_topic_name;
use switchboard_router::{Expiry, IncomingQos2, Message, MessageProperties};
use tracing::debug;

use crate::connection::{violation, Connection, End, PACKET_OVERHEAD};
use crate::events::RetainedChange;
use crate::packet::{client_may_send, fixed_header, kind, publish_qos_and_pkid, Version};
use crate::transport::MqttIo;

impl<I: MqttIo> Connection<I> {
    fn max_payload(&self) -> usize {
        self.edge.config.mqtt.max_payload.as_usize()
    }

    fn max_remaining(&self) -> usize {
        self.max_payload() + PACKET_OVERHEAD
    }

    /// Applies the whole packets in `buf` — stopping early, with the rest left in
    /// `buf`, once a subscriber they went to is over its bound — then writes the
    /// answers and queues the retained changes for the store.
    pub(crate) async fn take_incoming(&mut self, buf: &mut BytesMut) -> Result<(), End> {
        let mut result = Ok(());
        while self.congested.is_empty() {
            match self.next_packet(buf) {
                Ok(true) => self.counters.packets_in.increment(1),
                Ok(false) => break,
                Err(end) => {
                    if matches!(end, End::Disconnect { .. }) {
                        self.counters.packets_in.increment(1);
                    }
                    result = Err(end);
                    break;
                }
            }
        }
        if !self.out.is_empty() {
            self.flush().await.map_err(|e| End::Io(e.to_string()))?;
        }
        let patience = std::time::Duration::from_millis(self.edge.config.storage.queue_wait_ms);
        for change in std::mem::take(&mut self.retained_writes) {
            self.edge.events.queue_retained(change, patience).await;
        }
        result
    }

    /// Applies the next packet; `Ok(false)` when more bytes are needed.
    fn next_packet(&mut self, buf: &mut BytesMut) -> Result<bool, End> {
        let (first, header_len, remaining) = match fixed_header(buf) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(false),
            Err(_) => {
                return Err(violation(
                    DisconnectReasonCode::MalformedPacket,
                    "malformed remaining length",
                ))
            }
        };
        let packet_type = first >> 4;
        if packet_type == kind::CONNECT {
            return Err(violation(
                DisconnectReasonCode::ProtocolError,
                "second CONNECT",
            ));
        }
        if !client_may_send(packet_type) {
            let what = if packet_type == kind::AUTH {
                "AUTH is not supported"
            } else {
                "packet type a client may not send"
            };
            return Err(violation(
                DisconnectReasonCode::ProtocolError,
                &format!("{what} ({packet_type})"),
            ));
        }
        if remaining > self.max_remaining() {
            return Err(violation(
                DisconnectReasonCode::PacketTooLarge,
                &format!(
                    "packet of {remaining} bytes is over the limit (max_payload {})",
                    self.max_payload()
                ),
            ));
        }
        if buf.len() < header_len + remaining {
            return Ok(false);
        }
        let publish_header = (packet_type == kind::PUBLISH)
            .then(|| {
                buf.get(..header_len + remaining)
                    .and_then(publish_qos_and_pkid)
            })
            .flatten();
        let packet = self.codec.read(buf, self.max_remaining()).map_err(|e| {
            violation(
                DisconnectReasonCode::MalformedPacket,
                &format!("malformed packet: {e}"),
            )
        })?;
        let session = self.opened_session();
        match packet {
            Packet::PingReq(_) => self.encode(Packet::PingResp(PingResp)),
            Packet::Disconnect(disconnect, properties) => {
                let session_expiry = properties.and_then(|p| p.session_expiry_interval);
                if session_expiry.is_some_and(|s| s > 0) && self.session_expiry == 0 {
                    return Err(violation(
                        DisconnectReasonCode::ProtocolError,
                        "DISCONNECT set a session expiry on a session that had none",
                    ));
                }
                return Err(End::Disconnect {
                    with_will: disconnect.reason_code
                        == DisconnectReasonCode::DisconnectWithWillMessage,
                    session_expiry,
                });
            }
            Packet::Publish(publish, properties) => {
                let (qos, pkid) = publish_header.unwrap_or((0, 0));
                self.handle_publish(publish, properties, qos, pkid)?;
            }
            Packet::PubAck(ack, _) => {
                if let Some(session) = &session {
                    session.complete(ack.pkid);
                }
            }
            Packet::PubRec(rec, _) => {
                let reason = if session.as_ref().is_some_and(|s| s.received(rec.pkid)) {
                    PubRelReason::Success
                } else {
                    PubRelReason::PacketIdentifierNotFound
                };
                self.encode(Packet::PubRel(
                    PubRel {
                        pkid: rec.pkid,
                        reason,
                    },
                    None,
                ));
            }
            Packet::PubRel(rel, _) => {
                let reason = if session
                    .as_ref()
                    .is_some_and(|s| s.release_incoming(rel.pkid))
                {
                    PubCompReason::Success
                } else {
                    PubCompReason::PacketIdentifierNotFound
                };
                self.encode(Packet::PubComp(
                    PubComp {
                        pkid: rel.pkid,
                        reason,
                    },
                    None,
                ));
            }
            Packet::PubComp(comp, _) => {
                if let Some(session) = &session {
                    session.complete(comp.pkid);
                }
            }
            Packet::Subscribe(subscribe, properties) => {
                self.handle_subscribe(subscribe, properties)?;
            }
            Packet::Unsubscribe(unsubscribe, _) => self.handle_unsubscribe(unsubscribe),
            other => {
                return Err(violation(
                    DisconnectReasonCode::ProtocolError,
                    &format!("unexpected packet {other:?}"),
                ))
            }
        }
        Ok(true)
    }

    fn handle_publish(
        &mut self,
        mut publish: Publish,
        properties: Option<PublishProperties>,
        qos: u8,
        pkid: u16,
    ) -> Result<(), End> {
        if publish.payload.len() > self.max_payload() {
            return Err(violation(
                DisconnectReasonCode::PacketTooLarge,
                &format!(
                    "payload of {} bytes is over max_payload {}",
                    publish.payload.len(),
                    self.max_payload()
                ),
            ));
        }
        if let Some(alias) = properties.as_ref().and_then(|p| p.topic_alias) {
            self.resolve_alias(alias, &mut publish.topic)?;
        }
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            // Ill-formed UTF-8 makes the packet malformed (MQTT 5 §1.5.4).
            return Err(violation(
                DisconnectReasonCode::MalformedPacket,
                "topic is not UTF-8",
            ));
        };
        if let Err(why) = check_topic_name(topic) {
            return Err(violation(
                DisconnectReasonCode::TopicNameInvalid,
                why.describe(),
            ));
        }
        let refusal = if topic.starts_with('$') {
            Some(("dollar_topic", false))
        } else if let Some(why) = self.edge.config.mqtt.topic_over_limits(topic) {
            debug!(client_id = %self.client_id, "{why}");
            Some(("topic_limits", true))
        } else if !self.access.rights(&self.edge.auth).may_write(topic) {
            Some(("not_authorized", false))
        } else {
            None
        };
        let refused = refusal.is_some();
        // v5 acks say why: 0x90 for a topic over the limits, else 0x87.
        let topic_invalid = refusal.is_some_and(|(_, invalid)| invalid);
        if let Some((reason, _)) = refusal {
            debug!(client_id = %self.client_id, topic, reason, "refused a publish");
            metrics::counter!("switchboard_mqtt_publishes_refused_total", "reason" => reason)
                .increment(1);
        }
        self.publishes_read += 1;
        let deliver = match qos {
            2 => {
                let receive_maximum = self.edge.config.mqtt.receive_maximum;
                match self.session()?.incoming_qos2(pkid, receive_maximum) {
                    IncomingQos2::New => !refused,
                    IncomingQos2::Duplicate => false,
                    IncomingQos2::OverReceiveMaximum => {
                        return Err(violation(
                            DisconnectReasonCode::ReceiveMaximumExceeded,
                            &format!("more than {receive_maximum} QoS 2 publishes without PUBREL"),
                        ))
                    }
                }
            }
            _ => !refused,
        };
        if deliver {
            let topic: Arc<str> = Arc::from(topic);
            self.route(topic, publish.payload, qos, publish.retain, properties);
        }
        let v5_refused = refused && self.codec.version() == Version::V5;
        match qos {
            1 => self.encode(Packet::PubAck(
                PubAck {
                    pkid,
                    reason: match (v5_refused, topic_invalid) {
                        (false, _) => PubAckReason::Success,
                        (true, true) => PubAckReason::TopicNameInvalid,
                        (true, false) => PubAckReason::NotAuthorized,
                    },
                },
                None,
            )),
            2 => {
                if v5_refused {
                    // A failing PUBREC ends the exchange: no PUBREL follows.
                    if let Some(session) = self.opened_session() {
                        session.release_incoming(pkid);
                    }
                }
                self.encode(Packet::PubRec(
                    PubRec {
                        pkid,
                        reason: match (v5_refused, topic_invalid) {
                            (false, _) => PubRecReason::Success,
                            (true, true) => PubRecReason::TopicNameInvalid,
                            (true, false) => PubRecReason::NotAuthorized,
                        },
                    },
                    None,
                ))
            }
            _ => {}
        }
        Ok(())
    }

    fn route(
        &mut self,
        topic: Arc<str>,
        payload: Bytes,
        qos: u8,
        retain: bool,
        properties: Option<PublishProperties>,
    ) {
        let expiry_secs = properties.as_ref().and_then(|p| p.message_expiry_interval);
        if retain {
            self.retained_writes.push(RetainedChange {
                topic: Bytes::copy_from_slice(topic.as_bytes()),
                payload: payload.clone(),
                qos,
                expiry_secs,
            });
        }
        let mut message = Message::new(topic, payload, qos, retain);
        message.expiry = expiry_secs.map(Expiry::after_secs);
        message.publisher = Some(self.client_id.clone());
        message.properties = properties.and_then(|p| {
            let forwarded = MessageProperties {
                payload_format_indicator: p.payload_format_indicator,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
            };
            (forwarded != MessageProperties::default()).then(|| Arc::new(forwarded))
        });
        let routed = self.edge.router.publish(message);
        for session in routed.congested {
            if !self.congested.iter().any(|c| Arc::ptr_eq(c, &session)) {
                self.congested.push(session);
            }
        }
    }

    fn resolve_alias(&mut self, alias: u16, topic: &mut Bytes) -> Result<(), End> {
        let max = self.edge.config.mqtt.topic_alias_max;
        if alias == 0 || alias > max {
            return Err(violation(
                DisconnectReasonCode::TopicAliasInvalid,
                &format!("topic alias {alias} outside 1..={max}"),
            ));
        }
        if topic.is_empty() {
            match self.aliases.get(&alias) {
                Some(known) => *topic = known.clone(),
                None => {
                    return Err(violation(
                        DisconnectReasonCode::ProtocolError,
                        &format!("topic alias {alias} used before it was set"),
                    ))
                }
            }
        } else {
            self.aliases.insert(alias, topic.clone());
        }
        Ok(())
    }
}
