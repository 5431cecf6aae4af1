//! Load benchmark: the real release gateway in front of a fast fake upstream (nginx), measured
//! in one run against that same upstream called directly.
//!
//! `cargo bench --bench load`
//!
//! For {non-streaming, streaming} chat × {1, 16, 64} connections it runs wrk (fixed duration,
//! POST body + virtual key from a Lua script) directly against nginx and through Portcullis, and
//! reports requests/s, p50/p99 latency, the latency Portcullis adds, both processes' CPU time per
//! request (utime+stime from /proc, nginx master + worker), and the gateway's RSS. A small
//! sequential client measures streaming time-to-first-chunk (first `data:` bytes) directly and
//! through the gateway. The same runs go through a bare reference proxy on the same stack (this
//! binary re-executed with `--floor-proxy`), and CPU used by other work on the machine is counted:
//! a disturbed pair is measured again. Output is a markdown report on stdout (also written to the file named by
//! `PORTCULLIS_BENCH_OUT`, when set).
//!
//! Installs nothing: needs `nginx` and `wrk` (Debian: `apt-get install nginx wrk`). Without them
//! it says so and exits 0, so `cargo build --benches` and CI never depend on them.
//!
//! The key used is governed by everything: a user in a team in the deepest of five nested
//! organisations, budgets and limits at every level (`PORTCULLIS_BENCH_GOVERNANCE=0`: a bare key).
//!
//! Knobs (environment): `PORTCULLIS_BENCH_SECS` (seconds per wrk run, default 5),
//! `PORTCULLIS_BENCH_TTFC_N` (sequential streaming requests per side, default 2000),
//! `NGINX`, `WRK` (tool paths), `PORTCULLIS_BIN` (another gateway binary, e.g. a profiling
//! build), `PORTCULLIS_BENCH_HOLD` (seconds: start both servers, print
//! the wrk commands and pids, and wait — for profiling — instead of measuring).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MASTER_KEY: &str = "sk-bench-master-0123456789abcdef";
const CONNECTIONS: [u32; 3] = [1, 16, 64];
/// A measured pair is repeated when other work used more than this (% of one CPU) meanwhile.
const NOISE_PCT: f64 = 10.0;

/// A realistic non-streaming `chat.completion` with usage, as OpenAI returns it.
const PLAIN_BODY: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! The quick brown fox jumps over the lazy dog. How can I help you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":18,"total_tokens":37,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;

const REQUEST_MESSAGES: &str = r#""messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64,"temperature":0.2"#;

/// The streamed answer: ten content chunks, a finish chunk, a usage chunk and `[DONE]`.
fn sse_body() -> String {
    let words = [
        "Hello", "!", " The", " quick", " brown", " fox", " jumps", " over", " the", " dog.",
    ];
    let head = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_fc9f1d7035","#;
    let mut s = String::new();
    s.push_str(&format!(
        "data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
    ));
    for w in words {
        s.push_str(&format!(
            "data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    s.push_str(&format!(
        "data: {head}\"choices\":[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n"
    ));
    s.push_str(&format!(
        "data: {head}\"choices\":[],\"usage\":{{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,\"prompt_tokens_details\":{{\"cached_tokens\":0,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}\n\n"
    ));
    s.push_str("data: [DONE]\n\n");
    s
}

fn request_body(model: &str, stream: bool) -> String {
    if stream {
        format!(
            r#"{{"model":"{model}",{REQUEST_MESSAGES},"stream":true,"stream_options":{{"include_usage":true}}}}"#
        )
    } else {
        format!(r#"{{"model":"{model}",{REQUEST_MESSAGES}}}"#)
    }
}

/// An nginx `return` string: single-quoted, with `\`, `'` and newlines escaped.
fn nginx_quote(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// nginx limits one config token to 4 KB: a longer body is split at event boundaries into
/// constant variables (`set` stores a pointer, no copy) that `return` concatenates.
fn nginx_return_long(body: &str) -> String {
    let mut parts: Vec<String> = vec![String::new()];
    for event in body.split_inclusive("\n\n") {
        if parts.last().is_some_and(|p| p.len() + event.len() > 3000) {
            parts.push(String::new());
        }
        parts.last_mut().unwrap().push_str(event);
    }
    let mut out = String::new();
    let mut vars = String::new();
    for (i, p) in parts.iter().enumerate() {
        out.push_str(&format!("            set $body{i} {};\n", nginx_quote(p)));
        vars.push_str(&format!("$body{i}"));
    }
    out.push_str(&format!("            return 200 \"{vars}\";"));
    out
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn find_tool(env_name: &str, name: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env_name) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(addr: SocketAddr, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!(
                "{what} exited during start-up ({s}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process stopped with SIGTERM (then SIGKILL) when dropped, panics included.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
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
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// (ppid, utime + stime in ticks) from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// CPU ticks of `pid` plus its direct children (nginx's master and worker).
fn cpu_ticks_tree(pid: u32) -> u64 {
    let mut total = proc_stat(pid).map(|s| s.1).unwrap_or(0);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && let Some((ppid, ticks)) = proc_stat(child)
                && ppid == pid
            {
                total += ticks;
            }
        }
    }
    total
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

/// CPU ticks of this process plus its exited, waited-for children (wrk).
fn self_and_children_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(close) = text.rfind(')') else {
        return 0;
    };
    let f: Vec<u64> = text[close + 2..]
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // Fields 14..17 (utime, stime, cutime, cstime) are 11..14 here (the state letter is skipped).
    f.get(10..14).map(|v| v.iter().sum()).unwrap_or(0)
}

/// CPU counters around one measured run.
#[derive(Clone, Copy)]
struct Cpu {
    busy: u64,
    gateway: u64,
    nginx: u64,
    client: u64,
}

impl Cpu {
    fn now(gw: u32, ngx: u32) -> Cpu {
        Cpu {
            client: self_and_children_ticks(),
            gateway: cpu_ticks_tree(gw),
            nginx: cpu_ticks_tree(ngx),
            busy: machine_busy_ticks(),
        }
    }

    /// Ticks used between `self` and `later` by everything except the gateway, nginx, wrk and
    /// this bench: other work on the machine, which skews the numbers.
    fn background(&self, later: &Cpu) -> u64 {
        (later.busy - self.busy).saturating_sub(
            (later.gateway - self.gateway)
                + (later.nginx - self.nginx)
                + (later.client - self.client),
        )
    }
}

/// Waits (up to `max`) for the machine to go quiet; returns the background load in % of a CPU.
fn wait_for_quiet(max: Duration, tck: f64) -> f64 {
    let deadline = Instant::now() + max;
    loop {
        let b0 = machine_busy_ticks();
        std::thread::sleep(Duration::from_secs(1));
        let pct = (machine_busy_ticks() - b0) as f64 / tck * 100.0;
        if pct < 15.0 || Instant::now() > deadline {
            return pct;
        }
        eprintln!("waiting for a quiet machine: {pct:.0}% of a CPU busy elsewhere");
    }
}

/// A field of /proc/PID/status in kB (VmRSS, VmHWM).
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

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------- a minimal HTTP/1.1 client

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

struct Resp {
    status: u16,
    body: Vec<u8>,
    /// When the first body bytes holding `data:` arrived (streaming time-to-first-chunk).
    first_data: Option<Instant>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            stream,
            buf: Vec::with_capacity(16 << 10),
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed mid-response");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Sends one request (keep-alive) and reads its whole response.
    fn request(&mut self, path: &str, host: SocketAddr, auth: &str, body: &str) -> Resp {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(req.as_bytes()).unwrap();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill();
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let length: Option<usize> = header("content-length:").and_then(|v| v.parse().ok());
        let chunked = header("transfer-encoding:").is_some_and(|v| v.contains("chunked"));
        let mut first_data = None;
        let mut body = Vec::new();
        if chunked {
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf[pos..], b"\r\n") {
                        break pos + i;
                    }
                    self.fill();
                };
                let size_text = String::from_utf8_lossy(&self.buf[pos..line_end]);
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .expect("chunk size");
                let data_start = line_end + 2;
                while self.buf.len() < data_start + size + 2 {
                    self.fill();
                }
                if size == 0 {
                    self.buf.drain(..data_start + 2);
                    break;
                }
                body.extend_from_slice(&self.buf[data_start..data_start + size]);
                if first_data.is_none() && find(&body, b"data:").is_some() {
                    first_data = Some(Instant::now());
                }
                pos = data_start + size + 2;
            }
        } else {
            let length = length.unwrap_or(0);
            while self.buf.len() < head_end + length {
                if first_data.is_none() && find(&self.buf[head_end..], b"data:").is_some() {
                    first_data = Some(Instant::now());
                }
                self.fill();
            }
            body.extend_from_slice(&self.buf[head_end..head_end + length]);
            if first_data.is_none() && find(&body, b"data:").is_some() {
                first_data = Some(Instant::now());
            }
            self.buf.drain(..head_end + length);
        }
        Resp {
            status,
            body,
            first_data,
        }
    }
}

// ---------------------------------------------------------------- wrk

#[derive(Clone, Copy, Default)]
struct WrkResult {
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

fn wrk_script(dir: &Path, name: &str, body: &str, key: &str) -> PathBuf {
    let path = dir.join(format!("{name}.lua"));
    let script = format!(
        r#"wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("PCBENCH %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"#
    );
    std::fs::write(&path, script).unwrap();
    path
}

fn run_wrk(wrk: &Path, script: &Path, url: &str, conns: u32, secs: u64) -> WrkResult {
    let out = Command::new(wrk)
        .arg("-t1")
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg("--timeout")
        .arg("5s")
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("PCBENCH "))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no summary:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let n: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    WrkResult {
        requests: n[0] as u64,
        rps: n[0] / (n[1] / 1e6),
        p50_us: n[2],
        p99_us: n[3],
        errors: n[4] as u64,
    }
}

// ---------------------------------------------------------------- the reference proxy

/// The floor under any gateway on this stack: the same tokio multi-thread runtime, hyper server
/// and pooled hyper-util client as Portcullis, forwarding the request body and path untouched
/// and streaming the answer back — no auth, no JSON, no routing. Runs as `load --floor-proxy
/// UPSTREAM READY_FILE` (this bench binary, re-executed).
fn floor_proxy(upstream: SocketAddr, ready: &Path) {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::{Client, connect::HttpConnector};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tmp = ready.with_extension("tmp");
        std::fs::write(&tmp, listener.local_addr().unwrap().to_string()).unwrap();
        std::fs::rename(&tmp, ready).unwrap();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(512)
            .build(http);
        let builder = std::sync::Arc::new(hyper_util::server::conn::auto::Builder::new(
            TokioExecutor::new(),
        ));
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let client = client.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            let uri = format!("http://{upstream}{}", parts.uri.path());
                            let mut up = http::Request::post(uri);
                            for name in [http::header::CONTENT_TYPE, http::header::AUTHORIZATION] {
                                if let Some(v) = parts.headers.get(&name) {
                                    up = up.header(name, v);
                                }
                            }
                            let up = up.body(Full::new(body)).unwrap();
                            match client.request(up).await {
                                Ok(resp) => Ok::<_, hyper::Error>(resp.map(|b| b.boxed())),
                                Err(e) => Ok(http::Response::builder()
                                    .status(502)
                                    .body(
                                        Full::new(Bytes::from(e.to_string()))
                                            .map_err(|never| match never {})
                                            .boxed(),
                                    )
                                    .unwrap()),
                            }
                        }
                    });
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// Starts the reference proxy in front of `s.upstream`; None (and a note) if it fails.
fn start_floor(s: &Setup) -> Option<(Proc, SocketAddr)> {
    let ready = s.dir.join("floor-ready");
    let mut child = Command::new(std::env::current_exe().ok()?)
        .arg("--floor-proxy")
        .arg(s.upstream.to_string())
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(addr) = std::fs::read_to_string(&ready)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return Some((
                Proc {
                    child,
                    name: "reference proxy",
                },
                addr,
            ));
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            eprintln!("the reference proxy did not start; skipping it");
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- the setup

struct Setup {
    // Field order is drop order: the gateway stops before its upstream, both before the
    // temp dir goes.
    gateway: Proc,
    nginx: Proc,
    dir: PathBuf,
    upstream: SocketAddr,
    gw_addr: SocketAddr,
    key: String,
    _tmp: tempfile::TempDir,
}

fn start(nginx_bin: &Path) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();

    // nginx: one worker, no access log, fixed answers to POST.
    let port = free_port();
    let upstream: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = dir.display();
    let conf = format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server_tokens off;
    server {{
        listen 127.0.0.1:{port};
        location = /plain/v1/chat/completions {{
            default_type application/json;
            return 200 {plain};
        }}
        location = /sse/v1/chat/completions {{
            default_type text/event-stream;
            add_header Cache-Control no-cache;
{sse}
        }}
    }}
}}
"#,
        plain = nginx_quote(PLAIN_BODY),
        sse = nginx_return_long(&sse_body()),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let nginx_log = dir.join("nginx-stderr.log");
    let mut child = Command::new(nginx_bin)
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&nginx_log).unwrap()))
        .spawn()
        .expect("spawn nginx");
    wait_for_port(upstream, &mut child, "nginx", &nginx_log);
    let nginx = Proc {
        child,
        name: "nginx",
    };

    // The release gateway.
    let config = format!(
        r#"model_list:
  - model_name: plain
    litellm_params:
      model: openai/x
      api_base: http://{upstream}/plain/v1
      api_key: sk-upstream-anything
      input_cost_per_token: 0.0000001
      output_cost_per_token: 0.0000002
  - model_name: sse
    litellm_params:
      model: openai/x
      api_base: http://{upstream}/sse/v1
      api_key: sk-upstream-anything
      input_cost_per_token: 0.0000001
      output_cost_per_token: 0.0000002
"#
    );
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, config).unwrap();
    let ready = dir.join("ready.json");
    let gw_log = dir.join("gateway.log");
    let log_file = std::fs::File::create(&gw_log).unwrap();
    let bin = std::env::var_os("PORTCULLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_portcullis")));
    let mut child = Command::new(bin)
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--ready-file")
        .arg(&ready)
        .arg("--config")
        .arg(&config_path)
        .env_remove("LITELLM_MASTER_KEY")
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_DATA_DIR")
        .env_remove("PORTCULLIS_LISTEN")
        .env_remove("PORTCULLIS_LOG")
        .env("PORTCULLIS_MASTER_KEY", MASTER_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("spawn portcullis");
    let deadline = Instant::now() + Duration::from_secs(30);
    let gw_addr: SocketAddr = loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(a) = v["addr"].as_str()
        {
            break a.parse().unwrap();
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!(
                "portcullis exited during start-up ({s}):\n{}",
                std::fs::read_to_string(&gw_log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "portcullis did not become ready");
        std::thread::sleep(Duration::from_millis(10));
    };
    let gateway = Proc {
        child,
        name: "portcullis",
    };

    // A virtual key for both models, so every request takes the key path (not the master key),
    // and with every governance check on: the key belongs to a user in a team in the deepest of
    // five nested organisations, and every level carries a budget and limits (far from reached,
    // so every request is admitted and settled at each level).
    let mut c = Conn::open(gw_addr);
    let limits = r#""max_budget":1000000,"soft_budget":900000,"budget_duration":"30d","rpm_limit":100000000,"tpm_limit":10000000000,"max_parallel_requests":100000"#;
    let mut setup = |path: &str, body: String| {
        let r = c.request(path, gw_addr, MASTER_KEY, &body);
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r
    };
    // `PORTCULLIS_BENCH_GOVERNANCE=0`: a bare key only, for binaries from before governance
    // (to compare releases on the same machine in the same hour).
    let governance = env_num("PORTCULLIS_BENCH_GOVERNANCE", 1u8) != 0;
    for level in (0..5).filter(|_| governance) {
        let parent = match level {
            0 => String::new(),
            n => format!(r#","parent_organization_id":"org-{}""#, n - 1),
        };
        setup(
            "/organization/new",
            format!(
                r#"{{"organization_id":"org-{level}","organization_alias":"Level {level}","models":["plain","sse"],{limits}{parent}}}"#
            ),
        );
    }
    if governance {
        setup(
            "/team/new",
            format!(
                r#"{{"team_id":"bench-team","organization_id":"org-4","models":["plain","sse"],{limits}}}"#
            ),
        );
        setup(
            "/user/new",
            format!(
                r#"{{"user_id":"bench-user","teams":["bench-team"],"auto_create_key":false,{limits}}}"#
            ),
        );
        setup(
        "/team/member_update",
        r#"{"team_id":"bench-team","user_id":"bench-user","max_budget_in_team":1000000,"rpm_limit":100000000}"#.to_string(),
    );
    }
    let r = if governance {
        setup(
            "/key/generate",
            format!(
                r#"{{"models":["plain","sse"],"key_alias":"load-bench","user_id":"bench-user","team_id":"bench-team",{limits}}}"#
            ),
        )
    } else {
        setup(
            "/key/generate",
            r#"{"models":["plain","sse"],"key_alias":"load-bench"}"#.to_string(),
        )
    };
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let key = v["key"].as_str().unwrap().to_string();

    Setup {
        _tmp: tmp,
        dir,
        gateway,
        nginx,
        upstream,
        gw_addr,
        key,
    }
}

/// One request of each kind on each side, checked, before anything is timed.
fn sanity(s: &Setup) {
    for (model, stream) in [("plain", false), ("sse", true)] {
        let body = request_body(model, stream);
        let mut direct = Conn::open(s.upstream);
        let d = direct.request(
            &format!("/{model}/v1/chat/completions"),
            s.upstream,
            &s.key,
            &body,
        );
        let mut gw = Conn::open(s.gw_addr);
        let g = gw.request("/v1/chat/completions", s.gw_addr, &s.key, &body);
        for (side, r) in [("direct", &d), ("gateway", &g)] {
            let text = String::from_utf8_lossy(&r.body);
            assert_eq!(r.status, 200, "{model} {side}: {text}");
            if stream {
                assert!(
                    text.starts_with("data: ") && text.contains("data: [DONE]"),
                    "{model} {side}: not an SSE stream: {text}"
                );
                assert!(
                    text.contains("\"usage\":{"),
                    "{model} {side}: no usage chunk"
                );
            } else {
                let v: serde_json::Value = serde_json::from_slice(&r.body)
                    .unwrap_or_else(|e| panic!("{model} {side}: {e}: {text}"));
                assert_eq!(v["object"], "chat.completion", "{model} {side}: {text}");
            }
        }
    }
}

struct Row {
    mode: &'static str,
    conns: u32,
    direct: WrkResult,
    gateway: WrkResult,
    nginx_us_direct: f64,
    nginx_us_gw: f64,
    gw_us: f64,
    gw_rss_kb: u64,
    gw_hwm_kb: u64,
    /// Other work on the machine during the runs, in % of one CPU (the largest of the runs).
    background: f64,
    /// The bare reference proxy at the same settings: its wrk result and CPU µs per request.
    reference: Option<(WrkResult, f64)>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sequential streaming requests on one keep-alive connection; time to the first `data:` bytes.
fn ttfc(addr: SocketAddr, path: &str, key: &str, n: usize) -> (f64, f64) {
    let body = request_body("sse", true);
    let mut c = Conn::open(addr);
    for _ in 0..(n / 10).max(50) {
        let r = c.request(path, addr, key, &body);
        assert_eq!(r.status, 200);
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let r = c.request(path, addr, key, &body);
        assert_eq!(r.status, 200);
        let first = r.first_data.expect("no data: in the stream");
        samples.push((first - t0).as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 50.0), percentile(&samples, 99.0))
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs, {model}, Linux {}", kernel.trim())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "meets" } else { "MISSES" }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--floor-proxy") {
        floor_proxy(args[2].parse().unwrap(), Path::new(&args[3]));
        return;
    }
    // `cargo bench` passes `--bench` (and maybe a filter); there is nothing to select here.
    let (Some(nginx_bin), Some(wrk)) = (find_tool("NGINX", "nginx"), find_tool("WRK", "wrk"))
    else {
        println!(
            "load bench skipped: it needs `nginx` and `wrk` on PATH (Debian: apt-get install nginx wrk)"
        );
        return;
    };
    let secs: u64 = env_num("PORTCULLIS_BENCH_SECS", 5);
    let ttfc_n: usize = env_num("PORTCULLIS_BENCH_TTFC_N", 2000);
    let tck = clock_ticks();
    let started = Instant::now();

    let quiet = wait_for_quiet(Duration::from_secs(30), tck);
    let s = start(&nginx_bin);
    sanity(&s);
    // Idle: started, one key made, one request of each kind served, then quiet for 3 s — long
    // enough for the audit indexer to commit the set-up's entries and close its writer (its
    // transient memory shows in the peak, VmHWM, instead).
    std::thread::sleep(Duration::from_secs(3));
    let gw = s.gateway.pid();
    let ngx = s.nginx.pid();
    let idle_rss = status_kb(gw, "VmRSS");
    eprintln!(
        "nginx {} (pid {ngx}), portcullis {} (pid {gw}), idle RSS {:.1} MB; {secs} s per run",
        s.upstream,
        s.gw_addr,
        mb(idle_rss)
    );

    // Profiling aid: keep both servers up with the wrk scripts written, and measure nothing.
    let hold: u64 = env_num("PORTCULLIS_BENCH_HOLD", 0);
    if hold > 0 {
        for (model, stream) in [("plain", false), ("sse", true)] {
            let script = wrk_script(&s.dir, model, &request_body(model, stream), &s.key);
            println!(
                "{model}: wrk -t1 -c64 -d10s --latency -s {} http://{}/v1/chat/completions   (direct: http://{}/{model}/v1/chat/completions)",
                script.display(),
                s.gw_addr,
                s.upstream
            );
        }
        println!("gateway pid {gw}, nginx pid {ngx}; holding for {hold} s");
        std::thread::sleep(Duration::from_secs(hold));
        return;
    }

    let floor = start_floor(&s);
    let floor_pid = floor.as_ref().map_or(0, |(p, _)| p.pid());
    let per_req = |ticks: u64, reqs: u64| ticks as f64 / tck * 1e6 / reqs.max(1) as f64;
    let mut rows = Vec::new();
    for (mode, model, stream) in [
        ("non-streaming", "plain", false),
        ("streaming", "sse", true),
    ] {
        let body = request_body(model, stream);
        let script = wrk_script(&s.dir, model, &body, &s.key);
        let direct_url = format!("http://{}/{model}/v1/chat/completions", s.upstream);
        let gw_url = format!("http://{}/v1/chat/completions", s.gw_addr);
        for conns in CONNECTIONS {
            // Warm both sides at this concurrency (connections, pools, allocator).
            run_wrk(&wrk, &script, &direct_url, conns, 1);
            run_wrk(&wrk, &script, &gw_url, conns, 1);
            // A pair disturbed by other work on the machine is measured again (twice at most).
            let mut best: Option<Row> = None;
            for attempt in 0..3 {
                let c0 = Cpu::now(gw, ngx);
                let direct = run_wrk(&wrk, &script, &direct_url, conns, secs);
                let c1 = Cpu::now(gw, ngx);
                let gateway = run_wrk(&wrk, &script, &gw_url, conns, secs);
                let c2 = Cpu::now(gw, ngx);
                // The reference: a bare hyper pass-through proxy on the same runtime and client.
                let reference = floor.as_ref().map(|(_, faddr)| {
                    let url = format!("http://{faddr}/{model}/v1/chat/completions");
                    run_wrk(&wrk, &script, &url, conns, 1);
                    let f0 = cpu_ticks_tree(floor_pid);
                    let c3 = Cpu::now(gw, ngx);
                    let r = run_wrk(&wrk, &script, &url, conns, secs);
                    let c4 = Cpu::now(gw, ngx);
                    let f1 = cpu_ticks_tree(floor_pid);
                    // The reference proxy's own CPU is not "other work".
                    let bg = c3.background(&c4).saturating_sub(f1 - f0);
                    (r, per_req(f1 - f0, r.requests), bg)
                });
                let background = c0
                    .background(&c1)
                    .max(c1.background(&c2))
                    .max(reference.map_or(0, |r| r.2)) as f64
                    / tck
                    / secs as f64
                    * 100.0;
                let row = Row {
                    mode,
                    conns,
                    direct,
                    gateway,
                    nginx_us_direct: per_req(c1.nginx - c0.nginx, direct.requests),
                    nginx_us_gw: per_req(c2.nginx - c1.nginx, gateway.requests),
                    gw_us: per_req(c2.gateway - c1.gateway, gateway.requests),
                    background,
                    gw_rss_kb: status_kb(gw, "VmRSS"),
                    gw_hwm_kb: status_kb(gw, "VmHWM"),
                    reference: reference.map(|r| (r.0, r.1)),
                };
                eprintln!(
                    "{mode:>13} c={conns:<2}  direct {:>8.0} req/s p50 {:>6.0} µs p99 {:>6.0} µs | gateway {:>8.0} req/s p50 {:>6.0} µs p99 {:>6.0} µs | CPU µs/req nginx {:.1} gateway {:.1} | RSS {:.1} MB | background {:.0}%",
                    direct.rps,
                    direct.p50_us,
                    direct.p99_us,
                    gateway.rps,
                    gateway.p50_us,
                    gateway.p99_us,
                    row.nginx_us_gw,
                    row.gw_us,
                    mb(row.gw_rss_kb),
                    row.background
                );
                if best.as_ref().is_none_or(|b| row.background < b.background) {
                    best = Some(row);
                }
                if best.as_ref().is_some_and(|b| b.background <= NOISE_PCT) || attempt == 2 {
                    break;
                }
                eprintln!("  other work on the machine disturbed this pair; measuring it again");
                wait_for_quiet(Duration::from_secs(20), tck);
            }
            rows.extend(best);
        }
    }
    drop(floor);

    let ttfc_direct = ttfc(s.upstream, "/sse/v1/chat/completions", &s.key, ttfc_n);
    let ttfc_gw = ttfc(s.gw_addr, "/v1/chat/completions", &s.key, ttfc_n);
    std::thread::sleep(Duration::from_secs(1));
    let idle_after = status_kb(gw, "VmRSS");
    let hwm = status_kb(gw, "VmHWM");
    let elapsed = started.elapsed().as_secs_f64();

    // ------------------------------------------------------------ report
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}  ", machine());
    let _ = writeln!(
        out,
        "wrk -t1, {secs} s per run (after a 1 s warm-up of each side), nginx worker_processes 1; total {elapsed:.0} s.\n"
    );
    let _ = writeln!(
        out,
        "| mode | conns | direct req/s | gateway req/s | direct p50 / p99 (ms) | gateway p50 / p99 (ms) | added p50 / p99 (ms) | CPU µs/req: nginx direct · nginx via gw · gateway | gateway ÷ nginx CPU | gateway RSS / peak (MB) | errors | background CPU |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.3} / {:.3} | {:.3} / {:.3} | {:+.3} / {:+.3} | {:.1} · {:.1} · {:.1} | {:.2}× | {:.1} / {:.1} | {} | {:.0}% |",
            r.mode,
            r.conns,
            r.direct.rps,
            r.gateway.rps,
            r.direct.p50_us / 1e3,
            r.direct.p99_us / 1e3,
            r.gateway.p50_us / 1e3,
            r.gateway.p99_us / 1e3,
            (r.gateway.p50_us - r.direct.p50_us) / 1e3,
            (r.gateway.p99_us - r.direct.p99_us) / 1e3,
            r.nginx_us_direct,
            r.nginx_us_gw,
            r.gw_us,
            r.gw_us / r.nginx_us_gw.max(f64::MIN_POSITIVE),
            mb(r.gw_rss_kb),
            mb(r.gw_hwm_kb),
            r.direct.errors + r.gateway.errors,
            r.background,
        );
    }
    let noisy = rows.iter().map(|r| r.background).fold(quiet, f64::max);
    if noisy > NOISE_PCT {
        let _ = writeln!(
            out,
            "\n**Warning:** other work used up to {noisy:.0}% of a CPU during the runs (\"background CPU\"); latencies and throughput are skewed — rerun on a quiet machine."
        );
    }
    let _ = writeln!(
        out,
        "\nStreaming time to first chunk (first `data:` bytes), {ttfc_n} sequential requests on one keep-alive connection:\n"
    );
    let _ = writeln!(out, "| | p50 (ms) | p99 (ms) |");
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(
        out,
        "| direct | {:.3} | {:.3} |",
        ttfc_direct.0 / 1e3,
        ttfc_direct.1 / 1e3
    );
    let _ = writeln!(
        out,
        "| through Portcullis | {:.3} | {:.3} |",
        ttfc_gw.0 / 1e3,
        ttfc_gw.1 / 1e3
    );
    let _ = writeln!(
        out,
        "| added | {:+.3} | {:+.3} |",
        (ttfc_gw.0 - ttfc_direct.0) / 1e3,
        (ttfc_gw.1 - ttfc_direct.1) / 1e3
    );
    if rows.iter().any(|r| r.reference.is_some()) {
        let _ = writeln!(
            out,
            "\nReference: a bare pass-through proxy on the same stack (tokio multi-thread, hyper server, pooled hyper-util client; no auth, JSON or routing), measured in the same run — the floor any gateway on this stack starts from:\n"
        );
        let _ = writeln!(
            out,
            "| mode | conns | req/s | p50 / p99 (ms) | added over direct p50 / p99 (ms) | CPU µs/req | ÷ nginx CPU (via gateway run) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for row in &rows {
            let Some((r, us)) = &row.reference else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.3} / {:.3} | {:+.3} / {:+.3} | {us:.1} | {:.2}× |",
                row.mode,
                row.conns,
                r.rps,
                r.p50_us / 1e3,
                r.p99_us / 1e3,
                (r.p50_us - row.direct.p50_us) / 1e3,
                (r.p99_us - row.direct.p99_us) / 1e3,
                us / row.nginx_us_gw.max(f64::MIN_POSITIVE),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nGateway memory: idle after start {:.1} MB; after the load {:.1} MB; peak (VmHWM) {:.1} MB.\n",
        mb(idle_rss),
        mb(idle_after),
        mb(hwm)
    );

    // Targets.
    let worst_ratio = rows
        .iter()
        .map(|r| (r.gw_us / r.nginx_us_gw.max(f64::MIN_POSITIVE), r))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let row = |mode: &str, c: u32| rows.iter().find(|r| r.mode == mode && r.conns == c);
    let _ = writeln!(out, "| target | measured | verdict |");
    let _ = writeln!(out, "|---|---|---|");
    if let Some((ratio, r)) = worst_ratio {
        let _ = writeln!(
            out,
            "| gateway CPU/request ≤ 3× upstream's | worst {ratio:.2}× ({} c={}) | {} |",
            r.mode,
            r.conns,
            verdict(ratio <= 3.0)
        );
    }
    for mode in ["non-streaming", "streaming"] {
        if let Some(r) = row(mode, 1) {
            let added = (r.gateway.p50_us - r.direct.p50_us) / 1e3;
            let _ = writeln!(
                out,
                "| added p50 ≤ 0.1 ms at 1 connection ({mode}) | {added:.3} ms | {} |",
                verdict(added <= 0.1)
            );
        }
        if let Some(r) = row(mode, 64) {
            let added = (r.gateway.p99_us - r.direct.p99_us) / 1e3;
            let _ = writeln!(
                out,
                "| added p99 ≤ 2 ms at 64 connections ({mode}) | {added:.3} ms | {} |",
                verdict(added <= 2.0)
            );
        }
    }
    let peak64 = rows
        .iter()
        .filter(|r| r.conns == 64)
        .map(|r| r.gw_hwm_kb)
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "| RSS ≤ 40 MB under 64 connections | peak {:.1} MB | {} |",
        mb(peak64),
        verdict(mb(peak64) <= 40.0)
    );
    let _ = writeln!(
        out,
        "| RSS ≤ 20 MB idle | {:.1} MB at start, {:.1} MB after the load | {} |",
        mb(idle_rss),
        mb(idle_after),
        verdict(mb(idle_rss) <= 20.0 && mb(idle_after) <= 20.0)
    );
    let added_ttfc = (ttfc_gw.0 - ttfc_direct.0) / 1e3;
    let _ = writeln!(
        out,
        "| streaming added time-to-first-chunk p50 ≤ 0.2 ms at 1 connection | {added_ttfc:.3} ms | {} |",
        verdict(added_ttfc <= 0.2)
    );

    println!("{out}");
    if let Ok(path) = std::env::var("PORTCULLIS_BENCH_OUT") {
        std::fs::write(&path, &out).unwrap();
    }
    drop(s);
}
