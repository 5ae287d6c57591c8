//! rumqttd's v4 and v5 codecs behind one type, chosen per connection by CONNECT.

use bytes::BytesMut;
use rumqttd::protocol::{v4::V4, v5::V5, Error, Packet, Protocol};

use crate::packet::{for_version, Version};

pub struct Codec {
    version: Version,
    v4: V4,
    v5: V5,
}

impl Codec {
    pub fn new(version: Version) -> Codec {
        Codec {
            version,
            v4: V4,
            v5: V5,
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Decodes the next packet from `buf`. Callers check the packet type first with
    /// [`crate::packet::client_may_send`]: the codecs panic on some server-only types.
    pub fn read(&mut self, buf: &mut BytesMut, max_remaining: usize) -> Result<Packet, Error> {
        match self.version {
            Version::V311 => self.v4.read_mut(buf, max_remaining),
            Version::V5 => self.v5.read_mut(buf, max_remaining),
        }
    }

    /// Encodes `packet` for this connection's version; packets a 3.1.1 client cannot
    /// receive are skipped (`Ok(0)`).
    pub fn write(&self, packet: Packet, out: &mut BytesMut) -> Result<usize, Error> {
        let Some(packet) = for_version(packet, self.version) else {
            return Ok(0);
        };
        match self.version {
            Version::V311 => self.v4.write(packet, out),
            Version::V5 => self.v5.write(packet, out),
        }
    }
}
