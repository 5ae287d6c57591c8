//! Switchboard's own routing core end to end: the defects rumqttd's router had
//! (a multi-byte topic stopping routing, filters and topics never freed, unbounded
//! amplification, QoS 2 kept without limit, 100 of 1 000 retained, missing MQTT 5
//! rules), each reproduced with real clients against the real binary.

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
use common::raw::{self, RawClient};
use common::{node, publish, rss_kib, Sub, Switchboard};
use serde_json::Value;

const SECOND: Duration = Duration::from_secs(1);

fn pid(sb: &Switchboard) -> u32 {
    sb.child.as_ref().expect("running").id()
}

/// `mosquitto_sub` lines (`-v`: "topic payload") for `filter`, until `count` arrived.
fn received(sb: &Switchboard, filter: &str, qos: &str, count: usize) -> Vec<String> {
    let count = count.to_string();
    Sub::start(
        sb.ports.tcp,
        &["-v", "-q", qos, "-t", filter, "-C", &count, "-W", "20"],
    )
    .lines()
}

#[tokio::test(flavor = "multi_thread")]
async fn multibyte_topics_are_routed_to_every_matching_subscriber_and_survive_sigkill() {
    let mut sb = Switchboard::start("");
    let subs: Vec<(&str, Sub)> = ["#", "+/ß", "ü/#"]
        .into_iter()
        .map(|f| {
            (
                f,
                Sub::start(sb.ports.tcp, &["-v", "-t", f, "-C", "1", "-W", "10"]),
            )
        })
        .collect();
    let mut browser = Browser::connect(sb.ports.http).await;
    let joined = browser.join("ü/#").await;
    assert_eq!(joined["type"], "joined", "{joined}");

    publish(sb.ports.tcp, &["-t", "ü/ß", "-m", "x", "-r"]);
    publish(sb.ports.tcp, &["-t", "温度/1", "-m", "21.5"]);
    for (filter, sub) in subs {
        assert_eq!(sub.lines(), vec!["ü/ß x".to_string()], "{filter}");
    }
    let pushed = browser.push(5 * SECOND).await.expect("browser message");
    assert_eq!(pushed["topic"], "ü/ß", "{pushed}");
    // Routing still works for everyone, and the broker says it is ready.
    assert_eq!(sb.http_get("/readyz").0, 200);
    publish(sb.ports.tcp, &["-t", "温度/2", "-m", "22", "-r"]);

    std::thread::sleep(Duration::from_millis(400)); // past flush_ms: on disk
    sb.kill();
    sb.launch();
    let mut state = received(&sb, "#", "1", 2);
    state.sort();
    assert_eq!(state, vec!["ü/ß x".to_string(), "温度/2 22".to_string()]);
    assert_eq!(received(&sb, "+/ß", "0", 1), vec!["ü/ß x".to_string()]);
    let mut browser = Browser::connect(sb.ports.http).await;
    let joined = browser.join("ü/#").await;
    assert_eq!(joined["state"][0]["payload"], "x", "{joined}");
}

#[test]
fn qos1_and_qos2_wildcard_subscribers_get_every_retained_message() {
    let mut sb = Switchboard::start("");
    raw::publish_retained_acked(sb.tcp_addr(), "dur", 1000);
    assert_eq!(received(&sb, "dur/#", "1", 1000).len(), 1000);
    assert_eq!(received(&sb, "dur/#", "2", 1000).len(), 1000);
    sb.stop();
    sb.launch();
    assert_eq!(received(&sb, "dur/#", "1", 1000).len(), 1000);
}

#[test]
fn hundred_thousand_retained_reach_a_hash_subscriber_in_pages() {
    let sb = Switchboard::start("");
    raw::publish_retained_acked(sb.tcp_addr(), "many", 100_000);
    assert_eq!(received(&sb, "#", "1", 100_000).len(), 100_000);
}

#[test]
fn invalid_filters_get_failure_codes_and_sys_is_readable() {
    let sb = Switchboard::start("");
    let mut v4 = RawClient::connected(sb.tcp_addr(), "filters-v4");
    v4.send(&raw::subscribe_many(
        false,
        &["a/#/b", "#/#", "a+", "$SYS/#", "ok/+"],
    ));
    let suback = v4.expect_kind(9, 5 * SECOND);
    assert_eq!(&suback.body[2..], &[0x80, 0x80, 0x80, 1, 1]);
    // $SYS/broker is published at start and every sys_interval.
    let sys = v4.expect_kind(3, 5 * SECOND);
    let (topic, _) = raw::publish_parts(&sys, false);
    assert!(topic.starts_with("$SYS/broker/"), "{topic}");

    let mut v5 = RawClient::connect(sb.tcp_addr());
    v5.send(&raw::connect_v5("filters-v5", 30, None));
    v5.expect_kind(2, 5 * SECOND);
    v5.send(&raw::subscribe_many(true, &["a/#/b", "#/#", "a+", "ok/#"]));
    let suback = v5.expect_kind(9, 5 * SECOND);
    assert_eq!(suback.body.last_chunk::<4>(), Some(&[0x8F, 0x8F, 0x8F, 1]));
    // A client may not publish into $SYS: v5 QoS 1 gets "not authorized".
    v5.send(&raw::publish_v5_with(
        "$SYS/broker/uptime",
        b"0",
        1,
        3,
        false,
    ));
    let puback = v5.expect_kind(4, 5 * SECOND);
    assert_eq!(puback.body.get(2), Some(&0x87), "{:?}", puback.body);
}

#[test]
fn invalid_will_topics_are_refused_and_later_wills_still_work() {
    let sb = Switchboard::start("");
    for topic in ["#", "a/+", "$SYS/x"] {
        let mut client = RawClient::connect(sb.tcp_addr());
        client.send(&raw::connect_v5_with_will(
            "bad-will",
            topic.as_bytes(),
            b"x",
        ));
        let connack = client.expect_kind(2, 5 * SECOND);
        assert_eq!(raw::connack_code(&connack), 0x90, "{topic}");
    }
    let mut client = RawClient::connect(sb.tcp_addr());
    client.send(&raw::connect_v5_with_will("utf8-will", b"w/\xff\xfe", b"x"));
    let connack = client.expect_kind(2, 5 * SECOND);
    assert_eq!(
        raw::connack_code(&connack),
        0x81,
        "ill-formed UTF-8 is malformed"
    );

    // Every later will is still published (rumqttd's router stopped them all).
    let watcher = Sub::start(
        sb.ports.tcp,
        &["-t", "wills/#", "-v", "-C", "1", "-W", "10"],
    );
    let mut dying = RawClient::connect(sb.tcp_addr());
    dying.send(&raw::connect_v5_with_will("ok-will", b"wills/ok", b"gone"));
    assert_eq!(raw::connack_code(&dying.expect_kind(2, 5 * SECOND)), 0);
    drop(dying);
    assert_eq!(watcher.lines(), vec!["wills/ok gone".to_string()]);
}

#[test]
fn qos2_publisher_without_pubrel_is_stopped_at_receive_maximum() {
    let sb = Switchboard::start("receive_maximum = 10");
    let mut client = RawClient::connect(sb.tcp_addr());
    client.send(&raw::connect_v5("no-pubrel", 30, None));
    let connack = client.expect_kind(2, 5 * SECOND);
    assert_eq!(raw::connack_property(&connack, 0x21), Some(vec![0, 10]));
    let mut burst = Vec::new();
    for pkid in 1..=11u16 {
        burst.extend(raw::publish_v5_with("q2/held", b"x", 2, pkid, false));
    }
    client.send(&burst);
    for _ in 0..10 {
        client.expect_kind(5, 5 * SECOND);
    }
    let disconnect = client.expect_kind(14, 5 * SECOND);
    assert_eq!(disconnect.body.first(), Some(&0x93));
    assert!(client.closed_within(2 * SECOND));
}

#[test]
fn pubrel_releases_the_packet_it_names_and_duplicates_are_not_routed_twice() {
    let sb = Switchboard::start("");
    let sub = Sub::start(
        sb.ports.tcp,
        &["-t", "q2/#", "-q", "2", "-C", "2", "-W", "10"],
    );
    let mut client = RawClient::connected(sb.tcp_addr(), "pubrel-order");
    client.send(&raw::publish_with("q2/a", b"first", 2, 5, false));
    client.send(&raw::publish_with("q2/b", b"second", 2, 6, false));
    client.expect_kind(5, 5 * SECOND);
    client.expect_kind(5, 5 * SECOND);
    client.send(&raw::pubrel(6));
    let comp = client.expect_kind(7, 5 * SECOND);
    assert_eq!(comp.body[..2], 6u16.to_be_bytes());
    // A retransmission of 5 (still unreleased) is acknowledged, not delivered again.
    let mut dup = raw::publish_with("q2/a", b"first", 2, 5, false);
    dup[0] |= 0x08;
    client.send(&dup);
    client.expect_kind(5, 5 * SECOND);
    client.send(&raw::pubrel(5));
    let comp = client.expect_kind(7, 5 * SECOND);
    assert_eq!(comp.body[..2], 5u16.to_be_bytes());
    assert_eq!(sub.lines(), vec!["first".to_string(), "second".to_string()]);
}

/// The `{"check": NAME, ...}` lines a client script printed, by name.
fn checks_printed(stdout: &str) -> std::collections::HashMap<String, Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["check"].as_str().unwrap_or_default().to_string(), v))
        .collect()
}

#[test]
fn mqtt5_delivery_rules_with_mqtt_js() {
    let sb = Switchboard::start("");
    let url = format!("mqtt://127.0.0.1:{}", sb.ports.tcp);
    let out = node("v5_rules.js", &[&url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checks = checks_printed(&stdout);
    let got = |name: &str| checks[name]["got"].as_array().cloned().unwrap_or_default();

    assert_eq!(checks["connack"]["receiveMaximum"], 100);
    assert_eq!(checks["connack"]["subIdsAvailable"], true);
    let min = got("qos_min_and_ids");
    assert_eq!(
        min.len(),
        1,
        "one copy for overlapping subscriptions: {min:?}"
    );
    assert_eq!(min[0]["qos"], 0, "min(1, granted 0)");
    assert_eq!(min[0]["ids"], serde_json::json!([7, 9]));
    assert_eq!(min[0]["user"]["k"], "v", "user properties forwarded");

    let no_local = &checks["no_local"];
    assert_eq!(no_local["publisher"].as_array().map(Vec::len), Some(0));
    assert_eq!(no_local["other"].as_array().map(Vec::len), Some(1));

    let rap = got("retain_as_published");
    let flag = |topic_end: &str| {
        rap.iter()
            .find(|m| m["topic"].as_str().is_some_and(|t| t.ends_with(topic_end)))
            .map(|m| m["retain"].clone())
    };
    assert_eq!(flag("/1"), Some(Value::Bool(true)), "{rap:?}");
    assert_eq!(flag("/0"), Some(Value::Bool(false)), "{rap:?}");

    let handling = got("retain_handling");
    assert_eq!(
        handling.len(),
        1,
        "only the new subscription gets it: {handling:?}"
    );
    assert_eq!(handling[0]["payload"], "state");
    assert_eq!(handling[0]["retain"], true);

    let live = got("expiry_forwarded");
    assert_eq!(live.len(), 1, "{live:?}");
    let left = live[0]["expiry"].as_u64().expect("expiry forwarded");
    assert!((58..=60).contains(&left), "{left}");
    assert_eq!(
        got("expired_retained").len(),
        0,
        "expired retained message served"
    );
}

/// Subscribes `count` distinct filters from one clean-session client, then leaves.
/// Returns RSS (KiB) with the filters in place.
fn subscribe_then_leave(sb: &Switchboard, round: usize, count: usize) -> u64 {
    let mut client = RawClient::connected(sb.tcp_addr(), &format!("many-filters-{round}"));
    let filters: Vec<String> = (0..count).map(|n| format!("f{round}/{n}/+/x/#")).collect();
    for chunk in filters.chunks(500) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        client.send(&raw::subscribe_many(false, &chunk));
        client.expect_kind(9, 10 * SECOND);
    }
    rss_kib(pid(sb))
}

/// RSS once it stops falling (jemalloc returns freed pages within about a second).
fn settled_rss(sb: &Switchboard) -> u64 {
    let mut last = rss_kib(pid(sb));
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let now = rss_kib(pid(sb));
        if now + 256 >= last {
            return now.min(last);
        }
        last = now;
    }
    last
}

/// RSS once it is at most `bound`, or after 15 s (freed pages go back to the system
/// in the allocator's own time, later on a machine busy with other tests).
fn rss_back_to(sb: &Switchboard, bound: u64) -> u64 {
    let deadline = std::time::Instant::now() + 15 * SECOND;
    loop {
        let now = rss_kib(pid(sb));
        if now <= bound || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn fifty_thousand_filters_subscribed_then_gone_give_their_memory_back() {
    let sb = Switchboard::start("");
    // A first small round makes what is made once per process (metrics handles,
    // allocator arenas) before the baseline.
    subscribe_then_leave(&sb, 100, 1_000);
    let start = settled_rss(&sb);
    let mut during = Vec::new();
    let mut after = Vec::new();
    for round in 0..3 {
        during.push(subscribe_then_leave(&sb, round, 50_000));
        after.push(rss_back_to(&sb, start + start / 10));
    }
    assert!(
        during[0] > start + 20 * 1024,
        "50 000 filters should cost something: {start} → {during:?} KiB"
    );
    for rss in &after {
        assert!(
            *rss <= start + start / 10,
            "RSS {start} KiB at start, {during:?} with the filters, {after:?} after they went"
        );
    }
}

#[test]
fn overlapping_filters_and_a_flood_stay_within_queue_bounds_and_are_freed() {
    let sb = Switchboard::start("max_queued_messages = 1000");
    let before = rss_kib(pid(&sb));
    // A subscriber with 64 overlapping filters that never reads.
    let mut reader = RawClient::connected(sb.tcp_addr(), "amplified");
    let filters: Vec<String> = (0..64)
        .map(|n| {
            if n == 0 {
                "amp/#".to_string()
            } else {
                format!("amp/+/{n}/#")
            }
        })
        .collect();
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    reader.send(&raw::subscribe_many(false, &filters));
    reader.expect_kind(9, 5 * SECOND);
    let mut flood = Vec::new();
    for n in 0..100_000u32 {
        flood.extend(raw::publish_with(
            &format!("amp/x/{}/y", n % 64),
            b"x",
            0,
            0,
            false,
        ));
    }
    let mut publisher = RawClient::connected(sb.tcp_addr(), "flooder");
    publisher.send(&flood);
    publisher.send(&raw::pingreq());
    publisher.expect_kind(13, 30 * SECOND);
    let during = rss_kib(pid(&sb));
    drop(reader);
    drop(publisher);
    std::thread::sleep(2 * SECOND);
    let after = rss_kib(pid(&sb));
    assert!(
        during < before + 64 * 1024,
        "100 000 messages × 64 filters: {before} → {during} KiB"
    );
    assert!(
        after < before + 16 * 1024,
        "not freed after both left: {before} → {during} → {after} KiB"
    );
}

#[test]
fn a_million_topics_without_subscribers_keep_nothing() {
    let sb = Switchboard::start_with("", "[history]\nmax_messages = 1000");
    let mut publisher = RawClient::connected(sb.tcp_addr(), "topics");
    let batch = |from: u32| {
        let mut bytes = Vec::new();
        for n in from..from + 100_000 {
            bytes.extend(raw::publish_with(&format!("t/{n}"), b"x", 0, 0, false));
        }
        bytes
    };
    publisher.send(&batch(0));
    publisher.send(&raw::pingreq());
    publisher.expect_kind(13, 30 * SECOND);
    let warm = rss_kib(pid(&sb));
    for round in 1..10 {
        publisher.send(&batch(round * 100_000));
    }
    publisher.send(&raw::pingreq());
    publisher.expect_kind(13, 60 * SECOND);
    let after = rss_kib(pid(&sb));
    assert!(
        after < warm + 8 * 1024,
        "900 000 more distinct topics grew RSS {warm} → {after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_devices_offline_event_comes_after_its_last_message() {
    let sb = Switchboard::start("");
    let mut browser = Browser::connect(sb.ports.http).await;
    browser.join("$devices").await;
    browser.join("ord/#").await;
    for round in 0..5 {
        let id = format!("orderly-{round}");
        let mut device = RawClient::connected(sb.tcp_addr(), &id);
        let mut burst = Vec::new();
        for n in 0..200 {
            burst.extend(raw::publish_with(
                "ord/x",
                format!("{round}-{n}").as_bytes(),
                0,
                0,
                false,
            ));
        }
        device.send(&burst);
        drop(device); // gone without DISCONNECT, right after its last message
        let mut messages = 0;
        loop {
            let push = browser.push(10 * SECOND).await.expect("a push");
            match push["type"].as_str() {
                Some("message") => messages += 1,
                Some("device") if push["online"] == false && push["client_id"] == id.as_str() => {
                    break
                }
                _ => {}
            }
        }
        assert_eq!(
            messages, 200,
            "round {round}: offline before the last message"
        );
    }
}

#[test]
fn a_canary_stays_fast_while_new_topics_meet_fifty_thousand_filters() {
    let sb = Switchboard::start("");
    // 50 000 filters held by one client, which reads what matches.
    let mut holder = RawClient::connected(sb.tcp_addr(), "filter-holder");
    let filters: Vec<String> = (0..50_000).map(|n| format!("load/{n}/+/#")).collect();
    for chunk in filters.chunks(500) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        holder.send(&raw::subscribe_many(false, &chunk));
        holder.expect_kind(9, 10 * SECOND);
    }
    let mut canary = RawClient::connected(sb.tcp_addr(), "canary-sub");
    canary.send(&raw::subscribe(false, "canary/ping"));
    canary.expect_kind(9, 5 * SECOND);
    let mut pinger = RawClient::connected(sb.tcp_addr(), "canary-pub");
    let mut loader = RawClient::connected(sb.tcp_addr(), "new-topics");

    let mut latencies = Vec::new();
    for batch in 0..50 {
        // 100 topics never seen before per batch: 5 000 in all.
        let mut fresh = Vec::new();
        for n in 0..100 {
            let topic = format!("load/{}/t{batch}-{n}/x", (batch * 100 + n) * 7 % 50_000);
            fresh.extend(raw::publish_with(&topic, b"x", 0, 0, false));
        }
        loader.send(&fresh);
        let sent = std::time::Instant::now();
        pinger.send(&raw::publish_with("canary/ping", b"p", 0, 0, false));
        canary.expect_kind(3, 5 * SECOND);
        latencies.push(sent.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    eprintln!(
        "canary p99 {p99:?} (median {:?})",
        latencies[latencies.len() / 2]
    );
    // The bound is for the release build (docs/benchmarks.md); tests run the debug
    // build on a shared machine, so allow it four times that.
    assert!(
        p99 <= Duration::from_millis(20),
        "canary p99 {p99:?}: {latencies:?}"
    );
}

#[test]
fn a_subscriber_that_does_not_read_pays_alone() {
    let sb = Switchboard::start("max_queued_messages = 100\npublisher_wait_ms = 500");
    let reader = Sub::start(
        sb.ports.tcp,
        &["-t", "slow/#", "-q", "1", "-C", "4000", "-W", "30"],
    );
    let mut stuck = RawClient::connected(sb.tcp_addr(), "never-reads");
    stuck.send(&raw::subscribe_many(false, &["slow/#"]));
    stuck.expect_kind(9, 5 * SECOND);
    // From here on `stuck` reads nothing: 8 MB for it fill every buffer on the way.
    let mut publisher = RawClient::connected(sb.tcp_addr(), "qos1-flood");
    let payload = vec![b'p'; 2048];
    let mut flood = Vec::new();
    for n in 0..4000u32 {
        flood.extend(raw::publish_with(
            "slow/x",
            &payload,
            1,
            (n % 60_000 + 1) as u16,
            false,
        ));
    }
    let started = std::time::Instant::now();
    publisher.send(&flood);
    for _ in 0..4000 {
        publisher.expect_kind(4, 20 * SECOND);
    }
    let acked_in = started.elapsed();
    assert_eq!(
        reader.lines().len(),
        4000,
        "the reading subscriber lost messages"
    );
    assert!(
        sb.wait_for_log("subscriber not reading", 2 * SECOND),
        "the stalled subscriber is logged"
    );
    assert!(acked_in < 15 * SECOND, "the publisher waited {acked_in:?}");
    drop(stuck);
}

#[test]
fn mqtt5_features_with_paho() {
    let sb = Switchboard::start("");
    let out = common::python("v5_paho.py", &["127.0.0.1", &sb.ports.tcp.to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checks = checks_printed(&stdout);
    let got = |name: &str| checks[name]["got"].as_array().cloned().unwrap_or_default();

    let ids = got("subscription_ids");
    assert_eq!(ids.len(), 1, "one copy: {ids:?}");
    assert_eq!(ids[0]["ids"], serde_json::json!([3, 5]));
    assert_eq!(ids[0]["qos"], 1, "the highest granted QoS of the two");
    assert_eq!(got("no_local").len(), 0);
    assert_eq!(got("retain_handling_2").len(), 0);
    let retained = got("retain_on_subscribe");
    assert_eq!(retained.len(), 1, "{retained:?}");
    assert_eq!(retained[0]["retain"], true);
    let request = got("request_response");
    assert_eq!(request.len(), 1, "{request:?}");
    assert!(request[0]["response_topic"]
        .as_str()
        .is_some_and(|t| t.starts_with("resp/")));
    assert_eq!(request[0]["correlation"], "c-1");
    let shared = &checks["shared"];
    let (first, second) = (
        shared["first"].as_u64().unwrap_or(0),
        shared["second"].as_u64().unwrap_or(0),
    );
    assert_eq!(first + second, 20, "each shared message once: {shared}");
    assert!(first > 0 && second > 0, "both members served: {shared}");
}

#[test]
fn subscriptions_past_max_subscriptions_get_quota_exceeded() {
    let sb = Switchboard::start("max_subscriptions = 3");
    let mut v5 = RawClient::connect(sb.tcp_addr());
    v5.send(&raw::connect_v5("many-subs", 30, None));
    v5.expect_kind(2, 5 * SECOND);
    v5.send(&raw::subscribe_many(
        true,
        &["q/1", "q/2", "q/3", "q/4", "q/1"],
    ));
    let suback = v5.expect_kind(9, 5 * SECOND);
    assert_eq!(suback.body.last_chunk::<5>(), Some(&[1, 1, 1, 0x97, 1]));
}

#[test]
fn retained_messages_come_even_behind_hundreds_of_filters_with_none() {
    let sb = Switchboard::start("");
    publish(
        sb.ports.tcp,
        &["-t", "late/state", "-m", "here", "-r", "-q", "1"],
    );
    let mut client = RawClient::connected(sb.tcp_addr(), "many-empty-filters");
    let mut filters: Vec<String> = (0..500).map(|n| format!("none/{n}")).collect();
    filters.push("late/#".into());
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    client.send(&raw::subscribe_many(false, &filters));
    client.expect_kind(9, 5 * SECOND);
    let retained = client.expect_kind(3, 5 * SECOND);
    assert_eq!(raw::publish_parts(&retained, false).1, b"here");
}

#[test]
fn a_v5_clients_receive_maximum_bounds_what_it_has_unacknowledged() {
    let sb = Switchboard::start("");
    let mut properties = raw::connect_properties();
    properties.receive_maximum = Some(2);
    let mut client = RawClient::connect(sb.tcp_addr());
    client.send(&raw::connect_v5("small-window", 30, Some(properties)));
    client.expect_kind(2, 5 * SECOND);
    client.send(&raw::subscribe_many(true, &["window/#"]));
    client.expect_kind(9, 5 * SECOND);
    for n in 0..5 {
        publish(
            sb.ports.tcp,
            &["-t", "window/x", "-m", &format!("m{n}"), "-q", "1"],
        );
    }
    let first = client.expect_kind(3, 5 * SECOND);
    let second = client.expect_kind(3, 5 * SECOND);
    assert!(
        client.read_frame(Duration::from_millis(500)).is_none(),
        "a third PUBLISH before any PUBACK"
    );
    // Acknowledging one lets exactly one more through.
    let pkid = |frame: &raw::Frame| {
        let topic_len = usize::from(u16::from_be_bytes([frame.body[0], frame.body[1]]));
        u16::from_be_bytes([frame.body[2 + topic_len], frame.body[3 + topic_len]])
    };
    client.send(&raw::puback(pkid(&first)));
    let third = client.expect_kind(3, 5 * SECOND);
    assert!(client.read_frame(Duration::from_millis(500)).is_none());
    for frame in [&second, &third] {
        client.send(&raw::puback(pkid(frame)));
    }
    for _ in 0..2 {
        client.expect_kind(3, 5 * SECOND);
    }
}
