//! The examples (examples/chat, examples/device-chart) in headless Chromium, with the
//! chat's shipped config (examples/chat/switchboard.toml).

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::{free_port, tool, Switchboard, BIN};

#[test]
fn chat_and_device_chart_work_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let js = root.join("tests/js");
    assert!(
        js.join("node_modules/playwright-core").exists(),
        "tests/js/node_modules is missing: run scripts/test (it runs npm ci)"
    );
    tool("python3");
    tool("mosquitto_pub");
    let chat = std::fs::read_to_string(root.join("examples/chat/switchboard.toml")).unwrap();
    // The chat's own tables; [node] is the test's.
    let tables = &chat[chat.find("[bridge]").expect("[bridge] in the chat config")..];
    let mut sb = Switchboard::start_with("", tables);
    sb.stop();
    let out = tool("node")
        .arg(js.join("examples.js"))
        .arg(BIN)
        .arg(&sb.config_path)
        .arg(sb.ports.http.to_string())
        .arg(sb.ports.tcp.to_string())
        .arg(&sb.log_path)
        .arg(root.join("examples"))
        .arg(free_port().to_string())
        .current_dir(&js)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "examples.js failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().last(), Some(r#"{"chat":"ok","chart":"ok"}"#));
}
