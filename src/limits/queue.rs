//! The spend-log queue and the flusher that persists logs and changed counters in batches.
//!
//! The request path only ever calls [`SpendQueue::try_push`], which never waits: when the
//! store falls behind, rows are dropped and counted rather than slowing requests down. The
//! flusher is the only writer of the usage tables.

use super::Ledger;
use crate::store::Store;
use crate::store::usage::{CounterRow, SpendLogRow};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Spend-log rows the queue holds before it starts dropping them.
pub const QUEUE_CAPACITY: usize = 65_536;
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Rows that trigger a flush before the interval is up.
const FLUSH_ROWS: usize = 1000;
/// Rows kept across failed flushes; beyond it the flusher stops taking rows and the queue
/// fills up and drops (and counts) them.
const MAX_PENDING_ROWS: usize = QUEUE_CAPACITY;

/// The sending side, cheap to clone into every request handler.
#[derive(Clone)]
pub struct SpendQueue {
    tx: mpsc::Sender<SpendLogRow>,
    dropped: Arc<AtomicU64>,
}

/// The flusher's side of the queue.
pub struct SpendReceiver {
    rx: mpsc::Receiver<SpendLogRow>,
}

impl SpendQueue {
    pub fn new(capacity: usize) -> (SpendQueue, SpendReceiver) {
        // tokio refuses a zero capacity; one is the smallest queue there is.
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let queue = SpendQueue {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (queue, SpendReceiver { rx })
    }

    /// Queues a row without waiting. Returns false (and counts the row) when it was dropped
    /// because the queue is full or the flusher has stopped.
    pub fn try_push(&self, row: SpendLogRow) -> bool {
        let sent = self.tx.try_send(row).is_ok();
        if !sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Rows dropped since start-up (for metrics).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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
    mut rx: SpendReceiver,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // tokio's interval refuses a zero period.
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Pending::default();
    let mut since_flush = 0usize;
    let mut queue_open = true;
    while !*shutdown.borrow_and_update() {
        let room = MAX_PENDING_ROWS.saturating_sub(pending.logs.len());
        tokio::select! {
            _ = ticker.tick() => {
                flush(&store, &ledger, &mut pending).await;
                since_flush = 0;
            }
            n = rx.rx.recv_many(&mut pending.logs, room.min(FLUSH_ROWS)), if queue_open && room > 0 => {
                // 0 only when every sender is gone: counters still need flushing until shutdown.
                queue_open = n > 0;
                since_flush += n;
                if since_flush >= FLUSH_ROWS {
                    flush(&store, &ledger, &mut pending).await;
                    since_flush = 0;
                    ticker.reset();
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    rx.rx.close();
    while let Ok(row) = rx.rx.try_recv() {
        pending.logs.push(row);
    }
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
