//! MQTT over every transport: WebSocket (MQTT.js, both versions), TLS and secure
//! WebSocket with the development CA, and idle sockets on those ports.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{node, python, tool, Sub, Switchboard};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn mqtt_js_over_websocket_with_protocol_4_and_5() {
    let sb = Switchboard::start("");
    let url = format!("ws://127.0.0.1:{}/mqtt", sb.ports.ws);
    for version in ["4", "5"] {
        let out = node("roundtrip.js", &[&url, version]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "v{version}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("ok e2e/js/"), "{stdout}");
    }
}

#[test]
fn mqtts_and_wss_with_the_dev_ca() {
    let sb = Switchboard::start("");
    let ca = sb.ca();
    let ca = ca.to_str().expect("utf-8 path");
    let tls = sb.ports.tls.to_string();
    // Waits for the SUBACK (its -d output) before anything is published.
    let sub = Sub::start_at(
        "localhost",
        sb.ports.tls,
        &["--cafile", ca, "-t", "secure/t", "-C", "1", "-W", "10"],
    );
    let out = tool("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &tls,
            "--cafile",
            ca,
            "-t",
            "secure/t",
            "-m",
            "over tls",
        ])
        .output()
        .expect("mosquitto_pub");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sub.lines(), vec!["over tls".to_string()]);

    let url = format!("wss://localhost:{}/mqtt", sb.ports.wss);
    for version in ["4", "5"] {
        let out = node("roundtrip.js", &[&url, version, ca]);
        assert!(
            out.status.success(),
            "wss v{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn idle_sockets_on_tls_and_ws_ports_do_not_delay_new_clients() {
    let sb = Switchboard::start("");
    let _idle_tls: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(("127.0.0.1", sb.ports.tls)).expect("idle tls"))
        .collect();
    let _idle_ws: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(("127.0.0.1", sb.ports.ws)).expect("idle ws"))
        .collect();
    let ca = sb.ca();
    let started = Instant::now();
    let out = tool("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &sb.ports.tls.to_string(),
            "--cafile",
        ])
        .arg(&ca)
        .args(["-t", "t", "-m", "m"])
        .output()
        .expect("mosquitto_pub");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("ws://127.0.0.1:{}/mqtt", sb.ports.ws);
    let js = node("roundtrip.js", &[&url, "4"]);
    assert!(
        js.status.success(),
        "{}",
        String::from_utf8_lossy(&js.stderr)
    );
    assert!(
        started.elapsed() < 5 * SECOND,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_bridge_serves_https_and_wss_with_http_tls() {
    let mut sb = Switchboard::start("");
    sb.edit_config("[http]\n", "[http]\ntls = true\n");
    assert!(sb.wait_for_log("HTTPS listening on", Duration::from_secs(2)));
    let ca = sb.ca();
    let out = python(
        "https_check.py",
        &[&sb.ports.http.to_string(), ca.to_str().expect("utf-8 path")],
    );
    assert!(out.status.success(), "{out:?}");
    let lines = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 101 Switching Protocols",
            "welcome"
        ]
    );
    // Plain HTTP on the HTTPS port gets no HTTP answer (the server may close before
    // the request is even written).
    use std::io::{Read, Write};
    let mut plain = TcpStream::connect(("127.0.0.1", sb.ports.http)).expect("connect");
    plain.set_read_timeout(Some(5 * SECOND)).expect("timeout");
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}
