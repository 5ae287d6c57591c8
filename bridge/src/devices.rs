//! The `$devices` rooms: which MQTT clients are online now (the `joined` state) and
//! every connect and disconnect as it happens, filtered by client id.

use bytes::Bytes;
use switchboard_broker::{DeviceInfo, OfflineReason};

use crate::frames::{encode, DeviceFrame, PushFrame, RequestId};
use crate::hub::Hub;
use crate::joined::{fit, Joined, Missed, State};
use crate::rooms::RoomSpec;

impl Hub {
    /// The `joined` reply of a `$devices` room: the matching devices online now.
    pub(crate) fn devices_joined(&self, spec: &RoomSpec, id: RequestId) -> Joined {
        let mut online: Vec<DeviceInfo> = self
            .devices
            .online_devices()
            .into_iter()
            .filter(|d| spec.matches_client(&d.client_id))
            .collect();
        online.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let budget = self.config().bridge.max_reply_bytes.as_usize();
        let (used, truncated) = fit(&mut online, budget, |d| {
            d.client_id.len() + d.username.as_ref().map_or(0, String::len) + 64
        });
        Joined {
            id,
            room: spec.name.clone(),
            epoch: self.epoch_arc(),
            offset: self.head(),
            state: State::Devices(online),
            state_truncated: truncated,
            missed: Missed::None,
            size: used + 200,
        }
    }

    /// A device came online: push to matching `$devices` rooms.
    pub fn device_online(&self, info: &DeviceInfo) {
        self.push_device(&info.client_id, |room| {
            encode(&DeviceFrame {
                kind: Some("device"),
                room: Some(room),
                client_id: &info.client_id,
                online: true,
                since: Some(info.since_ms),
                username: info.username.as_deref(),
                reason: None,
            })
        });
    }

    pub fn device_offline(&self, client_id: &str, reason: OfflineReason) {
        self.push_device(client_id, |room| {
            encode(&DeviceFrame {
                kind: Some("device"),
                room: Some(room),
                client_id,
                online: false,
                since: None,
                username: None,
                reason: Some(reason.label()),
            })
        });
    }

    fn push_device(&self, client_id: &str, frame: impl Fn(&str) -> Bytes) {
        let rooms = self.rooms.read();
        for (name, room) in &rooms.device_rooms {
            if room.spec.matches_client(client_id) {
                let push = PushFrame::new(frame(name));
                for member in room.members.values() {
                    member.queue.push_shared(&push);
                }
            }
        }
    }
}
