//! MQTT scenarios: throughput, latency, fan-out, idle connections (retained restore:
//! retained.rs).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::{self, Mqtt};
use crate::stats::{Report, Samples};
use crate::wire::{self, Incoming};

/// Nanoseconds since `base`, written at the start of a payload.
fn stamp(base: Instant, payload: &mut [u8]) {
    let nanos = base.elapsed().as_nanos() as u64;
    if let Some(head) = payload.get_mut(..8) {
        head.copy_from_slice(&nanos.to_be_bytes());
    }
}

fn stamped(payload: &[u8]) -> Option<u64> {
    payload
        .get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
}

/// Reads publishes until `stop`, acking QoS 1, calling `on_publish` for each.
async fn drain(
    mut mqtt: Mqtt,
    stop: Arc<AtomicBool>,
    mut on_publish: impl FnMut(&[u8], &[u8], bool),
) {
    let mut acks = BytesMut::new();
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(
            Duration::from_millis(200),
            mqtt.read.read_buf(&mut mqtt.buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => continue,
        }
        while let Some(Ok(packet)) = wire::next(&mut mqtt.buf) {
            if let Incoming::Publish {
                qos,
                pkid,
                retain,
                topic,
                payload,
            } = packet
            {
                if qos > 0 {
                    wire::puback(&mut acks, pkid);
                }
                on_publish(&topic, &payload, retain);
            }
        }
        if !acks.is_empty() {
            if mqtt.write.write_all(&acks).await.is_err() {
                return;
            }
            acks.clear();
        }
    }
}

pub struct Throughput {
    pub target: SocketAddr,
    pub publishers: usize,
    pub subscribers: usize,
    pub qos: u8,
    pub payload: usize,
    pub duration: Duration,
}

pub async fn throughput(args: Throughput) -> Result<Report, String> {
    let topic = "bench/throughput";
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for s in 0..args.subscribers {
        let mut mqtt = Mqtt::connect(args.target, None, &format!("tp-sub-{s}"), 0).await?;
        mqtt.subscribe(topic, args.qos).await?;
        let (stop, delivered) = (stop.clone(), delivered.clone());
        readers.push(tokio::spawn(drain(mqtt, stop, move |_, _, _| {
            delivered.fetch_add(1, Ordering::Relaxed);
        })));
    }
    let published = Arc::new(AtomicU64::new(0));
    let publishing = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let mut writers = Vec::new();
    for p in 0..args.publishers {
        let mut mqtt = Mqtt::connect(args.target, None, &format!("tp-pub-{p}"), 0).await?;
        let (published, publishing) = (published.clone(), publishing.clone());
        let (qos, size) = (args.qos, args.payload);
        writers.push(tokio::spawn(async move {
            let payload = vec![b'x'; size];
            let mut out = BytesMut::with_capacity(64 * 1024);
            let mut in_flight = 0usize;
            let mut pkid: u16 = 0;
            while publishing.load(Ordering::Relaxed) {
                let batch = if qos == 0 {
                    64
                } else {
                    100usize.saturating_sub(in_flight)
                };
                for _ in 0..batch {
                    pkid = pkid.wrapping_add(1).max(1);
                    wire::publish(&mut out, topic, &payload, qos, pkid, false);
                }
                if mqtt.write.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
                published.fetch_add(batch as u64, Ordering::Relaxed);
                if qos > 0 {
                    in_flight += batch;
                    // Wait for acks before sending more than 100 unacknowledged.
                    while in_flight >= 100 && publishing.load(Ordering::Relaxed) {
                        match mqtt.next(Duration::from_secs(5)).await {
                            Ok(Incoming::PubAck) => in_flight -= 1,
                            Ok(_) => {}
                            Err(_) => return,
                        }
                        while let Some(Ok(Incoming::PubAck)) = wire::next(&mut mqtt.buf) {
                            in_flight = in_flight.saturating_sub(1);
                        }
                    }
                }
            }
            // A QoS 1 publisher does not leave with messages unacknowledged: what the
            // broker has not acknowledged is not published (it would send it again).
            while qos > 0 && in_flight > 0 {
                match mqtt.next(Duration::from_secs(5)).await {
                    Ok(Incoming::PubAck) => in_flight -= 1,
                    Ok(_) => {}
                    Err(_) => {
                        published.fetch_sub(in_flight as u64, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(args.duration).await;
    publishing.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let delivered_in_window = delivered.load(Ordering::Relaxed);
    for writer in writers {
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }
    let total_published = published.load(Ordering::Relaxed);
    settle(&delivered, Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = reader.await;
    }
    let total_delivered = delivered.load(Ordering::Relaxed);
    let expected = total_published * args.subscribers as u64;
    let mut report = Report::new(&format!("mqtt-throughput-qos{}", args.qos));
    report
        .set("publishers", args.publishers as u64)
        .set("subscribers", args.subscribers as u64)
        .set("payload_bytes", args.payload as u64)
        .set(
            "published_per_s",
            (total_published as f64 / elapsed).round(),
        )
        .set(
            "delivered_per_s",
            (delivered_in_window as f64 / elapsed).round(),
        )
        .set("delivered", total_delivered)
        .set("expected", expected)
        .set("lost", expected.saturating_sub(total_delivered));
    Ok(report)
}

/// Waits until `counter` stops growing for 300 ms (or `max` passes).
async fn settle(counter: &AtomicU64, max: Duration) {
    let deadline = Instant::now() + max;
    let mut last = counter.load(Ordering::Relaxed);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = counter.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

pub struct Latency {
    pub target: SocketAddr,
    pub rate: u64,
    pub payload: usize,
    pub duration: Duration,
}

pub async fn latency(args: Latency) -> Result<Report, String> {
    let topic = "bench/latency";
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(parking_lot::Mutex::new(Samples::default()));
    let mut sub = Mqtt::connect(args.target, None, "lat-sub", 0).await?;
    sub.subscribe(topic, 0).await?;
    let reader = {
        let samples = samples.clone();
        tokio::spawn(drain(sub, stop.clone(), move |_, payload, _| {
            if let Some(sent) = stamped(payload) {
                let now = base.elapsed().as_nanos() as u64;
                samples.lock().0.push(now.saturating_sub(sent));
            }
        }))
    };
    let mut publisher = Mqtt::connect(args.target, None, "lat-pub", 0).await?;
    let sent = pace(
        args.rate,
        args.duration,
        args.payload.max(8),
        |payload, out| {
            stamp(base, payload);
            wire::publish(out, topic, payload, 0, 0, false);
        },
        &mut publisher.write,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = reader.await;
    let mut samples = std::mem::take(&mut *samples.lock());
    Ok(Report::latency(
        "mqtt-latency",
        args.rate,
        sent,
        &mut samples,
    ))
}

/// Sends at `rate` per second for `duration`, in 1 ms ticks; returns how many.
pub async fn pace<W: AsyncWriteExt + Unpin>(
    rate: u64,
    duration: Duration,
    payload_size: usize,
    mut encode: impl FnMut(&mut [u8], &mut BytesMut),
    write: &mut W,
) -> Result<u64, String> {
    let mut payload = vec![b'x'; payload_size];
    let mut out = BytesMut::new();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while started.elapsed() < duration {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            encode(&mut payload, &mut out);
            sent += 1;
        }
        if !out.is_empty() {
            write.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
        }
    }
    Ok(sent)
}

pub struct Fanout {
    pub target: SocketAddr,
    pub subscribers: usize,
    pub messages: usize,
    pub interval: Duration,
    pub spread: usize,
}

/// Per-message completion: when the last of `clients` had message `seq`.
pub struct Completion {
    pub last_seen: Vec<AtomicU64>,
    pub count: Vec<AtomicU64>,
    pub sent_at: Vec<AtomicU64>,
}

impl Completion {
    pub fn new(messages: usize) -> Arc<Completion> {
        Arc::new(Completion {
            last_seen: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            count: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            sent_at: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    pub fn seen(&self, seq: usize, at: u64) {
        if let (Some(last), Some(count)) = (self.last_seen.get(seq), self.count.get(seq)) {
            last.fetch_max(at, Ordering::Relaxed);
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn report(&self, report: &mut Report, clients: usize) {
        let mut samples = Samples::default();
        let mut delivered = 0;
        let slots = self.count.iter().zip(&self.sent_at).zip(&self.last_seen);
        for ((count, sent_at), last_seen) in slots {
            let count = count.load(Ordering::Relaxed);
            delivered += count;
            if count == clients as u64 {
                let sent = sent_at.load(Ordering::Relaxed);
                samples
                    .0
                    .push(last_seen.load(Ordering::Relaxed).saturating_sub(sent));
            }
        }
        report
            .set("delivered", delivered)
            .set("expected", (self.count.len() * clients) as u64)
            .set("complete_messages", samples.0.len() as u64)
            .latencies("completion", &mut samples);
    }
}

pub async fn fanout(args: Fanout) -> Result<Report, String> {
    let topic = "bench/fanout";
    let base = Instant::now();
    let completion = Completion::new(args.messages);
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for s in 0..args.subscribers {
        let mut mqtt = Mqtt::connect(
            args.target,
            net::source(s, args.spread),
            &format!("fan-{s}"),
            0,
        )
        .await?;
        mqtt.subscribe(topic, 0).await?;
        let completion = completion.clone();
        readers.push(tokio::spawn(drain(
            mqtt,
            stop.clone(),
            move |_, payload, _| {
                let at = base.elapsed().as_nanos() as u64;
                if let Some(seq) = payload
                    .get(8..16)
                    .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
                {
                    completion.seen(seq as usize, at);
                }
            },
        )));
    }
    let mut publisher = Mqtt::connect(args.target, None, "fan-pub", 0).await?;
    let mut out = BytesMut::new();
    for seq in 0..args.messages {
        let mut payload = [0u8; 16];
        let now = base.elapsed().as_nanos() as u64;
        payload[..8].copy_from_slice(&now.to_be_bytes());
        payload[8..].copy_from_slice(&(seq as u64).to_be_bytes());
        if let Some(slot) = completion.sent_at.get(seq) {
            slot.store(now, Ordering::Relaxed);
        }
        wire::publish(&mut out, topic, &payload, 0, 0, false);
        publisher
            .write
            .write_all(&out)
            .await
            .map_err(|e| e.to_string())?;
        out.clear();
        tokio::time::sleep(args.interval).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = reader.await;
    }
    let mut report = Report::new("mqtt-fanout");
    report
        .set("subscribers", args.subscribers as u64)
        .set("messages", args.messages as u64);
    completion.report(&mut report, args.subscribers);
    Ok(report)
}

/// Opens `count` idle MQTT connections; returns them (hold them to keep them open).
pub async fn idle_connections(
    target: SocketAddr,
    count: usize,
    spread: usize,
    rate: u64,
) -> Result<Vec<Mqtt>, String> {
    let mut held = Vec::with_capacity(count);
    let started = Instant::now();
    for i in 0..count {
        if rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let mqtt = Mqtt::connect(target, net::source(i, spread), &format!("idle-{i}"), 0).await?;
        held.push(mqtt);
    }
    Ok(held)
}
