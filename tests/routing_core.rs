//! Switchboard's own routing core end to end: the defects rumqttd's router had
//! (a multi-byte topic stopping routing, QoS 2 kept without limit, PUBREL releasing
//! the wrong message, 100 of 1 000 retained, invalid filters and wills granted,
//! presence before the last message), each reproduced with real clients against the
//! real binary. Memory bounds: tests/bounds.rs; MQTT 5 options: tests/mqtt5.rs.

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
use common::{publish, Sub, Switchboard};

const SECOND: Duration = Duration::from_secs(1);

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
    let suback = v4.expect_kind(raw::SUBACK, 5 * SECOND);
    assert_eq!(&suback.body[2..], &[0x80, 0x80, 0x80, 1, 1]);
    // $SYS/broker is published at start and every sys_interval.
    let sys = v4.expect_kind(raw::PUBLISH, 5 * SECOND);
    let (topic, _) = raw::publish_parts(&sys, false);
    assert!(topic.starts_with("$SYS/broker/"), "{topic}");

    let mut v5 = RawClient::connect(sb.tcp_addr());
    v5.send(&raw::connect_v5("filters-v5", 30, None));
    v5.expect_kind(raw::CONNACK, 5 * SECOND);
    v5.send(&raw::subscribe_many(true, &["a/#/b", "#/#", "a+", "ok/#"]));
    let suback = v5.expect_kind(raw::SUBACK, 5 * SECOND);
    assert_eq!(suback.body.last_chunk::<4>(), Some(&[0x8F, 0x8F, 0x8F, 1]));
    // A client may not publish into $SYS: v5 QoS 1 gets "not authorized".
    v5.send(&raw::publish_v5_with(
        "$SYS/broker/uptime",
        b"0",
        1,
        3,
        false,
    ));
    let puback = v5.expect_kind(raw::PUBACK, 5 * SECOND);
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
        let connack = client.expect_kind(raw::CONNACK, 5 * SECOND);
        assert_eq!(raw::connack_code(&connack), 0x90, "{topic}");
    }
    let mut client = RawClient::connect(sb.tcp_addr());
    client.send(&raw::connect_v5_with_will("utf8-will", b"w/\xff\xfe", b"x"));
    let connack = client.expect_kind(raw::CONNACK, 5 * SECOND);
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
    assert_eq!(
        raw::connack_code(&dying.expect_kind(raw::CONNACK, 5 * SECOND)),
        0
    );
    drop(dying);
    assert_eq!(watcher.lines(), vec!["wills/ok gone".to_string()]);
}

#[test]
fn qos2_publisher_without_pubrel_is_stopped_at_receive_maximum() {
    let sb = Switchboard::start("receive_maximum = 10");
    let mut client = RawClient::connect(sb.tcp_addr());
    client.send(&raw::connect_v5("no-pubrel", 30, None));
    let connack = client.expect_kind(raw::CONNACK, 5 * SECOND);
    assert_eq!(raw::connack_property(&connack, 0x21), Some(vec![0, 10]));
    let mut burst = Vec::new();
    for pkid in 1..=11u16 {
        burst.extend(raw::publish_v5_with("q2/held", b"x", 2, pkid, false));
    }
    client.send(&burst);
    for _ in 0..10 {
        client.expect_kind(raw::PUBREC, 5 * SECOND);
    }
    let disconnect = client.expect_kind(raw::DISCONNECT, 5 * SECOND);
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
    client.expect_kind(raw::PUBREC, 5 * SECOND);
    client.expect_kind(raw::PUBREC, 5 * SECOND);
    client.send(&raw::pubrel(6));
    let comp = client.expect_kind(raw::PUBCOMP, 5 * SECOND);
    assert_eq!(comp.body[..2], 6u16.to_be_bytes());
    // A retransmission of 5 (still unreleased) is acknowledged, not delivered again.
    let mut dup = raw::publish_with("q2/a", b"first", 2, 5, false);
    dup[0] |= 0x08;
    client.send(&dup);
    client.expect_kind(raw::PUBREC, 5 * SECOND);
    client.send(&raw::pubrel(5));
    let comp = client.expect_kind(raw::PUBCOMP, 5 * SECOND);
    assert_eq!(comp.body[..2], 5u16.to_be_bytes());
    assert_eq!(sub.lines(), vec!["first".to_string(), "second".to_string()]);
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
    client.expect_kind(raw::SUBACK, 5 * SECOND);
    let retained = client.expect_kind(raw::PUBLISH, 5 * SECOND);
    assert_eq!(raw::publish_parts(&retained, false).1, b"here");
}
