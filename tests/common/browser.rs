//! A browser stand-in: a real WebSocket client (tokio-tungstenite) speaking rooms
//! protocol v1 to `/ws`.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The `/ws` upgrade request asking for the JSON subprotocol.
fn ws_request(http_port: u16) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = format!("ws://127.0.0.1:{http_port}/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "switchboard.v1.json".parse().expect("header"),
    );
    request
}

/// The payloads of a `joined` reply's `missed` messages, in order.
pub fn missed_payloads(joined: &Value) -> Vec<Value> {
    joined["missed"]
        .as_array()
        .expect("missed")
        .iter()
        .map(|m| m["payload"].clone())
        .collect()
}

pub struct Browser {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: Value,
    pushes: VecDeque<Value>,
    next_id: u64,
}

/// How the server ended a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(Option<u16>),
    Open,
}

impl Browser {
    pub async fn connect(http_port: u16) -> Browser {
        let (ws, response) = tokio_tungstenite::connect_async(ws_request(http_port))
            .await
            .expect("websocket connect");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("switchboard.v1.json")
        );
        Self::welcomed(ws).await
    }

    /// Connects over a socket with a tiny receive buffer: a browser that, once it
    /// stops reading, backs up the server quickly.
    pub async fn connect_small_buffer(http_port: u16) -> Browser {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let stream = socket
            .connect(([127, 0, 0, 1], http_port).into())
            .await
            .expect("connect");
        let (ws, _) =
            tokio_tungstenite::client_async(ws_request(http_port), MaybeTlsStream::Plain(stream))
                .await
                .expect("websocket connect");
        Self::welcomed(ws).await
    }

    /// Opens `path` (e.g. `/ws?token=…`) with extra headers; no `welcome` awaited.
    pub async fn open(http_port: u16, path: &str, headers: &[(&str, &str)]) -> Browser {
        let mut request = format!("ws://127.0.0.1:{http_port}{path}")
            .into_client_request()
            .expect("request");
        for (name, value) in headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName =
                name.parse().expect("header name");
            request
                .headers_mut()
                .insert(name, value.parse().expect("header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connect");
        Browser {
            ws,
            welcome: Value::Null,
            pushes: VecDeque::new(),
            next_id: 1,
        }
    }

    /// The next frame, which must be `welcome`.
    pub async fn welcomed_now(&mut self) -> Value {
        let welcome = self
            .next_frame(Duration::from_secs(5))
            .await
            .expect("welcome");
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        self.welcome = welcome.clone();
        welcome
    }

    /// The next frame within `within`, if any.
    pub async fn frame(&mut self, within: Duration) -> Option<Value> {
        self.next_frame(within).await
    }

    async fn welcomed(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Browser {
        let mut browser = Browser {
            ws,
            welcome: Value::Null,
            pushes: VecDeque::new(),
            next_id: 1,
        };
        let welcome = browser
            .next_frame(Duration::from_secs(5))
            .await
            .expect("welcome");
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        browser.welcome = welcome;
        browser
    }

    async fn next_frame(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match frame.ok()? {
                Message::Text(text) => return serde_json::from_str(&text).ok(),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Sends `request` with a fresh id and returns the reply with that id; pushes
    /// that arrive meanwhile are kept for [`Browser::push`].
    pub async fn request(&mut self, mut request: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        request["id"] = json!(id);
        self.send_text(&request.to_string()).await;
        self.reply_to(id).await
    }

    pub async fn reply_to(&mut self, id: u64) -> Value {
        loop {
            let frame = self
                .next_frame(Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("no reply to request {id}"));
            if frame.get("id") == Some(&json!(id)) {
                return frame;
            }
            self.pushes.push_back(frame);
        }
    }

    /// The next server push (no `id`), or `None` after `within`.
    pub async fn push(&mut self, within: Duration) -> Option<Value> {
        if let Some(frame) = self.pushes.pop_front() {
            return Some(frame);
        }
        loop {
            let frame = self.next_frame(within).await?;
            if frame.get("id").is_none() {
                return Some(frame);
            }
        }
    }

    /// Pushes of `kind` until `count` arrived or `within` passed.
    pub async fn pushes_of(&mut self, kind: &str, count: usize, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        let mut found = Vec::new();
        while found.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.push(left).await {
                Some(frame) if frame["type"] == kind => found.push(frame),
                Some(_) => {}
                None => break,
            }
        }
        found
    }

    /// Joins with `request` until `missed` holds at least `wanted` messages (the
    /// router hands messages to the bridge asynchronously) or 5 s pass.
    pub async fn join_until_missed(&mut self, request: Value, wanted: usize) -> Value {
        let room = request["room"].clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let joined = self.request(request.clone()).await;
            let enough = joined["missed"]
                .as_array()
                .is_some_and(|m| m.len() >= wanted);
            if enough || tokio::time::Instant::now() > deadline {
                return joined;
            }
            self.request(json!({"type": "leave", "room": room})).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn join(&mut self, room: &str) -> Value {
        let joined = self.request(json!({"type": "join", "room": room})).await;
        assert_eq!(joined["type"], "joined", "{joined}");
        joined
    }

    /// Reads until the server closes; returns its close code.
    pub async fn until_closed(&mut self, within: Duration) -> Ended {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ended::Open,
                Ok(None) | Ok(Some(Err(_))) => return Ended::Closed(None),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Ended::Closed(frame.map(|f| u16::from(f.code)))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}
