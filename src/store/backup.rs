//! Backups of the data file, taken while a server is serving from it, and their restore.
//!
//! The server opens the file in redb's exclusive-writer mode, which locks the whole file: no
//! other process can open it, not even read-only, while it runs. So a backup cannot share the
//! server's snapshot isolation; it copies the file's bytes instead, and relies on redb's commit
//! protocol to make the copy consistent or detectably not: every commit writes its pages first
//! and the header naming its root last, never overwrites a page the last two commits can reach,
//! and every tree page is covered by a checksum held in its parent (the roots' in the header).
//! A copy is opened (the copy, never the original) and redb's repair and integrity check run on
//! it: they accept the newest commit whose whole tree verifies, falling back to the one before,
//! and fail when neither does, in which case the copy is taken again. What is accepted is
//! exactly the state of one committed transaction: the last one committed when the copy began,
//! or the one before it if the server recycled the newer one's pages during the copy.
//!
//! A copy has only until the server recycles those pages, a few commits later. At the rates a
//! gateway commits (spend flushes once a second, management changes) that is ample; under a
//! sustained burst of hundreds of commits a second on a file of hundreds of MB every copy may
//! fail, and after 20 attempts the backup gives up (exit 75, try again) rather than write
//! anything unverified. A server in redb's single-writer mode would let a backup hold a read
//! transaction and copy that snapshot's tables instead, at any write rate; that needs
//! `Store::open` to choose that mode. (Holding a read transaction while copying the bytes does
//! not help: redb still recycles the pages of the commits after the held one.)
//!
//! A backup file is a short text header (format, schema, size, sha256 of the payload) followed
//! by the snapshot itself, a plain redb file. Restore checks the checksum before anything else,
//! refuses to replace a data file without `--force` and always while a server holds it, checks
//! the snapshot like `verify`, and moves it into place with a rename.

use super::verify::{self, FileReport};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The data file's name inside a data directory (as the server names it).
pub const DATA_FILE: &str = "portcullis.redb";
const MAGIC: &str = "PORTCULLIS-BACKUP 1";
/// A header longer than this is not ours.
const MAX_HEADER: usize = 4096;
/// Copies tried before giving up: one is redone only if it fails to verify and the file
/// changed while it was taken (the server recycled the pages of both newest commits).
const ATTEMPTS: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no data file at {0} (missing or empty)")]
    NoDataFile(PathBuf),
    #[error("no backup file at {0}")]
    NoBackupFile(PathBuf),
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("{path} fails redb's integrity check ({detail}); restore it from a backup")]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "{path} changed too quickly to copy consistently ({attempts} attempts, last: {detail}); try again"
    )]
    Unsettled {
        path: PathBuf,
        attempts: u32,
        detail: String,
    },
    #[error("{path} cannot be backed up by this binary: {detail}")]
    Unbackupable { path: PathBuf, detail: String },
    #[error("{path} is not a Portcullis backup ({detail})")]
    NotABackup { path: PathBuf, detail: String },
    #[error("backup {path} is corrupt ({detail}); nothing was restored")]
    Checksum { path: PathBuf, detail: String },
    #[error("backup {path} cannot be restored: {detail}; nothing was restored")]
    Unrestorable { path: PathBuf, detail: String },
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("{0} is in use by a running Portcullis; stop it before restoring")]
    InUse(PathBuf),
}

impl BackupError {
    /// The command's exit status: 64 for a usage error (nothing at the path given, a data file
    /// that needs `--force`), 75 (EX_TEMPFAIL) when a live file kept changing under every copy,
    /// 1 for everything else.
    pub fn exit_status(&self) -> u8 {
        match self {
            BackupError::NoDataFile(_) | BackupError::NoBackupFile(_) | BackupError::Exists(_) => {
                64
            }
            BackupError::Unsettled { .. } => 75,
            BackupError::Io { .. }
            | BackupError::Damaged { .. }
            | BackupError::Unbackupable { .. }
            | BackupError::NotABackup { .. }
            | BackupError::Checksum { .. }
            | BackupError::Unrestorable { .. }
            | BackupError::InUse(_) => 1,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// How a snapshot was taken.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// A server held the file while it was copied.
    pub live: bool,
    /// Copies taken (more than one only when the server recycled pages under the copy).
    pub attempts: u32,
}

/// Whether a process (a server) holds the data file open: redb's lock refuses even a
/// read-only open then.
pub fn is_live(path: &Path) -> bool {
    // A damaged file can make redb panic while opening it; such a file is not held by a
    // server (the server refuses damaged files) — and replacing it is what restore is for.
    matches!(
        quietly(|| redb::ReadOnlyDatabase::open(path)),
        Some(Err(
            redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch
        ))
    )
}

/// `catch_unwind` without the panic hook's backtrace on stderr.
pub(crate) fn catch_quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    out
}

/// Runs `f`, turning a panic inside it into `None` without printing a backtrace (redb panics
/// on some damaged files; this is a command-line tool reporting damage, not a crash).
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> Option<T> {
    catch_quietly(f).ok()
}

/// Writes a consistent snapshot of the data file `src` to `dest` (a new file), whether or not
/// a server is writing to `src`: see the module documentation. `src` is only ever read.
pub fn snapshot(src: &Path, dest: &Path) -> Result<Snapshot, BackupError> {
    if !std::fs::metadata(src).is_ok_and(|m| m.is_file() && m.len() > 0) {
        return Err(BackupError::NoDataFile(src.to_path_buf()));
    }
    let live = is_live(src);
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let _ = std::fs::remove_file(dest);
        let before = stamp(src);
        copy_raw(src, dest)?;
        let changed = before.is_none() || stamp(src) != before;
        match check_copy(dest) {
            Ok(()) => {
                return Ok(Snapshot {
                    live,
                    attempts: attempt,
                });
            }
            // A copy of a file nothing wrote to while it was taken is the file itself: what
            // fails in it is damage, not a race with the server.
            Err(detail) if !changed => {
                let _ = std::fs::remove_file(dest);
                return Err(BackupError::Damaged {
                    path: src.to_path_buf(),
                    detail,
                });
            }
            Err(detail) => {
                last = detail;
                std::thread::sleep(Duration::from_millis(5 * u64::from(attempt)));
            }
        }
    }
    let _ = std::fs::remove_file(dest);
    Err(BackupError::Unsettled {
        path: src.to_path_buf(),
        attempts: ATTEMPTS,
        detail: last,
    })
}

/// What changes when anything writes to the file.
fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn copy_raw(src: &Path, dest: &Path) -> Result<u64, BackupError> {
    let mut from = File::open(src).map_err(io_err(src))?;
    let mut to = create_private(dest)?;
    std::io::copy(&mut from, &mut to).map_err(io_err(dest))
}

/// Opens the copy read-write (it is ours) and has redb verify the checksum of every page of
/// the committed trees. A copy of a live file is repaired by the open, and the repair verifies
/// the commit it accepts (the newest whose tree verifies, else the one before); any other copy
/// is verified by `check_integrity`, which reports whether it had to repair anything.
fn check_copy(path: &Path) -> Result<(), String> {
    let repaired = Arc::new(AtomicBool::new(false));
    let outcome = catch_quietly(|| -> Result<bool, redb::DatabaseError> {
        let flag = repaired.clone();
        let mut db = redb::Builder::new()
            .set_cache_size(super::CACHE_BYTES)
            .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
            .open(path)?;
        let clean = repaired.load(Ordering::Relaxed) || db.check_integrity()?;
        db.close()?;
        Ok(clean)
    });
    match outcome {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err("pages of its last commit fail their checksums".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("its pages are unreadable".into()),
    }
}

/// What [`backup`] wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub out: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub snapshot: Snapshot,
    /// The snapshot's contents, checked as `verify` does.
    pub contents: FileReport,
}

/// Writes a backup of `<data_dir>/portcullis.redb` to `out` (replacing it atomically if it
/// exists). A snapshot whose records or audit chain are damaged is still written, faithfully:
/// the report says what is wrong.
pub fn backup(data_dir: &Path, out: &Path) -> Result<BackupReport, BackupError> {
    let src = data_dir.join(DATA_FILE);
    if !std::fs::metadata(&src).is_ok_and(|m| m.is_file() && m.len() > 0) {
        return Err(BackupError::NoDataFile(src));
    }
    if out.exists() && std::fs::canonicalize(out).ok() == std::fs::canonicalize(&src).ok() {
        return Err(BackupError::Unbackupable {
            path: src,
            detail: "--out names the data file itself".into(),
        });
    }
    let snapshot_file = TempFile::beside(out, "snapshot")?;
    let snap = snapshot(&src, snapshot_file.path())?;
    let contents = verify::check_snapshot(snapshot_file.path(), &src).map_err(|e| {
        BackupError::Unbackupable {
            path: src.clone(),
            detail: e.to_string(),
        }
    })?;
    let (bytes, sha256) = hash_file(snapshot_file.path())?;

    let partial = TempFile::beside(out, "partial")?;
    {
        let mut to = create_private(partial.path())?;
        let header = format!(
            "{MAGIC}\nschema: {}\nbytes: {bytes}\nsha256: {sha256}\ncreated_ms: {}\n\n",
            contents.schema,
            crate::types::now_ms()
        );
        to.write_all(header.as_bytes())
            .map_err(io_err(partial.path()))?;
        let mut from = File::open(snapshot_file.path()).map_err(io_err(snapshot_file.path()))?;
        std::io::copy(&mut from, &mut to).map_err(io_err(partial.path()))?;
        to.sync_all().map_err(io_err(partial.path()))?;
    }
    partial.rename_to(out)?;
    Ok(BackupReport {
        out: out.to_path_buf(),
        bytes,
        sha256,
        snapshot: snap,
        contents,
    })
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} bytes, sha256 {} (snapshot of {}",
            self.out.display(),
            self.bytes,
            self.sha256,
            self.contents.path.display()
        )?;
        if self.snapshot.live {
            write!(f, ", taken while serving")?;
        }
        if self.snapshot.attempts > 1 {
            write!(
                f,
                ", after {} copies: the server recycled pages during the earlier ones",
                self.snapshot.attempts
            )?;
        }
        match &self.contents.chain.head {
            Some(h) => write!(f, "; audit chain head entry {} sha256 {})", h.seq, h.hash),
            None => write!(f, ")"),
        }
    }
}

/// What [`restore`] did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub target: PathBuf,
    pub bytes: u64,
    /// An existing data file was replaced (`--force`).
    pub replaced: bool,
    pub contents: FileReport,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "restored {} bytes into {} (schema {}",
            self.bytes,
            self.target.display(),
            self.contents.schema
        )?;
        if self.replaced {
            write!(f, ", replacing the data file that was there")?;
        }
        write!(f, ")")
    }
}

struct Header {
    len: u64,
    bytes: u64,
    sha256: String,
}

fn read_header(from: &Path) -> Result<Header, BackupError> {
    let not_ours = |detail: &str| BackupError::NotABackup {
        path: from.to_path_buf(),
        detail: detail.to_string(),
    };
    let file = File::open(from).map_err(io_err(from))?;
    let mut reader = BufReader::new(file.take(MAX_HEADER as u64));
    let mut len = 0u64;
    let mut bytes = None;
    let mut sha256 = None;
    let mut first = true;
    loop {
        let mut line = String::new();
        let n = match reader.read_line(&mut line) {
            Ok(n) => n,
            Err(_) => return Err(not_ours("its header is not text")),
        };
        if n == 0 || !line.ends_with('\n') {
            return Err(not_ours("its header is incomplete"));
        }
        len += n as u64;
        let line = line.trim_end_matches('\n');
        if first {
            if line != MAGIC {
                return Err(not_ours("it does not begin with the backup header"));
            }
            first = false;
            continue;
        }
        if line.is_empty() {
            break;
        }
        match line.split_once(": ") {
            Some(("bytes", v)) => bytes = v.parse::<u64>().ok(),
            Some(("sha256", v)) if v.len() == 64 => sha256 = Some(v.to_string()),
            _ => {}
        }
    }
    match (bytes, sha256) {
        (Some(bytes), Some(sha256)) => Ok(Header { len, bytes, sha256 }),
        _ => Err(not_ours("its header lacks the size or the checksum")),
    }
}

/// Copies the payload of the backup at `from` (after its header) into `to` if given, hashing
/// it; checks its size and checksum against the header.
fn check_payload(
    from: &Path,
    header: &Header,
    to: Option<(&mut File, &Path)>,
) -> Result<(), BackupError> {
    let corrupt = |detail: String| BackupError::Checksum {
        path: from.to_path_buf(),
        detail,
    };
    let mut file = File::open(from).map_err(io_err(from))?;
    std::io::copy(&mut (&mut file).take(header.len), &mut std::io::sink()).map_err(io_err(from))?;
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut sink = to;
    loop {
        let got = file.read(&mut buf).map_err(io_err(from))?;
        if got == 0 {
            break;
        }
        hasher.update(&buf[..got]);
        n += got as u64;
        if let Some((out, path)) = sink.as_mut() {
            out.write_all(&buf[..got]).map_err(io_err(path))?;
        }
    }
    if n != header.bytes {
        return Err(corrupt(format!(
            "it holds {n} bytes after its header, which promises {}",
            header.bytes
        )));
    }
    let actual = hex::encode(hasher.finalize());
    if actual != header.sha256 {
        return Err(corrupt(format!(
            "its checksum is {actual}, its header says {}",
            header.sha256
        )));
    }
    Ok(())
}

/// Restores the backup at `from` as `<data_dir>/portcullis.redb`.
pub fn restore(from: &Path, data_dir: &Path, force: bool) -> Result<RestoreReport, BackupError> {
    if !from.is_file() {
        return Err(BackupError::NoBackupFile(from.to_path_buf()));
    }
    // The backup first: a corrupt one changes nothing.
    let header = read_header(from)?;
    check_payload(from, &header, None)?;
    let target = data_dir.join(DATA_FILE);
    let existing = std::fs::metadata(&target).is_ok_and(|m| m.len() > 0);
    if is_live(&target) {
        return Err(BackupError::InUse(target));
    }
    if existing && !force {
        return Err(BackupError::Exists(target));
    }
    let created = CreatedDir::ensure(data_dir)?;
    let staged = TempFile::beside(&target, "restore")?;
    {
        let mut to = create_private(staged.path())?;
        // Checked again as it is written: the backup file may have changed since.
        check_payload(from, &header, Some((&mut to, staged.path())))?;
        to.sync_all().map_err(io_err(staged.path()))?;
    }
    let unrestorable = |detail: String| BackupError::Unrestorable {
        path: from.to_path_buf(),
        detail,
    };
    let contents = match verify::verify_file(staged.path()) {
        Ok(mut report) => {
            report.path = target.clone();
            report
        }
        Err(e) => return Err(unrestorable(e.to_string())),
    };
    // Records that do not decode would stop the server; a broken audit chain is restored as it
    // was (the report says so), since refusing would leave no way back from such a backup.
    if contents.problem_count > 0 {
        let first = contents.problems.first().cloned().unwrap_or_default();
        return Err(unrestorable(format!(
            "{} damaged records ({first})",
            contents.problem_count
        )));
    }
    // Held across the rename: no server can open the old file in the meantime.
    let holder = match quietly(|| redb::ReadOnlyDatabase::open(&target)) {
        Some(Ok(db)) => Some(db),
        Some(Err(
            redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch,
        )) => {
            return Err(BackupError::InUse(target));
        }
        // Missing, or too damaged to open: nothing holds it, and it is being replaced.
        Some(Err(_)) | None => None,
    };
    if !force && std::fs::metadata(&target).is_ok_and(|m| m.len() > 0) {
        return Err(BackupError::Exists(target));
    }
    staged.rename_to(&target)?;
    drop(holder);
    created.keep();
    Ok(RestoreReport {
        target,
        bytes: header.bytes,
        replaced: existing,
        contents,
    })
}

fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = file.read(&mut buf).map_err(io_err(path))?;
        if got == 0 {
            break;
        }
        hasher.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, hex::encode(hasher.finalize())))
}

/// A new file readable by its owner alone: snapshots hold key hashes and the audit log.
fn create_private(path: &Path) -> Result<File, BackupError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(io_err(path))
}

/// A file next to its destination (same file system, so the final rename is atomic), removed
/// unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    done: bool,
}

impl TempFile {
    fn beside(dest: &Path, purpose: &str) -> Result<TempFile, BackupError> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| BackupError::Io {
                path: dest.to_path_buf(),
                detail: "not a file name".into(),
            })?;
        let path = dest.with_file_name(format!(".{name}.{purpose}-{}", uuid::Uuid::new_v4()));
        Ok(TempFile { path, done: false })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file over `dest` and makes the rename durable.
    fn rename_to(mut self, dest: &Path) -> Result<(), BackupError> {
        std::fs::rename(&self.path, dest).map_err(io_err(dest))?;
        self.done = true;
        #[cfg(unix)]
        if let Some(dir) = dest.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A data directory made for a restore: removed again (if still empty) unless the restore
/// succeeded, so a refused restore leaves nothing behind.
struct CreatedDir(Option<PathBuf>);

impl CreatedDir {
    fn ensure(dir: &Path) -> Result<CreatedDir, BackupError> {
        if dir.is_dir() {
            return Ok(CreatedDir(None));
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(CreatedDir(Some(dir.to_path_buf())))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for CreatedDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A private temp directory, removed with everything in it when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> Result<Scratch, BackupError> {
        let path = std::env::temp_dir().join(format!("portcullis-{}", uuid::Uuid::new_v4()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&path).map_err(io_err(&path))?;
        Ok(Scratch(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, Change, Origin};
    use crate::store::{Store, StoreError};

    fn store_in(dir: &Path, entries: usize) -> Store {
        let store = Store::open(&dir.join(DATA_FILE)).unwrap();
        for i in 0..entries {
            store
                .write(&Actor::MasterKey, &Origin::default(), |tx| {
                    tx.audit(Change {
                        action: "created".into(),
                        table_name: "t".into(),
                        object_id: format!("o{i}"),
                        before_value: String::new(),
                        updated_values: "{}".into(),
                        within: Default::default(),
                    });
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        }
        store
    }

    #[test]
    fn backup_and_restore_round_trip_and_refuse_what_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        drop(store_in(&data, 3));
        let out = dir.path().join("b.bak");
        let report = backup(&data, &out).unwrap();
        assert!(report.contents.ok(), "{}", report.contents);
        assert_eq!(report.contents.chain.verified, 3);
        assert!(!report.snapshot.live);

        // Never over the data file itself.
        assert!(matches!(
            backup(&data, &data.join(DATA_FILE)),
            Err(BackupError::Unbackupable { .. })
        ));

        let restored = dir.path().join("restored");
        let r = restore(&out, &restored, false).unwrap();
        assert!(!r.replaced);
        assert_eq!(r.contents.chain.verified, 3);
        let store = Store::open(&restored.join(DATA_FILE)).unwrap();
        assert_eq!(store.audit_entries(1, 10).unwrap().len(), 3);
        // Held open by a store: refused even with --force.
        assert!(matches!(
            restore(&out, &restored, true),
            Err(BackupError::InUse(_))
        ));
        drop(store);
        assert!(matches!(
            restore(&out, &restored, false),
            Err(BackupError::Exists(_))
        ));
        assert!(restore(&out, &restored, true).unwrap().replaced);

        // A flipped byte in the payload, and a truncated file.
        let mut bytes = std::fs::read(&out).unwrap();
        let last = bytes.len() - 100;
        bytes[last] ^= 0x40;
        let flipped = dir.path().join("flipped.bak");
        std::fs::write(&flipped, &bytes).unwrap();
        let fresh = dir.path().join("fresh");
        assert!(matches!(
            restore(&flipped, &fresh, false),
            Err(BackupError::Checksum { .. })
        ));
        assert!(!fresh.exists());
        let truncated = dir.path().join("truncated.bak");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            restore(&truncated, &fresh, false),
            Err(BackupError::Checksum { .. })
        ));
        std::fs::write(&truncated, b"not a backup\n\n").unwrap();
        assert!(matches!(
            restore(&truncated, &fresh, false),
            Err(BackupError::NotABackup { .. })
        ));
    }

    #[test]
    fn a_snapshot_of_an_open_store_is_consistent() {
        // In-process, the open store locks the file exactly as a server process does.
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path(), 5);
        let src = dir.path().join(DATA_FILE);
        assert!(is_live(&src));
        let copy = dir.path().join("copy.redb");
        let snap = snapshot(&src, &copy).unwrap();
        assert!(snap.live);
        let report = verify::check_snapshot(&copy, &src).unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.chain.verified, 5);
        drop(store);
        assert!(!is_live(&src));
    }
}

#[cfg(test)]
mod load_tests {
    use super::*;
    use crate::audit::{Actor, Change, Origin};
    use crate::store::{Budget, KeyRecord, Store, StoreError};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn key(i: u64) -> KeyRecord {
        KeyRecord {
            token: format!("{i:064x}"),
            key_id: format!("id-{i}"),
            key_name: "sk-...0000".into(),
            key_alias: Some(format!("alias-{i}")),
            models: vec!["m".repeat(200)],
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

    fn add(store: &Store, i: u64) {
        store
            .write(&Actor::MasterKey, &Origin::default(), |tx| {
                tx.put_key(&key(i))?;
                tx.audit(Change {
                    action: "created".into(),
                    table_name: "LiteLLM_VerificationToken".into(),
                    object_id: format!("{i}"),
                    before_value: String::new(),
                    updated_values: "x".repeat(500),
                    within: Default::default(),
                });
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }

    #[test]
    fn snapshots_under_continuous_writes_are_each_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join(DATA_FILE);
        let store = Store::open(&src).unwrap();
        for i in 0..500 {
            add(&store, i);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 500;
                while !stop.load(Ordering::Relaxed) {
                    add(&store, i);
                    i += 1;
                }
                i
            })
        };
        let mut attempts = Vec::new();
        for n in 0..12 {
            let copy = dir.path().join(format!("copy-{n}.redb"));
            let snap = snapshot(&src, &copy).unwrap();
            attempts.push(snap.attempts);
            let report = verify::check_snapshot(&copy, &src).unwrap();
            assert!(report.ok(), "{report}");
            // One key and one entry per commit: equal counts mean no half commit was copied.
            let keys = report
                .records
                .iter()
                .find(|(t, _)| t == "keys_v2")
                .map(|(_, n)| *n);
            assert_eq!(keys, Some(report.chain.verified), "{report}");
            std::fs::remove_file(&copy).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let written = writer.join().unwrap();
        eprintln!(
            "{} commits during the test, file {} bytes, attempts {attempts:?}",
            written - 500,
            std::fs::metadata(&src).unwrap().len()
        );
    }
}
