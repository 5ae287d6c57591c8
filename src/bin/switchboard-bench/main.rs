//! `switchboard-bench`: load scenarios against an MQTT broker and a browser-side
//! WebSocket server on loopback. Each prints a readable summary and a final JSON line.
//! Every run is bounded in time and count.

mod deflate;
mod mqtt;
mod net;
mod retained;
mod stats;
mod wire;
mod ws;
mod ws_resume;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use stats::Report;
use ws::Peer;

/// Longest a scenario may run, whatever its arguments say.
const MAX_SECONDS: u64 = 600;

#[derive(Parser)]
#[command(
    name = "switchboard-bench",
    about = "Load scenarios for Switchboard (and Mosquitto, Socket.IO) on loopback"
)]
struct Cli {
    /// MQTT (TCP) address of the broker under test.
    #[arg(long, global = true, default_value = "127.0.0.1:1883")]
    mqtt: SocketAddr,
    /// HTTP address of the WebSocket server under test (Switchboard or Socket.IO).
    #[arg(long, global = true, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// P publishers → S subscribers on one topic, as fast as the broker takes it.
    MqttThroughput {
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        #[arg(long, default_value_t = 4)]
        subscribers: usize,
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
        qos: u8,
        #[arg(long, default_value_t = 64)]
        payload: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// One publisher at a fixed rate → one subscriber; timestamps in the payload.
    MqttLatency {
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        #[arg(long, default_value_t = 64)]
        payload: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// One publisher → N subscribers of one topic: time until the last has each message.
    MqttFanout {
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 50)]
        messages: usize,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        /// Spread client sockets over this many source addresses (127.0.0.2…).
        #[arg(long, default_value_t = 4)]
        spread: usize,
    },
    /// A publisher → N browser clients in one room: per-message completion.
    WsFanout {
        #[arg(long, value_enum, default_value = "switchboard")]
        peer: Peer,
        #[arg(long, default_value_t = 2000)]
        clients: usize,
        #[arg(long, default_value_t = 50)]
        messages: usize,
        /// Messages per second.
        #[arg(long, default_value_t = 10)]
        rate: u64,
        #[arg(long, default_value_t = 4)]
        spread: usize,
    },
    /// A publisher at a fixed rate → one browser client.
    WsLatency {
        #[arg(long, value_enum, default_value = "switchboard")]
        peer: Peer,
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// N idle MQTT connections, then M idle browser clients; broker RSS per connection.
    Connections {
        #[arg(long, default_value_t = 10000)]
        mqtt_count: usize,
        #[arg(long, default_value_t = 0)]
        ws_count: usize,
        #[arg(long, value_enum, default_value = "switchboard")]
        peer: Peer,
        /// PID of the broker (MQTT side) whose memory is measured.
        #[arg(long)]
        broker_pid: u32,
        /// PID of the WebSocket server when it is another process (Socket.IO).
        #[arg(long)]
        ws_pid: Option<u32>,
        /// New connections per second.
        #[arg(long, default_value_t = 4000)]
        rate: u64,
        #[arg(long, default_value_t = 8)]
        spread: usize,
    },
    /// How long a browser's `join` with `since` takes, by the number of missed messages.
    WsResume {
        /// Gap sizes (missed messages) to try, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000,9000")]
        gaps: Vec<usize>,
    },
    /// permessage-deflate, measured offline: frame sizes and compression cost.
    Deflate {
        /// Room members a frame is compressed for (context takeover).
        #[arg(long, default_value_t = 2000)]
        clients: usize,
    },
    /// Publish K retained messages, or time until a `#` subscriber has all K.
    Retained {
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        #[arg(long, value_enum)]
        phase: RetainedPhase,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RetainedPhase {
    Publish,
    Fetch,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limit = net::raise_fd_limit();
    eprintln!("switchboard-bench: open-file limit {limit}");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("switchboard-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(MAX_SECONDS), run(cli))
            .await
            .unwrap_or_else(|_| Err(format!("stopped after {MAX_SECONDS} s")))
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(report) => {
            report.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<Report, String> {
    let bounded = |s: u64| Duration::from_secs(s.clamp(1, MAX_SECONDS - 30));
    match cli.scenario {
        Scenario::MqttThroughput {
            publishers,
            subscribers,
            qos,
            payload,
            seconds,
        } => {
            mqtt::throughput(mqtt::Throughput {
                target: cli.mqtt,
                publishers,
                subscribers,
                qos,
                payload,
                duration: bounded(seconds),
            })
            .await
        }
        Scenario::MqttLatency {
            rate,
            payload,
            seconds,
        } => {
            mqtt::latency(mqtt::Latency {
                target: cli.mqtt,
                rate,
                payload,
                duration: bounded(seconds),
            })
            .await
        }
        Scenario::MqttFanout {
            subscribers,
            messages,
            interval_ms,
            spread,
        } => {
            mqtt::fanout(mqtt::Fanout {
                target: cli.mqtt,
                subscribers,
                messages: messages.min(100_000),
                interval: Duration::from_millis(interval_ms),
                spread,
            })
            .await
        }
        Scenario::WsFanout {
            peer,
            clients,
            messages,
            rate,
            spread,
        } => {
            ws::fanout(ws::WsFanout {
                peer,
                mqtt: cli.mqtt,
                http: cli.http,
                clients,
                messages: messages.min(100_000),
                rate,
                spread,
            })
            .await
        }
        Scenario::WsLatency {
            peer,
            rate,
            seconds,
        } => {
            ws::latency(ws::WsLatency {
                peer,
                mqtt: cli.mqtt,
                http: cli.http,
                rate,
                duration: bounded(seconds),
            })
            .await
        }
        Scenario::Connections {
            mqtt_count,
            ws_count,
            peer,
            broker_pid,
            ws_pid,
            rate,
            spread,
        } => {
            let ws_pid = ws_pid.unwrap_or(broker_pid);
            let mqtt_before = rss_kib(broker_pid)?;
            let started = Instant::now();
            let mqtt_held = mqtt::idle_connections(cli.mqtt, mqtt_count, spread, rate).await?;
            let mqtt_secs = started.elapsed().as_secs_f64();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let mqtt_after = rss_kib(broker_pid)?;
            let ws_before = rss_kib(ws_pid)?;
            let started = Instant::now();
            let ws_held = ws::idle_clients(peer, cli.http, ws_count, spread, rate).await?;
            let ws_secs = started.elapsed().as_secs_f64();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let ws_after = rss_kib(ws_pid)?;
            let per = |after: u64, before: u64, n: usize| {
                if n == 0 {
                    0.0
                } else {
                    ((after.saturating_sub(before)) as f64 / n as f64 * 100.0).round() / 100.0
                }
            };
            let mut report = Report::new("connections");
            report
                .set("mqtt_connections", mqtt_held.len() as u64)
                .set(
                    "mqtt_connect_per_s",
                    (mqtt_count as f64 / mqtt_secs.max(1e-9)).round(),
                )
                .set("mqtt_rss_before_kib", mqtt_before)
                .set("mqtt_rss_after_kib", mqtt_after)
                .set(
                    "kib_per_mqtt_connection",
                    per(mqtt_after, mqtt_before, mqtt_count),
                )
                .set("ws_clients", ws_held.len() as u64)
                .set(
                    "ws_connect_per_s",
                    if ws_count == 0 {
                        0.0
                    } else {
                        (ws_count as f64 / ws_secs.max(1e-9)).round()
                    },
                )
                .set("kib_per_ws_client", per(ws_after, ws_before, ws_count));
            drop(ws_held);
            drop(mqtt_held);
            Ok(report)
        }
        Scenario::Deflate { clients } => Ok(deflate::evaluate(clients)),
        Scenario::WsResume { gaps } => {
            let gaps: Vec<usize> = gaps.into_iter().map(|g| g.min(100_000)).collect();
            ws_resume::resume_cost(cli.mqtt, cli.http, &gaps).await
        }
        Scenario::Retained { count, phase } => match phase {
            RetainedPhase::Publish => retained::publish_retained(cli.mqtt, count).await,
            RetainedPhase::Fetch => {
                retained::fetch_retained(cli.mqtt, count, Duration::from_secs(120)).await
            }
        },
    }
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("process {pid}: {e}"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no VmRSS for process {pid}"))
}
