//! Durable state end to end: retained messages survive SIGTERM and SIGKILL (sled),
//! deletes stick, history resumes browsers gap-free, SSE resumes with Last-Event-ID,
//! and a bad data dir or a full write queue is handled as documented.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::browser::{missed_payloads, Browser};
use common::raw;
use common::{publish, Sub, Switchboard};
use serde_json::{json, Value};

const SECOND: Duration = Duration::from_secs(1);

fn retained_lines(sb: &Switchboard, filter: &str, count: usize) -> Vec<String> {
    let sub = Sub::start(
        sb.ports.tcp,
        &[
            "-t",
            filter,
            "-C",
            &count.to_string(),
            "-W",
            "10",
            "-F",
            "%r|%t|%p",
        ],
    );
    let mut lines = sub.lines();
    lines.sort();
    lines
}

fn expected(prefix: &str, count: usize) -> Vec<String> {
    let mut lines: Vec<String> = (0..count)
        .map(|n| format!("1|{prefix}/{n}|value {n}"))
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn thousand_retained_messages_survive_sigterm_for_mqtt_and_browsers() {
    let mut sb = Switchboard::start("");
    raw::publish_retained_acked(sb.tcp_addr(), "keep", 1000);
    assert_eq!(sb.stop(), Some(0));
    sb.launch();
    assert!(
        sb.wait_for_log("restored=1000", 5 * SECOND),
        "start-up logs the restore"
    );
    assert_eq!(retained_lines(&sb, "keep/#", 1000), expected("keep", 1000));
    let mut browser = Browser::connect(sb.ports.http).await;
    let joined = browser.join("#").await;
    let state = joined["state"].as_array().expect("state");
    assert_eq!(state.len(), 1000);
    assert!(state
        .iter()
        .any(|s| s["topic"] == "keep/999" && s["payload"] == "value 999"));
}

#[test]
fn retained_messages_older_than_flush_ms_survive_sigkill() {
    let mut sb = Switchboard::start_with("", "[storage]\nflush_ms = 100\n");
    raw::publish_retained_acked(sb.tcp_addr(), "crash", 1000);
    std::thread::sleep(Duration::from_millis(400));
    sb.kill();
    sb.launch();
    assert_eq!(
        retained_lines(&sb, "crash/#", 1000),
        expected("crash", 1000)
    );
}

#[test]
fn an_empty_retained_publish_deletes_and_stays_deleted_after_restart() {
    let mut sb = Switchboard::start("");
    publish(
        sb.ports.tcp,
        &["-r", "-q", "1", "-t", "gone/a", "-m", "here"],
    );
    publish(
        sb.ports.tcp,
        &["-r", "-q", "1", "-t", "gone/b", "-m", "stays"],
    );
    publish(sb.ports.tcp, &["-r", "-q", "1", "-t", "gone/a", "-n"]);
    assert_eq!(sb.stop(), Some(0));
    sb.launch();
    assert_eq!(
        retained_lines(&sb, "gone/#", 1),
        vec!["1|gone/b|stays".to_string()]
    );
    let nothing = Sub::start(sb.ports.tcp, &["-t", "gone/a", "-W", "1"]);
    assert!(nothing.lines().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_resumes_exactly_the_500_messages_it_missed() {
    let sb = Switchboard::start_with("", "[history]\nmax_messages = 2000\n");
    let mut browser = Browser::connect(sb.ports.http).await;
    let joined = browser.join("feed/#").await;
    publish(sb.ports.tcp, &["-t", "feed/x", "-m", "0"]);
    let first = browser.pushes_of("message", 1, 5 * SECOND).await;
    let position = json!({"epoch": joined["epoch"], "offset": first[0]["offset"]});
    drop(browser);

    let addr = sb.tcp_addr();
    std::thread::spawn(move || {
        let mut client = raw::RawClient::connect(addr);
        client.send(&raw::connect_v4("feeder", true, 60));
        client.expect_kind(raw::CONNACK, 5 * SECOND);
        let mut bytes = Vec::new();
        for n in 1..=500 {
            bytes.extend(raw::publish_with(
                &format!("feed/{}", n % 7),
                n.to_string().as_bytes(),
                1,
                n as u16,
                false,
            ));
        }
        client.send(&bytes);
        for _ in 0..500 {
            client.expect_kind(raw::PUBACK, 10 * SECOND);
        }
    })
    .join()
    .expect("publisher");
    let mut back = Browser::connect(sb.ports.http).await;
    let resumed = back
        .join_until_missed(
            json!({"type": "join", "room": "feed/#", "since": position}),
            500,
        )
        .await;
    assert_eq!(resumed["recovered"], true);
    let payloads = missed_payloads(&resumed);
    let wanted: Vec<Value> = (1..=500).map(|n| json!(n)).collect();
    assert_eq!(payloads, wanted, "exactly the 500, in order");
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_window_or_after_a_restart_resume_is_not_recovered_and_state_is_fresh() {
    let mut sb = Switchboard::start_with("", "[history]\nmax_messages = 50\n");
    publish(sb.ports.tcp, &["-r", "-t", "win/state", "-m", "current"]);
    let mut browser = Browser::connect(sb.ports.http).await;
    let joined = browser.join("win/#").await;
    let position = json!({"epoch": joined["epoch"], "offset": joined["offset"]});
    drop(browser);
    for n in 0..80 {
        publish(sb.ports.tcp, &["-t", "win/x", "-m", &n.to_string()]);
    }
    let mut back = Browser::connect(sb.ports.http).await;
    let resumed = back
        .request(json!({"type": "join", "room": "win/#", "since": position}))
        .await;
    assert_eq!(resumed["recovered"], false, "{resumed}");
    assert!(resumed["state"]
        .as_array()
        .is_some_and(|s| s.iter().any(|i| i["payload"] == "current")));
    drop(back);

    sb.kill();
    sb.launch();
    let mut after = Browser::connect(sb.ports.http).await;
    let resumed = after
        .request(json!({"type": "join", "room": "win/#", "since": position}))
        .await;
    assert_eq!(
        resumed["recovered"], false,
        "a crash loses the history: a new epoch"
    );
    assert_ne!(resumed["epoch"], position["epoch"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn history_survives_a_graceful_restart_under_the_same_epoch() {
    history_across_a_restart(false).await;
}

/// The bridge's own `#` subscription receives every retained message again at start
/// (retained-on-subscribe); those are not news and must not enter history or rooms.
#[tokio::test(flavor = "multi_thread")]
async fn retained_messages_are_not_replayed_as_news_after_a_restart() {
    history_across_a_restart(true).await;
}

/// 20 messages on `keep/h` (retained or not), a restart, one more: a browser that
/// joined before resumes with exactly those 21, in order, under the same epoch.
async fn history_across_a_restart(retain: bool) {
    let mut sb = Switchboard::start("");
    let mut browser = Browser::connect(sb.ports.http).await;
    let joined = browser.join("keep/#").await;
    let position = json!({"epoch": joined["epoch"], "offset": joined["offset"]});
    for n in 1..=20 {
        let payload = n.to_string();
        // QoS 1: each publisher waits until its message is routed, so the order is
        // the order of the publishers (QoS 0 ones may overlap as they exit).
        let mut args = vec!["-q", "1", "-t", "keep/h", "-m", &payload];
        if retain {
            args.push("-r");
        }
        publish(sb.ports.tcp, &args);
    }
    // Pushed to the browser means appended to the history first.
    let live = browser.pushes_of("message", 20, 5 * SECOND).await;
    assert_eq!(live.len(), 20, "{live:?}");
    drop(browser);
    assert_eq!(sb.stop(), Some(0));
    sb.launch();
    publish(sb.ports.tcp, &["-t", "keep/h", "-m", "21"]);
    let mut back = Browser::connect(sb.ports.http).await;
    let resumed = back
        .join_until_missed(
            json!({"type": "join", "room": "keep/#", "since": position}),
            21,
        )
        .await;
    assert_eq!(resumed["epoch"], position["epoch"], "{resumed}");
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let payloads = missed_payloads(&resumed);
    let wanted: Vec<Value> = (1..=21).map(|n| json!(n)).collect();
    assert_eq!(payloads, wanted, "before and after the restart, in order");
}

/// Reads SSE events (event name, id, data) until `count` or `within` passes.
fn read_events(
    reader: &mut BufReader<TcpStream>,
    count: usize,
    within: Duration,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + within;
    let mut events = Vec::new();
    let (mut name, mut id, mut data) = (String::new(), String::new(), String::new());
    while events.len() < count && Instant::now() < deadline {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => continue,
        }
        let line = line.trim_end();
        if line.is_empty() {
            if !data.is_empty() {
                events.push((
                    std::mem::take(&mut name),
                    std::mem::take(&mut id),
                    std::mem::take(&mut data),
                ));
            }
            continue;
        }
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data = v.trim().to_string();
        }
    }
    events
}

fn open_sse(port: u16, room: &str, last_event_id: Option<&str>) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /sse?room={room} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    .expect("request");
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    let deadline = Instant::now() + 5 * SECOND;
    while status.is_empty() && Instant::now() < deadline {
        let _ = reader.read_line(&mut status);
    }
    assert!(status.contains("200"), "{status}");
    reader
}

#[test]
fn sse_streams_state_then_messages_and_resumes_with_last_event_id() {
    let sb = Switchboard::start("");
    publish(sb.ports.tcp, &["-r", "-t", "sse/state", "-m", "{\"v\":1}"]);
    std::thread::sleep(Duration::from_millis(200));
    let mut reader = open_sse(sb.ports.http, "sse/%23", None);
    let state = read_events(&mut reader, 1, 5 * SECOND);
    assert_eq!(state[0].0, "state");
    assert!(state[0].1.is_empty(), "state events carry no id");
    for n in 1..=3 {
        publish(sb.ports.tcp, &["-t", "sse/live", "-m", &n.to_string()]);
    }
    let live = read_events(&mut reader, 3, 5 * SECOND);
    assert_eq!(live.len(), 3);
    assert!(live
        .iter()
        .all(|(name, id, _)| name == "message" && id.contains(':')));
    let last_id = live[2].1.clone();
    drop(reader);

    for n in 4..=5 {
        publish(sb.ports.tcp, &["-t", "sse/live", "-m", &n.to_string()]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut resumed = open_sse(sb.ports.http, "sse/%23", Some(&last_id));
    let missed = read_events(&mut resumed, 2, 5 * SECOND);
    let payloads: Vec<Value> = missed
        .iter()
        .map(|(_, _, data)| serde_json::from_str::<Value>(data).expect("json")["payload"].clone())
        .collect();
    assert_eq!(
        payloads,
        vec![json!(4), json!(5)],
        "no loss, no duplicates, no state again"
    );
    assert!(read_events(&mut resumed, 1, Duration::from_millis(500)).is_empty());
}

#[test]
fn sse_sends_its_headers_and_a_first_comment_at_once_on_a_room_without_state() {
    let sb = Switchboard::start("");
    let started = Instant::now();
    let mut reader = open_sse(sb.ports.http, "nothing/here/%23", None);
    let mut line = String::new();
    while !line.starts_with(':') && started.elapsed() < 5 * SECOND {
        line.clear();
        let _ = reader.read_line(&mut line);
    }
    let took = started.elapsed();
    assert!(line.starts_with(':'), "no comment line within {took:?}");
    // EventSource.onopen fires on the headers; the keep-alive interval is 15 s.
    assert!(took < SECOND, "headers and first comment after {took:?}");
}

#[test]
fn a_data_dir_that_is_a_file_or_corrupt_stops_start_up_naming_the_path() {
    let dir = common::TempDir::new("baddata");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("[node]\ndata_dir = \"{}\"\n[mqtt]\ntcp = \"127.0.0.1:0\"\nws = \"\"\n[http]\nlisten = \"\"\n", file.display())).expect("write");
    let stderr = common::fails(&[&"--config", &config]);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");

    let mut sb = Switchboard::start("");
    publish(sb.ports.tcp, &["-r", "-q", "1", "-t", "c/1", "-m", "x"]);
    assert_eq!(sb.stop(), Some(0));
    let data = sb.dir.path().join("data");
    // sled recovers a torn log by truncating it; a damaged config record it refuses.
    std::fs::write(
        data.join("conf"),
        b"segment_size: lots\nuse_compression: maybe\n",
    )
    .expect("corrupt");
    let stderr = common::fails(&[&"--config", &sb.config_path]);
    assert!(
        stderr.contains("data dir") && stderr.contains(&data.display().to_string()),
        "the error names the data dir's path: {stderr}"
    );
}

/// Publishes `count` retained QoS 1 messages on `prefix/<n>` in one burst and waits
/// for every PUBACK.
fn burst_of_retained(addr: std::net::SocketAddr, prefix: &str, count: usize) {
    let mut client = raw::RawClient::connect(addr);
    client.send(&raw::connect_v4(&format!("burst-{prefix}"), true, 60));
    client.expect_kind(raw::CONNACK, 5 * SECOND);
    let mut bytes = Vec::new();
    for n in 0..count {
        bytes.extend(raw::publish_with(
            &format!("{prefix}/{n}"),
            b"v",
            1,
            (n + 1) as u16,
            true,
        ));
    }
    client.send(&bytes);
    for _ in 0..count {
        client.expect_kind(raw::PUBACK, 20 * SECOND);
    }
}

#[test]
fn a_full_write_queue_slows_only_the_publisher_and_loses_nothing() {
    let mut sb = Switchboard::start_with("", "[storage]\nwrite_queue = 1\n");
    let watcher = Sub::start(sb.ports.tcp, &["-t", "side/#", "-C", "1", "-W", "10"]);
    let addr = sb.tcp_addr();
    let burst = std::thread::spawn(move || burst_of_retained(addr, "slow", 3000));
    publish(sb.ports.tcp, &["-t", "side/news", "-m", "unaffected"]);
    assert_eq!(watcher.lines(), vec!["unaffected".to_string()]);
    burst.join().expect("burst");
    assert!(!sb.log().contains("retained write queue full"));
    assert_eq!(sb.stop(), Some(0));
    sb.launch();
    assert_eq!(retained_lines(&sb, "slow/#", 3000).len(), 3000);
}

#[test]
fn past_queue_wait_ms_a_change_is_dropped_counted_and_logged_and_the_server_keeps_going() {
    let sb = Switchboard::start_with("", "[storage]\nwrite_queue = 1\nqueue_wait_ms = 1\n");
    burst_of_retained(sb.tcp_addr(), "drop", 3000);
    assert!(sb.wait_for_log("retained write queue full", 5 * SECOND));
    let (_, metrics) = sb.http_get("/metrics");
    assert!(
        metrics.contains("switchboard_store_queue_full_total"),
        "{metrics}"
    );
    assert_eq!(sb.http_get("/healthz").0, 200);
    let after = Sub::start(sb.ports.tcp, &["-t", "after/burst", "-C", "1", "-W", "10"]);
    publish(sb.ports.tcp, &["-t", "after/burst", "-m", "fine"]);
    assert_eq!(after.lines(), vec!["fine".to_string()]);
}

#[test]
fn offline_admin_lists_gets_deletes_and_checks() {
    let mut sb = Switchboard::start("");
    publish(
        sb.ports.tcp,
        &["-r", "-q", "1", "-t", "adm/a", "-m", "alpha"],
    );
    publish(
        sb.ports.tcp,
        &["-r", "-q", "1", "-t", "adm/b", "-m", "beta"],
    );
    assert_eq!(sb.stop(), Some(0));
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .arg("--config")
            .arg(&sb.config_path)
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(
        run(&["retained", "list", "adm/#"]),
        "adm/a\talpha\nadm/b\tbeta\n"
    );
    assert_eq!(run(&["retained", "get", "adm/b"]), "beta");
    assert!(run(&["retained", "delete", "adm/a"]).contains("deleted 1"));
    assert!(run(&["data", "check"]).contains("ok, 1 retained"));
    sb.launch();
    assert_eq!(
        retained_lines(&sb, "adm/#", 1),
        vec!["1|adm/b|beta".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_retained_publish_is_durable_and_an_expired_one_is_not_restored() {
    let mut sb = Switchboard::start_with("", "[bridge]\nbrowser_publish = [\"ui/#\"]\n");
    let mut browser = Browser::connect(sb.ports.http).await;
    let ack = browser
        .request(json!({"type": "publish", "topic": "ui/theme", "payload": "dark", "encoding": "text", "retain": true}))
        .await;
    assert_eq!(ack["type"], "ack");
    drop(browser);
    publish(
        sb.ports.tcp,
        &[
            "-V",
            "mqttv5",
            "-r",
            "-q",
            "1",
            "-t",
            "ui/flash",
            "-m",
            "soon gone",
            "-D",
            "publish",
            "message-expiry-interval",
            "1",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sb.stop(), Some(0));
    sb.launch();
    assert_eq!(
        retained_lines(&sb, "ui/#", 1),
        vec!["1|ui/theme|dark".to_string()]
    );
    assert!(
        sb.wait_for_log("expired=1", 5 * SECOND),
        "the expired message was dropped at start"
    );
}
