//! `GET /sse?room=…&room=…`: the rooms' messages as `text/event-stream`. Each room's
//! state comes first as `state` events (no id), then `message` events with
//! `id: <epoch>:<offset>`; a reconnecting EventSource sends `Last-Event-ID` and
//! resumes exactly like `join` with `since`. The headers and a first comment go out
//! at once (so `onopen` fires); comment lines keep idle streams open.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{self, Stream, StreamExt};
use parking_lot::RwLock;
use tokio::sync::OwnedSemaphorePermit;

use crate::accept::PendingRelease;
use switchboard_broker::auth::SharedAccess;

use crate::frames::MemberInfo;
use crate::grant::{token_in, Grant};
use crate::hub::{Member, SeesMembers, StartAt};
use crate::joined::{Joined, State as JoinedState};
use crate::outbound::{OutboundQueue, Outgoing, QueueLimits};
use crate::rooms::resolve;
use crate::BridgeState;

pub async fn stream(
    State(bridge): State<BridgeState>,
    release: Option<Extension<PendingRelease>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let rooms: Vec<String> = query
        .into_iter()
        .filter(|(k, _)| k == "room")
        .map(|(_, v)| v)
        .collect();
    let config = bridge.hub.config();
    let origin = headers.get("origin").and_then(|v| v.to_str().ok());
    if let Err(why) = switchboard_broker::origin::check(origin, &config.http) {
        metrics::counter!("switchboard_bridge_refusals_total", "reason" => "origin").increment(1);
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    if rooms.is_empty() {
        return (StatusCode::BAD_REQUEST, "give at least one ?room=\n").into_response();
    }
    if rooms.len() > config.bridge.max_rooms_per_connection {
        return (StatusCode::BAD_REQUEST, "too many rooms\n").into_response();
    }
    let grant = match token_grant(&bridge, &headers, &uri) {
        Ok(grant) => grant,
        Err(why) => {
            metrics::counter!("switchboard_bridge_refusals_total", "reason" => "token")
                .increment(1);
            let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
            return (StatusCode::UNAUTHORIZED, challenge, format!("{why}\n")).into_response();
        }
    };
    let mut specs = Vec::new();
    for name in &rooms {
        match resolve(config, name) {
            Ok(spec) if grant.as_ref().is_some_and(|g| !g.may_join(&spec)) => {
                let message = format!("the token does not grant room {name:?}\n");
                return (StatusCode::FORBIDDEN, message).into_response();
            }
            Ok(spec) => specs.push(spec),
            Err((_, message)) => {
                return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
            }
        }
    }
    let Ok(permit) = bridge.connections.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    };
    // From here the stream counts against [bridge] max_connections, not [http] max_pending.
    if let Some(Extension(release)) = release {
        release.release();
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.split_once(':'))
        .map(|(epoch, offset)| (epoch.to_string(), offset.parse().ok()));

    let queue = Arc::new(OutboundQueue::new(QueueLimits::from_config(&config.bridge)));
    let session: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
    let user = grant.as_ref().and_then(|g| g.claims.sub.clone());
    let member = Arc::new(Member {
        queue: queue.clone(),
        info: MemberInfo {
            session: session.clone(),
            user: user.as_deref().map(Arc::from),
        },
        access: SharedAccess::new(bridge.auth.clone(), (user.as_deref(), &session)),
        sees: RwLock::new(match &grant {
            Some(g) => SeesMembers::Granted(g.claims.clone()),
            None => SeesMembers::All,
        }),
    });
    let conn = bridge.hub.next_conn_id();
    let mut joined = Vec::new();
    for spec in specs {
        let start = match &resume {
            Some((epoch, offset)) => StartAt::Since {
                epoch: epoch.clone(),
                offset: *offset,
            },
            None => StartAt::Now,
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
    let opened = stream::once(async { Ok(Event::default().comment("open")) });
    let events = opened.chain(events(
        queue,
        bridge.hub.epoch().to_string(),
        resume.is_some(),
        guard,
    ));
    // The stream ends when the token expires; EventSource reconnects with the cookie.
    let expires = grant.map(|g| tokio::time::Instant::from_std(g.expires));
    let events = events.take_until(async move {
        match expires {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    });
    let heartbeat = Duration::from_millis(config.bridge.heartbeat_ms.min(15_000));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("keep-alive"))
        .into_response()
}

/// With browser auth on: the request's verified token, else why not.
pub(crate) fn token_grant(
    bridge: &BridgeState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<Grant>, String> {
    let auth = bridge.auth.current();
    if !auth.browsers_need_tokens() {
        return Ok(None);
    }
    let config = &bridge.hub.config().auth;
    let cookie = &config.jwt_cookie;
    let token = token_in(headers, uri, config)?
        .ok_or_else(|| format!("a token is needed: cookie {cookie} or Authorization: Bearer"))?;
    let claims = auth.verify_token(&token).map_err(|e| e.to_string())?;
    Ok(Some(Grant::new(claims)))
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
    stream::unfold(
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
                            Outgoing::Joined(joined) => {
                                joined_events(&joined, &epoch, resuming, &mut events)
                            }
                            Outgoing::Message {
                                message,
                                room,
                                conflated,
                                ..
                            } => events.push(message_event(
                                &epoch,
                                message.offset,
                                &message.frame(&room, conflated),
                            )),
                            // Member and device pushes are for /ws; SSE rooms are topic rooms.
                            Outgoing::Frame(_) | Outgoing::Push(_) | Outgoing::Ping => {}
                        }
                    }
                    events.reverse();
                    ready = events;
                }
            }
        },
    )
}

fn message_event(epoch: &str, offset: u64, frame: &[u8]) -> Event {
    Event::default()
        .event("message")
        .id(format!("{epoch}:{offset}"))
        .data(String::from_utf8_lossy(frame))
}

/// A `joined` reply becomes `state` events, then the missed messages (on resume).
fn joined_events(joined: &Joined, epoch: &str, resuming: bool, out: &mut Vec<Event>) {
    if !resuming || !joined.recovered() {
        if let JoinedState::Retained(values) = &joined.state {
            for value in values {
                let data =
                    serde_json::to_string(&value.item(Some(&joined.room))).unwrap_or_default();
                out.push(Event::default().event("state").data(data));
            }
        }
    }
    for message in joined.missed_messages() {
        let frame = message.frame(&joined.room, false);
        out.push(message_event(epoch, message.offset, &frame));
    }
}
