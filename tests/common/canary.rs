//! A canary: one MQTT subscriber and one browser on `canary/#`, probed while a test
//! abuses the server, to show that other clients keep receiving on time.

use std::time::{Duration, Instant};

use super::browser::Browser;
use super::raw::{self, RawClient};
use super::Switchboard;

pub struct Canary {
    publisher: Option<RawClient>,
    subscriber: Option<RawClient>,
    browser: Browser,
    probes: u64,
}

/// How long each canary took to get one probe.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub mqtt: Duration,
    pub browser: Duration,
}

impl Latency {
    pub fn worst(&self) -> Duration {
        self.mqtt.max(self.browser)
    }
}

impl Canary {
    pub async fn start(sb: &Switchboard) -> Canary {
        let publisher = RawClient::connected(sb.tcp_addr(), "canary-pub");
        let mut subscriber = RawClient::connected(sb.tcp_addr(), "canary-sub");
        subscriber.send(&raw::subscribe(false, "canary/#"));
        subscriber.expect_kind(raw::SUBACK, Duration::from_secs(5));
        let mut browser = Browser::connect(sb.ports.http).await;
        browser.join("canary/#").await;
        let mut canary = Canary {
            publisher: Some(publisher),
            subscriber: Some(subscriber),
            browser,
            probes: 0,
        };
        // The browser's room reaches the core asynchronously: wait for a first probe.
        let deadline = Instant::now() + Duration::from_secs(5);
        while canary.try_probe(Duration::from_millis(500)).await.is_none() {
            assert!(Instant::now() < deadline, "the canaries never got a probe");
        }
        canary
    }

    /// Publishes one probe and waits for both canaries; panics if either misses it.
    pub async fn probe(&mut self) -> Latency {
        self.try_probe(Duration::from_secs(10))
            .await
            .expect("a canary missed its probe")
    }

    /// The worst latency over `count` probes, 50 ms apart.
    pub async fn worst_of(&mut self, count: usize) -> Duration {
        let mut worst = Duration::ZERO;
        for _ in 0..count {
            worst = worst.max(self.probe().await.worst());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worst
    }

    async fn try_probe(&mut self, within: Duration) -> Option<Latency> {
        self.probes += 1;
        let payload = format!("probe-{}", self.probes);
        let mut publisher = self.publisher.take()?;
        let mut subscriber = self.subscriber.take()?;
        let wanted = payload.clone();
        let started = Instant::now();
        publisher.send(&raw::publish(false, "canary/probe", payload.as_bytes()));
        let mqtt = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + within;
            let mut got = None;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match subscriber.read_frame(left) {
                    Some(frame) if frame.kind() == raw::PUBLISH => {
                        let (_, body) = raw::publish_parts(&frame, false);
                        if body == wanted.as_bytes() {
                            got = Some(started.elapsed());
                            break;
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            (subscriber, got)
        });
        let mut browser_latency = None;
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.browser.push(left).await {
                Some(frame)
                    if frame["type"] == "message" && frame["payload"] == payload.as_str() =>
                {
                    browser_latency = Some(started.elapsed());
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        let (subscriber, mqtt_latency) = mqtt.await.ok()?;
        self.publisher = Some(publisher);
        self.subscriber = Some(subscriber);
        Some(Latency {
            mqtt: mqtt_latency?,
            browser: browser_latency?,
        })
    }
}
