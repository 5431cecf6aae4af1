//! The registry of meters and the admission decision over all levels of one request.

use super::meter::State;
use super::outcome::{Crossing, RateHeaders, Refusal, RefusalKind, Threshold};
use super::{Limits, Meter, Subject, to_dollars, to_nanos};
use crate::store::usage::CounterRow;
use dashmap::DashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Every live meter, by subject. Callers keep the `Arc<Meter>` in their own caches, so the
/// request path never looks anything up here.
#[derive(Default)]
pub struct Ledger {
    meters: DashMap<Subject, Arc<Meter>>,
    /// Counters of deleted subjects, still to be removed from the store.
    forgotten: Mutex<Vec<String>>,
}

/// One level of a request: the meter to charge and the limits that level carries.
#[derive(Clone, Copy)]
pub struct Level<'a> {
    pub meter: &'a Arc<Meter>,
    pub limits: &'a Limits,
}

/// What one level of an admitted request holds until it settles or is dropped.
struct Taken {
    meter: Arc<Meter>,
    limits: Limits,
    slot: bool,
    reserved: i64,
}

/// An admitted request. [`Admission::settle`] charges what it cost; dropping it unsettled
/// releases its slots and reservations and charges nothing (its rpm unit stays used).
#[must_use = "dropping an admission releases it at once"]
pub struct Admission {
    taken: Vec<Taken>,
    headers: RateHeaders,
}

fn ns(now_ms: i64) -> i64 {
    now_ms.saturating_mul(1_000_000)
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// The subject's meter, created on first use. Called when caches are built, not per
    /// request. Creating and forgetting the same subject must not race (the directory
    /// serialises both under its admin write lock).
    pub fn meter(&self, subject: &Subject) -> Arc<Meter> {
        if let Some(m) = self.meters.get(subject) {
            return Arc::clone(&m);
        }
        Arc::clone(
            &self
                .meters
                .entry(subject.clone())
                .or_insert_with(|| Arc::new(Meter::new(subject.clone()))),
        )
    }

    /// The meter if one exists (for reports; does not create).
    pub fn get(&self, subject: &Subject) -> Option<Arc<Meter>> {
        self.meters.get(subject).map(|m| Arc::clone(&m))
    }

    /// Drops a deleted subject's meter; its stored counter is removed by the next flush, so a
    /// later object with the same id starts from zero, after a restart too.
    pub fn forget(&self, subject: &Subject) {
        // Remove and record under one lock, so a flush sees both or neither.
        let mut forgotten = self
            .forgotten
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.meters.remove(subject).is_some() {
            forgotten.push(subject.storage_key());
        }
    }

    pub fn len(&self) -> usize {
        self.meters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
    }

    /// Admits a request if every level has headroom, taking from each level its parallel
    /// slot, rpm unit and budget reservation of `estimate_cost` dollars. On refusal whatever
    /// earlier levels gave is returned. Levels are visited in order, one lock at a time.
    // A refusal is large (~150 bytes) but rare; callers that keep it in an error enum box it
    // there (the gateway does), so the common path pays nothing for its size.
    #[allow(clippy::result_large_err)]
    pub fn admit(
        &self,
        levels: &[Level<'_>],
        estimate_cost: f64,
        now_ms: i64,
    ) -> Result<Admission, Refusal> {
        let estimate = to_nanos(estimate_cost);
        let mut admission = Admission {
            taken: Vec::with_capacity(levels.len()),
            headers: RateHeaders::default(),
        };
        for level in levels {
            match admit_level(level, estimate, now_ms, &mut admission.headers) {
                Ok(taken) => admission.taken.push(taken),
                Err(kind) => {
                    admission.release(true);
                    let subject = level.meter.subject();
                    return Err(Refusal {
                        level: subject.level_name(),
                        id: subject.id(),
                        kind,
                        headers: admission.headers,
                    });
                }
            }
        }
        Ok(admission)
    }

    /// Counters changed since the last call, keyed by [`Subject::storage_key`].
    pub fn dirty_rows(&self) -> Vec<(String, CounterRow)> {
        self.meters
            .iter()
            .filter_map(|e| {
                let row = e.value().take_dirty_row()?;
                Some((e.key().storage_key(), row))
            })
            .collect()
    }

    /// Makes the next flush write every counter (after a batch was lost).
    pub(crate) fn mark_all_dirty(&self) {
        for e in self.meters.iter() {
            e.value().mark_dirty();
        }
    }

    /// Storage keys of counters whose subjects were forgotten since the last call.
    pub fn take_forgotten(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .forgotten
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Loads persisted counters at start-up. Returns how many rows named a subject; rows that
    /// do not are skipped with a warning.
    pub fn restore(&self, rows: Vec<(String, CounterRow)>) -> usize {
        let mut restored = 0;
        for (key, row) in rows {
            match Subject::from_storage_key(&key) {
                Some(subject) => {
                    self.meter(&subject).restore(&row);
                    restored += 1;
                }
                None => tracing::warn!(key = %key, "ignoring a spend counter of unknown subject"),
            }
        }
        restored
    }
}

/// One level's checks, all under that meter's lock (the parallel slot is an atomic taken
/// first). Nothing is taken unless every check of the level passes.
fn admit_level(
    level: &Level<'_>,
    estimate: i64,
    now_ms: i64,
    headers: &mut RateHeaders,
) -> Result<Taken, RefusalKind> {
    let (meter, limits) = (level.meter, level.limits);
    let slot = match limits.max_parallel_requests {
        Some(limit) if !meter.try_slot(limit) => return Err(RefusalKind::Parallel { limit }),
        Some(_) => true,
        None => false,
    };
    let checked = {
        let mut st = meter.lock();
        if st.roll(limits.budget_duration, now_ms) {
            meter.mark_dirty();
        }
        check_and_take(&mut st, limits, estimate, ns(now_ms), headers)
    };
    match checked {
        Ok(reserved) => Ok(Taken {
            meter: Arc::clone(meter),
            limits: limits.clone(),
            slot,
            reserved,
        }),
        Err(kind) => {
            if slot {
                meter.release_slot();
            }
            Err(kind)
        }
    }
}

/// Returns the nano-dollars reserved.
fn check_and_take(
    st: &mut State,
    limits: &Limits,
    estimate: i64,
    now_ns: i64,
    headers: &mut RateHeaders,
) -> Result<i64, RefusalKind> {
    let mut rpm_tat = None;
    if let Some(limit) = limits.rpm_limit {
        match st.rpm.check_one(limit, now_ns) {
            Ok((tat, remaining)) => {
                headers.note_requests(limit, remaining);
                rpm_tat = Some(tat);
            }
            Err(retry_after) => {
                headers.note_requests(limit, 0);
                return Err(RefusalKind::Rpm { limit, retry_after });
            }
        }
    }
    if let Some(limit) = limits.tpm_limit {
        // Tokens are charged after the call; admission only needs the bucket out of debt.
        match st.tpm.check_one(limit, now_ns) {
            Ok(_) => headers.note_tokens(limit, st.tpm.available(limit, now_ns)),
            Err(retry_after) => {
                headers.note_tokens(limit, 0);
                return Err(RefusalKind::Tpm { limit, retry_after });
            }
        }
    }
    let mut reserved = 0;
    if let Some(max) = limits.max_budget {
        if st.spend.saturating_add(st.reserved) >= to_nanos(max) {
            return Err(RefusalKind::Budget {
                spend: to_dollars(st.spend),
                reserved: to_dollars(st.reserved),
                max_budget: max,
                budget_reset_at_ms: st.reset_at(limits.budget_duration),
            });
        }
        reserved = estimate;
        st.reserved = st.reserved.saturating_add(estimate);
    }
    if let Some(tat) = rpm_tat {
        st.rpm.set(tat);
    }
    Ok(reserved)
}

impl Admission {
    /// Rate headers for the response.
    pub fn headers(&self) -> RateHeaders {
        self.headers
    }

    /// Charges the finished request: `cost` dollars to every level's spend, `tokens` to every
    /// level's tpm bucket; releases slots and reservations. Returns the budget thresholds this
    /// charge crossed, for the caller to alert on once.
    pub fn settle(self, cost: f64, tokens: u64) -> Vec<Crossing> {
        self.settle_at(cost, tokens, crate::types::now_ms())
    }

    /// [`Admission::settle`] at a given time.
    pub fn settle_at(mut self, cost: f64, tokens: u64, now_ms: i64) -> Vec<Crossing> {
        let cost = to_nanos(cost);
        let mut crossings = Vec::new();
        for t in self.taken.drain(..) {
            {
                let mut st = t.meter.lock();
                let rolled = st.roll(t.limits.budget_duration, now_ms);
                st.reserved = st.reserved.saturating_sub(t.reserved).max(0);
                let before = st.spend;
                st.spend = st.spend.saturating_add(cost);
                if let Some(limit) = t.limits.tpm_limit {
                    st.tpm.charge(tokens, limit, ns(now_ms));
                }
                if rolled || cost > 0 {
                    t.meter.mark_dirty();
                }
                let thresholds = [
                    (Threshold::Soft, t.limits.soft_budget),
                    (Threshold::Max, t.limits.max_budget),
                ];
                for (threshold, budget) in thresholds {
                    let Some(budget) = budget else { continue };
                    let line = to_nanos(budget);
                    if before < line && st.spend >= line {
                        let subject = t.meter.subject();
                        crossings.push(Crossing {
                            level: subject.level_name(),
                            id: subject.id(),
                            threshold,
                            spend: to_dollars(st.spend),
                            budget,
                        });
                    }
                }
            }
            if t.slot {
                t.meter.release_slot();
            }
        }
        crossings
    }

    /// Gives back slots and reservations (and on refusal the rpm units, since the request
    /// never ran), newest level first.
    fn release(&mut self, give_back_rpm: bool) {
        for t in self.taken.drain(..).rev() {
            let rpm = t.limits.rpm_limit.filter(|_| give_back_rpm);
            if t.reserved != 0 || rpm.is_some() {
                let mut st = t.meter.lock();
                st.reserved = st.reserved.saturating_sub(t.reserved).max(0);
                if let Some(limit) = rpm {
                    st.rpm.give_back(limit);
                }
            }
            if t.slot {
                t.meter.release_slot();
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.release(false);
    }
}
