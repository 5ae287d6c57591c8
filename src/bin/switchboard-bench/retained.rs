//! The retained scenario's two phases: publish K retained messages (QoS 1,
//! acknowledged), and after a restart time until a `#` subscriber has them all.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::net::Mqtt;
use crate::stats::Report;
use crate::wire::{self, Incoming};

/// Publishes `count` retained messages on `bench/retained/<n>`.
pub async fn publish_retained(target: SocketAddr, count: usize) -> Result<Report, String> {
    let mut mqtt = Mqtt::connect(target, None, "retained-pub", 0).await?;
    let started = Instant::now();
    let mut out = BytesMut::new();
    let mut pkid: u16 = 0;
    let mut acked = 0usize;
    for n in 0..count {
        pkid = pkid.wrapping_add(1).max(1);
        wire::publish(
            &mut out,
            &format!("bench/retained/{n}"),
            format!("value {n}").as_bytes(),
            1,
            pkid,
            true,
        );
        if out.len() > 32 * 1024 || n + 1 == count {
            mqtt.write
                .write_all(&out)
                .await
                .map_err(|e| e.to_string())?;
            out.clear();
        }
        while n + 1 - acked > 1000 || (n + 1 == count && acked < count) {
            if let Incoming::PubAck = mqtt.next(Duration::from_secs(30)).await? {
                acked += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut report = Report::new("retained-publish");
    report
        .set("count", count as u64)
        .set("seconds", (secs * 1000.0).round() / 1000.0)
        .set("per_s", (count as f64 / secs).round());
    Ok(report)
}

/// Subscribes to `bench/retained/#` and times until `count` retained messages arrived.
pub async fn fetch_retained(
    target: SocketAddr,
    count: usize,
    within: Duration,
) -> Result<Report, String> {
    let started = Instant::now();
    let mut mqtt = Mqtt::connect(target, None, "retained-fetch", 0).await?;
    mqtt.subscribe("bench/retained/#", 0).await?;
    let mut got = 0usize;
    let mut last = started;
    while got < count && started.elapsed() < within {
        match mqtt.next(within.saturating_sub(started.elapsed())).await {
            Ok(Incoming::Publish { retain: true, .. }) => {
                got += 1;
                last = Instant::now();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let secs = last.duration_since(started).as_secs_f64();
    let mut report = Report::new("retained-fetch");
    report
        .set("expected", count as u64)
        .set("received", got as u64)
        .set("seconds", (secs * 1000.0).round() / 1000.0);
    Ok(report)
}
