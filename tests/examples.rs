//! The examples (examples/chat, examples/device-chart) in headless Chromium, with the
//! chat's shipped config (examples/chat/switchboard.toml), and the README's live chart.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::scripted::{run_script, stopped_broker};
use common::{free_port, tool};

#[test]
fn chat_and_device_chart_work_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    tool("python3");
    tool("mosquitto_pub");
    let chat = std::fs::read_to_string(root.join("examples/chat/switchboard.toml")).unwrap();
    // The chat's own tables; [node] is the test's.
    let tables = &chat[chat.find("[bridge]").expect("[bridge] in the chat config")..];
    let sb = stopped_broker(tables);
    let examples = root.join("examples");
    let report = run_script(&sb, "examples.js", &[&examples, &free_port().to_string()]);
    assert_eq!(report, serde_json::json!({"chat": "ok", "chart": "ok"}));
}

/// The README's "live chart in ten lines", taken from the README itself.
#[test]
fn the_readme_live_chart_draws() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    tool("python3");
    tool("mosquitto_pub");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let after = &readme[readme
        .find("A live chart in ten lines")
        .expect("the chart in the README")..];
    let start = after.find("```html\n").unwrap() + "```html\n".len();
    let end = start + after[start..].find("```").unwrap();
    let script_lines = after[start..end]
        .lines()
        .filter(|l| !l.starts_with('<'))
        .count();
    assert!(script_lines <= 10, "{script_lines} lines of script");
    let sb = stopped_broker("");
    let page = after[start..end].replace("localhost:8080", &format!("127.0.0.1:{}", sb.ports.http));
    std::fs::write(sb.dir.path().join("chart.html"), page).unwrap();
    let report = run_script(
        &sb,
        "readme_chart.js",
        &[&sb.dir.path(), &free_port().to_string()],
    );
    assert!(report["drawn_pixels"].as_u64().unwrap() > 20, "{report}");
}
