//! Anthropic end to end, both ways round: OpenAI clients served by an Anthropic upstream
//! (request, tools, tool results and streams translated), and Anthropic clients on
//! `/v1/messages` served by an Anthropic upstream (passthrough) or an OpenAI one (translated),
//! with errors in Anthropic's envelope.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{Gateway, MASTER_KEY, client};
use crate::llm_support::{
    REQUEST_DEADLINE, anthropic_model, assert_anthropic_error, assert_openai_error, chunk_text,
    header, new_key, only_request, openai_model, post, post_json, read_timed, sse_data, sse_events,
    sse_json, start,
};
use crate::upstream::{Behavior, DEFAULT_UPSTREAM_KEY, FakeUpstream, TOOL_ARGUMENTS};

const WAIT: Duration = Duration::from_secs(5);

fn weather_tool_openai() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    }})
}

fn weather_tool_anthropic() -> Value {
    json!({
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    })
}

/// POSTs to `/v1/messages` the way the Anthropic SDK does (`x-api-key`, `anthropic-version`).
async fn messages(gw: &Gateway, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap()
}

async fn messages_json(gw: &Gateway, key: &str, body: &Value) -> (u16, Value) {
    let resp = messages(gw, key, body).await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn openai_chat_is_translated_for_an_anthropic_upstream() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![anthropic_model("claude", "claude-sonnet-4-5", &up)],
        json!({}),
    );
    let key = new_key(&gw, json!(["claude"])).await;
    let (status, h, body) = post_json(
        &gw,
        "/v1/chat/completions",
        &key,
        &json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "Be brief"},
                {"role": "user", "content": "hello there"},
            ],
            "temperature": 0.5,
            "user": "u-42",
            "metadata": {"trace_id": "t"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "x-litellm-model-group"), "claude");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Echo: hello there");
    assert_eq!(choice["finish_reason"], "stop");
    // Anthropic counts: (2 words + 3) for the one message + 2 system words = 7; reply 3 words.
    assert_eq!(body["usage"]["prompt_tokens"], 7);
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(body["usage"]["total_tokens"], 10);

    let r = only_request(&up);
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(DEFAULT_UPSTREAM_KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.body["model"], "claude-sonnet-4-5");
    assert_eq!(r.body["system"], "Be brief");
    assert_eq!(
        r.body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hello there"}]}])
    );
    // Anthropic requires max_tokens; the gateway supplies a default.
    assert!(r.body["max_tokens"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(r.body["temperature"], 0.5);
    // OpenAI's `user` becomes Anthropic's metadata.user_id; the proxy's own metadata does not go.
    assert_eq!(r.body["metadata"], json!({"user_id": "u-42"}), "{}", r.body);

    // The client's max_tokens / max_completion_tokens win over the default.
    for (field, n) in [("max_tokens", 50), ("max_completion_tokens", 77)] {
        let mut b = json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]});
        b[field] = json!(n);
        let (status, _, _) = post_json(&gw, "/v1/chat/completions", &key, &b).await;
        assert_eq!(status, 200);
        assert_eq!(up.last_request().unwrap().body["max_tokens"], n, "{field}");
    }
}

#[tokio::test]
async fn openai_tools_round_trip_through_an_anthropic_upstream() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![anthropic_model("claude", "claude-sonnet-4-5", &up)],
        json!({}),
    );
    let (status, _, body) = post_json(
        &gw,
        "/v1/chat/completions",
        MASTER_KEY,
        &json!({
            "model": "claude",
            "messages": [{"role": "user", "content": "please call tool now"}],
            "tools": [weather_tool_openai()],
            "tool_choice": "required",
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = up.last_request().unwrap();
    assert_eq!(r.body["tools"], json!([weather_tool_anthropic()]));
    assert_eq!(r.body["tool_choice"], json!({"type": "any"}));

    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null(), "{body}");
    let call = &choice["message"]["tool_calls"][0];
    let call_id = call["id"].as_str().unwrap().to_string();
    assert!(call_id.starts_with("toolu_"), "{call}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, serde_json::from_str::<Value>(TOOL_ARGUMENTS).unwrap());

    // The tool's result goes back as a tool_result block in a user turn.
    let (status, _, body) = post_json(
        &gw,
        "/v1/chat/completions",
        MASTER_KEY,
        &json!({
            "model": "claude",
            "messages": [
                {"role": "user", "content": "please call tool now"},
                {"role": "assistant", "content": null, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
            ],
            "tools": [weather_tool_openai()],
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let sent = &up.last_request().unwrap().body["messages"];
    assert_eq!(
        sent,
        &json!([
            {"role": "user", "content": [{"type": "text", "text": "please call tool now"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"location": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "sunny, 21C"}]},
        ])
    );
}

#[tokio::test]
async fn anthropic_streams_become_openai_chunks() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![anthropic_model("claude", "claude-sonnet-4-5", &up)],
        json!({}),
    );
    for wants_usage in [false, true] {
        let mut b = json!({
            "model": "claude",
            "stream": true,
            "messages": [{"role": "user", "content": "hi there"}],
        });
        if wants_usage {
            b["stream_options"] = json!({"include_usage": true});
        }
        let t0 = Instant::now();
        let resp = post(&gw, "/v1/chat/completions", MASTER_KEY, &b).await;
        assert_eq!(resp.status(), 200);
        assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
        let (text, _) = read_timed(resp, t0).await;
        assert_eq!(
            sse_data(&text).last().map(String::as_str),
            Some("[DONE]"),
            "{text}"
        );
        let chunks = sse_json(&text);
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk"),
            "{text}"
        );
        let id = chunks[0]["id"].as_str().unwrap();
        assert!(id.starts_with("msg_"), "{text}");
        assert!(
            chunks.iter().all(|c| c["id"] == id),
            "one id per stream: {text}"
        );
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunk_text(&chunks), "Echo: hi there");
        let finishes: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(|_| c))
            .collect();
        assert_eq!(finishes.len(), 1, "{text}");
        assert_eq!(finishes[0]["choices"][0]["finish_reason"], "stop");
        let usage: Vec<&Value> = chunks
            .iter()
            .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
            .collect();
        if wants_usage {
            assert_eq!(usage.len(), 1, "{text}");
            assert_eq!(usage[0]["choices"], json!([]));
            assert_eq!(usage[0]["usage"]["prompt_tokens"], 5);
            assert_eq!(usage[0]["usage"]["completion_tokens"], 3);
            assert_eq!(usage[0]["usage"]["total_tokens"], 8);
        } else {
            assert!(usage.is_empty(), "{text}");
        }
        let r = up.last_request().unwrap();
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.body["stream"], true);
        assert!(
            r.body.get("stream_options").is_none(),
            "not an Anthropic field"
        );
    }

    // A streamed tool call.
    let t0 = Instant::now();
    let resp = post(
        &gw,
        "/v1/chat/completions",
        MASTER_KEY,
        &json!({
            "model": "claude", "stream": true,
            "messages": [{"role": "user", "content": "call tool please"}],
            "tools": [weather_tool_openai()],
        }),
    )
    .await;
    let (text, _) = read_timed(resp, t0).await;
    let chunks = sse_json(&text);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]
                .as_object()
                .map(|_| c)
        })
        .map(|c| &c["choices"][0]["delta"]["tool_calls"][0])
        .collect();
    assert!(!calls.is_empty(), "{text}");
    assert!(calls[0]["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert!(calls.iter().all(|c| c["index"] == 0));
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, TOOL_ARGUMENTS);
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "tool_calls");
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    assert!(up.wait_until(WAIT, |u| u.streams_completed() == 3).await);
}

#[tokio::test]
async fn messages_pass_through_to_an_anthropic_upstream() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![anthropic_model("claude", "claude-sonnet-4-5", &up)],
        json!({}),
    );
    let key = new_key(&gw, json!(["claude"])).await;
    let turns = json!([{"role": "user", "content": "hello there"}]);
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "tools-2024-05-16")
        .json(&json!({
            "model": "claude",
            "max_tokens": 100,
            "system": "Be brief",
            "messages": turns,
            "metadata": {"user_id": "u-1"},
            "litellm_metadata": {"tags": ["proxy-only"]},
        }))
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-litellm-call-id").len(), 36);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "Echo: hello there"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["input_tokens"], 7);
    assert_eq!(body["usage"]["output_tokens"], 3);

    let r = only_request(&up);
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(DEFAULT_UPSTREAM_KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("anthropic-beta"), Some("tools-2024-05-16"));
    assert_eq!(r.body["model"], "claude-sonnet-4-5");
    assert_eq!(r.body["max_tokens"], 100);
    assert_eq!(r.body["system"], "Be brief");
    assert_eq!(r.body["messages"], turns);
    // On /v1/messages `metadata` is Anthropic's own field (LiteLLM keeps the proxy's in
    // `litellm_metadata` there): it goes upstream, the proxy's does not.
    assert_eq!(r.body["metadata"], json!({"user_id": "u-1"}), "{}", r.body);
    assert!(r.body.get("litellm_metadata").is_none(), "{}", r.body);

    // The SDK may leave anthropic-version out; the upstream still gets one.
    let resp = client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .json(&json!({"model": "claude", "max_tokens": 10, "messages": turns}))
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        up.last_request().unwrap().header("anthropic-version"),
        Some("2023-06-01")
    );

    // Streamed: Anthropic's events, in Anthropic's order, untouched.
    let t0 = Instant::now();
    let resp = messages(
        &gw,
        &key,
        &json!({"model": "claude", "max_tokens": 100, "stream": true, "system": "Be brief", "messages": turns}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let (text, _) = read_timed(resp, t0).await;
    let events = sse_events(&text);
    let deltas = events
        .iter()
        .filter(|e| *e == "content_block_delta")
        .count();
    assert_eq!(deltas, 3, "{text}"); // "Echo: ", "hello ", "there"
    let mut want = vec!["message_start", "content_block_start", "ping"];
    want.extend(std::iter::repeat_n("content_block_delta", deltas));
    want.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(events, want, "{text}");
    let data = sse_json(&text);
    assert_eq!(data[0]["message"]["model"], "claude-sonnet-4-5");
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], 7);
    let streamed: String = data
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(streamed, "Echo: hello there");
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(!text.contains("[DONE]"), "Anthropic streams have no [DONE]");
}

#[tokio::test]
async fn messages_are_translated_for_an_openai_upstream() {
    let up = FakeUpstream::start();
    let gw = start(vec![openai_model("gpt", "gpt-4o-mini", &up)], json!({}));
    let key = new_key(&gw, json!(["gpt"])).await;

    // Text.
    let (status, body) = messages_json(
        &gw,
        &key,
        &json!({
            "model": "gpt", "max_tokens": 64, "system": "Be brief",
            "messages": [{"role": "user", "content": "hello there"}],
            "stop_sequences": ["END"], "metadata": {"user_id": "u-9"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"), "{body}");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "Echo: hello there"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["input_tokens"], 10);
    assert_eq!(body["usage"]["output_tokens"], 3);
    let r = only_request(&up);
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {DEFAULT_UPSTREAM_KEY}").as_str())
    );
    assert_eq!(r.body["model"], "gpt-4o-mini");
    assert_eq!(
        r.body["messages"],
        json!([{"role": "system", "content": "Be brief"}, {"role": "user", "content": "hello there"}])
    );
    assert_eq!(r.body["max_tokens"], 64);
    assert_eq!(r.body["stop"], json!(["END"]));
    assert_eq!(r.body["user"], "u-9");

    // A tool call comes back as a tool_use block.
    let (status, body) = messages_json(
        &gw,
        &key,
        &json!({
            "model": "gpt", "max_tokens": 64,
            "messages": [{"role": "user", "content": "call tool please"}],
            "tools": [weather_tool_anthropic()],
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = up.last_request().unwrap();
    assert_eq!(r.body["tools"], json!([weather_tool_openai()]));
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"location": "Paris"}));
    let tool_id = block["id"].as_str().unwrap().to_string();
    assert!(!tool_id.is_empty());

    // The tool result goes back as an OpenAI `tool` message.
    let (status, body) = messages_json(
        &gw,
        &key,
        &json!({
            "model": "gpt", "max_tokens": 64,
            "messages": [
                {"role": "user", "content": "call tool please"},
                {"role": "assistant", "content": [block]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "sunny"}]},
            ],
            "tools": [weather_tool_anthropic()],
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = &up.last_request().unwrap().body["messages"];
    assert_eq!(sent[1]["role"], "assistant");
    assert_eq!(sent[1]["tool_calls"][0]["id"], tool_id.as_str());
    assert_eq!(sent[1]["tool_calls"][0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(
        sent[1]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"location": "Paris"}));
    assert_eq!(
        sent[2],
        json!({"role": "tool", "tool_call_id": tool_id, "content": "sunny"})
    );

    // Streamed text: the full Anthropic event sequence, with usage at the end.
    let t0 = Instant::now();
    let resp = messages(
        &gw,
        &key,
        &json!({"model": "gpt", "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "hello there"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(header(resp.headers(), "content-type").starts_with("text/event-stream"));
    let (text, _) = read_timed(resp, t0).await;
    let events = sse_events(&text);
    let deltas = events
        .iter()
        .filter(|e| *e == "content_block_delta")
        .count();
    assert!(deltas >= 1, "{text}");
    let mut want = vec!["message_start", "content_block_start"];
    want.extend(std::iter::repeat_n("content_block_delta", deltas));
    want.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(events, want, "{text}");
    let data = sse_json(&text);
    assert!(
        data.iter()
            .zip(&events)
            .all(|(d, e)| d["type"] == e.as_str()),
        "{text}"
    );
    assert_eq!(data[0]["message"]["role"], "assistant");
    assert_eq!(data[1]["content_block"]["type"], "text");
    let streamed: String = data
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(streamed, "Echo: hello there");
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert!(!text.contains("[DONE]"));
    let r = up.last_request().unwrap();
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["stream_options"]["include_usage"], true);

    // Streamed tool call.
    let t0 = Instant::now();
    let resp = messages(
        &gw,
        &key,
        &json!({"model": "gpt", "max_tokens": 64, "stream": true,
                "messages": [{"role": "user", "content": "call tool please"}],
                "tools": [weather_tool_anthropic()]}),
    )
    .await;
    let (text, _) = read_timed(resp, t0).await;
    let events = sse_events(&text);
    assert_eq!(events.first().map(String::as_str), Some("message_start"));
    assert_eq!(events.last().map(String::as_str), Some("message_stop"));
    let data = sse_json(&text);
    let start = data
        .iter()
        .find(|d| d["type"] == "content_block_start")
        .unwrap();
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["name"], "get_weather");
    assert!(
        start["content_block"]["id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let partial: String = data
        .iter()
        .filter(|d| d["delta"]["type"] == "input_json_delta")
        .filter_map(|d| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(partial, TOOL_ARGUMENTS);
    let delta = data.iter().find(|d| d["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn messages_errors_use_the_anthropic_envelope() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![
            anthropic_model("claude", "claude-sonnet-4-5", &up),
            openai_model("gpt", "gpt-4o-mini", &up),
        ],
        json!({"router_settings": {"num_retries": 0}}),
    );
    let key = new_key(&gw, json!(["claude"])).await;
    let user = json!([{"role": "user", "content": "x"}]);
    let cases = [
        (
            json!({"model": "claude", "messages": user}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "claude", "max_tokens": 0, "messages": user}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "claude", "max_tokens": 10}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": 5}]}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"max_tokens": 10, "messages": user}),
            400,
            "invalid_request_error",
        ),
        (
            json!({"model": "gpt", "max_tokens": 10, "messages": user}),
            403,
            "permission_error",
        ),
    ];
    for (body, status, kind) in &cases {
        let (got, v) = messages_json(&gw, &key, body).await;
        assert_eq!(got, *status, "{body}: {v}");
        assert_eq!(assert_anthropic_error(&v), *kind, "{body}: {v}");
    }
    // An unknown model (for a caller who may use any) is a not_found_error.
    let (got, v) = messages_json(
        &gw,
        MASTER_KEY,
        &json!({"model": "nope", "max_tokens": 10, "messages": user}),
    )
    .await;
    assert_eq!(got, 404);
    assert_eq!(assert_anthropic_error(&v), "not_found_error");

    // Malformed JSON, no key, a wrong key.
    let http = client();
    let resp = http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", &key)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        assert_anthropic_error(&resp.json().await.unwrap()),
        "invalid_request_error"
    );
    for k in [None, Some("sk-wrong")] {
        let mut rb = http
            .post(gw.url("/v1/messages"))
            .json(&json!({"model": "claude", "max_tokens": 10, "messages": user}))
            .timeout(REQUEST_DEADLINE);
        if let Some(k) = k {
            rb = rb.header("x-api-key", k);
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(
            assert_anthropic_error(&resp.json().await.unwrap()),
            "authentication_error"
        );
    }
    assert_eq!(
        up.request_count(),
        0,
        "bad requests must not reach the upstream"
    );

    // An Anthropic upstream's error reaches an Anthropic client as it was sent.
    up.push(Behavior::status(400));
    let (got, v) = messages_json(
        &gw,
        &key,
        &json!({"model": "claude", "max_tokens": 10, "messages": user}),
    )
    .await;
    assert_eq!(got, 400);
    assert_eq!(assert_anthropic_error(&v), "invalid_request_error");
    assert_eq!(
        v["error"]["message"],
        "Bad request (scripted by the fake upstream)."
    );

    // An OpenAI upstream's error is re-enveloped for the Anthropic client, message kept.
    up.push(Behavior::status(400));
    let (got, v) = messages_json(
        &gw,
        MASTER_KEY,
        &json!({"model": "gpt", "max_tokens": 10, "messages": user}),
    )
    .await;
    assert_eq!(got, 400);
    assert_eq!(assert_anthropic_error(&v), "invalid_request_error", "{v}");
    assert_eq!(
        v["error"]["message"],
        "Bad request (scripted by the fake upstream)."
    );
}

#[tokio::test]
async fn anthropic_upstream_errors_reach_openai_clients_in_the_openai_envelope() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![anthropic_model("claude", "claude-sonnet-4-5", &up)],
        json!({"router_settings": {"num_retries": 0}}),
    );
    for status in [400u16, 401, 429, 529] {
        up.push(Behavior::Status {
            status,
            body: None,
            retry_after: None,
        });
        let (got, _, v) = post_json(
            &gw,
            "/v1/chat/completions",
            MASTER_KEY,
            &json!({"model": "claude", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(got, status, "{v}");
        let e = assert_openai_error(&v);
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("scripted by the fake upstream"),
            "the upstream's message should be kept: {v}"
        );
        assert!(
            v.get("type").is_none(),
            "an Anthropic-shaped body was passed to an OpenAI client: {v}"
        );
    }
}

#[tokio::test]
async fn what_anthropic_cannot_do_is_refused_before_the_upstream() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![anthropic_model("claude", "claude-sonnet-4-5", &up)],
        json!({}),
    );
    for (path, body) in [
        ("/v1/embeddings", json!({"model": "claude", "input": "x"})),
        ("/v1/completions", json!({"model": "claude", "prompt": "x"})),
        (
            "/v1/chat/completions",
            json!({"model": "claude", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
        ),
    ] {
        let (status, _, v) = post_json(&gw, path, MASTER_KEY, &body).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(
            assert_openai_error(&v)["code"],
            "unsupported_operation",
            "{v}"
        );
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn disconnecting_from_a_messages_stream_cancels_the_upstream() {
    let up = FakeUpstream::start();
    up.set_chunk_delay(Duration::from_millis(100));
    let gw = start(
        vec![
            anthropic_model("claude", "claude-sonnet-4-5", &up),
            openai_model("gpt", "gpt-4o-mini", &up),
        ],
        json!({}),
    );
    let long = vec!["word"; 40].join(" ");
    // Passthrough and translated streams alike.
    for (i, model) in ["claude", "gpt"].into_iter().enumerate() {
        let resp = messages(
            &gw,
            MASTER_KEY,
            &json!({"model": model, "max_tokens": 100, "stream": true,
                    "messages": [{"role": "user", "content": long}]}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let mut s = resp.bytes_stream();
        let first = tokio::time::timeout(REQUEST_DEADLINE, s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&first).contains("message_start"));
        drop(s);
        let want = i as u64 + 1;
        assert!(
            up.wait_until(WAIT, |u| u.streams_cancelled() == want).await,
            "{model}: upstream stream not cancelled"
        );
    }
    assert_eq!(up.streams_completed(), 0);
}
