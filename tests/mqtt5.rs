//! MQTT 5 as clients use it, against the real binary: delivery rules with MQTT.js,
//! features with paho-mqtt (subscription identifiers, No Local, Retain Handling,
//! request/response, shared subscriptions), a client's Receive Maximum, and the
//! per-session subscription bound.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::raw::{self, RawClient};
use common::{node, publish, Switchboard};
use serde_json::Value;

const SECOND: Duration = Duration::from_secs(1);

/// The `{"check": NAME, ...}` lines a client script printed, by name; the script
/// must have succeeded.
fn checks_printed(out: &std::process::Output) -> std::collections::HashMap<String, Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let checks = checks_printed(&out);
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

#[test]
fn mqtt5_features_with_paho() {
    let sb = Switchboard::start("");
    let out = common::python("v5_paho.py", &["127.0.0.1", &sb.ports.tcp.to_string()]);
    let checks = checks_printed(&out);
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
    v5.expect_kind(raw::CONNACK, 5 * SECOND);
    v5.send(&raw::subscribe_many(
        true,
        &["q/1", "q/2", "q/3", "q/4", "q/1"],
    ));
    let suback = v5.expect_kind(raw::SUBACK, 5 * SECOND);
    assert_eq!(suback.body.last_chunk::<5>(), Some(&[1, 1, 1, 0x97, 1]));
}

#[test]
fn a_v5_clients_receive_maximum_bounds_what_it_has_unacknowledged() {
    let sb = Switchboard::start("");
    let mut properties = raw::connect_properties();
    properties.receive_maximum = Some(2);
    let mut client = RawClient::connect(sb.tcp_addr());
    client.send(&raw::connect_v5("small-window", 30, Some(properties)));
    client.expect_kind(raw::CONNACK, 5 * SECOND);
    client.send(&raw::subscribe_many(true, &["window/#"]));
    client.expect_kind(raw::SUBACK, 5 * SECOND);
    for n in 0..5 {
        publish(
            sb.ports.tcp,
            &["-t", "window/x", "-m", &format!("m{n}"), "-q", "1"],
        );
    }
    let first = client.expect_kind(raw::PUBLISH, 5 * SECOND);
    let second = client.expect_kind(raw::PUBLISH, 5 * SECOND);
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
    let third = client.expect_kind(raw::PUBLISH, 5 * SECOND);
    assert!(client.read_frame(Duration::from_millis(500)).is_none());
    for frame in [&second, &third] {
        client.send(&raw::puback(pkid(frame)));
    }
    for _ in 0..2 {
        client.expect_kind(raw::PUBLISH, 5 * SECOND);
    }
}
