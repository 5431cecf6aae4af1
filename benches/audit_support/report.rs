//! Latency statistics and the side-by-side Markdown report of `benches/audit.rs`.

use std::fmt::Write as _;
use std::time::Duration;

/// One query kind's latencies on one side, from client-side samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// The query kind (`gen::QUERY_NAMES`).
    pub query: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// Rows returned, summed over the timed runs (pages only, not the totals): both sides must
    /// report the same figure for the same query set.
    pub hits: u64,
}

impl Timing {
    /// Statistics over `samples` (one per timed run). Percentiles are nearest-rank: p99 of 200
    /// samples is the 198th smallest. An empty sample set gives zeros.
    pub fn from_samples(query: &str, samples: &[Duration], hits: u64) -> Timing {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let mean_ms = if ms.is_empty() {
            0.0
        } else {
            ms.iter().sum::<f64>() / ms.len() as f64
        };
        Timing {
            query: query.to_string(),
            p50_ms: percentile(&ms, 50.0),
            p99_ms: percentile(&ms, 99.0),
            mean_ms,
            hits,
        }
    }
}

/// Nearest-rank percentile `p` (0..=100) of ascending `sorted` values; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One column of the report.
#[derive(Clone, Debug, Default)]
pub struct Side {
    /// Column title, e.g. "Portcullis" or "PostgreSQL 15.14".
    pub name: String,
    /// `None`: the side did not run; `absent` is printed in its cells instead.
    pub timings: Option<Vec<Timing>>,
    /// e.g. "pending" or "skipped".
    pub absent: String,
    /// Entries per second from the first written entry to queryable (indexes built).
    pub ingest_per_s: Option<f64>,
    /// How the ingest figure was obtained (printed under the table).
    pub ingest_detail: String,
    /// Bytes on disk per entry, indexes included.
    pub bytes_per_entry: Option<f64>,
    /// What the size figure covers (printed under the table).
    pub size_detail: String,
    /// Anything else worth saying under the table (settings, why it was skipped, ...).
    pub notes: Vec<String>,
}

impl Side {
    /// A side that could not run, and why.
    pub fn skipped(name: &str, why: &str) -> Side {
        Side {
            name: name.to_string(),
            absent: "skipped".to_string(),
            notes: vec![format!("skipped: {why}")],
            ..Side::default()
        }
    }

    fn timing(&self, query: &str) -> Option<&Timing> {
        self.timings.as_ref()?.iter().find(|t| t.query == query)
    }

    fn cell(&self, query: &str) -> String {
        match (&self.timings, self.timing(query)) {
            (None, _) => self.absent.clone(),
            (Some(_), None) => "—".to_string(),
            (Some(_), Some(t)) => format!("{} / {}", ms(t.p50_ms), ms(t.p99_ms)),
        }
    }
}

/// Milliseconds with three significant digits or so.
pub fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3}")
    } else if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The side-by-side Markdown table: one row per query kind (in `queries` order) with p50 / p99
/// per side and the PostgreSQL-p99 / Portcullis-p99 ratio (> 1: Portcullis is faster), then
/// rows for ingest rate and size per entry, then per-side details (mean, hits, notes).
pub fn render(n: usize, queries: &[&str], ours: &Side, pg: &Side) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Audit log queries over {} entries",
        thousands(n as u64)
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| query | {} p50 / p99 (ms) | {} p50 / p99 (ms) | ratio (PG p99 / ours p99) |",
        ours.name, pg.name
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for q in queries {
        let ratio = match (ours.timing(q), pg.timing(q)) {
            (Some(o), Some(p)) if o.p99_ms > 0.0 => format!("{:.1}×", p.p99_ms / o.p99_ms),
            _ => "—".to_string(),
        };
        let _ = writeln!(s, "| {q} | {} | {} | {ratio} |", ours.cell(q), pg.cell(q));
    }
    let ingest = |side: &Side| match side.ingest_per_s {
        Some(v) => format!("{} entries/s", thousands(v.round() as u64)),
        None => side_absent(side),
    };
    let size = |side: &Side| match side.bytes_per_entry {
        Some(v) => format!("{} B/entry", thousands(v.round() as u64)),
        None => side_absent(side),
    };
    let ingest_ratio = match (ours.ingest_per_s, pg.ingest_per_s) {
        (Some(o), Some(p)) if p > 0.0 => format!("{:.1}× (ours / PG)", o / p),
        _ => "—".to_string(),
    };
    let size_ratio = match (ours.bytes_per_entry, pg.bytes_per_entry) {
        (Some(o), Some(p)) if o > 0.0 => format!("{:.1}× (PG / ours)", p / o),
        _ => "—".to_string(),
    };
    let _ = writeln!(
        s,
        "| ingest | {} | {} | {ingest_ratio} |",
        ingest(ours),
        ingest(pg)
    );
    let _ = writeln!(
        s,
        "| size on disk | {} | {} | {size_ratio} |",
        size(ours),
        size(pg)
    );
    let _ = writeln!(s);
    for side in [ours, pg] {
        let _ = writeln!(s, "{}:", side.name);
        if let Some(ts) = &side.timings {
            for t in ts {
                let _ = writeln!(
                    s,
                    "- {}: p50 {} ms, p99 {} ms, mean {} ms, {} rows returned",
                    t.query,
                    ms(t.p50_ms),
                    ms(t.p99_ms),
                    ms(t.mean_ms),
                    thousands(t.hits)
                );
            }
        }
        if !side.ingest_detail.is_empty() {
            let _ = writeln!(s, "- ingest: {}", side.ingest_detail);
        }
        if !side.size_detail.is_empty() {
            let _ = writeln!(s, "- size: {}", side.size_detail);
        }
        for note in &side.notes {
            let _ = writeln!(s, "- {note}");
        }
        if side.timings.is_none() && side.notes.is_empty() {
            let _ = writeln!(s, "- {}", side.absent);
        }
    }
    s
}

fn side_absent(side: &Side) -> String {
    if side.timings.is_some() {
        "—".to_string()
    } else {
        side.absent.clone()
    }
}

/// Print [`render`] to stdout.
pub fn print(n: usize, queries: &[&str], ours: &Side, pg: &Side) {
    print!("{}", render(n, queries, ours, pg));
}
