//! PostgreSQL side of `benches/audit.rs`: the same entries in LiteLLM's `LiteLLM_AuditLog` table
//! on a private, throwaway PostgreSQL server, the same queries in SQL, timed from the client.
//!
//! How the server is run:
//! - binaries: `$PORTCULLIS_BENCH_PG_BIN` if set, else the newest `/usr/lib/postgresql/*/bin`
//!   (Debian/Ubuntu: `apt-get install -y postgresql`), else `pg_ctl` on `PATH`;
//! - a fresh cluster (`initdb`, trust auth, user `bench`, UTF8, C locale) in a new directory under
//!   the temp dir. initdb and postgres refuse to run as root, so when the bench runs as root the
//!   directory is chowned to `$PORTCULLIS_BENCH_PG_USER` (default `postgres`, which Debian's
//!   package creates) and `initdb` / `pg_ctl` run through `runuser -u <user> --`;
//! - listening on 127.0.0.1 only, on a free port picked by binding port 0 (and its Unix socket in
//!   that directory), with the settings in [`SETTINGS`] (shared_buffers 1 GB on this 24 GB box;
//!   durability off — fsync, full_page_writes, synchronous_commit — which speeds up the load and
//!   does not change read latency; JIT off; custom plans for every execution);
//! - stopped (`pg_ctl stop -m immediate`) and its directory deleted when the [`Server`] guard
//!   drops, also when the bench panics. A bench killed by a signal leaves both behind: the
//!   directory is `$TMPDIR/portcullis-audit-pg-*`, stop it with `pg_ctl -D <dir>/data stop`.
//!
//! Load: `CREATE TABLE` and `COPY ... FROM STDIN` (text format) in one transaction, then the
//! indexes an experienced DBA would add for these queries, built after the load as one does for
//! a bulk load, then `VACUUM (ANALYZE)` (statistics, and the visibility map that lets the counts
//! use index-only scans). Load time is COPY start to VACUUM end.

use crate::r#gen::{self, BenchQuery, GenEntry};
use crate::report::Timing;
use postgres::types::{FromSql, ToSql, Type};
use postgres::{Client, NoTls, Row, Statement};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TABLE: &str = "\"LiteLLM_AuditLog\"";

/// LiteLLM's Prisma migration for `LiteLLM_AuditLog` (TIMESTAMP(3), not timestamptz; NOT NULL
/// defaults as Prisma writes them), plus Portcullis's extra fields and a stored tsvector over
/// both JSON values for full-text search. The primary key is added after the load.
const CREATE_TABLE: &str = r#"
CREATE TABLE "LiteLLM_AuditLog" (
    "id" TEXT NOT NULL,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "changed_by" TEXT NOT NULL DEFAULT '',
    "changed_by_api_key" TEXT NOT NULL DEFAULT '',
    "action" TEXT NOT NULL,
    "table_name" TEXT NOT NULL,
    "object_id" TEXT NOT NULL,
    "before_value" JSONB,
    "updated_values" JSONB,
    "actor_role" TEXT,
    "scope" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "request_id" TEXT NOT NULL DEFAULT '',
    "source_ip" TEXT NOT NULL DEFAULT '',
    "user_agent" TEXT NOT NULL DEFAULT '',
    "search" TSVECTOR GENERATED ALWAYS AS (
        to_tsvector('simple'::regconfig,
            coalesce("before_value"::text, '') || ' ' || coalesce("updated_values"::text, ''))
    ) STORED
)"#;

const COPY: &str = r#"COPY "LiteLLM_AuditLog" ("id", "updated_at", "changed_by", "changed_by_api_key", "action", "table_name", "object_id", "before_value", "updated_values", "actor_role", "scope", "request_id", "source_ip", "user_agent") FROM STDIN"#;

/// Built after the load, in this order; each is timed.
const INDEXES: [(&str, &str); 5] = [
    (
        "primary key (id)",
        r#"ALTER TABLE "LiteLLM_AuditLog" ADD CONSTRAINT "LiteLLM_AuditLog_pkey" PRIMARY KEY ("id")"#,
    ),
    (
        "btree (updated_at)",
        r#"CREATE INDEX "LiteLLM_AuditLog_updated_at_idx" ON "LiteLLM_AuditLog" ("updated_at")"#,
    ),
    (
        "btree (table_name, action, updated_at)",
        r#"CREATE INDEX "LiteLLM_AuditLog_table_action_updated_at_idx" ON "LiteLLM_AuditLog" ("table_name", "action", "updated_at")"#,
    ),
    (
        "GIN (search tsvector)",
        r#"CREATE INDEX "LiteLLM_AuditLog_search_idx" ON "LiteLLM_AuditLog" USING gin ("search")"#,
    ),
    ("VACUUM (ANALYZE)", r#"VACUUM (ANALYZE) "LiteLLM_AuditLog""#),
];

/// The columns every query returns (the whole entry, as LiteLLM's `GET /audit` does). The JSONB
/// columns are returned as they are (not `::text` in the select list, which would convert them
/// for every row an OFFSET skips too) and decoded by [`JsonText`].
const COLUMNS: &str = r#""id", "updated_at", "changed_by", "changed_by_api_key", "action", "table_name", "object_id", "before_value", "updated_values", "actor_role", "scope", "request_id", "source_ip", "user_agent""#;

/// Server settings beyond the defaults (appended to postgresql.conf); see [`settings`].
const SETTINGS: [(&str, &str); 20] = [
    ("max_connections", "20"),
    ("shared_buffers", "'1GB'"),
    ("effective_cache_size", "'16GB'"),
    ("work_mem", "'64MB'"),
    ("maintenance_work_mem", "'2GB'"),
    ("max_parallel_workers_per_gather", "2"),
    ("max_parallel_maintenance_workers", "2"),
    ("random_page_cost", "1.1"),
    ("effective_io_concurrency", "200"),
    // Short OLTP-style queries: JIT compilation only adds latency.
    ("jit", "off"),
    // A throwaway cluster: no durability (speeds up COPY and index builds; reads are unaffected).
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    // COPY into a table created in the same transaction writes no WAL.
    ("wal_level", "minimal"),
    ("max_wal_senders", "0"),
    ("max_wal_size", "'16GB'"),
    ("checkpoint_timeout", "'1h'"),
    // The bench runs VACUUM (ANALYZE) itself; nothing should wake up during the timed runs.
    ("autovacuum", "off"),
    ("timezone", "'UTC'"),
    // Plan every execution of a prepared statement for its parameters. The default (`auto`)
    // switches to a generic plan after five runs, and for `text_filter_time` that generic plan
    // (a BitmapAnd over the GIN index, whatever the word) takes ~100-300 ms at 1M entries where
    // the custom plan takes 1-8 ms: a DBA would set this. Override with
    // PORTCULLIS_BENCH_PG_PLAN_CACHE_MODE=auto to see what a plain prepared-statement client gets.
    ("plan_cache_mode", "force_custom_plan"),
];

/// [`SETTINGS`], with `plan_cache_mode` from `$PORTCULLIS_BENCH_PG_PLAN_CACHE_MODE` if set.
pub fn settings() -> Vec<(&'static str, String)> {
    let mode = std::env::var("PORTCULLIS_BENCH_PG_PLAN_CACHE_MODE").ok();
    SETTINGS
        .iter()
        .map(|&(k, v)| match (k, &mode) {
            ("plan_cache_mode", Some(m)) => (k, m.clone()),
            _ => (k, v.to_string()),
        })
        .collect()
}

/// What the PostgreSQL side measured.
pub struct PgOutcome {
    /// `SHOW server_version`.
    pub version: String,
    pub timings: Vec<Timing>,
    /// (step, seconds): COPY, then each of [`INDEXES`].
    pub load_steps: Vec<(String, f64)>,
    /// Seconds from COPY start to the end of VACUUM (ANALYZE): until the data is queryable fast.
    pub load_s: f64,
    /// (relation, bytes): the heap, TOAST + free-space/visibility maps, each index.
    pub sizes: Vec<(String, u64)>,
    /// `pg_total_relation_size` of the table: heap, TOAST and all indexes.
    pub total_bytes: u64,
    /// Wrong page sizes seen (a query returning fewer/more rows than its total implies).
    pub warnings: Vec<String>,
}

/// Start a server, load `entries`, run `queries` (per kind: `gen::WARMUP` untimed runs, then all
/// timed), measure sizes, stop the server. `Err` says why PostgreSQL could not be used.
pub fn run(entries: &[GenEntry], queries: &[BenchQuery]) -> Result<PgOutcome, String> {
    let server = Server::start()?;
    eprintln!(
        "audit bench: PostgreSQL at 127.0.0.1:{} (data in {}, running as {})",
        server.port,
        server.data.display(),
        server.run_as.as_deref().unwrap_or("this user")
    );
    let mut client = server.connect()?;
    let version = client
        .query_one("SHOW server_version", &[])
        .and_then(|r| r.try_get::<_, String>(0))
        .map_err(|e| format!("SHOW server_version: {e}"))?;

    let (load_steps, load_s) = load(&mut client, entries)?;
    prewarm(&mut client);
    let (sizes, total_bytes) = sizes(&mut client)?;
    let (timings, warnings) = time_queries(&mut client, queries)?;
    drop(client);
    drop(server);
    Ok(PgOutcome {
        version,
        timings,
        load_steps,
        load_s,
        sizes,
        total_bytes,
        warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// The server.

/// A running throwaway server; dropping it stops the server and deletes its directory.
pub struct Server {
    bin: PathBuf,
    /// Unix user the server runs as (when the bench runs as root).
    run_as: Option<String>,
    data: PathBuf,
    port: u16,
    running: bool,
    /// Declared last: dropped (deleted) after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Result<Server, String> {
        let bin = find_bin()?;
        let run_as = if effective_uid() == Some(0) {
            Some(std::env::var("PORTCULLIS_BENCH_PG_USER").unwrap_or_else(|_| "postgres".into()))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("portcullis-audit-pg-")
            .tempdir()
            .map_err(|e| format!("cannot make a temp dir: {e}"))?;
        if let Some(user) = &run_as {
            let uid = id_of(user, "-u")?;
            let gid = id_of(user, "-g")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {} to {user}: {e}", dir.path().display()))?;
        }
        let port = free_port()?;
        let mut server = Server {
            bin,
            run_as,
            data: dir.path().join("data"),
            port,
            running: false,
            dir,
        };
        let mut initdb = server.command("initdb");
        initdb.arg("-D").arg(&server.data).args([
            "-U",
            "bench",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run_command(initdb, "initdb")?;

        let mut conf = String::from("\n# portcullis audit bench\nlisten_addresses = '127.0.0.1'\n");
        let _ = writeln!(conf, "port = {port}");
        let _ = writeln!(
            conf,
            "unix_socket_directories = '{}'",
            server.dir.path().display()
        );
        for (k, v) in settings() {
            let _ = writeln!(conf, "{k} = {v}");
        }
        let conf_path = server.data.join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| format!("cannot append to {}: {e}", conf_path.display()))?;

        let log = server.dir.path().join("server.log");
        let mut start = server.command("pg_ctl");
        start
            .arg("-D")
            .arg(&server.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "start"]);
        // From here on the guard stops whatever may have started.
        server.running = true;
        if let Err(e) = run_command(start, "pg_ctl start") {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("{e}\nserver log:\n{}", tail.join("\n")));
        }
        Ok(server)
    }

    pub fn connect(&self) -> Result<Client, String> {
        let mut last = String::new();
        for _ in 0..50 {
            match postgres::Config::new()
                .host("127.0.0.1")
                .port(self.port)
                .user("bench")
                .dbname("postgres")
                .application_name("portcullis-audit-bench")
                .connect_timeout(Duration::from_secs(10))
                .connect(NoTls)
            {
                Ok(c) => return Ok(c),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("cannot connect to 127.0.0.1:{}: {last}", self.port))
    }

    /// `program` from the server's bin dir, as the server's user, in the server's directory
    /// (the user may not be able to read the bench's working directory).
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut c = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        c.current_dir(self.dir.path()).stdin(Stdio::null());
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "60", "stop"]);
        if let Err(e) = run_command(stop, "pg_ctl stop") {
            eprintln!("audit bench: {e}");
        }
        // `self.dir` is deleted when it drops, right after this.
    }
}

fn find_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PORTCULLIS_BENCH_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("pg_ctl").is_file() {
            Ok(dir)
        } else {
            Err(format!(
                "PORTCULLIS_BENCH_PG_BIN={}: no pg_ctl there",
                dir.display()
            ))
        };
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("pg_ctl").is_file() && bin.join("initdb").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("pg_ctl").is_file() && d.join("initdb").is_file())
        .ok_or_else(|| {
            "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH; \
             install them (Debian: apt-get install -y postgresql) or set PORTCULLIS_BENCH_PG_BIN"
                .to_string()
        })
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let from_proc = status.as_deref().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))?
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()
    });
    from_proc.or_else(|| {
        let out = Command::new("id").arg("-u").output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    })
}

fn id_of(user: &str, flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .map_err(|e| format!("id {flag} {user}: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            format!(
                "running as root, PostgreSQL needs an unprivileged user and `{user}` does not exist \
                 (set PORTCULLIS_BENCH_PG_USER)"
            )
        })
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

fn run_command(mut c: Command, what: &str) -> Result<(), String> {
    let out = c.output().map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Load.

fn load(client: &mut Client, entries: &[GenEntry]) -> Result<(Vec<(String, f64)>, f64), String> {
    // lz4 TOAST compression (PostgreSQL 14+, if built with it) decompresses faster than pglz.
    if client
        .batch_execute("SET default_toast_compression = 'lz4'")
        .is_err()
    {
        eprintln!("audit bench: PostgreSQL: no lz4, TOAST stays pglz");
    }
    let mut steps = Vec::new();
    let all = Instant::now();
    let t = Instant::now();
    let mut tx = client.transaction().map_err(|e| format!("BEGIN: {e}"))?;
    tx.batch_execute(CREATE_TABLE)
        .map_err(|e| format!("CREATE TABLE: {e}"))?;
    let mut w = tx.copy_in(COPY).map_err(|e| format!("COPY: {e}"))?;
    let mut line = String::with_capacity(8192);
    for e in entries {
        line.clear();
        copy_row(&mut line, e);
        w.write_all(line.as_bytes())
            .map_err(|err| format!("COPY row {}: {err}", e.seq))?;
    }
    w.finish().map_err(|e| format!("COPY: {e}"))?;
    tx.commit().map_err(|e| format!("COMMIT: {e}"))?;
    steps.push((
        "COPY (text; jsonb parsing and the tsvector computed here)".to_string(),
        t.elapsed().as_secs_f64(),
    ));
    for (name, sql) in INDEXES {
        let t = Instant::now();
        client
            .batch_execute(sql)
            .map_err(|e| format!("{name}: {e}"))?;
        steps.push((name.to_string(), t.elapsed().as_secs_f64()));
    }
    Ok((steps, all.elapsed().as_secs_f64()))
}

/// One line of COPY text format.
fn copy_row(buf: &mut String, e: &GenEntry) {
    let id = r#gen::entry_id(e.seq);
    let at = r#gen::iso_utc(e.timestamp_ms);
    let fields: [Option<&str>; 7] = [
        Some(&id),
        Some(&at),
        Some(&e.changed_by),
        Some(e.changed_by_api_key.as_deref().unwrap_or("")),
        Some(&e.action),
        Some(&e.table_name),
        Some(&e.object_id),
    ];
    for f in fields {
        copy_field(buf, f);
        buf.push('\t');
    }
    copy_field(
        buf,
        (!e.before_value.is_empty()).then_some(e.before_value.as_str()),
    );
    buf.push('\t');
    copy_field(
        buf,
        (!e.updated_values.is_empty()).then_some(e.updated_values.as_str()),
    );
    buf.push('\t');
    copy_field(buf, e.actor_role.as_deref());
    buf.push('\t');
    let mut array = String::from("{");
    for (i, s) in e.scope.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push('"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                array.push('\\');
            }
            array.push(c);
        }
        array.push('"');
    }
    array.push('}');
    copy_field(buf, Some(&array));
    for f in [&e.request_id, &e.source_ip, &e.user_agent] {
        buf.push('\t');
        copy_field(buf, Some(f));
    }
    buf.push('\n');
}

fn copy_field(buf: &mut String, v: Option<&str>) {
    let Some(v) = v else {
        buf.push_str("\\N");
        return;
    };
    for c in v.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\t' => buf.push_str("\\t"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            c => buf.push(c),
        }
    }
}

/// Pull the indexes into shared_buffers (pg_prewarm ships with the server); the heap is in the
/// OS page cache anyway, having just been written. Best effort.
fn prewarm(client: &mut Client) {
    let sql = r#"CREATE EXTENSION IF NOT EXISTS pg_prewarm;
        SELECT pg_prewarm(indexrelid) FROM pg_index WHERE indrelid = '"LiteLLM_AuditLog"'::regclass"#;
    if let Err(e) = client.batch_execute(sql) {
        eprintln!("audit bench: PostgreSQL: pg_prewarm unavailable ({e}); warm-up runs only");
    }
}

fn sizes(client: &mut Client) -> Result<(Vec<(String, u64)>, u64), String> {
    let err = |e: postgres::Error| format!("size query: {e}");
    let row = client
        .query_one(
            r#"SELECT pg_relation_size('"LiteLLM_AuditLog"'),
                      pg_table_size('"LiteLLM_AuditLog"') - pg_relation_size('"LiteLLM_AuditLog"'),
                      pg_total_relation_size('"LiteLLM_AuditLog"')"#,
            &[],
        )
        .map_err(err)?;
    let heap: i64 = row.try_get(0).map_err(err)?;
    let toast: i64 = row.try_get(1).map_err(err)?;
    let total: i64 = row.try_get(2).map_err(err)?;
    let mut sizes = vec![
        ("heap".to_string(), heap as u64),
        ("TOAST + FSM/VM".to_string(), toast as u64),
    ];
    for r in client
        .query(
            r#"SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)
               FROM pg_index WHERE indrelid = '"LiteLLM_AuditLog"'::regclass ORDER BY 1"#,
            &[],
        )
        .map_err(err)?
    {
        let name: String = r.try_get(0).map_err(err)?;
        let bytes: i64 = r.try_get(1).map_err(err)?;
        sizes.push((name.trim_matches('"').to_string(), bytes as u64));
    }
    Ok((sizes, total as u64))
}

// ---------------------------------------------------------------------------------------------
// Queries.

/// The page query and (with `with_total`) the count query of a BenchQuery, and how many of the
/// page query's parameters the count query takes (the filter's; the page adds LIMIT, OFFSET).
fn sql_for(q: &BenchQuery) -> (String, Option<String>, usize) {
    let mut conds = Vec::new();
    if q.text.is_some() {
        conds.push("\"search\" @@ plainto_tsquery('simple', $N)");
    }
    if q.table_name.is_some() {
        conds.push("\"table_name\" = $N");
    }
    if q.action.is_some() {
        conds.push("\"action\" = $N");
    }
    if q.start_ms.is_some() {
        conds.push("\"updated_at\" >= $N");
    }
    if q.end_ms.is_some() {
        conds.push("\"updated_at\" < $N");
    }
    let n = conds.len();
    let mut filter = String::new();
    for (i, c) in conds.iter().enumerate() {
        filter.push_str(if i == 0 { " WHERE " } else { " AND " });
        filter.push_str(&c.replace("$N", &format!("${}", i + 1)));
    }
    let page = format!(
        "SELECT {COLUMNS} FROM {TABLE}{filter} ORDER BY \"updated_at\" DESC LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    let count = q
        .with_total
        .then(|| format!("SELECT count(*) FROM {TABLE}{filter}"));
    (page, count, n)
}

fn params(q: &BenchQuery) -> Vec<Box<dyn ToSql + Sync>> {
    let at = |ms: i64| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let mut p: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    if let Some(t) = &q.text {
        p.push(Box::new(t.clone()));
    }
    if let Some(t) = &q.table_name {
        p.push(Box::new(t.clone()));
    }
    if let Some(a) = &q.action {
        p.push(Box::new(a.clone()));
    }
    if let Some(s) = q.start_ms {
        p.push(Box::new(at(s)));
    }
    if let Some(e) = q.end_ms {
        p.push(Box::new(at(e)));
    }
    p.push(Box::new(q.page_size as i64));
    p.push(Box::new(q.offset() as i64));
    p
}

struct Prepared {
    page: Statement,
    count: Option<Statement>,
    filter_params: usize,
}

/// Run one query as the client would: fetch the page, decode every column of every row, and
/// fetch the total when asked. Returns (rows, total).
fn execute(
    client: &mut Client,
    p: &Prepared,
    q: &BenchQuery,
) -> Result<(u64, Option<u64>), String> {
    let params = params(q);
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| &**b as _).collect();
    let rows = client
        .query(&p.page, &refs)
        .map_err(|e| format!("{}: {e}", q.name))?;
    let mut bytes = 0usize;
    for row in &rows {
        bytes += decode(row).map_err(|e| format!("{}: decoding a row: {e}", q.name))?;
    }
    std::hint::black_box(bytes);
    let total = match &p.count {
        Some(c) => {
            let n: i64 = client
                .query_one(c, &refs[..p.filter_params])
                .and_then(|r| r.try_get(0))
                .map_err(|e| format!("{} count: {e}", q.name))?;
            Some(n as u64)
        }
        None => None,
    };
    Ok((rows.len() as u64, total))
}

/// Decode a whole row into owned values (what an API handler would do); returns its size.
fn decode(row: &Row) -> Result<usize, postgres::Error> {
    let mut bytes = 0;
    for i in [0usize, 2, 3, 4, 5, 6, 11, 12, 13] {
        bytes += row.try_get::<_, String>(i)?.len();
    }
    let at: SystemTime = row.try_get(1)?;
    std::hint::black_box(at);
    for i in [7usize, 8] {
        bytes += row
            .try_get::<_, Option<JsonText>>(i)?
            .map_or(0, |j| j.0.len());
    }
    bytes += row.try_get::<_, Option<String>>(9)?.map_or(0, |s| s.len());
    bytes += row
        .try_get::<_, Vec<String>>(10)?
        .iter()
        .map(String::len)
        .sum::<usize>();
    Ok(bytes)
}

/// A JSON or JSONB value as its JSON text (JSONB's binary wire format is a version byte, 1,
/// then the text), without the postgres crate's serde_json feature.
struct JsonText(String);

impl<'a> FromSql<'a> for JsonText {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<JsonText, Box<dyn std::error::Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, rest)) => rest,
                _ => return Err("unsupported JSONB wire version".into()),
            }
        } else {
            raw
        };
        Ok(JsonText(std::str::from_utf8(text)?.to_string()))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}

fn time_queries(
    client: &mut Client,
    queries: &[BenchQuery],
) -> Result<(Vec<Timing>, Vec<String>), String> {
    let mut prepared: HashMap<String, Prepared> = HashMap::new();
    let mut timings = Vec::new();
    let mut warnings = Vec::new();
    let explain = std::env::var_os("PORTCULLIS_BENCH_AUDIT_EXPLAIN").is_some();
    for name in r#gen::QUERY_NAMES {
        let runs: Vec<&BenchQuery> = queries.iter().filter(|q| q.name == name).collect();
        if runs.is_empty() {
            continue;
        }
        for q in &runs {
            let (page, count, filter_params) = sql_for(q);
            if let Entry::Vacant(slot) = prepared.entry(page) {
                let err = |e: postgres::Error| format!("prepare {name}: {e}");
                let page = client.prepare(slot.key()).map_err(err)?;
                let count = count.map(|c| client.prepare(&c)).transpose().map_err(err)?;
                slot.insert(Prepared {
                    page,
                    count,
                    filter_params,
                });
            }
        }
        let lookup = |q: &BenchQuery| prepared.get(&sql_for(q).0);
        if explain {
            explain_plan(client, runs[0]);
        }
        for q in runs.iter().take(r#gen::WARMUP) {
            if let Some(p) = lookup(q) {
                execute(client, p, q)?;
            }
        }
        let mut samples = Vec::with_capacity(runs.len());
        let mut hits = 0;
        for q in &runs {
            let Some(p) = lookup(q) else { continue };
            let t = Instant::now();
            let (rows, total) = execute(client, p, q)?;
            samples.push(t.elapsed());
            hits += rows;
            if let Some(total) = total
                && rows != q.page_rows(total)
            {
                warnings.push(format!(
                    "{name}: {rows} rows on page {} but total {total}",
                    q.page
                ));
            }
        }
        timings.push(Timing::from_samples(name, &samples, hits));
    }
    Ok((timings, warnings))
}

/// EXPLAIN (ANALYZE, BUFFERS) of a query's page (and count) SQL, to stderr.
fn explain_plan(client: &mut Client, q: &BenchQuery) {
    let (page, count, n) = sql_for(q);
    let params = params(q);
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| &**b as _).collect();
    let mut plans = vec![(page, refs.len())];
    if let Some(c) = count {
        plans.push((c, n));
    }
    for (sql, k) in plans {
        eprintln!("--- {}: {sql}", q.name);
        match client.query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), &refs[..k]) {
            Ok(rows) => {
                for r in rows {
                    if let Ok(line) = r.try_get::<_, String>(0) {
                        eprintln!("{line}");
                    }
                }
            }
            Err(e) => eprintln!("EXPLAIN failed: {e}"),
        }
    }
}
