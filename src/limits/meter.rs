//! One subject's live usage: budget period spend and reservations, two per-minute buckets,
//! running requests, and whether the counter changed since it was last persisted.
//!
//! Everything a request touches sits behind one small mutex per meter (or in atomics); the
//! critical sections are a handful of integer operations and never allocate.

use super::{Limits, Subject, to_dollars, to_nanos};
use crate::store::usage::CounterRow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The rate limits' window: limits are per minute.
const WINDOW_NS: i64 = 60_000_000_000;

pub struct Meter {
    subject: Subject,
    state: Mutex<State>,
    in_flight: AtomicU64,
    /// Set after every change the store should see; cleared by the flusher's snapshot.
    dirty: AtomicBool,
}

/// What the budget, rpm and tpm checks read and write together.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Nano-dollars spent in the current period.
    pub spend: i64,
    /// Nano-dollars estimated for admitted requests that have not finished.
    pub reserved: i64,
    /// Start of the current budget period; `None` until the first charge under a duration.
    pub period_start_ms: Option<i64>,
    pub rpm: Gcra,
    pub tpm: Gcra,
}

/// A meter as the management API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct MeterSnapshot {
    pub spend: f64,
    pub reserved: f64,
    pub period_start_ms: Option<i64>,
    pub budget_reset_at_ms: Option<i64>,
    pub in_flight: u64,
}

impl Meter {
    pub(crate) fn new(subject: Subject) -> Meter {
        Meter {
            subject,
            state: Mutex::new(State::default()),
            in_flight: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
        }
    }

    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// A poisoned lock only means a panic elsewhere mid-update of plain integers; the numbers
    /// are still the best we have, so keep metering rather than failing every request.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Takes a running-request slot if fewer than `limit` are taken.
    pub(crate) fn try_slot(&self, limit: u64) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn release_slot(&self) {
        // Saturating: a slot is only released by the admission that took it, but an underflow
        // here would lock the level out for good, so never let it wrap.
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Requests of this subject running now (counted only while a parallel limit is set).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The current period's figures, rolling the period over first if it has ended.
    pub fn snapshot(&self, limits: &Limits, now_ms: i64) -> MeterSnapshot {
        let mut st = self.lock();
        if st.roll(limits.budget_duration, now_ms) {
            self.mark_dirty();
        }
        MeterSnapshot {
            spend: to_dollars(st.spend),
            reserved: to_dollars(st.reserved),
            period_start_ms: st.period_start_ms,
            budget_reset_at_ms: st.reset_at(limits.budget_duration),
            in_flight: self.in_flight(),
        }
    }

    /// Sets the current period's spend (an administrator's reset or correction).
    pub fn set_spend(&self, spend: f64) {
        self.lock().spend = to_nanos(spend);
        self.mark_dirty();
    }

    /// The counter to persist if it changed since the last call. The flag is cleared before
    /// the state is read, so a change racing with this snapshot either is in it or marks the
    /// meter dirty again for the next flush: no update is lost.
    pub(crate) fn take_dirty_row(&self) -> Option<CounterRow> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return None;
        }
        let st = self.lock();
        Some(CounterRow {
            spend: to_dollars(st.spend),
            period_start_ms: st.period_start_ms.unwrap_or(0),
        })
    }

    /// Loads a persisted counter (start-up). The period start is kept as stored, so a restart
    /// never hands out a fresh budget; a stored 0 means no period had started.
    pub(crate) fn restore(&self, row: &CounterRow) {
        let mut st = self.lock();
        st.spend = to_nanos(row.spend);
        st.period_start_ms = (row.period_start_ms > 0).then_some(row.period_start_ms);
    }
}

fn duration_ms(d: Duration) -> Option<i64> {
    i64::try_from(d.as_millis()).ok().filter(|&ms| ms > 0)
}

impl State {
    /// Starts or renews the budget period. Returns whether anything changed (so it is
    /// persisted). The start advances by whole durations, keeping periods on their grid.
    pub fn roll(&mut self, duration: Option<Duration>, now_ms: i64) -> bool {
        let Some(d) = duration.and_then(duration_ms) else {
            return false;
        };
        match self.period_start_ms {
            None => {
                self.period_start_ms = Some(now_ms);
                true
            }
            Some(start) if now_ms >= start.saturating_add(d) => {
                let periods = (now_ms - start) / d;
                self.period_start_ms = Some(start.saturating_add(periods.saturating_mul(d)));
                self.spend = 0;
                true
            }
            Some(_) => false,
        }
    }

    /// When the current period ends (LiteLLM's `budget_reset_at`).
    pub fn reset_at(&self, duration: Option<Duration>) -> Option<i64> {
        let d = duration.and_then(duration_ms)?;
        Some(self.period_start_ms?.saturating_add(d))
    }
}

/// A per-minute bucket in GCRA form: the single number is the theoretical arrival time, the
/// moment the bucket would be full again. Holding `limit` units with a continuous refill of
/// `limit` per minute is then "the TAT is at most one window ahead of now".
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Gcra {
    tat_ns: i64,
}

/// Nanoseconds per unit and the bucket's depth in nanoseconds. Limits above one unit per
/// nanosecond behave as that (effectively unlimited).
fn params(limit: u64) -> (i64, i64) {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX).clamp(1, WINDOW_NS);
    let per_unit = WINDOW_NS / limit;
    (per_unit, per_unit * limit)
}

fn nanos(d: i64) -> Duration {
    Duration::from_nanos(u64::try_from(d).unwrap_or(0))
}

impl Gcra {
    /// Whether one unit can be taken now: `Ok((new TAT, units left after taking))`, or how
    /// long until it can. A limit of 0 never has a unit.
    pub fn check_one(&self, limit: u64, now_ns: i64) -> Result<(i64, u64), Duration> {
        if limit == 0 {
            return Err(nanos(WINDOW_NS));
        }
        let (per_unit, depth) = params(limit);
        let new_tat = self.tat_ns.max(now_ns).saturating_add(per_unit);
        let ahead = new_tat - now_ns;
        if ahead <= depth {
            Ok((new_tat, ((depth - ahead) / per_unit) as u64))
        } else {
            Err(nanos(ahead - depth))
        }
    }

    pub fn set(&mut self, tat_ns: i64) {
        self.tat_ns = tat_ns;
    }

    /// Returns one unit taken by [`Gcra::check_one`] (a later level refused the request).
    pub fn give_back(&mut self, limit: u64) {
        self.tat_ns = self.tat_ns.saturating_sub(params(limit).0);
    }

    /// Consumes `units` after the fact; the bucket may go into debt.
    pub fn charge(&mut self, units: u64, limit: u64, now_ns: i64) {
        let per_unit = params(limit).0;
        let cost = i64::try_from(units)
            .unwrap_or(i64::MAX)
            .saturating_mul(per_unit);
        self.tat_ns = self.tat_ns.max(now_ns).saturating_add(cost);
    }

    /// Whole units available now (0 while in debt).
    pub fn available(&self, limit: u64, now_ns: i64) -> u64 {
        if limit == 0 {
            return 0;
        }
        let (per_unit, depth) = params(limit);
        let ahead = self.tat_ns.max(now_ns) - now_ns;
        (depth.saturating_sub(ahead).max(0) / per_unit) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn bucket_holds_its_limit_and_refills_continuously() {
        let mut b = Gcra::default();
        let now = 1_000 * MS;
        for left in (0..60).rev() {
            let (tat, remaining) = b.check_one(60, now).unwrap_or_default();
            assert_eq!(remaining, left);
            b.set(tat);
        }
        // Empty: the next unit comes one second (60 s / 60) later.
        assert_eq!(b.check_one(60, now), Err(Duration::from_secs(1)));
        assert!(b.check_one(60, now + 999 * MS).is_err());
        assert!(b.check_one(60, now + 1000 * MS).is_ok());
        // A full minute refills it completely, and no further.
        assert_eq!(b.available(60, now + 60_000 * MS), 60);
        assert_eq!(b.available(60, now + 600_000 * MS), 60);
        // Odd limits keep their exact depth.
        let mut odd = Gcra::default();
        let mut taken = 0;
        while let Ok((tat, _)) = odd.check_one(7, now) {
            odd.set(tat);
            taken += 1;
        }
        assert_eq!(taken, 7);
        assert!(Gcra::default().check_one(0, now).is_err());
    }

    #[test]
    fn charging_goes_into_debt() {
        let mut b = Gcra::default();
        let now = 0;
        b.charge(90, 60, now);
        assert_eq!(b.available(60, now), 0);
        // 30 units of debt plus one unit needed: 31 seconds.
        assert_eq!(b.check_one(60, now), Err(Duration::from_secs(31)));
        b.give_back(60);
        assert_eq!(b.check_one(60, now), Err(Duration::from_secs(30)));
    }

    #[test]
    fn periods_start_lazily_and_stay_on_their_grid() {
        let day = Some(Duration::from_secs(86_400));
        let d = 86_400_000;
        let mut st = State::default();
        assert!(!st.roll(None, 5));
        assert!(st.roll(day, 1_000));
        assert_eq!(st.reset_at(day), Some(1_000 + d));
        st.spend = 42;
        assert!(!st.roll(day, 1_000 + d - 1));
        assert_eq!(st.spend, 42);
        // Three and a half periods later: spend resets, the start lands on the grid.
        assert!(st.roll(day, 1_000 + 3 * d + d / 2));
        assert_eq!(st.spend, 0);
        assert_eq!(st.period_start_ms, Some(1_000 + 3 * d));
    }
}
