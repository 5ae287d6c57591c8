//! The core's housekeeping: offline sessions end when their expiry passes, expired
//! retained messages leave memory and the store, and the read-only `$SYS/broker/…`
//! tree (Mosquitto's names) is published every `sys_interval`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_config::Config;
use switchboard_router::{Message, Router};

use crate::events::EventFeed;

/// Offline sessions and retained messages past their expiry go within this.
const TICK: Duration = Duration::from_secs(1);

/// Runs until shutdown (a supervised core task).
pub async fn housekeeping(router: Arc<Router>, config: Arc<Config>, events: EventFeed) {
    let started = Instant::now();
    let sys_every =
        (config.mqtt.sys_interval > 0).then(|| Duration::from_secs(config.mqtt.sys_interval));
    {
        let mut tick = tokio::time::interval(TICK);
        let mut last_sys: Option<Instant> = None;
        loop {
            tick.tick().await;
            let now = Instant::now();
            crate::repeats::summarize();
            let ended = router.expire_sessions(now);
            if ended > 0 {
                tracing::debug!(ended, "offline sessions expired");
            }
            for topic in router.retained().remove_expired() {
                let topic = Bytes::copy_from_slice(topic.as_bytes());
                events.retained_changed(topic, Bytes::new(), 0, None);
            }
            if let Some(every) = sys_every {
                if last_sys.is_none_or(|at| now.duration_since(at) >= every) {
                    last_sys = Some(now);
                    publish_sys(&router, &events, started.elapsed());
                }
            }
        }
    }
}

fn publish_sys(router: &Router, events: &EventFeed, uptime: Duration) {
    let stats = &router.stats;
    let load = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed).to_string();
    let values = [
        (
            "version",
            format!("switchboard {}", env!("CARGO_PKG_VERSION")),
        ),
        ("uptime", format!("{} seconds", uptime.as_secs())),
        ("clients/connected", events.online_count().to_string()),
        ("clients/total", load(&stats.sessions)),
        ("messages/received", load(&stats.messages_received)),
        ("messages/sent", load(&stats.messages_sent)),
        ("messages/dropped", load(&stats.dropped)),
        ("bytes/received", load(&stats.bytes_received)),
        ("bytes/sent", load(&stats.bytes_sent)),
        ("subscriptions/count", load(&stats.subscriptions)),
        (
            "retained messages/count",
            router.retained().len().to_string(),
        ),
    ];
    for (name, value) in values {
        let topic = format!("$SYS/broker/{name}");
        router.publish(Message::new(topic, Bytes::from(value), 0, true));
    }
}
