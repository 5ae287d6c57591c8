//! Publisher pacing. rumqttd's router takes publishes as fast as they come and
//! forwards them when it gets round to it; a subscriber further behind than its
//! filter's log loses the oldest messages. Two brakes, both pausing publishers'
//! sockets (TCP then pushes back on the clients):
//!
//! - The bridge's `#` subscription sees every message, so the gap between what the
//!   edge handed the router and what reached the bridge says how far forwarding is
//!   behind: above `pace_after`, publishers wait until it catches up.
//! - With `pace_on_loss`, a subscriber that lost messages anyway (its log cursor
//!   jumped: a QoS 1 subscriber held to its in-flight window, a slow client) reports
//!   it; the publish rate is then capped at three quarters of what it was, and the
//!   cap is raised again by a tenth every tick without loss (AIMD, as TCP does).
//!   Measured (docs/benchmarks.md): far fewer losses, but less throughput, so off by
//!   default.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the publish rate is measured and the cap adjusted.
pub const TICK: Duration = Duration::from_millis(100);
/// The cap never goes below this (messages per second).
const MIN_RATE: u64 = 5_000;
/// Loss reports closer together than this are one loss.
const LOSS_HOLDOFF_MS: u64 = 200;
/// Without loss for this long, the cap grows.
const RECOVER_AFTER_MS: u64 = 500;
/// No cap.
const UNCAPPED: u64 = u64::MAX;

/// If the gap stays open this long without any forwarding, the missing messages
/// are not coming (dropped by the router, or not for `#`): the count starts over.
const NO_PROGRESS: Duration = Duration::from_millis(200);

pub struct Pacing {
    limit: u64,
    on_loss: bool,
    handed: AtomicU64,
    forwarded: AtomicU64,
    started: Instant,
    /// Milliseconds since `started` of the last forwarding progress.
    last_progress_ms: AtomicU64,
    /// Publishes per second allowed after a loss; `UNCAPPED` otherwise.
    rate_cap: AtomicU64,
    /// Publishes per second handed over the last tick.
    measured_rate: AtomicU64,
    handed_at_tick: AtomicU64,
    last_loss_ms: AtomicU64,
    /// Token bucket for the cap: publishes that may still go now (negative: wait).
    tokens: AtomicI64,
    last_refill_ms: AtomicU64,
}

impl Pacing {
    /// `limit`: `[router] pace_after` (0: no pacing at all); `on_loss`: `pace_on_loss`.
    pub fn new(limit: u64, on_loss: bool) -> Pacing {
        Pacing {
            limit,
            on_loss,
            handed: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            started: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            rate_cap: AtomicU64::new(UNCAPPED),
            measured_rate: AtomicU64::new(0),
            handed_at_tick: AtomicU64::new(0),
            last_loss_ms: AtomicU64::new(0),
            tokens: AtomicI64::new(0),
            last_refill_ms: AtomicU64::new(0),
        }
    }

    /// The edge handed the router `count` publishes the bridge will see.
    pub fn handed(&self, count: u64) {
        if self.limit > 0 {
            self.handed.fetch_add(count, Ordering::Relaxed);
            if self.rate_cap.load(Ordering::Relaxed) != UNCAPPED {
                self.tokens
                    .fetch_sub(i64::try_from(count).unwrap_or(i64::MAX), Ordering::Relaxed);
            }
        }
    }

    /// A subscriber lost messages (its filter's log dropped what it had not read).
    pub fn lost(&self) {
        if self.limit == 0 || !self.on_loss {
            return;
        }
        let now = self.elapsed_ms();
        let last = self.last_loss_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < LOSS_HOLDOFF_MS {
            return;
        }
        self.last_loss_ms.store(now.max(1), Ordering::Relaxed);
        let measured = self.measured_rate.load(Ordering::Relaxed).max(MIN_RATE);
        let cap = self.rate_cap.load(Ordering::Relaxed).min(measured);
        self.rate_cap
            .store((cap / 4 * 3).max(MIN_RATE), Ordering::Relaxed);
        self.tokens.store(0, Ordering::Relaxed);
        self.last_refill_ms.store(now, Ordering::Relaxed);
        metrics::counter!("switchboard_mqtt_pacing_losses_total").increment(1);
    }

    /// Measures the publish rate and raises the cap after a while without loss.
    pub fn tick(&self) {
        let handed = self.handed.load(Ordering::Relaxed);
        let previous = self.handed_at_tick.swap(handed, Ordering::Relaxed);
        let per_second =
            handed.saturating_sub(previous).saturating_mul(1000) / TICK.as_millis() as u64;
        self.measured_rate.store(per_second, Ordering::Relaxed);
        let cap = self.rate_cap.load(Ordering::Relaxed);
        if cap == UNCAPPED {
            return;
        }
        let since_loss = self
            .elapsed_ms()
            .saturating_sub(self.last_loss_ms.load(Ordering::Relaxed));
        if since_loss < RECOVER_AFTER_MS {
            return;
        }
        let raised = cap.saturating_add((cap / 10).max(MIN_RATE / 10));
        // Far above what publishers send: lift the cap altogether.
        let next = if raised > per_second.max(MIN_RATE).saturating_mul(4) {
            UNCAPPED
        } else {
            raised
        };
        self.rate_cap.store(next, Ordering::Relaxed);
    }

    /// Whether the cap holds publishers back now.
    fn over_rate(&self) -> bool {
        let cap = self.rate_cap.load(Ordering::Relaxed);
        if cap == UNCAPPED {
            return false;
        }
        let now = self.elapsed_ms();
        let before = self.last_refill_ms.swap(now, Ordering::Relaxed);
        let earned = i64::try_from(now.saturating_sub(before).saturating_mul(cap) / 1000)
            .unwrap_or(i64::MAX);
        // At most a tenth of a second's worth saved up.
        let burst = i64::try_from(cap / 10).unwrap_or(i64::MAX);
        let tokens = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(earned).min(burst))
            })
            .map_or(0, |t| t.saturating_add(earned).min(burst));
        tokens < 0
    }

    /// The bridge received `count` publishes.
    pub fn forwarded(&self, count: u64) {
        if self.limit > 0 && count > 0 {
            // Never ahead of what was handed: a message from a source that is not
            // counted must not hide a later gap.
            let handed = self.handed.load(Ordering::Relaxed);
            let _ = self
                .forwarded
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                    Some(f.saturating_add(count).min(handed.max(f)))
                });
            self.last_progress_ms
                .store(self.elapsed_ms(), Ordering::Relaxed);
        }
    }

    /// Whether publishers should wait.
    pub fn is_behind(&self) -> bool {
        if self.limit == 0 {
            return false;
        }
        if self.over_rate() {
            return true;
        }
        let handed = self.handed.load(Ordering::Relaxed);
        let forwarded = self.forwarded.load(Ordering::Relaxed);
        if handed.saturating_sub(forwarded) <= self.limit {
            return false;
        }
        let idle = self
            .elapsed_ms()
            .saturating_sub(self.last_progress_ms.load(Ordering::Relaxed));
        if idle > NO_PROGRESS.as_millis() as u64 {
            self.forwarded.fetch_max(handed, Ordering::Relaxed);
            self.last_progress_ms
                .store(self.elapsed_ms(), Ordering::Relaxed);
            return false;
        }
        true
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_above_the_limit_until_forwarding_catches_up() {
        let pacing = Pacing::new(10, false);
        pacing.handed(10);
        assert!(!pacing.is_behind());
        pacing.handed(5);
        pacing.forwarded(1);
        assert!(pacing.is_behind());
        pacing.forwarded(4);
        assert!(!pacing.is_behind());
    }

    #[test]
    fn a_gap_without_progress_is_forgiven() {
        let pacing = Pacing::new(10, false);
        pacing.handed(100);
        assert!(pacing.is_behind());
        std::thread::sleep(NO_PROGRESS + Duration::from_millis(50));
        assert!(!pacing.is_behind());
        pacing.handed(5);
        assert!(!pacing.is_behind(), "counting starts over");
    }

    #[test]
    fn a_loss_caps_the_rate_and_the_cap_lifts_without_loss() {
        let pacing = Pacing::new(1_000_000, true);
        pacing.handed(100_000);
        pacing.tick();
        let measured = pacing.measured_rate.load(Ordering::Relaxed);
        assert_eq!(measured, 1_000_000, "100 000 in one 100 ms tick");
        pacing.lost();
        assert_eq!(pacing.rate_cap.load(Ordering::Relaxed), 750_000);
        pacing.handed(60_000);
        assert!(pacing.is_behind(), "over the cap's allowance");
        pacing.lost();
        assert_eq!(
            pacing.rate_cap.load(Ordering::Relaxed),
            750_000,
            "a second report within the hold-off is the same loss"
        );
        std::thread::sleep(Duration::from_millis(RECOVER_AFTER_MS + 50));
        pacing.tick();
        assert_eq!(
            pacing.rate_cap.load(Ordering::Relaxed),
            825_000,
            "raised by a tenth"
        );
        pacing.tick();
        assert_eq!(
            pacing.rate_cap.load(Ordering::Relaxed),
            UNCAPPED,
            "far above what publishers send now: lifted"
        );
    }

    #[test]
    fn losses_are_ignored_unless_asked_for() {
        let pacing = Pacing::new(1_000_000, false);
        pacing.handed(100_000);
        pacing.tick();
        pacing.lost();
        assert_eq!(pacing.rate_cap.load(Ordering::Relaxed), UNCAPPED);
    }

    #[test]
    fn forwarding_never_runs_ahead_of_what_was_handed() {
        let pacing = Pacing::new(10, false);
        pacing.forwarded(1_000);
        pacing.handed(15);
        assert!(
            pacing.is_behind(),
            "the earlier surplus does not hide the gap"
        );
    }

    #[test]
    fn zero_never_paces() {
        let pacing = Pacing::new(0, true);
        pacing.handed(1_000_000);
        assert!(!pacing.is_behind());
    }
}
