//! The Portcullis side of the audit bench: the entries go through the store's real audited
//! write path (a batch of changes per redb transaction), the tantivy index follows the table
//! as it does in the server, and each query does what `GET /audit` / `GET /audit/search` do
//! short of HTTP: build the query, search the index (with the total where asked), and read the
//! page's entries from redb.
//!
//! Timestamps: the store stamps entries with the time of their commit, so the generated times
//! cannot be kept. Batches are cut at every window boundary the queries use and committed at
//! distinct milliseconds, so each generated window maps onto exactly the same entries by
//! sequence number; the queries then ask for the commit times of those entries.

use super::r#gen::{self, BenchQuery, GenEntry};
use super::report::Timing;
use portcullis::audit::{Actor, Change, Origin, Within};
use portcullis::audit_index::{AuditIndex, Search, Sort};
use portcullis::store::{AuditFilter, Store, StoreError};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Changes per transaction (an administrative bulk operation, a SCIM bulk request).
const BATCH: usize = 1000;

pub struct Outcome {
    pub timings: Vec<Timing>,
    /// Time spent in the write transactions alone.
    pub ingest_s: f64,
    /// From the first write until the index covered the last entry (indexing runs alongside).
    pub queryable_s: f64,
    pub redb_bytes: u64,
    pub index_bytes: u64,
    pub notes: Vec<String>,
}

fn actor(e: &GenEntry) -> Actor {
    Actor::User {
        user_id: e.changed_by.clone(),
        key: e.changed_by_api_key.clone(),
        role: e
            .actor_role
            .clone()
            .unwrap_or_else(|| "internal_user".into()),
    }
}

fn change(e: &GenEntry) -> Change {
    let mut within = Within::default();
    within.add_org(e.scope.last().map(String::as_str));
    Change {
        action: e.action.clone(),
        table_name: e.table_name.clone(),
        object_id: e.object_id.clone(),
        before_value: e.before_value.clone(),
        updated_values: e.updated_values.clone(),
        within,
    }
}

/// Waits until the clock is past `ms`, so the next commit gets a later millisecond.
fn after(ms: i64) {
    while portcullis::types::now_ms() <= ms {
        std::thread::sleep(Duration::from_micros(200));
    }
}

pub fn run(entries: &[GenEntry], queries: &[BenchQuery]) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = Store::open(&dir.path().join("portcullis.redb")).map_err(|e| e.to_string())?;

    // Sequence numbers at which a query window starts or ends: a batch starts at each.
    let mut cuts: BTreeSet<u64> = BTreeSet::new();
    for q in queries {
        for bound in [q.start_ms, q.end_ms].into_iter().flatten() {
            let seq = entries.partition_point(|e| e.timestamp_ms < bound) as u64 + 1;
            cuts.insert(seq);
        }
    }
    // The index follows the table while it is written, as in the server.
    let started = Instant::now();
    let index = AuditIndex::start(&dir.path().join("audit-index"), store.clone())
        .map_err(|e| e.to_string())?;
    // Commit time of each batch, by its first sequence number.
    let mut batch_ts: Vec<(u64, i64)> = Vec::new();
    let mut ingest = Duration::ZERO;
    let mut last_ts = 0;
    let mut at = 0usize;
    while at < entries.len() {
        let first_seq = entries[at].seq;
        let mut end = (at + BATCH).min(entries.len());
        if let Some(&cut) = cuts.range(first_seq + 1..).next() {
            end = end.min((cut - 1) as usize);
        }
        let batch = &entries[at..end];
        let head = &batch[0];
        let origin = Origin {
            request_id: head.request_id.clone(),
            source_ip: head.source_ip.clone(),
            user_agent: head.user_agent.clone(),
        };
        let changes: Vec<Change> = batch.iter().map(change).collect();
        after(last_ts);
        let t = Instant::now();
        store
            .write(&actor(head), &origin, |tx| {
                for c in changes {
                    tx.audit(c);
                }
                Ok::<_, StoreError>(())
            })
            .map_err(|e| e.to_string())?;
        ingest += t.elapsed();
        last_ts = store
            .audit_entry(first_seq)
            .map_err(|e| e.to_string())?
            .map(|e| e.timestamp_ms)
            .ok_or("an entry just written is missing")?;
        batch_ts.push((first_seq, last_ts));
        at = end;
    }
    let ts_of = |seq: u64| -> i64 {
        let i = batch_ts.partition_point(|(s, _)| *s <= seq);
        batch_ts[i.saturating_sub(1)].1
    };

    let written = started.elapsed();
    let (head, _) = store.audit_head().map_err(|e| e.to_string())?;
    if !index.wait_for(head, Duration::from_secs(3600)) {
        return Err("the index did not catch up".into());
    }
    let queryable_s = started.elapsed().as_secs_f64();
    let index_bytes = index.size_bytes();

    let mut timings = Vec::new();
    let mut notes = Vec::new();
    for name in r#gen::QUERY_NAMES {
        let runs: Vec<&BenchQuery> = queries.iter().filter(|q| q.name == name).collect();
        for q in runs.iter().take(r#gen::WARMUP) {
            one(&index, &store, q, entries, &ts_of)?;
        }
        let mut samples = Vec::with_capacity(runs.len());
        let mut rows = 0u64;
        for q in &runs {
            let t = Instant::now();
            let got = one(&index, &store, q, entries, &ts_of)?;
            samples.push(t.elapsed());
            rows += got as u64;
        }
        timings.push(Timing::from_samples(name, &samples, rows));
    }
    notes.push(format!(
        "ingest: {} entries through Store::write, {BATCH} changes per transaction (each committed \
         durably), {:.1} s inside the commits, {:.1} s of writing in all; the index followed \
         alongside and covered the last entry {:.1} s after the first write",
        entries.len(),
        ingest.as_secs_f64(),
        written.as_secs_f64(),
        queryable_s
    ));
    let redb_bytes = std::fs::metadata(dir.path().join("portcullis.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    index.stop();
    drop(index);
    Ok(Outcome {
        timings,
        ingest_s: ingest.as_secs_f64(),
        queryable_s,
        redb_bytes,
        index_bytes,
        notes,
    })
}

/// One query, as the API runs it; the number of entries returned.
fn one(
    index: &Arc<AuditIndex>,
    store: &Store,
    q: &BenchQuery,
    entries: &[GenEntry],
    ts_of: &dyn Fn(u64) -> i64,
) -> Result<usize, String> {
    let window = |bound: i64| entries.partition_point(|e| e.timestamp_ms < bound) as u64 + 1;
    let start_ms = q.start_ms.map(|s| ts_of(window(s)));
    // The generated end is exclusive: the window ends just before the first entry at or after it.
    let end_ms = q
        .end_ms
        .map(window)
        .filter(|&seq| seq <= entries.len() as u64)
        .map(|seq| ts_of(seq) - 1);
    let query = match &q.text {
        // As `GET /audit/search?q=` does: through the query language.
        Some(word) => {
            let mut text = word.clone();
            if let Some(a) = &q.action {
                text.push_str(&format!(" action:{a}"));
            }
            if let Some(t) = &q.table_name {
                text.push_str(&format!(" table:{t}"));
            }
            if start_ms.is_some() || end_ms.is_some() {
                let at = |v: Option<i64>| {
                    v.map(portcullis::types::ms_to_rfc3339)
                        .unwrap_or_else(|| "*".into())
                };
                text.push_str(&format!(" time:[{} TO {}]", at(start_ms), at(end_ms)));
            }
            index
                .parse(&text, portcullis::types::now_ms())
                .map_err(|e| e.to_string())?
        }
        // As `GET /audit` does: LiteLLM's filter parameters.
        None => index.filter(&AuditFilter {
            table_name: q.table_name.clone(),
            action: q.action.clone(),
            start_ms,
            end_ms,
            ..Default::default()
        }),
    };
    let hits = index
        .search(Search {
            query,
            visible_orgs: None,
            sort: Sort::NewestFirst,
            cursor: None,
            offset: q.offset(),
            limit: q.page_size,
            count: q.with_total,
        })
        .map_err(|e| e.to_string())?;
    let found = store
        .audit_entries_by_seq(&hits.seqs)
        .map_err(|e| e.to_string())?;
    Ok(found.len())
}
