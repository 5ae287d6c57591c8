//! The `joined` reply. Its parts are gathered under the hub's lock as shared
//! references (no payload is copied or encoded there), bounded by
//! `[bridge] max_reply_bytes`, and serialised later by the connection's own task.

use std::sync::Arc;

use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use switchboard_broker::DeviceInfo;

use crate::frames::{DeviceFrame, RequestId};
use crate::message::{Message, RetainedValue};

/// What a room's `state` holds.
pub enum State {
    Retained(Vec<RetainedValue>),
    Devices(Vec<DeviceInfo>),
}

/// Why a resume could not be complete (`recovered: false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRecovered {
    /// The epoch changed or the offset is not one of ours.
    Epoch,
    /// The history no longer holds the gap (or the room keeps none).
    Gap,
    /// More messages than the room's resume limit.
    TooMany,
    /// More bytes than `[bridge] max_reply_bytes`.
    TooLarge,
}

impl NotRecovered {
    pub fn label(self) -> &'static str {
        match self {
            NotRecovered::Epoch => "epoch_changed",
            NotRecovered::Gap => "gap_not_covered",
            NotRecovered::TooMany => "too_many_missed",
            NotRecovered::TooLarge => "too_large",
        }
    }
}

pub enum Missed {
    /// A plain join: no `missed`.
    None,
    /// A rewind: the newest messages that fit; `truncated` when fewer than asked.
    Rewind {
        messages: Vec<Arc<Message>>,
        truncated: bool,
    },
    Recovered(Vec<Arc<Message>>),
    NotRecovered(NotRecovered),
}

pub struct Joined {
    pub id: RequestId,
    pub room: Arc<str>,
    pub epoch: Arc<str>,
    pub offset: u64,
    pub state: State,
    pub state_truncated: bool,
    pub missed: Missed,
    /// About how many bytes it will take on the wire.
    pub size: usize,
}

impl std::fmt::Debug for Joined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joined")
            .field("room", &self.room)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Joined {
    /// Messages a client that resumed has to process after it (for SSE).
    pub fn missed_messages(&self) -> &[Arc<Message>] {
        match &self.missed {
            Missed::Rewind { messages, .. } | Missed::Recovered(messages) => messages,
            Missed::None | Missed::NotRecovered(_) => &[],
        }
    }

    pub fn recovered(&self) -> bool {
        matches!(self.missed, Missed::Recovered(_))
    }
}

impl Serialize for Joined {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "type", rename = "joined")]
        struct Frame<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            id: &'a RequestId,
            room: &'a str,
            epoch: &'a str,
            offset: String,
            state: StateList<'a>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            state_truncated: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            recovered: Option<bool>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'static str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            missed: Option<MissedList<'a>>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            missed_truncated: bool,
        }
        let (recovered, reason, truncated) = match &self.missed {
            Missed::None => (None, None, false),
            Missed::Rewind { truncated, .. } => (None, None, *truncated),
            Missed::Recovered(_) => (Some(true), None, false),
            Missed::NotRecovered(why) => (Some(false), Some(why.label()), false),
        };
        let missed = match &self.missed {
            Missed::None => None,
            _ => Some(MissedList {
                room: &self.room,
                messages: self.missed_messages(),
            }),
        };
        Frame {
            id: &self.id,
            room: &self.room,
            epoch: &self.epoch,
            offset: self.offset.to_string(),
            state: StateList(&self.state),
            state_truncated: self.state_truncated,
            recovered,
            reason,
            missed,
            missed_truncated: truncated,
        }
        .serialize(serializer)
    }
}

struct StateList<'a>(&'a State);

impl Serialize for StateList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            State::Retained(values) => {
                let mut seq = serializer.serialize_seq(Some(values.len()))?;
                for value in values {
                    seq.serialize_element(&value.item(None))?;
                }
                seq.end()
            }
            State::Devices(devices) => {
                let mut seq = serializer.serialize_seq(Some(devices.len()))?;
                for device in devices {
                    seq.serialize_element(&device_state(device))?;
                }
                seq.end()
            }
        }
    }
}

struct MissedList<'a> {
    room: &'a str,
    messages: &'a [Arc<Message>],
}

impl Serialize for MissedList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.messages.len()))?;
        for message in self.messages {
            seq.serialize_element(&message.frame_ref(self.room, false))?;
        }
        seq.end()
    }
}

/// A device as a `$devices` state item.
pub fn device_state(info: &DeviceInfo) -> DeviceFrame<'_> {
    DeviceFrame {
        kind: None,
        room: None,
        client_id: &info.client_id,
        online: true,
        since: Some(info.since_ms),
        username: info.username.as_deref(),
        reason: None,
    }
}

/// Keeps the longest prefix of `items` whose estimated sizes fit in `budget`;
/// returns the bytes used and whether items were dropped.
pub fn fit<T>(items: &mut Vec<T>, budget: usize, size: impl Fn(&T) -> usize) -> (usize, bool) {
    let mut used = 0;
    let mut keep = 0;
    for item in items.iter() {
        let next = used + size(item);
        if next > budget {
            break;
        }
        used = next;
        keep += 1;
    }
    let dropped = keep < items.len();
    items.truncate(keep);
    (used, dropped)
}
