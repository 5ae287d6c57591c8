//! Durable state end to end: retained messages survive SIGTERM and SIGKILL (sled),
//! deletes stick, history resumes browsers gap-free, a full write queue is handled
//! as documented, and the offline data tools read and change the store.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

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
