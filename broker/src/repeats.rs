//! Rate-limited logging: lines of one kind (a refusal reason, "client connected", …)
//! are written up to a few per second; the rest are counted and summed up in one
//! "N more like this" line, so a flood of clients cannot fill the disk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::warn;

const WINDOW: Duration = Duration::from_secs(1);

/// Lines per kind per second for ordinary kinds (`[log] max_repeats_per_sec`).
static PER_SECOND: AtomicU32 = AtomicU32::new(5);

struct Kind {
    window_start: Instant,
    written: u32,
    suppressed: u64,
}

fn kinds() -> &'static Mutex<HashMap<&'static str, Kind>> {
    static KINDS: OnceLock<Mutex<HashMap<&'static str, Kind>>> = OnceLock::new();
    KINDS.get_or_init(Mutex::default)
}

pub fn set_max_per_second(lines: u32) {
    PER_SECOND.store(lines.max(1), Ordering::Relaxed);
}

/// Whether a line of `kind` may be written now (up to `[log] max_repeats_per_sec`).
pub fn allow(kind: &'static str) -> bool {
    allow_up_to(kind, PER_SECOND.load(Ordering::Relaxed))
}

/// Whether a refusal line of `kind` may be written now: one per kind per second.
pub fn allow_refusal(kind: &'static str) -> bool {
    allow_up_to(kind, 1)
}

fn allow_up_to(kind: &'static str, limit: u32) -> bool {
    let now = Instant::now();
    let summary = {
        let mut kinds = kinds().lock();
        let state = kinds.entry(kind).or_insert(Kind {
            window_start: now,
            written: 0,
            suppressed: 0,
        });
        let mut summary = None;
        if now.duration_since(state.window_start) >= WINDOW {
            summary = (state.suppressed > 0).then_some(state.suppressed);
            state.window_start = now;
            state.written = 0;
            state.suppressed = 0;
        }
        let allowed = state.written < limit;
        if allowed {
            state.written += 1;
        } else {
            state.suppressed += 1;
        }
        (allowed, summary)
    };
    if let Some(more) = summary.1 {
        summarize_one(kind, more);
    }
    summary.0
}

/// Writes the summary of every kind whose last second had lines held back (called
/// every second, so a flood that stops still gets its count).
pub fn summarize() {
    let now = Instant::now();
    let due: Vec<(&'static str, u64)> = {
        let mut kinds = kinds().lock();
        let due = kinds
            .iter_mut()
            .filter(|(_, k)| k.suppressed > 0 && now.duration_since(k.window_start) >= WINDOW)
            .map(|(name, k)| {
                let more = k.suppressed;
                k.suppressed = 0;
                k.written = 0;
                k.window_start = now;
                (*name, more)
            })
            .collect();
        // Kinds are a fixed set of literals; idle ones cost nothing to keep.
        due
    };
    for (kind, more) in due {
        summarize_one(kind, more);
    }
}

fn summarize_one(kind: &str, more: u64) {
    warn!(
        kind,
        suppressed = more,
        "{more} more like this in the last second: {kind}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_limit_and_counted() {
        let written = (0..1_000).filter(|_| allow_up_to("test.flood", 3)).count();
        assert_eq!(written, 3);
        assert_eq!(
            kinds().lock().get("test.flood").map(|k| k.suppressed),
            Some(997)
        );
        assert!(allow_refusal("test.other"), "kinds are counted apart");
        assert!(!allow_refusal("test.other"));
    }
}
