//! Scripts in tests/js that start (and restart, kill, stop) the broker themselves:
//! the test makes a config and ports, the script gets `BIN CONFIG HTTP MQTT LOG ARGS…`
//! and prints one JSON line last, which the test reads.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{tool, Switchboard, BIN};

/// tests/js, with its npm packages and Chromium present (scripts/test installs them).
pub fn js_dir() -> PathBuf {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/playwright-core").exists()
            && js.join("node_modules/typescript").exists(),
        "tests/js/node_modules is missing: run scripts/test (it runs npm ci)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "chromium is not installed: run scripts/test, which installs it"
    );
    js
}

/// A config and ports for a script that runs the broker itself.
pub fn stopped_broker(extra_tables: &str) -> Switchboard {
    let mut sb = Switchboard::start_with("", extra_tables);
    sb.stop();
    sb
}

/// Runs `tests/js/SCRIPT BIN CONFIG HTTP MQTT LOG ARGS…`; its last stdout line as JSON.
pub fn run_script(sb: &Switchboard, script: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Value {
    let js = js_dir();
    let out = tool("node")
        .arg(js.join(script))
        .arg(BIN)
        .arg(&sb.config_path)
        .arg(sb.ports.http.to_string())
        .arg(sb.ports.tcp.to_string())
        .arg(&sb.log_path)
        .args(args)
        .current_dir(&js)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = sb.log();
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        out.status.success(),
        "{script} failed: {}\n{stdout}\nbroker log tail:\n{}",
        String::from_utf8_lossy(&out.stderr),
        lines[lines.len().saturating_sub(30)..].join("\n")
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script}: not JSON ({e}): {last}"))
}
