//! The hub: rooms and their members, the room index, history and retained state.
//! Joining and dispatching share one lock so that a message accepted while a join
//! is answered is either in `missed` or pushed after `joined` — never both, never
//! neither. What a join replies is gathered there as shared references; encoding it
//! happens later, in the joining connection's task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::{counter, gauge};
use parking_lot::{Mutex, RwLock};
use switchboard_broker::auth::{Claims, SharedAccess};
use switchboard_broker::EventFeed;
use switchboard_config::Config;

use crate::frames::{encode, ErrorCode, MemberEvent, MemberInfo, PushFrame, RequestId};
use crate::history::{MemoryHistory, Resume};
use crate::joined::{fit, Joined, Missed, NotRecovered, State};
use crate::message::{Message, RoomFrame};
use crate::outbound::OutboundQueue;
use crate::retained::RetainedView;
use crate::room_index::RoomIndex;
use crate::rooms::{RoomKind, RoomSpec};
use crate::store::SavedHistory;

pub type ConnId = u64;

/// One browser connection as rooms see it.
pub struct Member {
    pub queue: Arc<OutboundQueue>,
    pub info: MemberInfo,
    /// What the ACL lets it read (checked for every message and state entry).
    pub access: SharedAccess,
    /// Whose member lists and join/leave events it may see (a refreshed token
    /// replaces it).
    pub sees: RwLock<SeesMembers>,
}

impl Member {
    fn who(&self) -> (Option<&str>, &str) {
        (self.info.user.as_deref(), &self.info.session)
    }

    /// The ACL lets it read `topic`.
    pub fn may_read(&self, topic: &str) -> bool {
        self.access.may_read(self.who(), topic)
    }

    pub fn may_write(&self, topic: &str) -> bool {
        self.access.may_write(self.who(), topic)
    }
}

/// Without browser auth: every room's members. With a token: as its claims say
/// (`presence: true`, or the room named in `rooms`).
pub enum SeesMembers {
    All,
    Granted(Arc<Claims>),
}

impl SeesMembers {
    pub fn of(&self, room: &str) -> bool {
        match self {
            SeesMembers::All => true,
            SeesMembers::Granted(claims) => {
                claims.presence || claims.rooms.iter().any(|r| r == room)
            }
        }
    }
}

pub(crate) struct Room {
    pub spec: Arc<RoomSpec>,
    pub members: HashMap<ConnId, Arc<Member>>,
}

#[derive(Default)]
pub(crate) struct Rooms {
    index: RoomIndex,
    topic_rooms: HashMap<Arc<str>, Room>,
    pub device_rooms: HashMap<Arc<str>, Room>,
}

impl Rooms {
    fn table(&mut self, kind: &RoomKind) -> &mut HashMap<Arc<str>, Room> {
        match kind {
            RoomKind::Devices => &mut self.device_rooms,
            _ => &mut self.topic_rooms,
        }
    }

    fn get(&self, room: &str) -> Option<&Room> {
        self.topic_rooms
            .get(room)
            .or_else(|| self.device_rooms.get(room))
    }

    fn count(&self) -> usize {
        self.topic_rooms.len() + self.device_rooms.len()
    }
}

/// Where a `join` starts.
pub enum StartAt {
    /// Current state and live messages only.
    Now,
    /// Resume after this position; `offset` is `None` when it was unreadable.
    Since { epoch: String, offset: Option<u64> },
    /// The last N messages of the room.
    Rewind(usize),
}

pub struct Hub {
    config: Arc<Config>,
    pub(crate) rooms: RwLock<Rooms>,
    history: Mutex<MemoryHistory>,
    pub retained: Arc<RetainedView>,
    epoch: Arc<str>,
    pub(crate) devices: EventFeed,
    next_conn: AtomicU64,
}

impl Hub {
    /// `retained`: the view, already loaded from the store; `saved`: the history log
    /// of the last graceful shutdown, continued under its epoch (else a new epoch).
    pub fn new(
        config: Arc<Config>,
        devices: EventFeed,
        retained: Arc<RetainedView>,
        saved: Option<SavedHistory>,
    ) -> Hub {
        let mut history = MemoryHistory::new(
            config.history.max_messages,
            config.history.max_bytes.as_usize(),
            Duration::from_secs(config.history.max_age_secs),
            config.history.topics.clone(),
        );
        let epoch = match &saved {
            Some(saved) => {
                history.restore(saved, switchboard_broker::events::now_ms());
                saved.epoch.clone()
            }
            None => uuid::Uuid::new_v4().simple().to_string(),
        };
        Hub {
            config,
            rooms: RwLock::default(),
            history: Mutex::new(history),
            retained,
            epoch: Arc::from(epoch),
            devices,
            next_conn: AtomicU64::new(1),
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The history log, for saving at shutdown.
    pub fn saved_history(&self) -> SavedHistory {
        let history = self.history.lock();
        SavedHistory {
            epoch: self.epoch.to_string(),
            next_offset: history.next_offset(),
            records: history.snapshot(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds `member` to the room and queues its `joined` reply (state, position and
    /// missed messages) before any message of the room can be pushed to it.
    pub fn join(
        &self,
        conn: ConnId,
        member: &Arc<Member>,
        spec: RoomSpec,
        start: StartAt,
        id: RequestId,
    ) -> Result<Arc<RoomSpec>, (ErrorCode, String)> {
        let mut rooms = self.rooms.write();
        let name = spec.name.clone();
        let kind = spec.kind.clone();
        let table = rooms.table(&kind);
        if table
            .get(&name)
            .is_some_and(|room| room.members.contains_key(&conn))
        {
            let message = format!("already in room {name:?}");
            return Err((ErrorCode::AlreadyJoined, message));
        }
        let created = !table.contains_key(&name);
        let room = table.entry(name.clone()).or_insert_with(|| Room {
            spec: Arc::new(spec),
            members: HashMap::new(),
        });
        room.members.insert(conn, member.clone());
        let spec = room.spec.clone();
        let others: Vec<Arc<Member>> = match spec.presence {
            true => room
                .members
                .iter()
                .filter(|(c, m)| **c != conn && m.sees.read().of(&name))
                .map(|(_, m)| m.clone())
                .collect(),
            false => Vec::new(),
        };
        if created {
            if kind != RoomKind::Devices {
                for filter in &spec.filters {
                    rooms.index.insert(filter, &name);
                }
            }
            self.room_gauges(&rooms);
        }

        let joined = match kind {
            RoomKind::Devices => self.devices_joined(&spec, id),
            _ => self.topic_joined(&spec, member, start, id),
        };
        member.queue.push_joined(joined);
        if spec.presence {
            let event = PushFrame::new(encode(&MemberEvent {
                room: &name,
                event: "join",
                member: &member.info,
            }));
            for other in others {
                other.queue.push_shared(&event);
            }
        }
        Ok(spec)
    }

    fn room_gauges(&self, rooms: &Rooms) {
        gauge!("switchboard_bridge_rooms").set(rooms.count() as f64);
        gauge!("switchboard_bridge_room_filters").set(rooms.index.len() as f64);
    }

    fn topic_joined(
        &self,
        spec: &RoomSpec,
        member: &Member,
        start: StartAt,
        id: RequestId,
    ) -> Joined {
        let readable = |m: &Arc<Message>| member.may_read(&m.topic);
        let budget = self.config.bridge.max_reply_bytes.as_usize();
        let room = &spec.name;
        let size = |m: &Arc<Message>| m.frame_size_estimate(room);
        let history = self.history.lock();
        let offset = history.head();
        let (missed, used) = match start {
            StartAt::Now => (Missed::None, 0),
            StartAt::Rewind(count) => {
                let count = count.min(spec.history_limit);
                let mut messages = history.rewind(count, &spec.filters);
                messages.retain(readable);
                // The newest ones are kept when not all fit.
                messages.reverse();
                let (used, truncated) = fit(&mut messages, budget, size);
                messages.reverse();
                (
                    Missed::Rewind {
                        messages,
                        truncated,
                    },
                    used,
                )
            }
            StartAt::Since { epoch, offset } => {
                let resume = match offset {
                    Some(offset) if epoch == *self.epoch => {
                        history.since(offset, &spec.filters, spec.history_limit)
                    }
                    _ => Resume::Incomplete(NotRecovered::Epoch),
                };
                match resume {
                    Resume::Complete(mut messages) => {
                        messages.retain(readable);
                        match fit(&mut messages, budget, size) {
                            (used, false) => (Missed::Recovered(messages), used),
                            (_, true) => (Missed::NotRecovered(NotRecovered::TooLarge), 0),
                        }
                    }
                    Resume::Incomplete(why) => (Missed::NotRecovered(why), 0),
                }
            }
        };
        drop(history);
        let (mut state, mut state_truncated) = self
            .retained
            .matching(&spec.filters, self.config.bridge.max_state_topics);
        state.retain(|v| member.may_read(&v.topic));
        let (state_bytes, cut) = fit(&mut state, budget.saturating_sub(used), |v| {
            v.size_estimate()
        });
        state_truncated |= cut;
        Joined {
            id,
            room: spec.name.clone(),
            epoch: self.epoch.clone(),
            offset,
            state: State::Retained(state),
            state_truncated,
            missed,
            size: used + state_bytes + 200,
        }
    }

    /// The newest offset handed out, for `joined` replies.
    pub(crate) fn head(&self) -> u64 {
        self.history.lock().head()
    }

    pub(crate) fn epoch_arc(&self) -> Arc<str> {
        self.epoch.clone()
    }

    /// Removes `conn` from `room`; false if it was not a member.
    pub fn leave(&self, conn: ConnId, room: &str) -> bool {
        let mut rooms = self.rooms.write();
        for kind in [RoomKind::TopicFilter, RoomKind::Devices] {
            let table = rooms.table(&kind);
            let Some(entry) = table.get_mut(room) else {
                continue;
            };
            let Some(member) = entry.members.remove(&conn) else {
                continue;
            };
            let spec = entry.spec.clone();
            let others: Vec<Arc<Member>> = match spec.presence {
                true => entry
                    .members
                    .values()
                    .filter(|m| m.sees.read().of(room))
                    .cloned()
                    .collect(),
                false => Vec::new(),
            };
            if entry.members.is_empty() {
                table.remove(room);
                if kind != RoomKind::Devices {
                    for filter in &spec.filters {
                        rooms.index.remove(filter, room);
                    }
                }
                self.room_gauges(&rooms);
            }
            if spec.presence {
                let event = PushFrame::new(encode(&MemberEvent {
                    room,
                    event: "leave",
                    member: &member.info,
                }));
                for other in others {
                    other.queue.push_shared(&event);
                }
            }
            return true;
        }
        false
    }

    /// The members of `room` sorted by session, as many as fit in a reply (the flag
    /// says some were left out), or `None` if nobody is in it.
    pub fn members(&self, room: &str) -> Option<(Vec<MemberInfo>, bool)> {
        let mut members: Vec<MemberInfo> = {
            let rooms = self.rooms.read();
            let entry = rooms.get(room)?;
            entry.members.values().map(|m| m.info.clone()).collect()
        };
        members.sort();
        let budget = self.config.bridge.max_reply_bytes.as_usize();
        let (_, truncated) = fit(&mut members, budget, |m| {
            m.session.len() + m.user.as_ref().map_or(0, |u| u.len()) + 32
        });
        Some((members, truncated))
    }

    /// A message from the core: give it an offset, log it, push it to every room it
    /// matches (serialised once per room).
    pub fn dispatch(&self, topic: &str, payload: Bytes, retain: bool) {
        let mut matched_rooms = Vec::new();
        let arrived = Instant::now();
        let rooms = self.rooms.read();
        let message = {
            let mut history = self.history.lock();
            let message = Arc::new(Message::new(
                history.next_offset(),
                Arc::from(topic),
                payload,
                switchboard_broker::events::now_ms(),
                retain,
                arrived,
            ));
            history.append(message.clone());
            message
        };
        counter!("switchboard_bridge_messages_in_total").increment(1);
        rooms.index.rooms_for(topic, &mut matched_rooms);
        for name in &matched_rooms {
            let Some(room) = rooms.topic_rooms.get(name) else {
                continue;
            };
            let frame = Arc::new(RoomFrame::default());
            for member in room.members.values() {
                if member.may_read(topic) {
                    member.queue.push_message(name, &message, &frame);
                }
            }
        }
    }
}
