//! The per-request cost of the limits engine: admitting and settling a request across a
//! six-level chain (key, user, team, member, org, end user) with every kind of limit set,
//! alone and with two threads contending for the same meters, plus the price lookup.
//!
//! `cargo bench --bench limits`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::limits::{Ledger, Level, Limits, Meter, Subject, pricing};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn chain(ledger: &Ledger) -> Vec<(Arc<Meter>, Limits)> {
    let limits = Limits {
        max_budget: Some(1e12),
        soft_budget: Some(1e11),
        budget_duration: Some(Duration::from_secs(30 * 86_400)),
        rpm_limit: Some(u64::MAX / 2),
        tpm_limit: Some(u64::MAX / 2),
        max_parallel_requests: Some(1_000_000),
    };
    [
        Subject::Key("k".into()),
        Subject::User("u".into()),
        Subject::Team("t".into()),
        Subject::TeamMember {
            team: "t".into(),
            user: "u".into(),
        },
        Subject::Org("o".into()),
        Subject::EndUser("c".into()),
    ]
    .iter()
    .map(|s| (ledger.meter(s), limits.clone()))
    .collect()
}

fn levels(chain: &[(Arc<Meter>, Limits)]) -> Vec<Level<'_>> {
    chain
        .iter()
        .map(|(meter, limits)| Level { meter, limits })
        .collect()
}

fn admit_settle(c: &mut Criterion) {
    let ledger = Ledger::new();
    let chain = chain(&ledger);
    let now = portcullis::types::now_ms();
    c.bench_function("admit+settle, 6 levels", |b| {
        b.iter(|| {
            let a = ledger
                .admit(&levels(&chain), black_box(0.001), now)
                .unwrap();
            black_box(a.settle_at(0.0009, 300, now))
        })
    });
    c.bench_function("admit+drop, 6 levels", |b| {
        b.iter(|| drop(ledger.admit(&levels(&chain), black_box(0.001), now)))
    });

    let spent = Ledger::new();
    let broke = chain_with_budget(&spent, 0.0);
    c.bench_function("refused at the last level", |b| {
        b.iter(|| black_box(spent.admit(&levels(&broke), 0.001, now).is_err()))
    });

    // Two threads on the same six meters (the machine this runs on has two cores).
    c.bench_function("admit+settle, 6 levels, 2 threads contending", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..iters {
                            let a = ledger.admit(&levels(&chain), 0.001, now).unwrap();
                            black_box(a.settle_at(0.0009, 300, now));
                        }
                    });
                }
            });
            // Per request, not per pair.
            start.elapsed() / 2
        })
    });
}

fn chain_with_budget(ledger: &Ledger, last_budget: f64) -> Vec<(Arc<Meter>, Limits)> {
    let mut c = chain(ledger);
    if let Some((_, limits)) = c.last_mut() {
        limits.max_budget = Some(last_budget);
    }
    c
}

fn prices(c: &mut Criterion) {
    c.bench_function("cost, dated Bedrock name", |b| {
        b.iter(|| {
            pricing::cost(
                1000,
                200,
                None,
                None,
                black_box("bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            )
        })
    });
    c.bench_function("cost, prefixed OpenAI name", |b| {
        b.iter(|| {
            pricing::cost(
                1000,
                200,
                None,
                None,
                black_box("openai/gpt-4o-mini-2024-07-18"),
            )
        })
    });
}

criterion_group!(benches, admit_settle, prices);
criterion_main!(benches);
