//! Browser rooms end to end: the real binary, real WebSocket clients on `/ws`,
//! mosquitto_pub/sub on the MQTT side.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::browser::{missed_payloads, Browser};
use common::raw::{self, RawClient};
use common::{publish, signal, Sub, Switchboard};
use serde_json::{json, Value};

const SECOND: Duration = Duration::from_secs(1);

const ROOMS: &str = r#"
[bridge]
browser_publish = ["open/#"]

[rooms.plant-7]
topics = ["factory/plant7/#", "alerts/plant7/+"]

[rooms.chat]
topics = ["chat/#"]
publish = ["chat/+"]
presence = true
"#;

fn start() -> Switchboard {
    Switchboard::start_with("", ROOMS)
}

#[tokio::test(flavor = "multi_thread")]
async fn retained_state_on_join_then_live_messages_with_each_payload_encoding() {
    let sb = start();
    publish(sb.ports.tcp, &["-r", "-t", "sensors/a/temp", "-m", "21.5"]);
    publish(sb.ports.tcp, &["-r", "-t", "sensors/a/hum", "-m", "40"]);
    let mut browser = Browser::connect(sb.ports.http).await;
    assert!(browser.welcome["session"].is_string());
    assert_eq!(browser.welcome["heartbeat_ms"], 25000);

    // The retained publish and the edge's feed race the join: wait for the state.
    let mut joined = browser.join("sensors/+/temp").await;
    let deadline = Instant::now() + 5 * SECOND;
    while joined["state"].as_array().map_or(0, Vec::len) == 0 && Instant::now() < deadline {
        browser
            .request(json!({"type": "leave", "room": "sensors/+/temp"}))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        joined = browser.join("sensors/+/temp").await;
    }
    assert_eq!(
        joined["state"],
        json!([{"topic": "sensors/a/temp", "payload": 21.5, "ts": joined["state"][0]["ts"]}])
    );
    assert!(
        joined["epoch"].is_string() && joined["offset"].is_string(),
        "{joined}"
    );

    publish(
        sb.ports.tcp,
        &["-t", "sensors/b/temp", "-m", "{\"c\": 22.0}"],
    );
    let message = browser.push(5 * SECOND).await.expect("message");
    assert_eq!(message["type"], "message");
    assert_eq!(message["room"], "sensors/+/temp");
    assert_eq!(message["topic"], "sensors/b/temp");
    assert_eq!(message["payload"], json!({"c": 22.0}));
    assert_eq!(message["retain"], false);
    assert!(message.get("encoding").is_none());
    assert!(
        message["offset"].is_string() && message["ts"].is_u64(),
        "{message}"
    );

    publish(sb.ports.tcp, &["-t", "sensors/c/temp", "-m", "warm", "-r"]);
    let text = browser.push(5 * SECOND).await.expect("text message");
    assert_eq!(
        (text["payload"].clone(), text["encoding"].clone()),
        (json!("warm"), json!("text"))
    );
    assert_eq!(text["retain"], true, "retain as published: {text}");

    let mut raw = RawClient::connect(sb.tcp_addr());
    raw.send(&raw::connect_v4("binary-pub", true, 30));
    raw.expect_kind(raw::CONNACK, 5 * SECOND);
    raw.send(&raw::publish(false, "sensors/d/temp", &[0xff, 0x00, 0x10]));
    let binary = browser.push(5 * SECOND).await.expect("binary message");
    assert_eq!(
        (binary["payload"].clone(), binary["encoding"].clone()),
        (json!("/wAQ"), json!("base64"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_browsers_in_a_room_and_an_mqtt_subscriber_see_a_browser_publish() {
    let sb = start();
    let mqtt = Sub::start(sb.ports.tcp, &["-t", "#", "-W", "4", "-F", "%t|%p"]);
    let mut alice = Browser::connect(sb.ports.http).await;
    let mut bob = Browser::connect(sb.ports.http).await;
    alice.join("chat").await;
    bob.join("chat").await;

    let ack = alice
        .request(json!({"type": "publish", "topic": "chat/general", "payload": {"text": "hi"}, "qos": 1}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = bob.pushes_of("message", 1, 5 * SECOND).await;
    assert_eq!(seen[0]["payload"], json!({"text": "hi"}));
    assert_eq!(seen[0]["room"], "chat");
    let own = alice.pushes_of("message", 1, 5 * SECOND).await;
    assert_eq!(
        own[0]["topic"], "chat/general",
        "the publisher is in the room too"
    );

    let text = alice
        .request(json!({"type": "publish", "topic": "open/raw", "payload": "plain words", "encoding": "text"}))
        .await;
    assert_eq!(text["type"], "ack");

    let refused = alice
        .request(json!({"type": "publish", "topic": "secret/plans", "payload": 1}))
        .await;
    assert_eq!(
        (refused["type"].clone(), refused["code"].clone()),
        (json!("error"), json!("forbidden"))
    );
    let invalid = alice
        .request(json!({"type": "publish", "topic": "chat/#", "payload": 1}))
        .await;
    assert_eq!(invalid["code"], "invalid_topic");

    assert!(bob
        .pushes_of("message", 1, Duration::from_millis(500))
        .await
        .is_empty());
    let lines = mqtt.lines();
    assert_eq!(
        lines,
        vec![
            "chat/general|{\"text\":\"hi\"}".to_string(),
            "open/raw|plain words".to_string()
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_room_delivers_both_filters_leave_stops_and_each_room_gets_a_copy() {
    let sb = start();
    let mut browser = Browser::connect(sb.ports.http).await;
    browser.join("plant-7").await;
    browser.join("factory/#").await;

    publish(sb.ports.tcp, &["-t", "factory/plant7/speed", "-m", "12"]);
    let copies = browser.pushes_of("message", 2, 5 * SECOND).await;
    let mut rooms: Vec<String> = copies
        .iter()
        .map(|m| m["room"].as_str().unwrap_or("").to_string())
        .collect();
    rooms.sort();
    assert_eq!(rooms, vec!["factory/#", "plant-7"]);
    assert_eq!(
        copies[0]["offset"], copies[1]["offset"],
        "one message, one offset"
    );

    publish(sb.ports.tcp, &["-t", "alerts/plant7/fire", "-m", "1"]);
    let alert = browser.pushes_of("message", 1, 5 * SECOND).await;
    assert_eq!(
        (alert[0]["room"].clone(), alert[0]["topic"].clone()),
        (json!("plant-7"), json!("alerts/plant7/fire"))
    );

    let left = browser
        .request(json!({"type": "leave", "room": "plant-7"}))
        .await;
    assert_eq!(
        left,
        json!({"type": "left", "id": left["id"], "room": "plant-7"})
    );
    publish(sb.ports.tcp, &["-t", "factory/plant7/speed", "-m", "13"]);
    publish(sb.ports.tcp, &["-t", "alerts/plant7/fire", "-m", "2"]);
    let after = browser.pushes_of("message", 2, SECOND).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["room"], "factory/#");
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_room_shows_a_device_online_then_offline_with_the_will_reason() {
    let sb = start();
    let mut browser = Browser::connect(sb.ports.http).await;
    let joined = browser.join("$devices").await;
    assert_eq!(joined["state"], json!([]));

    let device = Sub::start(
        sb.ports.tcp,
        &[
            "-i",
            "dev1",
            "-u",
            "alice",
            "-t",
            "x",
            "--will-topic",
            "w/dev1",
            "--will-payload",
            "gone",
        ],
    );
    let online = browser.pushes_of("device", 1, 5 * SECOND).await;
    assert_eq!(online[0]["client_id"], "dev1");
    assert_eq!(online[0]["online"], true);
    assert_eq!(online[0]["username"], "alice");

    let mut late = Browser::connect(sb.ports.http).await;
    let state = late.join("$devices/dev1").await;
    assert!(
        state["state"]
            .as_array()
            .is_some_and(|s| s.iter().any(|d| d["client_id"] == "dev1")),
        "{state}"
    );

    signal(device.pid(), "KILL");
    let offline = browser.pushes_of("device", 1, 5 * SECOND).await;
    assert_eq!(
        offline[0],
        json!({"type": "device", "room": "$devices", "client_id": "dev1", "online": false, "reason": "will"})
    );
    drop(device);
}

#[tokio::test(flavor = "multi_thread")]
async fn room_presence_lists_members_and_pushes_joins_and_leaves() {
    let sb = start();
    let mut alice = Browser::connect(sb.ports.http).await;
    let mut bob = Browser::connect(sb.ports.http).await;
    alice.join("chat").await;
    bob.join("chat").await;
    let join = alice.pushes_of("member", 1, 5 * SECOND).await;
    assert_eq!(join[0]["event"], "join");
    assert_eq!(join[0]["member"]["session"], bob.welcome["session"]);
    let members = alice
        .request(json!({"type": "presence", "room": "chat"}))
        .await;
    assert_eq!(
        members["members"].as_array().map(Vec::len),
        Some(2),
        "{members}"
    );
    drop(bob);
    let leave = alice.pushes_of("member", 1, 5 * SECOND).await;
    assert_eq!(leave[0]["event"], "leave");
    let pong = alice.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_error_codes_and_the_connection_stays_open() {
    let sb = Switchboard::start_with("", "[bridge]\nmax_frame = \"1KiB\"\n");
    let mut browser = Browser::connect(sb.ports.http).await;

    browser.send_text("this is not json").await;
    assert_eq!(
        browser.push(5 * SECOND).await.expect("error")["code"],
        "bad_request"
    );
    browser
        .send_text("{\"type\": \"join\", \"id\": 41, \"room\": ")
        .await;
    let truncated = browser.reply_to(41).await;
    assert_eq!(truncated["code"], "bad_request");

    let cases = [
        (json!({"type": "teleport"}), "unknown_type"),
        (json!({"room": "x"}), "bad_request"),
        (json!({"type": "join"}), "bad_request"),
        (json!({"type": "join", "room": "a/#/b"}), "invalid_room"),
        (
            json!({"type": "leave", "room": "never/joined"}),
            "not_joined",
        ),
        (json!({"type": "publish", "topic": "open/x"}), "bad_request"),
        (
            json!({"type": "join", "room": "x", "since": {"epoch": 1}}),
            "bad_request",
        ),
    ];
    for (request, code) in cases {
        let reply = browser.request(request.clone()).await;
        assert_eq!(
            (reply["type"].clone(), reply["code"].clone()),
            (json!("error"), json!(code)),
            "{request}"
        );
        assert!(reply["message"].is_string());
    }

    let big = json!({"type": "ping", "id": 77, "pad": "x".repeat(2000)}).to_string();
    browser.send_text(&big).await;
    let too_large = browser.reply_to(77).await;
    assert_eq!(too_large["code"], "too_large");
    assert_eq!(
        browser.request(json!({"type": "ping"})).await["type"],
        "pong",
        "still open"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_floods_are_rate_limited_then_closed_with_1008_and_others_are_unaffected() {
    let sb = Switchboard::start_with("", "[bridge]\nmax_requests_per_sec = 5\nmax_errors = 10\n");
    let mut bystander = Browser::connect(sb.ports.http).await;
    bystander.join("news/#").await;
    let mut flooder = Browser::connect(sb.ports.http).await;
    for id in 0..40 {
        flooder
            .send_text(&json!({"type": "ping", "id": id}).to_string())
            .await;
    }
    let mut limited = 0;
    let ended = loop {
        match tokio::time::timeout(5 * SECOND, futures_util::StreamExt::next(&mut flooder.ws)).await
        {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text).expect("json");
                if frame["code"] == "rate_limited" {
                    limited += 1;
                }
            }
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => {
                break frame.map(|f| u16::from(f.code));
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("flooder was not closed with a code: {other:?}"),
        }
    };
    assert!(limited >= 10, "{limited} rate_limited errors");
    assert_eq!(ended, Some(1008));

    publish(sb.ports.tcp, &["-t", "news/today", "-m", "still here"]);
    let news = bystander.pushes_of("message", 1, 5 * SECOND).await;
    assert_eq!(news[0]["payload"], "still here");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_resume_with_since_and_rewind() {
    let sb = start();
    let mut browser = Browser::connect(sb.ports.http).await;
    let joined = browser.join("log/#").await;
    let epoch = joined["epoch"].as_str().expect("epoch").to_string();
    publish(sb.ports.tcp, &["-t", "log/a", "-m", "1"]);
    let first = browser.pushes_of("message", 1, 5 * SECOND).await;
    let resume_from = first[0]["offset"].as_str().expect("offset").to_string();
    drop(browser);

    for n in 2..=4 {
        publish(sb.ports.tcp, &["-t", "log/a", "-m", &n.to_string()]);
    }
    publish(sb.ports.tcp, &["-t", "elsewhere", "-m", "x"]);
    let mut back = Browser::connect(sb.ports.http).await;
    let resumed = back
        .request(json!({"type": "join", "room": "log/#", "since": {"epoch": epoch, "offset": resume_from}}))
        .await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let payloads = missed_payloads(&resumed);
    assert_eq!(payloads, vec![json!(2), json!(3), json!(4)]);

    let mut other = Browser::connect(sb.ports.http).await;
    let stale = other
        .request(json!({"type": "join", "room": "log/#", "since": {"epoch": "another-epoch", "offset": "1"}}))
        .await;
    assert_eq!(stale["recovered"], false);
    let rewound = other
        .request(json!({"type": "join", "room": "log/+", "rewind": 2}))
        .await;
    let payloads = missed_payloads(&rewound);
    assert_eq!(payloads, vec![json!(3), json!(4)]);
}
