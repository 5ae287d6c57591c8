//! Running the binary as an operator does: health, readiness and metrics, signals,
//! start-up errors that name what is wrong, `check-config`, the offline data tools,
//! and what the log looks like.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, RawClient};
use common::{publish, Switchboard};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn health_readiness_and_metrics_are_served() {
    let sb = Switchboard::start("");
    assert_eq!(sb.http_get("/healthz"), (200, "ok\n".to_string()));
    assert_eq!(sb.http_get("/readyz").0, 200);
    publish(sb.ports.tcp, &["-t", "m", "-m", "x"]);
    let mut bad = RawClient::connect(sb.tcp_addr());
    bad.send(&raw::connect_v4("switchboard-internal-z", true, 30));
    let _ = bad.read_frame(3 * SECOND);
    // Counters are updated as connections end: poll briefly.
    let wanted = [
        "switchboard_mqtt_connections_total{listener=\"tcp\"}",
        "switchboard_mqtt_packets_in_total{listener=\"tcp\"}",
        "switchboard_mqtt_refusals_total{reason=\"client_id_invalid\"}",
    ];
    let deadline = Instant::now() + 5 * SECOND;
    let body = loop {
        let (status, body) = sb.http_get("/metrics");
        assert_eq!(status, 200);
        if wanted.iter().all(|w| body.contains(w)) || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for metric in wanted {
        assert!(body.contains(metric), "{metric} missing from\n{body}");
    }
}

#[test]
fn sigterm_disconnects_v5_clients_and_exits_zero() {
    let mut sb = Switchboard::start("");
    let mut client = RawClient::connect(sb.tcp_addr());
    client.send(&raw::connect_v5("shutdown-watch", 30, None));
    assert_eq!(client.connack(), 0);
    let started = Instant::now();
    let code = sb.stop();
    assert_eq!(code, Some(0));
    assert!(
        started.elapsed() < 5 * SECOND,
        "took {:?}",
        started.elapsed()
    );
    let disconnect = client.expect_kind(raw::DISCONNECT, SECOND);
    assert_eq!(disconnect.body[0], 0x8B, "server shutting down");
}

#[test]
fn a_port_in_use_is_a_startup_error_naming_the_listener() {
    let sb = Switchboard::start("");
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = occupied.local_addr().expect("addr").port();
    let config = std::fs::read_to_string(&sb.config_path)
        .expect("config")
        .replace(
            &format!("ws = \"127.0.0.1:{}\"", sb.ports.ws),
            &format!("ws = \"127.0.0.1:{port}\""),
        )
        .replace(&format!("127.0.0.1:{}", sb.ports.tcp), "127.0.0.1:0")
        .replace(&format!("127.0.0.1:{}", sb.ports.http), "127.0.0.1:0")
        .replace(&format!("127.0.0.1:{}", sb.ports.tls), "127.0.0.1:0")
        .replace(&format!("127.0.0.1:{}", sb.ports.wss), "127.0.0.1:0")
        .replace("data_dir = \"data\"", "data_dir = \"data-second\"");
    let path = sb.dir.path().join("busy.toml");
    std::fs::write(&path, config).expect("write");
    let stderr = common::fails(&[&"--config", &path]);
    assert!(
        stderr.contains("ws listener") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
}

#[test]
fn check_config_names_a_misspelled_key_and_tls_without_certificates_fails() {
    let dir = common::TempDir::new("cfg");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[mqtt]\nmax_conections = 10\n").expect("write");
    let stderr = common::fails(&[&"check-config", &bad]);
    assert!(
        stderr.contains("max_conections") && stderr.contains("bad.toml"),
        "{stderr}"
    );
    let verbose = dir.path().join("verbose.toml");
    std::fs::write(&verbose, "[log]\nlevel = \"verbose\"\n").expect("write");
    let stderr = common::fails(&[&"check-config", &verbose]);
    assert!(
        stderr.contains("log.level") && stderr.contains("verbose.toml"),
        "a wrong level would silence every log: {stderr}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[mqtt]\nmax_connections = 10\n").expect("write");
    let out = std::process::Command::new(common::BIN)
        .arg("check-config")
        .arg(&good)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let tls = dir.path().join("tls.toml");
    std::fs::write(
        &tls,
        "[mqtt]\ntcp = \"127.0.0.1:0\"\nws = \"\"\ntls = \"127.0.0.1:0\"\n[http]\nlisten = \"\"\n",
    )
    .expect("write");
    let stderr = common::fails(&[&"--config", &tls]);
    assert!(stderr.contains("switchboard certs-dev"), "{stderr}");
}

#[test]
fn metrics_describe_every_series_from_start_up_with_process_vitals_and_bytes() {
    let sb = Switchboard::start("");
    let (status, metrics) = sb.http_get("/metrics");
    assert_eq!(status, 200);
    for help in [
        "# HELP switchboard_mqtt_packets_in_total",
        "# HELP switchboard_bridge_conflated_total",
        "# HELP process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(help), "{help} missing:\n{metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l == "switchboard_bridge_conflated_total 0"),
        "series are there, at zero, before anything happened:\n{metrics}"
    );
    assert!(
        metrics.contains("switchboard_build_info{version=\""),
        "{metrics}"
    );
    assert!(common::metric(&metrics, "process_resident_memory_bytes") > 1e6);
    assert!(common::metric(&metrics, "process_open_fds") > 0.0);

    publish(sb.ports.tcp, &["-t", "m/t", "-m", "x"]);
    let (_, metrics) = sb.http_get("/metrics");
    let tcp = |name: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{listener=\"tcp\"}}")))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    // mosquitto_pub: CONNECT, PUBLISH, DISCONNECT.
    assert!(tcp("switchboard_mqtt_packets_in_total") >= 3.0, "{metrics}");
    assert!(tcp("switchboard_mqtt_bytes_in_total") > 0.0, "{metrics}");
    assert!(tcp("switchboard_mqtt_bytes_out_total") > 0.0, "{metrics}");
}

#[test]
fn a_data_dir_that_is_a_file_or_corrupt_stops_start_up_naming_the_path() {
    let dir = common::TempDir::new("baddata");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("[node]\ndata_dir = \"{}\"\n[mqtt]\ntcp = \"127.0.0.1:0\"\nws = \"\"\n[http]\nlisten = \"\"\n", file.display())).expect("write");
    let stderr = common::fails(&[&"--config", &config]);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");

    let mut sb = Switchboard::start("");
    publish(sb.ports.tcp, &["-r", "-q", "1", "-t", "c/1", "-m", "x"]);
    assert_eq!(sb.stop(), Some(0));
    let data = sb.dir.path().join("data");
    // sled recovers a torn log by truncating it; a damaged config record it refuses.
    std::fs::write(
        data.join("conf"),
        b"segment_size: lots\nuse_compression: maybe\n",
    )
    .expect("corrupt");
    let stderr = common::fails(&[&"--config", &sb.config_path]);
    assert!(
        stderr.contains("data dir") && stderr.contains(&data.display().to_string()),
        "the error names the data dir's path: {stderr}"
    );
}

#[test]
fn a_log_file_gets_no_colour_codes() {
    let dir = common::TempDir::new("colour");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[mqtt]\ntcp = \"127.0.0.1:0\"\nws = \"\"\n[http]\nlisten = \"\"\n",
    )
    .expect("write");
    let log = dir.path().join("out.log");
    let mut child = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(&config)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + 20 * SECOND;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("switchboard ready")
    {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    common::signal(child.id(), "TERM");
    child.wait().expect("wait");
    let text = std::fs::read_to_string(&log).expect("read");
    assert!(!text.contains('\u{1b}'), "ANSI escapes in a file:\n{text}");
}

/// One raw HTTP/1.1 request; the whole response, lower-cased headers and all.
fn exchange(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.to_lowercase()
}

#[test]
fn metrics_and_health_on_their_own_address_and_cors_for_the_allowed_origins() {
    let mut sb = Switchboard::start("");
    let ops = common::free_port();
    sb.edit_config(
        "[http]\n",
        &format!(
            "[http]\nops_listen = \"127.0.0.1:{ops}\"\nallowed_origins = [\"http://app.example\"]\n"
        ),
    );
    common::wait_for_port(ops, Duration::from_secs(5));
    assert_eq!(sb.http_get("/metrics").0, 404, "not on the public listener");
    assert_eq!(sb.http_get("/healthz").0, 404);
    let (status, text) = common::http_get(ops, "/metrics");
    assert_eq!(status, 200);
    assert!(common::metric(&text, "switchboard_uptime_seconds") > 0.0);
    assert_eq!(common::http_get(ops, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(common::http_get(ops, "/readyz").0, 200);

    let http = sb.ports.http;
    let preflight = |origin: &str| {
        exchange(
            http,
            &format!("OPTIONS /sse?room=a HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\nConnection: close\r\n\r\n"),
        )
    };
    let allowed = preflight("http://app.example");
    assert!(
        allowed.contains("access-control-allow-origin: http://app.example"),
        "{allowed}"
    );
    assert!(
        allowed.contains("access-control-allow-credentials: true"),
        "{allowed}"
    );
    assert!(allowed.contains("authorization"), "{allowed}");
    let other = preflight("http://evil.example");
    assert!(!other.contains("access-control-allow-origin"), "{other}");
    let page = exchange(
        http,
        "GET / HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\nConnection: close\r\n\r\n",
    );
    assert!(page.starts_with("http/1.1 200"), "{page}");
    assert!(page.contains("access-control-allow-origin: http://app.example"));
}
