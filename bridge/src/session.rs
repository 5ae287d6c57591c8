//! One browser connection's side of rooms protocol v1: its token, rooms, rate limit
//! and error budget, and what each request does. The socket it runs over is socket.rs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::counter;
use switchboard_broker::rate::TokenBucket;
use tracing::debug;

use crate::frames::{encode, Bare, ErrorCode, ErrorFrame, Left, PresenceReply, RequestId};
use crate::hub::{ConnId, Member, StartAt};
use crate::outbound::close_code;
use crate::request::{parse, parse_binary, PublishRequest, Refused, Request, Since};
use crate::rooms::{resolve, RoomSpec};
use crate::token_stage::Stage;
use crate::topic::{matches, valid_topic};
use crate::BridgeState;

/// Window over which errors are counted for `max_errors`.
const ERROR_WINDOW: Duration = Duration::from_secs(10);

pub struct Session {
    pub state: BridgeState,
    pub conn: ConnId,
    pub member: Arc<Member>,
    pub(crate) stage: Stage,
    pub(crate) rooms: HashMap<Arc<str>, Arc<RoomSpec>>,
    bucket: TokenBucket,
    errors: Vec<Instant>,
}

impl Session {
    pub fn new(state: BridgeState, conn: ConnId, member: Arc<Member>) -> Session {
        let per_second = state.hub.config().bridge.max_requests_per_sec;
        Session {
            state,
            conn,
            member,
            stage: Stage::Open,
            rooms: HashMap::new(),
            bucket: TokenBucket::new(per_second),
            errors: Vec::new(),
        }
    }

    pub fn leave_rooms(&mut self) {
        for (room, _) in self.rooms.drain() {
            self.state.hub.leave(self.conn, &room);
        }
    }

    pub(crate) fn send(&self, frame: Bytes) {
        self.member.queue.push_frame(frame);
    }

    /// Replies with an error; past `max_errors` within the window, closes with 1008.
    pub fn error(&mut self, id: &RequestId, code: ErrorCode, message: &str) {
        debug!(session = %self.member.info.session, code = code.as_str(), "{message}");
        counter!("switchboard_bridge_errors_total", "code" => code.as_str()).increment(1);
        self.send(encode(&ErrorFrame { id, code, message }));
        let now = Instant::now();
        self.errors
            .retain(|t| now.duration_since(*t) < ERROR_WINDOW);
        self.errors.push(now);
        if self.errors.len() > self.state.hub.config().bridge.max_errors as usize {
            self.member
                .queue
                .close(close_code::POLICY, "too many bad requests");
        }
    }

    pub fn handle_text(&mut self, text: &str) {
        let max_frame = self.state.hub.config().bridge.max_frame.as_usize();
        self.handle(parse(text, max_frame));
    }

    /// A binary frame: a MessagePack request.
    pub fn handle_binary(&mut self, frame: &[u8]) {
        let max_frame = self.state.hub.config().bridge.max_frame.as_usize();
        self.handle(parse_binary(frame, max_frame));
    }

    fn handle(&mut self, parsed: Result<(RequestId, Request), Refused>) {
        let (id, request) = match parsed {
            Ok(parsed) => parsed,
            Err(refused) => return self.error(&refused.id, refused.code, &refused.message),
        };
        if !self.bucket.take() {
            return self.error(&id, ErrorCode::RateLimited, "too many requests; slow down");
        }
        if matches!(self.stage, Stage::Waiting { .. }) && !matches!(request, Request::Auth { .. }) {
            let reason = "authenticate first: {\"type\":\"auth\",\"token\":\"…\"}";
            return self.member.queue.close(close_code::UNAUTHORIZED, reason);
        }
        match request {
            Request::Join {
                room,
                since,
                rewind,
            } => self.join(&id, &room, since, rewind),
            Request::Leave { room } => self.leave(&id, &room),
            Request::Publish(publish) => self.publish(&id, &publish),
            Request::Presence { room } => self.presence(&id, &room),
            Request::Ping => self.send(encode(&Bare {
                kind: "pong",
                id: &id,
            })),
            Request::Auth { token } => self.auth(&id, token.as_deref()),
        }
    }

    fn join(&mut self, id: &RequestId, name: &str, since: Option<Since>, rewind: Option<u64>) {
        let config = self.state.hub.config();
        if self.rooms.contains_key(name) {
            let message = format!("already in room {name:?}");
            return self.error(id, ErrorCode::AlreadyJoined, &message);
        }
        if self.rooms.len() >= config.bridge.max_rooms_per_connection {
            let max = config.bridge.max_rooms_per_connection;
            let message = format!("at most {max} rooms per connection");
            return self.error(id, ErrorCode::TooManyRooms, &message);
        }
        let spec = match resolve(config, name) {
            Ok(spec) => spec,
            Err((code, message)) => return self.error(id, code, &message),
        };
        if self.grant().is_some_and(|grant| !grant.may_join(&spec)) {
            let message = format!("the token does not grant room {name:?}");
            return self.error(id, ErrorCode::Forbidden, &message);
        }
        let start = match (since, rewind) {
            (Some(since), _) => StartAt::Since {
                offset: since.offset.value(),
                epoch: since.epoch,
            },
            (None, Some(count)) => StartAt::Rewind(usize::try_from(count).unwrap_or(usize::MAX)),
            (None, None) => StartAt::Now,
        };
        match self
            .state
            .hub
            .join(self.conn, &self.member, spec, start, id.clone())
        {
            Ok(spec) => {
                self.rooms.insert(spec.name.clone(), spec);
            }
            Err((code, message)) => self.error(id, code, &message),
        }
    }

    fn leave(&mut self, id: &RequestId, name: &str) {
        if self.rooms.remove(name).is_none() {
            return self.error(id, ErrorCode::NotJoined, &format!("not in room {name:?}"));
        }
        self.state.hub.leave(self.conn, name);
        self.send(encode(&Left {
            id,
            room: name,
            reason: None,
        }));
    }

    fn presence(&mut self, id: &RequestId, name: &str) {
        if !self.rooms.contains_key(name) {
            let message = format!("join {name:?} to see its members");
            return self.error(id, ErrorCode::NotJoined, &message);
        }
        if self
            .grant()
            .is_some_and(|grant| !grant.may_list_members(name))
        {
            let message = format!("listing members needs the presence claim or {name:?} in rooms");
            return self.error(id, ErrorCode::Forbidden, &message);
        }
        let (members, truncated) = self.state.hub.members(name).unwrap_or_default();
        self.send(encode(&PresenceReply {
            id,
            room: name,
            members,
            truncated,
        }));
    }

    fn publish(&mut self, id: &RequestId, request: &PublishRequest) {
        let config = self.state.hub.config();
        let topic = request.topic.as_str();
        if !valid_topic(topic) || topic.starts_with('$') {
            let message = format!("{topic:?} is not a topic browsers may publish to");
            return self.error(id, ErrorCode::InvalidTopic, &message);
        }
        if request.qos > 2 {
            return self.error(id, ErrorCode::BadRequest, "qos must be 0, 1 or 2");
        }
        let payload = match request.payload_bytes() {
            Ok(payload) => payload,
            Err(message) => return self.error(id, ErrorCode::BadRequest, &message),
        };
        let max_payload = config.mqtt.max_payload.as_usize();
        if payload.len() > max_payload {
            let message = format!(
                "payload of {} bytes is over max_payload {max_payload}",
                payload.len()
            );
            return self.error(id, ErrorCode::TooLarge, &message);
        }
        // A token's publish claim replaces [bridge] browser_publish.
        let allowed = match self.grant() {
            Some(grant) => grant.may_publish(topic),
            None => config
                .bridge
                .browser_publish
                .iter()
                .any(|f| matches(f, topic)),
        } || self.rooms.values().any(|room| room.may_publish(topic));
        if !allowed || !self.member.may_write(topic) {
            let message = format!("publishing to {topic:?} is not allowed");
            return self.error(id, ErrorCode::Forbidden, &message);
        }
        if request.retain {
            // Through the same queue as MQTT clients' retained messages.
            self.state.events.retained_changed(
                Bytes::copy_from_slice(topic.as_bytes()),
                payload.clone(),
                request.qos,
                None,
            );
        }
        self.state
            .publisher
            .publish(topic, payload, request.qos, request.retain);
        counter!("switchboard_bridge_publishes_total").increment(1);
        if id.is_some() {
            self.send(encode(&Bare { kind: "ack", id }));
        }
    }
}
