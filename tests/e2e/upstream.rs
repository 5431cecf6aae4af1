//! A realistic fake LLM provider for integration tests and benchmarks.
//!
//! It speaks three dialects over plain HTTP/1.1 on `127.0.0.1:<ephemeral>`:
//!
//! * **OpenAI** — `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//!   `GET /v1/models` (each also without the `/v1` prefix); auth `Authorization: Bearer <key>`.
//! * **Azure OpenAI** — `POST /openai/deployments/{deployment}/{chat/completions|completions|embeddings}`
//!   with a required `api-version` query parameter; auth `api-key: <key>`. The response's
//!   `model` is the deployment name.
//! * **Anthropic Messages** — `POST /v1/messages`; auth `x-api-key: <key>`, plus a required
//!   `anthropic-version` header and a required `max_tokens` body field (like the real API).
//!
//! The server runs on its own OS thread with its own tokio runtime, so it can be used from
//! synchronous tests, `#[tokio::test]`s of any flavour, and benchmarks alike.
//!
//! Content is deterministic: the reply is `"Echo: " + <last user message text>`; token usage is
//! computed from whitespace-separated words (see [`FakeUpstream`] docs). Tests can script
//! failures per request with [`FakeUpstream::push`], and inspect what was received with
//! [`FakeUpstream::requests`] and the stream counters.
//!
//! This file is self-contained (tokio, hyper, hyper-util, http-body-util, bytes, serde_json,
//! http only) so a bench can include it with `#[path = "../tests/e2e/upstream.rs"] mod upstream;`.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};

/// Default key the fake upstream accepts (in the dialect's auth header).
pub const DEFAULT_UPSTREAM_KEY: &str = "sk-upstream-test";

/// `system_fingerprint` returned on every OpenAI-dialect completion.
pub const SYSTEM_FINGERPRINT: &str = "fp_fakeupstream";

/// Models listed by `GET /v1/models`.
pub const OPENAI_MODELS: &[&str] = &["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"];
/// Models listed by `GET /v1/models` when the request carries `anthropic-version`.
pub const ANTHROPIC_MODELS: &[&str] = &["claude-sonnet-4-5", "claude-haiku-4-5"];

/// Tool-call arguments the fake model always "decides" on.
pub const TOOL_ARGUMENTS: &str = r#"{"location":"Paris"}"#;

/// A scripted behaviour, consumed one per incoming request (any route), FIFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Answer with this status. `body: None` gives the dialect's error JSON with a sensible
    /// message; `retry_after: Some(v)` adds a `retry-after: v` header.
    Status {
        status: u16,
        body: Option<String>,
        retry_after: Option<String>,
    },
    /// Sleep this long, then behave normally.
    Delay(Duration),
    /// Never answer (until the client goes away or the server shuts down).
    Hang,
    /// Drop the TCP connection without writing any response.
    CloseConnection,
}

impl Behavior {
    /// `Status` with the dialect's default error body and no `retry-after`.
    pub fn status(status: u16) -> Self {
        Behavior::Status {
            status,
            body: None,
            retry_after: None,
        }
    }

    /// `429` with the dialect's rate-limit error body and a `retry-after` header.
    pub fn rate_limited(retry_after: impl Into<String>) -> Self {
        Behavior::Status {
            status: 429,
            body: None,
            retry_after: Some(retry_after.into()),
        }
    }
}

/// API dialect, chosen from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Azure,
    Anthropic,
}

impl Dialect {
    /// The dialect a request path belongs to (unknown paths count as OpenAI).
    pub fn for_path(path: &str) -> Dialect {
        if path.starts_with("/openai/") {
            Dialect::Azure
        } else if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }
}

/// One request as received by the fake upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lowercase; order as received; repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body, or `Value::Null` when the body is empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// First value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Shared, thread-safe state of one fake upstream.
struct State {
    script: Mutex<VecDeque<Behavior>>,
    latency: Mutex<Duration>,
    chunk_delay: Mutex<Duration>,
    accepted_key: Mutex<String>,
    requests: Mutex<Vec<RecordedRequest>>,
    recording: AtomicBool,
    request_count: AtomicU64,
    next_id: AtomicU64,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_cancelled: AtomicU64,
}

impl State {
    fn new() -> Self {
        State {
            script: Mutex::new(VecDeque::new()),
            latency: Mutex::new(Duration::ZERO),
            chunk_delay: Mutex::new(Duration::ZERO),
            accepted_key: Mutex::new(DEFAULT_UPSTREAM_KEY.to_string()),
            requests: Mutex::new(Vec::new()),
            recording: AtomicBool::new(true),
            request_count: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            streams_started: AtomicU64::new(0),
            streams_completed: AtomicU64::new(0),
            streams_cancelled: AtomicU64::new(0),
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn key(&self) -> String {
        self.accepted_key.lock().unwrap().clone()
    }
}

/// Handle to a running fake LLM provider. Dropping it shuts the server down.
///
/// Token accounting (all dialects): `prompt_tokens` / `input_tokens` = the number of
/// whitespace-separated words in every message's text (string content, or the `text` of
/// `type: "text"` parts) + 3 per message (+ the words of Anthropic's `system`);
/// `completion_tokens` / `output_tokens` = words in the reply (for a tool call: words in
/// `"<tool name> <arguments>"`, i.e. 2). Completions: prompt words / reply words.
/// Embeddings: words of the inputs (token arrays count their length).
pub struct FakeUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Start on `127.0.0.1:0` with a one-worker runtime; returns once listening.
    pub fn start() -> FakeUpstream {
        FakeUpstream::start_with_workers(1)
    }

    /// Start with `workers` tokio worker threads (at least 1) — for load benchmarks.
    pub fn start_with_workers(workers: usize) -> FakeUpstream {
        let state = Arc::new(State::new());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let server_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("fake-upstream".to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers.max(1))
                    .thread_name("fake-upstream-worker")
                    .enable_all()
                    .build()
                    .expect("build fake upstream runtime");
                rt.block_on(serve(server_state, addr_tx, shutdown_rx));
                // Drops every connection task (hung requests, open streams) promptly.
                rt.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn fake upstream thread");
        let addr = addr_rx
            .recv()
            .expect("fake upstream thread died before listening")
            .expect("bind fake upstream listener");
        FakeUpstream {
            addr,
            state,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"http://127.0.0.1:PORT"` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Append a scripted behaviour; each incoming request consumes one (FIFO).
    pub fn push(&self, behavior: Behavior) {
        self.state.script.lock().unwrap().push_back(behavior);
    }

    /// Number of scripted behaviours not yet consumed.
    pub fn pending_behaviors(&self) -> usize {
        self.state.script.lock().unwrap().len()
    }

    /// Fixed latency added before every response (time to first byte for streams).
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().unwrap() = latency;
    }

    /// Delay between consecutive chunks of streamed responses (default 0).
    pub fn set_chunk_delay(&self, delay: Duration) {
        *self.state.chunk_delay.lock().unwrap() = delay;
    }

    /// The API key the upstream accepts (default [`DEFAULT_UPSTREAM_KEY`]).
    pub fn set_accepted_key(&self, key: impl Into<String>) {
        *self.state.accepted_key.lock().unwrap() = key.into();
    }

    /// Turn request recording on/off (on by default; benches may turn it off to save memory).
    /// `request_count()` keeps counting either way.
    pub fn set_recording(&self, on: bool) {
        self.state.recording.store(on, Ordering::Relaxed);
    }

    /// Every recorded request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The most recently recorded request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state.requests.lock().unwrap().last().cloned()
    }

    /// Number of requests received (recorded or not).
    pub fn request_count(&self) -> usize {
        self.state.request_count.load(Ordering::SeqCst) as usize
    }

    /// Forget recorded requests, reset counters and the script. Latency, chunk delay and
    /// the accepted key are kept.
    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
        self.state.script.lock().unwrap().clear();
        self.state.request_count.store(0, Ordering::SeqCst);
        self.state.streams_started.store(0, Ordering::SeqCst);
        self.state.streams_completed.store(0, Ordering::SeqCst);
        self.state.streams_cancelled.store(0, Ordering::SeqCst);
    }

    /// Streamed responses handed to the client.
    pub fn streams_started(&self) -> u64 {
        self.state.streams_started.load(Ordering::SeqCst)
    }

    /// Streams whose every chunk was taken by the connection.
    pub fn streams_completed(&self) -> u64 {
        self.state.streams_completed.load(Ordering::SeqCst)
    }

    /// Streams dropped before their end (the client went away).
    pub fn streams_cancelled(&self) -> u64 {
        self.state.streams_cancelled.load(Ordering::SeqCst)
    }

    /// Poll `cond` (every 5 ms) until it holds or `timeout` passes; async, so the caller's
    /// runtime keeps driving its own client connections meanwhile. Needs a tokio timer.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        cond: impl Fn(&FakeUpstream) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Wait until every started stream has completed or been cancelled.
    pub async fn wait_streams_settled(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |u| {
            u.streams_started() == u.streams_completed() + u.streams_cancelled()
        })
        .await
    }

    /// Blocking variant of [`FakeUpstream::wait_until`] for synchronous callers. Do not call
    /// it on a runtime thread that must drive the client side.
    pub fn wait_until_blocking(
        &self,
        timeout: Duration,
        cond: impl Fn(&FakeUpstream) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Bounded: the accept loop stops at once and the runtime shutdown has a timeout.
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server loop
// ---------------------------------------------------------------------------------------------

type RespBody = BoxBody<Bytes, Infallible>;
type Resp = Response<RespBody>;

async fn serve(
    state: Arc<State>,
    addr_tx: std::sync::mpsc::Sender<std::io::Result<SocketAddr>>,
    mut shutdown_rx: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(l) => l,
        Err(e) => {
            let _ = addr_tx.send(Err(e));
            return;
        }
    };
    let _ = addr_tx.send(listener.local_addr());
    loop {
        tokio::select! {
            _ = &mut shutdown_rx => break,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // e.g. EMFILE under load: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let closer = Arc::new(Notify::new());
                    let svc_closer = closer.clone();
                    let svc = service_fn(move |req| {
                        handle(state.clone(), svc_closer.clone(), req)
                    });
                    let conn = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        // Behavior::CloseConnection: drop the connection, no response.
                        _ = closer.notified() => {}
                    }
                });
            }
        }
    }
}

async fn handle(
    state: Arc<State>,
    closer: Arc<Notify>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let dialect = Dialect::for_path(&path);
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Ok(error_response(
                &state,
                dialect,
                400,
                "Could not read the request body.",
            ));
        }
    };
    let parsed: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok()
    };

    state.request_count.fetch_add(1, Ordering::SeqCst);
    if state.recording.load(Ordering::Relaxed) {
        state.requests.lock().unwrap().push(RecordedRequest {
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.clone(),
            headers: headers.clone(),
            body: parsed.clone().unwrap_or(Value::Null),
        });
    }

    let latency = *state.latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let behavior = state.script.lock().unwrap().pop_front();
    match behavior {
        None => {}
        Some(Behavior::Delay(d)) => tokio::time::sleep(d).await,
        Some(Behavior::Hang) => std::future::pending::<()>().await,
        Some(Behavior::CloseConnection) => {
            closer.notify_one();
            std::future::pending::<()>().await;
        }
        Some(Behavior::Status {
            status,
            body,
            retry_after,
        }) => {
            let mut resp = match body {
                Some(b) => raw_response(&state, dialect, status, b),
                None => error_response(&state, dialect, status, &default_message(status)),
            };
            if let Some(ra) = retry_after
                && let Ok(v) = HeaderValue::from_str(&ra)
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Ok(resp);
        }
    }

    let ctx = Ctx {
        state: &state,
        method: &parts.method,
        path: &path,
        query: query.as_deref(),
        headers: &headers,
        raw_len: bytes.len(),
        body: parsed,
    };
    Ok(route(ctx))
}

struct Ctx<'a> {
    state: &'a Arc<State>,
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a [(String, String)],
    raw_len: usize,
    body: Option<Value>,
}

impl Ctx<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn query_param(&self, name: &str) -> Option<&str> {
        self.query?
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Chat,
    Completions,
    Embeddings,
}

fn route(ctx: Ctx<'_>) -> Resp {
    let is_post = *ctx.method == Method::POST;
    let is_get = *ctx.method == Method::GET;

    // Azure OpenAI
    if let Some(rest) = ctx.path.strip_prefix("/openai/deployments/") {
        let found = rest.split_once('/').and_then(|(dep, op)| {
            let op = match op {
                "chat/completions" => Op::Chat,
                "completions" => Op::Completions,
                "embeddings" => Op::Embeddings,
                _ => return None,
            };
            (!dep.is_empty()).then(|| (dep.to_string(), op))
        });
        return match found {
            Some((deployment, op)) if is_post => azure(ctx, &deployment, op),
            _ => not_found(&ctx),
        };
    }

    match ctx.path {
        "/v1/messages" if is_post => anthropic_messages(ctx),
        "/v1/chat/completions" | "/chat/completions" if is_post => openai(ctx, Op::Chat, None),
        "/v1/completions" | "/completions" if is_post => openai(ctx, Op::Completions, None),
        "/v1/embeddings" | "/embeddings" if is_post => openai(ctx, Op::Embeddings, None),
        "/v1/models" | "/models" if is_get => models(ctx),
        _ => not_found(&ctx),
    }
}

fn not_found(ctx: &Ctx<'_>) -> Resp {
    let dialect = Dialect::for_path(ctx.path);
    let msg = format!("Invalid URL ({} {})", ctx.method, ctx.path);
    match dialect {
        Dialect::OpenAi => json_response(
            ctx.state,
            dialect,
            StatusCode::NOT_FOUND,
            &json!({"error": {"message": msg, "type": "invalid_request_error", "param": null, "code": null}}),
        ),
        _ => error_response(ctx.state, dialect, 404, &msg),
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI + Azure
// ---------------------------------------------------------------------------------------------

/// `Some(401 response)` unless the request carries the accepted `Authorization: Bearer` key.
fn openai_auth_error(ctx: &Ctx<'_>) -> Option<Resp> {
    let key = ctx.state.key();
    let presented = ctx.header("authorization").and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    });
    match presented {
        Some(k) if k.trim() == key => None,
        Some(k) => Some(openai_error(
            ctx.state,
            Dialect::OpenAi,
            401,
            &format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                redact(k)
            ),
            Some("invalid_api_key"),
        )),
        None => Some(openai_error(
            ctx.state,
            Dialect::OpenAi,
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            Some("invalid_api_key"),
        )),
    }
}

fn openai(ctx: Ctx<'_>, op: Op, deployment: Option<&str>) -> Resp {
    let dialect = if deployment.is_some() {
        Dialect::Azure
    } else {
        Dialect::OpenAi
    };
    if dialect == Dialect::OpenAi
        && let Some(r) = openai_auth_error(&ctx)
    {
        return r;
    }
    let state = ctx.state;
    let body = match ctx.body.as_ref() {
        Some(Value::Object(_)) => ctx.body.clone().unwrap_or(Value::Null),
        Some(_) => {
            return error_response(
                state,
                dialect,
                400,
                "The request body must be a JSON object.",
            );
        }
        None => {
            let msg = if ctx.raw_len == 0 {
                "We could not parse the JSON body of your request: the body is empty."
            } else {
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
            };
            return error_response(state, dialect, 400, msg);
        }
    };
    let model = match deployment {
        Some(d) => d.to_string(),
        None => match body.get("model").and_then(Value::as_str) {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => {
                return openai_error(
                    state,
                    dialect,
                    400,
                    "you must provide a model parameter",
                    None,
                );
            }
        },
    };
    match op {
        Op::Chat => chat_completions(state, dialect, &body, &model),
        Op::Completions => completions(state, dialect, &body, &model),
        Op::Embeddings => embeddings(state, dialect, &body, &model),
    }
}

fn azure(ctx: Ctx<'_>, deployment: &str, op: Op) -> Resp {
    let key = ctx.state.key();
    if ctx.header("api-key") != Some(key.as_str()) {
        return azure_error(
            ctx.state,
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        );
    }
    match ctx.query_param("api-version") {
        Some(v) if !v.is_empty() => {}
        _ => {
            return azure_error(
                ctx.state,
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
    }
    openai(ctx, op, Some(deployment))
}

fn tools_requested_openai(body: &Value) -> Option<String> {
    let tools = body.get("tools")?.as_array()?;
    let first = tools.first()?;
    if body.get("tool_choice").and_then(Value::as_str) == Some("none") {
        return None;
    }
    let messages = body.get("messages")?.as_array()?;
    let last = messages.last()?;
    if last.get("role").and_then(Value::as_str) != Some("user") {
        return None;
    }
    let text = content_text(last.get("content").unwrap_or(&Value::Null));
    if !text.to_ascii_lowercase().contains("call tool") {
        return None;
    }
    Some(
        first
            .pointer("/function/name")
            .or_else(|| first.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("tool")
            .to_string(),
    )
}

fn chat_completions(state: &Arc<State>, dialect: Dialect, body: &Value, model: &str) -> Resp {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return openai_error(
            state,
            dialect,
            400,
            "Missing required parameter: 'messages'.",
            Some("missing_required_parameter"),
        );
    };
    if messages.is_empty() {
        return openai_error(
            state,
            dialect,
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("empty_array"),
        );
    }
    let prompt_tokens = prompt_tokens(messages, None);
    let reply = format!("Echo: {}", last_user_text(messages));
    let tool = tools_requested_openai(body);
    let completion_tokens = match &tool {
        Some(name) => words(&format!("{name} {TOOL_ARGUMENTS}")),
        None => words(&reply),
    };
    let usage = openai_usage(prompt_tokens, completion_tokens);
    let n = state.next_id();
    let id = format!("chatcmpl-{n}");
    let call_id = format!("call_{n}");
    let created = unix_now();
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);

    if !stream {
        let (message, finish) = match &tool {
            Some(name) => (
                json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": TOOL_ARGUMENTS}}
                ]}),
                "tool_calls",
            ),
            None => (
                json!({"role": "assistant", "content": reply, "refusal": null}),
                "stop",
            ),
        };
        let v = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": usage,
            "service_tier": "default",
        });
        return json_response(state, dialect, StatusCode::OK, &v);
    }

    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |delta: Value, finish: Value| -> Bytes {
        let mut v = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            v["usage"] = Value::Null;
        }
        sse_data(&v)
    };
    let mut chunks = Vec::new();
    match &tool {
        Some(name) => {
            chunks.push(chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
                ]}),
                Value::Null,
            ));
            for piece in tool_argument_pieces() {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
            chunks.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            chunks.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ));
            for piece in word_pieces(&reply) {
                chunks.push(chunk(json!({"content": piece}), Value::Null));
            }
            chunks.push(chunk(json!({}), json!("stop")));
        }
    }
    if include_usage {
        chunks.push(sse_data(&json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [],
            "usage": usage,
        })));
    }
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_response(state, dialect, chunks)
}

fn completions(state: &Arc<State>, dialect: Dialect, body: &Value, model: &str) -> Resp {
    let prompts: Vec<String> = match body.get("prompt") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_string) {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            } else {
                return openai_error(
                    state,
                    dialect,
                    400,
                    "Invalid 'prompt': expected a string or an array of strings.",
                    None,
                );
            }
        }
        Some(_) => {
            return openai_error(
                state,
                dialect,
                400,
                "Invalid 'prompt': expected a string or an array of strings.",
                None,
            );
        }
        None => {
            return openai_error(
                state,
                dialect,
                400,
                "Missing required parameter: 'prompt'.",
                Some("missing_required_parameter"),
            );
        }
    };
    let replies: Vec<String> = prompts.iter().map(|p| format!("Echo: {p}")).collect();
    let prompt_tokens: u64 = prompts.iter().map(|p| words(p)).sum();
    let completion_tokens: u64 = replies.iter().map(|r| words(r)).sum();
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let id = format!("cmpl-{}", state.next_id());
    let created = unix_now();
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);

    if !stream {
        let choices: Vec<Value> = replies
            .iter()
            .enumerate()
            .map(|(i, text)| json!({"text": text, "index": i, "logprobs": null, "finish_reason": "stop"}))
            .collect();
        let v = json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
            "usage": usage,
        });
        return json_response(state, dialect, StatusCode::OK, &v);
    }

    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |index: usize, text: &str, finish: Value| -> Bytes {
        let mut v = json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [{"text": text, "index": index, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            v["usage"] = Value::Null;
        }
        sse_data(&v)
    };
    let mut chunks = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        for piece in word_pieces(reply) {
            chunks.push(chunk(i, piece, Value::Null));
        }
        chunks.push(chunk(i, "", json!("stop")));
    }
    if include_usage {
        chunks.push(sse_data(&json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [],
            "usage": usage,
        })));
    }
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_response(state, dialect, chunks)
}

fn embeddings(state: &Arc<State>, dialect: Dialect, body: &Value, model: &str) -> Resp {
    let bad_input = |msg: &str| openai_error(state, dialect, 400, msg, None);
    // (text to hash, token count)
    let inputs: Vec<(String, u64)> = match body.get("input") {
        Some(Value::String(s)) => vec![(s.clone(), words(s))],
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_string) {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| (s.to_string(), words(s)))
                    .collect()
            } else if items.iter().all(Value::is_u64) {
                vec![(Value::Array(items.clone()).to_string(), items.len() as u64)]
            } else if items.iter().all(|i| {
                i.as_array()
                    .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_u64))
            }) {
                items
                    .iter()
                    .map(|i| (i.to_string(), i.as_array().map_or(0, |a| a.len() as u64)))
                    .collect()
            } else {
                return bad_input(
                    "Invalid 'input': expected a string, an array of strings, or token arrays.",
                );
            }
        }
        Some(Value::Array(_)) => {
            return bad_input(
                "Invalid 'input': empty array. Expected an array with minimum length 1.",
            );
        }
        Some(_) => {
            return bad_input(
                "Invalid 'input': expected a string, an array of strings, or token arrays.",
            );
        }
        None => return bad_input("Missing required parameter: 'input'."),
    };
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => 8,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=4096).contains(&d) => d as usize,
            _ => return bad_input("Invalid 'dimensions': expected an integer between 1 and 4096."),
        },
    };
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, (text, _))| {
            let vector = embedding_vector(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector
                    .iter()
                    .flat_map(|x| (*x as f32).to_le_bytes())
                    .collect();
                Value::String(base64_encode(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|(_, t)| *t).sum();
    let v = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    json_response(state, dialect, StatusCode::OK, &v)
}

fn models(ctx: Ctx<'_>) -> Resp {
    let state = ctx.state;
    if ctx.header("anthropic-version").is_some() || ctx.header("x-api-key").is_some() {
        if let Some(r) = anthropic_auth_error(&ctx) {
            return r;
        }
        let data: Vec<Value> = ANTHROPIC_MODELS
            .iter()
            .map(|m| json!({"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}))
            .collect();
        let v = json!({
            "data": data,
            "has_more": false,
            "first_id": ANTHROPIC_MODELS.first(),
            "last_id": ANTHROPIC_MODELS.last(),
        });
        return json_response(state, Dialect::Anthropic, StatusCode::OK, &v);
    }
    if let Some(r) = openai_auth_error(&ctx) {
        return r;
    }
    let data: Vec<Value> = OPENAI_MODELS
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_700_000_000u64, "owned_by": "fake-upstream"}))
        .collect();
    json_response(
        state,
        Dialect::OpenAi,
        StatusCode::OK,
        &json!({"object": "list", "data": data}),
    )
}

// ---------------------------------------------------------------------------------------------
// Anthropic
// ---------------------------------------------------------------------------------------------

/// `Some(401 response)` unless the request carries the accepted `x-api-key`.
fn anthropic_auth_error(ctx: &Ctx<'_>) -> Option<Resp> {
    let key = ctx.state.key();
    match ctx.header("x-api-key") {
        Some(k) if k == key => None,
        Some(_) => Some(error_response(
            ctx.state,
            Dialect::Anthropic,
            401,
            "invalid x-api-key",
        )),
        None => Some(error_response(
            ctx.state,
            Dialect::Anthropic,
            401,
            "x-api-key header is required",
        )),
    }
}

fn anthropic_messages(ctx: Ctx<'_>) -> Resp {
    let state = ctx.state;
    let d = Dialect::Anthropic;
    if let Some(r) = anthropic_auth_error(&ctx) {
        return r;
    }
    if ctx.header("anthropic-version").is_none_or(str::is_empty) {
        return error_response(state, d, 400, "anthropic-version: header is required");
    }
    let body = match ctx.body.as_ref() {
        Some(v @ Value::Object(_)) => v,
        Some(_) => return error_response(state, d, 400, "Request body must be a JSON object"),
        None => {
            return error_response(
                state,
                d,
                400,
                "There was an error parsing the body of your request as JSON",
            );
        }
    };
    let Some(model) = body
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
    else {
        return error_response(state, d, 400, "model: Field required");
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return error_response(state, d, 400, "messages: Field required");
    };
    if messages.is_empty() {
        return error_response(state, d, 400, "messages: at least one message is required");
    }
    if body.get("max_tokens").and_then(Value::as_u64).is_none() {
        return error_response(state, d, 400, "max_tokens: Field required");
    }
    if let Some(role) = messages
        .first()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        && role != "user"
    {
        return error_response(
            state,
            d,
            400,
            "messages: first message must use the \"user\" role",
        );
    }
    if let Some(sys) = body.get("system")
        && !(sys.is_string() || sys.is_array())
    {
        return error_response(
            state,
            d,
            400,
            "system: Input should be a valid string or list of text blocks",
        );
    }

    let system = body.get("system").map(content_text);
    let input_tokens = prompt_tokens(messages, system.as_deref());
    let reply = format!("Echo: {}", last_user_text(messages));

    let tool = (|| {
        let tools = body.get("tools")?.as_array()?;
        let first = tools.first()?;
        if body.pointer("/tool_choice/type").and_then(Value::as_str) == Some("none") {
            return None;
        }
        let last = messages.last()?;
        if last.get("role").and_then(Value::as_str) != Some("user") {
            return None;
        }
        let text = content_text(last.get("content").unwrap_or(&Value::Null));
        if !text.to_ascii_lowercase().contains("call tool") {
            return None;
        }
        Some(
            first
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("tool")
                .to_string(),
        )
    })();

    let output_tokens = match &tool {
        Some(name) => words(&format!("{name} {TOOL_ARGUMENTS}")),
        None => words(&reply),
    };
    let n = state.next_id();
    let id = format!("msg_{n:024}");
    let tool_id = format!("toolu_{n:024}");
    let stop_reason = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);

    if !stream {
        let content = match &tool {
            Some(name) => {
                json!([{"type": "tool_use", "id": tool_id, "name": name, "input": {"location": "Paris"}}])
            }
            None => json!([{"type": "text", "text": reply}]),
        };
        let v = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        });
        return json_response(state, d, StatusCode::OK, &v);
    }

    let mut chunks = vec![sse_event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }}),
    )];
    let block_start = match &tool {
        Some(name) => json!({"type": "tool_use", "id": tool_id, "name": name, "input": {}}),
        None => json!({"type": "text", "text": ""}),
    };
    chunks.push(sse_event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": block_start}),
    ));
    chunks.push(sse_event("ping", &json!({"type": "ping"})));
    match &tool {
        Some(_) => {
            for piece in tool_argument_pieces() {
                chunks.push(sse_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
        }
        None => {
            for piece in word_pieces(&reply) {
                chunks.push(sse_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
        }
    }
    chunks.push(sse_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    chunks.push(sse_event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": {"output_tokens": output_tokens}}),
    ));
    chunks.push(sse_event("message_stop", &json!({"type": "message_stop"})));
    sse_response(state, d, chunks)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

fn default_message(status: u16) -> String {
    match status {
        400 => "Bad request (scripted by the fake upstream).".to_string(),
        401 => "Invalid authentication (scripted by the fake upstream).".to_string(),
        403 => "Permission denied (scripted by the fake upstream).".to_string(),
        404 => "Not found (scripted by the fake upstream).".to_string(),
        408 => "Request timed out (scripted by the fake upstream).".to_string(),
        413 => "Request too large (scripted by the fake upstream).".to_string(),
        429 => "Rate limit reached for requests (scripted by the fake upstream). Please try again later.".to_string(),
        500 => "The server had an error while processing your request (scripted by the fake upstream).".to_string(),
        502 => "Bad gateway (scripted by the fake upstream).".to_string(),
        503 => "The engine is currently overloaded, please try again later (scripted by the fake upstream).".to_string(),
        529 => "Overloaded (scripted by the fake upstream).".to_string(),
        s => format!("Scripted status {s} from the fake upstream."),
    }
}

/// The dialect's error JSON for `status` with `message`.
pub fn error_json(dialect: Dialect, status: u16, message: &str) -> Value {
    match dialect {
        Dialect::OpenAi => openai_error_json(status, message, None),
        Dialect::Azure => json!({"error": {"code": status.to_string(), "message": message}}),
        Dialect::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                s if s >= 500 => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    }
}

fn openai_error_json(status: u16, message: &str, code: Option<&str>) -> Value {
    let (kind, default_code) = match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => (
            "invalid_request_error",
            Some("unsupported_country_region_territory"),
        ),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        s if s >= 500 => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    json!({"error": {
        "message": message,
        "type": kind,
        "param": null,
        "code": code.or(default_code),
    }})
}

fn openai_error(
    state: &Arc<State>,
    dialect: Dialect,
    status: u16,
    message: &str,
    code: Option<&str>,
) -> Resp {
    let v = match dialect {
        Dialect::OpenAi => openai_error_json(status, message, code),
        other => error_json(other, status, message),
    };
    json_response(state, dialect, status_code(status), &v)
}

fn azure_error(state: &Arc<State>, status: u16, code: &str, message: &str) -> Resp {
    json_response(
        state,
        Dialect::Azure,
        status_code(status),
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn error_response(state: &Arc<State>, dialect: Dialect, status: u16, message: &str) -> Resp {
    json_response(
        state,
        dialect,
        status_code(status),
        &error_json(dialect, status, message),
    )
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "****".to_string();
    }
    let head: String = chars.iter().take(3).collect();
    let tail: String = chars.iter().skip(chars.len() - 4).collect();
    format!("{head}****{tail}")
}

// ---------------------------------------------------------------------------------------------
// Responses and the streaming body
// ---------------------------------------------------------------------------------------------

fn with_common_headers(state: &Arc<State>, dialect: Dialect, mut resp: Resp) -> Resp {
    let rid = format!("req_fake{}", state.next_id());
    let name = match dialect {
        Dialect::Anthropic => "request-id",
        Dialect::Azure => "apim-request-id",
        Dialect::OpenAi => "x-request-id",
    };
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

fn json_response(state: &Arc<State>, dialect: Dialect, status: StatusCode, v: &Value) -> Resp {
    let body = Full::new(Bytes::from(v.to_string())).boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_common_headers(state, dialect, resp)
}

fn raw_response(state: &Arc<State>, dialect: Dialect, status: u16, body: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status_code(status);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_common_headers(state, dialect, resp)
}

fn sse_data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn sse_event(event: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {v}\n\n"))
}

/// Build a streamed `text/event-stream` response. With a chunk delay, a producer task feeds
/// the body through a channel one chunk per delay; without one, chunks are yielded one by one
/// from memory. Either way the body is a chunked, frame-per-chunk stream that counts itself
/// completed (all frames taken) or cancelled (dropped early).
fn sse_response(state: &Arc<State>, dialect: Dialect, chunks: Vec<Bytes>) -> Resp {
    state.streams_started.fetch_add(1, Ordering::SeqCst);
    let delay = *state.chunk_delay.lock().unwrap();
    let source = if delay.is_zero() {
        Source::Ready(chunks.into())
    } else {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        tokio::spawn(async move {
            for (i, chunk) in chunks.into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(delay).await;
                }
                if tx.send(chunk).await.is_err() {
                    return; // client went away; the body's drop guard counted it
                }
            }
        });
        Source::Channel(rx)
    };
    let body = SseBody {
        source,
        state: state.clone(),
        finished: false,
    };
    let mut resp = Response::new(body.boxed());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_common_headers(state, dialect, resp)
}

enum Source {
    Ready(VecDeque<Bytes>),
    Channel(mpsc::Receiver<Bytes>),
}

struct SseBody {
    source: Source,
    state: Arc<State>,
    finished: bool,
}

impl HttpBody for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        let next = match &mut this.source {
            Source::Ready(q) => Poll::Ready(q.pop_front()),
            Source::Channel(rx) => rx.poll_recv(cx),
        };
        match next {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(None) => {
                this.finished = true;
                this.state.streams_completed.fetch_add(1, Ordering::SeqCst);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        if !self.finished {
            self.state.streams_cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic content helpers
// ---------------------------------------------------------------------------------------------

/// Text of a message `content`: a string, or the `text` of every `type: "text"` part joined by
/// a space.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Number of whitespace-separated words.
pub fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Text of the last message with role `user` (empty if none).
fn last_user_text(messages: &[Value]) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default()
}

/// Words of every message's text + 3 per message (+ words of `system`).
fn prompt_tokens(messages: &[Value], system: Option<&str>) -> u64 {
    let msgs: u64 = messages
        .iter()
        .map(|m| words(&content_text(m.get("content").unwrap_or(&Value::Null))) + 3)
        .sum();
    msgs + system.map_or(0, words)
}

fn openai_usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

/// Split into pieces that each end with (at most) one whitespace character, so that
/// concatenating the pieces gives back `text` exactly: "Echo: hi there" → ["Echo: ", "hi ", "there"].
pub fn word_pieces(text: &str) -> Vec<&str> {
    text.split_inclusive(char::is_whitespace).collect()
}

fn tool_argument_pieces() -> [&'static str; 3] {
    // Concatenates to TOOL_ARGUMENTS.
    [r#"{"loca"#, r#"tion":"Par"#, r#"is"}"#]
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn fnv1a(data: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // final avalanche (splitmix64 finaliser)
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Deterministic unit-length vector of `dims` floats derived from a hash of `text`.
pub fn embedding_vector(text: &str, dims: usize) -> Vec<f64> {
    let raw: Vec<f64> = (0..dims)
        .map(|i| {
            let h = fnv1a(text.as_bytes(), i as u64);
            // top 53 bits → [0, 1) → [-1, 1)
            ((h >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        raw.iter().map(|x| x / norm).collect()
    } else {
        raw
    }
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = u32::from(chunk[0]);
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(char::from(T[((n >> 18) & 63) as usize]));
        out.push(char::from(T[((n >> 12) & 63) as usize]));
        if chunk.len() > 1 {
            out.push(char::from(T[((n >> 6) & 63) as usize]));
        } else {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(char::from(T[(n & 63) as usize]));
        } else {
            out.push('=');
        }
    }
    out
}
