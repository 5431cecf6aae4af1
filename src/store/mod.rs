//! The store owns the redb file: the single source of truth for everything durable.
//!
//! Every write goes through [`Store::write`], whose commit also appends the audit entries the
//! change declared — a change and its audit entry commit together or not at all, and a write
//! that changes data without declaring an entry is refused. redb calls block, so async callers
//! run them on the blocking pool.

mod audit_read;
mod audit_retention;
pub mod audit_rows;
pub mod backup;
pub mod budget;
mod codec;
pub mod keys;
mod legacy;
mod migrate;
mod records;
pub mod sso;
mod tables;
pub mod tenancy;
pub mod usage;
pub mod verify;

use crate::audit::{Actor, Change, Entry, Origin};
use redb::{
    Database, ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableHandle, WriteTransaction,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use audit_read::{AuditFilter, AuditPage};
pub use audit_retention::Pruned;
pub use budget::Budget;
pub use keys::KeyRecord;
pub use tenancy::{
    CustomerRecord, OrgAdminGrant, OrgMember, OrgMembership, OrgRecord, RoleGrant, ScimGrants,
    ScimGroup, ScimUser, TeamMember, TeamRecord, TenancySnapshot, UserRecord,
};

/// The schema this binary writes. A file with a higher number was written by a newer release.
pub const SCHEMA_VERSION: u32 = 6;
const FORMAT_MARKER: &[u8] = b"portcullis";
/// redb's page cache. Its default (1 GiB) grows the process with every spend log page ever
/// written; nothing on the request path reads the file, and the OS caches it anyway.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open data file {path}: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("{path} is not a Portcullis data file (it holds other tables)")]
    Foreign { path: PathBuf },
    #[error("{path} was written by a newer Portcullis (schema {found}, this binary knows {known})")]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("{path} is damaged ({detail}); restore it from a backup")]
    Corrupt { path: PathBuf, detail: String },
    #[error("storage failure: {0}")]
    Db(String),
    #[error("stored record is unreadable: {0}")]
    Codec(String),
    #[error("a change was written without an audit entry")]
    Unaudited,
}

impl StoreError {
    /// Every failure here is the server's fault, never the caller's: one code for all.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Open { .. }
            | StoreError::Foreign { .. }
            | StoreError::TooNew { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Db(_)
            | StoreError::Codec(_)
            | StoreError::Unaudited => "internal_error",
        }
    }
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    /// Cleared by an I/O failure: redb then refuses every later write until the file is
    /// reopened, so readiness must stop saying healthy.
    healthy: Arc<std::sync::atomic::AtomicBool>,
    /// Raised after every commit that appended audit entries (the search indexer waits on it).
    appended: Arc<AppendSignal>,
}

/// The newest committed audit sequence number, and a condition to wait for a newer one (or for
/// a poke: a reader asking the indexer to look again).
#[derive(Default)]
pub struct AppendSignal {
    state: std::sync::Mutex<(u64, u64)>,
    changed: std::sync::Condvar,
}

impl AppendSignal {
    fn raise(&self, seq: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = s.0.max(seq);
        }
        self.changed.notify_all();
    }

    /// The newest head and the poke generation.
    pub fn now(&self) -> (u64, u64) {
        self.state.lock().map(|s| *s).unwrap_or_default()
    }

    /// Waits up to `timeout` for an entry after `seen` or a poke after generation `generation`.
    pub fn wait_past(&self, seen: u64, generation: u64, timeout: std::time::Duration) {
        if let Ok(s) = self.state.lock() {
            let _ = self
                .changed
                .wait_timeout_while(s, timeout, |s| s.0 <= seen && s.1 == generation);
        }
    }

    /// Wakes waiters without a new entry (to make them look again).
    pub fn poke(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.1 = s.1.wrapping_add(1);
        }
        self.changed.notify_all();
    }
}

/// An open write transaction. Changes made through it are only committed together with the
/// audit entries recorded by [`Tx::audit`].
pub struct Tx {
    txn: WriteTransaction,
    changes: Vec<Change>,
    dirty: bool,
}

impl Store {
    /// Opens (creating if absent) the data file and checks that it is ours and not from the future.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |detail: String| StoreError::Open {
            path: path.to_path_buf(),
            detail,
        };
        let existed = path.exists();
        // An empty file (created but never written) is adopted like a missing one.
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            inspect_read_only(path)?;
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| open_err(e.to_string()))?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(tables::META)?;
            let marker = meta.get("format")?.map(|v| v.value().to_vec());
            match marker {
                Some(m) if m == FORMAT_MARKER => {
                    let found = check_schema(&meta, path)?;
                    drop(meta);
                    migrate::run(&txn, found)?;
                }
                Some(_) => {
                    return Err(StoreError::Foreign {
                        path: path.to_path_buf(),
                    });
                }
                None => {
                    // A file that already has tables but no marker belongs to someone else.
                    if existed && (meta.len()? != 0 || has_foreign_tables(&txn)?) {
                        return Err(StoreError::Foreign {
                            path: path.to_path_buf(),
                        });
                    }
                    meta.insert("format", FORMAT_MARKER)?;
                    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                }
            }
        }
        tables::create_all(&txn)?;
        txn.commit()?;
        let store = Store {
            db: Arc::new(db),
            healthy: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            appended: Arc::new(AppendSignal::default()),
        };
        let (head, _) = store.audit_head()?;
        store.appended.raise(head);
        Ok(store)
    }

    /// Runs `f` in one write transaction and commits it with the audit entries it recorded.
    pub fn write<T, E>(
        &self,
        actor: &Actor,
        origin: &Origin,
        f: impl FnOnce(&mut Tx) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let txn = self.db.begin_write().map_err(|e| {
            if let redb::TransactionError::Storage(s) = &e {
                self.note_storage_failure(s);
            }
            StoreError::from(e)
        })?;
        let mut tx = Tx {
            txn,
            changes: Vec::new(),
            dirty: false,
        };
        let out = f(&mut tx)?;
        if tx.dirty && tx.changes.is_empty() {
            return Err(StoreError::Unaudited.into());
        }
        let head = append_audit(
            &self.db,
            &tx.txn,
            actor,
            origin,
            std::mem::take(&mut tx.changes),
        )?;
        tx.txn.commit().map_err(|e| {
            if let redb::CommitError::Storage(s) = &e {
                self.note_storage_failure(s);
            }
            StoreError::from(e)
        })?;
        if let Some(seq) = head {
            self.appended.raise(seq);
        }
        Ok(out)
    }

    fn note_storage_failure(&self, e: &redb::StorageError) {
        if matches!(
            e,
            redb::StorageError::Io(_) | redb::StorageError::PreviousIo
        ) {
            self.healthy
                .store(false, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e, "the data file failed to write; writes are refused until a restart");
        }
    }

    pub fn appended(&self) -> &Arc<AppendSignal> {
        &self.appended
    }

    /// False once a write has failed with an I/O error (disk full, device gone).
    pub fn healthy(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Audit entries from `from_seq` on, oldest first (at most `limit`).
    pub fn audit_entries(&self, from_seq: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let txn = self.read()?;
        let rows = audit_rows::AuditRows::open(&txn)?;
        rows.entries(from_seq.., false)?.take(limit).collect()
    }
}

/// Judges an existing file without writing to it. redb writes to every file it opens for
/// writing (at the least its allocator state, on close), and a file that is not ours, or that a
/// newer release wrote, must be left exactly as it was.
fn inspect_read_only(path: &Path) -> Result<(), StoreError> {
    let foreign = || StoreError::Foreign {
        path: path.to_path_buf(),
    };
    let db = match ReadOnlyDatabase::open(path) {
        Ok(db) => db,
        // Not shut down cleanly (a crash, SIGKILL): only a read-write open can repair it, and
        // the same checks run there once it has.
        Err(redb::DatabaseError::RepairAborted) => return Ok(()),
        Err(e) => {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                detail: e.to_string(),
            });
        }
    };
    let txn = db.begin_read()?;
    let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_string()).collect();
    if !names.iter().any(|n| n == "meta") {
        // No marker: an empty database is adopted, one holding tables is someone else's.
        return if names.is_empty() {
            Ok(())
        } else {
            Err(foreign())
        };
    }
    // A `meta` table of other key/value types is someone else's too.
    let meta = txn.open_table(tables::META).map_err(|_| foreign())?;
    let marker = meta.get("format")?.map(|v| v.value().to_vec());
    match marker {
        Some(m) if m == FORMAT_MARKER => {}
        None if meta.len()? == 0 && names.len() == 1 => return Ok(()),
        _ => return Err(foreign()),
    }
    check_schema(&meta, path)?;
    // Walk what start-up will load, still read-only: damage found here refuses the start
    // without the read-write open (whose repair attempt would rewrite the file).
    let walk = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> Result<(), StoreError> {
            fn walk<T: serde::de::DeserializeOwned>(
                txn: &redb::ReadTransaction,
                names: &[String],
                table: records::RecordTable,
            ) -> Result<(), StoreError> {
                if names.iter().any(|n| n == table.name()) {
                    records::decode_table::<T>(txn, table)?;
                }
                Ok(())
            }
            walk::<keys::KeyRecordV1>(&txn, &names, tables::KEYS_V1)?;
            walk::<KeyRecord>(&txn, &names, tables::KEYS_V2)?;
            walk::<legacy::UserRecordV1>(&txn, &names, tables::USERS_V1)?;
            walk::<legacy::TeamRecordV1>(&txn, &names, tables::TEAMS_V1)?;
            walk::<legacy::UserRecordV2>(&txn, &names, tables::USERS_V2)?;
            walk::<UserRecord>(&txn, &names, tables::USERS)?;
            walk::<TeamRecord>(&txn, &names, tables::TEAMS)?;
            walk::<OrgRecord>(&txn, &names, tables::ORGS)?;
            walk::<CustomerRecord>(&txn, &names, tables::CUSTOMERS)?;
            Ok(())
        },
    ));
    match walk {
        Ok(result) => result.map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
        Err(_) => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: "its pages are unreadable".into(),
        }),
    }
}

/// Refuses a file written by a newer schema than this binary knows.
fn check_schema(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    path: &Path,
) -> Result<u32, StoreError> {
    let found = meta
        .get("schema_version")?
        .and_then(|v| <[u8; 4]>::try_from(v.value()).ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

fn has_foreign_tables(txn: &WriteTransaction) -> Result<bool, StoreError> {
    let names: Vec<String> = txn
        .list_tables()?
        .map(|t| t.name().to_string())
        .filter(|n| n != "meta")
        .collect();
    Ok(!names.is_empty())
}

fn append_audit(
    db: &Database,
    txn: &WriteTransaction,
    actor: &Actor,
    origin: &Origin,
    changes: Vec<Change>,
) -> Result<Option<u64>, StoreError> {
    if changes.is_empty() {
        return Ok(None);
    }
    // Writers are serialised, so a read transaction begun now sees the file exactly as this
    // transaction found it: where a deleted or moved object used to sit.
    let placed = changes
        .iter()
        .any(|c| !c.within.orgs.is_empty() || !c.within.teams.is_empty());
    let before = if placed { Some(db.begin_read()?) } else { None };
    let scopes = changes
        .iter()
        .map(|c| audit_rows::scope_of(&c.within, txn, before.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut entries = txn.open_table(tables::AUDIT)?;
    let mut hashes = txn.open_table(tables::AUDIT_HASHES)?;
    let (mut seq, mut prev_hash) = match hashes.last()? {
        Some((k, v)) => (k.value() + 1, v.value().to_string()),
        // Empty: a new log, or retention pruned every entry (then the chain goes on from the
        // checkpoint, never from the genesis again).
        None => {
            let checkpoint = txn.open_table(tables::AUDIT_CHECKPOINT)?;
            let found = checkpoint.get(audit_rows::CHECKPOINT_KEY)?;
            match found {
                Some(v) => {
                    let c: audit_rows::Checkpoint = codec::decode(v.value())?;
                    (c.through_seq + 1, c.through_hash)
                }
                None => (1, "0".repeat(64)),
            }
        }
    };
    let now = crate::types::now_ms();
    for (change, scope) in changes.into_iter().zip(scopes) {
        let entry = Entry {
            seq,
            timestamp_ms: now,
            actor: actor.clone(),
            origin: origin.clone(),
            change,
            prev_hash: prev_hash.clone(),
            scope,
        };
        let bytes = codec::encode(&entry)?;
        let hash = hex::encode(Sha256::digest(&bytes));
        entries.insert(seq, bytes.as_slice())?;
        hashes.insert(seq, hash.as_str())?;
        prev_hash = hash;
        seq += 1;
    }
    Ok(Some(seq - 1))
}

impl Tx {
    /// Declares the audit entry for a change made in this transaction.
    pub fn audit(&mut self, change: Change) {
        self.changes.push(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &str) -> KeyRecord {
        KeyRecord {
            token: token.into(),
            key_id: token.into(),
            key_name: "sk-...0000".into(),
            key_alias: None,
            models: Vec::new(),
            expires_ms: None,
            metadata_json: "{}".into(),
            user_id: None,
            team_id: None,
            organization_id: None,
            budget: Budget::default(),
            allowed_routes: Vec::new(),
            key_type: crate::roles::KeyType::Default,
            blocked: false,
            created_at_ms: 0,
            updated_at_ms: 0,
            created_by: String::new(),
            updated_by: String::new(),
            grace_tokens: Vec::new(),
        }
    }

    fn created(token: &str) -> Change {
        Change {
            action: "created".into(),
            table_name: "LiteLLM_VerificationToken".into(),
            object_id: token.into(),
            before_value: String::new(),
            updated_values: "{}".into(),
            within: Default::default(),
        }
    }

    #[test]
    fn changes_commit_with_their_chained_audit_entries_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let origin = Origin::default();
        for t in ["a", "b"] {
            store
                .write(&Actor::MasterKey, &origin, |tx| {
                    tx.put_key(&key(t))?;
                    tx.audit(created(t));
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        // A change without its entry is refused, and nothing of it commits.
        let refused = store.write(&Actor::MasterKey, &origin, |tx| {
            tx.put_key(&key("c"))?;
            Ok::<_, StoreError>(())
        });
        assert!(matches!(refused, Err(StoreError::Unaudited)));
        // A closure that fails after writing commits nothing either, entry included.
        let failed = store.write(&Actor::MasterKey, &origin, |tx| {
            tx.put_key(&key("d"))?;
            tx.audit(created("d"));
            Err::<(), _>(StoreError::Db("caller gave up".into()))
        });
        assert!(failed.is_err());
        let tokens: Vec<String> = store
            .all_keys()
            .unwrap()
            .into_iter()
            .map(|k| k.token)
            .collect();
        assert_eq!(tokens, ["a", "b"]);

        let entries = store.audit_entries(1, 10).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].change.object_id, "a");
        assert_eq!(entries[0].prev_hash, "0".repeat(64));
        // Each entry commits to the one before it.
        let txn = store.read().unwrap();
        let hashes = txn.open_table(tables::AUDIT_HASHES).unwrap();
        let first_hash = hashes.get(1u64).unwrap().unwrap().value().to_string();
        assert_eq!(entries[1].prev_hash, first_hash);
        let raw = txn.open_table(tables::AUDIT).unwrap();
        let first_bytes = raw.get(1u64).unwrap().unwrap().value().to_vec();
        assert_eq!(hex::encode(Sha256::digest(&first_bytes)), first_hash);
    }

    #[test]
    fn foreign_and_future_files_are_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let foreign = dir.path().join("foreign.redb");
        {
            let db = Database::create(&foreign).unwrap_or_else(|e| panic!("{e}"));
            let txn = db.begin_write().unwrap_or_else(|e| panic!("{e}"));
            let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("theirs");
            txn.open_table(def)
                .unwrap_or_else(|e| panic!("{e}"))
                .insert("a", "b")
                .unwrap_or_else(|e| panic!("{e}"));
            txn.commit().unwrap_or_else(|e| panic!("{e}"));
        }
        let foreign_bytes = std::fs::read(&foreign).unwrap_or_default();
        assert!(matches!(
            Store::open(&foreign),
            Err(StoreError::Foreign { .. })
        ));
        // Refused, and not written to either.
        assert!(std::fs::read(&foreign).unwrap_or_default() == foreign_bytes);

        let garbage = dir.path().join("garbage.redb");
        std::fs::write(&garbage, b"this is not a database at all, just text")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            Store::open(&garbage),
            Err(StoreError::Open { .. })
        ));
        // The refused file is left exactly as it was.
        assert_eq!(
            std::fs::read(&garbage).unwrap_or_default(),
            b"this is not a database at all, just text"
        );

        let future = dir.path().join("future.redb");
        {
            let db = Database::create(&future).unwrap_or_else(|e| panic!("{e}"));
            let txn = db.begin_write().unwrap_or_else(|e| panic!("{e}"));
            {
                let mut meta = txn
                    .open_table(tables::META)
                    .unwrap_or_else(|e| panic!("{e}"));
                meta.insert("format", FORMAT_MARKER)
                    .unwrap_or_else(|e| panic!("{e}"));
                meta.insert("schema_version", 99u32.to_le_bytes().as_slice())
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            txn.commit().unwrap_or_else(|e| panic!("{e}"));
        }
        let future_bytes = std::fs::read(&future).unwrap_or_default();
        assert!(matches!(
            Store::open(&future),
            Err(StoreError::TooNew { found: 99, .. })
        ));
        assert!(std::fs::read(&future).unwrap_or_default() == future_bytes);
    }
}
