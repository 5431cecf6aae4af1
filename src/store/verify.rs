//! Checking a data file without trusting it: redb's own page checksums, every record decoding,
//! the indexes agreeing with the records they index, and the audit hash chain.
//!
//! The file itself is never opened for writing: the checks run on a snapshot (see
//! [`super::backup::snapshot`]), so a file from a newer release, or one a server is serving, is
//! left exactly as it was. The chain walk, [`audit_chain`], takes any read transaction, so a
//! live server can run it on its own store ([`Store::verify_audit_chain`]).

use super::audit_rows::{self, AuditRows, Checkpoint, Layout};
use super::backup::{self, BackupError};
use super::keys::{KeyRecord, KeyRecordV1};
use super::legacy::{TeamRecordV1, UserRecordV1, UserRecordV2};
use super::records::RecordTable;
use super::tenancy::{CustomerRecord, OrgRecord, TeamRecord, UserRecord};
use super::usage::{CounterRow, SpendLogRow};
use super::{FORMAT_MARKER, SCHEMA_VERSION, Store, StoreError, codec, tables};
use crate::audit::Entry;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, TableError, TableHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// The previous hash of the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Record problems listed in a report; the rest are counted.
const MAX_LISTED: usize = 20;

/// What is wrong with the first entry at which the chain breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The sequence has a gap, or an entry lost its bytes or its hash (deleted).
    Missing,
    /// The entry's bytes do not hash to its stored hash (changed after it was written).
    Modified,
    /// The entry hashes correctly but does not decode.
    Undecodable,
    /// The entry stored at this position says it is another one (reordered).
    Misplaced,
    /// The entry does not name the previous entry's hash (rewritten with its hash recomputed,
    /// or an entry before it was).
    Unlinked,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::Missing => "missing",
            BreakKind::Modified => "modified",
            BreakKind::Undecodable => "undecodable",
            BreakKind::Misplaced => "misplaced",
            BreakKind::Unlinked => "unlinked",
        }
    }
}

/// The first place the audit chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The sequence number of the first bad entry.
    pub seq: u64,
    pub kind: BreakKind,
    pub detail: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit entry {} is {}: {}",
            self.seq,
            self.kind.as_str(),
            self.detail
        )
    }
}

/// The last entry of an intact chain: recording it elsewhere is what makes a truncated tail
/// detectable later (the chain alone cannot show that its newest entries were cut off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Entries verified before the first break (all of them if there is none).
    pub verified: u64,
    /// The last verified entry.
    pub head: Option<ChainHead>,
    pub first_break: Option<ChainBreak>,
}

impl ChainReport {
    pub fn intact(&self) -> bool {
        self.first_break.is_none()
    }
}

type Rows<'a, V> = Box<dyn Iterator<Item = Result<(u64, V), StoreError>> + 'a>;

/// Walks the entries (`audit_v1`, then `audit_v2`) and `audit_hashes_v1` together, in
/// sequence order: each entry must be present in both, hash to its stored hash, decode, carry
/// its own sequence number, and name the previous entry's stored hash; sequence numbers start
/// at 1 — or, after retention pruned the oldest, right after the checkpoint, whose hash the
/// first kept entry must name and which the pruning's own entry must confirm — and have no
/// gaps. Stops at the first break.
pub fn audit_chain(txn: &ReadTransaction) -> Result<ChainReport, StoreError> {
    let entries = AuditRows::open(txn)?;
    let hashes = open_if_present(txn, tables::AUDIT_HASHES)?;
    let checkpoint = audit_rows::checkpoint(txn)?;
    let mut entry_rows = entries.range(.., false)?;
    let mut hash_rows: Rows<'_, String> = match &hashes {
        Some(t) => Box::new(t.iter()?.map(|row| {
            row.map(|(k, v)| (k.value(), v.value().to_string()))
                .map_err(StoreError::from)
        })),
        None => Box::new(std::iter::empty()),
    };
    let mut next_entry = entry_rows.next().transpose()?;
    let mut next_hash = hash_rows.next().transpose()?;
    let (mut expected, mut prev_hash) = match &checkpoint {
        Some(c) => (c.through_seq + 1, c.through_hash.clone()),
        None => (1, GENESIS.to_string()),
    };
    let mut report = ChainReport {
        verified: 0,
        head: None,
        first_break: None,
    };
    let mut confirmed = checkpoint.is_none();
    loop {
        let seq = match (&next_entry, &next_hash) {
            (None, None) => break,
            (Some((a, _, _)), None) => *a,
            (None, Some((b, _))) => *b,
            (Some((a, _, _)), Some((b, _))) => (*a).min(*b),
        };
        let bytes = match next_entry.take_if(|(k, _, _)| *k == seq) {
            Some((_, b, layout)) => {
                next_entry = entry_rows.next().transpose()?;
                Some((b, layout))
            }
            None => None,
        };
        let stored = match next_hash.take_if(|(k, _)| *k == seq) {
            Some((_, h)) => {
                next_hash = hash_rows.next().transpose()?;
                Some(h)
            }
            None => None,
        };
        let linked = link(
            expected,
            seq,
            bytes,
            stored,
            &prev_hash,
            checkpoint.as_ref(),
        );
        match linked.and_then(|(hash, entry)| {
            if let Some(c) = checkpoint.as_ref().filter(|c| c.recorded_by_seq == seq) {
                confirms(c, &entry)?;
                confirmed = true;
            }
            Ok(hash)
        }) {
            Ok(hash) => {
                report.verified += 1;
                report.head = Some(ChainHead {
                    seq,
                    hash: hash.clone(),
                });
                prev_hash = hash;
                expected += 1;
            }
            Err(b) => {
                report.first_break = Some(b);
                break;
            }
        }
    }
    if let (false, None, Some(c)) = (confirmed, &report.first_break, &checkpoint) {
        report.first_break = Some(ChainBreak {
            seq: c.recorded_by_seq,
            kind: BreakKind::Missing,
            detail: format!(
                "the retention checkpoint (entries through {}) names this entry as its record, \
                 but it is not in the log",
                c.through_seq
            ),
        });
    }
    Ok(report)
}

/// The pruning entry must name the checkpoint exactly: a checkpoint moved later (to hide
/// deleted entries) contradicts the chained record of the real one.
fn confirms(c: &Checkpoint, entry: &Entry) -> Result<(), ChainBreak> {
    let values: serde_json::Value =
        serde_json::from_str(&entry.change.updated_values).unwrap_or_default();
    let names_it = entry.change.action == "pruned"
        && values["through_seq"].as_u64() == Some(c.through_seq)
        && values["through_hash"].as_str() == Some(c.through_hash.as_str());
    if names_it {
        Ok(())
    } else {
        Err(ChainBreak {
            seq: entry.seq,
            kind: BreakKind::Unlinked,
            detail: format!(
                "the retention checkpoint says this entry recorded pruning through entry {}, \
                 but it records something else (the checkpoint was moved)",
                c.through_seq
            ),
        })
    }
}

/// Checks one position of the chain; the entry's stored hash if it holds.
fn link(
    expected: u64,
    seq: u64,
    bytes: Option<(Vec<u8>, Layout)>,
    stored: Option<String>,
    prev_hash: &str,
    checkpoint: Option<&Checkpoint>,
) -> Result<(String, Entry), ChainBreak> {
    let broken = |seq, kind, detail: String| ChainBreak { seq, kind, detail };
    if seq != expected {
        let detail = if expected == 1 {
            format!("the log starts at entry {seq}")
        } else if checkpoint.is_some_and(|c| c.through_seq + 1 == expected) {
            format!(
                "retention pruned the log through entry {}, but it continues at entry {seq}",
                expected - 1
            )
        } else {
            format!("entry {} is followed by entry {seq}", expected - 1)
        };
        return Err(broken(expected, BreakKind::Missing, detail));
    }
    let gone = |what: &str| broken(seq, BreakKind::Missing, format!("its {what} is gone"));
    let (bytes, layout) = bytes.ok_or_else(|| gone("entry (its hash is still stored)"))?;
    let stored = stored.ok_or_else(|| gone("stored hash (the entry is still there)"))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != stored {
        let detail = format!("its bytes hash to {actual}, but {stored} was stored");
        return Err(broken(seq, BreakKind::Modified, detail));
    }
    let entry = audit_rows::decode(&bytes, layout)
        .map_err(|e| broken(seq, BreakKind::Undecodable, e.to_string()))?;
    if entry.seq != seq {
        let detail = format!("the entry stored here is entry {}", entry.seq);
        return Err(broken(seq, BreakKind::Misplaced, detail));
    }
    if entry.prev_hash != prev_hash {
        let detail = if seq == 1 {
            format!(
                "the first entry names {} as its predecessor",
                entry.prev_hash
            )
        } else if checkpoint.is_some_and(|c| c.through_seq + 1 == seq) {
            format!(
                "it names {} as its predecessor, but the retention checkpoint says entry {} \
                 had hash {prev_hash}",
                entry.prev_hash,
                seq - 1
            )
        } else {
            format!(
                "it names {} as its predecessor, but entry {} is stored with hash {prev_hash} \
                 (one of the two was rewritten)",
                entry.prev_hash,
                seq - 1
            )
        };
        return Err(broken(seq, BreakKind::Unlinked, detail));
    }
    Ok((stored, entry))
}

impl Store {
    /// Walks the audit chain as of now (one read transaction; writers are not held up).
    pub fn verify_audit_chain(&self) -> Result<ChainReport, StoreError> {
        let txn = self.read()?;
        audit_chain(&txn)
    }
}

/// Why a data file could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no data file at {0} (missing or empty)")]
    NoDataFile(PathBuf),
    #[error(transparent)]
    Snapshot(#[from] BackupError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VerifyError {
    /// The command's exit status: 64 when the path given holds nothing, 1 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            VerifyError::NoDataFile(_) => 64,
            VerifyError::Snapshot(e) => e.exit_status(),
            VerifyError::Store(_) => 1,
        }
    }
}

/// What [`verify_file`] found.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub schema: u32,
    /// A server held the file: a consistent snapshot of it was checked.
    pub live: bool,
    /// Records decoded, per table.
    pub records: Vec<(String, u64)>,
    /// Records that do not decode and index rows that disagree with their records (the first
    /// [`MAX_LISTED`]); `problem_count` counts them all.
    pub problems: Vec<String>,
    pub problem_count: u64,
    /// Worth knowing, not damage (tables this binary does not know).
    pub notes: Vec<String>,
    pub chain: ChainReport,
}

impl FileReport {
    pub fn ok(&self) -> bool {
        self.problem_count == 0 && self.chain.intact()
    }
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: schema {}", self.path.display(), self.schema)?;
        if self.schema < SCHEMA_VERSION {
            write!(
                f,
                " (older: the next start migrates it to {SCHEMA_VERSION})"
            )?;
        }
        if self.live {
            write!(f, "; in use by a server, a consistent snapshot was checked")?;
        }
        writeln!(f)?;
        writeln!(f, "  redb integrity: ok (every page checksum verified)")?;
        for (table, n) in &self.records {
            writeln!(f, "  {table}: {n} records decoded")?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        for p in &self.problems {
            writeln!(f, "  problem: {p}")?;
        }
        let unlisted = self
            .problem_count
            .saturating_sub(self.problems.len() as u64);
        if unlisted > 0 {
            writeln!(f, "  ... and {unlisted} more problems")?;
        }
        match (&self.chain.head, &self.chain.first_break) {
            (_, Some(b)) => writeln!(
                f,
                "  audit chain: BROKEN after {} intact entries: {b}",
                self.chain.verified
            )?,
            (Some(h), None) => writeln!(
                f,
                "  audit chain: intact, {} entries, head entry {} sha256 {}",
                self.chain.verified, h.seq, h.hash
            )?,
            (None, None) => writeln!(f, "  audit chain: empty")?,
        }
        if self.ok() {
            write!(f, "ok")
        } else {
            let first = match (&self.chain.first_break, self.problems.first()) {
                (Some(b), _) => b.to_string(),
                (None, Some(p)) => p.clone(),
                (None, None) => "problems found".to_string(),
            };
            write!(f, "damaged: {first}")
        }
    }
}

/// Checks the data file at `path`, read-only: a snapshot of it is taken into a private temp
/// directory (consistent even while a server writes to the file) and checked there.
pub fn verify_file(path: &Path) -> Result<FileReport, VerifyError> {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0) {
        return Err(VerifyError::NoDataFile(path.to_path_buf()));
    }
    let scratch = backup::Scratch::new()?;
    let copy = scratch.path().join("snapshot.redb");
    let snap = backup::snapshot(path, &copy)?;
    let mut report = check_snapshot(&copy, path)?;
    report.live = snap.live;
    Ok(report)
}

/// Checks a snapshot that redb's integrity check has passed (see [`backup::snapshot`]); errors
/// and the report name `shown_as`, the file the snapshot was taken of.
pub(crate) fn check_snapshot(snapshot: &Path, shown_as: &Path) -> Result<FileReport, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: shown_as.to_path_buf(),
        detail,
    };
    let db = redb::Builder::new()
        .set_cache_size(super::CACHE_BYTES)
        .open_read_only(snapshot)
        .map_err(|e| corrupt(e.to_string()))?;
    let txn = db.begin_read()?;
    // redb has verified every page; a panic here would be a bug, but is still no crash.
    let checked = crate::store::backup::catch_quietly(|| check_contents(&txn, shown_as));
    match checked {
        Ok(result) => result,
        Err(_) => Err(corrupt("reading its records failed".into())),
    }
}

fn check_contents(txn: &ReadTransaction, shown_as: &Path) -> Result<FileReport, StoreError> {
    let foreign = || StoreError::Foreign {
        path: shown_as.to_path_buf(),
    };
    let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
    let meta = match txn.open_table(tables::META) {
        Ok(m) => m,
        Err(TableError::TableDoesNotExist(_)) if names.is_empty() => {
            // A file created and never written: nothing to check, and a start adopts it.
            return Ok(FileReport {
                path: shown_as.to_path_buf(),
                schema: SCHEMA_VERSION,
                live: false,
                records: Vec::new(),
                problems: Vec::new(),
                problem_count: 0,
                notes: vec!["the file holds no tables yet".into()],
                chain: audit_chain(txn)?,
            });
        }
        Err(_) => return Err(foreign()),
    };
    match meta.get("format")?.map(|v| v.value().to_vec()) {
        Some(m) if m == FORMAT_MARKER => {}
        _ => return Err(foreign()),
    }
    let schema = super::check_schema(&meta, shown_as)?;
    drop(meta);

    let mut f = Findings::default();
    // token → alias, from whichever key table this schema has.
    let mut key_aliases: HashMap<String, Option<String>> = HashMap::new();
    walk::<KeyRecordV1>(txn, tables::KEYS_V1, &mut f, |token, k| {
        if k.token != token {
            return Err(format!("it is stored under {token} but is key {}", k.token));
        }
        key_aliases.insert(k.token, k.key_alias);
        Ok(())
    })?;
    walk::<KeyRecord>(txn, tables::KEYS_V2, &mut f, |token, k| {
        if k.token != token {
            return Err(format!("it is stored under {token} but is key {}", k.token));
        }
        key_aliases.insert(k.token, k.key_alias);
        Ok(())
    })?;
    let mut user_emails: HashMap<String, Option<String>> = HashMap::new();
    let mut scim_names: HashMap<String, Option<String>> = HashMap::new();
    walk::<UserRecordV1>(txn, tables::USERS_V1, &mut f, |id, u| {
        if u.user_id != id {
            return Err(format!("it is stored under {id} but is user {}", u.user_id));
        }
        user_emails.insert(u.user_id, u.user_email.map(|e| e.to_lowercase()));
        Ok(())
    })?;
    // Schema 4's users carry a SCIM state too: their userNames are indexed the same way.
    walk::<UserRecordV2>(txn, tables::USERS_V2, &mut f, |id, u| {
        if u.user_id != id {
            return Err(format!("it is stored under {id} but is user {}", u.user_id));
        }
        scim_names.insert(
            u.user_id.clone(),
            u.scim.map(|s| s.user_name.to_lowercase()),
        );
        user_emails.insert(u.user_id, u.user_email.map(|e| e.to_lowercase()));
        Ok(())
    })?;
    // (value, user id) pairs of the indexes where a value may name several users.
    let mut external_ids: BTreeSet<(String, String)> = BTreeSet::new();
    let mut scim_emails: BTreeSet<(String, String)> = BTreeSet::new();
    walk::<UserRecord>(txn, tables::USERS, &mut f, |id, u| {
        if u.user_id != id {
            return Err(format!("it is stored under {id} but is user {}", u.user_id));
        }
        if let Some(x) = &u.external_id {
            external_ids.insert((x.clone(), u.user_id.clone()));
        }
        if let Some(s) = &u.scim {
            for e in s.emails() {
                scim_emails.insert((e, u.user_id.clone()));
            }
        }
        scim_names.insert(
            u.user_id.clone(),
            u.scim.map(|s| s.user_name.to_lowercase()),
        );
        user_emails.insert(u.user_id, u.user_email.map(|e| e.to_lowercase()));
        Ok(())
    })?;
    walk::<TeamRecordV1>(txn, tables::TEAMS_V1, &mut f, |_, _| Ok(()))?;
    walk::<TeamRecord>(txn, tables::TEAMS, &mut f, |_, _| Ok(()))?;
    walk::<OrgRecord>(txn, tables::ORGS, &mut f, |_, _| Ok(()))?;
    walk::<CustomerRecord>(txn, tables::CUSTOMERS, &mut f, |_, _| Ok(()))?;
    walk::<CounterRow>(txn, tables::SPEND_COUNTERS, &mut f, |_, _| Ok(()))?;
    walk_spend_logs(txn, &mut f)?;
    check_index(
        txn,
        tables::KEY_ALIASES,
        "key",
        &key_aliases,
        &mut f,
        |alias| alias.to_string(),
    )?;
    check_index(
        txn,
        tables::USER_EMAILS,
        "user",
        &user_emails,
        &mut f,
        str::to_lowercase,
    )?;
    check_index(
        txn,
        tables::SCIM_USER_NAMES,
        "user",
        &scim_names,
        &mut f,
        str::to_lowercase,
    )?;
    // Schema 6 added the externalId index (migration 6 builds it): an older file has none yet.
    let rows = match txn.open_table(tables::USER_EXTERNAL_IDS) {
        Ok(t) => {
            let mut rows = Vec::new();
            for row in t.iter()? {
                let (k, _) = row?;
                let (x, id) = k.value();
                rows.push((x.to_string(), id.to_string()));
            }
            Pairs::Rows(rows)
        }
        Err(e) => Pairs::from_error(e, tables::USER_EXTERNAL_IDS.name(), &mut f)?,
    };
    if schema >= 6 || matches!(rows, Pairs::Rows(_)) {
        check_pairs(
            tables::USER_EXTERNAL_IDS.name(),
            rows,
            &external_ids,
            &mut f,
        );
    }
    let rows = match txn.open_table(tables::SCIM_EMAILS) {
        Ok(t) => {
            let mut rows = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let (key, id) = (k.value(), v.value());
                // `<email>\n<user id>`; a key that does not end in its own id stays whole (and
                // so matches no user).
                let email = key
                    .strip_suffix(id)
                    .and_then(|e| e.strip_suffix('\n'))
                    .unwrap_or(key);
                rows.push((email.to_string(), id.to_string()));
            }
            Pairs::Rows(rows)
        }
        Err(e) => Pairs::from_error(e, tables::SCIM_EMAILS.name(), &mut f)?,
    };
    // Only the current layout's users are walked for their emails.
    let older_users = names
        .iter()
        .any(|n| n == tables::USERS_V1.name() || n == tables::USERS_V2.name());
    if !older_users {
        check_pairs(tables::SCIM_EMAILS.name(), rows, &scim_emails, &mut f);
    }

    let known = [
        tables::META.name(),
        tables::KEYS_V1.name(),
        tables::KEYS_V2.name(),
        tables::KEY_ALIASES.name(),
        tables::AUDIT_V1.name(),
        tables::AUDIT.name(),
        tables::AUDIT_HASHES.name(),
        tables::AUDIT_CHECKPOINT.name(),
        tables::USERS_V1.name(),
        tables::USERS_V2.name(),
        tables::USERS.name(),
        tables::USER_EMAILS.name(),
        tables::SCIM_USER_NAMES.name(),
        tables::SCIM_EMAILS.name(),
        tables::USER_EXTERNAL_IDS.name(),
        tables::TEAMS_V1.name(),
        tables::TEAMS.name(),
        tables::ORGS.name(),
        tables::CUSTOMERS.name(),
        tables::SPEND_COUNTERS.name(),
        tables::SPEND_LOGS.name(),
        tables::SSO_SESSIONS.name(),
        tables::SSO_IDENTITIES.name(),
    ];
    for name in names.iter().filter(|n| !known.contains(&n.as_str())) {
        f.notes.push(format!(
            "table {name} is not one this binary knows; not checked"
        ));
    }
    Ok(FileReport {
        path: shown_as.to_path_buf(),
        schema,
        live: false,
        records: f.records,
        problems: f.problems,
        problem_count: f.problem_count,
        notes: f.notes,
        chain: audit_chain(txn)?,
    })
}

#[derive(Default)]
struct Findings {
    records: Vec<(String, u64)>,
    problems: Vec<String>,
    problem_count: u64,
    notes: Vec<String>,
}

impl Findings {
    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }
}

fn open_if_present<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: redb::TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Decodes every record of a string-keyed table, handing each to `check` (which may object).
/// A missing table holds nothing; one of other types is a problem, not an abort.
fn walk<T: DeserializeOwned>(
    txn: &ReadTransaction,
    def: RecordTable,
    f: &mut Findings,
    mut check: impl FnMut(&str, T) -> Result<(), String>,
) -> Result<(), StoreError> {
    let table = match txn.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(TableError::Storage(e)) => return Err(e.into()),
        Err(e) => {
            f.problem(format!("table {}: {e}", def.name()));
            return Ok(());
        }
    };
    let mut n = 0;
    for row in table.iter()? {
        let (k, v) = row?;
        n += 1;
        let outcome = codec::decode::<T>(v.value())
            .map_err(|e| format!("does not decode: {e}"))
            .and_then(|record| check(k.value(), record));
        if let Err(why) = outcome {
            f.problem(format!("{}[{}] {why}", def.name(), k.value()));
        }
    }
    f.records.push((def.name().to_string(), n));
    Ok(())
}

fn walk_spend_logs(txn: &ReadTransaction, f: &mut Findings) -> Result<(), StoreError> {
    let name = tables::SPEND_LOGS.name();
    let table = match txn.open_table(tables::SPEND_LOGS) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(TableError::Storage(e)) => return Err(e.into()),
        Err(e) => {
            f.problem(format!("table {name}: {e}"));
            return Ok(());
        }
    };
    let mut n = 0;
    for row in table.iter()? {
        let (k, v) = row?;
        n += 1;
        if let Err(e) = codec::decode::<SpendLogRow>(v.value()) {
            let (ms, seq) = k.value();
            f.problem(format!("{name}[({ms}, {seq})] does not decode: {e}"));
        }
    }
    f.records.push((name.to_string(), n));
    Ok(())
}

/// The rows of an index in which one value may name several users, as `(value, user id)`.
enum Pairs {
    Rows(Vec<(String, String)>),
    Missing,
    /// Not a table of the expected types (already reported).
    Unreadable,
}

impl Pairs {
    fn from_error(e: TableError, name: &str, f: &mut Findings) -> Result<Pairs, StoreError> {
        match e {
            TableError::TableDoesNotExist(_) => Ok(Pairs::Missing),
            TableError::Storage(e) => Err(e.into()),
            e => {
                f.problem(format!("table {name}: {e}"));
                Ok(Pairs::Unreadable)
            }
        }
    }
}

/// An index in which a value may name several users (`(value, user id)` rows) must hold exactly
/// the pairs the records carry.
fn check_pairs(name: &str, rows: Pairs, records: &BTreeSet<(String, String)>, f: &mut Findings) {
    let rows = match rows {
        Pairs::Rows(rows) => rows,
        Pairs::Unreadable => return,
        Pairs::Missing => {
            if !records.is_empty() {
                f.problem(format!(
                    "table {name} is missing but {} users need it",
                    records.len()
                ));
            }
            return;
        }
    };
    let n = rows.len() as u64;
    let rows: BTreeSet<(String, String)> = rows.into_iter().collect();
    for (value, id) in rows.difference(records) {
        f.problem(format!(
            "{name}[{value:?}] names user {id}, which does not exist or does not carry it"
        ));
    }
    for (value, id) in records.difference(&rows) {
        f.problem(format!(
            "user {id} carries {value:?}, but {name} does not point to it"
        ));
    }
    f.records.push((name.to_string(), n));
}

/// An index (`value` → record id) must agree with the records: every row names a record that
/// carries that value, and every record carrying a value has its row.
fn check_index(
    txn: &ReadTransaction,
    def: redb::TableDefinition<&str, &str>,
    what: &str,
    records: &HashMap<String, Option<String>>,
    f: &mut Findings,
    normalise: impl Fn(&str) -> String,
) -> Result<(), StoreError> {
    let name = def.name();
    let table = match txn.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => {
            let indexed = records.values().filter(|v| v.is_some()).count();
            if indexed > 0 {
                f.problem(format!(
                    "table {name} is missing but {indexed} {what}s need it"
                ));
            }
            return Ok(());
        }
        Err(TableError::Storage(e)) => return Err(e.into()),
        Err(e) => {
            f.problem(format!("table {name}: {e}"));
            return Ok(());
        }
    };
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    for row in table.iter()? {
        let (k, v) = row?;
        rows.insert(k.value().to_string(), v.value().to_string());
    }
    for (value, id) in &rows {
        match records.get(id) {
            None => f.problem(format!(
                "{name}[{value}] names {what} {id}, which does not exist"
            )),
            Some(v) if v.as_deref().map(&normalise).as_deref() != Some(value.as_str()) => f
                .problem(format!(
                    "{name}[{value}] names {what} {id}, which does not carry it"
                )),
            Some(_) => {}
        }
    }
    for (id, value) in records {
        if let Some(v) = value.as_deref().map(&normalise)
            && rows.get(&v) != Some(id)
        {
            f.problem(format!(
                "{what} {id} carries {v}, but {name} does not point to it"
            ));
        }
    }
    f.records.push((name.to_string(), rows.len() as u64));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, Change, Origin};

    fn change(id: &str) -> Change {
        Change {
            action: "created".into(),
            table_name: "LiteLLM_VerificationToken".into(),
            object_id: id.into(),
            before_value: String::new(),
            updated_values: "{}".into(),
            within: Default::default(),
        }
    }

    /// A store with `n` audit entries, closed again; its path.
    fn store_with_entries(dir: &Path, n: usize) -> PathBuf {
        let path = dir.join("s.redb");
        let store = Store::open(&path).unwrap();
        for i in 0..n {
            store
                .write(&Actor::MasterKey, &Origin::default(), |tx| {
                    tx.audit(change(&format!("k{i}")));
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        assert!(store.verify_audit_chain().unwrap().intact());
        drop(store);
        path
    }

    /// Runs `f` on the raw audit tables of the file at `path`, then walks the chain.
    fn tamper(
        path: &Path,
        f: impl FnOnce(&mut redb::Table<u64, &[u8]>, &mut redb::Table<u64, &str>),
    ) -> ChainReport {
        {
            let db = redb::Database::open(path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut entries = txn.open_table(tables::AUDIT).unwrap();
                let mut hashes = txn.open_table(tables::AUDIT_HASHES).unwrap();
                f(&mut entries, &mut hashes);
            }
            txn.commit().unwrap();
        }
        let db = redb::ReadOnlyDatabase::open(path).unwrap();
        audit_chain(&db.begin_read().unwrap()).unwrap()
    }

    fn entry_bytes(t: &redb::Table<u64, &[u8]>, seq: u64) -> Vec<u8> {
        t.get(seq).unwrap().unwrap().value().to_vec()
    }

    #[test]
    fn every_kind_of_tampering_is_found_at_the_first_bad_entry() {
        let dir = tempfile::tempdir().unwrap();
        let pristine = store_with_entries(dir.path(), 6);
        let fresh = |name: &str| {
            let p = dir.path().join(name);
            std::fs::copy(&pristine, &p).unwrap();
            p
        };
        let first_break = |r: ChainReport| {
            let b = r.first_break.unwrap();
            (b.seq, b.kind)
        };
        let intact = tamper(&fresh("intact.redb"), |_, _| {});
        assert!(intact.intact());
        assert_eq!(intact.verified, 6);
        assert_eq!(intact.head.map(|h| h.seq), Some(6));

        // Bytes changed, hash left alone.
        let r = tamper(&fresh("modified.redb"), |e, _| {
            let mut b = entry_bytes(e, 3);
            let i = b.len() - 2;
            b[i] ^= 0x01;
            e.insert(3, b.as_slice()).unwrap();
        });
        assert_eq!(first_break(r), (3, BreakKind::Modified));

        // Bytes changed and the hash recomputed: the next entry's link gives it away.
        let r = tamper(&fresh("rehashed.redb"), |e, h| {
            let mut entry: Entry = codec::decode(&entry_bytes(e, 3)).unwrap();
            entry.change.object_id = "someone-else".into();
            let b = codec::encode(&entry).unwrap();
            e.insert(3, b.as_slice()).unwrap();
            h.insert(3, hex::encode(Sha256::digest(&b)).as_str())
                .unwrap();
        });
        assert_eq!(first_break(r), (4, BreakKind::Unlinked));

        // Deleted from the middle (both rows).
        let r = tamper(&fresh("deleted.redb"), |e, h| {
            e.remove(4).unwrap();
            h.remove(4).unwrap();
        });
        assert_eq!(first_break(r), (4, BreakKind::Missing));

        // Only the entry deleted, or only its hash.
        let r = tamper(&fresh("entry-only.redb"), |e, _| {
            e.remove(2).unwrap();
        });
        assert_eq!(first_break(r), (2, BreakKind::Missing));
        let r = tamper(&fresh("hash-only.redb"), |_, h| {
            h.remove(5).unwrap();
        });
        assert_eq!(first_break(r), (5, BreakKind::Missing));

        // Two entries swapped with their hashes.
        let r = tamper(&fresh("swapped.redb"), |e, h| {
            let (b2, b3) = (entry_bytes(e, 2), entry_bytes(e, 3));
            let h2 = h.get(2).unwrap().unwrap().value().to_string();
            let h3 = h.get(3).unwrap().unwrap().value().to_string();
            e.insert(2, b3.as_slice()).unwrap();
            e.insert(3, b2.as_slice()).unwrap();
            h.insert(2, h3.as_str()).unwrap();
            h.insert(3, h2.as_str()).unwrap();
        });
        assert_eq!(first_break(r), (2, BreakKind::Misplaced));

        // The first entry deleted.
        let r = tamper(&fresh("head.redb"), |e, h| {
            e.remove(1).unwrap();
            h.remove(1).unwrap();
        });
        assert_eq!(first_break(r), (1, BreakKind::Missing));
    }

    #[test]
    fn a_file_is_verified_from_a_snapshot_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = store_with_entries(dir.path(), 3);
        let before = std::fs::read(&path).unwrap();
        let report = verify_file(&path).unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.schema, SCHEMA_VERSION);
        assert!(!report.live);
        assert_eq!(report.chain.verified, 3);
        assert!(std::fs::read(&path).unwrap() == before);

        assert!(matches!(
            verify_file(&dir.path().join("absent.redb")),
            Err(VerifyError::NoDataFile(_))
        ));
    }

    #[test]
    fn the_external_id_and_scim_email_indexes_must_agree_with_the_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(&Actor::MasterKey, &Origin::default(), |tx| {
                    for (id, x) in [("ann", "X"), ("bob", "X")] {
                        let mut u = crate::api::users::blank_user(id, "t");
                        u.external_id = Some(x.into());
                        u.scim = Some(crate::store::ScimUser {
                            user_name: id.into(),
                            active: true,
                            attributes_json: format!(r#"{{"emails":[{{"value":"{id}@a.test"}}]}}"#),
                            version: 1,
                            provisioned_by: "t".into(),
                            grants: Default::default(),
                        });
                        tx.put_user(&u)?;
                        tx.audit(change(id));
                    }
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        let report = verify_file(&path).unwrap();
        assert!(report.ok(), "{report}");
        assert!(
            report.records.contains(&("user_external_ids_v1".into(), 2)),
            "{report}"
        );
        assert!(
            report.records.contains(&("scim_emails_v1".into(), 2)),
            "{report}"
        );
        {
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(tables::USER_EXTERNAL_IDS).unwrap();
                t.remove(("X", "ann")).unwrap();
                t.insert(("Y", "bob"), ()).unwrap();
                t.insert(("X", "ghost"), ()).unwrap();
                let mut e = txn.open_table(tables::SCIM_EMAILS).unwrap();
                e.remove("bob@a.test\nbob").unwrap();
            }
            txn.commit().unwrap();
        }
        let report = verify_file(&path).unwrap();
        assert!(!report.ok());
        assert_eq!(report.problem_count, 4, "{report}");
        let text = report.to_string();
        for expected in [
            r#"user ann carries "X", but user_external_ids_v1 does not point to it"#,
            r#"user_external_ids_v1["Y"] names user bob, which does not exist or does not carry it"#,
            r#"user_external_ids_v1["X"] names user ghost"#,
            r#"user bob carries "bob@a.test", but scim_emails_v1 does not point to it"#,
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }

    #[test]
    fn a_flipped_byte_in_a_page_fails_redbs_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write(&Actor::MasterKey, &Origin::default(), |tx| {
                    let mut c = change("k");
                    c.updated_values = "MARKER-0123456789-MARKER".into();
                    tx.audit(c);
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let marker = b"MARKER-0123456789-MARKER";
        let mut flipped = 0;
        for at in 0..bytes.len() - marker.len() {
            if &bytes[at..at + marker.len()] == marker {
                bytes[at + 8] ^= 0x01;
                flipped += 1;
            }
        }
        assert!(flipped > 0);
        std::fs::write(&path, &bytes).unwrap();
        match verify_file(&path) {
            Err(VerifyError::Snapshot(BackupError::Damaged { detail, .. })) => {
                assert!(!detail.is_empty());
            }
            other => panic!("not reported as damaged: {other:?}"),
        }
        assert!(std::fs::read(&path).unwrap() == bytes, "verify changed it");
    }
}
