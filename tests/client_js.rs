//! switchboard.js, the browser client served at `/client.js`, end to end: in
//! headless Chromium through broker restarts (graceful and kill -9), with tokens
//! that expire, over JSON and MessagePack; 500 Node clients reconnecting after a
//! restart; and its TypeScript declarations checked by `tsc`.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::scripted::{js_dir, run_script, stopped_broker};
use common::tool;
use serde_json::Value;

fn numbers(values: &Value) -> Vec<u64> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap_or_else(|| panic!("not a number: {v}")))
        .collect()
}

fn graceful_restart(protocol: &str) {
    let sb = stopped_broker("");
    let seen = run_script(&sb, "client_restart.js", &[&"graceful", &protocol]);
    let got = numbers(&seen["seen"]);
    let want: Vec<u64> = (1..=200).collect();
    assert_eq!(got, want, "all 200 exactly once, in order: {seen}");
    let joins = seen["joins"].as_array().unwrap();
    assert_eq!(joins.len(), 2, "the first join and one re-join: {seen}");
    assert_eq!(joins[1]["resumed"], true);
    assert_eq!(joins[1]["recovered"], true, "{seen}");
    assert_eq!(
        seen["states"].as_array().unwrap().len(),
        1,
        "no redraw: {seen}"
    );
    let events: Vec<&str> = seen["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Retries that found the broker still down end with 1006 in between.
    let (first, rest) = events.split_at(2);
    assert_eq!(
        first,
        ["connected", "disconnected 1001"],
        "the server said it was going away: {events:?}"
    );
    assert_eq!(rest.last(), Some(&"reconnected"), "{events:?}");
    assert!(
        rest[..rest.len() - 1]
            .iter()
            .all(|e| *e == "disconnected 1006"),
        "{events:?}"
    );
}

fn crash_restart(protocol: &str) {
    let sb = stopped_broker("");
    let seen = run_script(&sb, "client_restart.js", &[&"crash", &protocol]);
    let view = seen["view"].as_object().unwrap();
    assert_eq!(view.len(), 200, "{seen}");
    for i in 1..=200u64 {
        assert_eq!(view[&format!("count/{i}")], i, "count/{i}");
    }
    let joins = seen["joins"].as_array().unwrap();
    assert_eq!(joins.len(), 2, "{seen}");
    assert_eq!(joins[1]["recovered"], false, "history was lost: {seen}");
    assert_eq!(joins[1]["reason"], "epoch_changed");
    let states = seen["states"].as_array().unwrap();
    assert_eq!(states.len(), 2, "the initial state and one redraw: {seen}");
    assert_eq!(states[1]["recovered"], false);
    assert!(
        states[1]["items"].as_u64().unwrap() >= 100,
        "the redraw held the retained values from before the crash: {seen}"
    );
    let before_crash = numbers(&seen["seen"]);
    assert_eq!(&before_crash[..100], &(1..=100).collect::<Vec<_>>()[..]);
}

#[test]
fn chromium_client_resumes_through_a_graceful_restart_json() {
    graceful_restart("json");
}

#[test]
fn chromium_client_resumes_through_a_graceful_restart_msgpack() {
    graceful_restart("msgpack");
}

#[test]
fn chromium_client_redraws_after_a_crash_json() {
    crash_restart("json");
}

#[test]
fn chromium_client_redraws_after_a_crash_msgpack() {
    crash_restart("msgpack");
}

#[test]
fn typescript_declarations_describe_the_client() {
    let js = js_dir();
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    let out = tool("node")
        .arg(js.join("node_modules/typescript/bin/tsc"))
        .arg("-p")
        .arg(client.join("tsconfig.json"))
        .output()
        .expect("run tsc");
    assert!(
        out.status.success(),
        "tsc: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn token_refresh(protocol: &str) {
    let sb = stopped_broker(
        "[auth]\nbrowser = \"jwt\"\njwt_secret = \"test-secret-that-is-at-least-32-bytes-long\"\n",
    );
    let seen = run_script(&sb, "client_token.js", &[&protocol]);
    let want: Vec<u64> = (1..=150).collect();
    assert_eq!(numbers(&seen["seen"]), want, "{seen}");
    assert_eq!(
        seen["events"],
        serde_json::json!(["connected"]),
        "never dropped: {seen}"
    );
    assert_eq!(seen["user"], "alice");
    assert!(
        seen["refreshed"].as_u64().unwrap() >= 2,
        "two expiries crossed, each refreshed on the open connection: {seen}"
    );
}

#[test]
fn chromium_client_refreshes_its_token_before_it_expires_json() {
    token_refresh("json");
}

#[test]
fn chromium_client_refreshes_its_token_before_it_expires_msgpack() {
    token_refresh("msgpack");
}

#[test]
fn five_hundred_clients_return_spread_over_the_backoff_window() {
    let sb = stopped_broker("");
    let storm = run_script(&sb, "storm.js", &[&"500"]);
    eprintln!("reconnect storm: {storm}");
    assert_eq!(storm["back"], 500, "{storm}");
    assert!(storm["codes"]["1001"].as_u64().unwrap() >= 500, "{storm}");
    let busiest = storm["busiest_100ms"].as_u64().unwrap();
    assert!(
        busiest <= 100,
        "at most a fifth of the clients in any 100 ms: {storm}"
    );
    let (p10, p90) = (
        storm["p10"].as_u64().unwrap(),
        storm["p90"].as_u64().unwrap(),
    );
    assert!(
        p90 - p10 >= 800,
        "the middle 80 % spread over at least 0.8 s: {storm}"
    );
    assert!(
        storm["max"].as_u64().unwrap() <= 20_000,
        "within the 20 s cap: {storm}"
    );
}

#[test]
fn node_client_stops_on_refused_tokens_retries_with_fresh_ones_and_detects_a_dead_broker() {
    let sb = stopped_broker(
        "[auth]\nbrowser = \"jwt\"\njwt_secret = \"test-secret-that-is-at-least-32-bytes-long\"\n\n[bridge]\nheartbeat_ms = 1000\n",
    );
    let edges = run_script(&sb, "client_edges.js", &[]);
    eprintln!("client edges: {edges}");
    let bad = &edges["static_bad_token"];
    assert_eq!(
        bad["retries"], 0,
        "a refused static token is not retried: {edges}"
    );
    assert_eq!(bad["state"], "closed");
    assert!(bad["errors"]
        .as_array()
        .unwrap()
        .contains(&Value::from("unauthorized")));
    assert_eq!(edges["get_token"]["user"], "ann");
    assert!(
        edges["get_token"]["calls"].as_u64().unwrap() >= 2,
        "{edges}"
    );
    assert_eq!(edges["dead_code"], 4000, "{edges}");
    let dead_after = edges["dead_after_ms"].as_u64().unwrap();
    assert!(
        (900..=3500).contains(&dead_after),
        "two heartbeats of 1 s, give or take a check: {edges}"
    );
    assert_eq!(edges["reconnected"], true);
}
