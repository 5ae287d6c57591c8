//! What `/metrics` says about itself: a `# HELP` line for every series, the series
//! without labels present (at zero) from start-up, and the process's vitals —
//! version, uptime, resident memory, CPU time, open files — read at each scrape.

use std::sync::OnceLock;
use std::time::Instant;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};

/// Name, help, and whether the series carry labels (those appear with them).
const COUNTERS: &[(&str, &str, bool)] = &[
    (
        "switchboard_mqtt_connections_total",
        "MQTT connections accepted (CONNACK 0), by listener",
        true,
    ),
    (
        "switchboard_mqtt_packets_in_total",
        "MQTT packets received from clients (CONNECT included), by listener",
        true,
    ),
    (
        "switchboard_mqtt_packets_out_total",
        "MQTT packets written to clients, by listener",
        true,
    ),
    (
        "switchboard_mqtt_bytes_in_total",
        "bytes read from MQTT clients after CONNECT, by listener",
        true,
    ),
    (
        "switchboard_mqtt_bytes_out_total",
        "bytes written to MQTT clients, by listener",
        true,
    ),
    (
        "switchboard_mqtt_refusals_total",
        "MQTT connections refused, by reason",
        true,
    ),
    (
        "switchboard_mqtt_publishes_refused_total",
        "PUBLISH packets refused, by reason",
        true,
    ),
    (
        "switchboard_mqtt_subscriptions_refused_total",
        "subscriptions refused over max_subscriptions",
        false,
    ),
    (
        "switchboard_router_stalled_subscribers_total",
        "subscribers marked stalled (they lose messages instead of slowing publishers)",
        false,
    ),
    (
        "switchboard_bridge_messages_in_total",
        "MQTT messages that reached the bridge",
        false,
    ),
    (
        "switchboard_bridge_messages_out_total",
        "room messages written to browsers",
        false,
    ),
    (
        "switchboard_bridge_publishes_total",
        "browser publishes routed by the core",
        false,
    ),
    (
        "switchboard_bridge_conflated_total",
        "queued browser messages replaced by a newer one",
        false,
    ),
    (
        "switchboard_bridge_dropped_total",
        "queued browser messages dropped when their connection closed",
        false,
    ),
    (
        "switchboard_bridge_closed_slow_total",
        "browser connections closed with 1013 (too slow)",
        false,
    ),
    (
        "switchboard_bridge_errors_total",
        "error replies to browsers, by code",
        true,
    ),
    (
        "switchboard_bridge_refusals_total",
        "browser upgrades refused, by reason",
        true,
    ),
    (
        "switchboard_bridge_protocol_errors_total",
        "browser connections closed for a broken frame, by close code",
        true,
    ),
    (
        "switchboard_http_refusals_total",
        "HTTP connections closed at accept, by reason",
        true,
    ),
    (
        "switchboard_http_accept_errors_total",
        "failed HTTP accepts (e.g. out of file descriptors)",
        false,
    ),
    (
        "switchboard_store_writes_total",
        "retained changes written to the store",
        false,
    ),
    (
        "switchboard_store_queue_full_total",
        "retained changes dropped in a full write queue",
        false,
    ),
    (
        "switchboard_store_errors_total",
        "failed store writes or flushes",
        false,
    ),
    (
        "process_cpu_seconds_total",
        "user and system CPU time of the process",
        false,
    ),
];

const GAUGES: &[(&str, &str)] = &[
    (
        "switchboard_mqtt_connections",
        "MQTT connections open now, by listener",
    ),
    (
        "switchboard_retained_topics",
        "retained topics in the core's index",
    ),
    (
        "switchboard_bridge_connections",
        "browser connections (/ws and /sse) open now",
    ),
    ("switchboard_bridge_rooms", "rooms with at least one member"),
    (
        "switchboard_bridge_room_filters",
        "topic filters in the room index",
    ),
    ("switchboard_uptime_seconds", "seconds since start-up"),
    ("switchboard_build_info", "1, labelled with the version"),
    (
        "process_resident_memory_bytes",
        "resident memory of the process",
    ),
    ("process_open_fds", "open file descriptors of the process"),
    ("process_max_fds", "the process's open-file limit"),
];

fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// Describes every series and registers those without labels at zero. Call once,
/// after the recorder is installed.
pub fn describe() {
    started();
    for (name, help, labelled) in COUNTERS {
        describe_counter!(*name, *help);
        if !labelled {
            counter!(*name).absolute(0);
        }
    }
    for (name, help) in GAUGES {
        describe_gauge!(*name, *help);
    }
    describe_histogram!(
        "switchboard_bridge_delivery_seconds",
        Unit::Seconds,
        "MQTT message at the bridge → written to a browser's socket"
    );
    describe_histogram!(
        "switchboard_store_flush_seconds",
        Unit::Seconds,
        "time of each disk flush of the store"
    );
    gauge!("switchboard_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for name in [
        "switchboard_retained_topics",
        "switchboard_bridge_connections",
        "switchboard_bridge_rooms",
        "switchboard_bridge_room_filters",
    ] {
        gauge!(name).increment(0.0);
    }
    record_process();
}

/// Reads the process's vitals from /proc (Linux; elsewhere only uptime).
pub fn record_process() {
    gauge!("switchboard_uptime_seconds").set(started().elapsed().as_secs_f64());
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        if let Some(pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<f64>().ok())
        {
            gauge!("process_resident_memory_bytes").set(pages * page_size());
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) start at ") ".
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of stat, 11 and 12 after the name.
        let seconds = (ticks(11) + ticks(12)) / clock_ticks();
        counter!("process_cpu_seconds_total").absolute(seconds as u64);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(fds.count() as f64);
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        let max = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<f64>().ok());
        if let Some(max) = max {
            gauge!("process_max_fds").set(max);
        }
    }
}

/// The page size and clock tick Linux uses on the x86-64 and common arm64 kernels
/// this runs on (statm counts pages, stat counts ticks).
fn page_size() -> f64 {
    4096.0
}

fn clock_ticks() -> f64 {
    100.0
}
