//! Usage records: spend counters and spend log rows. These are not administrative changes, so
//! they are written by their own batched commit (`Store::save_usage`), which can touch only the
//! usage tables and nothing an audit entry must accompany.

use super::{Store, StoreError, codec, tables};
use redb::{ReadableTable, TableError};
use serde::{Deserialize, Serialize};

/// One meter's spend in its current budget period (`period_start_ms` 0: no period started).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterRow {
    pub spend: f64,
    pub period_start_ms: i64,
}

/// One finished (or failed) request, LiteLLM's `SpendLogs` row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendLogRow {
    pub request_id: String,
    /// `acompletion`, `aembedding`, `atext_completion`, `anthropic_messages`.
    pub call_type: String,
    /// sha256 hex of the key (LiteLLM's `token`), never the secret.
    pub api_key: String,
    pub key_alias: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub organization_id: Option<String>,
    pub end_user: Option<String>,
    /// The model name the client asked for (the model group).
    pub model: String,
    /// The deployment that served it.
    pub model_id: String,
    pub api_base: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub spend: f64,
    pub start_ms: i64,
    pub end_ms: i64,
    /// `success` or `failure`.
    pub status: String,
    pub stream: bool,
}

/// Which spend logs to list. Every `Some` must match; `organization_ids` is a scope (the row's
/// organisation must be one of them, so rows without one are excluded).
#[derive(Clone, Debug, Default)]
pub struct SpendLogFilter {
    /// Inclusive bounds on the request's start time.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub request_id: Option<String>,
    pub api_key: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub organization_ids: Option<Vec<String>>,
    pub end_user: Option<String>,
    pub model: Option<String>,
    pub status: Option<String>,
}

impl SpendLogFilter {
    fn matches(&self, r: &SpendLogRow) -> bool {
        fn eq(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        fn eq_opt(want: &Option<String>, have: &Option<String>) -> bool {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        }
        eq(&self.request_id, &r.request_id)
            && eq(&self.api_key, &r.api_key)
            && eq_opt(&self.user_id, &r.user_id)
            && eq_opt(&self.team_id, &r.team_id)
            && eq_opt(&self.end_user, &r.end_user)
            && eq(&self.model, &r.model)
            && eq(&self.status, &r.status)
            && self.organization_ids.as_ref().is_none_or(|allowed| {
                r.organization_id
                    .as_ref()
                    .is_some_and(|o| allowed.contains(o))
            })
    }
}

/// One page of spend logs, newest first, and how many rows matched in all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpendLogPage {
    pub rows: Vec<SpendLogRow>,
    pub total: u64,
}

fn missing_is_none<T>(opened: Result<T, TableError>) -> Result<Option<T>, StoreError> {
    match opened {
        Ok(t) => Ok(Some(t)),
        // The usage tables are created by their first save; before it there is nothing.
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Writes counters (replacing each subject's row) and appends spend logs, in one commit.
    pub fn save_usage(
        &self,
        counters: &[(String, CounterRow)],
        logs: &[SpendLogRow],
    ) -> Result<(), StoreError> {
        self.write_usage(&[], counters, logs)
    }

    /// [`Store::save_usage`] that first removes the counters of deleted subjects, in the same
    /// commit: a subject deleted and re-created within one batch ends with its new counter.
    pub fn write_usage(
        &self,
        deleted: &[String],
        counters: &[(String, CounterRow)],
        logs: &[SpendLogRow],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| {
            if let redb::TransactionError::Storage(s) = &e {
                self.note_storage_failure(s);
            }
            StoreError::from(e)
        })?;
        {
            let mut table = txn.open_table(tables::SPEND_COUNTERS)?;
            for key in deleted {
                table.remove(key.as_str())?;
            }
            for (key, row) in counters {
                table.insert(key.as_str(), codec::encode(row)?.as_slice())?;
            }
        }
        {
            let mut table = txn.open_table(tables::SPEND_LOGS)?;
            // The key this batch stored last: under load dozens of rows share a millisecond,
            // and the next of them needs no look-up.
            let mut last: Option<(u64, u64)> = None;
            for row in logs {
                // Rows of the same millisecond are told apart by a sequence continuing from
                // the last one stored (rows of this batch included: redb reads its own writes).
                let ms = u64::try_from(row.start_ms).unwrap_or(0);
                let seq = match last {
                    Some((last_ms, last_seq)) if last_ms == ms => last_seq.saturating_add(1),
                    _ => match table.range((ms, 0)..=(ms, u64::MAX))?.next_back() {
                        Some(stored) => stored?.0.value().1.saturating_add(1),
                        None => 0,
                    },
                };
                table.insert((ms, seq), codec::encode(row)?.as_slice())?;
                last = Some((ms, seq));
            }
        }
        txn.commit().map_err(|e| {
            if let redb::CommitError::Storage(s) = &e {
                self.note_storage_failure(s);
            }
            StoreError::from(e)
        })
    }

    /// Every persisted counter, for [`crate::limits::Ledger::restore`] at start-up.
    pub fn load_counters(&self) -> Result<Vec<(String, CounterRow)>, StoreError> {
        let txn = self.read()?;
        let Some(table) = missing_is_none(txn.open_table(tables::SPEND_COUNTERS))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), codec::decode(v.value())?));
        }
        Ok(out)
    }

    /// Spend logs matching `filter`, newest first; `page` counts from 1. Scans the time range
    /// (the whole table without bounds), so callers should bound it for large stores.
    pub fn spend_logs(
        &self,
        filter: &SpendLogFilter,
        page: usize,
        page_size: usize,
    ) -> Result<SpendLogPage, StoreError> {
        self.spend_logs_within(filter, |_| true, page, page_size)
    }

    /// [`Store::spend_logs`] limited to rows `within` accepts (a caller's scope, which may be a
    /// union a filter cannot express). Applied during the scan, so totals and pages count only
    /// visible rows.
    pub fn spend_logs_within(
        &self,
        filter: &SpendLogFilter,
        within: impl Fn(&SpendLogRow) -> bool,
        page: usize,
        page_size: usize,
    ) -> Result<SpendLogPage, StoreError> {
        let page_size = page_size.max(1);
        let skip = page.max(1).saturating_sub(1).saturating_mul(page_size);
        let mut out = SpendLogPage::default();
        let from = filter
            .start_ms
            .map_or(0, |ms| u64::try_from(ms).unwrap_or(0));
        let to = filter
            .end_ms
            .map_or(u64::MAX, |ms| u64::try_from(ms).unwrap_or(0));
        if from > to {
            return Ok(out);
        }
        let txn = self.read()?;
        let Some(table) = missing_is_none(txn.open_table(tables::SPEND_LOGS))? else {
            return Ok(out);
        };
        for row in table.range((from, 0)..=(to, u64::MAX))?.rev() {
            let (_, v) = row?;
            let record: SpendLogRow = codec::decode(v.value())?;
            if !filter.matches(&record) || !within(&record) {
                continue;
            }
            if out.total >= skip as u64 && out.rows.len() < page_size {
                out.rows.push(record);
            }
            out.total += 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("u.redb")).unwrap();
        (dir, store)
    }

    fn log(id: &str, start_ms: i64, org: Option<&str>, status: &str) -> SpendLogRow {
        SpendLogRow {
            request_id: id.into(),
            call_type: "acompletion".into(),
            api_key: "ab12".into(),
            organization_id: org.map(str::to_string),
            model: "gpt-4o".into(),
            start_ms,
            end_ms: start_ms + 5,
            status: status.into(),
            spend: 0.01,
            ..SpendLogRow::default()
        }
    }

    #[test]
    fn counters_replace_and_delete() {
        let (_dir, store) = store();
        assert!(store.load_counters().unwrap().is_empty());
        let row = |spend| CounterRow {
            spend,
            period_start_ms: 7,
        };
        store
            .save_usage(
                &[("key:a".into(), row(1.0)), ("user:b".into(), row(2.0))],
                &[],
            )
            .unwrap();
        store
            .write_usage(
                &["user:b".into(), "key:a".into()],
                &[("key:a".into(), row(3.0))],
                &[],
            )
            .unwrap();
        assert_eq!(store.load_counters().unwrap(), [("key:a".into(), row(3.0))]);
    }

    #[test]
    fn logs_list_newest_first_with_filters_and_pages() {
        let (_dir, store) = store();
        assert_eq!(
            store
                .spend_logs(&SpendLogFilter::default(), 1, 10)
                .unwrap()
                .total,
            0
        );
        // Three rows in the same millisecond, across two batches, keep distinct keys.
        let first = [
            log("r1", 100, Some("o1"), "success"),
            log("r2", 100, None, "success"),
        ];
        store.save_usage(&[], &first).unwrap();
        let second = [
            log("r3", 100, Some("o2"), "failure"),
            log("r4", 200, Some("o1"), "success"),
            log("r5", 300, Some("o1"), "success"),
        ];
        store.save_usage(&[], &second).unwrap();

        let all = store.spend_logs(&SpendLogFilter::default(), 1, 10).unwrap();
        let ids: Vec<&str> = all.rows.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["r5", "r4", "r3", "r2", "r1"]);
        assert_eq!(all.total, 5);

        let page2 = store.spend_logs(&SpendLogFilter::default(), 2, 2).unwrap();
        let ids: Vec<&str> = page2.rows.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!((ids.as_slice(), page2.total), (["r3", "r2"].as_slice(), 5));

        let scoped = SpendLogFilter {
            organization_ids: Some(vec!["o1".into()]),
            start_ms: Some(100),
            end_ms: Some(200),
            ..SpendLogFilter::default()
        };
        let got = store.spend_logs(&scoped, 1, 10).unwrap();
        let ids: Vec<&str> = got.rows.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["r4", "r1"]);

        let failed = SpendLogFilter {
            status: Some("failure".into()),
            ..SpendLogFilter::default()
        };
        assert_eq!(
            store.spend_logs(&failed, 1, 10).unwrap().rows[0].request_id,
            "r3"
        );
        let by_id = SpendLogFilter {
            request_id: Some("r2".into()),
            user_id: Some("nobody".into()),
            ..SpendLogFilter::default()
        };
        assert_eq!(store.spend_logs(&by_id, 1, 10).unwrap().total, 0);
        let backwards = SpendLogFilter {
            start_ms: Some(300),
            end_ms: Some(100),
            ..SpendLogFilter::default()
        };
        assert_eq!(store.spend_logs(&backwards, 1, 10).unwrap().total, 0);
    }
}
