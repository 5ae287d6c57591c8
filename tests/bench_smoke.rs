//! A seconds-long smoke run of switchboard-bench against the real binary: the tool
//! works and reports what it measured (speed itself is checked by scripts/bench).

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use common::Switchboard;
use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard-bench"))
        .args(args)
        .output()
        .expect("run switchboard-bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).expect("JSON")
}

#[test]
fn throughput_latency_and_browser_fanout_report_deliveries() {
    let sb = Switchboard::start("");
    let mqtt = format!("127.0.0.1:{}", sb.ports.tcp);
    let http = format!("127.0.0.1:{}", sb.ports.http);

    let throughput = bench(&[
        "--mqtt",
        &mqtt,
        "mqtt-throughput",
        "--publishers",
        "1",
        "--subscribers",
        "2",
        "--qos",
        "1",
        "--seconds",
        "1",
    ]);
    assert_eq!(throughput["scenario"], "mqtt-throughput-qos1");
    assert!(
        throughput["delivered"].as_u64().unwrap_or(0) > 0,
        "{throughput}"
    );

    let latency = bench(&[
        "--mqtt",
        &mqtt,
        "mqtt-latency",
        "--rate",
        "500",
        "--seconds",
        "1",
    ]);
    assert_eq!(latency["received"], latency["sent"], "{latency}");
    assert!(latency["latency_p99_ms"].as_f64().unwrap_or(-1.0) >= 0.0);

    let fanout = bench(&[
        "--mqtt",
        &mqtt,
        "--http",
        &http,
        "ws-fanout",
        "--clients",
        "20",
        "--messages",
        "5",
        "--rate",
        "20",
        "--spread",
        "0",
    ]);
    assert_eq!(fanout["delivered"], fanout["expected"], "{fanout}");
    assert_eq!(fanout["expected"], 100);
}
