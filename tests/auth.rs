//! MQTT authentication and per-topic ACLs end to end: password files made by
//! `mosquitto_passwd` and by `switchboard passwd`, the CONNACK codes of each
//! refusal, ACL rules enforced on subscribe, publish and delivery, and SIGHUP.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::raw::{self, RawClient};
use common::rawws::RawWs;
use common::{publish, signal, tool, Sub, Switchboard, BIN};

const SECOND: Duration = Duration::from_secs(1);

fn switchboard_passwd(file: &std::path::Path, user: &str, password: Option<&str>) {
    let mut command = Command::new(BIN);
    command.arg("passwd").arg(file).arg(user);
    if password.is_none() {
        command.arg("-D");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("switchboard passwd");
    if let Some(password) = password {
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn connack(sb: &Switchboard, v5: bool, login: Option<(&str, &str)>) -> u8 {
    let mut client = RawClient::connect(sb.tcp_addr());
    client.send(&raw::connect_login(v5, "login-test", login));
    client.connack()
}

/// A broker with users made by mosquitto_passwd (`mosq`) and switchboard passwd
/// (`sb`), and `extra` added to `[auth]`.
fn with_users(extra: &str) -> (Switchboard, std::path::PathBuf) {
    let dir = common::TempDir::new("auth-files");
    let file = dir.path().join("passwords");
    let made = tool("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&file)
        .args(["mosq", "from-mosquitto"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    switchboard_passwd(&file, "sb", Some("from-switchboard"));
    let tables = format!("[auth]\npassword_file = \"{}\"\n{extra}\n", file.display());
    let sb = Switchboard::start_with("", &tables);
    std::mem::forget(dir);
    (sb, file)
}

#[test]
fn passwords_from_mosquitto_passwd_and_switchboard_passwd_and_the_refusal_codes() {
    let (mut sb, file) = with_users("");
    // Start-up says, per listener, who may connect.
    assert!(
        sb.log().contains("MQTT listening on 127.0.0.1")
            && sb.log().contains(": 2 users by password; every topic"),
        "{}",
        sb.log()
    );
    for v5 in [false, true] {
        assert_eq!(
            connack(&sb, v5, Some(("mosq", "from-mosquitto"))),
            0,
            "v5 {v5}"
        );
        assert_eq!(
            connack(&sb, v5, Some(("sb", "from-switchboard"))),
            0,
            "v5 {v5}"
        );
        let (bad, anonymous) = if v5 { (0x86, 0x87) } else { (4, 5) };
        assert_eq!(connack(&sb, v5, Some(("mosq", "wrong"))), bad, "v5 {v5}");
        assert_eq!(connack(&sb, v5, Some(("nobody", "x"))), bad, "v5 {v5}");
        assert_eq!(connack(&sb, v5, None), anonymous, "v5 {v5}");
    }
    // mosquitto_pub, as a user would try it.
    let port = sb.ports.tcp.to_string();
    let refused = tool("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "mosq",
            "-P",
            "nope",
            "-t",
            "t",
            "-m",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    publish(
        sb.ports.tcp,
        &["-u", "mosq", "-P", "from-mosquitto", "-t", "t", "-m", "x"],
    );
    let (_, metrics) = sb.http_get("/metrics");
    assert!(metrics.contains("reason=\"bad_credentials\""), "{metrics}");

    // Removed with switchboard passwd -D; SIGHUP; its next connect is refused.
    switchboard_passwd(&file, "sb", None);
    signal(sb.child.as_ref().unwrap().id(), "HUP");
    assert!(sb.wait_for_log("password and ACL files reloaded", 5 * SECOND));
    assert_eq!(connack(&sb, true, Some(("sb", "from-switchboard"))), 0x86);
    assert_eq!(connack(&sb, true, Some(("mosq", "from-mosquitto"))), 0);
    let child = sb.child.as_mut().unwrap();
    assert!(child.try_wait().unwrap().is_none());
}

/// Publishes as the ACL file's `admin` user.
fn as_admin(port: u16, topic: &str, message: &str) {
    publish(
        port,
        &["-u", "admin", "-P", "pw", "-t", topic, "-m", message],
    );
}

/// The topics of the PUBLISH packets that arrive until a second passes without one.
fn topics_received(client: &mut RawClient) -> Vec<String> {
    let mut topics = Vec::new();
    while let Some(frame) = client.read_frame(SECOND) {
        if frame.kind() == raw::PUBLISH {
            topics.push(raw::publish_parts(&frame, true).0);
        }
    }
    topics
}

const ACL: &str = "\
user dev1
topic write devices/dev1/#
topic read devices/dev1/cmd/#

user admin
topic readwrite #

pattern read clients/%c/inbox
";

#[test]
fn acl_limits_subscribe_publish_and_delivery_and_sighup_shrinks_a_connected_client() {
    let dir = common::TempDir::new("acl");
    let passwords = dir.path().join("passwords");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, ACL).unwrap();
    for user in ["dev1", "admin"] {
        switchboard_passwd(&passwords, user, Some("pw"));
    }
    let tables = format!(
        "[auth]\npassword_file = \"{}\"\nacl_file = \"{}\"\n",
        passwords.display(),
        acl.display()
    );
    let sb = Switchboard::start_with("", &tables);
    let port = sb.ports.tcp;

    // admin sees everything that gets through.
    let admin = Sub::start(
        port,
        &["-u", "admin", "-P", "pw", "-t", "#", "-v", "-W", "4"],
    );
    // dev1 subscribes to # (allowed in part: it only gets what it may read) and to
    // a filter it may not read at all (refused).
    let mut dev1 = RawClient::connect(sb.tcp_addr());
    dev1.send(&raw::connect_login(true, "dev1-link", Some(("dev1", "pw"))));
    assert_eq!(dev1.connack(), 0);
    dev1.send(&raw::subscribe_many(true, &["#", "devices/dev2/#"]));
    let suback = dev1.expect_kind(raw::SUBACK, 5 * SECOND);
    assert_eq!(
        &suback.body[suback.body.len() - 2..],
        &[0x01, 0x87],
        "{:?}",
        suback.body
    );

    // dev1 publishes to its own topic and to another device's: the second reaches
    // nobody.
    dev1.send(&raw::publish(true, "devices/dev1/state", b"mine"));
    dev1.send(&raw::publish(true, "devices/dev2/state", b"not mine"));
    as_admin(port, "devices/dev1/cmd/reboot", "go");
    as_admin(port, "devices/dev2/cmd/reboot", "other");
    // %c: dev1's client id is dev1-link.
    as_admin(port, "clients/dev1-link/inbox", "hello");

    assert_eq!(
        topics_received(&mut dev1),
        vec!["devices/dev1/cmd/reboot", "clients/dev1-link/inbox"]
    );

    // SIGHUP with dev1's cmd grant gone: still connected, no more commands.
    std::fs::write(&acl, ACL.replace("topic read devices/dev1/cmd/#\n", "")).unwrap();
    signal(sb.child.as_ref().unwrap().id(), "HUP");
    assert!(sb.wait_for_log("password and ACL files reloaded", 5 * SECOND));
    as_admin(port, "devices/dev1/cmd/reboot", "again");
    as_admin(port, "clients/dev1-link/inbox", "still");
    assert_eq!(topics_received(&mut dev1), vec!["clients/dev1-link/inbox"]);
    assert!(
        !dev1.closed_within(Duration::from_millis(100)),
        "not disconnected"
    );

    let seen = admin.lines();
    assert!(
        seen.iter().any(|l| l == "devices/dev1/state mine"),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|l| l.contains("not mine")), "{seen:?}");
}

#[test]
fn a_disallowed_origin_gets_403_on_ws_sse_and_mqtt_over_websocket() {
    let mut sb = Switchboard::start("");
    sb.edit_config(
        "[http]\n",
        "[http]\nallowed_origins = [\"http://good.example\"]\n",
    );
    let (http, ws) = (sb.ports.http, sb.ports.ws);
    let evil = "Origin: http://evil.example\r\n";
    let good = "Origin: http://good.example\r\n";
    assert!(RawWs::upgrade_status(http, "/ws", evil).contains(" 403"));
    assert!(RawWs::upgrade_status(ws, "/mqtt", evil).contains(" 403"));
    assert!(RawWs::upgrade_status(http, "/ws", good).contains(" 101"));
    assert!(RawWs::upgrade_status(ws, "/mqtt", good).contains(" 101"));
    // Non-browser clients send no Origin (require_origin is off).
    assert!(RawWs::upgrade_status(ws, "/mqtt", "").contains(" 101"));
    let sse = RawWs::upgrade_status(http, "/sse?room=a", evil);
    assert!(sse.contains(" 403"), "{sse}");
}

#[test]
fn the_admin_api_needs_its_token_and_client_ids_are_bound_to_users() {
    let dir = common::TempDir::new("admin");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[http]\nadmin = true\n").unwrap();
    let stderr = common::fails(&[&"check-config", &config]);
    assert!(stderr.contains("http.admin_token"), "{stderr}");

    let (mut sb, _file) = with_users("client_id_pattern = \"%u-*\"");
    sb.edit_config(
        "[http]\n",
        "[http]\nadmin = true\nadmin_token = \"0123456789abcdef0123\"\n",
    );
    let (status, _) = sb.http_get("/admin/retained?filter=%23");
    assert_eq!(status, 401);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", sb.ports.http)).unwrap();
    write!(
        stream,
        "GET /admin/retained?filter=%23 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer 0123456789abcdef0123\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let mut mine = RawClient::connect(sb.tcp_addr());
    mine.send(&raw::connect_login_as(
        true,
        "mosq-phone",
        ("mosq", "from-mosquitto"),
    ));
    assert_eq!(mine.connack(), 0);
    let mut other = RawClient::connect(sb.tcp_addr());
    other.send(&raw::connect_login_as(
        true,
        "sb-device",
        ("mosq", "from-mosquitto"),
    ));
    assert_eq!(other.connack(), 0x85, "another user's client id");
    let mut v4 = RawClient::connect(sb.tcp_addr());
    v4.send(&raw::connect_login_as(
        false,
        "sb-device",
        ("mosq", "from-mosquitto"),
    ));
    assert_eq!(v4.connack(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_ip_limit_holds_under_a_connection_flood_and_others_keep_their_latency() {
    let mut sb = Switchboard::start("max_connections_per_ip = 100");
    let mut canary = common::canary::Canary::start(&sb).await;
    let unloaded = canary.worst_of(5).await;
    let tcp = sb.ports.tcp;
    let flood = tokio::task::spawn_blocking(move || {
        // ~1 000 connections a second from 127.0.0.1 for a second, all held open.
        let mut held = Vec::new();
        let mut connacked = 0;
        let started = std::time::Instant::now();
        for n in 0..1_000 {
            let socket = std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], tcp)),
                SECOND,
            );
            let Ok(mut socket) = socket else { continue };
            let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = socket.write_all(&raw::connect_v4(&format!("flood-{n}"), true, 60));
            let mut ack = [0u8; 4];
            if std::io::Read::read_exact(&mut socket, &mut ack).is_ok() && ack[0] == 0x20 {
                connacked += 1;
            }
            held.push(socket);
            let due = started + Duration::from_millis(n);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        (connacked, held)
    });
    let mut loaded = Duration::ZERO;
    while !flood.is_finished() {
        loaded = loaded.max(canary.probe().await.mqtt);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (connacked, held) = flood.await.unwrap();
    // The canary's own two connections share the address.
    assert!(connacked <= 100, "{connacked} connections got CONNACK");
    assert!(connacked >= 90, "only {connacked}");
    let bound = (unloaded * 2).max(Duration::from_millis(20));
    assert!(
        loaded <= bound,
        "canary {loaded:?} under the flood, {unloaded:?} before"
    );
    let (_, metrics) = sb.http_get("/metrics");
    assert!(
        metrics.contains("reason=\"max_connections_per_ip\""),
        "{metrics}"
    );
    drop(held);
    let child = sb.child.as_mut().unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the server stays up");
}

#[tokio::test(flavor = "multi_thread")]
async fn topic_limits_and_the_per_client_message_rate() {
    let sb = Switchboard::start(
        "max_topic_levels = 8\nmax_topic_length = 64\nmax_messages_per_sec = 200",
    );
    let deep = ["a"; 9].join("/");
    let mut client = RawClient::connect(sb.tcp_addr());
    client.send(&raw::connect_v5("limits", 60, None));
    assert_eq!(client.connack(), 0);
    client.send(&raw::subscribe(true, &deep));
    let suback = client.expect_kind(raw::SUBACK, 5 * SECOND);
    assert_eq!(
        suback.body.last(),
        Some(&0x8F),
        "filter over max_topic_levels"
    );
    let mut publisher = RawClient::connect(sb.tcp_addr());
    publisher.send(&raw::connect_v5("limits-pub", 60, None));
    assert_eq!(publisher.connack(), 0);
    publisher.send(&raw::publish_with_v5(&deep, b"x", 1, 7));
    let puback = publisher.expect_kind(raw::PUBACK, 5 * SECOND);
    assert_eq!(
        puback.body.get(2),
        Some(&0x90),
        "topic over the limits: {:?}",
        puback.body
    );
    let mut browser = common::browser::Browser::connect(sb.ports.http).await;
    let refused = browser
        .request(serde_json::json!({"type": "join", "room": deep}))
        .await;
    assert_eq!(refused["code"], "invalid_room", "{refused}");

    // 200 messages a second, burst 400: 1 000 QoS 0 publishes in one go take about
    // (1 000 - 400) / 200 = 3 s to be read; a subscriber gets every one.
    let sub = Sub::start(sb.ports.tcp, &["-t", "rate/t", "-C", "1000", "-W", "15"]);
    let started = std::time::Instant::now();
    let mut fast = RawClient::connected(sb.tcp_addr(), "fast-publisher");
    // Ten writes of 100: what one read holds is applied, then the reads wait.
    for batch in 0..10 {
        let mut bytes = Vec::new();
        for n in batch * 100..(batch + 1) * 100 {
            bytes.extend(raw::publish(false, "rate/t", format!("{n}").as_bytes()));
        }
        fast.send(&bytes);
        std::thread::sleep(Duration::from_millis(10));
    }
    let lines = sub.lines();
    let took = started.elapsed();
    assert_eq!(lines.len(), 1_000, "nothing dropped");
    assert!(
        took >= Duration::from_millis(2_000),
        "read at the rate: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}
