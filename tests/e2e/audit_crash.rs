//! Crash test for the audit trail: a gateway under continuous management writes is killed with
//! SIGKILL at random points (once while its search index is being rebuilt right after start-up),
//! restarted on the same data dir, and checked — every change a client saw acknowledged has its
//! audit entry (through the search index and in the table itself), the index catches up to the
//! table with no entry missing or doubled, and `portcullis audit verify` finds the chain intact.
//!
//! A request in flight at a kill may or may not have committed: it is "unknown", never counted
//! as acknowledged, and only widens the bounds the counts must fall in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{Gateway, MASTER_KEY, Options, binary, client};
use crate::keys::sha256_hex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const WRITERS: usize = 4;
/// Kills under load, at a random 150–900 ms into each stretch of load.
const LOAD_KILLS: usize = 5;
/// After which load kills the next start is killed again right after start-up, while its index
/// catches up: after the first, with the index deleted (so it is being rebuilt from the whole
/// table); after the second, with the index as the kill left it (behind by what it had not
/// committed yet).
const EARLY_KILLS_AFTER: [usize; 2] = [2, 4];
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(20);
/// Acknowledged creations looked up per search (`object:a OR object:b ...`).
const BATCH: usize = 20;

// ---------------------------------------------------------------------------------------------
// What the clients saw
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    Live,
    /// The delete was acknowledged.
    Deleted,
    /// The delete was in flight at a kill: the key may or may not exist.
    MaybeDeleted,
}

#[derive(Debug, Clone)]
struct KeyRec {
    secret: String,
    token: String,
    alias: String,
    /// Updates acknowledged / in flight at a kill.
    updates: usize,
    unknown_updates: usize,
    /// False while the key's last update is unknown (then its alias may be either).
    alias_known: bool,
    state: KeyState,
}

/// One writer's record of its acknowledged (and unknown) changes.
#[derive(Debug, Default)]
struct Ledger {
    keys: Vec<KeyRec>,
    /// Acknowledged team creations: team ids.
    teams: Vec<String>,
    unknown_key_creates: usize,
    unknown_team_creates: usize,
    /// Real answers other than 200 (none are expected).
    refused: Vec<String>,
    acked: usize,
    unknown: usize,
    not_sent: usize,
}

impl Ledger {
    fn merge(&mut self, other: Ledger) {
        self.keys.extend(other.keys);
        self.teams.extend(other.teams);
        self.unknown_key_creates += other.unknown_key_creates;
        self.unknown_team_creates += other.unknown_team_creates;
        self.refused.extend(other.refused);
        self.acked += other.acked;
        self.unknown += other.unknown;
        self.not_sent += other.not_sent;
    }
}

enum Outcome {
    /// 200 and the whole answer read: the change and its entry committed.
    Acked(Value),
    /// Sent, but no complete answer (the server died): may or may not have committed.
    Unknown,
    /// The connection was never made (the server was down): nothing was sent.
    NotSent,
    /// A complete answer other than 200.
    Refused(u16, String),
}

async fn call(http: &reqwest::Client, url: &str, body: &Value) -> Outcome {
    let resp = match http
        .post(url)
        .bearer_auth(MASTER_KEY)
        .json(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Outcome::NotSent,
        Err(_) => return Outcome::Unknown,
    };
    let status = resp.status().as_u16();
    let Ok(bytes) = resp.bytes().await else {
        return Outcome::Unknown;
    };
    if status != 200 {
        return Outcome::Refused(status, String::from_utf8_lossy(&bytes).into_owned());
    }
    match serde_json::from_slice(&bytes) {
        Ok(v) => Outcome::Acked(v),
        Err(_) => Outcome::Unknown,
    }
}

/// Where the live server is (it moves to a new port on every restart).
struct Shared {
    base: RwLock<String>,
    stop: AtomicBool,
}

/// Creates keys (and some teams), updates and deletes its own keys, until told to stop.
async fn writer(id: usize, seed: u64, shared: Arc<Shared>) -> Ledger {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut ledger = Ledger::default();
    let mut n = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let base = shared.base.read().unwrap().clone();
        let live: Vec<usize> = (0..ledger.keys.len())
            .filter(|&i| ledger.keys[i].state == KeyState::Live)
            .collect();
        let roll = rng.random_range(0..100);
        let pick = (!live.is_empty()).then(|| live[rng.random_range(0..live.len())]);
        let outcome = match (roll, pick) {
            (0..20, Some(k)) => {
                let alias = format!("crash-{id}-{n}-renamed");
                let body = json!({"key": ledger.keys[k].secret, "key_alias": alias});
                let out = call(&http, &format!("{base}/key/update"), &body).await;
                match &out {
                    Outcome::Acked(_) => {
                        ledger.keys[k].updates += 1;
                        ledger.keys[k].alias = alias;
                        ledger.keys[k].alias_known = true;
                    }
                    Outcome::Unknown => {
                        ledger.keys[k].unknown_updates += 1;
                        ledger.keys[k].alias_known = false;
                    }
                    _ => {}
                }
                out
            }
            (20..28, Some(k)) => {
                let body = json!({"keys": [ledger.keys[k].secret]});
                let out = call(&http, &format!("{base}/key/delete"), &body).await;
                match &out {
                    Outcome::Acked(_) => ledger.keys[k].state = KeyState::Deleted,
                    Outcome::Unknown => ledger.keys[k].state = KeyState::MaybeDeleted,
                    _ => {}
                }
                out
            }
            (28..34, _) => {
                let body = json!({"team_alias": format!("crash-team-{id}-{n}")});
                let out = call(&http, &format!("{base}/team/new"), &body).await;
                match &out {
                    Outcome::Acked(v) => match v["team_id"].as_str() {
                        Some(t) => ledger.teams.push(t.to_string()),
                        None => ledger.refused.push(format!("/team/new answered {v}")),
                    },
                    Outcome::Unknown => ledger.unknown_team_creates += 1,
                    _ => {}
                }
                out
            }
            _ => {
                let alias = format!("crash-{id}-{n}");
                let body = json!({"key_alias": alias, "max_budget": 5.0});
                let out = call(&http, &format!("{base}/key/generate"), &body).await;
                match &out {
                    Outcome::Acked(v) => {
                        let secret = v["key"].as_str().unwrap_or_default().to_string();
                        let token = v["token"].as_str().unwrap_or_default().to_string();
                        if secret.is_empty() || token != sha256_hex(&secret) {
                            ledger
                                .refused
                                .push(format!("/key/generate answered without key/token: {v}"));
                        } else {
                            ledger.keys.push(KeyRec {
                                secret,
                                token,
                                alias,
                                updates: 0,
                                unknown_updates: 0,
                                alias_known: true,
                                state: KeyState::Live,
                            });
                        }
                    }
                    Outcome::Unknown => ledger.unknown_key_creates += 1,
                    _ => {}
                }
                out
            }
        };
        match outcome {
            Outcome::Acked(_) => ledger.acked += 1,
            Outcome::Unknown => {
                ledger.unknown += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Outcome::NotSent => {
                ledger.not_sent += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Outcome::Refused(status, body) => {
                ledger
                    .refused
                    .push(format!("writer {id} op {n}: HTTP {status}: {body}"));
            }
        }
    }
    ledger
}

// ---------------------------------------------------------------------------------------------
// Failure context
// ---------------------------------------------------------------------------------------------

/// What a failure message carries: the seed, the kill timings, the servers' log tails.
struct Context {
    seed: u64,
    events: Vec<String>,
    /// The log of every server instance so far (`--- instance N ---` between them).
    logs: String,
    instance: usize,
}

impl Context {
    fn event(&mut self, started: Instant, what: String) {
        let line = format!("[{:>6} ms] {what}", started.elapsed().as_millis());
        eprintln!("audit_crash: {line}");
        self.events.push(line);
    }

    /// Keeps an instance's log before it is dropped (each instance has its own temp dir).
    fn keep_log(&mut self, gw: &Gateway) {
        self.instance += 1;
        let _ = writeln!(self.logs, "--- instance {} ---", self.instance);
        self.logs.push_str(&gw.log());
    }

    fn fail(&self, live: Option<&Gateway>, msg: &str) -> ! {
        let mut logs = self.logs.clone();
        if let Some(gw) = live {
            let _ = writeln!(logs, "--- instance {} (live) ---", self.instance + 1);
            logs.push_str(&gw.log());
        }
        let lines: Vec<&str> = logs.lines().collect();
        let tail = lines[lines.len().saturating_sub(120)..].join("\n");
        panic!(
            "audit crash test failed: {msg}\n\
             seed: {} (rerun with PORTCULLIS_CRASH_SEED={})\n\
             events:\n  {}\n\
             server log tail:\n{tail}",
            self.seed,
            self.seed,
            self.events.join("\n  "),
        );
    }
}

macro_rules! check {
    ($ctx:expr, $gw:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            $ctx.fail($gw, &format!($($msg)+));
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn get(http: &reqwest::Client, gw: &Gateway, path: &str) -> (u16, Value) {
    let resp = http
        .get(gw.url(path))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

async fn search(http: &reqwest::Client, gw: &Gateway, q: &str, extra: &str) -> (u16, Value) {
    get(
        http,
        gw,
        &format!("/audit/search?q={}{extra}", query_escape(q)),
    )
    .await
}

fn kill(gw: &mut Gateway) {
    gw.signal("KILL");
    let status = gw.wait_exit(Duration::from_secs(10));
    assert!(status.is_some(), "the gateway survived SIGKILL");
}

fn start(data_dir: &Path) -> Gateway {
    Options::new().data_dir(data_dir).start()
}

fn seed() -> u64 {
    if let Some(s) = std::env::var("PORTCULLIS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_crash_kill9_under_management_writes_loses_no_acknowledged_entry() {
    let started = Instant::now();
    let seed = seed();
    eprintln!("audit_crash: seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ctx = Context {
        seed,
        events: Vec::new(),
        logs: String::new(),
        instance: 0,
    };
    let http = client();
    let work = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = work.path().join("data");

    let mut gw = start(&data_dir);
    let shared = Arc::new(Shared {
        base: RwLock::new(gw.url("")),
        stop: AtomicBool::new(false),
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(w, seed, shared.clone())))
        .collect();

    for cycle in 0..LOAD_KILLS {
        let delay = rng.random_range(150..=900u64);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        kill(&mut gw);
        ctx.event(
            started,
            format!("cycle {cycle}: SIGKILL {delay} ms into the load"),
        );
        ctx.keep_log(&gw);
        drop(gw);
        if let Some(which) = EARLY_KILLS_AFTER.iter().position(|&c| c == cycle) {
            // Kill the next start while its index catches up, under the writers' load.
            let rebuild = which == 0;
            if rebuild {
                std::fs::remove_dir_all(data_dir.join("audit-index")).unwrap();
            }
            let mut early = start(&data_dir);
            *shared.base.write().unwrap() = early.url("");
            let pause = rng.random_range(0..=30u64);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let (_, head) = get(&http, &early, "/audit/head").await;
            kill(&mut early);
            ctx.event(
                started,
                format!(
                    "cycle {cycle}: {}SIGKILL {pause} ms after ready, \
                     head then seq {} with index lag {}",
                    if rebuild { "index deleted; " } else { "" },
                    head["seq"],
                    head["index"]["lag"]
                ),
            );
            ctx.keep_log(&early);
        }
        gw = start(&data_dir);
        *shared.base.write().unwrap() = gw.url("");
        ctx.event(started, format!("cycle {cycle}: restarted on {}", gw.addr));
    }
    // A last stretch of load on the final instance, then the writers stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut ledger = Ledger::default();
    for w in writers {
        ledger.merge(w.await.unwrap());
    }
    ctx.event(
        started,
        format!(
            "writers stopped: {} acknowledged, {} unknown (in flight at a kill), {} not sent; \
             {} keys and {} teams created",
            ledger.acked,
            ledger.unknown,
            ledger.not_sent,
            ledger.keys.len(),
            ledger.teams.len()
        ),
    );
    check!(
        ctx,
        Some(&gw),
        ledger.refused.is_empty(),
        "the server refused writes it should have taken:\n{}",
        ledger.refused.join("\n")
    );
    check!(
        ctx,
        Some(&gw),
        ledger.keys.len() >= 50,
        "too little load to judge: {} keys",
        ledger.keys.len()
    );

    // The index catches up to the table.
    let deadline = Instant::now() + CATCH_UP_DEADLINE;
    let head = loop {
        let (s, head) = get(&http, &gw, "/audit/head").await;
        check!(ctx, Some(&gw), s == 200, "/audit/head: {s} {head}");
        if head["index"]["lag"] == 0 && head["index"]["healthy"] == true {
            break head;
        }
        if Instant::now() > deadline {
            ctx.fail(
                Some(&gw),
                &format!("the index did not catch up within {CATCH_UP_DEADLINE:?}: {head}"),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let head_seq = head["seq"].as_u64().unwrap();
    ctx.event(started, format!("index caught up: {head}"));
    check!(
        ctx,
        Some(&gw),
        head["pruned_through_seq"].is_null(),
        "nothing should be pruned: {head}"
    );
    check!(
        ctx,
        Some(&gw),
        head_seq as usize >= ledger.acked,
        "the log holds {head_seq} entries but {} changes were acknowledged",
        ledger.acked
    );

    // Everything, through the index: exactly the entries 1..=head, each once.
    let (s, all) = search(&http, &gw, "", "&limit=1").await;
    check!(ctx, Some(&gw), s == 200, "/audit/search: {s} {all}");
    check!(
        ctx,
        Some(&gw),
        all["total"].as_u64() == Some(head_seq) && all["index_lag"] == 0,
        "the index holds {} entries, the table {head_seq} (a gap or a duplicate): {}",
        all["total"],
        json!({"indexed_through": all["indexed_through"], "index_lag": all["index_lag"]})
    );
    let mut seqs: Vec<u64> = Vec::new();
    // (object_id, action) -> number of entries
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    let mut key_creates = 0usize;
    let mut team_creates = 0usize;
    let mut cursor = String::new();
    loop {
        let (s, page) = search(
            &http,
            &gw,
            "",
            &format!("&sort_order=asc&limit=1000&cursor={cursor}"),
        )
        .await;
        check!(ctx, Some(&gw), s == 200, "/audit/search page: {s} {page}");
        for e in page["entries"].as_array().unwrap() {
            seqs.push(e["id"].as_str().unwrap().parse().unwrap());
            let object = e["object_id"].as_str().unwrap_or_default().to_string();
            let action = e["action"].as_str().unwrap_or_default().to_string();
            if action == "created" {
                match e["table_name"].as_str() {
                    Some("LiteLLM_VerificationToken") => key_creates += 1,
                    Some("LiteLLM_TeamTable") => team_creates += 1,
                    _ => {}
                }
            }
            *counts.entry((object, action)).or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let expected: Vec<u64> = (1..=head_seq).collect();
    if seqs != expected {
        let have: HashSet<u64> = seqs.iter().copied().collect();
        let missing: Vec<u64> = expected
            .iter()
            .copied()
            .filter(|s| !have.contains(s))
            .take(20)
            .collect();
        let mut seen = HashSet::new();
        let doubled: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|s| !seen.insert(*s))
            .take(20)
            .collect();
        ctx.fail(
            Some(&gw),
            &format!(
                "paging the index gave {} entries for a log of {head_seq}; \
                 missing (first 20): {missing:?}; doubled (first 20): {doubled:?}",
                seqs.len()
            ),
        );
    }

    // Every acknowledged creation, by batched index queries.
    let created: Vec<&str> = ledger
        .keys
        .iter()
        .map(|k| k.token.as_str())
        .chain(ledger.teams.iter().map(String::as_str))
        .collect();
    for batch in created.chunks(BATCH) {
        let ors: Vec<String> = batch.iter().map(|id| format!("object:{id}")).collect();
        let q = format!("action:created ({})", ors.join(" OR "));
        let (s, found) = search(&http, &gw, &q, "&limit=100").await;
        check!(ctx, Some(&gw), s == 200, "search {q}: {s} {found}");
        if found["total"].as_u64() != Some(batch.len() as u64) {
            let hit: HashSet<&str> = found["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["object_id"].as_str())
                .collect();
            let missing: Vec<&&str> = batch.iter().filter(|id| !hit.contains(**id)).collect();
            ctx.fail(
                Some(&gw),
                &format!(
                    "acknowledged creations without exactly one entry in the index: \
                     total {} for {} objects; missing {missing:?}",
                    found["total"],
                    batch.len()
                ),
            );
        }
    }

    // Each acknowledged change has its entry; unknown ones at most theirs.
    let count = |object: &str, action: &str| {
        counts
            .get(&(object.to_string(), action.to_string()))
            .copied()
            .unwrap_or(0)
    };
    for k in &ledger.keys {
        let t = k.token.as_str();
        let (created, updated, deleted) = (
            count(t, "created"),
            count(t, "updated"),
            count(t, "deleted"),
        );
        let deleted_ok = match k.state {
            KeyState::Live => deleted == 0,
            KeyState::Deleted => deleted == 1,
            KeyState::MaybeDeleted => deleted <= 1,
        };
        check!(
            ctx,
            Some(&gw),
            created == 1
                && updated >= k.updates
                && updated <= k.updates + k.unknown_updates
                && deleted_ok,
            "key {t} ({:?}, {} updates acknowledged, {} unknown): entries created {created}, \
             updated {updated}, deleted {deleted}",
            k.state,
            k.updates,
            k.unknown_updates
        );
    }
    for t in &ledger.teams {
        check!(
            ctx,
            Some(&gw),
            count(t, "created") == 1,
            "team {t}: {} created entries",
            count(t, "created")
        );
    }
    check!(
        ctx,
        Some(&gw),
        key_creates >= ledger.keys.len()
            && key_creates <= ledger.keys.len() + ledger.unknown_key_creates
            && team_creates >= ledger.teams.len()
            && team_creates <= ledger.teams.len() + ledger.unknown_team_creates,
        "created entries: {key_creates} keys for {} acknowledged + {} unknown, \
         {team_creates} teams for {} acknowledged + {} unknown",
        ledger.keys.len(),
        ledger.unknown_key_creates,
        ledger.teams.len(),
        ledger.unknown_team_creates
    );

    // LiteLLM's /audit on a sample of keys agrees.
    for k in ledger.keys.iter().step_by((ledger.keys.len() / 25).max(1)) {
        let (s, page) = get(
            &http,
            &gw,
            &format!("/audit?object_id={}&page_size=100", k.token),
        )
        .await;
        let want =
            count(&k.token, "created") + count(&k.token, "updated") + count(&k.token, "deleted");
        check!(
            ctx,
            Some(&gw),
            s == 200 && page["total"].as_u64() == Some(want as u64),
            "/audit?object_id={}: {s}, total {} (the search found {want})",
            k.token,
            page["total"]
        );
    }

    // Every acknowledged key is there (with its last acknowledged alias) or, deleted, gone.
    let mut used = 0;
    for k in &ledger.keys {
        let (s, info) = get(&http, &gw, &format!("/key/info?key={}", k.token)).await;
        match k.state {
            KeyState::Live => {
                check!(
                    ctx,
                    Some(&gw),
                    s == 200,
                    "acknowledged key {} not found: {s} {info}",
                    k.token
                );
                // The alias of its last update (or its creation), unless that update is unknown.
                if k.alias_known {
                    check!(
                        ctx,
                        Some(&gw),
                        info["info"]["key_alias"] == k.alias.as_str(),
                        "key {} lost its acknowledged alias {}: {info}",
                        k.token,
                        k.alias
                    );
                }
                if used < 10 {
                    used += 1;
                    let status = http
                        .get(gw.url("/v1/models"))
                        .bearer_auth(&k.secret)
                        .send()
                        .await
                        .unwrap()
                        .status();
                    check!(
                        ctx,
                        Some(&gw),
                        status == 200,
                        "acknowledged key {} no longer authenticates: {status}",
                        k.token
                    );
                }
            }
            KeyState::Deleted => check!(
                ctx,
                Some(&gw),
                s == 404,
                "key {} deleted (acknowledged) but found: {s} {info}",
                k.token
            ),
            KeyState::MaybeDeleted => {}
        }
    }

    // A clean stop, then the chain, offline.
    gw.signal("TERM");
    let status = gw.wait_exit(Duration::from_secs(30));
    check!(
        ctx,
        Some(&gw),
        status.is_some_and(|s| s.success()),
        "no clean exit after SIGTERM: {status:?}"
    );
    let out = std::process::Command::new(binary())
        .args(["audit", "verify", "--data-dir"])
        .arg(&data_dir)
        .env_remove("PORTCULLIS_DATA_DIR")
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    check!(
        ctx,
        Some(&gw),
        out.status.code() == Some(0)
            && text.contains(&format!("audit chain: intact, {head_seq} entries")),
        "audit verify ({:?}) after the kills:\n{text}",
        out.status.code()
    );
    ctx.event(started, format!("audit verify: {}", text.trim()));

    // The table itself (not the index): every acknowledged creation has its row.
    let store = portcullis::store::Store::open(&data_dir.join("portcullis.redb")).unwrap();
    let rows = store.audit_entries(1, usize::MAX).unwrap();
    let in_table: HashSet<(&str, &str)> = rows
        .iter()
        .map(|e| (e.change.object_id.as_str(), e.change.action.as_str()))
        .collect();
    check!(
        ctx,
        Some(&gw),
        rows.len() as u64 == head_seq && rows.last().map(|e| e.seq) == Some(head_seq),
        "the table holds {} entries, the head said {head_seq}",
        rows.len()
    );
    for id in &created {
        check!(
            ctx,
            Some(&gw),
            in_table.contains(&(*id, "created")),
            "acknowledged creation of {id} has no row in the audit table"
        );
    }
    for k in ledger.keys.iter().filter(|k| k.state == KeyState::Deleted) {
        check!(
            ctx,
            Some(&gw),
            in_table.contains(&(k.token.as_str(), "deleted")),
            "acknowledged delete of {} has no row in the audit table",
            k.token
        );
    }
    ctx.event(started, "done".to_string());
}
