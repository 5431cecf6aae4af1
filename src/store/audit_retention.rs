//! Audit retention: removing the oldest entries without making the rest unverifiable.
//!
//! A pruning run deletes entries older than the cut-off from the front of the chain, keeps a
//! checkpoint (the last removed entry's sequence number and hash — the first kept entry names
//! that hash), and records itself as an audit entry naming the same checkpoint, in the same
//! transaction. Moving the checkpoint to hide more deletions would then contradict a chained
//! entry, and the chain head (anchored elsewhere) covers that entry.

use super::audit_rows::{AuditRows, CHECKPOINT_KEY, Checkpoint, Layout};
use super::{Store, StoreError, codec, tables};
use crate::audit::{Actor, Change, Origin};
use redb::ReadableTable;

/// What one pruning transaction removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub first_seq: u64,
    pub through_seq: u64,
    pub entries: u64,
    /// The sequence number of the entry that recorded the pruning.
    pub recorded_by_seq: u64,
}

impl Store {
    /// Removes up to `max` of the oldest entries written before `cutoff_ms` (oldest first; it
    /// stops at the first entry that is new enough, so a clock step back never opens a gap).
    /// `None` when there was nothing to prune. Callers loop until it returns `None`.
    pub fn prune_audit(&self, cutoff_ms: i64, max: usize) -> Result<Option<Pruned>, StoreError> {
        // Find the victims from a read snapshot first: a run with nothing to do writes nothing.
        let victims: Vec<(u64, Layout)> = {
            let txn = self.read()?;
            let rows = AuditRows::open(&txn)?;
            let mut out = Vec::new();
            for row in rows.range(.., false)? {
                let (seq, bytes, layout) = row?;
                let entry = super::audit_rows::decode(&bytes, layout)?;
                if entry.timestamp_ms >= cutoff_ms || out.len() >= max {
                    break;
                }
                out.push((seq, layout));
            }
            out
        };
        let (Some(&(first_seq, _)), Some(&(through_seq, _))) = (victims.first(), victims.last())
        else {
            return Ok(None);
        };
        let origin = Origin {
            request_id: format!("retention-{}", uuid::Uuid::now_v7()),
            ..Origin::default()
        };
        self.write(&Actor::System, &origin, |tx| {
            let mut hashes = tx.txn.open_table(tables::AUDIT_HASHES)?;
            let head = hashes.last()?.map(|(k, _)| k.value()).unwrap_or(0);
            let through_hash = hashes
                .get(through_seq)?
                .map(|v| v.value().to_string())
                .ok_or_else(|| {
                    StoreError::Codec(format!("audit entry {through_seq} has no stored hash"))
                })?;
            {
                let mut v1 = match tx.txn.open_table(tables::AUDIT_V1) {
                    Ok(t) => Some(t),
                    Err(redb::TableError::TableDoesNotExist(_)) => None,
                    Err(e) => return Err(e.into()),
                };
                let mut v2 = tx.txn.open_table(tables::AUDIT)?;
                for &(seq, layout) in &victims {
                    match layout {
                        Layout::V1 => {
                            if let Some(t) = v1.as_mut() {
                                t.remove(seq)?;
                            }
                        }
                        Layout::V2 => {
                            v2.remove(seq)?;
                        }
                    }
                    hashes.remove(seq)?;
                }
            }
            drop(hashes);
            let recorded_by_seq = head + 1;
            let checkpoint = Checkpoint {
                through_seq,
                through_hash: through_hash.clone(),
                pruned_at_ms: crate::types::now_ms(),
                recorded_by_seq,
            };
            tx.txn
                .open_table(tables::AUDIT_CHECKPOINT)?
                .insert(CHECKPOINT_KEY, codec::encode(&checkpoint)?.as_slice())?;
            tx.dirty = true;
            tx.audit(Change {
                action: "pruned".into(),
                table_name: "audit".into(),
                object_id: format!("{first_seq}-{through_seq}"),
                before_value: String::new(),
                updated_values: serde_json::json!({
                    "first_seq": first_seq,
                    "through_seq": through_seq,
                    "through_hash": through_hash,
                    "entries": victims.len(),
                    "older_than": crate::types::ms_to_rfc3339(cutoff_ms),
                })
                .to_string(),
                within: Default::default(),
            });
            Ok(Some(Pruned {
                first_seq,
                through_seq,
                entries: victims.len() as u64,
                recorded_by_seq,
            }))
        })
    }

    /// The retention checkpoint, if entries were ever pruned.
    pub fn audit_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let txn = self.read()?;
        super::audit_rows::checkpoint(&txn)
    }
}
