//! The `/ws` socket itself: closing handshakes with real clients, close codes for
//! broken frames, and the documented silence and unfinished-frame deadlines.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, RawClient};
use common::rawws::{self, RawWs};
use common::{node, Switchboard};
use serde_json::Value;

#[test]
fn a_client_close_is_answered_so_node_and_chromium_see_a_clean_close() {
    let sb = Switchboard::start("");
    let out = node("clean_close.js", &[&sb.ports.http.to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(cases.len(), 4, "{stdout}");
    for case in cases {
        assert_eq!(case["clean"], true, "{case}");
        assert_eq!(case["code"], case["sent"], "{case}");
    }
}

#[test]
fn broken_frames_get_1007_or_1002_close_frames() {
    let sb = Switchboard::start("");
    let port = sb.ports.http;
    let cases: [(&str, Vec<u8>, u16); 4] = [
        (
            "invalid UTF-8",
            rawws::frame(0x81, &[0xff, 0xfe], true),
            1007,
        ),
        ("RSV1 set", rawws::frame(0xc1, b"{}", true), 1002),
        ("unmasked", rawws::frame(0x81, b"{}", false), 1002),
        (
            "close code 999",
            rawws::frame(0x88, &999u16.to_be_bytes(), true),
            1002,
        ),
    ];
    for (name, bytes, want) in cases {
        let mut ws = RawWs::connect(port, "/ws");
        ws.send(&bytes);
        assert_eq!(ws.close_code(Duration::from_secs(5)), Some(want), "{name}");
    }
}

const FAST_HEARTBEAT: &str = r#"
[bridge]
heartbeat_ms = 2000
heartbeat_timeout_ms = 1000
"#;

#[test]
fn a_silent_client_is_closed_at_heartbeat_plus_timeout() {
    let sb = Switchboard::start_with("", FAST_HEARTBEAT);
    let mut ws = RawWs::connect(sb.ports.http, "/ws");
    let started = Instant::now();
    // Pings are not answered: this client says nothing at all.
    assert_eq!(ws.close_code(Duration::from_secs(10)), Some(4000));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2_800) && took < Duration::from_millis(3_600),
        "closed after {took:?}, documented: heartbeat_ms + heartbeat_timeout_ms = 3 s"
    );
}

#[test]
fn a_half_sent_frame_or_packet_is_closed_at_its_deadline_on_ws_mqtt_and_tcp() {
    let timers = format!("{FAST_HEARTBEAT}frame_timeout_ms = 1000\n");
    let sb = Switchboard::start_with("packet_timeout_secs = 1", &timers);
    let mut ws = RawWs::connect(sb.ports.http, "/ws");
    ws.send(&rawws::header(0x81, 10_000));
    ws.send(&[b' '; 5_000]);
    let started = Instant::now();
    assert_eq!(ws.close_code(Duration::from_secs(10)), Some(1008));
    assert_deadline(started, "/ws frame_timeout_ms");

    // MQTT over WebSocket, after a CONNECT without keep-alive (no other deadline).
    let mut mqtt = RawWs::connect(sb.ports.ws, "/mqtt");
    mqtt.send(&rawws::frame(
        0x82,
        &raw::connect_v4("half-ws", true, 0),
        true,
    ));
    let connack = mqtt
        .read_frame(Duration::from_secs(5))
        .expect("CONNACK frame");
    assert_eq!(connack.payload.first().map(|b| b >> 4), Some(raw::CONNACK));
    mqtt.send(&rawws::header(0x82, 100_000));
    mqtt.send(&[0u8; 50_000]);
    let started = Instant::now();
    while mqtt
        .read_frame(Duration::from_secs(10))
        .is_some_and(|f| f.opcode != 8)
    {}
    assert_deadline(started, "/mqtt packet_timeout_secs");

    // Plain TCP: half a PUBLISH.
    let mut tcp = RawClient::connect(sb.tcp_addr());
    tcp.send(&raw::connect_v4("half-tcp", true, 0));
    tcp.expect_kind(raw::CONNACK, Duration::from_secs(5));
    let publish = raw::publish(false, "t", &[7u8; 50_000]);
    tcp.send(&publish[..publish.len() / 2]);
    let started = Instant::now();
    assert!(tcp.closed_within(Duration::from_secs(10)));
    assert_deadline(started, "tcp packet_timeout_secs");
}

fn assert_deadline(started: Instant, what: &str) {
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_900),
        "{what}: closed after {took:?}, the deadline is 1 s"
    );
}
