//! The life of a `/ws` socket: closing handshakes with real clients, close codes for
//! broken frames, the silence and unfinished-frame deadlines, slow readers
//! (conflated, then 1013) and shutdown (1001).

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::browser::{Browser, Ended};
use common::raw::{self, RawClient};
use common::rawws::{self, RawWs};
use common::{metric, node, rss_kib, Sub, Switchboard};
use serde_json::{json, Value};

const SECOND: Duration = Duration::from_secs(1);

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

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_answers_pings_is_dropped_and_leaves_its_rooms() {
    let sb = Switchboard::start_with("", "[bridge]\nheartbeat_ms = 300\nheartbeat_timeout_ms = 300\n[rooms.lobby]\ntopics = [\"lobby/#\"]\npresence = true\n");
    let mut watcher = Browser::connect(sb.ports.http).await;
    watcher.join("lobby").await;
    let mut silent = Browser::connect(sb.ports.http).await;
    silent.join("lobby").await;
    // The silent client stops reading, so its WebSocket library never answers pings,
    // while the watcher keeps reading (and answering) for two seconds.
    let events = watcher.pushes_of("member", 2, 3 * SECOND).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, vec!["join", "leave"], "{events:?}");
    let members = watcher
        .request(json!({"type": "presence", "room": "lobby"}))
        .await;
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1));
    assert!(matches!(
        silent.until_closed(2 * SECOND).await,
        Ended::Closed(_)
    ));
}

/// One stalled browser among a fast one and an MQTT subscriber during a flood of
/// 10 000 messages.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_browser_is_conflated_then_closed_while_others_get_everything() {
    let sb = Switchboard::start_with(
        "",
        "[bridge]\nconflate_after = 500\nclose_after = 1500\nslow_client_timeout_ms = 3000\nheartbeat_ms = 1000\n",
    );
    const MESSAGES: usize = 10_000;
    const TOPICS: usize = 1_000;
    let mqtt = Sub::start(
        sb.ports.tcp,
        &["-t", "flood/#", "-C", &MESSAGES.to_string(), "-W", "60"],
    );
    let mut fast = Browser::connect(sb.ports.http).await;
    fast.join("flood/#").await;
    let mut slow = Browser::connect_small_buffer(sb.ports.http).await;
    slow.join("flood/#").await;
    let rss_before = rss_kib(sb.child.as_ref().expect("child").id());

    let addr = sb.tcp_addr();
    let publisher = std::thread::spawn(move || {
        let mut client = RawClient::connect(addr);
        client.send(&raw::connect_v4("flooder", true, 60));
        client.expect_kind(raw::CONNACK, 5 * SECOND);
        let payload = vec![b'p'; 1024];
        for burst in 0..(MESSAGES / 100) {
            let mut bytes = Vec::new();
            for i in 0..100 {
                let n = burst * 100 + i;
                bytes.extend(raw::publish(
                    false,
                    &format!("flood/{}", n % TOPICS),
                    &payload,
                ));
            }
            client.send(&bytes);
            std::thread::sleep(Duration::from_millis(20));
        }
        client
    });

    let received = fast.pushes_of("message", MESSAGES, 60 * SECOND).await;
    let _publisher = publisher.join().expect("publisher");
    assert_eq!(
        received.len(),
        MESSAGES,
        "the fast browser gets every message"
    );
    assert!(received.iter().all(|m| m.get("conflated").is_none()));
    assert_eq!(
        mqtt.lines().len(),
        MESSAGES,
        "the MQTT subscriber gets every message"
    );

    // Stay stalled past slow_client_timeout_ms (3 s) and a heartbeat tick (1 s).
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        slow.until_closed(30 * SECOND).await,
        Ended::Closed(Some(1013))
    );
    let (_, metrics) = sb.http_get("/metrics");
    let conflated = metric(&metrics, "switchboard_bridge_conflated_total");
    assert!(conflated > 0.0, "conflated {conflated}");
    assert!(metric(&metrics, "switchboard_bridge_closed_slow_total") >= 1.0);
    let rss_after = rss_kib(sb.child.as_ref().expect("child").id());
    assert!(
        rss_after < 256 * 1024,
        "RSS {rss_before} KiB → {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_browsers_with_1001_and_exits_promptly() {
    let mut sb = Switchboard::start("");
    let mut browser = Browser::connect(sb.ports.http).await;
    browser.join("bye/#").await;
    let started = Instant::now();
    let code = tokio::task::spawn_blocking(move || {
        let code = sb.stop();
        (code, sb)
    });
    assert_eq!(
        browser.until_closed(5 * SECOND).await,
        Ended::Closed(Some(1001))
    );
    let (code, _sb) = code.await.expect("stop");
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < 4 * SECOND,
        "took {:?}",
        started.elapsed()
    );
}
