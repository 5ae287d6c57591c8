//! `/sse`: rooms as Server-Sent Events, read over a raw socket as EventSource would.

// End-to-end tests: a failed expectation is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{publish, Switchboard};
use serde_json::{json, Value};

const SECOND: Duration = Duration::from_secs(1);

/// Reads SSE events (event name, id, data) until `count` or `within` passes.
fn read_events(
    reader: &mut BufReader<TcpStream>,
    count: usize,
    within: Duration,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + within;
    let mut events = Vec::new();
    let (mut name, mut id, mut data) = (String::new(), String::new(), String::new());
    while events.len() < count && Instant::now() < deadline {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => continue,
        }
        let line = line.trim_end();
        if line.is_empty() {
            if !data.is_empty() {
                events.push((
                    std::mem::take(&mut name),
                    std::mem::take(&mut id),
                    std::mem::take(&mut data),
                ));
            }
            continue;
        }
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data = v.trim().to_string();
        }
    }
    events
}

fn open_sse(port: u16, room: &str, last_event_id: Option<&str>) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /sse?room={room} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    .expect("request");
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    let deadline = Instant::now() + 5 * SECOND;
    while status.is_empty() && Instant::now() < deadline {
        let _ = reader.read_line(&mut status);
    }
    assert!(status.contains("200"), "{status}");
    reader
}

#[test]
fn sse_streams_state_then_messages_and_resumes_with_last_event_id() {
    let sb = Switchboard::start("");
    publish(sb.ports.tcp, &["-r", "-t", "sse/state", "-m", "{\"v\":1}"]);
    std::thread::sleep(Duration::from_millis(200));
    let mut reader = open_sse(sb.ports.http, "sse/%23", None);
    let state = read_events(&mut reader, 1, 5 * SECOND);
    assert_eq!(state[0].0, "state");
    assert!(state[0].1.is_empty(), "state events carry no id");
    for n in 1..=3 {
        publish(sb.ports.tcp, &["-t", "sse/live", "-m", &n.to_string()]);
    }
    let live = read_events(&mut reader, 3, 5 * SECOND);
    assert_eq!(live.len(), 3);
    assert!(live
        .iter()
        .all(|(name, id, _)| name == "message" && id.contains(':')));
    let last_id = live[2].1.clone();
    drop(reader);

    for n in 4..=5 {
        publish(sb.ports.tcp, &["-t", "sse/live", "-m", &n.to_string()]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut resumed = open_sse(sb.ports.http, "sse/%23", Some(&last_id));
    let missed = read_events(&mut resumed, 2, 5 * SECOND);
    let payloads: Vec<Value> = missed
        .iter()
        .map(|(_, _, data)| serde_json::from_str::<Value>(data).expect("json")["payload"].clone())
        .collect();
    assert_eq!(
        payloads,
        vec![json!(4), json!(5)],
        "no loss, no duplicates, no state again"
    );
    assert!(read_events(&mut resumed, 1, Duration::from_millis(500)).is_empty());
}

#[test]
fn sse_sends_its_headers_and_a_first_comment_at_once_on_a_room_without_state() {
    let sb = Switchboard::start("");
    let started = Instant::now();
    let mut reader = open_sse(sb.ports.http, "nothing/here/%23", None);
    let mut line = String::new();
    while !line.starts_with(':') && started.elapsed() < 5 * SECOND {
        line.clear();
        let _ = reader.read_line(&mut line);
    }
    let took = started.elapsed();
    assert!(line.starts_with(':'), "no comment line within {took:?}");
    // EventSource.onopen fires on the headers; the keep-alive interval is 15 s.
    assert!(took < SECOND, "headers and first comment after {took:?}");
}
