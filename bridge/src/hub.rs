//! The hub: rooms and their members, the room index, history and retained state.
//! Joining and dispatching share one lock so that a message accepted while a join
//! is answered is either in `missed` or pushed after `joined` — never both, never
//! neither.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::{counter, gauge};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use switchboard_broker::{DeviceInfo, EventFeed, OfflineReason};
use switchboard_config::Config;

use crate::history::{MemoryHistory, Resume};
use crate::message::Message;
use crate::outbound::OutboundQueue;
use crate::protocol::{reply, ErrorCode};
use crate::retained::RetainedView;
use crate::room_index::RoomIndex;
use crate::rooms::{RoomKind, RoomSpec};
use crate::store::SavedHistory;

pub type ConnId = u64;

/// One browser connection as rooms see it.
pub struct Member {
    pub queue: Arc<OutboundQueue>,
    pub session: Arc<str>,
    pub user: Option<Arc<str>>,
}

impl Member {
    fn describe(&self) -> Value {
        match &self.user {
            Some(user) => json!({"session": &*self.session, "user": &**user}),
            None => json!({"session": &*self.session}),
        }
    }
}

struct Room {
    spec: Arc<RoomSpec>,
    members: HashMap<ConnId, Arc<Member>>,
}

#[derive(Default)]
struct Rooms {
    index: RoomIndex,
    topic_rooms: HashMap<Arc<str>, Room>,
    device_rooms: HashMap<Arc<str>, Room>,
}

impl Rooms {
    fn table(&mut self, kind: &RoomKind) -> &mut HashMap<Arc<str>, Room> {
        match kind {
            RoomKind::Devices => &mut self.device_rooms,
            _ => &mut self.topic_rooms,
        }
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
    rooms: RwLock<Rooms>,
    history: Mutex<MemoryHistory>,
    pub retained: Arc<RetainedView>,
    epoch: Arc<str>,
    devices: EventFeed,
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
        id: Option<&Value>,
    ) -> Result<Arc<RoomSpec>, (ErrorCode, String)> {
        let mut rooms = self.rooms.write();
        let name = spec.name.clone();
        let kind = spec.kind.clone();
        let table = rooms.table(&kind);
        if table
            .get(&name)
            .is_some_and(|room| room.members.contains_key(&conn))
        {
            return Err((
                ErrorCode::AlreadyJoined,
                format!("already in room {name:?}"),
            ));
        }
        let created = !table.contains_key(&name);
        let room = table.entry(name.clone()).or_insert_with(|| Room {
            spec: Arc::new(spec),
            members: HashMap::new(),
        });
        room.members.insert(conn, member.clone());
        let spec = room.spec.clone();
        let others: Vec<Arc<Member>> = room
            .members
            .iter()
            .filter(|(c, _)| **c != conn)
            .map(|(_, m)| m.clone())
            .collect();
        if created {
            if kind != RoomKind::Devices {
                for filter in &spec.filters {
                    rooms.index.insert(filter, &name);
                }
            }
            gauge!("switchboard_bridge_rooms").set(rooms.count() as f64);
            gauge!("switchboard_bridge_room_filters").set(rooms.index.len() as f64);
        }

        let joined = match kind {
            RoomKind::Devices => self.devices_joined(&spec, id),
            _ => self.topic_joined(&spec, start, id),
        };
        member.queue.push_frame(to_bytes(&joined));
        if spec.presence {
            let event = to_bytes(
                &json!({"type": "member", "room": &*name, "event": "join", "member": member.describe()}),
            );
            for other in others {
                other.queue.push_frame(event.clone());
            }
        }
        Ok(spec)
    }

    fn topic_joined(&self, spec: &RoomSpec, start: StartAt, id: Option<&Value>) -> Value {
        let history = self.history.lock();
        let head = history.head();
        let (state, truncated) = self
            .retained
            .matching(&spec.filters, self.config.bridge.max_state_topics);
        let state: Vec<Value> = state.iter().map(|v| v.state_item()).collect();
        let mut map = serde_json::Map::new();
        map.insert("room".into(), (*spec.name).into());
        map.insert("epoch".into(), (*self.epoch).into());
        map.insert("offset".into(), head.to_string().into());
        map.insert("state".into(), state.into());
        if truncated {
            map.insert("state_truncated".into(), true.into());
        }
        match start {
            StartAt::Now => {}
            StartAt::Rewind(count) => {
                let count = count.min(spec.history_limit);
                let missed: Vec<Value> = history
                    .rewind(count, &spec.filters)
                    .iter()
                    .map(|m| m.to_value(&spec.name))
                    .collect();
                map.insert("missed".into(), missed.into());
            }
            StartAt::Since { epoch, offset } => {
                let resume = match offset {
                    Some(offset) if epoch == *self.epoch => {
                        history.since(offset, &spec.filters, spec.history_limit)
                    }
                    _ => Resume::Incomplete,
                };
                match resume {
                    Resume::Complete(messages) => {
                        let missed: Vec<Value> =
                            messages.iter().map(|m| m.to_value(&spec.name)).collect();
                        map.insert("recovered".into(), true.into());
                        map.insert("missed".into(), missed.into());
                    }
                    Resume::Incomplete => {
                        map.insert("recovered".into(), false.into());
                        map.insert("missed".into(), Value::Array(Vec::new()));
                    }
                }
            }
        }
        reply("joined", id, Value::Object(map))
    }

    fn devices_joined(&self, spec: &RoomSpec, id: Option<&Value>) -> Value {
        let mut online: Vec<DeviceInfo> = self
            .devices
            .online_devices()
            .into_iter()
            .filter(|d| spec.matches_client(&d.client_id))
            .collect();
        online.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let state: Vec<Value> = online.iter().map(device_state).collect();
        reply(
            "joined",
            id,
            json!({"room": &*spec.name, "epoch": &*self.epoch, "offset": self.history.lock().head().to_string(), "state": state}),
        )
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
            let others: Vec<Arc<Member>> = entry.members.values().cloned().collect();
            if entry.members.is_empty() {
                table.remove(room);
                if kind != RoomKind::Devices {
                    for filter in &spec.filters {
                        rooms.index.remove(filter, room);
                    }
                }
                gauge!("switchboard_bridge_rooms").set(rooms.count() as f64);
                gauge!("switchboard_bridge_room_filters").set(rooms.index.len() as f64);
            }
            if spec.presence {
                let event = to_bytes(
                    &json!({"type": "member", "room": room, "event": "leave", "member": member.describe()}),
                );
                for other in others {
                    other.queue.push_frame(event.clone());
                }
            }
            return true;
        }
        false
    }

    /// The members of `room`, or `None` if nobody is in it.
    pub fn members(&self, room: &str) -> Option<Vec<Value>> {
        let rooms = self.rooms.read();
        let entry = rooms
            .topic_rooms
            .get(room)
            .or_else(|| rooms.device_rooms.get(room))?;
        let mut members: Vec<Value> = entry.members.values().map(|m| m.describe()).collect();
        members.sort_by(|a, b| a["session"].as_str().cmp(&b["session"].as_str()));
        Some(members)
    }

    /// A message from the core: give it an offset, log it, push it to every room it
    /// matches (serialised once per room).
    pub fn dispatch(&self, topic: &str, payload: Bytes, retain: bool) {
        let mut matched_rooms = Vec::new();
        let scratch = &mut matched_rooms;
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
        rooms.index.rooms_for(topic, scratch);
        for name in scratch.iter() {
            let Some(room) = rooms.topic_rooms.get(name) else {
                continue;
            };
            let frame = message.frame(name, false);
            for member in room.members.values() {
                member.queue.push_message(name, &message, &frame);
            }
        }
    }

    /// A device came online or went offline: push to matching `$devices` rooms.
    pub fn device_online(&self, info: &DeviceInfo) {
        self.push_device(&info.client_id, |room| {
            let mut frame = device_state(info);
            if let Some(map) = frame.as_object_mut() {
                map.insert("type".into(), "device".into());
                map.insert("room".into(), room.into());
            }
            frame
        });
    }

    pub fn device_offline(&self, client_id: &str, reason: OfflineReason) {
        self.push_device(client_id, |room| {
            json!({"type": "device", "room": room, "client_id": client_id, "online": false, "reason": reason.label()})
        });
    }

    fn push_device(&self, client_id: &str, frame: impl Fn(&str) -> Value) {
        let rooms = self.rooms.read();
        for (name, room) in &rooms.device_rooms {
            if room.spec.matches_client(client_id) {
                let bytes = to_bytes(&frame(name));
                for member in room.members.values() {
                    member.queue.push_frame(bytes.clone());
                }
            }
        }
    }
}

fn device_state(info: &DeviceInfo) -> Value {
    let mut item = json!({"client_id": &*info.client_id, "online": true, "since": info.since_ms});
    if let (Some(user), Some(map)) = (&info.username, item.as_object_mut()) {
        map.insert("username".into(), user.clone().into());
    }
    item
}

pub fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}
