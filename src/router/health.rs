//! Per-deployment health: in-flight count, latency average, failures in the current minute and
//! cooldown — all atomics, so the routing decision never waits on a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct Health {
    in_flight: Arc<AtomicU32>,
    /// Exponentially weighted average of time to response headers, µs; 0 = not measured yet.
    latency_us: AtomicU64,
    /// (second the window opened << 32) | failures since. A window lasts a minute from its
    /// first failure, so two failures a second apart always count together (a calendar minute
    /// would split them at its boundary).
    fail_window: AtomicU64,
    cooldown_until_ms: AtomicI64,
}

/// Decrements the in-flight count when the call (or its stream) is over.
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Health {
    pub fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn latency_us(&self) -> u64 {
        self.latency_us.load(Ordering::Relaxed)
    }

    pub fn cooling(&self, now_ms: i64) -> bool {
        self.cooldown_until_ms.load(Ordering::Relaxed) > now_ms
    }

    pub fn cooldown_left(&self, now_ms: i64) -> Duration {
        let until = self.cooldown_until_ms.load(Ordering::Relaxed);
        Duration::from_millis(until.saturating_sub(now_ms).max(0) as u64)
    }

    pub fn succeeded(&self, took: Duration) {
        let sample = took.as_micros().max(1) as u64;
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.latency_us.store(new, Ordering::Relaxed);
    }

    /// Counts a failure; more than `allowed_fails` in a minute starts a cooldown — unless this
    /// is the group's only deployment, which would then refuse everything for no gain.
    pub fn failed(&self, allowed_fails: u32, cooldown: Duration, can_cool: bool) {
        let now = crate::types::now_ms();
        let second = (now / 1000) as u64;
        let mut count = 0;
        let _ = self
            .fail_window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                let opened = w >> 32;
                let (opened, n) = if w != 0 && second.saturating_sub(opened) < 60 {
                    (opened, (w & 0xffff_ffff) + 1)
                } else {
                    (second, 1)
                };
                count = n;
                Some((opened << 32) | n)
            });
        if can_cool && count > u64::from(allowed_fails) {
            self.cooldown_until_ms
                .store(now + cooldown.as_millis() as i64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cools_down_after_allowed_fails() {
        let h = Health::default();
        let now = crate::types::now_ms();
        for _ in 0..2 {
            h.failed(2, Duration::from_secs(5), true);
        }
        assert!(!h.cooling(now));
        h.failed(2, Duration::from_secs(5), true);
        assert!(h.cooling(crate::types::now_ms()));
        let single = Health::default();
        for _ in 0..10 {
            single.failed(0, Duration::from_secs(5), false);
        }
        assert!(!single.cooling(crate::types::now_ms()));
    }

    #[test]
    fn in_flight_counts_until_dropped() {
        let h = Health::default();
        let a = h.begin();
        let b = h.begin();
        assert_eq!(h.in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(h.in_flight(), 0);
    }
}
