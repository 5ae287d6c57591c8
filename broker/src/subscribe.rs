//! SUBSCRIBE and UNSUBSCRIBE: each filter checked (invalid ones and those past
//! `max_subscriptions` get a failure code, the rest subscribed with their options in
//! the core), answered with SUBACK / UNSUBACK; retained messages follow through the
//! session's queue.

use rumqttd::protocol::{
    DisconnectReasonCode, Filter, Packet, QoS, RetainForwardRule, SubAck, Subscribe,
    SubscribeProperties, SubscribeReasonCode, UnsubAck, UnsubAckReason, Unsubscribe,
};
use switchboard_router::{FilterSpec, Session, SubscriptionOptions};
use tracing::debug;

use crate::auth::SubscribeRight;
use crate::connection::{violation, Connection, End};
use crate::packet::Version;
use crate::transport::MqttIo;

impl<I: MqttIo> Connection<I> {
    /// Subscribes each filter (invalid ones get a failure code), answers with SUBACK,
    /// then the retained messages follow through the session's queue.
    pub(crate) fn handle_subscribe(
        &mut self,
        subscribe: Subscribe,
        properties: Option<SubscribeProperties>,
    ) -> Result<(), End> {
        let identifier = match properties.and_then(|p| p.id) {
            Some(0) => {
                return Err(violation(
                    DisconnectReasonCode::ProtocolError,
                    "subscription identifier 0",
                ))
            }
            Some(id) => Some(u32::try_from(id).unwrap_or(u32::MAX)),
            None => None,
        };
        let v5 = self.codec.version() == Version::V5;
        let session = self.session()?;
        let mut return_codes = Vec::with_capacity(subscribe.filters.len());
        for filter in subscribe.filters {
            let code = match FilterSpec::parse(&filter.path) {
                Err(why) => {
                    debug!(client_id = %self.client_id, filter = %filter.path, "refused filter: {}", why.describe());
                    if v5 {
                        SubscribeReasonCode::TopicFilterInvalid
                    } else {
                        SubscribeReasonCode::Failure
                    }
                }
                Ok(spec) if spec.share_group.is_some() && filter.nolocal => {
                    return Err(violation(
                        DisconnectReasonCode::ProtocolError,
                        "No Local on a shared subscription",
                    ))
                }
                Ok(spec)
                    if self
                        .edge
                        .config
                        .mqtt
                        .topic_over_limits(&spec.filter)
                        .is_some() =>
                {
                    debug!(client_id = %self.client_id, filter = %filter.path, "refused filter: over the topic limits");
                    if v5 {
                        SubscribeReasonCode::TopicFilterInvalid
                    } else {
                        SubscribeReasonCode::Failure
                    }
                }
                Ok(spec)
                    if self.access.rights(&self.edge.auth).subscribe(&spec.filter)
                        == SubscribeRight::Denied =>
                {
                    debug!(client_id = %self.client_id, filter = %filter.path, "subscription not authorized by the ACL");
                    metrics::counter!("switchboard_mqtt_subscriptions_refused_total", "reason" => "not_authorized").increment(1);
                    if v5 {
                        SubscribeReasonCode::NotAuthorized
                    } else {
                        SubscribeReasonCode::Failure
                    }
                }
                Ok(spec) if self.over_subscription_limit(&session, &spec) => {
                    if v5 {
                        SubscribeReasonCode::QuotaExceeded
                    } else {
                        SubscribeReasonCode::Failure
                    }
                }
                Ok(spec) => {
                    let options = options_of(&filter, identifier, v5);
                    self.edge.router.subscribe(&session, &spec, options);
                    SubscribeReasonCode::Success(granted(options.qos))
                }
            };
            return_codes.push(code);
        }
        self.encode(Packet::SubAck(
            SubAck {
                pkid: subscribe.pkid,
                return_codes,
            },
            None,
        ));
        Ok(())
    }

    /// A new filter past `[mqtt] max_subscriptions` (replacing one is always fine).
    fn over_subscription_limit(&self, session: &Session, spec: &FilterSpec) -> bool {
        let (exists, count) = session.subscription_count(spec);
        let over = !exists && count >= self.edge.config.mqtt.max_subscriptions;
        if over {
            debug!(client_id = %self.client_id, count, "refused a subscription over max_subscriptions");
            metrics::counter!("switchboard_mqtt_subscriptions_refused_total").increment(1);
        }
        over
    }

    pub(crate) fn handle_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let session = self.opened_session();
        let reasons = unsubscribe
            .filters
            .iter()
            .map(|raw| match FilterSpec::parse(raw) {
                Err(_) => UnsubAckReason::TopicFilterInvalid,
                Ok(spec)
                    if session
                        .as_ref()
                        .is_some_and(|s| self.edge.router.unsubscribe(s, &spec)) =>
                {
                    UnsubAckReason::Success
                }
                Ok(_) => UnsubAckReason::NoSubscriptionExisted,
            })
            .collect();
        self.encode(Packet::UnsubAck(
            UnsubAck {
                pkid: unsubscribe.pkid,
                reasons,
            },
            None,
        ));
    }
}

fn options_of(filter: &Filter, identifier: Option<u32>, v5: bool) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: (filter.qos as u8).min(2),
        no_local: v5 && filter.nolocal,
        retain_as_published: v5 && filter.preserve_retain,
        retain_handling: if v5 {
            match filter.retain_forward_rule {
                RetainForwardRule::OnEverySubscribe => 0,
                RetainForwardRule::OnNewSubscribe => 1,
                RetainForwardRule::Never => 2,
            }
        } else {
            0
        },
        identifier,
    }
}

fn granted(qos: u8) -> QoS {
    match qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}
