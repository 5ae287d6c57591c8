//! Publisher pacing. rumqttd's router takes publishes as fast as they come and
//! forwards them when it gets round to it; a subscriber further behind than its
//! filter's log loses the oldest messages. The bridge's `#` subscription sees every
//! message, so the gap between what the edge handed the router and what reached the
//! bridge says how far forwarding is behind: above `pace_after`, publishers' sockets
//! pause (TCP pushes back on the clients) until it catches up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// If the gap stays open this long without any forwarding, the missing messages
/// are not coming (dropped by the router, or not for `#`): the count starts over.
const NO_PROGRESS: Duration = Duration::from_millis(200);

pub struct Pacing {
    limit: u64,
    handed: AtomicU64,
    forwarded: AtomicU64,
    started: Instant,
    /// Milliseconds since `started` of the last forwarding progress.
    last_progress_ms: AtomicU64,
}

impl Pacing {
    pub fn new(limit: u64) -> Pacing {
        Pacing {
            limit,
            handed: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            started: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
        }
    }

    /// The edge handed the router `count` publishes the bridge will see.
    pub fn handed(&self, count: u64) {
        if self.limit > 0 {
            self.handed.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// The bridge received `count` publishes.
    pub fn forwarded(&self, count: u64) {
        if self.limit > 0 && count > 0 {
            self.forwarded.fetch_add(count, Ordering::Relaxed);
            self.last_progress_ms
                .store(self.elapsed_ms(), Ordering::Relaxed);
        }
    }

    /// Whether publishers should wait.
    pub fn is_behind(&self) -> bool {
        if self.limit == 0 {
            return false;
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
        let pacing = Pacing::new(10);
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
        let pacing = Pacing::new(10);
        pacing.handed(100);
        assert!(pacing.is_behind());
        std::thread::sleep(NO_PROGRESS + Duration::from_millis(50));
        assert!(!pacing.is_behind());
        pacing.handed(5);
        assert!(!pacing.is_behind(), "counting starts over");
    }

    #[test]
    fn zero_never_paces() {
        let pacing = Pacing::new(0);
        pacing.handed(1_000_000);
        assert!(!pacing.is_behind());
    }
}
