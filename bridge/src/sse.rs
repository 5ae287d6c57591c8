//! `GET /sse?room=…&room=…`: the rooms' messages as `text/event-stream`. Each room's
//! state comes first as `state` events (no id), then `message` events with
//! `id: <epoch>:<offset>`; a reconnecting EventSource sends `Last-Event-ID` and
//! resumes exactly like `join` with `since`. Comment lines keep idle streams open.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use crate::http::HttpState;
use crate::hub::{Member, StartAt};
use crate::outbound::{OutboundQueue, Outgoing, QueueLimits};
use crate::rooms::resolve;
use crate::BridgeState;

pub async fn stream(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let rooms: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "room")
        .map(|(_, v)| v)
        .collect();
    let bridge = state.bridge;
    let config = bridge.hub.config();
    if rooms.is_empty() {
        return (StatusCode::BAD_REQUEST, "give at least one ?room=\n").into_response();
    }
    if rooms.len() > config.bridge.max_rooms_per_connection {
        return (StatusCode::BAD_REQUEST, "too many rooms\n").into_response();
    }
    let Ok(permit) = bridge.connections.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    let mut specs = Vec::new();
    for name in &rooms {
        match resolve(config, name) {
            Ok(spec) => specs.push(spec),
            Err((_, message)) => {
                return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
            }
        }
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.split_once(':'))
        .map(|(epoch, offset)| StartAt::Since {
            epoch: epoch.to_string(),
            offset: offset.parse().ok(),
        });

    let queue = Arc::new(OutboundQueue::new(QueueLimits::from_config(&config.bridge)));
    let member = Arc::new(Member {
        queue: queue.clone(),
        session: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
        user: None,
    });
    let conn = bridge.hub.next_conn_id();
    let mut joined = Vec::new();
    for spec in specs {
        let start = match &resume {
            Some(StartAt::Since { epoch, offset }) => StartAt::Since {
                epoch: epoch.clone(),
                offset: *offset,
            },
            _ => StartAt::Now,
        };
        if let Ok(spec) = bridge.hub.join(conn, &member, spec, start, None) {
            joined.push(spec.name.clone());
        }
    }
    let guard = Membership {
        bridge: bridge.clone(),
        conn,
        rooms: joined,
        _permit: permit,
    };
    let events = events(
        queue,
        bridge.hub.epoch().to_string(),
        resume.is_some(),
        guard,
    );
    let heartbeat = Duration::from_millis(config.bridge.heartbeat_ms.min(15_000));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("keep-alive"))
        .into_response()
}

/// Leaves the rooms when the stream is dropped (the client went away).
struct Membership {
    bridge: BridgeState,
    conn: u64,
    rooms: Vec<Arc<str>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Membership {
    fn drop(&mut self) {
        for room in &self.rooms {
            self.bridge.hub.leave(self.conn, room);
        }
    }
}

fn events(
    queue: Arc<OutboundQueue>,
    epoch: String,
    resuming: bool,
    guard: Membership,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(
        (queue, Vec::<Event>::new(), Vec::new(), guard),
        move |(queue, mut ready, mut batch, guard)| {
            let epoch = epoch.clone();
            async move {
                loop {
                    if let Some(event) = ready.pop() {
                        return Some((Ok(event), (queue, ready, batch, guard)));
                    }
                    let mut shutdown = guard.bridge.shutdown.clone();
                    tokio::select! {
                        closed = queue.next_batch(&mut batch, 256) => {
                            if closed.is_some() {
                                return None;
                            }
                        }
                        _ = shutdown.wait_for(|stopping| *stopping) => return None,
                    }
                    let mut events = Vec::new();
                    for entry in batch.drain(..) {
                        match entry {
                            Outgoing::Frame(frame) => {
                                joined_events(&frame, &epoch, resuming, &mut events)
                            }
                            Outgoing::Message {
                                message,
                                room,
                                conflated,
                                ..
                            } => {
                                let data =
                                    String::from_utf8(message.frame(&room, conflated).to_vec())
                                        .unwrap_or_default();
                                events.push(
                                    Event::default()
                                        .event("message")
                                        .id(format!("{epoch}:{}", message.offset))
                                        .data(data),
                                );
                            }
                            Outgoing::Ping => {}
                        }
                    }
                    events.reverse();
                    ready = events;
                }
            }
        },
    )
}

/// A `joined` reply becomes `state` events, then the missed messages (on resume).
fn joined_events(frame: &[u8], epoch: &str, resuming: bool, out: &mut Vec<Event>) {
    let Ok(joined) = serde_json::from_slice::<Value>(frame) else {
        return;
    };
    let field = |name: &str| joined.get(name);
    if field("type").and_then(Value::as_str) != Some("joined") {
        return;
    }
    let room = field("room").and_then(Value::as_str).unwrap_or_default();
    let recovered = field("recovered").and_then(Value::as_bool).unwrap_or(false);
    if !resuming || !recovered {
        for item in field("state")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut item = item.clone();
            if let Some(map) = item.as_object_mut() {
                map.insert("room".into(), Value::from(room));
            }
            out.push(Event::default().event("state").data(item.to_string()));
        }
    }
    for message in field("missed")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let offset = message
            .get("offset")
            .and_then(Value::as_str)
            .unwrap_or_default();
        out.push(
            Event::default()
                .event("message")
                .id(format!("{epoch}:{offset}"))
                .data(message.to_string()),
        );
    }
}
