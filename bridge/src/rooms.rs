//! What a room name means: a configured room, an MQTT topic filter, or the reserved
//! `$devices` room of device presence.

use std::sync::Arc;

use switchboard_config::Config;

use crate::frames::ErrorCode;
use crate::topic::{matches, valid_filter};

/// The reserved room of MQTT clients' online state.
pub const DEVICES_ROOM: &str = "$devices";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomKind {
    /// `[rooms.NAME]` from config.
    Configured,
    /// An ad-hoc room named by its topic filter.
    TopicFilter,
    /// `$devices` or `$devices/<client-id filter>`.
    Devices,
}

#[derive(Debug)]
pub struct RoomSpec {
    pub name: Arc<str>,
    pub kind: RoomKind,
    /// Topic filters (for `Devices`: one filter over client ids).
    pub filters: Vec<String>,
    /// Topic filters members may publish to.
    pub publish: Vec<String>,
    /// Push member join/leave events.
    pub presence: bool,
    /// Messages a resume or rewind may return for this room.
    pub history_limit: usize,
}

impl RoomSpec {
    /// For `$devices` rooms: whether the client-id filter matches `client_id`.
    pub fn matches_client(&self, client_id: &str) -> bool {
        self.kind == RoomKind::Devices && self.filters.iter().any(|f| matches(f, client_id))
    }

    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|f| matches(f, topic))
    }
}

/// Resolves a room name against the config.
pub fn resolve(config: &Config, name: &str) -> Result<RoomSpec, (ErrorCode, String)> {
    let max_resume = config.history.max_resume;
    if let Some(why) = config.mqtt.topic_over_limits(name) {
        return Err((ErrorCode::InvalidRoom, format!("room name: {why}")));
    }
    if name == DEVICES_ROOM || name.starts_with("$devices/") {
        let filter = name.strip_prefix("$devices/").unwrap_or("#");
        if !valid_filter(filter) {
            return Err((
                ErrorCode::InvalidRoom,
                format!("{filter:?} is not a client-id filter"),
            ));
        }
        return Ok(RoomSpec {
            name: Arc::from(name),
            kind: RoomKind::Devices,
            filters: vec![filter.to_string()],
            publish: Vec::new(),
            presence: false,
            history_limit: 0,
        });
    }
    if let Some(room) = config.rooms.get(name) {
        return Ok(RoomSpec {
            name: Arc::from(name),
            kind: RoomKind::Configured,
            filters: room.topics.clone(),
            publish: room.publish.clone(),
            presence: room.presence,
            history_limit: room.history.unwrap_or(max_resume).min(max_resume),
        });
    }
    if config.bridge.topic_rooms && valid_filter(name) {
        return Ok(RoomSpec {
            name: Arc::from(name),
            kind: RoomKind::TopicFilter,
            filters: vec![name.to_string()],
            publish: Vec::new(),
            presence: false,
            history_limit: max_resume,
        });
    }
    let why = if config.bridge.topic_rooms {
        format!("{name:?} is neither a configured room nor a valid MQTT topic filter")
    } else {
        format!("{name:?} is not a configured room")
    };
    Err((ErrorCode::InvalidRoom, why))
}
