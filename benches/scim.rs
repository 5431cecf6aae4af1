//! SCIM provisioning through the real release server's HTTP API, driven as an identity provider
//! drives it (a SCIM token, `application/scim+json`, one keep-alive connection per client).
//!
//! `cargo bench --bench scim`
//!
//! 1. One client: 10,000 `POST /Users` one after another, then 500 `POST /Groups` of 20 members
//!    each (members drawn from those users): operations/s and p50/p99 per kind.
//! 2. A fresh server (new data dir), 8 concurrent clients, each its own connection: the same
//!    work split 8 ways (users first, then groups, whose members must exist).
//! 3. A fresh server grown to 100,000 users by 8 clients (the rate, and how it changes as the
//!    store grows), then one client looking users up, sequentially: 1,000 `userName eq` after
//!    50 warm-up, each of which must return exactly that user (else the bench fails), 200
//!    `emails.value eq` (both answered from an index) and 50 `name.givenName sw "X"` (a scan of
//!    every user). Then the server's peak RSS and the data file's size per user.
//!
//! Latencies are client-side: request sent → whole body read. Each phase also reports the CPU
//! the server used per operation (so waiting on the disk shows as the gap to the latency) and
//! the CPU other work on the machine used meanwhile, which skews the numbers when high.
//!
//! Knobs (environment): `PORTCULLIS_BENCH_SCIM_USERS` (users in phases 1 and 2, default
//! 10000; groups are a twentieth of it), `PORTCULLIS_BENCH_SCIM_BIG` (users in phase 3, default
//! 100000), `PORTCULLIS_BIN` (another gateway binary, e.g. a profiling build),
//! `PORTCULLIS_BENCH_OUT` (also write the report to this file).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Errors carry their context as text up to `main`, so every server is stopped (by drop) before
/// the bench exits non-zero.
type Res<T> = Result<T, String>;

const MASTER_KEY: &str = "sk-bench-master-0123456789abcdef";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const CLIENTS: usize = 8;
const GROUP_SIZE: usize = 20;
const LOOKUPS: usize = 1000;
const LOOKUP_WARMUP: usize = 50;
const EMAIL_LOOKUPS: usize = 200;
const SCANS: usize = 50;
/// A scan answers one page of this many, as an IdP pages; the work is the scan, not the page.
const SCAN_PAGE: usize = 100;
/// Fixed, so every run draws the same group members and looks up the same users.
const SEED: u64 = 0x5C1A_0001;

/// One given name per initial: `name.givenName sw "X"` matches exactly the users whose index is
/// 23 mod 26, so the total a scan must report is known.
const GIVEN: [&str; 26] = [
    "Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farah", "Gustav", "Hana", "Ines", "Jonas",
    "Keiko", "Liam", "Maya", "Nils", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tara", "Umar",
    "Vera", "Wei", "Xavier", "Yusuf", "Zoe",
];
const FAMILY: [&str; 7] = [
    "Jensen", "Okafor", "Tanaka", "Moreau", "Silva", "Kowalski", "Haddad",
];
const SCAN_INITIAL: &str = "X";
const SCAN_INDEX: usize = 23;

fn env_num(name: &str, default: usize) -> Res<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

// ---------------------------------------------------------------- the users and groups

fn user_name(i: usize) -> String {
    format!("user{i:06}@corp.example")
}

/// Distinct from the userName, so the two indexed lookups find users by different values.
fn email(i: usize) -> String {
    let (g, f) = (GIVEN[i % GIVEN.len()], FAMILY[i % FAMILY.len()]);
    format!(
        "{}.{}{i}@mail.corp.example",
        g.to_lowercase(),
        f.to_lowercase()
    )
}

/// A user as Entra ID's default mapping sends one.
fn user_body(i: usize) -> Value {
    let (g, f) = (GIVEN[i % GIVEN.len()], FAMILY[i % FAMILY.len()]);
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name(i),
        "name": {"givenName": g, "familyName": f, "formatted": format!("{g} {f}")},
        "displayName": format!("{g} {f} {i}"),
        "emails": [{"value": email(i), "type": "work", "primary": true}],
        "active": true,
        "externalId": format!("ext-{i:06}"),
    })
}

fn group_body(g: usize, members: &[String]) -> Value {
    json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": format!("Group {g:04}"),
        "externalId": format!("grp-{g:04}"),
        "members": members.iter().map(|id| json!({"value": id})).collect::<Vec<_>>(),
    })
}

/// `groups` member lists of GROUP_SIZE distinct users each, drawn from `ids`.
fn member_lists(ids: &[String], groups: usize, rng: &mut StdRng) -> Vec<Vec<String>> {
    let size = GROUP_SIZE.min(ids.len());
    (0..groups)
        .map(|_| {
            rand::seq::index::sample(rng, ids.len(), size)
                .into_iter()
                .map(|i| ids[i].clone())
                .collect()
        })
        .collect()
}

/// RFC 3986 percent-encoding of a query value (reqwest's `query` feature is not enabled here).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------- the server

/// One `portcullis serve` on a fresh data dir, stopped with SIGTERM (then SIGKILL) when dropped
/// — on errors too, since they return through the callers up to `main`.
struct Server {
    child: Child,
    addr: SocketAddr,
    data: PathBuf,
    /// Dropped after `drop` has stopped the process, so the data dir outlives it.
    _tmp: tempfile::TempDir,
}

impl Server {
    fn start() -> Res<Server> {
        let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let dir = tmp.path().to_path_buf();
        // SCIM needs no models; one wildcard model keeps the config like a real deployment's.
        let config =
            "model_list:\n  - model_name: \"mock/*\"\n    litellm_params: {model: \"mock/*\"}\n";
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, config).map_err(|e| format!("writing the config: {e}"))?;
        let ready = dir.join("ready.json");
        let log = dir.join("gateway.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("creating the log file: {e}"))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("cloning the log file: {e}"))?;
        let bin = std::env::var_os("PORTCULLIS_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_portcullis")));
        let data = dir.join("data");
        let mut child = Command::new(&bin)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--config")
            .arg(&config_path)
            // The operator's environment must not change what is measured.
            .env_remove("LITELLM_MASTER_KEY")
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_DATA_DIR")
            .env_remove("PORTCULLIS_LISTEN")
            .env_remove("PORTCULLIS_LOG")
            .env("PORTCULLIS_MASTER_KEY", MASTER_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
                && let Some(addr) = v["addr"].as_str().and_then(|a| a.parse().ok())
            {
                return Ok(Server {
                    child,
                    addr,
                    data,
                    _tmp: tmp,
                });
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "portcullis did not become ready ({}):\n{}",
                    exited.map_or_else(|| "timed out".into(), |s| s.to_string()),
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A SCIM token, as an administrator mints one: a key limited to the SCIM routes.
    async fn scim_token(&self) -> Res<String> {
        let api = Api::new(self.addr, MASTER_KEY)?;
        let body = json!({"key_alias": "bench-scim", "allowed_routes": ["/scim/*"]});
        let (status, v, _) = api.send(api.post("/key/generate", &body)).await?;
        match v["key"].as_str() {
            Some(k) if status == 200 => Ok(k.to_string()),
            _ => Err(format!("/key/generate answered {status}: {v}")),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("portcullis did not stop on SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- the client

/// One SCIM client: its own reqwest client, so its own keep-alive HTTP/1.1 connection.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(addr: SocketAddr, token: &str) -> Res<Api> {
        let http = reqwest::Client::builder()
            .http1_only()
            // A proxy from the environment would put another hop in every latency.
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Api {
            http,
            base: format!("http://{addr}"),
            token: token.to_string(),
        })
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/scim+json")
            .body(body.to_string())
    }

    fn get(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends one request and reads the whole answer: (status, JSON body, µs taken).
    async fn send(&self, req: reqwest::RequestBuilder) -> Res<(u16, Value, f64)> {
        let t0 = Instant::now();
        let resp = req.send().await.map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("reading an answer ({status}): {e}"))?;
        let us = t0.elapsed().as_secs_f64() * 1e6;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "answer {status} is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })?
        };
        Ok((status, v, us))
    }
}

/// One timed operation: its latency, and when it finished (seconds into its batch).
#[derive(Clone, Copy)]
struct Sample {
    us: f64,
    done: f64,
}

/// A batch of operations run by `clients` concurrent clients.
struct Batch {
    secs: f64,
    samples: Vec<Sample>,
}

/// Creates users `range` with `clients` concurrent clients (client k takes every k-th index);
/// returns their ids, indexed from `range.start`.
async fn create_users(
    addr: SocketAddr,
    token: &str,
    range: Range<usize>,
    clients: usize,
    label: &'static str,
) -> Res<(Vec<String>, Batch)> {
    let total = range.len();
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for k in 0..clients {
        let api = Api::new(addr, token)?;
        let (range, done) = (range.clone(), done.clone());
        set.spawn(async move {
            let mut out = Vec::with_capacity(range.len() / clients + 1);
            for i in range.clone().skip(k).step_by(clients) {
                let (status, v, us) = api.send(api.post("/scim/v2/Users", &user_body(i))).await?;
                let id = match v["id"].as_str() {
                    Some(id) if status == 201 => id.to_string(),
                    _ => return Err(format!("POST /Users for user {i} answered {status}: {v}")),
                };
                let sample = Sample {
                    us,
                    done: start.elapsed().as_secs_f64(),
                };
                out.push((i, id, sample));
                progress(&done, total, start, label);
            }
            Ok::<_, String>(out)
        });
    }
    let mut ids = vec![String::new(); total];
    let mut samples = Vec::with_capacity(total);
    // The first failure returns at once; dropping the set aborts the other clients.
    while let Some(joined) = set.join_next().await {
        for (i, id, s) in joined.map_err(|e| format!("a client task failed: {e}"))?? {
            ids[i - range.start] = id;
            samples.push(s);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((ids, Batch { secs, samples }))
}

/// Creates one group per member list with `clients` concurrent clients; checks each answer
/// lists every member.
async fn create_groups(
    addr: SocketAddr,
    token: &str,
    lists: Arc<Vec<Vec<String>>>,
    clients: usize,
    label: &'static str,
) -> Res<Batch> {
    let total = lists.len();
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for k in 0..clients {
        let api = Api::new(addr, token)?;
        let (lists, done) = (lists.clone(), done.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            for g in (k..lists.len()).step_by(clients) {
                let members = &lists[g];
                let body = group_body(g, members);
                let (status, v, us) = api.send(api.post("/scim/v2/Groups", &body)).await?;
                let listed = v["members"].as_array().map_or(0, Vec::len);
                if status != 201 || listed != members.len() {
                    return Err(format!(
                        "POST /Groups for group {g} answered {status} with {listed} of {} members: {v}",
                        members.len()
                    ));
                }
                out.push(Sample {
                    us,
                    done: start.elapsed().as_secs_f64(),
                });
                progress(&done, total, start, label);
            }
            Ok::<_, String>(out)
        });
    }
    let mut samples = Vec::with_capacity(total);
    while let Some(joined) = set.join_next().await {
        samples.extend(joined.map_err(|e| format!("a client task failed: {e}"))??);
    }
    Ok(Batch {
        secs: start.elapsed().as_secs_f64(),
        samples,
    })
}

/// A line on stderr at every tenth of a long batch, so a slow run shows where it is.
fn progress(done: &AtomicUsize, total: usize, start: Instant, label: &str) {
    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
    if total >= 5000 && n.is_multiple_of(total / 10) {
        let s = start.elapsed().as_secs_f64();
        eprintln!("  {label}: {n}/{total} in {s:.1} s ({:.0}/s)", n as f64 / s);
    }
}

/// `GET /Users?filter=...` (plus `extra` query parameters): (latency µs, answer).
async fn lookup(api: &Api, filter: &str, extra: &str) -> Res<(f64, Value)> {
    let path = format!("/scim/v2/Users?filter={}{extra}", encode(filter));
    let (status, v, us) = api.send(api.get(&path)).await?;
    if status != 200 {
        return Err(format!("GET {path} answered {status}: {v}"));
    }
    Ok((us, v))
}

/// The lookup must have found exactly user `i`, whose id is `id`.
fn check_one(v: &Value, filter: &str, i: usize, id: &str) -> Res<()> {
    let total = v["totalResults"].as_u64();
    let found = v["Resources"][0]["id"].as_str();
    let name = v["Resources"][0]["userName"].as_str();
    if total != Some(1) || found != Some(id) || name != Some(user_name(i).as_str()) {
        return Err(format!(
            "`{filter}` must return exactly user {i} ({id}); it returned totalResults {total:?}, first id {found:?}, userName {name:?}"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- /proc

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime (all threads) of a process from /proc/<pid>/stat, in ticks.
fn proc_ticks(pid: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let Some(rest) = text.rfind(')').and_then(|i| text.get(i + 2..)) else {
        return 0;
    };
    // rest starts at field 3 (the state): utime and stime, fields 14 and 15, are at 11 and 12.
    // Fields are counted as text: some (tpgid) may be -1.
    let f: Vec<&str> = rest.split_whitespace().collect();
    [11, 12]
        .iter()
        .filter_map(|i| f.get(*i)?.parse::<u64>().ok())
        .sum()
}

/// Busy ticks of the whole machine, all CPUs (user+nice+system+irq+softirq+steal).
fn machine_busy_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum()
}

/// CPU counters around one batch: the server's, this bench's, the machine's.
#[derive(Clone, Copy)]
struct Cpu {
    server: u64,
    client: u64,
    busy: u64,
}

impl Cpu {
    fn now(server: u32) -> Cpu {
        Cpu {
            server: proc_ticks(&server.to_string()),
            client: proc_ticks("self"),
            busy: machine_busy_ticks(),
        }
    }
}

/// A field of /proc/<pid>/status in kB (VmRSS, VmHWM).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The filesystem a path lives on (its type matters: every SCIM write is an fsync).
fn filesystem(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, at, kind) = (*f.first()?, *f.get(1)?, *f.get(2)?);
            let inside = path == at || path.starts_with(&format!("{}/", at.trim_end_matches('/')));
            inside.then(|| (at.len(), format!("{kind} ({dev} on {at})")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, s)| s)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, {model}, Linux {}", kernel.trim())
}

// ---------------------------------------------------------------- the report

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line of the provisioning table.
struct Row {
    phase: &'static str,
    clients: usize,
    what: String,
    ops: usize,
    secs: f64,
    /// Latencies in µs, sorted.
    lat: Vec<f64>,
    server_us_per_op: f64,
    /// CPU used by other work on the machine, in % of one CPU.
    background: f64,
}

impl Row {
    fn new(phase: &'static str, clients: usize, what: String, b: &Batch, m: &Measured) -> Row {
        Row {
            phase,
            clients,
            what,
            ops: b.samples.len(),
            secs: b.secs,
            lat: sorted(b.samples.iter().map(|s| s.us).collect()),
            server_us_per_op: m.server_us / b.samples.len().max(1) as f64,
            background: m.background,
        }
    }

    /// Several batches run one after the other, as one line.
    fn total(phase: &'static str, clients: usize, parts: &[(&Batch, &Measured)]) -> Row {
        let samples: Vec<f64> = parts
            .iter()
            .flat_map(|(b, _)| b.samples.iter().map(|s| s.us))
            .collect();
        let ops = samples.len();
        let secs: f64 = parts.iter().map(|(b, _)| b.secs).sum();
        let server_us: f64 = parts.iter().map(|(_, m)| m.server_us).sum();
        let background = parts
            .iter()
            .map(|(b, m)| m.background * b.secs)
            .sum::<f64>()
            / secs.max(f64::MIN_POSITIVE);
        Row {
            phase,
            clients,
            what: "all operations".into(),
            ops,
            secs,
            lat: sorted(samples),
            server_us_per_op: server_us / ops.max(1) as f64,
            background,
        }
    }
}

/// Server CPU and background load over one batch.
struct Measured {
    server_us: f64,
    background: f64,
}

fn measured(c0: Cpu, c1: Cpu, secs: f64, tck: f64) -> Measured {
    let server = c1.server.saturating_sub(c0.server);
    let client = c1.client.saturating_sub(c0.client);
    let other = c1
        .busy
        .saturating_sub(c0.busy)
        .saturating_sub(server + client);
    Measured {
        server_us: server as f64 / tck * 1e6,
        background: other as f64 / tck / secs.max(f64::MIN_POSITIVE) * 100.0,
    }
}

/// Times one batch with the CPU counters around it.
async fn timed<T>(
    pid: u32,
    tck: f64,
    f: impl std::future::Future<Output = Res<T>>,
) -> Res<(T, Measured, f64)> {
    let c0 = Cpu::now(pid);
    let t0 = Instant::now();
    let out = f.await?;
    let secs = t0.elapsed().as_secs_f64();
    Ok((out, measured(c0, Cpu::now(pid), secs, tck), secs))
}

/// Lookup latencies of one kind.
struct Lookups {
    what: String,
    lat: Vec<f64>,
    results: String,
    background: f64,
}

fn main() {
    // `cargo bench` passes `--bench` (and maybe a filter); there is nothing to select here.
    // reqwest is built without a crypto provider (the crate's choice is ring); plain HTTP is
    // used, but the client builder needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        // The server has the same two cores to itself as much as possible.
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scim bench: building the runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run()) {
        Ok(report) => {
            println!("{report}");
            if let Ok(path) = std::env::var("PORTCULLIS_BENCH_OUT")
                && let Err(e) = std::fs::write(&path, &report)
            {
                eprintln!("scim bench: writing {path}: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            // Every server has been stopped by now (dropped on the way out of `run`).
            eprintln!("scim bench FAILED: {e}");
            std::process::exit(1);
        }
    }
}

async fn run() -> Res<String> {
    let n = env_num("PORTCULLIS_BENCH_SCIM_USERS", 10_000)?.max(GROUP_SIZE);
    let big = env_num("PORTCULLIS_BENCH_SCIM_BIG", 100_000)?.max(LOOKUPS);
    let groups = (n / GROUP_SIZE).max(1);
    let tck = clock_ticks();
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut rows = Vec::new();
    let fs;

    // ---------------------------------------------------------------- phase 1: one client
    eprintln!("phase 1: one client, {n} users then {groups} groups of {GROUP_SIZE}");
    {
        let s = Server::start()?;
        fs = filesystem(&s.data);
        let token = s.scim_token().await?;
        let ((ids, users), mu, _) = timed(
            s.pid(),
            tck,
            create_users(s.addr, &token, 0..n, 1, "phase 1 users"),
        )
        .await?;
        let lists = Arc::new(member_lists(&ids, groups, &mut rng));
        let (grp, mg, _) = timed(
            s.pid(),
            tck,
            create_groups(s.addr, &token, lists, 1, "phase 1 groups"),
        )
        .await?;
        rows.push(Row::new("1", 1, "create User".into(), &users, &mu));
        rows.push(Row::new(
            "1",
            1,
            format!("create Group ({GROUP_SIZE} members)"),
            &grp,
            &mg,
        ));
        rows.push(Row::total("1", 1, &[(&users, &mu), (&grp, &mg)]));
    }

    // ---------------------------------------------------------------- phase 2: 8 clients
    eprintln!("phase 2: {CLIENTS} clients, {n} users then {groups} groups of {GROUP_SIZE}");
    {
        let s = Server::start()?;
        let token = s.scim_token().await?;
        let ((ids, users), mu, _) = timed(
            s.pid(),
            tck,
            create_users(s.addr, &token, 0..n, CLIENTS, "phase 2 users"),
        )
        .await?;
        // Groups start once every user exists: their members must.
        let lists = Arc::new(member_lists(&ids, groups, &mut rng));
        let (grp, mg, _) = timed(
            s.pid(),
            tck,
            create_groups(s.addr, &token, lists, CLIENTS, "phase 2 groups"),
        )
        .await?;
        rows.push(Row::new("2", CLIENTS, "create User".into(), &users, &mu));
        rows.push(Row::new(
            "2",
            CLIENTS,
            format!("create Group ({GROUP_SIZE} members)"),
            &grp,
            &mg,
        ));
        rows.push(Row::total("2", CLIENTS, &[(&users, &mu), (&grp, &mg)]));
    }

    // ---------------------------------------------------------------- phase 3: big directory
    eprintln!("phase 3: {CLIENTS} clients grow a directory to {big} users, then lookups");
    let mut lookups = Vec::new();
    let (file_bytes, dir_total, tenths);
    // RSS / RssAnon (kB) at each step of phase 3, then the peak.
    let mut mem: Vec<(&str, u64, u64)> = Vec::new();
    let hwm_kb;
    {
        let s = Server::start()?;
        let token = s.scim_token().await?;
        let rss = |s: &Server| (status_kb(s.pid(), "VmRSS"), status_kb(s.pid(), "RssAnon"));
        let (r, a) = rss(&s);
        mem.push(("started, empty", r, a));
        let ((ids, grow), mgrow, _) = timed(
            s.pid(),
            tck,
            create_users(s.addr, &token, 0..big, CLIENTS, "phase 3 users"),
        )
        .await?;
        rows.push(Row::new(
            "3",
            CLIENTS,
            format!("create User, 0 → {}", thousands(big as u64)),
            &grow,
            &mgrow,
        ));
        // The rate in each tenth of the growth: does it slow down as the store fills?
        let mut done: Vec<f64> = grow.samples.iter().map(|x| x.done).collect();
        done.sort_by(f64::total_cmp);
        tenths = (1..=10)
            .map(|k| {
                let (a, b) = ((k - 1) * big / 10, k * big / 10);
                let t0 = if a == 0 { 0.0 } else { done[a - 1] };
                let t1 = done[b - 1];
                (b - a) as f64 / (t1 - t0).max(f64::MIN_POSITIVE)
            })
            .collect::<Vec<f64>>();

        let (r, a) = rss(&s);
        mem.push(("after the growth", r, a));

        let api = Api::new(s.addr, &token)?;
        // userName eq, random existing users; warm-up first (connection, caches).
        let mut lat = Vec::with_capacity(LOOKUPS);
        let c0 = Cpu::now(s.pid());
        let t0 = Instant::now();
        for k in 0..LOOKUP_WARMUP + LOOKUPS {
            let i = rng.random_range(0..big);
            let filter = format!("userName eq \"{}\"", user_name(i));
            let (us, v) = lookup(&api, &filter, "").await?;
            check_one(&v, &filter, i, &ids[i])?;
            if k >= LOOKUP_WARMUP {
                lat.push(us);
            }
        }
        let m = measured(c0, Cpu::now(s.pid()), t0.elapsed().as_secs_f64(), tck);
        lookups.push(Lookups {
            what: "`userName eq \"…\"` (indexed)".into(),
            lat: sorted(lat),
            results: "exactly the user, every time".into(),
            background: m.background,
        });

        let mut lat = Vec::with_capacity(EMAIL_LOOKUPS);
        let c0 = Cpu::now(s.pid());
        let t0 = Instant::now();
        for _ in 0..EMAIL_LOOKUPS {
            let i = rng.random_range(0..big);
            let filter = format!("emails.value eq \"{}\"", email(i));
            let (us, v) = lookup(&api, &filter, "").await?;
            check_one(&v, &filter, i, &ids[i])?;
            lat.push(us);
        }
        let m = measured(c0, Cpu::now(s.pid()), t0.elapsed().as_secs_f64(), tck);
        lookups.push(Lookups {
            what: "`emails.value eq \"…\"` (indexed)".into(),
            lat: sorted(lat),
            results: "exactly the user, every time".into(),
            background: m.background,
        });

        let (r, a) = rss(&s);
        mem.push(("after the indexed lookups", r, a));

        // A filter no index answers: every user is turned into a resource and tested.
        let filter = format!("name.givenName sw \"{SCAN_INITIAL}\"");
        let expected = (0..big).filter(|i| i % GIVEN.len() == SCAN_INDEX).count();
        let extra = format!("&count={SCAN_PAGE}");
        let mut lat = Vec::with_capacity(SCANS);
        let c0 = Cpu::now(s.pid());
        let t0 = Instant::now();
        for _ in 0..SCANS {
            let (us, v) = lookup(&api, &filter, &extra).await?;
            let total = v["totalResults"].as_u64();
            let page = v["Resources"].as_array().map_or(0, Vec::len);
            if total != Some(expected as u64) || page != SCAN_PAGE.min(expected) {
                return Err(format!(
                    "`{filter}` must match {expected} users (a page of {}); it returned totalResults {total:?} and {page}",
                    SCAN_PAGE.min(expected)
                ));
            }
            lat.push(us);
        }
        let m = measured(c0, Cpu::now(s.pid()), t0.elapsed().as_secs_f64(), tck);
        lookups.push(Lookups {
            what: format!("`{filter}` (a scan), count={SCAN_PAGE}"),
            lat: sorted(lat),
            results: format!(
                "{} matches each, a page of {}",
                thousands(expected as u64),
                SCAN_PAGE.min(expected)
            ),
            background: m.background,
        });

        let (r, a) = rss(&s);
        mem.push(("after the scans", r, a));
        hwm_kb = status_kb(s.pid(), "VmHWM");
        file_bytes = std::fs::metadata(s.data.join("portcullis.redb"))
            .map(|m| m.len())
            .unwrap_or(0);
        dir_total = dir_bytes(&s.data);
    }

    // ---------------------------------------------------------------- report
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}  ", machine());
    let _ = writeln!(out, "Data dir on: {fs}  ");
    let _ = writeln!(
        out,
        "SCIM bench: {} users + {} groups of {GROUP_SIZE} (phases 1, 2); {} users (phase 3). Total {:.0} s.\n",
        thousands(n as u64),
        thousands(groups as u64),
        thousands(big as u64),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| phase | clients | operation | ops | seconds | ops/s | p50 (ms) | p99 (ms) | max (ms) | server CPU µs/op | background CPU |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.2} | {:.2} | {:.1} | {:.0} | {:.0}% |",
            r.phase,
            r.clients,
            r.what,
            thousands(r.ops as u64),
            r.secs,
            r.ops as f64 / r.secs.max(f64::MIN_POSITIVE),
            percentile(&r.lat, 50.0) / 1e3,
            percentile(&r.lat, 99.0) / 1e3,
            percentile(&r.lat, 100.0) / 1e3,
            r.server_us_per_op,
            r.background,
        );
    }
    let _ = writeln!(
        out,
        "\nPhase 3 users/s by tenth of the growth (0 → {}): {}\n",
        thousands(big as u64),
        tenths
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" · ")
    );
    let _ = writeln!(
        out,
        "Lookups over {} users, one client, sequential (after {LOOKUP_WARMUP} warm-up lookups):\n",
        thousands(big as u64)
    );
    let _ = writeln!(
        out,
        "| filter | lookups | p50 (ms) | p99 (ms) | max (ms) | answer | background CPU |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---:|");
    for l in &lookups {
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {} | {:.0}% |",
            l.what,
            thousands(l.lat.len() as u64),
            percentile(&l.lat, 50.0) / 1e3,
            percentile(&l.lat, 99.0) / 1e3,
            percentile(&l.lat, 100.0) / 1e3,
            l.results,
            l.background,
        );
    }
    let _ = writeln!(
        out,
        "\nPhase 3 server memory: peak RSS (VmHWM) {:.1} MB; RSS (of it anonymous, i.e. not mapped files) {}.  ",
        hwm_kb as f64 / 1024.0,
        mem.iter()
            .map(|(when, r, a)| format!(
                "{when} {:.1} MB ({:.1} MB)",
                *r as f64 / 1024.0,
                *a as f64 / 1024.0
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "Data file portcullis.redb (with each user's audit entry): {:.1} MB = {:.0} bytes per user; the whole data dir (with the audit search index): {:.1} MB = {:.0} bytes per user.",
        file_bytes as f64 / 1e6,
        file_bytes as f64 / big as f64,
        dir_total as f64 / 1e6,
        dir_total as f64 / big as f64
    );
    let noisy = rows
        .iter()
        .map(|r| r.background)
        .chain(lookups.iter().map(|l| l.background))
        .fold(0.0, f64::max);
    if noisy > 10.0 {
        let _ = writeln!(
            out,
            "\n**Warning:** other work used up to {noisy:.0}% of a CPU during the runs (\"background CPU\"); rates and latencies are skewed — rerun on a quiet machine."
        );
    }
    Ok(out)
}
