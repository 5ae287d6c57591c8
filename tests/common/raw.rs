//! Raw MQTT over TCP for tests that need exact bytes: packets are built with
//! rumqttd's codecs (client → server types encode fine) and replies are parsed here.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::v5::V5;
use rumqttd::protocol::{
    Connect, ConnectProperties, Filter, LastWill, Packet, Protocol, Publish, QoS,
    RetainForwardRule, Subscribe,
};

/// MQTT control packet types (the high nibble of a packet's first byte).
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBACK: u8 = 9;
pub const UNSUBACK: u8 = 11;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;

pub struct Frame {
    pub first: u8,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
}

pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("raw connect");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and completes a 3.1.1 clean-session CONNECT as `client_id`.
    pub fn connected(addr: SocketAddr, client_id: &str) -> RawClient {
        let mut client = RawClient::connect(addr);
        client.send(&connect_v4(client_id, true, 120));
        let connack = client.expect_kind(CONNACK, Duration::from_secs(5));
        assert_eq!(connack_code(&connack), 0, "CONNACK for {client_id}");
        client
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw write");
    }

    /// Reads the next whole packet, or `None` on end of stream or after `within`.
    pub fn read_frame(&mut self, within: Duration) -> Option<Frame> {
        let end = Instant::now() + within;
        loop {
            if let Some(frame) = self.take_frame() {
                return Some(frame);
            }
            let left = end.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // A spurious wake-up or a signal: try again until the deadline.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    fn take_frame(&mut self) -> Option<Frame> {
        let first = *self.buf.first()?;
        let mut remaining = 0usize;
        let mut header_len = None;
        for (i, byte) in self.buf.iter().skip(1).enumerate().take(4) {
            remaining |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                header_len = Some(i + 2);
                break;
            }
        }
        let header_len = header_len?;
        if self.buf.len() < header_len + remaining {
            return None;
        }
        let body = self.buf[header_len..header_len + remaining].to_vec();
        self.buf.drain(..header_len + remaining);
        Some(Frame { first, body })
    }

    /// Reads frames until one of `kind` arrives (others are skipped).
    pub fn expect_kind(&mut self, kind: u8, within: Duration) -> Frame {
        let end = Instant::now() + within;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.read_frame(left) {
                Some(frame) if frame.kind() == kind => return frame,
                Some(_) => continue,
                None => break,
            }
        }
        panic!("no packet of type {kind} within {within:?}");
    }

    /// The return code (3.1.1) or reason code (5) of the CONNACK that must come next.
    pub fn connack(&mut self) -> u8 {
        let frame = self.read_frame(Duration::from_secs(5)).expect("CONNACK");
        connack_code(&frame)
    }

    /// True when the server closes the connection within `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(_) => return true,
            }
        }
        false
    }
}

pub fn connect_v4(client_id: &str, clean: bool, keep_alive: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    let connect = Connect {
        keep_alive,
        client_id: client_id.to_string(),
        clean_session: clean,
    };
    V4.write(Packet::Connect(connect, None, None, None, None), &mut out)
        .expect("encode connect");
    out.to_vec()
}

pub fn connect_v5(
    client_id: &str,
    keep_alive: u16,
    properties: Option<ConnectProperties>,
) -> Vec<u8> {
    let mut out = BytesMut::new();
    let connect = Connect {
        keep_alive,
        client_id: client_id.to_string(),
        clean_session: true,
    };
    V5.write(
        Packet::Connect(connect, properties, None, None, None),
        &mut out,
    )
    .expect("encode connect");
    out.to_vec()
}

/// A clean-session CONNECT as `client_id` with a username and password.
pub fn connect_login_as(v5: bool, client_id: &str, login: (&str, &str)) -> Vec<u8> {
    connect_login(v5, client_id, Some(login))
}

/// A clean-session CONNECT with a username and password (`None`: no login at all).
pub fn connect_login(v5: bool, client_id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    let connect = Connect {
        keep_alive: 60,
        client_id: client_id.to_string(),
        clean_session: true,
    };
    let login = login.map(|(username, password)| rumqttd::protocol::Login {
        username: username.to_string(),
        password: password.to_string(),
    });
    encode(v5, Packet::Connect(connect, None, None, None, login))
}

pub fn connect_properties() -> ConnectProperties {
    ConnectProperties {
        session_expiry_interval: None,
        receive_maximum: None,
        max_packet_size: None,
        topic_alias_max: None,
        request_response_info: None,
        request_problem_info: None,
        user_properties: Vec::new(),
        authentication_method: None,
        authentication_data: None,
    }
}

/// A QoS 0 PUBLISH.
pub fn publish(v5: bool, topic: &str, payload: &[u8]) -> Vec<u8> {
    let packet = Packet::Publish(
        Publish::new(
            bytes::Bytes::copy_from_slice(topic.as_bytes()),
            bytes::Bytes::copy_from_slice(payload),
            false,
        ),
        None,
    );
    encode(v5, packet)
}

/// A client → server packet in either version.
fn encode(v5: bool, packet: Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    if v5 {
        V5.write(packet, &mut out).expect("encode");
    } else {
        V4.write(packet, &mut out).expect("encode");
    }
    out.to_vec()
}

/// A SUBSCRIBE of one filter at QoS 0 (packet id 1).
pub fn subscribe(v5: bool, filter: &str) -> Vec<u8> {
    subscribe_at(v5, &[filter], QoS::AtMostOnce)
}

/// CONNACK's return code (3.1.1) or reason code (5).
pub fn connack_code(frame: &Frame) -> u8 {
    assert_eq!(frame.kind(), 2, "expected CONNACK");
    frame.body[1]
}

/// A v5 CONNACK property by id: its raw value bytes.
pub fn connack_property(frame: &Frame, id: u8) -> Option<Vec<u8>> {
    let body = &frame.body;
    let (props_len, len_len) = varint(&body[2..])?;
    let mut props = &body[2 + len_len..2 + len_len + props_len];
    while let Some(&pid) = props.first() {
        let size = match pid {
            0x11 | 0x27 => 4,
            0x13 | 0x21 | 0x22 => 2,
            0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x12 | 0x15 | 0x1A | 0x1C | 0x1F | 0x16 => {
                2 + usize::from(u16::from_be_bytes([props[1], props[2]]))
            }
            0x26 => {
                let k = usize::from(u16::from_be_bytes([props[1], props[2]]));
                let v = usize::from(u16::from_be_bytes([props[3 + k], props[4 + k]]));
                4 + k + v
            }
            _ => return None,
        };
        if pid == id {
            return Some(props[1..1 + size].to_vec());
        }
        props = &props[1 + size..];
    }
    None
}

fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, b) in bytes.iter().enumerate().take(4) {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The topic and payload of a QoS 0 PUBLISH frame (v5: after the properties).
pub fn publish_parts(frame: &Frame, v5: bool) -> (String, Vec<u8>) {
    let body = &frame.body;
    let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let topic = String::from_utf8_lossy(&body[2..2 + topic_len]).to_string();
    let mut at = 2 + topic_len;
    if (frame.first >> 1) & 3 > 0 {
        at += 2;
    }
    if v5 {
        let (len, len_len) = varint(&body[at..]).expect("props length");
        at += len_len + len;
    }
    (topic, body[at..].to_vec())
}

/// A v5 PUBLISH at `qos` with packet id `pkid` and no properties.
pub fn publish_with_v5(topic: &str, payload: &[u8], qos: u8, pkid: u16) -> Vec<u8> {
    publish_body(topic, payload, qos, pkid, false, true)
}

/// A 3.1.1 PUBLISH with any QoS and the retain flag, encoded by hand.
pub fn publish_with(topic: &str, payload: &[u8], qos: u8, pkid: u16, retain: bool) -> Vec<u8> {
    publish_body(topic, payload, qos, pkid, retain, false)
}

fn publish_body(
    topic: &str,
    payload: &[u8],
    qos: u8,
    pkid: u16,
    retain: bool,
    v5: bool,
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    if v5 {
        // An empty properties section.
        body.push(0);
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1) | u8::from(retain), body)
}

/// Publishes `count` retained QoS 1 messages on `prefix/<n>` and waits for every PUBACK.
pub fn publish_retained_acked(addr: SocketAddr, prefix: &str, count: usize) {
    let mut client = RawClient::connect(addr);
    client.send(&connect_v4(&format!("retained-{prefix}"), true, 60));
    assert_eq!(
        connack_code(&client.expect_kind(CONNACK, Duration::from_secs(5))),
        0
    );
    let mut bytes = Vec::new();
    for n in 0..count {
        bytes.extend(publish_with(
            &format!("{prefix}/{n}"),
            format!("value {n}").as_bytes(),
            1,
            (n % 60000 + 1) as u16,
            true,
        ));
    }
    client.send(&bytes);
    for _ in 0..count {
        client.expect_kind(PUBACK, Duration::from_secs(10));
    }
}

/// A SUBSCRIBE of several filters at QoS 1 (packet id 1).
pub fn subscribe_many(v5: bool, filters: &[&str]) -> Vec<u8> {
    subscribe_at(v5, filters, QoS::AtLeastOnce)
}

fn subscribe_at(v5: bool, filters: &[&str], qos: QoS) -> Vec<u8> {
    let packet = Packet::Subscribe(
        Subscribe {
            pkid: 1,
            filters: filters
                .iter()
                .map(|f| Filter {
                    path: f.to_string(),
                    qos,
                    nolocal: false,
                    preserve_retain: false,
                    retain_forward_rule: RetainForwardRule::OnEverySubscribe,
                })
                .collect(),
        },
        None,
    );
    encode(v5, packet)
}

/// A v5 PUBLISH with any QoS, no properties, encoded by hand.
pub fn publish_v5_with(topic: &str, payload: &[u8], qos: u8, pkid: u16, retain: bool) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    body.push(0);
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1) | u8::from(retain), body)
}

/// A v5 CONNECT (clean start) with a will on `topic`.
pub fn connect_v5_with_will(client_id: &str, topic: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let connect = Connect {
        keep_alive: 30,
        client_id: client_id.to_string(),
        clean_session: true,
    };
    let will = LastWill {
        topic: bytes::Bytes::copy_from_slice(topic),
        message: bytes::Bytes::copy_from_slice(payload),
        qos: QoS::AtMostOnce,
        retain: false,
    };
    V5.write(
        Packet::Connect(connect, None, Some(will), None, None),
        &mut out,
    )
    .expect("encode connect");
    out.to_vec()
}

/// PUBREL for `pkid` (3.1.1 form, also valid v5 with reason omitted).
pub fn pubrel(pkid: u16) -> Vec<u8> {
    frame(0x62, pkid.to_be_bytes().to_vec())
}

/// PUBACK for `pkid` (3.1.1 form, also valid v5 with reason omitted).
pub fn puback(pkid: u16) -> Vec<u8> {
    frame(0x40, pkid.to_be_bytes().to_vec())
}

pub fn pingreq() -> Vec<u8> {
    vec![0xC0, 0]
}

fn frame(first: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend(body);
    out
}
