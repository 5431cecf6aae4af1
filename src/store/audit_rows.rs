//! The audit log's rows across its two tables (`audit_v1` from schemas 1–2, `audit_v2` since),
//! the retention checkpoint, and the scope an entry is given when it is written.
//!
//! One chain runs through both tables: sequence numbers continue, and every entry names the
//! hash of the stored bytes of the one before, whichever table holds it.

use super::{StoreError, codec, tables};
use crate::audit::{Entry, EntryV1, Within};
use crate::store::{OrgRecord, TeamRecord};
use redb::{ReadTransaction, ReadableTable, TableError, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::ops::{Bound, RangeBounds};

/// Which record layout a stored entry has (which table it came from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    V1,
    V2,
}

pub fn decode(bytes: &[u8], layout: Layout) -> Result<Entry, StoreError> {
    match layout {
        Layout::V1 => codec::decode::<EntryV1>(bytes).map(Entry::from),
        Layout::V2 => codec::decode::<Entry>(bytes),
    }
}

/// Where the chain continues after retention pruned its beginning: the last pruned entry and
/// its hash (the first kept entry must name it), and the audit entry that recorded the pruning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub through_seq: u64,
    pub through_hash: String,
    pub pruned_at_ms: i64,
    pub recorded_by_seq: u64,
}

pub const CHECKPOINT_KEY: &str = "pruned";

/// A raw row: sequence number, stored bytes, and their layout.
pub type RawRow = (u64, Vec<u8>, Layout);

/// The audit tables of one read transaction.
pub struct AuditRows {
    v1: Option<redb::ReadOnlyTable<u64, &'static [u8]>>,
    v2: Option<redb::ReadOnlyTable<u64, &'static [u8]>>,
}

fn open_optional(
    txn: &ReadTransaction,
    def: redb::TableDefinition<u64, &'static [u8]>,
) -> Result<Option<redb::ReadOnlyTable<u64, &'static [u8]>>, StoreError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl AuditRows {
    pub fn open(txn: &ReadTransaction) -> Result<AuditRows, StoreError> {
        Ok(AuditRows {
            v1: open_optional(txn, tables::AUDIT_V1)?,
            v2: open_optional(txn, tables::AUDIT)?,
        })
    }

    pub fn raw(&self, seq: u64) -> Result<Option<RawRow>, StoreError> {
        for (table, layout) in [(&self.v2, Layout::V2), (&self.v1, Layout::V1)] {
            if let Some(t) = table
                && let Some(v) = t.get(seq)?
            {
                return Ok(Some((seq, v.value().to_vec(), layout)));
            }
        }
        Ok(None)
    }

    pub fn get(&self, seq: u64) -> Result<Option<Entry>, StoreError> {
        self.raw(seq)?
            .map(|(_, bytes, layout)| decode(&bytes, layout))
            .transpose()
    }

    /// Rows in `range`, in sequence order (or reversed): the old table's, then the new one's.
    pub fn range<'a>(
        &'a self,
        range: impl RangeBounds<u64>,
        reverse: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<RawRow, StoreError>> + 'a>, StoreError> {
        let lo = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(&e) => e,
            Bound::Excluded(&e) => match e.checked_sub(1) {
                Some(e) => e,
                None => return Ok(Box::new(std::iter::empty())),
            },
            Bound::Unbounded => u64::MAX,
        };
        if lo > hi {
            return Ok(Box::new(std::iter::empty()));
        }
        let rows = |table: &'a Option<redb::ReadOnlyTable<u64, &'static [u8]>>,
                    layout: Layout|
         -> Result<
            Box<dyn DoubleEndedIterator<Item = Result<RawRow, StoreError>> + 'a>,
            StoreError,
        > {
            Ok(match table {
                Some(t) => Box::new(t.range(lo..=hi)?.map(move |row| {
                    row.map(|(k, v)| (k.value(), v.value().to_vec(), layout))
                        .map_err(StoreError::from)
                })),
                None => Box::new(std::iter::empty()),
            })
        };
        let old = rows(&self.v1, Layout::V1)?;
        let new = rows(&self.v2, Layout::V2)?;
        Ok(if reverse {
            Box::new(new.rev().chain(old.rev()))
        } else {
            Box::new(old.chain(new))
        })
    }

    /// Decoded entries in `range`.
    pub fn entries<'a>(
        &'a self,
        range: impl RangeBounds<u64>,
        reverse: bool,
    ) -> Result<impl Iterator<Item = Result<Entry, StoreError>> + 'a, StoreError> {
        Ok(self
            .range(range, reverse)?
            .map(|row| row.and_then(|(_, bytes, layout)| decode(&bytes, layout))))
    }

    /// The oldest entry still stored (pruning removes from the front).
    pub fn first_seq(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .range(.., false)?
            .next()
            .transpose()?
            .map(|(s, _, _)| s))
    }
}

pub fn checkpoint(txn: &ReadTransaction) -> Result<Option<Checkpoint>, StoreError> {
    let t = match txn.open_table(tables::AUDIT_CHECKPOINT) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let found = t.get(CHECKPOINT_KEY)?;
    found.map(|v| codec::decode(v.value())).transpose()
}

/// Organisation trees can be at most this deep; a longer parent walk means a cycle in damaged
/// data and stops rather than loops.
const MAX_DEPTH: usize = 64;

/// Turns the organisations and teams a change names into its scope: every organisation the
/// object sat in before or after the change, each with its ancestors, root first. `before` is
/// the file as it was when the transaction began (an organisation deleted or moved in this
/// transaction is still found there); `txn` is the transaction itself (one created in it).
pub fn scope_of(
    within: &Within,
    txn: &WriteTransaction,
    before: Option<&ReadTransaction>,
) -> Result<Vec<String>, StoreError> {
    if within.orgs.is_empty() && within.teams.is_empty() {
        return Ok(Vec::new());
    }
    let now_teams = txn.open_table(tables::TEAMS)?;
    let now_orgs = txn.open_table(tables::ORGS)?;
    let old_teams = before.map(|r| r.open_table(tables::TEAMS)).transpose()?;
    let old_orgs = before.map(|r| r.open_table(tables::ORGS)).transpose()?;

    let mut direct = within.orgs.clone();
    for team in &within.teams {
        let mut found = Vec::new();
        found.push(team_org(&now_teams, team)?);
        if let Some(t) = &old_teams {
            found.push(team_org(t, team)?);
        }
        for org in found.into_iter().flatten() {
            if !direct.contains(&org) {
                direct.push(org);
            }
        }
    }
    let mut scope: Vec<String> = Vec::new();
    for org in &direct {
        let mut paths = vec![org_path(&now_orgs, org)?];
        if let Some(t) = &old_orgs {
            paths.push(org_path(t, org)?);
        }
        for path in paths {
            for id in path {
                if !scope.contains(&id) {
                    scope.push(id);
                }
            }
        }
    }
    Ok(scope)
}

fn team_org(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    team: &str,
) -> Result<Option<String>, StoreError> {
    let found = t.get(team)?;
    Ok(match found {
        Some(v) => codec::decode::<TeamRecord>(v.value())?.organization_id,
        None => None,
    })
}

/// `org` and its ancestors, root first (just `org` when the table does not hold it).
fn org_path(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    org: &str,
) -> Result<Vec<String>, StoreError> {
    let mut path = vec![org.to_string()];
    let mut at = org.to_string();
    while path.len() < MAX_DEPTH {
        let found = t.get(at.as_str())?;
        let parent = match found {
            Some(v) => codec::decode::<OrgRecord>(v.value())?.parent_id,
            None => None,
        };
        match parent {
            Some(p) if !path.contains(&p) => {
                path.push(p.clone());
                at = p;
            }
            _ => break,
        }
    }
    path.reverse();
    Ok(path)
}
