//! `GET /ws`: one browser connection speaking rooms protocol v1, served by one task
//! that reads requests, drains the connection's outbound queue into the socket as
//! far as the socket takes it, and sends heartbeats. A client that does not read
//! never blocks the fan-out: its queue conflates, then closes.

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use axum::Error as WsError;
use base64::Engine;
use bytes::Bytes;
use futures_util::{Sink, Stream};
use metrics::{counter, gauge, histogram, Counter, Histogram};
use serde_json::{json, Value};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::{debug, info};

use crate::hub::{to_bytes, ConnId, Member, StartAt};
use crate::outbound::{close_code, OutboundQueue, Outgoing, QueueLimits};
use crate::protocol::{error_frame, reply, ErrorCode, Limits};
use crate::rooms::{resolve, RoomSpec};
use crate::topic::{matches, valid_topic};
use crate::BridgeState;

/// Queue entries taken per step before the socket is written.
const WRITE_BATCH: usize = 256;
/// How long a closing connection may take to deliver its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Window over which errors are counted for `max_errors`.
const ERROR_WINDOW: Duration = Duration::from_secs(10);

/// The connection's state is boxed before its task's future is made, so the task
/// holds a pointer and the small loop future, not the socket.
pub fn serve(
    socket: WebSocket,
    state: BridgeState,
    peer: String,
    permit: OwnedSemaphorePermit,
) -> impl std::future::Future<Output = ()> + Send {
    let mut browser = Box::new(Browser::open(socket, state, peer, permit));
    async move {
        let reason = browser.run().await;
        browser.finish(&reason);
    }
}

/// One browser connection: its socket, its side of the protocol, and what is being
/// written. Boxed: tens of thousands are held at once.
struct Browser {
    socket: WebSocket,
    connection: Connection,
    queue: Arc<OutboundQueue>,
    /// Taken from the queue, not yet handed to the socket.
    batch: Vec<Outgoing>,
    /// When each room message handed to the socket since the last flush arrived.
    delivered: Vec<Instant>,
    unflushed: bool,
    ping: Interval,
    last_heard: Instant,
    /// False once a read failed: only the close frame is still to be written.
    reading: bool,
    closing_since: Option<Instant>,
    close_sent: bool,
    _permit: OwnedSemaphorePermit,
}

/// What woke the connection's task.
enum Event {
    Frame(Option<Result<WsMessage, WsError>>),
    Tick,
    /// The queue closed and the close frame is out (or could not be written).
    Closed(String),
}

impl Browser {
    fn open(
        socket: WebSocket,
        state: BridgeState,
        peer: String,
        permit: OwnedSemaphorePermit,
    ) -> Browser {
        let hub = state.hub.clone();
        let config = hub.config();
        let conn = hub.next_conn_id();
        let session: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        let queue = Arc::new(OutboundQueue::new(QueueLimits::from_config(&config.bridge)));
        let member = Arc::new(Member {
            queue: queue.clone(),
            session: session.clone(),
            user: None,
        });
        gauge!("switchboard_bridge_connections").increment(1.0);
        info!(session = %session, %peer, "browser connected");
        let limits = Limits {
            max_frame: config.bridge.max_frame.as_usize(),
            max_rooms: config.bridge.max_rooms_per_connection,
            max_requests_per_sec: config.bridge.max_requests_per_sec,
            max_payload: config.mqtt.max_payload.as_usize(),
        };
        queue.push_frame(to_bytes(&json!({
            "type": "welcome",
            "session": &*session,
            "heartbeat_ms": config.bridge.heartbeat_ms,
            "limits": limits,
        })));
        state.sockets.add(conn, &queue);
        let heartbeat = Duration::from_millis(config.bridge.heartbeat_ms);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Browser {
            socket,
            connection: Connection {
                state,
                conn,
                member,
                rooms: HashMap::new(),
                bucket: TokenBucket::new(config.bridge.max_requests_per_sec),
                errors: Vec::new(),
            },
            queue,
            batch: Vec::new(),
            delivered: Vec::new(),
            unflushed: false,
            ping,
            last_heard: Instant::now(),
            reading: true,
            closing_since: None,
            close_sent: false,
            _permit: permit,
        }
    }

    /// Serves until the client leaves or the queue closes; returns why it ended.
    async fn run(&mut self) -> String {
        loop {
            match poll_fn(|cx| self.poll_event(cx)).await {
                Event::Frame(frame) => {
                    self.last_heard = Instant::now();
                    match frame {
                        Some(Ok(WsMessage::Text(text))) => self.connection.handle_text(&text),
                        Some(Ok(WsMessage::Binary(_))) => self.connection.error(None, ErrorCode::Unsupported, "binary frames need the switchboard.v1.msgpack subprotocol, which this server does not offer yet"),
                        Some(Ok(WsMessage::Close(_))) | None => return "client closed".into(),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            let text = e.to_string();
                            if !(text.contains("too long") || text.contains("Space limit")) {
                                return format!("read error: {text}");
                            }
                            // Tell the client why before closing.
                            self.reading = false;
                            self.queue.close(1009, "frame too large");
                        }
                    }
                }
                Event::Tick => {
                    if let Some(since) = self.closing_since {
                        if since.elapsed() >= CLOSE_GRACE {
                            return "close frame not taken in time".into();
                        }
                    } else if self.last_heard.elapsed() > self.heartbeat_deadline() {
                        self.queue
                            .close(close_code::HEARTBEAT_TIMEOUT, "no answer to pings");
                    } else {
                        self.queue.check_stalled();
                        self.queue.push_ping();
                    }
                }
                Event::Closed(why) => return why,
            }
        }
    }

    /// How long the client may stay silent: a heartbeat period and the timeout.
    fn heartbeat_deadline(&self) -> Duration {
        let bridge = &self.connection.state.hub.config().bridge;
        Duration::from_millis(bridge.heartbeat_ms + bridge.heartbeat_timeout_ms)
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Poll::Ready(closed) = self.poll_write(cx) {
            return Poll::Ready(Event::Closed(closed));
        }
        if self.reading && self.closing_since.is_none() {
            if let Poll::Ready(frame) = Pin::new(&mut self.socket).poll_next(cx) {
                return Poll::Ready(Event::Frame(frame));
            }
        }
        if self.ping.poll_tick(cx).is_ready() {
            return Poll::Ready(Event::Tick);
        }
        Poll::Pending
    }

    /// Moves queued entries into the socket while it takes them and flushes when the
    /// queue is empty. Ready (with why) once the connection is done writing: the queue
    /// closed and its close frame went out, or the socket failed.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<String> {
        loop {
            if self.batch.is_empty() {
                match self.queue.poll_take(cx, &mut self.batch, WRITE_BATCH) {
                    Poll::Ready(None) => self.batch.reverse(),
                    Poll::Ready(Some((code, reason))) => return self.poll_close(cx, code, reason),
                    Poll::Pending => return self.poll_flush(cx),
                }
            }
            if let Err(e) = ready!(Pin::new(&mut self.socket).poll_ready(cx)) {
                return Poll::Ready(format!("write error: {e}"));
            }
            let Some(entry) = self.batch.pop() else {
                continue;
            };
            let message = match entry {
                Outgoing::Frame(frame) => text(frame),
                Outgoing::Ping => WsMessage::Ping(Bytes::new()),
                Outgoing::Message {
                    frame,
                    message,
                    room,
                    conflated,
                } => {
                    self.delivered.push(message.arrived);
                    if conflated {
                        text(message.frame(&room, true))
                    } else {
                        text(frame)
                    }
                }
            };
            if let Err(e) = Pin::new(&mut self.socket).start_send(message) {
                return Poll::Ready(format!("write error: {e}"));
            }
            self.unflushed = true;
        }
    }

    /// Pending while the flush is; a failed flush ends the connection.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<String> {
        if !self.unflushed {
            return Poll::Pending;
        }
        if let Err(e) = ready!(Pin::new(&mut self.socket).poll_flush(cx)) {
            return Poll::Ready(format!("write error: {e}"));
        }
        self.unflushed = false;
        if !self.delivered.is_empty() {
            let (delivered, latency) = delivery_metrics();
            delivered.increment(self.delivered.len() as u64);
            for arrived in self.delivered.drain(..) {
                latency.record(arrived.elapsed().as_secs_f64());
            }
            if self.delivered.capacity() > WRITE_BATCH {
                self.delivered = Vec::new();
            }
        }
        if self.batch.capacity() > WRITE_BATCH {
            self.batch = Vec::new();
        }
        Poll::Pending
    }

    /// Sends the close frame (replies queued before it are already out).
    fn poll_close(&mut self, cx: &mut Context<'_>, code: u16, reason: String) -> Poll<String> {
        let why = format!("closed {code}: {reason}");
        if self.closing_since.is_none() {
            self.closing_since = Some(Instant::now());
            // Others see it leave now, not after the closing handshake.
            self.connection.leave_rooms();
            // The next tick ends the wait for a client that does not read.
            self.ping.reset_after(CLOSE_GRACE);
        }
        if !self.close_sent {
            if ready!(Pin::new(&mut self.socket).poll_ready(cx)).is_err() {
                return Poll::Ready(why);
            }
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            if Pin::new(&mut self.socket)
                .start_send(WsMessage::Close(Some(frame)))
                .is_err()
            {
                return Poll::Ready(why);
            }
            self.close_sent = true;
        }
        if ready!(Pin::new(&mut self.socket).poll_flush(cx)).is_err() {
            return Poll::Ready(why);
        }
        // The closing handshake: read (and drop) until the client's own close ends
        // the stream. Closing the socket with its frames unread would send a reset,
        // which can destroy our close frame before the client reads it.
        while self.reading {
            match ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                Some(Ok(_)) => continue,
                _ => self.reading = false,
            }
        }
        Poll::Ready(why)
    }

    fn finish(&mut self, reason: &str) {
        self.queue.close(close_code::NORMAL, "bye");
        info!(session = %self.connection.member.session, reason, "browser disconnected");
    }
}

/// Also when the task panics: the connection leaves its rooms and the registry.
impl Drop for Browser {
    fn drop(&mut self) {
        self.connection.leave_rooms();
        let connection = &self.connection;
        connection.state.sockets.remove(connection.conn);
        gauge!("switchboard_bridge_connections").decrement(1.0);
    }
}

/// Looked up once: every flush of every connection records them.
fn delivery_metrics() -> &'static (Counter, Histogram) {
    static METRICS: OnceLock<(Counter, Histogram)> = OnceLock::new();
    METRICS.get_or_init(|| {
        (
            counter!("switchboard_bridge_messages_out_total"),
            histogram!("switchboard_bridge_delivery_seconds"),
        )
    })
}

/// Frames are JSON we encoded ourselves (UTF-8); the check is a scan, not a copy.
fn text(frame: Bytes) -> WsMessage {
    WsMessage::Text(Utf8Bytes::try_from(frame).unwrap_or_default())
}

struct Connection {
    state: BridgeState,
    conn: ConnId,
    member: Arc<Member>,
    rooms: HashMap<Arc<str>, Arc<RoomSpec>>,
    bucket: TokenBucket,
    errors: Vec<Instant>,
}

impl Connection {
    fn leave_rooms(&mut self) {
        for (room, _) in self.rooms.drain() {
            self.state.hub.leave(self.conn, &room);
        }
    }

    fn send(&self, value: &Value) {
        self.member.queue.push_frame(to_bytes(value));
    }

    /// Replies with an error; past `max_errors` within the window, closes with 1008.
    fn error(&mut self, id: Option<&Value>, code: ErrorCode, message: &str) {
        debug!(session = %self.member.session, code = code.as_str(), "{message}");
        counter!("switchboard_bridge_errors_total", "code" => code.as_str()).increment(1);
        self.send(&error_frame(id, code, message));
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

    fn handle_text(&mut self, text: &str) {
        let config = self.state.hub.config();
        if text.len() > config.bridge.max_frame.as_usize() {
            let id = leading_id(text);
            let message = format!(
                "frame of {} bytes is over the {}-byte limit",
                text.len(),
                config.bridge.max_frame.as_usize()
            );
            return self.error(id.as_ref(), ErrorCode::TooLarge, &message);
        }
        let request: Value = match serde_json::from_str(text) {
            Ok(value @ Value::Object(_)) => value,
            Ok(_) => {
                return self.error(None, ErrorCode::BadRequest, "a request is one JSON object")
            }
            Err(e) => {
                return self.error(
                    leading_id(text).as_ref(),
                    ErrorCode::BadRequest,
                    &format!("malformed JSON: {e}"),
                )
            }
        };
        let id = request.get("id").filter(|v| v.is_number()).cloned();
        let id = id.as_ref();
        if !self.bucket.take() {
            return self.error(id, ErrorCode::RateLimited, "too many requests; slow down");
        }
        let Some(kind) = request.get("type").and_then(Value::as_str) else {
            return self.error(id, ErrorCode::BadRequest, "missing field \"type\"");
        };
        match kind {
            "join" => self.join(&request, id),
            "leave" => self.leave(&request, id),
            "publish" => self.publish(&request, id),
            "presence" => self.presence(&request, id),
            "ping" => self.send(&reply("pong", id, json!({}))),
            "auth" => self.error(
                id,
                ErrorCode::Unsupported,
                "authentication is not enabled on this server",
            ),
            other => {
                let message = format!("unknown request type {other:?}");
                self.error(id, ErrorCode::UnknownType, &message)
            }
        }
    }

    fn room_field<'a>(&mut self, request: &'a Value, id: Option<&Value>) -> Option<&'a str> {
        let room = request.get("room").and_then(Value::as_str);
        if room.is_none() {
            self.error(
                id,
                ErrorCode::BadRequest,
                "missing field \"room\" (a string)",
            );
        }
        room
    }

    fn join(&mut self, request: &Value, id: Option<&Value>) {
        let Some(name) = self.room_field(request, id) else {
            return;
        };
        let config = self.state.hub.config();
        if self.rooms.contains_key(name) {
            return self.error(
                id,
                ErrorCode::AlreadyJoined,
                &format!("already in room {name:?}"),
            );
        }
        if self.rooms.len() >= config.bridge.max_rooms_per_connection {
            let message = format!(
                "at most {} rooms per connection",
                config.bridge.max_rooms_per_connection
            );
            return self.error(id, ErrorCode::TooManyRooms, &message);
        }
        let spec = match resolve(config, name) {
            Ok(spec) => spec,
            Err((code, message)) => return self.error(id, code, &message),
        };
        let start = match start_at(request) {
            Ok(start) => start,
            Err(message) => return self.error(id, ErrorCode::BadRequest, &message),
        };
        match self
            .state
            .hub
            .join(self.conn, &self.member, spec, start, id)
        {
            Ok(spec) => {
                self.rooms.insert(spec.name.clone(), spec);
            }
            Err((code, message)) => self.error(id, code, &message),
        }
    }

    fn leave(&mut self, request: &Value, id: Option<&Value>) {
        let Some(name) = self.room_field(request, id) else {
            return;
        };
        if self.rooms.remove(name).is_none() {
            return self.error(id, ErrorCode::NotJoined, &format!("not in room {name:?}"));
        }
        self.state.hub.leave(self.conn, name);
        self.send(&reply("left", id, json!({"room": name})));
    }

    fn presence(&mut self, request: &Value, id: Option<&Value>) {
        let Some(name) = self.room_field(request, id) else {
            return;
        };
        if !self.rooms.contains_key(name) {
            return self.error(
                id,
                ErrorCode::NotJoined,
                &format!("join {name:?} to see its members"),
            );
        }
        let members = self.state.hub.members(name).unwrap_or_default();
        self.send(&reply(
            "presence",
            id,
            json!({"room": name, "members": members}),
        ));
    }

    fn publish(&mut self, request: &Value, id: Option<&Value>) {
        let config = self.state.hub.config();
        let Some(topic) = request.get("topic").and_then(Value::as_str) else {
            return self.error(
                id,
                ErrorCode::BadRequest,
                "missing field \"topic\" (a string)",
            );
        };
        if !valid_topic(topic) || topic.starts_with('$') {
            return self.error(
                id,
                ErrorCode::InvalidTopic,
                &format!("{topic:?} is not a topic browsers may publish to"),
            );
        }
        if let Some(qos) = request.get("qos") {
            if !matches!(qos.as_u64(), Some(0 | 1)) {
                return self.error(id, ErrorCode::BadRequest, "qos must be 0 or 1");
            }
        }
        let retain = match request.get("retain") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return self.error(id, ErrorCode::BadRequest, "retain must be true or false")
            }
        };
        let payload = match payload_bytes(request) {
            Ok(payload) => payload,
            Err(message) => return self.error(id, ErrorCode::BadRequest, &message),
        };
        if payload.len() > config.mqtt.max_payload.as_usize() {
            let message = format!(
                "payload of {} bytes is over max_payload {}",
                payload.len(),
                config.mqtt.max_payload.as_usize()
            );
            return self.error(id, ErrorCode::TooLarge, &message);
        }
        let allowed = config
            .bridge
            .browser_publish
            .iter()
            .any(|f| matches(f, topic))
            || self.rooms.values().any(|room| room.may_publish(topic));
        if !allowed {
            return self.error(
                id,
                ErrorCode::Forbidden,
                &format!("publishing to {topic:?} is not allowed"),
            );
        }
        let qos = request
            .get("qos")
            .and_then(Value::as_u64)
            .map_or(0, |q| q.min(2) as u8);
        if retain {
            // Through the same queue as MQTT clients' retained messages.
            self.state.events.retained_changed(
                Bytes::copy_from_slice(topic.as_bytes()),
                payload.clone(),
                qos,
                None,
            );
        }
        self.state.publisher.publish(topic, payload, qos, retain);
        counter!("switchboard_bridge_publishes_total").increment(1);
        if id.is_some() {
            self.send(&reply("ack", id, json!({})));
        }
    }
}

/// `since`, `rewind` or neither.
fn start_at(request: &Value) -> Result<StartAt, String> {
    if let Some(since) = request.get("since") {
        let epoch = since
            .get("epoch")
            .and_then(Value::as_str)
            .ok_or("since.epoch must be a string")?;
        let offset = match since.get("offset") {
            Some(Value::String(s)) => s.parse().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => {
                return Err("since.offset must be the string from a joined or message frame".into())
            }
        };
        return Ok(StartAt::Since {
            epoch: epoch.to_string(),
            offset,
        });
    }
    if let Some(rewind) = request.get("rewind") {
        let count = rewind
            .as_u64()
            .ok_or("rewind must be a non-negative number")?;
        return Ok(StartAt::Rewind(
            usize::try_from(count).unwrap_or(usize::MAX),
        ));
    }
    Ok(StartAt::Now)
}

/// The bytes a browser `publish` sends: `payload` as JSON text (raw text with
/// `"encoding":"text"`), or `payload_b64` decoded.
fn payload_bytes(request: &Value) -> Result<Bytes, String> {
    if let Some(b64) = request.get("payload_b64") {
        let b64 = b64.as_str().ok_or("payload_b64 must be a base64 string")?;
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Bytes::from)
            .map_err(|e| format!("payload_b64 is not base64: {e}"));
    }
    let payload = request
        .get("payload")
        .ok_or("missing field \"payload\" (or \"payload_b64\")")?;
    match (request.get("encoding").and_then(Value::as_str), payload) {
        (Some("text"), Value::String(text)) => Ok(Bytes::from(text.clone())),
        (Some("text"), _) => Err("encoding \"text\" needs a string payload".into()),
        (Some(other), _) => Err(format!(
            "unknown encoding {other:?} (use \"text\" or payload_b64)"
        )),
        (None, value) => serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| e.to_string()),
    }
}

/// The `id` of a request too large or malformed to parse, if it leads the object.
fn leading_id(text: &str) -> Option<Value> {
    let start = text.find("\"id\"")?;
    let rest = text[start + 4..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse::<u64>().ok().map(Value::from)
}

/// Requests per second with a burst of twice that.
struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn new(per_second: u32) -> TokenBucket {
        let rate = f64::from(per_second);
        TokenBucket {
            rate,
            capacity: rate * 2.0,
            tokens: rate * 2.0,
            refilled: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_payloads_become_mqtt_bytes() {
        let json_payload = json!({"type": "publish", "payload": {"on": true}});
        assert_eq!(&payload_bytes(&json_payload).unwrap()[..], b"{\"on\":true}");
        let text = json!({"payload": "hello", "encoding": "text"});
        assert_eq!(&payload_bytes(&text).unwrap()[..], b"hello");
        let quoted = json!({"payload": "hello"});
        assert_eq!(&payload_bytes(&quoted).unwrap()[..], b"\"hello\"");
        let binary = json!({"payload_b64": "/wA="});
        assert_eq!(&payload_bytes(&binary).unwrap()[..], &[0xff, 0x00]);
        assert!(payload_bytes(&json!({})).is_err());
    }

    #[test]
    fn reads_the_id_of_an_unparseable_request() {
        assert_eq!(
            leading_id("{\"id\": 42, \"type\": \"jo"),
            Some(Value::from(42))
        );
        assert_eq!(leading_id("{\"type\":1}"), None);
    }

    #[test]
    fn token_bucket_allows_a_burst_then_refuses() {
        let mut bucket = TokenBucket::new(5);
        assert_eq!((0..20).filter(|_| bucket.take()).count(), 10);
    }
}
