//! The MQTT edge end to end: the real binary with mosquitto_pub/sub, MQTT.js and raw
//! sockets on loopback.

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
use common::{node, publish, signal, Sub, Switchboard};

const SECOND: Duration = Duration::from_secs(1);

fn version_flag(v5: bool) -> &'static str {
    if v5 {
        "mqttv5"
    } else {
        "mqttv311"
    }
}

#[test]
fn mosquitto_clients_of_both_versions_share_one_port_at_every_qos() {
    let sb = Switchboard::start("");
    let port = sb.ports.tcp;
    for (n, (pub_v5, sub_v5, qos)) in [
        (false, false, 0),
        (false, true, 1),
        (true, false, 2),
        (true, true, 1),
        (true, false, 0),
        (false, true, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("interop/{n}");
        let payload = format!(
            "from {} to {} at qos {qos}",
            version_flag(pub_v5),
            version_flag(sub_v5)
        );
        let qos = qos.to_string();
        let sub = Sub::start(
            port,
            &[
                "-V",
                version_flag(sub_v5),
                "-q",
                &qos,
                "-t",
                &topic,
                "-C",
                "1",
                "-W",
                "10",
                "-F",
                "%t|%q|%p",
            ],
        );
        publish(
            port,
            &[
                "-V",
                version_flag(pub_v5),
                "-q",
                &qos,
                "-t",
                &topic,
                "-m",
                &payload,
            ],
        );
        let lines = sub.lines();
        assert_eq!(
            lines,
            vec![format!("{topic}|{qos}|{payload}")],
            "pub {pub_v5} sub {sub_v5}"
        );
    }
}

#[test]
fn retained_message_reaches_later_subscribers_with_retain_set() {
    let sb = Switchboard::start("");
    let port = sb.ports.tcp;
    publish(
        port,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-r",
            "-t",
            "state/lamp",
            "-m",
            "on",
        ],
    );
    for version in ["mqttv311", "mqttv5"] {
        let sub = Sub::start(
            port,
            &[
                "-V", version, "-t", "state/#", "-C", "1", "-W", "10", "-F", "%r|%t|%p",
            ],
        );
        assert_eq!(
            sub.lines(),
            vec!["1|state/lamp|on".to_string()],
            "{version}"
        );
    }
}

#[test]
fn will_is_published_when_the_client_is_killed() {
    let sb = Switchboard::start("");
    let port = sb.ports.tcp;
    let watcher = Sub::start(
        port,
        &["-t", "wills/#", "-C", "1", "-W", "10", "-F", "%t|%p"],
    );
    let doomed = Sub::start(
        port,
        &[
            "-t",
            "unused",
            "-k",
            "60",
            "--will-topic",
            "wills/d1",
            "--will-payload",
            "d1 vanished",
        ],
    );
    signal(doomed.pid(), "KILL");
    assert_eq!(watcher.lines(), vec!["wills/d1|d1 vanished".to_string()]);
    assert!(
        sb.wait_for_log("reason=\"will\"", 5 * SECOND),
        "log names the will"
    );
}

#[test]
fn clean_disconnect_does_not_publish_the_will() {
    let sb = Switchboard::start("");
    let port = sb.ports.tcp;
    let watcher = Sub::start(port, &["-t", "wills/#", "-W", "3", "-F", "%t|%p"]);
    publish(
        port,
        &[
            "-t",
            "x",
            "-m",
            "y",
            "--will-topic",
            "wills/clean",
            "--will-payload",
            "should not",
        ],
    );
    assert!(watcher.lines().is_empty());
}

/// rumqttd's own listener panicked here and poisoned a lock for every later client.
#[test]
fn v5_properties_to_a_311_subscriber_then_reconnect_then_new_client() {
    let sb = Switchboard::start("");
    let port = sb.ports.tcp;
    // The same 3.1.1 client id twice: the second connection must not inherit a
    // broken session from the first.
    for message in ["with props", "second"] {
        let sub = Sub::start(
            port,
            &[
                "-V", "mqttv311", "-i", "old-sub", "-t", "props/t", "-C", "1", "-W", "10",
            ],
        );
        publish(
            port,
            &[
                "-V",
                "mqttv5",
                "-t",
                "props/t",
                "-m",
                message,
                "-D",
                "publish",
                "user-property",
                "k",
                "v",
            ],
        );
        assert_eq!(sub.lines(), vec![message.to_string()]);
    }
    let fresh = Sub::start(
        port,
        &["-V", "mqttv5", "-t", "props/t", "-C", "1", "-W", "10"],
    );
    publish(port, &["-t", "props/t", "-m", "third"]);
    assert_eq!(fresh.lines(), vec!["third".to_string()]);
}

#[test]
fn idle_connection_is_closed_at_the_connect_deadline() {
    let sb = Switchboard::start("connect_timeout_secs = 1");
    let mut idle = RawClient::connect(sb.tcp_addr());
    assert!(idle.closed_within(4 * SECOND));
    assert!(sb.wait_for_log("reason=\"connect_timeout\"", 2 * SECOND));
}

#[test]
fn reserved_client_id_is_refused_twice_then_any_utf8_id_connects() {
    let sb = Switchboard::start("");
    for _ in 0..2 {
        let mut bad = RawClient::connect(sb.tcp_addr());
        bad.send(&raw::connect_v4("switchboard-internal-x", true, 30));
        let connack = bad.read_frame(5 * SECOND).expect("CONNACK");
        assert_eq!(raw::connack_code(&connack), 0x02, "identifier rejected");
        assert!(bad.closed_within(2 * SECOND));
    }
    let mut bad5 = RawClient::connect(sb.tcp_addr());
    bad5.send(&raw::connect_v5("switchboard-internal-y", 30, None));
    let connack = bad5.read_frame(5 * SECOND).expect("CONNACK");
    assert_eq!(
        raw::connack_code(&connack),
        0x85,
        "v5 client identifier not valid"
    );
    // Mosquitto accepts any UTF-8 client id; so do we (rumqttd's router could not).
    for id in ["good-id", "dev#1", "a/b+", "$sys", "温度-1"] {
        let mut good = RawClient::connect(sb.tcp_addr());
        good.send(&raw::connect_v4(id, true, 30));
        assert_eq!(good.connack(), 0, "{id}");
    }
}

#[test]
fn empty_client_id_is_assigned_in_v5_and_refused_without_clean_session_in_311() {
    let sb = Switchboard::start("");
    let mut v5 = RawClient::connect(sb.tcp_addr());
    v5.send(&raw::connect_v5("", 30, None));
    let connack = v5.read_frame(5 * SECOND).expect("CONNACK");
    assert_eq!(raw::connack_code(&connack), 0);
    let assigned = raw::connack_property(&connack, 0x12).expect("Assigned Client Identifier");
    assert!(assigned.len() > 2, "an id was assigned");

    let mut v4 = RawClient::connect(sb.tcp_addr());
    v4.send(&raw::connect_v4("", false, 30));
    assert_eq!(v4.connack(), 0x02);
}

#[test]
fn publish_over_max_payload_disconnects_only_that_client() {
    let sb = Switchboard::start("max_payload = \"1KiB\"");
    let watcher = Sub::start(
        sb.ports.tcp,
        &["-t", "big/#", "-C", "1", "-W", "10", "-F", "%t|%p"],
    );
    let mut big = RawClient::connect(sb.tcp_addr());
    big.send(&raw::connect_v5("big-sender", 30, None));
    assert_eq!(big.connack(), 0);
    big.send(&raw::publish(true, "big/x", &[b'x'; 2048]));
    let disconnect = big.read_frame(5 * SECOND).expect("DISCONNECT");
    assert_eq!(disconnect.kind(), 14);
    assert_eq!(disconnect.body[0], 0x95, "packet too large");
    assert!(big.closed_within(2 * SECOND));

    let mut big4 = RawClient::connect(sb.tcp_addr());
    big4.send(&raw::connect_v4("big-sender-311", true, 30));
    assert_eq!(big4.connack(), 0);
    big4.send(&raw::publish(false, "big/y", &[b'y'; 2048]));
    assert!(big4.closed_within(3 * SECOND));

    publish(sb.ports.tcp, &["-t", "big/small", "-m", "fits"]);
    assert_eq!(watcher.lines(), vec!["big/small|fits".to_string()]);
}

#[test]
fn v5_will_with_delay_arrives_after_the_delay_and_not_before() {
    let sb = Switchboard::start("");
    let watcher = Sub::start(
        sb.ports.tcp,
        &["-t", "delayed/#", "-C", "1", "-W", "15", "-F", "%p"],
    );
    let url = format!("mqtt://127.0.0.1:{}", sb.ports.tcp);
    let dropped_at = Instant::now();
    let out = node("will_delay.js", &[&url, "delayed/w", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = watcher.lines();
    let waited = dropped_at.elapsed();
    assert_eq!(lines, vec!["delayed will".to_string()]);
    assert!(
        waited >= Duration::from_millis(2900),
        "will arrived after {waited:?}, before its 3 s delay"
    );
}

#[test]
fn client_maximum_packet_size_is_never_exceeded() {
    let sb = Switchboard::start("");
    let mut small = RawClient::connect(sb.tcp_addr());
    let mut props = raw::connect_properties();
    props.max_packet_size = Some(128);
    small.send(&raw::connect_v5("small-client", 30, Some(props)));
    assert_eq!(small.connack(), 0);
    small.send(&raw::subscribe(true, "sized/#"));
    small.expect_kind(raw::SUBACK, 5 * SECOND);
    publish(sb.ports.tcp, &["-t", "sized/big", "-m", &"B".repeat(500)]);
    publish(sb.ports.tcp, &["-t", "sized/small", "-m", "tiny"]);
    let frame = small.expect_kind(raw::PUBLISH, 5 * SECOND);
    let (topic, payload) = raw::publish_parts(&frame, true);
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("sized/small", &b"tiny"[..])
    );
    assert!(
        small.read_frame(Duration::from_millis(300)).is_none(),
        "nothing else arrives"
    );
}

#[test]
fn max_keepalive_is_sent_as_server_keep_alive() {
    let sb = Switchboard::start("max_keepalive = 30");
    let mut v5 = RawClient::connect(sb.tcp_addr());
    v5.send(&raw::connect_v5("ka-client", 600, None));
    let connack = v5.read_frame(5 * SECOND).expect("CONNACK");
    assert_eq!(raw::connack_code(&connack), 0);
    assert_eq!(raw::connack_property(&connack, 0x13), Some(vec![0, 30]));

    let mut v4 = RawClient::connect(sb.tcp_addr());
    v4.send(&raw::connect_v4("ka-client-311", true, 600));
    assert_eq!(v4.connack(), 0x02);
}

#[test]
fn keepalive_zero_is_allowed_and_silence_past_keepalive_disconnects() {
    let sb = Switchboard::start("");
    let mut forever = RawClient::connect(sb.tcp_addr());
    forever.send(&raw::connect_v4("ka-zero", true, 0));
    assert_eq!(forever.connack(), 0);
    let mut quiet = RawClient::connect(sb.tcp_addr());
    quiet.send(&raw::connect_v5("ka-one", 1, None));
    assert_eq!(quiet.connack(), 0);
    let disconnect = quiet.expect_kind(raw::DISCONNECT, 8 * SECOND);
    assert_eq!(disconnect.body[0], 0x8D, "keep alive timeout");
    assert!(!forever.closed_within(Duration::from_millis(200)));
}

#[test]
fn bad_first_bytes_second_connect_and_early_publish_close_only_that_connection() {
    let sb = Switchboard::start("");
    let watcher = Sub::start(sb.ports.tcp, &["-t", "alive", "-C", "1", "-W", "10"]);

    let mut garbage = RawClient::connect(sb.tcp_addr());
    garbage.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(garbage.closed_within(3 * SECOND));

    let mut twice = RawClient::connect(sb.tcp_addr());
    twice.send(&raw::connect_v5("twice", 30, None));
    assert_eq!(twice.connack(), 0);
    twice.send(&raw::connect_v5("twice", 30, None));
    let disconnect = twice.expect_kind(raw::DISCONNECT, 3 * SECOND);
    assert_eq!(disconnect.body[0], 0x82, "protocol error");
    assert!(twice.closed_within(2 * SECOND));

    let mut early = RawClient::connect(sb.tcp_addr());
    early.send(&raw::publish(false, "alive", b"too early"));
    assert!(early.closed_within(3 * SECOND));

    // One line per refusal kind per second; the other refusal is counted in the
    // summary line and, like every refusal, in the metric.
    // (Start-up's port probe is refused the same way.)
    assert!(sb.wait_for_log("second CONNECT", 3 * SECOND));
    assert!(sb.wait_for_log(
        "more like this in the last second: protocol_error",
        3 * SECOND
    ));
    let (_, metrics) = sb.http_get("/metrics");
    let refused = common::metric(&metrics, "switchboard_mqtt_refusals_total");
    assert!(refused >= 2.0, "{metrics}");

    publish(sb.ports.tcp, &["-t", "alive", "-m", "still serving"]);
    assert_eq!(watcher.lines(), vec!["still serving".to_string()]);
}

#[test]
fn session_takeover_ends_the_old_connection_with_0x8e() {
    let sb = Switchboard::start("");
    let mut first = RawClient::connect(sb.tcp_addr());
    first.send(&raw::connect_v5("same-id", 30, None));
    assert_eq!(first.connack(), 0);
    let mut second = RawClient::connect(sb.tcp_addr());
    second.send(&raw::connect_v5("same-id", 30, None));
    let disconnect = first.expect_kind(raw::DISCONNECT, 5 * SECOND);
    assert_eq!(disconnect.body[0], 0x8E, "session taken over");
    assert_eq!(second.connack(), 0);
    second.send(&raw::subscribe(true, "takeover/t"));
    second.expect_kind(raw::SUBACK, 5 * SECOND);
    publish(sb.ports.tcp, &["-t", "takeover/t", "-m", "to the new one"]);
    let (_, payload) = raw::publish_parts(&second.expect_kind(raw::PUBLISH, 5 * SECOND), true);
    assert_eq!(payload, b"to the new one");
}
