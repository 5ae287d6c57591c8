//! Sessions end to end: a persistent session (v5 Session Expiry, 3.1.1 clean session
//! 0) keeps its subscriptions and queued QoS 1 messages across reconnects, across a
//! graceful restart and, after an autosave, across SIGKILL; a session past its
//! expiry is gone.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{publish, Sub, Switchboard};

/// Runs `mosquitto_sub ARGS -C count` to completion (queued messages may arrive
/// before its SUBACK) and returns what it printed.
fn drain(sb: &Switchboard, args: &[&str], count: usize) -> Vec<String> {
    drain_within(sb, args, count, 10)
}

fn drain_within(sb: &Switchboard, args: &[&str], count: usize, secs: u32) -> Vec<String> {
    let out = common::tool("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &sb.ports.tcp.to_string()])
        .args(args)
        .args(["-C", &count.to_string(), "-W", &secs.to_string()])
        .output()
        .expect("run mosquitto_sub");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn numbered(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("m{n}")).collect()
}

#[test]
fn persistent_v5_session_gets_its_queued_qos1_messages() {
    let sb = Switchboard::start("");
    let id = [
        "-V",
        "mqttv5",
        "-i",
        "persist-1",
        "-c",
        "-x",
        "99999",
        "-q",
        "1",
    ];
    let first = Sub::start(
        sb.ports.tcp,
        &[&id[..], &["-t", "ps/#", "-C", "1"]].concat(),
    );
    publish(sb.ports.tcp, &["-t", "ps/0", "-m", "m0", "-q", "1"]);
    assert_eq!(first.lines(), vec!["m0".to_string()]);
    for n in 1..=5 {
        publish(
            sb.ports.tcp,
            &["-t", "ps/x", "-m", &format!("m{n}"), "-q", "1"],
        );
    }
    let again = drain(&sb, &[&id[..], &["-t", "ps/#"]].concat(), 5);
    assert_eq!(again, numbered(1..=5));
}

/// Makes `id`'s persistent session subscribed to `ps/#`, then leaves it offline.
fn park_session(sb: &Switchboard, id: &[&str]) {
    let first = Sub::start(sb.ports.tcp, &[id, &["-t", "ps/#", "-C", "1"]].concat());
    // QoS 0: nothing stays in flight if the client leaves before acknowledging.
    publish(sb.ports.tcp, &["-t", "ps/0", "-m", "m0", "-q", "0"]);
    assert_eq!(first.lines(), vec!["m0".to_string()]);
}

#[test]
fn persistent_sessions_survive_a_graceful_restart() {
    let mut sb = Switchboard::start("");
    let v5 = [
        "-V",
        "mqttv5",
        "-i",
        "restart-v5",
        "-c",
        "-x",
        "99999",
        "-q",
        "1",
    ];
    let v311 = ["-V", "mqttv311", "-i", "restart-v311", "-c", "-q", "1"];
    park_session(&sb, &v5);
    park_session(&sb, &v311);
    for n in 1..=3 {
        publish(
            sb.ports.tcp,
            &["-t", "ps/x", "-m", &format!("m{n}"), "-q", "1"],
        );
    }
    sb.stop();
    sb.launch();
    assert!(
        sb.wait_for_log("sessions=2", Duration::from_secs(2)),
        "both sessions restored"
    );
    // The restored subscriptions collect messages before their clients are back.
    publish(sb.ports.tcp, &["-t", "ps/y", "-m", "m4", "-q", "1"]);
    assert_eq!(
        drain(&sb, &[&v5[..], &["-t", "ps/#"]].concat(), 4),
        numbered(1..=4)
    );
    assert_eq!(
        drain(&sb, &[&v311[..], &["-t", "ps/#"]].concat(), 4),
        numbered(1..=4)
    );
}

#[test]
fn persistent_sessions_survive_sigkill_after_an_autosave() {
    let mut sb = Switchboard::start_with("", "[storage]\nautosave_interval = 1");
    let v5 = [
        "-V", "mqttv5", "-i", "crash-v5", "-c", "-x", "99999", "-q", "1",
    ];
    park_session(&sb, &v5);
    for n in 1..=3 {
        publish(
            sb.ports.tcp,
            &["-t", "ps/x", "-m", &format!("m{n}"), "-q", "1"],
        );
    }
    std::thread::sleep(Duration::from_millis(2500)); // two autosaves
    sb.kill();
    sb.launch();
    assert_eq!(
        drain(&sb, &[&v5[..], &["-t", "ps/#"]].concat(), 3),
        numbered(1..=3)
    );
}

#[test]
fn a_session_past_its_expiry_is_gone() {
    let sb = Switchboard::start("");
    let v5 = [
        "-V",
        "mqttv5",
        "-i",
        "short-lived",
        "-c",
        "-x",
        "1",
        "-q",
        "1",
    ];
    park_session(&sb, &v5);
    publish(sb.ports.tcp, &["-t", "ps/x", "-m", "m1", "-q", "1"]);
    std::thread::sleep(Duration::from_millis(2500));
    publish(sb.ports.tcp, &["-t", "ps/x", "-m", "m2", "-q", "1"]);
    // A new session: nothing queued, and no subscription left to queue m2.
    let again = [&v5[..], &["-t", "other/#"]].concat();
    let lines = drain_within(&sb, &again, 1, 2);
    assert!(lines.is_empty(), "{lines:?}");
}
