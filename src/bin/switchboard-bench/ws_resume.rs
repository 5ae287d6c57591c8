//! The resume scenario: how long a browser's `join` with `since` takes to answer, by
//! the number of messages it missed (Switchboard only).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::net::{self, Mqtt};
use crate::stats::Report;
use crate::wire;
use crate::ws::{handshake, number_after, Ws};

/// Resume cost: for each gap size, how long a `join` with `since` takes to answer
/// with that many missed messages (Switchboard only).
pub async fn resume_cost(
    mqtt: SocketAddr,
    http: SocketAddr,
    gaps: &[usize],
) -> Result<Report, String> {
    let mut report = Report::new("ws-resume");
    let mut publisher = Mqtt::connect(mqtt, None, "resume-pub", 0).await?;
    for &gap in gaps {
        let room = format!("bench/resume/{gap}/#");
        let stream = net::connect(http, None).await.map_err(|e| e.to_string())?;
        let (mut ws, _) = handshake(format!("ws://{http}/ws"), stream)
            .await
            .map_err(|e| e.to_string())?;
        let joined = request(
            &mut ws,
            &format!("{{\"type\":\"join\",\"id\":1,\"room\":\"{room}\"}}"),
        )
        .await?;
        let epoch = string_after(&joined, "\"epoch\":\"").ok_or("no epoch")?;
        let offset = string_after(&joined, "\"offset\":\"").ok_or("no offset")?;
        drop(ws);
        let mut out = bytes::BytesMut::new();
        for n in 0..gap {
            wire::publish(
                &mut out,
                &format!("bench/resume/{gap}/t{}", n % 10),
                format!("{{\"n\":{n}}}").as_bytes(),
                0,
                0,
                false,
            );
        }
        tokio::io::AsyncWriteExt::write_all(&mut publisher.write, &out)
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(300 + gap as u64 / 50)).await;
        let stream = net::connect(http, None).await.map_err(|e| e.to_string())?;
        let (mut ws, _) = handshake(format!("ws://{http}/ws"), stream)
            .await
            .map_err(|e| e.to_string())?;
        let since = format!("{{\"type\":\"join\",\"id\":2,\"room\":\"{room}\",\"since\":{{\"epoch\":\"{epoch}\",\"offset\":\"{offset}\"}}}}");
        let started = Instant::now();
        let resumed = request(&mut ws, &since).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let missed = resumed.matches("\"type\":\"message\"").count();
        report.set(&format!("gap_{gap}_ms"), (ms * 100.0).round() / 100.0);
        report.set(&format!("gap_{gap}_missed"), missed as u64);
        report.set(
            &format!("gap_{gap}_recovered"),
            resumed.contains("\"recovered\":true"),
        );
    }
    Ok(report)
}

/// Sends a request and returns the reply frame with its id (skipping the rest).
async fn request(ws: &mut Ws, text: &str) -> Result<String, String> {
    let id = number_after(text, "\"id\":").ok_or("request without id")?;
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| "no reply".to_string())?;
        match frame {
            Some(Ok(Message::Text(reply))) if number_after(&reply, "\"id\":") == Some(id) => {
                return Ok(reply.to_string())
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed".into()),
        }
    }
}

/// `"key":"value"` → value.
fn string_after(text: &str, key: &str) -> Option<String> {
    let at = text.find(key)? + key.len();
    let end = text[at..].find('"')?;
    Some(text[at..at + end].to_string())
}
