//! A real browser: headless Chromium opens the dashboard served by Switchboard,
//! joins a room over `/ws`, and shows what mosquitto_pub publishes.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{publish, tool, Switchboard};

#[test]
fn chromium_dashboard_shows_a_live_mqtt_message() {
    let sb = Switchboard::start("");
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/playwright-core").exists(),
        "tests/js/node_modules is missing: run scripts/test (it runs npm ci)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "chromium is not installed: run scripts/test, which installs it"
    );
    let screenshot = sb.dir.path().join("dashboard.png");
    let url = format!("http://127.0.0.1:{}/", sb.ports.http);
    let mut child = tool("node")
        .arg(js.join("dashboard.js"))
        .args([&url, "plant/#", "plant/line1/speed", "{\"rpm\":1200}"])
        .arg(&screenshot)
        .current_dir(&js)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node dashboard.js");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = lines.next().and_then(Result::ok);
    assert_eq!(
        ready.as_deref(),
        Some("ready"),
        "the page did not join the room"
    );
    publish(
        sb.ports.tcp,
        &["-t", "plant/line1/speed", "-m", "{\"rpm\": 1200}"],
    );
    let done = lines.next().and_then(Result::ok);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "node did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
    }
    assert!(status.success(), "dashboard.js failed: {stderr}");
    assert_eq!(done.as_deref(), Some("ok"), "{stderr}");
    assert!(std::fs::metadata(&screenshot)
        .map(|m| m.len() > 1000)
        .unwrap_or(false));
}
