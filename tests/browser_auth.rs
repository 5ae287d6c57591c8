//! Browser authentication end to end: tokens minted by `switchboard token` (HS256,
//! and ES256 from a PEM key and from a JWK set), taken from the `Authorization`
//! header, the cookie and the first `auth` frame; rooms, publishing and presence as
//! the claims say; the close codes of a missing, forged, expired or URL-borne token;
//! expiry with its grace and a refresh; `/sse` with the cookie; the ACL file on
//! browsers; and a token as an MQTT password (`mqtt_jwt`).

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::browser::{Browser, Ended};
use common::raw::{self, RawClient};
use common::{publish, Sub, Switchboard, BIN};
use serde_json::json;

const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
const SECOND: Duration = Duration::from_secs(1);

fn jwt_broker(extra: &str) -> Switchboard {
    let tables = format!(
        r#"[auth]
browser = "jwt"
browser_auth_timeout_ms = 1500
token_expiry_grace_ms = 1000
{extra}

[rooms.plant-7]
topics = ["factory/plant7/#"]

[rooms.chat]
topics = ["chat/#"]
presence = true
"#
    );
    Switchboard::start_with("", &tables)
}

/// `switchboard token --config <the broker's> ARGS…`.
fn mint(sb: &Switchboard, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&sb.config_path)
        .arg("token")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Opens `/ws` with `Authorization: Bearer <token>` (no `welcome` awaited).
async fn bearer(http: u16, token: &str) -> Browser {
    let header = format!("Bearer {token}");
    Browser::open(http, "/ws", &[("authorization", &header)]).await
}

async fn closed_with(browser: &mut Browser, within: Duration) -> Ended {
    browser.until_closed(within).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_header_cookie_and_frame_grant_exactly_their_claims() {
    let sb = jwt_broker(&format!("jwt_secret = \"{SECRET}\""));
    let http = sb.ports.http;
    let alice = mint(
        &sb,
        &[
            "--sub",
            "alice",
            "--room",
            "sensors/#",
            "--room",
            "plant-7",
            "--publish",
            "devices/+/cmd",
        ],
    );
    // Authorization header: welcomed as alice; only the granted rooms and topics.
    let mut b = bearer(http, &alice).await;
    assert_eq!(b.welcomed_now().await["user"], "alice");
    b.join("sensors/+/temp").await;
    b.join("plant-7").await;
    for room in ["devices/#", "#", "$devices"] {
        let refused = b.request(json!({"type": "join", "room": room})).await;
        assert_eq!(refused["code"], "forbidden", "{room}: {refused}");
    }
    let members = b
        .request(json!({"type": "presence", "room": "plant-7"}))
        .await;
    assert_eq!(members["type"], "presence", "named in rooms: {members}");
    let members = b
        .request(json!({"type": "presence", "room": "sensors/+/temp"}))
        .await;
    assert_eq!(members["code"], "forbidden", "{members}");
    let sub = Sub::start(sb.ports.tcp, &["-t", "devices/#", "-v"]);
    let ack = b
        .request(json!({"type": "publish", "topic": "devices/d1/cmd", "payload": "on", "encoding": "text"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let refused = b
        .request(json!({"type": "publish", "topic": "devices/d1/state", "payload": 1}))
        .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sub.lines(), vec!["devices/d1/cmd on".to_string()]);

    // The cookie, and the first frame.
    let cookie = format!("theme=dark; sb_token={alice}");
    let mut c = Browser::open(http, "/ws", &[("cookie", &cookie)]).await;
    assert_eq!(c.welcomed_now().await["user"], "alice");
    let mut f = Browser::open(http, "/ws", &[]).await;
    assert!(
        f.frame(Duration::from_millis(300)).await.is_none(),
        "no welcome before auth"
    );
    f.send_text(&json!({"type": "auth", "token": alice}).to_string())
        .await;
    assert_eq!(f.welcomed_now().await["user"], "alice");
    f.join("sensors/#").await;

    // Refusals: each its documented close code.
    let in_url = format!("/ws?token={alice}");
    let mut q = Browser::open(http, &in_url, &[]).await;
    assert_eq!(
        closed_with(&mut q, 2 * SECOND).await,
        Ended::Closed(Some(4001)),
        "query"
    );
    let mut forged = alice.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let mut x = bearer(http, &forged).await;
    assert_eq!(
        closed_with(&mut x, 2 * SECOND).await,
        Ended::Closed(Some(4001)),
        "forged"
    );
    let expired = mint(&sb, &["--sub", "alice", "--room", "#", "--ttl", "-60"]);
    let mut e = bearer(http, &expired).await;
    assert_eq!(
        closed_with(&mut e, 2 * SECOND).await,
        Ended::Closed(Some(4002)),
        "expired"
    );
    let mut first = Browser::open(http, "/ws", &[]).await;
    first
        .send_text(r#"{"type":"join","id":1,"room":"sensors/#"}"#)
        .await;
    assert_eq!(
        closed_with(&mut first, 2 * SECOND).await,
        Ended::Closed(Some(4001))
    );
    let started = Instant::now();
    let mut silent = Browser::open(http, "/ws", &[]).await;
    assert_eq!(
        closed_with(&mut silent, 4 * SECOND).await,
        Ended::Closed(Some(4001))
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < 3 * SECOND,
        "{waited:?}"
    );

    // The first ones are still open and served.
    publish(sb.ports.tcp, &["-t", "sensors/a/temp", "-m", "21"]);
    for browser in [&mut b, &mut f] {
        let message = browser.push(2 * SECOND).await.expect("message");
        assert_eq!(message["topic"], "sensors/a/temp", "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_warns_then_closes_unless_refreshed() {
    let sb = jwt_broker(&format!("jwt_secret = \"{SECRET}\""));
    let http = sb.ports.http;
    let short = mint(
        &sb,
        &[
            "--sub",
            "bob",
            "--room",
            "sensors/#",
            "--room",
            "chat/#",
            "--ttl",
            "2",
        ],
    );
    let mut kept = bearer(http, &short).await;
    kept.welcomed_now().await;
    kept.join("sensors/#").await;
    kept.join("chat/#").await;
    let mut lapsed = bearer(http, &short).await;
    lapsed.welcomed_now().await;

    let warned = kept.push(4 * SECOND).await.expect("token_expired");
    assert_eq!(warned["type"], "token_expired", "{warned}");
    assert_eq!(warned["grace_ms"], 1000);
    // A fresh token for the same user; it no longer grants chat/#, which is left.
    let fresh = mint(&sb, &["--sub", "bob", "--room", "sensors/#"]);
    let ack = kept.request(json!({"type": "auth", "token": fresh})).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let left = kept.push(SECOND).await.expect("left");
    assert_eq!(
        left,
        json!({"type": "left", "room": "chat/#", "reason": "forbidden"})
    );
    let other = mint(&sb, &["--sub", "mallory", "--room", "#"]);
    let refused = kept.request(json!({"type": "auth", "token": other})).await;
    assert_eq!(refused["code"], "unauthorized", "{refused}");

    assert_eq!(
        closed_with(&mut lapsed, 3 * SECOND).await,
        Ended::Closed(Some(4002))
    );
    // Past the old token's grace, the refreshed one is still served.
    tokio::time::sleep(SECOND).await;
    publish(sb.ports.tcp, &["-t", "sensors/x", "-m", "1"]);
    let message = kept.push(2 * SECOND).await.expect("still open");
    assert_eq!(message["topic"], "sensors/x", "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_events_and_lists_need_the_presence_claim_or_the_room_by_name() {
    let sb = jwt_broker(&format!("jwt_secret = \"{SECRET}\""));
    let connect = |token: String| async move {
        let mut b = bearer(sb.ports.http, &token).await;
        b.welcomed_now().await;
        b
    };
    let mut named = connect(mint(&sb, &["--sub", "ann", "--room", "chat"])).await;
    let mut covered = connect(mint(&sb, &["--sub", "ben", "--room", "chat/#"])).await;
    named.join("chat").await;
    covered.join("chat").await;
    let event = named.push(2 * SECOND).await.expect("ann sees ben join");
    assert_eq!(
        (event["type"].as_str(), event["member"]["user"].as_str()),
        (Some("member"), Some("ben"))
    );
    let mut third = connect(mint(&sb, &["--sub", "cat", "--room", "chat"])).await;
    third.join("chat").await;
    assert!(named.push(2 * SECOND).await.is_some(), "ann sees cat join");
    assert!(
        covered.push(Duration::from_millis(300)).await.is_none(),
        "ben sees no member events"
    );
    let list = covered
        .request(json!({"type": "presence", "room": "chat"}))
        .await;
    assert_eq!(list["code"], "forbidden", "{list}");
    let list = named
        .request(json!({"type": "presence", "room": "chat"}))
        .await;
    assert_eq!(list["members"].as_array().map(Vec::len), Some(3), "{list}");

    // A fresh token naming the room: ben sees members from now on.
    let fresh = mint(&sb, &["--sub", "ben", "--room", "chat"]);
    let ack = covered
        .request(json!({"type": "auth", "token": fresh}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let list = covered
        .request(json!({"type": "presence", "room": "chat"}))
        .await;
    assert_eq!(list["type"], "presence", "{list}");
    let mut fourth = connect(mint(&sb, &["--sub", "dan", "--room", "chat"])).await;
    fourth.join("chat").await;
    let event = covered.push(2 * SECOND).await.expect("ben sees dan join");
    assert_eq!(event["member"]["user"], "dan", "{event}");
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An EC P-256 key pair: (private PKCS#8 PEM, public SPKI PEM, public JWK set).
fn es256_keys(kid: &str) -> (String, String, String) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = pair.public_key_raw();
    assert_eq!(point.len(), 65, "uncompressed point");
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..]),
    }]});
    (
        pair.serialize_pem(),
        pair.public_key_pem(),
        jwks.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_by_public_key_and_by_jwk_set_and_sse_by_cookie() {
    let dir = common::TempDir::new("jwt-keys");
    let (private, public, jwks) = es256_keys("k1");
    std::fs::write(dir.path().join("private.pem"), &private).unwrap();
    std::fs::write(dir.path().join("public.pem"), &public).unwrap();
    std::fs::write(dir.path().join("jwks.json"), &jwks).unwrap();
    let key = dir.path().join("private.pem");
    let key = key.to_str().unwrap();
    let hs_config = dir.path().join("hs.toml");
    std::fs::write(&hs_config, format!("[auth]\njwt_secret = \"{SECRET}\"\n")).unwrap();
    for setting in ["jwt_public_key", "jwks_file"] {
        let file = match setting {
            "jwt_public_key" => dir.path().join("public.pem"),
            _ => dir.path().join("jwks.json"),
        };
        // The JWK set case also names the issuer and audience tokens must carry.
        let named = match setting {
            "jwks_file" => "\njwt_issuer = \"https://id.test\"\njwt_audience = \"switchboard\"",
            _ => "",
        };
        let sb = jwt_broker(&format!("{setting} = \"{}\"{named}", file.display()));
        let carol = |aud: &str| {
            let args = [
                "--key",
                key,
                "--kid",
                "k1",
                "--sub",
                "carol",
                "--room",
                "sensors/#",
            ];
            mint(
                &sb,
                &[&args[..], &["--iss", "https://id.test", "--aud", aud]].concat(),
            )
        };
        let token = carol("switchboard");
        let mut b = bearer(sb.ports.http, &token).await;
        assert_eq!(b.welcomed_now().await["user"], "carol", "{setting}");
        if setting == "jwks_file" {
            let elsewhere = carol("another-app");
            let mut other = bearer(sb.ports.http, &elsewhere).await;
            let ended = closed_with(&mut other, 2 * SECOND).await;
            assert_eq!(ended, Ended::Closed(Some(4001)), "another audience");
        }
        // An HS256 token (alg confusion) is refused where a public key is configured.
        let hs = Command::new(BIN)
            .arg("--config")
            .arg(&hs_config)
            .args(["token", "--sub", "carol", "--room", "#"])
            .output()
            .unwrap();
        let hs = String::from_utf8(hs.stdout).unwrap();
        let mut x = bearer(sb.ports.http, hs.trim()).await;
        assert_eq!(
            closed_with(&mut x, 2 * SECOND).await,
            Ended::Closed(Some(4001))
        );

        // /sse: the cookie; without one 401, outside the claims 403.
        let port = sb.ports.http;
        let cookie = format!("Cookie: sb_token={token}\r\n");
        assert_eq!(sse_status(port, "/sse?room=sensors/%23", ""), 401);
        assert_eq!(sse_status(port, "/sse?room=alerts/%23", &cookie), 403);
        assert_eq!(sse_status(port, "/sse?room=sensors/%2B", &cookie), 200);
    }
}

/// The status line of a GET with extra header lines.
fn sse_status(port: u16, path: &str, headers: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(2 * SECOND)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    let text = String::from_utf8_lossy(&head);
    text[9..12].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_file_binds_browsers_and_a_token_logs_in_over_mqtt() {
    let dir = common::TempDir::new("jwt-acl");
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "user admin\ntopic readwrite #\n\nuser alice\ntopic read sensors/a/#\ntopic write devices/alice/#\n",
    )
    .unwrap();
    let extra = format!(
        "jwt_secret = \"{SECRET}\"\nmqtt_jwt = true\nacl_file = \"{}\"",
        acl.display()
    );
    let sb = jwt_broker(&extra);
    let tcp = sb.ports.tcp;
    let admin = ["-u", "admin", "-r", "-q", "1"];
    for topic in ["sensors/a/t", "sensors/b/t"] {
        let out = publish(
            tcp,
            &[&admin[..], &["-t", topic, "-m", "retained"]].concat(),
        );
        assert!(out.status.success(), "{out:?}");
    }

    // A browser reads what both its token and the ACL allow: state and live.
    let token = mint(
        &sb,
        &[
            "--sub",
            "alice",
            "--room",
            "sensors/#",
            "--publish",
            "devices/#",
        ],
    );
    let mut b = bearer(sb.ports.http, &token).await;
    b.welcomed_now().await;
    let joined = b.join("sensors/#").await;
    let topics: Vec<&str> = joined["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, vec!["sensors/a/t"], "{joined}");
    publish(tcp, &["-u", "admin", "-t", "sensors/b/t", "-m", "hidden"]);
    publish(tcp, &["-u", "admin", "-t", "sensors/a/t", "-m", "seen"]);
    let message = b.push(2 * SECOND).await.expect("message");
    assert_eq!(
        (message["topic"].as_str(), message["payload"].as_str()),
        (Some("sensors/a/t"), Some("seen"))
    );
    assert!(b.push(Duration::from_millis(300)).await.is_none());
    let refused = b
        .request(json!({"type": "publish", "topic": "devices/bob/cmd", "payload": 1}))
        .await;
    assert_eq!(
        refused["code"], "forbidden",
        "the token allows it, the ACL not: {refused}"
    );
    let ack = b
        .request(json!({"type": "publish", "topic": "devices/alice/state", "payload": 1}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");

    // MQTT: the token as password, as its sub; its claims are the client's ACL.
    let dev = mint(
        &sb,
        &[
            "--sub",
            "dev1",
            "--subscribe",
            "devices/dev1/cmd/#",
            "--publish",
            "devices/dev1/#",
        ],
    );
    for (v5, user, token, code) in [
        (false, "dev1", dev.as_str(), 0),
        (true, "dev1", dev.as_str(), 0),
        (false, "dev2", dev.as_str(), 4),
        (true, "dev2", dev.as_str(), 0x86),
    ] {
        let mut client = RawClient::connect(sb.tcp_addr());
        client.send(&raw::connect_login(v5, "jwt-client", Some((user, token))));
        assert_eq!(client.connack(), code, "v5 {v5} as {user}");
    }
    let expired = mint(&sb, &["--sub", "dev1", "--subscribe", "#", "--ttl", "-5"]);
    let mut client = RawClient::connect(sb.tcp_addr());
    client.send(&raw::connect_login(
        false,
        "jwt-client",
        Some(("dev1", &expired)),
    ));
    assert_eq!(client.connack(), 4, "expired");
    // A token login ends when the token does: v5 DISCONNECT 0x87.
    let short = mint(&sb, &["--sub", "dev1", "--subscribe", "#", "--ttl", "2"]);
    let mut lapsing = RawClient::connect(sb.tcp_addr());
    lapsing.send(&raw::connect_login(
        true,
        "jwt-short",
        Some(("dev1", &short)),
    ));
    assert_eq!(lapsing.connack(), 0);
    let disconnect = lapsing.expect_kind(raw::DISCONNECT, 4 * SECOND);
    assert_eq!(
        disconnect.body.first(),
        Some(&0x87),
        "{:?}",
        disconnect.body
    );
    let sub = Sub::start(tcp, &["-u", "dev1", "-P", &dev, "-t", "#", "-v"]);
    publish(
        tcp,
        &["-u", "admin", "-t", "devices/dev2/cmd/go", "-m", "no"],
    );
    publish(
        tcp,
        &["-u", "admin", "-t", "devices/dev1/cmd/go", "-m", "yes"],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sub.lines(), vec!["devices/dev1/cmd/go yes".to_string()]);
}
