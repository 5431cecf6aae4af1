//! The spend-log queue and the flusher that persists logs and changed counters in batches.
//!
//! The request path only ever calls [`SpendQueue::try_push`], which never waits: when the
//! store falls behind, rows are dropped and counted rather than slowing requests down. The
//! flusher is the only writer of the usage tables.

use super::Ledger;
use crate::store::Store;
use crate::store::usage::{CounterRow, SpendLogRow};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Spend-log rows the queue holds before it starts dropping them.
pub const QUEUE_CAPACITY: usize = 65_536;
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Rows that trigger a flush before the interval is up.
const FLUSH_ROWS: usize = 2_048;
/// Rows kept across failed flushes; beyond it the flusher stops taking rows and the queue
/// fills up and drops (and counts) them.
const MAX_PENDING_ROWS: usize = QUEUE_CAPACITY;
/// Buffers the rows are spread over, so request threads rarely meet on one lock.
const SHARDS: usize = 16;

/// The sending side, cheap to clone into every request handler.
///
/// Pushing wakes nobody: the flusher comes by on its interval (or when many rows wait). A
/// channel would wake the flusher's thread for every request — a cross-thread wake-up per
/// call, which costs more CPU than the rest of the accounting together.
#[derive(Clone)]
pub struct SpendQueue {
    inner: Arc<Shared>,
}

/// The flusher's side of the queue.
pub struct SpendReceiver {
    inner: Arc<Shared>,
}

struct Shared {
    shards: Vec<Mutex<Vec<SpendLogRow>>>,
    len: AtomicUsize,
    capacity: usize,
    dropped: AtomicU64,
    closed: AtomicBool,
    /// Rung once when the queue reaches [`FLUSH_ROWS`], not per row.
    nudge: Notify,
}

thread_local! {
    /// Each thread keeps to one shard (assigned round-robin), so its pushes do not contend.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

impl SpendQueue {
    pub fn new(capacity: usize) -> (SpendQueue, SpendReceiver) {
        let inner = Arc::new(Shared {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            nudge: Notify::new(),
        });
        (
            SpendQueue {
                inner: inner.clone(),
            },
            SpendReceiver { inner },
        )
    }

    /// Queues a row without waiting. Returns false (and counts the row) when it was dropped
    /// because the queue is full or the flusher has stopped.
    pub fn try_push(&self, row: SpendLogRow) -> bool {
        let q = &self.inner;
        let before = q.len.fetch_add(1, Ordering::Relaxed);
        if before >= q.capacity || q.closed.load(Ordering::Relaxed) {
            q.len.fetch_sub(1, Ordering::Relaxed);
            q.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let shard = SHARD.with(|s| *s);
        q.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(row);
        if before + 1 == FLUSH_ROWS {
            q.nudge.notify_one();
        }
        true
    }

    /// Rows dropped since start-up (for metrics).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl SpendReceiver {
    /// Moves up to `room` queued rows into `out`, oldest shard contents first.
    fn drain(&self, out: &mut Vec<SpendLogRow>, room: usize) {
        let q = &self.inner;
        for shard in &q.shards {
            if out.len() >= room {
                break;
            }
            let mut rows = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let take = rows.len().min(room - out.len());
            out.extend(rows.drain(..take));
            q.len.fetch_sub(take, Ordering::Relaxed);
        }
    }

    fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
    }
}

/// What the next commit will write: kept across failed attempts.
#[derive(Default)]
struct Pending {
    deleted: Vec<String>,
    counters: HashMap<String, CounterRow>,
    logs: Vec<SpendLogRow>,
}

/// Persists spend logs and changed counters every `interval` or whenever [`FLUSH_ROWS`] logs
/// are waiting, until `shutdown` turns true (or its sender goes away); then drains the queue
/// and flushes one last time. Store failures are logged and the batch is retried next time.
pub async fn run_flusher(
    store: Store,
    ledger: Arc<Ledger>,
    rx: SpendReceiver,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // tokio's interval refuses a zero period.
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Pending::default();
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = rx.inner.nudge.notified() => ticker.reset(),
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        }
        rx.drain(&mut pending.logs, MAX_PENDING_ROWS);
        flush(&store, &ledger, &mut pending).await;
    }
    rx.close();
    rx.drain(&mut pending.logs, usize::MAX);
    flush(&store, &ledger, &mut pending).await;
    if !pending.logs.is_empty() || !pending.counters.is_empty() || !pending.deleted.is_empty() {
        tracing::warn!(
            logs = pending.logs.len(),
            counters = pending.counters.len(),
            "usage not persisted at shutdown"
        );
    }
}

/// One commit of everything pending plus the ledger's changes since the last flush.
async fn flush(store: &Store, ledger: &Ledger, pending: &mut Pending) {
    for key in ledger.take_forgotten() {
        pending.counters.remove(&key);
        pending.deleted.push(key);
    }
    pending.counters.extend(ledger.dirty_rows());
    if pending.deleted.is_empty() && pending.counters.is_empty() && pending.logs.is_empty() {
        return;
    }
    let deleted = std::mem::take(&mut pending.deleted);
    // Usually empty; kept so a crashed writer cannot leave a deleted subject's counter behind.
    let deleted_again = deleted.clone();
    let counters: Vec<(String, CounterRow)> = pending.counters.drain().collect();
    let logs = std::mem::take(&mut pending.logs);
    let writer = store.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let result = writer.write_usage(&deleted, &counters, &logs);
        (result, deleted, counters, logs)
    })
    .await;
    match outcome {
        Ok((Ok(()), ..)) => {}
        Ok((Err(e), deleted, counters, logs)) => {
            tracing::warn!(error = %e, logs = logs.len(), counters = counters.len(),
                "could not persist usage; retrying with the next flush");
            // Nothing was added to `pending` meanwhile (this task owns it), so the batch goes
            // back as it was; rows queued since are appended after it, keeping time order.
            pending.deleted = deleted;
            pending.counters = counters.into_iter().collect();
            pending.logs = logs;
        }
        Err(e) => {
            // The rows went down with the task. The counters are still in memory: mark every
            // meter changed so the next flush writes them again; only the logs are lost.
            ledger.mark_all_dirty();
            pending.deleted = deleted_again;
            tracing::warn!(error = %e, "the usage writer failed; this batch of spend logs is lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Level, Limits, Subject};
    use crate::store::usage::SpendLogFilter;

    const T0: i64 = 1_700_000_000_000;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_flusher_persists_logs_and_counters_and_drains_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("f.redb")).unwrap();
        let ledger = Arc::new(Ledger::new());
        let (queue, rx) = SpendQueue::new(16);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let flusher = tokio::spawn(run_flusher(
            store.clone(),
            ledger.clone(),
            rx,
            std::time::Duration::from_secs(3600),
            stopped,
        ));
        let m = ledger.meter(&Subject::Key("k".into()));
        let gone = ledger.meter(&Subject::Key("gone".into()));
        let limits = Limits::default();
        for meter in [&m, &gone] {
            let level = [Level {
                meter,
                limits: &limits,
            }];
            let _ = ledger
                .admit(&level, 0.0, T0)
                .map(|a| a.settle_at(0.25, 0, T0));
        }
        for i in 0..20 {
            queue.try_push(SpendLogRow {
                request_id: format!("r{i}"),
                start_ms: T0 + i,
                ..SpendLogRow::default()
            });
        }
        // The 16-row queue overflowed (the flusher may have taken some rows already).
        assert!(queue.dropped() <= 4);
        let accepted = 20 - queue.dropped();
        ledger.forget(&Subject::Key("gone".into()));
        stop.send(true).unwrap();
        flusher.await.unwrap();

        let logs = store
            .spend_logs(&SpendLogFilter::default(), 1, 100)
            .unwrap();
        assert_eq!(logs.total, accepted);
        assert_eq!(
            store.load_counters().unwrap(),
            [(
                "key:k".to_string(),
                CounterRow {
                    spend: 0.25,
                    period_start_ms: 0
                }
            )]
        );
        // After shutdown the queue refuses and counts.
        assert!(!queue.try_push(SpendLogRow::default()));
        assert_eq!(queue.dropped(), 20 - accepted + 1);
    }
}
