//! Reading the audit table: one entry, a filtered page (newest or oldest first), and the chain
//! head. Entries are never changed through here — there is no write path but the store's commit.

use super::audit_rows::AuditRows;
use super::{Store, StoreError, tables};
use crate::audit::Entry;
use redb::ReadableTable;

/// What a listing may filter on (LiteLLM's `/audit` parameters).
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub changed_by: Option<String>,
    pub changed_by_api_key: Option<String>,
    pub action: Option<String>,
    pub table_name: Option<String>,
    pub object_id: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// The organisations whose subtrees the reader may see; `None` is everything.
    pub visible_orgs: Option<Vec<String>>,
}

impl AuditFilter {
    fn matches(&self, e: &Entry) -> bool {
        let c = &e.change;
        self.action.as_ref().is_none_or(|a| &c.action == a)
            && self.table_name.as_ref().is_none_or(|t| &c.table_name == t)
            && self.object_id.as_ref().is_none_or(|o| &c.object_id == o)
            && self.start_ms.is_none_or(|s| e.timestamp_ms >= s)
            && self.end_ms.is_none_or(|t| e.timestamp_ms <= t)
            && self
                .changed_by
                .as_ref()
                .is_none_or(|who| e.actor.changed_by() == *who)
            && self
                .changed_by_api_key
                .as_ref()
                .is_none_or(|k| e.actor.api_key() == Some(k.as_str()))
            && self
                .visible_orgs
                .as_ref()
                .is_none_or(|orgs| e.scope.iter().any(|o| orgs.contains(o)))
    }
}

pub struct AuditPage {
    pub entries: Vec<Entry>,
    pub total: usize,
}

impl Store {
    pub fn audit_entry(&self, seq: u64) -> Result<Option<Entry>, StoreError> {
        let txn = self.read()?;
        AuditRows::open(&txn)?.get(seq)
    }

    /// The entries with these sequence numbers, in the order given (missing ones — pruned —
    /// are left out).
    pub fn audit_entries_by_seq(&self, seqs: &[u64]) -> Result<Vec<Entry>, StoreError> {
        let txn = self.read()?;
        let rows = AuditRows::open(&txn)?;
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if let Some(e) = rows.get(seq)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Entries matching `filter`, `page` (from 1) of `page_size`, newest first unless
    /// `oldest_first`. Scans the table (the search index will serve large histories).
    pub fn audit_page(
        &self,
        filter: &AuditFilter,
        page: usize,
        page_size: usize,
        oldest_first: bool,
    ) -> Result<AuditPage, StoreError> {
        let txn = self.read()?;
        let rows = AuditRows::open(&txn)?;
        let skip = page.saturating_sub(1).saturating_mul(page_size);
        let mut total = 0usize;
        let mut entries = Vec::new();
        for e in rows.entries(.., !oldest_first)? {
            let e = e?;
            if filter.matches(&e) {
                if total >= skip && entries.len() < page_size {
                    entries.push(e);
                }
                total += 1;
            }
        }
        Ok(AuditPage { entries, total })
    }

    /// The stored hash of entry `seq` (`None` if there is no such entry, e.g. pruned).
    pub fn audit_hash(&self, seq: u64) -> Result<Option<String>, StoreError> {
        let txn = self.read()?;
        let t = txn.open_table(tables::AUDIT_HASHES)?;
        let found = t.get(seq)?;
        Ok(found.map(|v| v.value().to_string()))
    }

    /// The newest entry's sequence number and hash (all zeros before the first entry).
    pub fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let txn = self.read()?;
        let t = txn.open_table(tables::AUDIT_HASHES)?;
        Ok(match t.last()? {
            Some((k, v)) => (k.value(), v.value().to_string()),
            None => (0, "0".repeat(64)),
        })
    }
}
