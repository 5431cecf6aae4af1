//! Smoke tests for the fake upstream itself (no gateway involved).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};

use crate::upstream::{Behavior, DEFAULT_UPSTREAM_KEY, FakeUpstream};

fn client() -> reqwest::Client {
    // Only the ring provider is compiled in; install it (Err = already installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `data:` payloads of an SSE body, in order.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .collect()
}

/// `event:` names of an SSE body, in order.
fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_string)
        })
        .collect()
}

async fn post(
    c: &reqwest::Client,
    url: String,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let mut rb = c.post(url).json(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

fn bearer() -> String {
    format!("Bearer {DEFAULT_UPSTREAM_KEY}")
}

#[tokio::test]
async fn chat_non_stream_shape_and_usage() {
    let up = FakeUpstream::start();
    let c = client();
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are helpful"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}, {"type": "text", "text": "world"}]},
        ],
    });
    let resp = post(
        &c,
        format!("{}/v1/chat/completions", up.base_url()),
        &[("authorization", &bearer())],
        &body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert!(v["system_fingerprint"].is_string());
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Echo: hello there world"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // 3 + 3 words, + 3 per message
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 16);

    // Same thing without the /v1 prefix; and a tool call.
    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "please call tool now"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    });
    let v: Value = post(
        &c,
        format!("{}/chat/completions", up.base_url()),
        &[("authorization", &bearer())],
        &body,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"location":"Paris"}"#);

    // Wrong key → 401 OpenAI format.
    let resp = post(
        &c,
        format!("{}/v1/chat/completions", up.base_url()),
        &[("authorization", "Bearer nope")],
        &body,
    )
    .await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert!(v["error"]["param"].is_null());

    // Malformed JSON → 400; unknown route → 404.
    let resp = c
        .post(format!("{}/v1/chat/completions", up.base_url()))
        .header("authorization", bearer())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    let resp = c
        .get(format!("{}/v1/nowhere", up.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let _: Value = resp.json().await.unwrap();

    let reqs = up.requests();
    assert_eq!(reqs.len(), 5);
    assert_eq!(up.request_count(), 5);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].header("Authorization"), Some(bearer().as_str()));
    assert_eq!(reqs[0].body["model"], "gpt-4o-mini");
    assert!(reqs[3].body.is_null());
    up.clear();
    assert_eq!(up.request_count(), 0);
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn chat_stream_done_and_optional_usage() {
    let up = FakeUpstream::start();
    let c = client();
    let url = format!("{}/v1/chat/completions", up.base_url());
    let mut body = json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "messages": [{"role": "user", "content": "one two three"}],
    });

    // Without include_usage: no usage chunk.
    let resp = post(&c, url.clone(), &[("authorization", &bearer())], &body).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c.get("usage").is_none())
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Echo: one two three");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // With include_usage: a final choices-less usage chunk before [DONE].
    body["stream_options"] = json!({"include_usage": true});
    let text = post(&c, url.clone(), &[("authorization", &bearer())], &body)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 6);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 4);
    assert_eq!(usage_chunk["usage"]["total_tokens"], 10);
    let finish: Value = serde_json::from_str(&data[data.len() - 3]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");

    // Tool-call streaming.
    let body = json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "messages": [{"role": "user", "content": "call tool"}],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    });
    let text = post(&c, url, &[("authorization", &bearer())], &body)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    let args: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, r#"{"location":"Paris"}"#);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    assert!(up.wait_streams_settled(Duration::from_secs(5)).await);
    assert_eq!(up.streams_started(), 3);
    assert_eq!(up.streams_completed(), 3);
    assert_eq!(up.streams_cancelled(), 0);
}

#[tokio::test]
async fn anthropic_messages_and_stream_event_order() {
    let up = FakeUpstream::start();
    let c = client();
    let url = format!("{}/v1/messages", up.base_url());
    let hdrs = [
        ("x-api-key", DEFAULT_UPSTREAM_KEY),
        ("anthropic-version", "2023-06-01"),
    ];
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": "hi there"}],
    });
    let v: Value = post(&c, url.clone(), &hdrs, &body)
        .await
        .json()
        .await
        .unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], "Echo: hi there");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 2 + 3 + 2);
    assert_eq!(v["usage"]["output_tokens"], 3);

    // Missing anthropic-version → 400; bad key → 401 (Anthropic format).
    let resp = post(&c, url.clone(), &hdrs[..1], &body).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let resp = post(
        &c,
        url.clone(),
        &[("x-api-key", "bad"), ("anthropic-version", "2023-06-01")],
        &body,
    )
    .await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");

    // Streaming text.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let text = post(&c, url.clone(), &hdrs, &sbody)
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let data: Vec<Value> = sse_data(&text)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for (e, d) in events.iter().zip(&data) {
        assert_eq!(&d["type"], e.as_str());
    }
    let joined: String = data
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(joined, "Echo: hi there");
    assert_eq!(data[7]["delta"]["stop_reason"], "end_turn");
    assert_eq!(data[7]["usage"]["output_tokens"], 3);

    // Tool use, streamed.
    let tbody = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "stream": true,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "call tool please"}]}],
    });
    let text = post(&c, url.clone(), &hdrs, &tbody)
        .await
        .text()
        .await
        .unwrap();
    let data: Vec<Value> = sse_data(&text)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data[1]["content_block"]["type"], "tool_use");
    assert_eq!(data[1]["content_block"]["name"], "get_weather");
    assert!(
        data[1]["content_block"]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_")
    );
    let partial: String = data
        .iter()
        .filter(|d| d["delta"]["type"] == "input_json_delta")
        .filter_map(|d| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"location": "Paris"})
    );
    let md = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(md["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn azure_and_embeddings() {
    let up = FakeUpstream::start();
    up.set_accepted_key("azure-key");
    let c = client();
    let body = json!({"messages": [{"role": "user", "content": "yo"}]});
    let base = format!(
        "{}/openai/deployments/my-gpt/chat/completions",
        up.base_url()
    );
    let resp = post(&c, base.clone(), &[("api-key", "azure-key")], &body).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["code"].is_string());
    let v: Value = post(
        &c,
        format!("{base}?api-version=2024-10-21"),
        &[("api-key", "azure-key")],
        &body,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["model"], "my-gpt");
    assert_eq!(v["choices"][0]["message"]["content"], "Echo: yo");
    let resp = post(
        &c,
        format!("{base}?api-version=2024-10-21"),
        &[("api-key", "wrong")],
        &body,
    )
    .await;
    assert_eq!(resp.status(), 401);

    let emb = |input: Value| json!({"model": "text-embedding-3-small", "input": input});
    let url = format!("{}/v1/embeddings", up.base_url());
    let auth = [("authorization", "Bearer azure-key")];
    let a: Value = post(&c, url.clone(), &auth, &emb(json!(["a b", "c"])))
        .await
        .json()
        .await
        .unwrap();
    let b: Value = post(&c, url, &auth, &emb(json!("a b")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["data"].as_array().unwrap().len(), 2);
    assert_eq!(a["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(a["data"][0]["embedding"], b["data"][0]["embedding"]);
    assert_ne!(a["data"][0]["embedding"], a["data"][1]["embedding"]);
    assert_eq!(a["usage"]["prompt_tokens"], 3);
    assert_eq!(a["model"], "text-embedding-3-small");
}

#[tokio::test]
async fn scripted_429_with_retry_after_then_normal() {
    let up = FakeUpstream::start();
    let c = client();
    up.push(Behavior::Status {
        status: 429,
        body: None,
        retry_after: Some("2".to_string()),
    });
    let url = format!("{}/v1/chat/completions", up.base_url());
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let resp = post(&c, url.clone(), &[("authorization", &bearer())], &body).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    let resp = post(&c, url.clone(), &[("authorization", &bearer())], &body).await;
    assert_eq!(resp.status(), 200);

    // Anthropic dialect error body; custom body verbatim.
    up.push(Behavior::status(529));
    up.push(Behavior::Status {
        status: 503,
        body: Some("{\"custom\":true}".to_string()),
        retry_after: None,
    });
    let resp = post(&c, format!("{}/v1/messages", up.base_url()), &[], &body).await;
    assert_eq!(resp.status(), 529);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    let resp = post(&c, url.clone(), &[], &body).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.text().await.unwrap(), "{\"custom\":true}");
    assert_eq!(up.pending_behaviors(), 0);

    // CloseConnection → transport error; Hang → client timeout; Delay → slow success.
    up.push(Behavior::CloseConnection);
    let err = c
        .post(url.clone())
        .json(&body)
        .send()
        .await
        .expect_err("connection should be closed");
    assert!(!err.is_status());
    up.push(Behavior::Hang);
    let err = c
        .post(url.clone())
        .timeout(Duration::from_millis(200))
        .json(&body)
        .send()
        .await
        .expect_err("should hang");
    assert!(err.is_timeout());
    up.push(Behavior::Delay(Duration::from_millis(150)));
    let t = std::time::Instant::now();
    let resp = post(&c, url, &[("authorization", &bearer())], &body).await;
    assert_eq!(resp.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn stream_cancellation_is_counted() {
    let up = FakeUpstream::start();
    up.set_chunk_delay(Duration::from_millis(30));
    let c = client();
    let long: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
    let body = json!({
        "model": "m",
        "stream": true,
        "messages": [{"role": "user", "content": long.join(" ")}],
    });
    let mut resp = post(
        &c,
        format!("{}/v1/chat/completions", up.base_url()),
        &[("authorization", &bearer())],
        &body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(resp);
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.streams_cancelled() == 1)
            .await
    );
    assert_eq!(up.streams_started(), 1);
    assert_eq!(up.streams_completed(), 0);

    // A full slow stream completes.
    let body = json!({
        "model": "m",
        "stream": true,
        "messages": [{"role": "user", "content": "short"}],
    });
    let text = post(
        &c,
        format!("{}/v1/chat/completions", up.base_url()),
        &[("authorization", &bearer())],
        &body,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(up.wait_streams_settled(Duration::from_secs(5)).await);
    assert_eq!(up.streams_completed(), 1);
    assert_eq!(up.streams_cancelled(), 1);
}

#[test]
fn works_from_sync_code_and_drops_promptly() {
    let up = FakeUpstream::start_with_workers(2);
    let addr = up.addr();
    assert!(addr.ip().is_loopback());
    assert_eq!(up.base_url(), format!("http://{addr}"));
    // Raw HTTP/1.1 over a std socket: GET /v1/models.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {DEFAULT_UPSTREAM_KEY}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"object\":\"list\""));
    up.push(Behavior::Hang);
    let mut hung = std::net::TcpStream::connect(addr).unwrap();
    write!(hung, "GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    assert!(up.wait_until_blocking(Duration::from_secs(5), |u| u.request_count() == 2));
    let t = std::time::Instant::now();
    drop(up);
    assert!(t.elapsed() < Duration::from_secs(3));
    // The hung connection is closed by the shutdown.
    hung.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = Vec::new();
    let n = hung.read_to_end(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
}
