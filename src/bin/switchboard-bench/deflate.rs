//! The permessage-deflate question (RFC 7692), measured without a server: what the
//! rooms protocol's frames shrink to, and what compressing them costs per frame, per
//! connection (context takeover: each connection keeps its own window, so a room's
//! frame is compressed once per member) or once per room (no context takeover: every
//! member could get the same compressed bytes). Frames are real `message` frames of
//! the fan-out benchmark and of a 1 KiB telemetry reading.

use std::time::Instant;

use flate2::{Compress, Compression, FlushCompress};

use crate::stats::Report;

/// (name, frames of one stream of messages).
fn samples() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let bench: Vec<Vec<u8>> = (0..500u64)
        .map(|i| {
            format!(
                r#"{{"type":"message","room":"bench/room","topic":"bench/room","payload":{{"seq":{i},"t":{}}},"offset":"{}","ts":{},"retain":false}}"#,
                1_000_000_000 + i * 100_003_721,
                4_000 + i,
                1_796_000_000_000 + i * 100
            )
            .into_bytes()
        })
        .collect();
    let telemetry: Vec<Vec<u8>> = (0..500u64)
        .map(|i| {
            let readings: Vec<String> = (0..24)
                .map(|k| format!(r#"{{"sensor":"line{}-{k}","value":{}.{},"unit":"C","ok":true}}"#, k % 4, 20 + (i * 7 + k) % 9, (i * 13 + k) % 10))
                .collect();
            format!(
                r#"{{"type":"message","room":"plant-7","topic":"factory/plant7/line1/telemetry","payload":{{"device":"press-7","readings":[{}]}},"offset":"{}","ts":{},"retain":false}}"#,
                readings.join(","),
                9_000 + i,
                1_796_000_000_000 + i * 250
            )
            .into_bytes()
        })
        .collect();
    vec![("bench", bench), ("telemetry", telemetry)]
}

/// One frame on its own (no context takeover): raw deflate through a reset
/// compressor, the sync-flush tail cut.
fn alone(compress: &mut Compress, frame: &[u8], out: &mut Vec<u8>) -> usize {
    compress.reset();
    out.clear();
    let _ = compress.compress_vec(frame, out, FlushCompress::Sync);
    out.len().saturating_sub(4)
}

/// A stream of frames through one window (context takeover), as one connection.
fn stream(frames: &[Vec<u8>], level: Compression) -> usize {
    let mut compress = Compress::new(level, false);
    let mut total = 0;
    let mut out = Vec::with_capacity(64 * 1024);
    for frame in frames {
        out.clear();
        let before = compress.total_out();
        let _ = compress.compress_vec(frame, &mut out, FlushCompress::Sync);
        total += (compress.total_out() - before) as usize - 4;
    }
    total
}

fn nanos_per_frame(frames: &[Vec<u8>], rounds: usize, mut f: impl FnMut(&[Vec<u8>])) -> f64 {
    let started = Instant::now();
    for _ in 0..rounds {
        f(frames);
    }
    started.elapsed().as_nanos() as f64 / (rounds * frames.len()) as f64
}

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// What one connection's compression state (context takeover) holds, once used.
fn state_kib() -> f64 {
    const N: usize = 500;
    let before = rss_kib();
    let mut held = Vec::with_capacity(N);
    let mut out = Vec::with_capacity(1024);
    for i in 0..N {
        let mut compress = Compress::new(Compression::fast(), false);
        out.clear();
        let frame = format!(r#"{{"type":"message","seq":{i}}}"#);
        let _ = compress.compress_vec(frame.as_bytes(), &mut out, FlushCompress::Sync);
        held.push(compress);
    }
    let grown = rss_kib().saturating_sub(before);
    std::hint::black_box(&held);
    grown as f64 / N as f64
}

pub fn evaluate(clients: usize) -> Report {
    let mut report = Report::new("deflate");
    report.set("fanout_clients", clients as u64);
    report.set("takeover_state_kib", (state_kib() * 10.0).round() / 10.0);
    for (name, frames) in samples() {
        let raw: usize = frames.iter().map(Vec::len).sum();
        let n = frames.len() as f64;
        report.set(&format!("{name}_bytes"), (raw as f64 / n).round());
        let level = Compression::fast();
        let mut compress = Compress::new(level, false);
        let mut out = Vec::with_capacity(64 * 1024);
        let alone_bytes: usize = frames
            .iter()
            .map(|f| alone(&mut compress, f, &mut out))
            .sum();
        let stream_bytes = stream(&frames, level);
        report.set(
            &format!("{name}_alone_bytes"),
            (alone_bytes as f64 / n).round(),
        );
        report.set(
            &format!("{name}_takeover_bytes"),
            (stream_bytes as f64 / n).round(),
        );
        let alone_ns = nanos_per_frame(&frames, 20, |fs| {
            for f in fs {
                std::hint::black_box(alone(&mut compress, f, &mut out));
            }
        });
        let stream_ns = nanos_per_frame(&frames, 20, |fs| {
            std::hint::black_box(stream(fs, level));
        });
        report.set(
            &format!("{name}_alone_us"),
            (alone_ns / 10.0).round() / 100.0,
        );
        report.set(
            &format!("{name}_takeover_us"),
            (stream_ns / 10.0).round() / 100.0,
        );
        // Per message of a room with `clients` members: one compression per member
        // with context takeover, one for the room without.
        report.set(
            &format!("{name}_fanout_takeover_ms"),
            (stream_ns * clients as f64 / 1e4).round() / 100.0,
        );
        report.set(
            &format!("{name}_fanout_shared_ms"),
            (alone_ns / 1e4).round() / 100.0,
        );
    }
    report
}
