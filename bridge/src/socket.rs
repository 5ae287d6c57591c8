//! One `/ws` connection's socket, served by one task: it reads requests (handing
//! them to the protocol session), drains the connection's outbound queue into the
//! socket as far as the socket takes it, sends heartbeats, enforces the silence and
//! unfinished-frame deadlines, and closes with the right code and a clean handshake.
//! A client that does not read never blocks the fan-out: its queue conflates, then
//! closes.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{Sink, Stream};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use metrics::{counter, gauge, histogram, Counter, Histogram};
use parking_lot::RwLock;
use switchboard_broker::auth::SharedAccess;
use switchboard_broker::watched::Watched;
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info};

use crate::frames::{Codec, ErrorCode, MemberInfo};
use crate::hub::{Member, SeesMembers};
use crate::outbound::{close_code, OutboundQueue, Outgoing, QueueLimits};
use crate::session::Session;
use crate::token_stage::Admission;
use crate::BridgeState;

pub type BrowserSocket = WebSocketStream<Watched<TokioIo<Upgraded>>>;

/// Queue entries taken per step before the socket is written.
const WRITE_BATCH: usize = 256;
/// How long a closing connection may take to deliver its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The connection's state is boxed before its task's future is made, so the task
/// holds a pointer and the small loop future, not the socket.
pub fn serve(
    socket: BrowserSocket,
    state: BridgeState,
    peer: String,
    permit: OwnedSemaphorePermit,
    admission: Admission,
    codec: Codec,
) -> impl std::future::Future<Output = ()> + Send {
    let mut browser = Box::new(Browser::open(socket, state, peer, permit, admission, codec));
    async move {
        let reason = browser.run().await;
        browser.finish(&reason);
    }
}

/// One browser connection: its socket, its protocol session, and what is being
/// written. Boxed: tens of thousands are held at once.
struct Browser {
    socket: BrowserSocket,
    session: Session,
    queue: Arc<OutboundQueue>,
    /// The negotiated subprotocol's encoding of what is written.
    codec: Codec,
    /// Taken from the queue, not yet handed to the socket.
    batch: Vec<Outgoing>,
    /// When each room message handed to the socket since the last flush arrived.
    delivered: Vec<Instant>,
    unflushed: bool,
    timer: Pin<Box<tokio::time::Sleep>>,
    next_ping: Instant,
    last_heard: Instant,
    /// False once a read failed or the client's close arrived.
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
        socket: BrowserSocket,
        state: BridgeState,
        peer: String,
        permit: OwnedSemaphorePermit,
        admission: Admission,
        codec: Codec,
    ) -> Browser {
        let hub = state.hub.clone();
        let config = hub.config();
        let conn = hub.next_conn_id();
        let session_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
        let queue = Arc::new(OutboundQueue::new(QueueLimits::from_config(&config.bridge)));
        let member = Arc::new(Member {
            queue: queue.clone(),
            info: MemberInfo {
                session: session_id.clone(),
                user: None,
            },
            access: SharedAccess::new(state.auth.clone(), (None, &session_id)),
            sees: RwLock::new(SeesMembers::All),
        });
        gauge!("switchboard_bridge_connections").increment(1.0);
        if switchboard_broker::repeats::allow("browser connected") {
            info!(session = %session_id, %peer, "browser connected");
        }
        state.sockets.add(conn, &queue);
        let mut session = Session::new(state, conn, member);
        session.open(admission);
        let now = Instant::now();
        let next_ping = now + Duration::from_millis(config.bridge.heartbeat_ms);
        Browser {
            socket,
            session,
            queue,
            codec,
            batch: Vec::new(),
            delivered: Vec::new(),
            unflushed: false,
            timer: Box::pin(tokio::time::sleep_until(next_ping.into())),
            next_ping,
            last_heard: now,
            reading: true,
            closing_since: None,
            close_sent: false,
            _permit: permit,
        }
    }

    /// Serves until the client leaves or the queue closes; returns why it ended.
    async fn run(&mut self) -> String {
        self.rearm();
        loop {
            match poll_fn(|cx| self.poll_event(cx)).await {
                Event::Frame(frame) => {
                    if let Some(ended) = self.on_frame(frame) {
                        return ended;
                    }
                }
                Event::Tick => {
                    if let Some(since) = self.closing_since {
                        if since.elapsed() >= CLOSE_GRACE {
                            return "close frame not taken in time".into();
                        }
                    }
                    self.on_tick();
                }
                Event::Closed(why) => return why,
            }
        }
    }

    /// Handles what the socket read; `Some(why)` once the connection is over.
    fn on_frame(&mut self, frame: Option<Result<WsMessage, WsError>>) -> Option<String> {
        let frame = match frame {
            None => return Some("client closed".into()),
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return self.on_read_error(e),
        };
        self.socket.get_ref().frame_done();
        self.last_heard = Instant::now();
        match frame {
            WsMessage::Text(text) => {
                let deadline = self.session.token_deadline();
                self.session.handle_text(&text);
                // An accepted token brings its expiry.
                if self.session.token_deadline() != deadline {
                    self.rearm();
                }
            }
            WsMessage::Binary(frame) if self.codec == Codec::MsgPack => {
                let deadline = self.session.token_deadline();
                self.session.handle_binary(&frame);
                if self.session.token_deadline() != deadline {
                    self.rearm();
                }
            }
            WsMessage::Binary(_) => self.session.error(
                &None,
                ErrorCode::Unsupported,
                "binary frames need the switchboard.v1.msgpack subprotocol",
            ),
            // The answer (our close frame echoing theirs) goes out with the next read
            // or flush; the read after it ends the stream.
            WsMessage::Close(_) => {
                self.session.leave_rooms();
                self.unflushed = true;
            }
            // tungstenite queued the pong: flush it.
            WsMessage::Ping(_) => self.unflushed = true,
            WsMessage::Pong(_) | WsMessage::Frame(_) => {}
        }
        None
    }

    /// A broken frame gets its close code (RFC 6455 §7.4.1) before the socket goes.
    fn on_read_error(&mut self, error: WsError) -> Option<String> {
        self.reading = false;
        let (code, reason) = match &error {
            WsError::Capacity(_) => (close_code::TOO_BIG, "frame too large"),
            WsError::Utf8(_) => (close_code::INVALID_DATA, "text frame is not UTF-8"),
            WsError::Protocol(
                ProtocolError::ResetWithoutClosingHandshake | ProtocolError::SendAfterClosing,
            ) => return Some(format!("read error: {error}")),
            WsError::Protocol(_) => (close_code::PROTOCOL_ERROR, "protocol error"),
            _ => return Some(format!("read error: {error}")),
        };
        debug!(session = %self.session.member.info.session, "closing with {code}: {error}");
        counter!("switchboard_bridge_protocol_errors_total", "code" => code.to_string())
            .increment(1);
        self.queue.close(code, reason);
        None
    }

    fn on_tick(&mut self) {
        let hub = self.session.state.hub.clone();
        let bridge = &hub.config().bridge;
        let now = Instant::now();
        let silence = Duration::from_millis(bridge.heartbeat_ms + bridge.heartbeat_timeout_ms);
        let frame_timeout = Duration::from_millis(bridge.frame_timeout_ms);
        if self.closing_since.is_none() {
            self.session.check_token(now);
            if now.duration_since(self.last_heard) >= silence {
                self.queue
                    .close(close_code::HEARTBEAT_TIMEOUT, "no answer to pings");
            } else if self
                .socket
                .get_ref()
                .unfinished_for()
                .is_some_and(|waiting| waiting >= frame_timeout)
            {
                self.queue
                    .close(close_code::POLICY, "frame not finished in time");
            } else if now >= self.next_ping {
                self.queue.check_stalled();
                self.queue.push_ping();
                self.next_ping = now + Duration::from_millis(bridge.heartbeat_ms);
            }
        }
        self.arm_timer(silence, frame_timeout);
    }

    fn rearm(&mut self) {
        let bridge = &self.session.state.hub.config().bridge;
        let silence = Duration::from_millis(bridge.heartbeat_ms + bridge.heartbeat_timeout_ms);
        let frame_timeout = Duration::from_millis(bridge.frame_timeout_ms);
        self.arm_timer(silence, frame_timeout);
    }

    /// Sets the timer to the first of: the next ping, the silence deadline, the
    /// unfinished-frame deadline, the end of the closing grace.
    fn arm_timer(&mut self, silence: Duration, frame_timeout: Duration) {
        let mut next = self.next_ping.min(self.last_heard + silence);
        if let Some(deadline) = self.session.token_deadline() {
            next = next.min(deadline.max(Instant::now()));
        }
        if let Some(waiting) = self.socket.get_ref().unfinished_for() {
            next = next.min(Instant::now() + frame_timeout.saturating_sub(waiting));
        }
        if let Some(since) = self.closing_since {
            next = since + CLOSE_GRACE;
        }
        self.timer.as_mut().reset(next.into());
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Poll::Ready(closed) = self.poll_write(cx) {
            return Poll::Ready(Event::Closed(closed));
        }
        if self.reading && self.closing_since.is_none() {
            let watching = self.socket.get_ref().unfinished_for().is_some();
            if let Poll::Ready(frame) = Pin::new(&mut self.socket).poll_next(cx) {
                return Poll::Ready(Event::Frame(frame));
            }
            if !watching && self.socket.get_ref().unfinished_for().is_some() {
                // A frame has begun: its deadline may come before the timer's.
                return Poll::Ready(Event::Tick);
            }
        }
        if self.timer.as_mut().poll(cx).is_ready() {
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
            if let Outgoing::Message { message, .. } = &entry {
                self.delivered.push(message.arrived);
            }
            let message = crate::written::message(entry, self.codec);
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
        match ready!(Pin::new(&mut self.socket).poll_flush(cx)) {
            Ok(()) => {}
            // The closing handshake the client began is complete.
            Err(WsError::ConnectionClosed) => return Poll::Ready("client closed".into()),
            Err(e) => return Poll::Ready(format!("write error: {e}")),
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

    /// Sends the close frame (replies queued before it are already out), then waits
    /// for the client's own close frame.
    fn poll_close(&mut self, cx: &mut Context<'_>, code: u16, reason: String) -> Poll<String> {
        let why = format!("closed {code}: {reason}");
        if self.closing_since.is_none() {
            self.closing_since = Some(Instant::now());
            // Others see it leave now, not after the closing handshake.
            self.session.leave_rooms();
            self.timer
                .as_mut()
                .reset((Instant::now() + CLOSE_GRACE).into());
        }
        if !self.close_sent {
            if ready!(Pin::new(&mut self.socket).poll_ready(cx)).is_err() {
                return Poll::Ready(why);
            }
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: Utf8Bytes::from(reason),
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
        if switchboard_broker::repeats::allow("browser disconnected") {
            info!(session = %self.session.member.info.session, reason, "browser disconnected");
        }
    }
}

/// Also when the task panics: the connection leaves its rooms and the registry.
impl Drop for Browser {
    fn drop(&mut self) {
        self.session.leave_rooms();
        self.session.state.sockets.remove(self.session.conn);
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
