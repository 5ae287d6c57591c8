//! `switchboard` with no config file: MQTT on 1883 and HTTP on 8080, as the README says.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{http_get, publish, wait_for_port, Sub, TempDir, BIN};

#[test]
fn no_config_file_serves_mqtt_on_1883_and_health_on_8080() {
    let dir = TempDir::new("defaults");
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_port(1883, Duration::from_secs(20));
    wait_for_port(8080, Duration::from_secs(5));
    let sub = Sub::start(1883, &["-t", "defaults/t", "-C", "1", "-W", "10"]);
    publish(1883, &["-t", "defaults/t", "-m", "on the default port"]);
    assert_eq!(sub.lines(), vec!["on the default port".to_string()]);
    assert_eq!(http_get(8080, "/healthz"), (200, "ok\n".to_string()));
    common::signal(child.id(), "TERM");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
}

#[test]
fn print_config_shows_the_effective_defaults() {
    let dir = TempDir::new("print");
    let out = Command::new(BIN)
        .arg("print-config")
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tcp = \"127.0.0.1:1883\""),
        "loopback only: {text}"
    );
    assert!(text.contains("max_payload = \"256KiB\""), "{text}");
    // No dev certificates in this folder: the TLS listeners are off.
    assert!(text.contains("tls = \"\""), "{text}");
}
