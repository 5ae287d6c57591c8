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

/// The README's "live chart in ten lines", taken from the README itself.
#[test]
fn the_readme_live_chart_draws() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let js = root.join("tests/js");
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
    let mut sb = Switchboard::start("");
    sb.stop();
    let page = after[start..end].replace("localhost:8080", &format!("127.0.0.1:{}", sb.ports.http));
    std::fs::write(sb.dir.path().join("chart.html"), page).unwrap();
    let out = tool("node")
        .arg(js.join("readme_chart.js"))
        .arg(BIN)
        .arg(&sb.config_path)
        .arg(sb.ports.http.to_string())
        .arg(sb.ports.tcp.to_string())
        .arg(&sb.log_path)
        .arg(sb.dir.path())
        .arg(free_port().to_string())
        .current_dir(&js)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "readme_chart.js failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}
