//! The dashboard at `/` in headless Chromium (tests/js/dashboard.js drives it and
//! the broker): topic tree, devices, inspector, restart banner, phone layout, 10 000
//! retained topics; over JSON and MessagePack. It also takes the screenshots in
//! docs/img/ (written there when SB_UPDATE_SCREENSHOTS=1, else under target/).

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};

use common::{tool, Switchboard, BIN};
use serde_json::Value;

fn run_dashboard(protocol: &str, shots: &Path) -> Value {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/playwright-core").exists(),
        "tests/js/node_modules is missing: run scripts/test (it runs npm ci)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "chromium is not installed: run scripts/test, which installs it"
    );
    tool("mosquitto_pub");
    let mut sb = Switchboard::start_with(
        "",
        "[bridge]\nbrowser_publish = [\"plant/+/cmd\"]\nmax_state_topics = 20000\n",
    );
    sb.stop();
    std::fs::create_dir_all(shots).unwrap();
    let out = tool("node")
        .arg(js.join("dashboard.js"))
        .arg(BIN)
        .arg(&sb.config_path)
        .arg(sb.ports.http.to_string())
        .arg(sb.ports.tcp.to_string())
        .arg(&sb.log_path)
        .arg(shots)
        .arg(protocol)
        .current_dir(&js)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dashboard.js {protocol} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("dashboard ({protocol}): {report}");
    report
}

fn check(report: &Value) {
    assert!(
        report["publish_to_tree_ms"].as_u64().unwrap() < 1000,
        "{report}"
    );
    assert!(
        report["device_offline"]
            .as_str()
            .unwrap()
            .ends_with("disconnect"),
        "{report}"
    );
    assert!(report["recovered_banner"]
        .as_str()
        .unwrap()
        .contains("history recovered"));
    assert!(
        report["phone"]["width"].as_u64().unwrap() <= 390,
        "{report}"
    );
    assert!(report["big_dom_rows"].as_u64().unwrap() < 200, "{report}");
    // Long tasks are measured and reported; the bound only catches a frozen page
    // (the machine is shared with the rest of the suite).
    assert!(
        report["long_tasks"]["max_ms"].as_u64().unwrap() < 2000,
        "{report}"
    );
}

fn shots_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("SB_UPDATE_SCREENSHOTS") {
        Some(_) => root.join("docs/img"),
        None => root.join("target/screenshots"),
    }
}

#[test]
fn chromium_dashboard_json() {
    let shots = shots_dir();
    let report = run_dashboard("json", &shots);
    check(&report);
    for name in ["desktop-light", "desktop-dark", "phone-light", "phone-dark"] {
        let png = shots.join(format!("dashboard-{name}.png"));
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is missing or blank", png.display());
    }
}

#[test]
fn chromium_dashboard_msgpack() {
    let shots = std::env::temp_dir().join(format!("sb-shots-{}", std::process::id()));
    let report = run_dashboard("msgpack", &shots);
    check(&report);
    let _ = std::fs::remove_dir_all(shots);
}
