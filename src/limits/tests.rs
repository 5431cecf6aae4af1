//! Admission, settlement and the counters' snapshot and restore, across levels.

use super::*;
use crate::store::usage::CounterRow;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};

const T0: i64 = 1_700_000_000_000;

fn with(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    f(&mut l);
    l
}

fn key(id: &str) -> Subject {
    Subject::Key(id.into())
}

#[test]
fn a_raced_budget_admits_exactly_what_fits() {
    const THREADS: usize = 500;
    let c = 0.1;
    let ledger = Ledger::new();
    let meter = ledger.meter(&key("k"));
    let limits = with(|l| l.max_budget = Some(1.0));

    // Everyone admits at once and nobody settles: reservations let exactly ten through.
    let barrier = Barrier::new(THREADS);
    let admitted = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let level = Level {
                    meter: &meter,
                    limits: &limits,
                };
                let held = ledger.admit(&[level], c, T0);
                if held.is_ok() {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
                // Hold the admission until every thread has tried.
                barrier.wait();
                drop(held);
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 10);
    // All dropped unsettled: nothing spent, nothing reserved.
    let snap = meter.snapshot(&limits, T0);
    assert_eq!((snap.spend, snap.reserved), (0.0, 0.0));

    // Now admit and settle in a race: exactly ten run, and the spend ends at the budget.
    let settled = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let level = Level {
                    meter: &meter,
                    limits: &limits,
                };
                if let Ok(a) = ledger.admit(&[level], c, T0) {
                    let _ = a.settle_at(c, 10, T0);
                    settled.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let snap = meter.snapshot(&limits, T0);
    assert_eq!(settled.load(Ordering::Relaxed), 10);
    assert!(snap.spend <= 1.0 + c, "{}", snap.spend);
    assert!((snap.spend - 1.0).abs() < 1e-9);
    assert_eq!(snap.reserved, 0.0);
}

#[test]
fn overspend_is_at_most_one_request_past_the_budget() {
    let ledger = Ledger::new();
    let meter = ledger.meter(&key("k"));
    let limits = with(|l| l.max_budget = Some(1.0));
    let level = [Level {
        meter: &meter,
        limits: &limits,
    }];
    let _ = ledger
        .admit(&level, 0.1, T0)
        .map(|a| a.settle_at(0.95, 0, T0));
    // Headroom left (0.05), so one more runs and lands past the budget ...
    let _ = ledger
        .admit(&level, 0.1, T0)
        .map(|a| a.settle_at(0.1, 0, T0));
    assert!((meter.snapshot(&limits, T0).spend - 1.05).abs() < 1e-9);
    // ... and then nothing more.
    let refusal = ledger.admit(&level, 0.1, T0).err();
    match refusal.map(|r| (r.level, r.id, r.kind)) {
        Some((
            "key",
            id,
            RefusalKind::Budget {
                spend, max_budget, ..
            },
        )) => {
            assert_eq!(id, "k");
            assert!((spend - 1.05).abs() < 1e-9);
            assert_eq!(max_budget, 1.0);
        }
        other => panic!("expected a budget refusal, got {other:?}"),
    }
}

#[test]
fn budget_periods_roll_over_lazily_and_report_their_reset() {
    let ledger = Ledger::new();
    let meter = ledger.meter(&Subject::Team("t".into()));
    let hour = 3_600_000;
    let limits = with(|l| {
        l.max_budget = Some(1.0);
        l.budget_duration = Some(std::time::Duration::from_secs(3600));
    });
    let level = [Level {
        meter: &meter,
        limits: &limits,
    }];
    let _ = ledger
        .admit(&level, 0.0, T0)
        .map(|a| a.settle_at(1.0, 0, T0));
    match ledger
        .admit(&level, 0.0, T0 + hour - 1)
        .err()
        .map(|r| r.kind)
    {
        Some(RefusalKind::Budget {
            budget_reset_at_ms, ..
        }) => assert_eq!(budget_reset_at_ms, Some(T0 + hour)),
        other => panic!("expected a budget refusal, got {other:?}"),
    }
    // 2.5 periods later the spend is back to zero, on the hourly grid.
    let later = T0 + 2 * hour + hour / 2;
    assert!(ledger.admit(&level, 0.0, later).is_ok());
    let snap = meter.snapshot(&limits, later);
    assert_eq!(snap.spend, 0.0);
    assert_eq!(snap.period_start_ms, Some(T0 + 2 * hour));
    assert_eq!(snap.budget_reset_at_ms, Some(T0 + 3 * hour));
}

#[test]
fn rpm_refills_and_says_when() {
    let ledger = Ledger::new();
    let meter = ledger.meter(&key("k"));
    let limits = with(|l| l.rpm_limit = Some(2));
    let level = [Level {
        meter: &meter,
        limits: &limits,
    }];
    let first = ledger.admit(&level, 0.0, T0).map(|a| a.headers());
    assert_eq!(
        first.ok(),
        Some(RateHeaders {
            limit_requests: Some(2),
            remaining_requests: Some(1),
            ..RateHeaders::default()
        })
    );
    // Dropped unsettled: the request still counted.
    assert!(ledger.admit(&level, 0.0, T0).is_ok());
    let refusal = ledger.admit(&level, 0.0, T0).err();
    assert_eq!(
        refusal.as_ref().and_then(Refusal::retry_after),
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(refusal.map(|r| r.headers.remaining_requests), Some(Some(0)));
    // One unit refills every 30 s.
    assert!(ledger.admit(&level, 0.0, T0 + 29_999).is_err());
    assert!(ledger.admit(&level, 0.0, T0 + 30_000).is_ok());
}

#[test]
fn tpm_runs_into_debt_and_waits_it_out() {
    let ledger = Ledger::new();
    let meter = ledger.meter(&key("k"));
    let limits = with(|l| l.tpm_limit = Some(600));
    let level = [Level {
        meter: &meter,
        limits: &limits,
    }];
    let a = ledger.admit(&level, 0.0, T0);
    assert_eq!(
        a.as_ref().ok().and_then(|a| a.headers().remaining_tokens),
        Some(600)
    );
    // A long answer overdraws the minute by 300 tokens.
    let _ = a.map(|a| a.settle_at(0.0, 900, T0));
    let refusal = ledger.admit(&level, 0.0, T0).err();
    match refusal.map(|r| r.kind) {
        // 300 tokens of debt plus one token, at 10 tokens a second.
        Some(RefusalKind::Tpm { limit, retry_after }) => {
            assert_eq!(limit, 600);
            assert_eq!(retry_after, std::time::Duration::from_millis(30_100));
        }
        other => panic!("expected a tpm refusal, got {other:?}"),
    }
    assert!(ledger.admit(&level, 0.0, T0 + 30_100).is_ok());
}

#[test]
fn parallel_slots_are_held_until_settle_or_drop() {
    let ledger = Ledger::new();
    let meter = ledger.meter(&Subject::User("u".into()));
    let limits = with(|l| l.max_parallel_requests = Some(2));
    let level = [Level {
        meter: &meter,
        limits: &limits,
    }];
    let a = ledger.admit(&level, 0.0, T0);
    let b = ledger.admit(&level, 0.0, T0);
    assert!(a.is_ok() && b.is_ok());
    let refusal = ledger.admit(&level, 0.0, T0).err();
    assert_eq!(
        refusal.map(|r| (r.level, r.kind)),
        Some(("user", RefusalKind::Parallel { limit: 2 }))
    );
    let _ = a.map(|a| a.settle_at(0.0, 0, T0));
    assert!(ledger.admit(&level, 0.0, T0).is_ok());
    drop(b);
    assert_eq!(meter.in_flight(), 0);
}

#[test]
fn a_refusal_gives_back_what_earlier_levels_took() {
    let ledger = Ledger::new();
    let key_meter = ledger.meter(&key("k"));
    let team_meter = ledger.meter(&Subject::Team("t".into()));
    let key_limits = with(|l| {
        l.rpm_limit = Some(1);
        l.max_parallel_requests = Some(1);
        l.max_budget = Some(10.0);
    });
    let team_limits = with(|l| l.max_budget = Some(0.5));
    let levels = [
        Level {
            meter: &key_meter,
            limits: &key_limits,
        },
        Level {
            meter: &team_meter,
            limits: &team_limits,
        },
    ];
    let _ = ledger
        .admit(&levels[1..], 0.0, T0)
        .map(|a| a.settle_at(0.5, 0, T0));
    for _ in 0..3 {
        let refusal = ledger.admit(&levels, 1.0, T0).err();
        assert_eq!(refusal.map(|r| (r.level, r.id)), Some(("team", "t".into())));
    }
    // The key's slot, rpm unit and reservation all came back each time.
    let snap = key_meter.snapshot(&key_limits, T0);
    assert_eq!((snap.reserved, snap.in_flight), (0.0, 0));
    assert!(ledger.admit(&levels[..1], 1.0, T0).is_ok());
}

#[test]
fn dropping_unsettled_charges_nothing_and_settling_charges_every_level() {
    let ledger = Ledger::new();
    let m1 = ledger.meter(&key("k"));
    let m2 = ledger.meter(&Subject::Org("o".into()));
    let l1 = with(|l| {
        l.max_budget = Some(5.0);
        l.soft_budget = Some(1.0);
    });
    let l2 = with(|l| l.max_budget = Some(1.5));
    let levels = [
        Level {
            meter: &m1,
            limits: &l1,
        },
        Level {
            meter: &m2,
            limits: &l2,
        },
    ];
    drop(ledger.admit(&levels, 0.4, T0));
    assert_eq!(m1.snapshot(&l1, T0).reserved, 0.0);
    assert_eq!(m2.snapshot(&l2, T0).spend, 0.0);

    let crossed = ledger
        .admit(&levels, 0.4, T0)
        .map(|a| a.settle_at(0.75, 0, T0));
    assert_eq!(crossed.ok(), Some(Vec::new()));
    let crossed = ledger
        .admit(&levels, 0.4, T0)
        .map(|a| a.settle_at(0.75, 0, T0));
    let seen: Vec<(&str, Threshold)> = crossed
        .unwrap_or_default()
        .iter()
        .map(|c| (c.level, c.threshold))
        .collect();
    assert_eq!(
        seen,
        [("key", Threshold::Soft), ("organization", Threshold::Max)]
    );
    assert!((m1.snapshot(&l1, T0).spend - 1.5).abs() < 1e-9);
    // Already past the soft budget: no second alert.
    let level = [Level {
        meter: &m1,
        limits: &l1,
    }];
    let again = ledger
        .admit(&level, 0.0, T0)
        .map(|a| a.settle_at(0.1, 0, T0));
    assert_eq!(again.ok(), Some(Vec::new()));
}

#[test]
fn headers_report_the_tightest_level() {
    let ledger = Ledger::new();
    let (a, b) = (
        ledger.meter(&key("a")),
        ledger.meter(&Subject::User("b".into())),
    );
    let la = with(|l| {
        l.rpm_limit = Some(100);
        l.tpm_limit = Some(1000);
    });
    let lb = with(|l| {
        l.rpm_limit = Some(10);
        l.tpm_limit = Some(50_000);
    });
    let levels = [
        Level {
            meter: &a,
            limits: &la,
        },
        Level {
            meter: &b,
            limits: &lb,
        },
    ];
    let headers = ledger.admit(&levels, 0.0, T0).map(|a| a.headers()).ok();
    assert_eq!(
        headers,
        Some(RateHeaders {
            limit_requests: Some(10),
            remaining_requests: Some(9),
            limit_tokens: Some(1000),
            remaining_tokens: Some(1000),
        })
    );
}

#[test]
fn counters_snapshot_restore_and_forget() {
    let ledger = Ledger::new();
    let m = ledger.meter(&key("k"));
    let limits = with(|l| l.budget_duration = Some(std::time::Duration::from_secs(60)));
    let level = [Level {
        meter: &m,
        limits: &limits,
    }];
    let _ = ledger
        .admit(&level, 0.0, T0)
        .map(|a| a.settle_at(2.5, 0, T0));
    let rows = ledger.dirty_rows();
    let expected = CounterRow {
        spend: 2.5,
        period_start_ms: T0,
    };
    assert_eq!(rows, [("key:k".to_string(), expected.clone())]);
    assert!(ledger.dirty_rows().is_empty());

    // A restart keeps both the spend and the period.
    let fresh = Ledger::new();
    let unknown = ("bogus".to_string(), CounterRow::default());
    assert_eq!(fresh.restore(vec![rows[0].clone(), unknown]), 1);
    let snap = fresh.meter(&key("k")).snapshot(&limits, T0 + 1);
    assert_eq!((snap.spend, snap.period_start_ms), (2.5, Some(T0)));
    assert!(fresh.dirty_rows().is_empty());

    ledger.forget(&key("k"));
    ledger.forget(&key("never-existed"));
    assert_eq!(ledger.take_forgotten(), ["key:k"]);
    assert!(ledger.get(&key("k")).is_none());
}
