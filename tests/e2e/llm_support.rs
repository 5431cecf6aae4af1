//! Helpers shared by the LLM-surface modules (`gateway_openai`, `gateway_anthropic`, `routing`):
//! configs that point the gateway at fake upstreams, virtual keys, requests with a deadline, and
//! SSE parsing. Configs are written as JSON, which is valid YAML, so each test builds its
//! `model_list` with `json!` instead of indenting strings by hand.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{Gateway, MASTER_KEY, Options, client};
use crate::upstream::{DEFAULT_UPSTREAM_KEY, FakeUpstream};

/// No single request of these tests should take longer; a hang fails instead of stalling the suite.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(20);

/// A `model_list` entry for an OpenAI deployment on `up` (`api_base` includes `/v1`).
pub fn openai_model(name: &str, upstream_model: &str, up: &FakeUpstream) -> Value {
    json!({
        "model_name": name,
        "litellm_params": {
            "model": format!("openai/{upstream_model}"),
            "api_base": format!("{}/v1", up.base_url()),
            "api_key": DEFAULT_UPSTREAM_KEY,
        },
    })
}

/// A `model_list` entry for an Anthropic deployment on `up` (the gateway appends `/v1/messages`).
pub fn anthropic_model(name: &str, upstream_model: &str, up: &FakeUpstream) -> Value {
    json!({
        "model_name": name,
        "litellm_params": {
            "model": format!("anthropic/{upstream_model}"),
            "api_base": up.base_url(),
            "api_key": DEFAULT_UPSTREAM_KEY,
        },
    })
}

/// Sets `litellm_params.<k>` on a `model_list` entry.
pub fn with_param(mut entry: Value, k: &str, v: Value) -> Value {
    entry["litellm_params"][k] = v;
    entry
}

/// Sets `model_info.<k>` on a `model_list` entry.
pub fn with_info(mut entry: Value, k: &str, v: Value) -> Value {
    if entry.get("model_info").is_none() {
        entry["model_info"] = json!({});
    }
    entry["model_info"][k] = v;
    entry
}

/// Starts the gateway on a config made of these entries plus `rest` (top-level keys such as
/// `router_settings`, merged in).
pub fn start(models: Vec<Value>, rest: Value) -> Gateway {
    let mut cfg = json!({ "model_list": models });
    if let Value::Object(extra) = rest {
        for (k, v) in extra {
            cfg[k] = v;
        }
    }
    Options::new().config(cfg.to_string()).start()
}

/// A virtual key limited to `models` (made with the master key through `/key/generate`).
pub async fn new_key(gw: &Gateway, models: Value) -> String {
    let resp = client()
        .post(gw.url("/key/generate"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({ "models": models }))
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "key/generate failed");
    let body: Value = resp.json().await.unwrap();
    body["key"].as_str().expect("generated key").to_string()
}

/// POSTs JSON with a bearer key.
pub async fn post(gw: &Gateway, path: &str, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .bearer_auth(key)
        .json(body)
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap()
}

/// POSTs and returns (status, headers, parsed JSON body — `Null` when the body is not JSON).
pub async fn post_json(
    gw: &Gateway,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = post(gw, path, key, body).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, v)
}

/// A header as text ("" when absent).
pub fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Asserts the OpenAI error envelope: `{"error": {"message", "type", "param", "code"}}` with a
/// non-empty message and type; returns the inner object.
pub fn assert_openai_error(v: &Value) -> &Value {
    let e = v
        .get("error")
        .unwrap_or_else(|| panic!("no `error` object: {v}"));
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error.message: {v}"
    );
    assert!(
        e["type"].as_str().is_some_and(|t| !t.is_empty()),
        "error.type: {v}"
    );
    let o = e.as_object().unwrap();
    assert!(o.contains_key("param"), "error.param missing: {v}");
    assert!(o.contains_key("code"), "error.code missing: {v}");
    e
}

/// Asserts Anthropic's error envelope `{"type": "error", "error": {"type", "message"}}` and
/// returns the inner error type.
pub fn assert_anthropic_error(v: &Value) -> String {
    assert_eq!(v["type"], "error", "anthropic envelope: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message: {v}"
    );
    v["error"]["type"].as_str().unwrap_or_default().to_string()
}

/// `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .map(|d| d.trim().to_string())
        })
        .collect()
}

/// `data:` payloads parsed as JSON, skipping `[DONE]`.
pub fn sse_json(body: &str) -> Vec<Value> {
    sse_data(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad SSE JSON {d:?}: {e}")))
        .collect()
}

/// `event:` names of an SSE body, in order.
pub fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_string)
        })
        .collect()
}

/// The text of OpenAI chat chunks (`choices[0].delta.content`), concatenated.
pub fn chunk_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Reads a streamed body to its end, noting when each piece arrived relative to `t0`.
pub async fn read_timed(resp: reqwest::Response, t0: Instant) -> (String, Vec<Duration>) {
    let mut body = Vec::new();
    let mut arrivals = Vec::new();
    let mut s = resp.bytes_stream();
    let deadline = t0 + REQUEST_DEADLINE;
    loop {
        let next = tokio::time::timeout_at(deadline.into(), s.next())
            .await
            .expect("stream did not finish before the deadline");
        match next {
            Some(Ok(b)) => {
                if !b.is_empty() {
                    arrivals.push(t0.elapsed());
                    body.extend_from_slice(&b);
                }
            }
            Some(Err(e)) => panic!("stream failed: {e}"),
            None => break,
        }
    }
    (String::from_utf8(body).unwrap(), arrivals)
}

/// An `http://127.0.0.1:PORT` where nothing listens (bound, then closed).
pub fn closed_base() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// The only recorded upstream request, asserting there was exactly one.
pub fn only_request(up: &FakeUpstream) -> crate::upstream::RecordedRequest {
    let reqs = up.requests();
    assert_eq!(
        reqs.len(),
        1,
        "expected exactly one upstream request: {reqs:#?}"
    );
    reqs.into_iter().next().unwrap()
}
