//! Audit-log queries over a million entries: Portcullis (tantivy index + redb) next to
//! PostgreSQL with LiteLLM's `LiteLLM_AuditLog` table and the indexes a DBA would add, in one run,
//! on the same deterministic data and the same query runs.
//!
//! `cargo bench --bench audit` (1,000,000 entries; `PORTCULLIS_BENCH_AUDIT_N=100000` for a quick
//! run, `PORTCULLIS_BENCH_AUDIT_SEED` for other data). PostgreSQL's server binaries must be
//! installed (Debian: `apt-get install -y postgresql`); without them the PostgreSQL column is
//! skipped with the reason (`PORTCULLIS_BENCH_AUDIT_PG=0` skips it on purpose).
//! `PORTCULLIS_BENCH_AUDIT_EXPLAIN=1` prints PostgreSQL's plans.
//! How PostgreSQL is started, configured and loaded: `audit_support/pg.rs`.
//!
//! The queries (`audit_support/gen.rs`, [`r#gen::queries`]), 200 timed runs each after 20 warm-up
//! runs, parameters rotating:
//! 1. `filter_only`: table_name=key AND action=X, newest first, page 1 of 50, with the total;
//! 2. `free_text`: a mid-frequency word (0.1–1 % of entries) anywhere in the values, newest 50;
//! 3. `text_filter_time`: a common word AND action=X AND a 7-day window, newest 50;
//! 4. `deep_page`: query 1's filter, page 1000 of 50 (offset 49,950), with the total.
//!
//! Latencies are client-side, one query at a time, p50/p99 over the timed runs. Both sides' row
//! counts are checked against a brute-force count over the generated entries.

#[path = "audit_support/gen.rs"]
mod r#gen;
#[path = "audit_support/ours.rs"]
mod ours;
#[path = "audit_support/pg.rs"]
mod pg;
#[path = "audit_support/report.rs"]
mod report;

use std::collections::BTreeMap;
use std::time::Instant;

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => match v.replace('_', "").trim().parse() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("audit bench: {name}={v} is not a number");
                std::process::exit(2);
            }
        },
        Err(_) => default,
    }
}

fn main() {
    let n = env_number("PORTCULLIS_BENCH_AUDIT_N", 1_000_000) as usize;
    let seed = env_number("PORTCULLIS_BENCH_AUDIT_SEED", r#gen::DEFAULT_SEED);

    let t = Instant::now();
    let mut entries = Vec::with_capacity(n);
    entries.extend(r#gen::generate(n, seed));
    let text_bytes: usize = entries
        .iter()
        .map(|e| e.before_value.len() + e.updated_values.len())
        .sum();
    eprintln!(
        "audit bench: generated {} entries (seed {seed}) in {:.1} s, {} B of JSON per entry on average",
        report::thousands(n as u64),
        t.elapsed().as_secs_f64(),
        text_bytes / n.max(1)
    );
    let queries = r#gen::queries(n);
    let t = Instant::now();
    let totals = r#gen::expected_totals(&entries, &queries);
    eprintln!(
        "audit bench: expected results counted in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let expected = expected_hits(&queries, &totals);

    // ---- Portcullis ----
    let ours = match ours::run(&entries, &queries) {
        Ok(out) => portcullis_side(n, out),
        Err(why) => {
            eprintln!("audit bench: Portcullis side failed: {why}");
            report::Side::skipped("Portcullis", &why)
        }
    };

    // ---- PostgreSQL ----
    let pg = match std::env::var("PORTCULLIS_BENCH_AUDIT_PG").as_deref() {
        Ok("0") => Err("PORTCULLIS_BENCH_AUDIT_PG=0".to_string()),
        _ => pg::run(&entries, &queries),
    };
    let pg = match pg {
        Ok(out) => pg_side(n, out),
        Err(why) => {
            eprintln!("audit bench: PostgreSQL skipped: {why}");
            report::Side::skipped("PostgreSQL", &why)
        }
    };

    let mut ours = ours;
    let mut pg = pg;
    for side in [&mut ours, &mut pg] {
        check_hits(side, &expected);
    }
    println!();
    report::print(n, &r#gen::QUERY_NAMES, &ours, &pg);
    println!();
    println!(
        "Queries (200 timed runs each after 20 warm-up runs; matches = entries matching the filter, mean per run):"
    );
    for name in r#gen::QUERY_NAMES {
        let (sum, runs) = queries
            .iter()
            .zip(&totals)
            .filter(|(q, _)| q.name == name)
            .fold((0u64, 0u64), |(s, c), (_, t)| (s + t, c + 1));
        let mean = sum as f64 / runs.max(1) as f64;
        let page = match queries.iter().find(|q| q.name == name) {
            Some(q) if q.page > 1 => format!(
                " (this run: page {}, offset {})",
                q.page,
                report::thousands(q.offset() as u64)
            ),
            _ => String::new(),
        };
        println!(
            "- {name}: {}{page}; matches {} ({:.2} % of entries)",
            r#gen::describe(name),
            report::thousands(mean.round() as u64),
            100.0 * mean / n.max(1) as f64
        );
    }
}

/// The Portcullis column: ingest through the audited write path, then the index catching up
/// (together: entries per second until queryable), and bytes on disk per entry.
fn portcullis_side(n: usize, out: ours::Outcome) -> report::Side {
    let per = |b: u64| b as f64 / n.max(1) as f64;
    let total_s = out.queryable_s;
    let mut notes = out.notes;
    notes.push(format!(
        "commits alone {:.0} entries/s",
        n as f64 / out.ingest_s.max(1e-9)
    ));
    report::Side {
        name: "Portcullis".to_string(),
        timings: Some(out.timings),
        absent: String::new(),
        ingest_per_s: (total_s > 0.0).then(|| n as f64 / total_s),
        ingest_detail: format!(
            "{:.1} s to queryable (written and indexed; {:.1} s inside the write transactions)",
            total_s, out.ingest_s
        ),
        bytes_per_entry: Some(per(out.redb_bytes + out.index_bytes)),
        size_detail: format!(
            "{:.0} B/entry in all: redb file {:.0} (the log, its hashes), search index {:.0}",
            per(out.redb_bytes + out.index_bytes),
            per(out.redb_bytes),
            per(out.index_bytes)
        ),
        notes,
    }
}

fn pg_side(n: usize, out: pg::PgOutcome) -> report::Side {
    let per = |b: u64| b as f64 / n.max(1) as f64;
    let steps: Vec<String> = out
        .load_steps
        .iter()
        .map(|(step, s)| format!("{step} {s:.1} s"))
        .collect();
    let sizes: Vec<String> = out
        .sizes
        .iter()
        .map(|(rel, b)| format!("{rel} {:.0}", per(*b)))
        .collect();
    let settings: Vec<String> = pg::settings()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.trim_matches('\'')))
        .collect();
    let mut notes = vec![format!(
        "server: PostgreSQL {}, private throwaway cluster on 127.0.0.1; settings {}",
        out.version,
        settings.join(", ")
    )];
    notes.extend(out.warnings.iter().map(|w| format!("WARNING: {w}")));
    report::Side {
        name: format!("PostgreSQL {}", out.version),
        timings: Some(out.timings),
        absent: String::new(),
        ingest_per_s: (out.load_s > 0.0).then(|| n as f64 / out.load_s),
        ingest_detail: format!("{:.1} s to queryable: {}", out.load_s, steps.join(", ")),
        bytes_per_entry: Some(per(out.total_bytes)),
        size_detail: format!(
            "{:.0} B/entry in all (pg_total_relation_size {} MiB): {}",
            per(out.total_bytes),
            out.total_bytes >> 20,
            sizes.join(", ")
        ),
        notes,
    }
}

/// Rows each kind must return over its timed runs (the sum of its page sizes).
fn expected_hits(queries: &[r#gen::BenchQuery], totals: &[u64]) -> BTreeMap<&'static str, u64> {
    let mut hits = BTreeMap::new();
    for (q, &total) in queries.iter().zip(totals) {
        *hits.entry(q.name).or_insert(0) += q.page_rows(total);
    }
    hits
}

fn check_hits(side: &mut report::Side, expected: &BTreeMap<&'static str, u64>) {
    let Some(timings) = &side.timings else { return };
    let mut bad = Vec::new();
    for t in timings {
        let want = expected.get(t.query.as_str()).copied().unwrap_or(0);
        if t.hits != want {
            bad.push(format!(
                "{} returned {} rows, expected {want}",
                t.query, t.hits
            ));
        }
    }
    if bad.is_empty() {
        side.notes
            .push("results: row counts match the brute-force count for every query".into());
    } else {
        eprintln!(
            "audit bench: {}: WRONG RESULTS: {}",
            side.name,
            bad.join("; ")
        );
        side.notes
            .push(format!("WRONG RESULTS: {}", bad.join("; ")));
    }
}
