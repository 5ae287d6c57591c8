//! Shared end-to-end harness: start the real `switchboard` binary on free loopback
//! ports, run real clients (mosquitto_pub/sub, MQTT.js), speak raw MQTT when a test
//! needs bytes no client library will send.
#![allow(dead_code)]
// Test helpers: a failed expectation is a failed test, so they may panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod browser;
pub mod canary;
pub mod raw;
pub mod rawws;
pub mod scripted;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A fresh folder under the target dir, removed when the test passes.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A loopback port nobody listens on right now, below the kernel's ephemeral range
/// (32768+) so that client sockets of other tests cannot take it while a test
/// restarts its server.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..2000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(104_729)) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

pub struct Ports {
    pub tcp: u16,
    pub tls: u16,
    pub ws: u16,
    pub wss: u16,
    pub http: u16,
}

impl Ports {
    fn pick() -> Ports {
        Ports {
            tcp: free_port(),
            tls: free_port(),
            ws: free_port(),
            wss: free_port(),
            http: free_port(),
        }
    }
}

/// The real binary, started with a config on free ports; SIGTERM (then SIGKILL) on drop.
pub struct Switchboard {
    pub child: Option<Child>,
    pub dir: TempDir,
    pub ports: Ports,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
}

impl Switchboard {
    /// Starts with TLS (dev certificates made for this test) and `extra` appended to
    /// the config (it may add keys to `[mqtt]`, which is the last table before it).
    pub fn start(extra_mqtt: &str) -> Switchboard {
        Self::start_with(extra_mqtt, "")
    }

    pub fn start_with(extra_mqtt: &str, extra_tables: &str) -> Switchboard {
        let dir = TempDir::new("sb");
        let ports = Ports::pick();
        let certs = dir.path().join("certs");
        let made = Command::new(BIN)
            .args(["certs-dev", "--out"])
            .arg(&certs)
            .output()
            .expect("run certs-dev");
        assert!(made.status.success(), "certs-dev failed: {made:?}");
        let config = format!(
            r#"[node]
data_dir = "data"
shutdown_grace_secs = 3

[http]
listen = "127.0.0.1:{http}"

[tls]
cert = "certs/server.pem"
key = "certs/server.key"

[log]
level = "debug,sled=info"

{extra_tables}

[mqtt]
tcp = "127.0.0.1:{tcp}"
tls = "127.0.0.1:{tls}"
ws = "127.0.0.1:{ws}"
wss = "127.0.0.1:{wss}"
{extra_mqtt}
"#,
            http = ports.http,
            tcp = ports.tcp,
            tls = ports.tls,
            ws = ports.ws,
            wss = ports.wss,
        );
        let config_path = dir.path().join("switchboard.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut sb = Switchboard {
            child: None,
            log_path: dir.path().join("switchboard.log"),
            dir,
            ports,
            config_path,
        };
        sb.launch();
        sb
    }

    /// Starts (again) the binary with this test's config and waits until it serves.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config_path)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn switchboard");
        self.child = Some(child);
        wait_for_port(self.ports.tcp, Duration::from_secs(20));
        wait_for_port(self.ports.http, Duration::from_secs(5));
    }

    /// Stops the server, replaces `from` with `to` in its config, and starts it again
    /// (for keys of sections the config template already has).
    pub fn edit_config(&mut self, from: &str, to: &str) {
        self.stop();
        let config = std::fs::read_to_string(&self.config_path).expect("read config");
        assert!(config.contains(from), "{from:?} is not in the config");
        std::fs::write(&self.config_path, config.replacen(from, to, 1)).expect("write config");
        self.launch();
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.tcp))
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (log lines are written asynchronously).
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends SIGTERM and waits; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(child.id(), "TERM");
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.ports.http, path)
    }
}

impl Drop for Switchboard {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- switchboard log ({}) ----\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

pub fn wait_for_port(port: u16, within: Duration) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listening on 127.0.0.1:{port} after {within:?}");
}

/// A minimal HTTP/1.1 GET (enough for health and metrics): (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect http");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Runs a tool that a test needs; a missing tool fails the test (scripts/test installs them).
pub fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run scripts/test, which installs it"
    );
    Command::new(name)
}

/// A running `mosquitto_sub`; its output lines are collected by a reader thread.
pub struct Sub {
    child: Child,
    output: std::sync::mpsc::Receiver<Vec<String>>,
}

impl Sub {
    /// Starts `mosquitto_sub -p PORT -d ARGS…` and waits until it has subscribed
    /// (the `-d` debug output shows SUBACK).
    pub fn start(port: u16, args: &[&str]) -> Sub {
        Sub::start_at("127.0.0.1", port, args)
    }

    /// The same with another host name (TLS: the one the certificate names).
    pub fn start_at(host: &str, port: u16, args: &[&str]) -> Sub {
        use std::io::BufRead;
        tool("mosquitto_sub");
        // stdbuf: mosquitto_sub block-buffers a piped stdout, hiding the SUBACK line.
        let mut child = tool("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                host,
                "-p",
                &port.to_string(),
                "-d",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_sub");
        let stdout = child.stdout.take().expect("stdout");
        let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
        let (output_tx, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("SUBACK") {
                    let _ = subscribed_tx.send(());
                }
                lines.push(line);
            }
            let _ = output_tx.send(lines);
        });
        assert!(
            subscribed.recv_timeout(Duration::from_secs(10)).is_ok(),
            "mosquitto_sub {args:?} did not get a SUBACK"
        );
        Sub { child, output }
    }

    /// Waits for it to exit (give it `-C N` or `-W secs`) and returns its output
    /// without the debug lines.
    pub fn lines(mut self) -> Vec<String> {
        wait_child(&mut self.child, Duration::from_secs(15));
        self.output
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default()
            .into_iter()
            .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed"))
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_child(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// `mosquitto_pub -p PORT ARGS…`, asserting it succeeded.
pub fn publish(port: u16, args: &[&str]) -> Output {
    let out = tool("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a script from tests/js with node, after `npm ci` made node_modules.
pub fn node(script: &str, args: &[&str]) -> Output {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/mqtt").exists(),
        "tests/js/node_modules is missing: run scripts/test (it runs npm ci)"
    );
    tool("node")
        .arg(js.join(script))
        .args(args)
        .current_dir(&js)
        .output()
        .expect("run node")
}

/// Resident memory of process `pid` in KiB (fails the test when /proc cannot say).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc status")
}

/// Runs a script from tests/py with the venv scripts/test made (paho-mqtt).
pub fn python(script: &str, args: &[&str]) -> Output {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py");
    let interpreter = py.join(".venv/bin/python");
    assert!(
        interpreter.exists(),
        "tests/py/.venv is missing: run scripts/test (it installs paho-mqtt)"
    );
    Command::new(interpreter)
        .arg(py.join(script))
        .args(args)
        .output()
        .expect("run python")
}

/// The sum of a Prometheus series' values (all label sets) in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| {
            l.split_whitespace()
                .last()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .sum()
}

/// Runs the binary with `args`, expecting it to fail; returns what it wrote to stderr.
pub fn fails(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let out = Command::new(BIN)
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run switchboard");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "{args:?} succeeded; stderr: {stderr}",
        args = args.iter().map(|a| a.as_ref()).collect::<Vec<_>>()
    );
    stderr
}
