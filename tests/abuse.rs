//! The browser side and the HTTP listener attacked without credentials: each attack
//! leaves the process running, other clients receiving within 100 ms (a canary MQTT
//! subscriber and a canary browser), and memory under a stated bound.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::canary::Canary;
use common::raw::{self, RawClient};
use common::rawws::{self, RawWs};
use common::{rss_kib, Switchboard};
use serde_json::json;

/// What a canary may take to get a message while the server is under attack.
const CANARY_BOUND: Duration = Duration::from_millis(100);

/// The attacks share two cores with the server: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn alive(sb: &mut Switchboard) {
    let child = sb.child.as_mut().expect("running");
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the server died; log:\n{}",
        sb.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_ten_thousand_levels_deep_joined_and_left_by_ws_and_sse() {
    let _one = ONE_AT_A_TIME.lock().await;
    // The default max_topic_levels (128) refuses such a room; the index must cope
    // with what an operator allows.
    let mut sb = Switchboard::start("max_topic_levels = 20000");
    let mut canary = Canary::start(&sb).await;
    let deep = vec!["+"; 10_000].join("/");

    let mut attacker = Browser::connect(sb.ports.http).await;
    let joined = attacker
        .request(json!({"type": "join", "room": deep}))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let left = attacker
        .request(json!({"type": "leave", "room": deep}))
        .await;
    assert_eq!(left["type"], "left", "{left}");
    attacker.join(&deep).await;
    drop(attacker);

    let url_room = deep.replace('+', "%2B");
    let mut sse = tokio::net::TcpStream::connect(("127.0.0.1", sb.ports.http))
        .await
        .unwrap();
    let request = format!(
        "GET /sse?room={url_room} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut sse, request.as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut sse, &mut head),
    )
    .await
    .expect("the SSE stream answers")
    .unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    drop(sse);

    tokio::time::sleep(Duration::from_millis(300)).await;
    alive(&mut sb);
    let worst = canary.worst_of(10).await;
    assert!(worst < CANARY_BOUND, "canary took {worst:?}");
}

/// Starts the attack helper; returns it once it has opened its connections.
fn half_requests(
    port: u16,
    bind_ip: &str,
    count: usize,
    hold_secs: u64,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py");
    let mut child = std::process::Command::new(py.join(".venv/bin/python"))
        .arg(py.join("half_requests.py"))
        .args([
            &port.to_string(),
            bind_ip,
            &count.to_string(),
            &hold_secs.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run half_requests.py (scripts/test makes tests/py/.venv)");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("ready line").unwrap();
    assert!(ready.starts_with("ready "), "{ready}");
    (child, lines)
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_unfinished_http_requests_leave_mqtt_health_and_browsers_served() {
    let _one = ONE_AT_A_TIME.lock().await;
    // The canary browser reads only while probing (a real one answers pings at
    // once): the silence deadline must outlast the attack.
    let mut sb = Switchboard::start_with("", "[bridge]\nheartbeat_timeout_ms = 120000\n");
    sb.edit_config("[http]\n", "[http]\nheader_timeout_secs = 3\n");
    let mut canary = Canary::start(&sb).await;
    let pid = sb.child.as_ref().unwrap().id();

    let http = sb.ports.http;
    let attack = tokio::task::spawn_blocking(move || {
        let (a, a_out) = half_requests(http, "127.0.0.2", 10_000, 20);
        let (b, b_out) = half_requests(http, "127.0.0.3", 10_000, 20);
        (a, a_out, b, b_out)
    });
    let (mut a, a_out, mut b, b_out) = attack.await.unwrap();

    // All 20 000 were tried and the server holds at most its caps of them.
    alive(&mut sb);
    let worst = canary.worst_of(10).await;
    assert!(
        worst < CANARY_BOUND,
        "canary took {worst:?} under the attack"
    );
    let fresh = RawClient::connected(sb.tcp_addr(), "after-the-flood");
    drop(fresh);
    assert_eq!(
        common::http_get(http, "/healthz"),
        (200, "ok\n".to_string())
    );
    let mut browser = Browser::connect(http).await;
    browser.join("fresh/#").await;
    let rss = rss_kib(pid);
    assert!(rss < 256 * 1024, "RSS {rss} KiB under the attack");

    // The header deadline closes the held ones.
    for (child, mut out) in [(&mut a, a_out), (&mut b, b_out)] {
        let summary: serde_json::Value =
            serde_json::from_str(&out.next().expect("summary").unwrap()).unwrap();
        child.wait().unwrap();
        let opened = summary["opened"].as_u64().unwrap();
        let refused = summary["refused_at_connect"].as_u64().unwrap();
        assert_eq!(opened + refused, 10_000, "{summary}");
        assert_eq!(summary["closed_by_server"], opened, "{summary}");
    }
    let (_, metrics) = sb.http_get("/metrics");
    assert!(
        common::metric(&metrics, "switchboard_http_refusals_total") > 0.0,
        "the per-address cap refused some: {metrics}"
    );
    alive(&mut sb);
}

/// Publishes `count` retained QoS 1 messages of `size` bytes on `prefix/<n>`, at most
/// 20 unacknowledged at a time.
fn publish_big(addr: std::net::SocketAddr, prefix: &str, count: usize, size: usize) {
    let mut client = RawClient::connected(addr, &format!("big-{prefix}"));
    let payload = vec![b'x'; size];
    let mut acked = 0;
    for n in 0..count {
        let topic = format!("{prefix}/{n}");
        let pkid = (n % 60_000 + 1) as u16;
        client.send(&raw::publish_with(&topic, &payload, 1, pkid, true));
        if n + 1 - acked > 20 {
            client.expect_kind(raw::PUBACK, Duration::from_secs(10));
            acked += 1;
        }
    }
    while acked < count {
        client.expect_kind(raw::PUBACK, Duration::from_secs(10));
        acked += 1;
    }
}

/// Samples the RSS of `pid` every 20 ms until `stop` is set; returns the peak.
fn peak_rss(
    pid: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn three_concurrent_rewinds_over_a_thousand_200_kib_messages_stay_bounded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut sb = Switchboard::start("");
    let pid = sb.child.as_ref().unwrap().id();
    let addr = sb.tcp_addr();
    tokio::task::spawn_blocking(move || publish_big(addr, "big", 1_000, 200 * 1024))
        .await
        .unwrap();
    // The store writes 200 MB behind the publishers; the canary measures the rewinds,
    // not that.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = sb.http_get("/metrics");
        if common::metric(&metrics, "switchboard_store_writes_total") >= 1_000.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store never caught up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut canary = Canary::start(&sb).await;
    let before = rss_kib(pid);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = peak_rss(pid, stop.clone());
    let http = sb.ports.http;
    // Raw sockets on their own threads: the replies are parsed only after the
    // canary's measurement, so the test's own JSON parsing does not slow the canary.
    let rewinds: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut socket = RawWs::connect(http, "/ws");
                let join = r#"{"type":"join","id":1,"room":"big/#","rewind":1000}"#;
                socket.send(&rawws::frame(0x81, join.as_bytes(), true));
                loop {
                    let frame = socket.read_frame(Duration::from_secs(30)).expect("joined");
                    if frame.payload.starts_with(br#"{"type":"joined""#) {
                        return frame.payload;
                    }
                }
            })
        })
        .collect();
    let worst = canary.worst_of(10).await;
    let mut replies = Vec::new();
    for rewind in rewinds {
        let bytes = rewind.join().unwrap();
        replies.push((
            bytes.len(),
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
        ));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();

    let max_reply = 4 * 1024 * 1024;
    for (bytes, joined) in &replies {
        let bytes = *bytes;
        assert_eq!(joined["type"], "joined");
        assert!(
            bytes <= max_reply + max_reply / 10,
            "a reply of {bytes} bytes"
        );
        let missed = joined["missed"].as_array().unwrap();
        assert!(
            !missed.is_empty() && missed.len() < 1_000,
            "{}",
            missed.len()
        );
        assert_eq!(joined["missed_truncated"], true);
        assert_eq!(joined["state_truncated"], true);
    }
    assert!(
        worst < CANARY_BOUND,
        "canary took {worst:?} during the rewinds"
    );
    // 1 000 × 200 KiB are held once, shared by the retained index and the history
    // (which keeps [history] max_bytes = 64 MiB of them); replies add 3 × 4 MiB.
    assert!(
        peak < before + 100 * 1024,
        "RSS {before} KiB before, {peak} KiB at the peak of the rewinds"
    );
    alive(&mut sb);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hundred_idle_half_sent_frames_are_bounded_then_closed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut sb = Switchboard::start_with(
        "packet_timeout_secs = 3",
        "[bridge]\nframe_timeout_ms = 3000\n",
    );
    let pid = sb.child.as_ref().unwrap().id();
    let mut canary = Canary::start(&sb).await;
    let before = rss_kib(pid);
    let (http, ws) = (sb.ports.http, sb.ports.ws);
    let held = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        for n in 0..150 {
            let mut browser = RawWs::connect(http, "/ws");
            browser.send(&rawws::header(0x81, 250_000));
            browser.send(&vec![b' '; 200_000]);
            held.push(browser);
            let mut device = RawWs::connect(ws, "/mqtt");
            let connect = raw::connect_v4(&format!("half-{n}"), true, 0);
            device.send(&rawws::frame(0x82, &connect, true));
            device.read_frame(Duration::from_secs(5)).expect("CONNACK");
            device.send(&rawws::header(0x82, 300_000));
            device.send(&vec![0u8; 200_000]);
            held.push(device);
        }
        held
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let holding = rss_kib(pid);
    let worst = canary.worst_of(10).await;
    assert!(
        worst < CANARY_BOUND,
        "canary took {worst:?} with 300 half frames held"
    );
    // 300 × 200 KiB = 59 MiB arrived; what is held is bounded by the frame limits.
    assert!(
        holding < before + 128 * 1024,
        "RSS {before} KiB before, {holding} KiB holding 300 half frames"
    );
    let closed = tokio::task::spawn_blocking(move || {
        held.into_iter()
            .filter_map(|mut socket| {
                while let Some(frame) = socket.read_frame(Duration::from_secs(10)) {
                    if frame.opcode == 8 {
                        break;
                    }
                }
                socket
                    .read_frame(Duration::from_secs(2))
                    .is_none()
                    .then_some(())
            })
            .count()
    })
    .await
    .unwrap();
    assert_eq!(closed, 300, "every half frame ended at its deadline");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    alive(&mut sb);
    let worst = canary.worst_of(3).await;
    assert!(worst < CANARY_BOUND, "canary took {worst:?} afterwards");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_churn_from_one_client_writes_a_bounded_number_of_log_lines() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut sb = Switchboard::start("");
    sb.edit_config("level = \"debug,sled=info\"", "level = \"info\"");
    let lines_before = sb.log().lines().count();
    let addr = sb.tcp_addr();
    let churned = tokio::task::spawn_blocking(move || {
        let until = std::time::Instant::now() + Duration::from_secs(3);
        let mut n = 0;
        while std::time::Instant::now() < until {
            let mut client = RawClient::connected(addr, "churn");
            client.send(&[0xe0, 0x00]);
            let _ = client.closed_within(Duration::from_secs(1));
            n += 1;
        }
        n
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let log = sb.log();
    let written = log.lines().count() - lines_before;
    assert!(churned > 300, "only {churned} connections in 3 s");
    // Per second: 5 "connected", 5 "disconnected" and their two summary lines.
    assert!(
        written < 80,
        "{churned} connections wrote {written} log lines"
    );
    assert!(
        log.contains("more like this in the last second: client connected"),
        "{log}"
    );
    alive(&mut sb);
}
