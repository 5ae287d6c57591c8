//! The browser side and the HTTP listener attacked without credentials: each attack
//! leaves the process running, other clients receiving within 100 ms (a canary MQTT
//! subscriber and a canary browser), and memory under a stated bound.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::canary::Canary;
use common::Switchboard;
use serde_json::json;

/// What a canary may take to get a message while the server is under attack.
const CANARY_BOUND: Duration = Duration::from_millis(100);

/// The attacks share two cores with the server: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn alive(sb: &mut Switchboard) {
    let child = sb.child.as_mut().expect("running");
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the server died; log:\n{}",
        sb.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_ten_thousand_levels_deep_joined_and_left_by_ws_and_sse() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut sb = Switchboard::start("");
    let mut canary = Canary::start(&sb).await;
    let deep = vec!["+"; 10_000].join("/");

    let mut attacker = Browser::connect(sb.ports.http).await;
    let joined = attacker
        .request(json!({"type": "join", "room": deep}))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let left = attacker
        .request(json!({"type": "leave", "room": deep}))
        .await;
    assert_eq!(left["type"], "left", "{left}");
    attacker.join(&deep).await;
    drop(attacker);

    let url_room = deep.replace('+', "%2B");
    let mut sse = tokio::net::TcpStream::connect(("127.0.0.1", sb.ports.http))
        .await
        .unwrap();
    let request = format!(
        "GET /sse?room={url_room} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut sse, request.as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut sse, &mut head),
    )
    .await
    .expect("the SSE stream answers")
    .unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    drop(sse);

    tokio::time::sleep(Duration::from_millis(300)).await;
    alive(&mut sb);
    let worst = canary.worst_of(10).await;
    assert!(worst < CANARY_BOUND, "canary took {worst:?}");
}
