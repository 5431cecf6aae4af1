//! The audit search index: a tantivy index derived from the audit table, never the source of
//! truth. An indexer thread tails the table by sequence number and commits every
//! [`COMMIT_EVERY`] entries or [`COMMIT_AFTER`]; each commit carries the last indexed sequence
//! number, so a restart resumes where the index is, and an index that is missing, damaged,
//! from another layout or ahead of the table (a restored backup) is rebuilt from the table.
//!
//! Searches return sequence numbers; the entries themselves are read from redb.

mod collect;
mod compile;
mod indexer;
pub mod query;
mod schema;

pub use compile::{CompileError, filter as filter_query};
pub use indexer::IndexStatus;

use crate::store::Store;
use schema::Fields;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tantivy::collector::Count;
use tantivy::query::Query;
use tantivy::{Index, IndexReader};

/// Entries indexed between commits, at most.
pub const COMMIT_EVERY: usize = 20_000;
/// Time an indexed entry waits for its commit, at most (unless a reader asks sooner).
pub const COMMIT_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("audit index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("audit index: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("audit index: {0}")]
    Other(String),
}

/// Where a search starts and in which order its hits come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    NewestFirst,
    OldestFirst,
}

/// One page of hits: sequence numbers in order, and how many matched in all when asked.
#[derive(Debug, Clone, Default)]
pub struct Hits {
    pub seqs: Vec<u64>,
    pub total: Option<usize>,
}

/// A search over the index.
pub struct Search<'a> {
    pub query: Box<dyn Query>,
    /// Only entries in these organisations' subtrees (`None`: every entry).
    pub visible_orgs: Option<&'a [String]>,
    pub sort: Sort,
    /// Cursor: only entries with sequence numbers before (newest first) or after it.
    pub cursor: Option<u64>,
    pub offset: usize,
    pub limit: usize,
    pub count: bool,
}

pub struct AuditIndex {
    fields: Fields,
    index: Index,
    reader: IndexReader,
    status: Arc<IndexStatus>,
    dir: PathBuf,
    stopping: std::sync::atomic::AtomicBool,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The index directory beside the data file.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit-index")
}

impl AuditIndex {
    /// Opens the index in `dir` (rebuilding it when it cannot be trusted) and starts the
    /// indexer thread, which catches up with `store` and then follows it.
    pub fn start(dir: &Path, store: Store) -> Result<Arc<AuditIndex>, IndexError> {
        let fields = Fields::new();
        let (index, indexed) = indexer::open_or_rebuild(dir, &fields, &store)?;
        let reader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()?;
        let status = Arc::new(IndexStatus::new(indexed));
        let this = Arc::new(AuditIndex {
            fields,
            index,
            reader,
            status,
            dir: dir.to_path_buf(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            thread: std::sync::Mutex::new(None),
        });
        let handle = indexer::spawn(this.clone(), store)?;
        if let Ok(mut t) = this.thread.lock() {
            *t = Some(handle);
        }
        Ok(this)
    }

    /// Stops the indexer after it commits what it has, and waits for it: its handle on the
    /// store must be gone before the server closes the data file (redb marks a file closed
    /// cleanly only when its last handle is dropped).
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.status.poke();
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn status(&self) -> &IndexStatus {
        &self.status
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits (up to `timeout`) until the index covers every entry up to `seq`, asking the
    /// indexer to commit at once rather than at its next interval. True when it does.
    pub fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        self.status.wait_for(seq, timeout)
    }

    /// Parses and compiles a search-language query.
    pub fn parse(&self, q: &str, now_ms: i64) -> Result<Box<dyn Query>, CompileError> {
        let ast = query::parse(q, now_ms).map_err(|e| CompileError(e.to_string()))?;
        let analyzer = self
            .index
            .tokenizer_for_field(self.fields.text)
            .map_err(|e| CompileError(e.to_string()))?;
        compile::Compiler {
            fields: &self.fields,
            analyzer,
        }
        .ast(&ast)
    }

    pub fn filter(&self, f: &crate::store::AuditFilter) -> Box<dyn Query> {
        compile::filter(&self.fields, f)
    }

    pub fn search(&self, s: Search<'_>) -> Result<Hits, IndexError> {
        let (before, after) = match (s.sort, s.cursor) {
            (Sort::NewestFirst, Some(c)) => (Some(c), None),
            (Sort::OldestFirst, Some(c)) => (None, Some(c)),
            (_, None) => (None, None),
        };
        let searcher = self.reader.searcher();
        // `total` counts the query's matches, not what is left after the cursor: the same on
        // every page.
        let whole = (s.count && s.cursor.is_some()).then(|| {
            compile::restrict(
                &self.fields,
                s.query.box_clone(),
                s.visible_orgs,
                None,
                None,
            )
        });
        let query = compile::restrict(&self.fields, s.query, s.visible_orgs, before, after);
        let limit = s.limit.max(1);
        let page = collect::SeqPage {
            keep: s.offset.saturating_add(limit),
            newest_first: s.sort == Sort::NewestFirst,
        };
        let (best, hits) = searcher.search(&query, &page)?;
        let total = match &whole {
            Some(w) => Some(searcher.search(w, &Count)?),
            None => s.count.then_some(hits),
        };
        let seqs = best.into_iter().skip(s.offset).take(limit).collect();
        Ok(Hits { seqs, total })
    }

    /// Bytes the index occupies on disk.
    pub fn size_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }

    fn reload(&self) -> Result<(), IndexError> {
        self.reader.reload()?;
        Ok(())
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Rebuilds the index of `data_dir` from its audit table, offline (`portcullis reindex`).
/// Returns the number of entries indexed.
pub fn reindex(data_dir: &Path, store: &Store) -> Result<u64, IndexError> {
    let dir = index_dir(data_dir);
    let fields = Fields::new();
    indexer::rebuild(&dir, &fields, store)
}
