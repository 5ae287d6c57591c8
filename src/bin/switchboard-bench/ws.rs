//! Browser-side scenarios over WebSocket, against Switchboard's rooms protocol or a
//! Socket.IO 4 server (Engine.IO v4 / Socket.IO v5 spoken here directly).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::mqtt::{pace, Completion};
use crate::net::{self, Mqtt};
use crate::stats::{Report, Samples};
use crate::wire;

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Which server the browser clients talk to.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// Switchboard's `/ws` rooms protocol; messages come from an MQTT publisher.
    Switchboard,
    /// The same over the `switchboard.v1.msgpack` subprotocol (binary frames).
    SwitchboardMsgpack,
    /// A Socket.IO 4 server with rooms; messages come from a Socket.IO publisher.
    Socketio,
}

const ROOM: &str = "bench/room";

/// A joined browser client.
async fn join(
    peer: Peer,
    http: SocketAddr,
    from: Option<std::net::Ipv4Addr>,
) -> Result<Ws, String> {
    let stream = net::connect(http, from)
        .await
        .map_err(|e| format!("connect {http}: {e}"))?;
    let url = match peer {
        Peer::Switchboard | Peer::SwitchboardMsgpack => format!("ws://{http}/ws"),
        Peer::Socketio => format!("ws://{http}/socket.io/?EIO=4&transport=websocket"),
    };
    let subprotocol = (peer == Peer::SwitchboardMsgpack).then_some("switchboard.v1.msgpack");
    let (mut ws, _) = handshake_with(url, stream, subprotocol)
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    match peer {
        Peer::SwitchboardMsgpack => {
            let join = serde_json::json!({"type": "join", "id": 1, "room": ROOM});
            let frame = rmp_serde::to_vec_named(&join).map_err(|e| e.to_string())?;
            ws.send(Message::Binary(frame.into()))
                .await
                .map_err(|e| e.to_string())?;
            wait_for(&mut ws, |text| text.contains("joined")).await?;
        }
        Peer::Switchboard => {
            let request = format!("{{\"type\":\"join\",\"id\":1,\"room\":\"{ROOM}\"}}");
            ws.send(Message::Text(request.into()))
                .await
                .map_err(|e| e.to_string())?;
            wait_for(&mut ws, |text| text.contains("\"joined\"")).await?;
        }
        Peer::Socketio => {
            wait_for(&mut ws, |text| text.starts_with('0')).await?;
            ws.send(Message::Text("40".into()))
                .await
                .map_err(|e| e.to_string())?;
            wait_for(&mut ws, |text| text.starts_with("40")).await?;
            ws.send(Message::Text(format!("421[\"join\",\"{ROOM}\"]").into()))
                .await
                .map_err(|e| e.to_string())?;
            wait_for(&mut ws, |text| text.starts_with("431")).await?;
        }
    }
    Ok(ws)
}

async fn wait_for(ws: &mut Ws, done: impl Fn(&str) -> bool) -> Result<(), String> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| "no answer from the server".to_string())?;
        match frame {
            Some(Ok(Message::Text(text))) if done(&text) => return Ok(()),
            Some(Ok(Message::Text(text))) if text.contains("\"error\"") => {
                return Err(text.to_string())
            }
            // MessagePack: the frame's strings appear in it verbatim.
            Some(Ok(Message::Binary(bytes))) if done(&String::from_utf8_lossy(&bytes)) => {
                return Ok(())
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed".into()),
        }
    }
}

/// `"key":123` → 123.
pub(crate) fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Reads a client's frames until `stop`, answering Engine.IO pings, calling
/// `on_message(seq, sent_nanos, frame_bytes)` for each bench message.
async fn read_messages(
    mut read: SplitStream<Ws>,
    mut write: SplitSink<Ws, Message>,
    stop: Arc<AtomicBool>,
    mut on_message: impl FnMut(u64, u64, usize),
) {
    while !stop.load(Ordering::Relaxed) {
        let frame = match tokio::time::timeout(Duration::from_millis(200), read.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(_) => return,
            Err(_) => continue,
        };
        let text = match &frame {
            Message::Text(text) if text.as_str() == "2" => {
                let _ = write.send(Message::Text("3".into())).await;
                continue;
            }
            Message::Text(text) => std::borrow::Cow::Borrowed(text.as_str()),
            // MessagePack: the payload's bytes (the bench's JSON) appear verbatim.
            Message::Binary(bytes) => String::from_utf8_lossy(bytes),
            _ => continue,
        };
        if let (Some(seq), Some(sent)) = (
            number_after(&text, "\"seq\":"),
            number_after(&text, "\"t\":"),
        ) {
            on_message(seq, sent, frame.len());
        }
    }
}

/// Sends bench messages into the room: MQTT for Switchboard, an emit for Socket.IO.
enum Publisher {
    Mqtt(Mqtt),
    SocketIo(Box<Ws>),
}

impl Publisher {
    async fn open(peer: Peer, mqtt: SocketAddr, http: SocketAddr) -> Result<Publisher, String> {
        match peer {
            Peer::Switchboard | Peer::SwitchboardMsgpack => Ok(Publisher::Mqtt(
                Mqtt::connect(mqtt, None, "ws-bench-pub", 0).await?,
            )),
            Peer::Socketio => {
                let stream = net::connect(http, None).await.map_err(|e| e.to_string())?;
                let url = format!("ws://{http}/socket.io/?EIO=4&transport=websocket");
                let (mut ws, _) = handshake(url, stream).await.map_err(|e| e.to_string())?;
                wait_for(&mut ws, |t| t.starts_with('0')).await?;
                ws.send(Message::Text("40".into()))
                    .await
                    .map_err(|e| e.to_string())?;
                wait_for(&mut ws, |t| t.starts_with("40")).await?;
                Ok(Publisher::SocketIo(Box::new(ws)))
            }
        }
    }

    async fn send(&mut self, seq: u64, sent: u64) -> Result<(), String> {
        let body = format!("{{\"seq\":{seq},\"t\":{sent}}}");
        match self {
            Publisher::Mqtt(mqtt) => {
                let mut out = bytes::BytesMut::new();
                wire::publish(&mut out, ROOM, body.as_bytes(), 0, 0, false);
                tokio::io::AsyncWriteExt::write_all(&mut mqtt.write, &out)
                    .await
                    .map_err(|e| e.to_string())
            }
            Publisher::SocketIo(ws) => ws
                .send(Message::Text(
                    format!("42[\"publish\",\"{ROOM}\",{body}]").into(),
                ))
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

pub struct WsFanout {
    pub peer: Peer,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub clients: usize,
    pub messages: usize,
    pub rate: u64,
    pub spread: usize,
}

pub async fn fanout(args: WsFanout) -> Result<Report, String> {
    let base = Instant::now();
    let completion = Completion::new(args.messages);
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let connect_started = Instant::now();
    let frame_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for i in 0..args.clients {
        let ws = join(args.peer, args.http, net::source(i, args.spread)).await?;
        let (write, read) = ws.split();
        let completion = completion.clone();
        let (frame_bytes, frames) = (frame_bytes.clone(), frames.clone());
        readers.push(tokio::spawn(read_messages(
            read,
            write,
            stop.clone(),
            move |seq, _, bytes| {
                completion.seen(seq as usize, base.elapsed().as_nanos() as u64);
                frame_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                frames.fetch_add(1, Ordering::Relaxed);
            },
        )));
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let mut publisher = Publisher::open(args.peer, args.mqtt, args.http).await?;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    for seq in 0..args.messages {
        let now = base.elapsed().as_nanos() as u64;
        if let Some(slot) = completion.sent_at.get(seq) {
            slot.store(now, Ordering::Relaxed);
        }
        publisher.send(seq as u64, now).await?;
        tokio::time::sleep(interval).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = reader.await;
    }
    let mut report = Report::new("ws-fanout");
    report
        .set("clients", args.clients as u64)
        .set("messages", args.messages as u64)
        .set("rate_per_s", args.rate)
        .set("join_seconds", (connect_secs * 100.0).round() / 100.0)
        .set(
            "bytes_per_message",
            frame_bytes.load(Ordering::Relaxed) / frames.load(Ordering::Relaxed).max(1),
        );
    completion.report(&mut report, args.clients);
    Ok(report)
}

pub struct WsLatency {
    pub peer: Peer,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub rate: u64,
    pub duration: Duration,
}

pub async fn latency(args: WsLatency) -> Result<Report, String> {
    let base = Instant::now();
    let ws = join(args.peer, args.http, None).await?;
    let (write, read) = ws.split();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(parking_lot::Mutex::new(Samples::default()));
    let reader = {
        let samples = samples.clone();
        tokio::spawn(read_messages(
            read,
            write,
            stop.clone(),
            move |_, sent, _| {
                let now = base.elapsed().as_nanos() as u64;
                samples.lock().0.push(now.saturating_sub(sent));
            },
        ))
    };
    let mut publisher = Publisher::open(args.peer, args.mqtt, args.http).await?;
    let sent = match &mut publisher {
        Publisher::Mqtt(mqtt) => {
            let mut seq = 0u64;
            pace(
                args.rate,
                args.duration,
                0,
                |_, out| {
                    let body = format!("{{\"seq\":{seq},\"t\":{}}}", base.elapsed().as_nanos());
                    seq += 1;
                    wire::publish(out, ROOM, body.as_bytes(), 0, 0, false);
                },
                &mut mqtt.write,
            )
            .await?
        }
        Publisher::SocketIo(_) => {
            let started = Instant::now();
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while started.elapsed() < args.duration {
                tick.tick().await;
                let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
                while sent < due {
                    publisher
                        .send(sent, base.elapsed().as_nanos() as u64)
                        .await?;
                    sent += 1;
                }
            }
            sent
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = reader.await;
    let mut samples = std::mem::take(&mut *samples.lock());
    Ok(Report::latency("ws-latency", args.rate, sent, &mut samples))
}

/// Opens `count` joined, idle browser clients; hold the result to keep them open.
pub async fn idle_clients(
    peer: Peer,
    http: SocketAddr,
    count: usize,
    spread: usize,
    rate: u64,
) -> Result<Vec<Ws>, String> {
    let mut held = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        if rate > 0 {
            tokio::time::sleep_until(
                (started + Duration::from_secs_f64(i as f64 / rate as f64)).into(),
            )
            .await;
        }
        held.push(join(peer, http, net::source(i, spread)).await?);
    }
    Ok(held)
}

/// The WebSocket handshake with a browser-sized read buffer: tungstenite's default
/// (128 KiB, zeroed before every read) would make thousands of clients measure
/// themselves rather than the server.
pub(crate) async fn handshake(
    url: String,
    stream: tokio::net::TcpStream,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    handshake_with(url, stream, None).await
}

/// The same, asking for `subprotocol`.
async fn handshake_with(
    url: String,
    stream: tokio::net::TcpStream,
    subprotocol: Option<&str>,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    if let Some(subprotocol) = subprotocol {
        if let Ok(value) = subprotocol.parse() {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", value);
        }
    }
    tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_numbers_from_frames() {
        let frame = "{\"type\":\"message\",\"payload\":{\"seq\":42,\"t\":123456},\"offset\":\"7\"}";
        assert_eq!(super::number_after(frame, "\"seq\":"), Some(42));
        assert_eq!(super::number_after(frame, "\"t\":"), Some(123456));
        assert_eq!(
            super::number_after("42[\"message\",{\"seq\":3,\"t\":9}]", "\"seq\":"),
            Some(3)
        );
    }
}
