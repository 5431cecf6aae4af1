//! Opening (or rebuilding) the index, and the thread that keeps it following the audit table.

use super::schema::{Fields, SCHEMA_TAG};
use super::{AuditIndex, COMMIT_AFTER, COMMIT_EVERY, IndexError};
use crate::store::{AppendSignal, Store};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tantivy::indexer::IndexWriterOptions;
use tantivy::query::RangeQuery;
use tantivy::{Index, IndexWriter, Term};

/// Entries read from the table per step.
const READ_BATCH: usize = 4096;
/// The writer's memory budget: tantivy's minimum (commits come long before it fills; the term
/// table is 4 MiB at any budget from 15 MB up).
const WRITER_BYTES: usize = 15_000_000;

/// A writer with one indexing thread. A writer holds a 10,000-slot operation queue (about 2.5 MB,
/// touched when made and made again at every commit) and threads of its own (indexing, segment
/// updates, merges); the indexer keeps one open only while entries keep coming, and drops it
/// once it has committed everything and merges are done.
fn writer(index: &Index) -> Result<IndexWriter, IndexError> {
    let options = IndexWriterOptions::builder()
        .memory_budget_per_thread(WRITER_BYTES)
        .num_worker_threads(1)
        .build();
    Ok(index.writer_with_options(options)?)
}

/// How far the index is, shared between the indexer and searchers.
pub struct IndexStatus {
    indexed: Mutex<u64>,
    caught_up: Condvar,
    /// The newest sequence number a reader is waiting for: the indexer commits at once for it.
    wanted: AtomicU64,
    healthy: AtomicBool,
    signal: Mutex<Option<Arc<AppendSignal>>>,
}

impl IndexStatus {
    pub(super) fn new(indexed: u64) -> IndexStatus {
        IndexStatus {
            indexed: Mutex::new(indexed),
            caught_up: Condvar::new(),
            wanted: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            signal: Mutex::new(None),
        }
    }

    /// The last sequence number searches can see.
    pub fn indexed(&self) -> u64 {
        self.indexed.lock().map(|i| *i).unwrap_or(0)
    }

    /// False while the indexer is failing (it keeps retrying).
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn set_indexed(&self, seq: u64) {
        if let Ok(mut i) = self.indexed.lock() {
            *i = seq;
        }
        self.caught_up.notify_all();
    }

    pub(super) fn poke(&self) {
        if let Ok(signal) = self.signal.lock()
            && let Some(s) = signal.as_ref()
        {
            s.poke();
        }
    }

    pub(super) fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        if self.indexed() >= seq {
            return true;
        }
        self.wanted.fetch_max(seq, Ordering::Relaxed);
        self.poke();
        let Ok(guard) = self.indexed.lock() else {
            return false;
        };
        match self
            .caught_up
            .wait_timeout_while(guard, timeout, |i| *i < seq)
        {
            Ok((i, _)) => *i >= seq,
            Err(_) => false,
        }
    }
}

/// What each commit records: the layout, the last entry covered, and that entry's hash — so a
/// restored or foreign data file whose log merely has the same length is not mistaken for the
/// history the index was built from.
fn payload(seq: u64, hash: &str) -> String {
    serde_json::json!({"tag": SCHEMA_TAG, "seq": seq, "hash": hash}).to_string()
}

/// The entry (sequence number and hash) an index's last commit covers, if it is of our layout.
fn committed(index: &Index) -> Option<(u64, String)> {
    let metas = index.load_metas().ok()?;
    let p: serde_json::Value = serde_json::from_str(metas.payload.as_deref()?).ok()?;
    if p["tag"].as_str() != Some(SCHEMA_TAG) {
        return None;
    }
    Some((p["seq"].as_u64()?, p["hash"].as_str()?.to_string()))
}

/// Why an opened index cannot be trusted to match the log, if it cannot: its covered entry must
/// be this log's entry with the same hash, every file must pass its checksum and open, and it
/// must hold exactly one document per entry it covers (a doctored payload or a dropped segment
/// shows there).
fn distrust(index: &Index, store: &Store) -> Result<Option<String>, IndexError> {
    let Some((seq, hash)) = committed(index) else {
        return Ok(Some("it has another layout".into()));
    };
    let (head, _) = store.audit_head()?;
    if seq > head {
        return Ok(Some(format!(
            "it covers entry {seq} but the log ends at {head} (a restored backup?)"
        )));
    }
    let checkpoint = store.audit_checkpoint()?;
    let first_kept = checkpoint.as_ref().map_or(1, |c| c.through_seq + 1);
    let known = if seq == 0 {
        Some(GENESIS.to_string())
    } else if seq >= first_kept {
        store.audit_hash(seq)?
    } else {
        checkpoint
            .filter(|c| c.through_seq == seq)
            .map(|c| c.through_hash)
    };
    if known.as_deref() != Some(hash.as_str()) {
        return Ok(Some(format!(
            "entry {seq} of this log is not the one it was built from (a restored or replaced data file?)"
        )));
    }
    let damaged = index.validate_checksum()?;
    if !damaged.is_empty() {
        return Ok(Some(format!(
            "{} of its files fail their checksums",
            damaged.len()
        )));
    }
    let reader = index.reader()?;
    let docs = reader.searcher().num_docs();
    let expected = (seq + 1).saturating_sub(first_kept);
    if docs != expected {
        return Ok(Some(format!(
            "it holds {docs} documents for the {expected} entries it claims to cover"
        )));
    }
    Ok(None)
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Opens the index in `dir`, or rebuilds it empty (the indexer then fills it) when it is
/// missing, unreadable, of another layout, or ahead of the table.
pub fn open_or_rebuild(
    dir: &Path,
    fields: &Fields,
    store: &Store,
) -> Result<(Index, u64), IndexError> {
    let opened = std::panic::catch_unwind(|| Index::open_in_dir(dir)).ok();
    let reason = match opened {
        None => "it could not be read".to_string(),
        Some(Err(e)) if dir.exists() => format!("it could not be opened ({e})"),
        Some(Err(_)) => "it does not exist yet".to_string(),
        Some(Ok(index)) if index.schema() != fields.schema => "it has another layout".to_string(),
        Some(Ok(index)) => {
            // Damage can make tantivy panic rather than fail: either way, rebuild.
            let judged =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| distrust(&index, store)));
            match judged {
                Ok(Ok(None)) => {
                    let seq = committed(&index).map_or(0, |(s, _)| s);
                    return Ok((index, seq));
                }
                Ok(Ok(Some(why))) => why,
                Ok(Err(e)) => format!("it could not be read ({e})"),
                Err(_) => "it could not be read".to_string(),
            }
        }
    };
    tracing::info!(dir = %dir.display(), reason, "building the audit search index from the audit log");
    Ok((create_empty(dir, fields)?, 0))
}

fn create_empty(dir: &Path, fields: &Fields) -> Result<Index, IndexError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let index = Index::create_in_dir(dir, fields.schema.clone())?;
    let mut writer = writer(&index)?;
    let mut commit = writer.prepare_commit()?;
    commit.set_payload(&payload(0, GENESIS));
    commit.commit()?;
    writer.wait_merging_threads()?;
    Ok(index)
}

/// Adds `entries` to the writer; the last sequence number added (`from` when there are none).
fn add_entries(
    writer: &IndexWriter,
    fields: &Fields,
    entries: &[crate::audit::Entry],
    from: u64,
) -> Result<u64, IndexError> {
    let mut last = from;
    for e in entries {
        // Retention's own entry: the entries it removed leave the index too.
        if e.change.table_name == "audit" && e.change.action == "pruned" {
            let values: serde_json::Value =
                serde_json::from_str(&e.change.updated_values).unwrap_or_default();
            if let Some(through) = values["through_seq"].as_u64() {
                delete_through(writer, fields, through)?;
            }
        }
        writer.add_document(fields.document(e))?;
        last = e.seq;
    }
    Ok(last)
}

fn delete_through(writer: &IndexWriter, fields: &Fields, through: u64) -> Result<(), IndexError> {
    writer.delete_query(Box::new(RangeQuery::new(
        std::ops::Bound::Unbounded,
        std::ops::Bound::Included(Term::from_field_u64(fields.seq, through)),
    )))?;
    Ok(())
}

fn commit(writer: &mut IndexWriter, store: &Store, seq: u64) -> Result<(), IndexError> {
    let hash = if seq == 0 {
        GENESIS.to_string()
    } else {
        store
            .audit_hash(seq)?
            .ok_or_else(|| IndexError::Other(format!("audit entry {seq} has no stored hash")))?
    };
    let mut c = writer.prepare_commit()?;
    c.set_payload(&payload(seq, &hash));
    c.commit()?;
    Ok(())
}

/// Rebuilds the index from scratch, synchronously (`portcullis reindex`).
pub fn rebuild(dir: &Path, fields: &Fields, store: &Store) -> Result<u64, IndexError> {
    let index = create_empty(dir, fields)?;
    let mut writer = writer(&index)?;
    let mut at = 0;
    let mut count = 0u64;
    loop {
        let entries = store.audit_entries(at + 1, READ_BATCH)?;
        if entries.is_empty() {
            break;
        }
        count += entries.len() as u64;
        at = add_entries(&writer, fields, &entries, at)?;
    }
    commit(&mut writer, store, at)?;
    writer.wait_merging_threads()?;
    Ok(count)
}

pub fn spawn(
    index: Arc<AuditIndex>,
    store: Store,
) -> Result<std::thread::JoinHandle<()>, IndexError> {
    if let Ok(mut s) = index.status.signal.lock() {
        *s = Some(store.appended().clone());
    }
    let handle = std::thread::Builder::new()
        .name("audit-indexer".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(200);
            while !index.stopping() {
                match follow(&index, &store) {
                    Ok(()) => return,
                    Err(e) => {
                        index.status.healthy.store(false, Ordering::Relaxed);
                        tracing::error!(error = %e, "audit indexer failed; retrying");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        })?;
    Ok(handle)
}

/// Follows the table for as long as the process lives: reads what is new, commits every
/// [`COMMIT_EVERY`] entries, after [`COMMIT_AFTER`], or at once when a reader waits. A writer is
/// open only from the first new entry until a commit that nothing new follows (see [`writer`]).
fn follow(index: &AuditIndex, store: &Store) -> Result<(), IndexError> {
    let fields = &index.fields;
    let mut committed = index.status.indexed();
    // Entries retention removed while the server was down leave the index too.
    if let Some(c) = store.audit_checkpoint()? {
        let mut w = writer(&index.index)?;
        delete_through(&w, fields, c.through_seq)?;
        commit(&mut w, store, committed)?;
        w.wait_merging_threads()?;
        index.reload()?;
    }
    let mut open: Option<IndexWriter> = None;
    let mut added = committed;
    let mut pending = 0usize;
    let mut oldest_pending: Option<Instant> = None;
    let signal = store.appended().clone();
    loop {
        let (_, generation) = signal.now();
        if index.stopping() {
            if let Some(mut w) = open.take() {
                if pending > 0 {
                    commit(&mut w, store, added)?;
                }
                w.wait_merging_threads()?;
            }
            return Ok(());
        }
        let entries = store.audit_entries(added + 1, READ_BATCH)?;
        let n = entries.len();
        if n > 0 {
            let w = match open.as_mut() {
                Some(w) => w,
                None => open.insert(writer(&index.index)?),
            };
            added = add_entries(w, fields, &entries, added)?;
            pending += n;
            oldest_pending.get_or_insert_with(Instant::now);
        }
        drop(entries);
        let wanted = index.status.wanted.load(Ordering::Relaxed);
        let due = pending >= COMMIT_EVERY
            || oldest_pending.is_some_and(|t| t.elapsed() >= COMMIT_AFTER)
            || (wanted > committed && (n < READ_BATCH || added >= wanted));
        if pending > 0 && due {
            if let Some(w) = open.as_mut() {
                commit(w, store, added)?;
                index.reload()?;
                committed = added;
                pending = 0;
                oldest_pending = None;
                index.status.set_indexed(committed);
                index.status.healthy.store(true, Ordering::Relaxed);
            }
            continue;
        }
        if n == READ_BATCH {
            continue;
        }
        if pending == 0
            && let Some(w) = open.take()
        {
            // Nothing new since the commit: let its merges finish, then close the writer.
            w.wait_merging_threads()?;
        }
        let wait = match oldest_pending {
            Some(t) => COMMIT_AFTER.saturating_sub(t.elapsed()),
            None => Duration::from_secs(5),
        };
        signal.wait_past(added, generation, wait);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audit::{Actor, Change, Origin};

    fn store_with(path: &Path, words: &[&str]) -> Store {
        let store = Store::open(path).unwrap();
        for w in words {
            store
                .write(&Actor::System, &Origin::default(), |tx| {
                    tx.audit(Change {
                        action: "created".into(),
                        table_name: "t".into(),
                        object_id: (*w).into(),
                        ..Default::default()
                    });
                    Ok::<_, crate::store::StoreError>(())
                })
                .unwrap();
        }
        store
    }

    fn indexed(dir: &Path, store: &Store) {
        let fields = Fields::new();
        rebuild(dir, &fields, store).unwrap();
    }

    #[test]
    fn an_index_of_another_history_of_the_same_length_is_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("index");
        let a = store_with(&tmp.path().join("a.redb"), &["a1", "a2", "a3"]);
        indexed(&dir, &a);
        let fields = Fields::new();
        // The same log again: trusted, resumes at its end.
        let (_, seq) = open_or_rebuild(&dir, &fields, &a).unwrap();
        assert_eq!(seq, 3);
        // A different log of the same length (a restored or replaced data file): rebuilt.
        let b = store_with(&tmp.path().join("b.redb"), &["b1", "b2", "b3"]);
        let (_, seq) = open_or_rebuild(&dir, &fields, &b).unwrap();
        assert_eq!(seq, 0);
    }

    #[test]
    fn a_damaged_segment_file_makes_the_index_rebuild() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("index");
        let a = store_with(&tmp.path().join("a.redb"), &["a1", "a2"]);
        indexed(&dir, &a);
        let victim = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "idx"))
            .unwrap();
        let len = std::fs::metadata(&victim).unwrap().len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&victim)
            .unwrap();
        f.set_len(len / 2).unwrap();
        let (_, seq) = open_or_rebuild(&dir, &Fields::new(), &a).unwrap();
        assert_eq!(seq, 0);
    }
}
