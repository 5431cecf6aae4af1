//! Operating the data file with the real binary: `backup` while a gateway serves under write
//! load and `restore` of it, `verify` finding a tampered audit chain, the upgrade of a data file
//! written by the previous release (schema 1), and a data file from a newer release refused
//! and left byte-identical.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{MASTER_KEY, Options, binary, client};
use crate::keys::{Api, secret_of, sha256_hex};
use redb::{ReadableDatabase, ReadableTable};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEYS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("keys_v2");
const AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit_v2");
const AUDIT_HASHES: redb::TableDefinition<u64, &str> =
    redb::TableDefinition::new("audit_hashes_v1");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");

/// One run of the CLI: its exit code and everything it printed (stdout, then stderr).
struct Run {
    code: i32,
    out: String,
}

fn cli<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = Command::new(binary())
        .args(args)
        .env_remove("PORTCULLIS_DATA_DIR")
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn backup(data_dir: &Path, out: &Path) -> Run {
    cli([
        OsStr::new("backup"),
        OsStr::new("--data-dir"),
        data_dir.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ])
}

fn restore(from: &Path, data_dir: &Path, force: bool) -> Run {
    let mut args = vec![
        OsStr::new("restore"),
        OsStr::new("--from"),
        from.as_os_str(),
        OsStr::new("--data-dir"),
        data_dir.as_os_str(),
    ];
    if force {
        args.push(OsStr::new("--force"));
    }
    cli(args)
}

fn verify(data_dir: &Path) -> Run {
    cli([
        OsStr::new("verify"),
        OsStr::new("--data-dir"),
        data_dir.as_os_str(),
    ])
}

fn data_file(data_dir: &Path) -> PathBuf {
    data_dir.join("portcullis.redb")
}

/// The key hashes stored in a (closed) data file.
fn stored_tokens(data_dir: &Path) -> HashSet<String> {
    let db = redb::ReadOnlyDatabase::open(data_file(data_dir)).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(KEYS).unwrap();
    table
        .iter()
        .unwrap()
        .map(|row| row.unwrap().0.value().to_string())
        .collect()
}

/// Stops a gateway with SIGTERM and waits for its clean exit; returns its data dir (kept
/// alive by the returned temp dir handle).
fn stop(api: Api) -> (PathBuf, Arc<tempfile::TempDir>) {
    let Api { mut gw, .. } = api;
    gw.signal("TERM");
    let status = gw.wait_exit(Duration::from_secs(30)).expect("exit");
    assert!(status.success(), "{status}");
    (gw.data_path().to_path_buf(), gw.dir.clone())
}

// ---------------------------------------------------------------------------------------------
// backup and restore
// ---------------------------------------------------------------------------------------------

/// Keeps creating keys until `stop`; every acknowledged secret goes into `acked`.
async fn keep_writing(
    url: String,
    worker: usize,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let http = client();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let resp = http
            .post(&url)
            .bearer_auth(MASTER_KEY)
            .json(&json!({
                "key_alias": format!("load-{worker}-{i}"),
                "models": ["mock/*"],
                "max_budget": 5.0,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        acked.lock().unwrap().push(secret_of(&body));
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_taken_under_write_load_restore_every_acknowledged_key() {
    let api = Api::start();
    let live_dir = api.gw.data_path().to_path_buf();
    let work = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            tokio::spawn(keep_writing(
                api.gw.url("/key/generate"),
                w,
                acked.clone(),
                stop_writing.clone(),
            ))
        })
        .collect();
    let started = crate::harness::eventually(Duration::from_secs(20), || {
        acked.lock().unwrap().len() >= 20
    })
    .await;
    assert!(started, "the writers did not get going");

    // Backups while the writers run: each restores to a consistent state that holds every key
    // acknowledged before it began, but for at most the last commit (see store::backup).
    let mut overlapping = 0;
    for n in 0..4 {
        let before: Vec<String> = acked.lock().unwrap().clone();
        let out = work.path().join(format!("during-{n}.bak"));
        let run = {
            let (live_dir, out) = (live_dir.clone(), out.clone());
            tokio::task::spawn_blocking(move || backup(&live_dir, &out))
                .await
                .unwrap()
        };
        assert_eq!(run.code, 0, "{}", run.out);
        assert!(run.out.contains("taken while serving"), "{}", run.out);
        overlapping += acked.lock().unwrap().len() - before.len();
        let restored = work.path().join(format!("during-{n}"));
        let run = restore(&out, &restored, false);
        assert_eq!(run.code, 0, "{}", run.out);
        let run = verify(&restored);
        assert_eq!(run.code, 0, "backup {n} is not consistent:\n{}", run.out);
        let tokens = stored_tokens(&restored);
        let missing = before
            .iter()
            .filter(|s| !tokens.contains(&sha256_hex(s)))
            .count();
        assert!(
            missing <= 1,
            "backup {n} lacks {missing} of the {} keys acknowledged before it began",
            before.len()
        );
    }

    assert!(overlapping > 0, "no key was written while a backup ran");
    stop_writing.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40, "only {} keys were written", acked.len());

    // The final backup, once writing stopped, holds every acknowledged key.
    let last = work.path().join("final.bak");
    let run = backup(&live_dir, &last);
    assert_eq!(run.code, 0, "{}", run.out);
    // Every key a mid-load backup held was acknowledged in the end: nothing half-written.
    let all: HashSet<String> = acked.iter().map(|s| sha256_hex(s)).collect();
    for n in 0..4 {
        let tokens = stored_tokens(&work.path().join(format!("during-{n}")));
        assert!(tokens.is_subset(&all), "backup {n} holds unknown keys");
    }

    let fresh = work.path().join("fresh");
    let run = restore(&last, &fresh, false);
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(run.out.contains("restored"), "{}", run.out);

    // An existing data file is not replaced without --force, and stays as it was.
    let before = std::fs::read(data_file(&fresh)).unwrap();
    let other = work.path().join("during-0.bak");
    let run = restore(&other, &fresh, false);
    assert_eq!(run.code, 64, "{}", run.out);
    assert!(
        run.out.contains("already exists; pass --force"),
        "{}",
        run.out
    );
    assert!(std::fs::read(data_file(&fresh)).unwrap() == before);

    // A backup with one byte flipped is refused before anything is touched.
    let mut bytes = std::fs::read(&last).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x10;
    let flipped = work.path().join("flipped.bak");
    std::fs::write(&flipped, &bytes).unwrap();
    let untouched = work.path().join("untouched");
    let run = restore(&flipped, &untouched, false);
    assert_eq!(run.code, 1, "{}", run.out);
    assert!(run.out.contains("is corrupt"), "{}", run.out);
    assert!(run.out.contains("checksum"), "{}", run.out);
    assert!(run.out.contains("nothing was restored"), "{}", run.out);
    assert!(!untouched.exists());
    let run = restore(&flipped, &fresh, true);
    assert_eq!(run.code, 1, "{}", run.out);
    assert!(std::fs::read(data_file(&fresh)).unwrap() == before);

    // A gateway on the restored data knows every acknowledged key, with its fields.
    let restored = Api::on(Options::new().data_dir(&fresh).start());
    for (i, secret) in acked.iter().enumerate() {
        let (status, info) = restored.get(&format!("/key/info?key={secret}")).await;
        assert_eq!(status, 200, "key {i} is missing after the restore: {info}");
        assert_eq!(info["info"]["max_budget"], 5.0, "{info}");
        assert!(
            info["info"]["key_alias"]
                .as_str()
                .is_some_and(|a| a.starts_with("load-")),
            "{info}"
        );
    }
    assert_eq!(restored.use_key(&acked[0]).await, 200);
    assert_eq!(restored.use_key(acked.last().unwrap()).await, 200);

    // verify passes on it while it serves; restore refuses a data dir a server holds.
    let run = verify(&fresh);
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(run.out.contains("audit chain: intact"), "{}", run.out);
    let run = restore(&last, &fresh, true);
    assert_eq!(run.code, 1, "{}", run.out);
    assert!(
        run.out.contains("in use by a running Portcullis"),
        "{}",
        run.out
    );
    assert_eq!(restored.use_key(&acked[0]).await, 200);
    drop(api);
}

// ---------------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------------

/// A copy of `pristine` in a new data dir under `root`, changed by `f` (given the raw audit
/// tables), and its data dir.
fn tampered(
    pristine: &Path,
    root: &Path,
    name: &str,
    f: impl FnOnce(&mut redb::Table<u64, &[u8]>, &mut redb::Table<u64, &str>),
) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(pristine, data_file(&dir)).unwrap();
    let db = redb::Database::open(data_file(&dir)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut entries = txn.open_table(AUDIT).unwrap();
        let mut hashes = txn.open_table(AUDIT_HASHES).unwrap();
        f(&mut entries, &mut hashes);
    }
    txn.commit().unwrap();
    dir
}

fn entry(t: &redb::Table<u64, &[u8]>, seq: u64) -> Vec<u8> {
    t.get(seq).unwrap().unwrap().value().to_vec()
}

fn hash(t: &redb::Table<u64, &str>, seq: u64) -> String {
    t.get(seq).unwrap().unwrap().value().to_string()
}

/// Runs verify on `dir`, expecting it to find damage; checks the file was not changed.
fn verify_damaged(dir: &Path) -> String {
    let before = std::fs::read(data_file(dir)).unwrap();
    let run = verify(dir);
    assert_eq!(run.code, 1, "{}", run.out);
    assert!(std::fs::read(data_file(dir)).unwrap() == before);
    run.out
}

#[tokio::test]
async fn verify_names_the_first_tampered_audit_entry() {
    let api = Api::start();
    for i in 0..6 {
        api.generate(json!({"key_alias": format!("audited-{i}")}))
            .await;
    }
    let (data, _keep) = stop(api);
    let pristine = data_file(&data);
    let run = verify(&data);
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(
        run.out.contains("audit chain: intact, 6 entries"),
        "{}",
        run.out
    );
    let work = tempfile::tempdir().unwrap();

    // One entry's bytes changed (the last character of the hash it names), its hash left.
    let dir = tampered(&pristine, work.path(), "modified", |e, _| {
        let mut b = entry(e, 3);
        let last = b.len() - 1;
        b[last] ^= 0x01;
        e.insert(3, b.as_slice()).unwrap();
    });
    let out = verify_damaged(&dir);
    assert!(out.contains("damaged: audit entry 3 is modified"), "{out}");
    assert!(out.contains("BROKEN after 2 intact entries"), "{out}");

    // Its action rewritten and its hash recomputed: the next entry no longer links to it.
    let dir = tampered(&pristine, work.path(), "rehashed", |e, h| {
        let mut b = entry(e, 3);
        let at = b
            .windows(7)
            .position(|w| w == b"created")
            .expect("a `created` entry");
        b[at..at + 7].copy_from_slice(b"deleted");
        e.insert(3, b.as_slice()).unwrap();
        h.insert(3, hex::encode(Sha256::digest(&b)).as_str())
            .unwrap();
    });
    let out = verify_damaged(&dir);
    assert!(out.contains("audit entry 4 is unlinked"), "{out}");

    // An entry deleted from the middle.
    let dir = tampered(&pristine, work.path(), "deleted", |e, h| {
        e.remove(4).unwrap();
        h.remove(4).unwrap();
    });
    let out = verify_damaged(&dir);
    assert!(out.contains("audit entry 4 is missing"), "{out}");
    assert!(out.contains("entry 3 is followed by entry 5"), "{out}");

    // Two entries swapped, hashes and all.
    let dir = tampered(&pristine, work.path(), "reordered", |e, h| {
        let (b2, b3, h2, h3) = (entry(e, 2), entry(e, 3), hash(h, 2), hash(h, 3));
        e.insert(2, b3.as_slice()).unwrap();
        e.insert(3, b2.as_slice()).unwrap();
        h.insert(2, h3.as_str()).unwrap();
        h.insert(3, h2.as_str()).unwrap();
    });
    let out = verify_damaged(&dir);
    assert!(out.contains("audit entry 2 is misplaced"), "{out}");

    // Bytes flipped under redb (bit rot): the page checksums give them away.
    let rotten = work.path().join("bitrot");
    std::fs::create_dir(&rotten).unwrap();
    let mut bytes = std::fs::read(&pristine).unwrap();
    let alias = b"audited-5";
    let mut flipped = 0;
    for at in 0..bytes.len() - alias.len() {
        if &bytes[at..at + alias.len()] == alias {
            bytes[at + 2] ^= 0x01;
            flipped += 1;
        }
    }
    assert!(flipped > 0);
    std::fs::write(data_file(&rotten), &bytes).unwrap();
    let out = verify_damaged(&rotten);
    assert!(out.contains("fails redb's integrity check"), "{out}");

    // The alias `audit verify` runs the same checks.
    let run = cli([
        OsStr::new("audit"),
        OsStr::new("verify"),
        OsStr::new("--data-dir"),
        dir.as_os_str(),
    ]);
    assert_eq!(run.code, 1, "{}", run.out);
    assert!(
        run.out.contains("audit entry 2 is misplaced"),
        "{}",
        run.out
    );

    // No data file: a usage error.
    let run = verify(&work.path().join("nowhere"));
    assert_eq!(run.code, 64, "{}", run.out);
    assert!(run.out.contains("no data file"), "{}", run.out);
}

// ---------------------------------------------------------------------------------------------
// schema upgrade and refusal
// ---------------------------------------------------------------------------------------------

const FIXTURE_ALPHA: &str = "sk-fixture-alpha-0123456789abcdef";
const FIXTURE_BETA: &str = "sk-fixture-beta-0123456789abcdef";

#[tokio::test]
async fn a_schema_1_data_file_from_the_previous_release_is_upgraded() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema1/portcullis.redb");
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(&fixture, data_file(&data)).unwrap();

    // verify reads the old layout without changing it.
    let run = verify(&data);
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(run.out.contains("schema 1 (older"), "{}", run.out);
    assert!(run.out.contains("keys_v1: 2 records"), "{}", run.out);
    assert!(
        std::fs::read(data_file(&data)).unwrap() == std::fs::read(&fixture).unwrap(),
        "verify changed the file"
    );

    let api = Api::on(Options::new().data_dir(&data).start());
    assert_eq!(api.use_key(FIXTURE_ALPHA).await, 200);
    assert_eq!(api.use_key(FIXTURE_BETA).await, 200);
    assert_eq!(api.use_key("sk-fixture-gamma-0123456789abcdef").await, 401);

    let (status, alpha) = api.get(&format!("/key/info?key={FIXTURE_ALPHA}")).await;
    assert_eq!(status, 200, "{alpha}");
    let info = &alpha["info"];
    assert_eq!(info["key_alias"], "fixture-alpha", "{alpha}");
    assert_eq!(info["token"], sha256_hex(FIXTURE_ALPHA).as_str());
    assert_eq!(info["models"], json!(["mock/*", "gpt-4o-mini"]), "{alpha}");
    assert_eq!(info["max_budget"], 12.5, "{alpha}");
    assert_eq!(info["budget_duration"], "30d", "{alpha}");
    assert_eq!(info["rpm_limit"], 60, "{alpha}");
    assert_eq!(info["tpm_limit"], 1000, "{alpha}");
    assert_eq!(info["metadata"]["made_by"], "schema1-fixture", "{alpha}");
    assert_eq!(info["blocked"], false, "{alpha}");

    let (status, beta) = api.get(&format!("/key/info?key={FIXTURE_BETA}")).await;
    assert_eq!(status, 200, "{beta}");
    let info = &beta["info"];
    assert_eq!(info["key_alias"], "fixture-beta", "{beta}");
    assert_eq!(info["models"], json!(["gpt-4o-mini"]), "{beta}");
    assert_eq!(info["max_budget"], 3.25, "{beta}");
    assert_eq!(info["soft_budget"], 2.0, "{beta}");
    assert_eq!(info["max_parallel_requests"], 2, "{beta}");

    // The model restriction still applies, and the alias index came across.
    let (status, models) = api.get_as(FIXTURE_BETA, "/v1/models").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["gpt-4o-mini"], "{models}");
    let (status, _) = api
        .post("/key/generate", json!({"key_alias": "fixture-beta"}))
        .await;
    assert_eq!(status, 409);

    // The audit chain goes on from the old entries (kept byte for byte in their old table)
    // into the new layout, and search covers both.
    let (_, before) = api.get("/audit?page_size=100").await;
    let old_entries = before["total"].as_u64().unwrap();
    assert!(old_entries >= 2, "{before}");
    let (status, created) = api
        .post("/key/generate", json!({"key_alias": "after-upgrade"}))
        .await;
    assert_eq!(status, 200, "{created}");
    let (_, after) = api.get("/audit?page_size=100").await;
    assert_eq!(after["total"].as_u64().unwrap(), old_entries + 1, "{after}");
    let (status, found) = api.get("/audit/search?q=fixture-alpha").await;
    assert_eq!(status, 200, "{found}");
    assert!(found["total"].as_u64().unwrap() >= 1, "{found}");
    let (status, found) = api.get("/audit/search?q=after-upgrade").await;
    assert_eq!(found["total"], 1, "{status} {found}");

    // Stopped, the file is at the current schema and verifies.
    let (data, _keep) = stop(api);
    let run = verify(&data);
    assert_eq!(run.code, 0, "{}", run.out);
    assert!(run.out.contains(": schema 6\n"), "{}", run.out);
    assert!(
        run.out
            .contains(&format!("audit chain: intact, {} entries", old_entries + 1)),
        "{}",
        run.out
    );
    // The two migrated keys and the one made after the upgrade.
    assert!(run.out.contains("keys_v2: 3 records"), "{}", run.out);
    assert!(!run.out.contains("keys_v1"), "{}", run.out);
}

/// A data file (in a new data dir under `root`) marked as written by schema 99.
fn newer_data_dir(root: &Path) -> PathBuf {
    let dir = root.join("newer");
    std::fs::create_dir(&dir).unwrap();
    let db = redb::Database::create(data_file(&dir)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("format", b"portcullis".as_slice()).unwrap();
        meta.insert("schema_version", 99u32.to_le_bytes().as_slice())
            .unwrap();
        let future: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("keys_v9");
        txn.open_table(future)
            .unwrap()
            .insert("k", b"from the future".as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    dir
}

#[test]
fn a_data_file_from_a_newer_schema_is_refused_and_left_untouched() {
    let work = tempfile::tempdir().unwrap();
    let dir = newer_data_dir(work.path());
    let file = data_file(&dir);
    let original = std::fs::read(&file).unwrap();
    let unchanged = || std::fs::read(&file).unwrap() == original;

    let (status, log) = Options::new().data_dir(&dir).start_expect_failure();
    assert!(!status.success(), "{log}");
    assert!(log.contains("written by a newer Portcullis"), "{log}");
    assert!(log.contains("schema 99, this binary knows 6"), "{log}");
    assert!(unchanged(), "serve changed the newer file");

    let run = verify(&dir);
    assert_eq!(run.code, 1, "{}", run.out);
    assert!(
        run.out.contains("written by a newer Portcullis"),
        "{}",
        run.out
    );
    assert!(run.out.contains("schema 99"), "{}", run.out);
    assert!(unchanged(), "verify changed the newer file");

    let out = work.path().join("newer.bak");
    let run = backup(&dir, &out);
    assert_eq!(run.code, 1, "{}", run.out);
    assert!(run.out.contains("schema 99"), "{}", run.out);
    assert!(!out.exists());
    assert!(unchanged(), "backup changed the newer file");

    // A backup of it (as a newer release would write one) is not restored either.
    let sha = hex::encode(Sha256::digest(&original));
    let mut crafted = format!(
        "PORTCULLIS-BACKUP 1\nschema: 99\nbytes: {}\nsha256: {sha}\n\n",
        original.len()
    )
    .into_bytes();
    crafted.extend_from_slice(&original);
    let crafted_path = work.path().join("crafted.bak");
    std::fs::write(&crafted_path, crafted).unwrap();
    let target = work.path().join("target");
    let run = restore(&crafted_path, &target, false);
    assert_eq!(run.code, 1, "{}", run.out);
    assert!(run.out.contains("cannot be restored"), "{}", run.out);
    assert!(run.out.contains("schema 99"), "{}", run.out);
    assert!(!data_file(&target).exists());
    assert!(unchanged());
}

/// A data file damaged page by page (redb panics on some such files): every command reports
/// damage with exit 1 — never a crash — and `restore --force` replaces it, as the server's
/// own advice says.
#[tokio::test]
async fn damaged_data_files_are_reported_and_restore_force_replaces_them() {
    let api = Api::start();
    for i in 0..20 {
        api.generate(json!({"key_alias": format!("d{i}")})).await;
    }
    let (dir, _keep) = stop(api);
    let good = dir.join("good.pcb");
    assert_eq!(backup(&dir, &good).code, 0);
    let pristine = std::fs::read(data_file(&dir)).unwrap();
    for page in 1..(pristine.len() / 4096).min(24) {
        let mut damaged = pristine.clone();
        damaged[page * 4096..(page + 1) * 4096].fill(0);
        std::fs::write(data_file(&dir), &damaged).unwrap();
        for run in [verify(&dir), backup(&dir, &dir.join("again.pcb"))] {
            assert!(
                matches!(run.code, 0 | 1),
                "page {page}: exit {} {}",
                run.code,
                run.out
            );
            assert!(!run.out.contains("panicked"), "page {page}: {}", run.out);
        }
        let run = restore(&good, &dir, true);
        assert_eq!(run.code, 0, "page {page}: {}", run.out);
        assert_eq!(verify(&dir).code, 0, "page {page}");
    }
}
