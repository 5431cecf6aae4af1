//! The OpenAI surface end to end: passthrough of chat, completions and embeddings to OpenAI and
//! Azure upstreams, SSE streaming (unbuffered, cancelled with the client, usage only on request),
//! the credential headers, and the exact status and envelope of every kind of bad request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{MASTER_KEY, client};
use crate::llm_support::{
    REQUEST_DEADLINE, assert_openai_error, chunk_text, header, new_key, only_request, openai_model,
    post, post_json, read_timed, sse_data, sse_json, start, with_info, with_param,
};
use crate::upstream::{DEFAULT_UPSTREAM_KEY, FakeUpstream, embedding_vector};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn chat_passes_through_with_upstream_model_and_proxy_params_stripped() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![with_info(
            openai_model("my-gpt", "gpt-4o-mini", &up),
            "id",
            json!("dep-openai-1"),
        )],
        json!({}),
    );
    let key = new_key(&gw, json!(["my-gpt"])).await;
    let messages = json!([
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "hello there"},
    ]);
    let (status, h, body) = post_json(
        &gw,
        "/v1/chat/completions",
        &key,
        &json!({
            "model": "my-gpt",
            "messages": messages,
            "temperature": 0.2,
            "user": "end-user-7",
            "seed": 42,
            "metadata": {"trace_id": "t-1", "tags": ["a"]},
            "mock_response": "must not be used",
            "litellm_metadata": {"k": "v"},
            "tags": ["x"],
            "num_retries": 5,
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The body is the upstream's, untouched: shape, content, usage, upstream model name.
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["system_fingerprint"], "fp_fakeupstream");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Echo: hello there");
    assert_eq!(choice["finish_reason"], "stop");
    // (2 words + 3) per message = 10 prompt tokens; "Echo: hello there" = 3.
    assert_eq!(body["usage"]["prompt_tokens"], 10);
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(body["usage"]["total_tokens"], 13);

    // LiteLLM's response headers.
    let call_id = header(&h, "x-litellm-call-id");
    assert_eq!(call_id.len(), 36, "call id {call_id:?}");
    assert_eq!(header(&h, "x-litellm-model-id"), "dep-openai-1");
    assert_eq!(header(&h, "x-litellm-model-group"), "my-gpt");
    assert_eq!(header(&h, "x-litellm-attempted-fallbacks"), "0");
    assert_eq!(header(&h, "x-litellm-attempted-retries"), "0");
    let overhead: f64 = header(&h, "x-litellm-overhead-duration-ms")
        .parse()
        .expect("overhead header is a number");
    assert!((0.0..5_000.0).contains(&overhead), "overhead {overhead}");
    assert!(header(&h, "content-type").starts_with("application/json"));

    // What the upstream saw: its own model name and key, the client's params, none of the proxy's.
    let r = only_request(&up);
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {DEFAULT_UPSTREAM_KEY}").as_str())
    );
    assert!(
        r.headers.iter().all(|(_, v)| !v.contains(&key)),
        "the virtual key leaked upstream: {:?}",
        r.headers
    );
    assert_eq!(r.body["model"], "gpt-4o-mini");
    assert_eq!(r.body["messages"], messages);
    assert_eq!(r.body["temperature"], 0.2);
    assert_eq!(r.body["user"], "end-user-7");
    assert_eq!(r.body["seed"], 42);
    for stripped in [
        "metadata",
        "litellm_metadata",
        "mock_response",
        "tags",
        "num_retries",
    ] {
        assert!(
            r.body.get(stripped).is_none(),
            "`{stripped}` reached the upstream: {}",
            r.body
        );
    }

    // Every call gets its own id.
    let (_, h2, _) = post_json(
        &gw,
        "/v1/chat/completions",
        &key,
        &json!({"model": "my-gpt", "messages": [{"role": "user", "content": "again"}]}),
    )
    .await;
    assert_ne!(header(&h2, "x-litellm-call-id"), call_id);
}

#[tokio::test]
async fn completions_and_embeddings_pass_through() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![
            openai_model("my-instruct", "gpt-3.5-turbo-instruct", &up),
            openai_model("my-embed", "text-embedding-3-small", &up),
            openai_model("my-gpt", "gpt-4o-mini", &up),
        ],
        json!({}),
    );

    let (status, _, body) = post_json(
        &gw,
        "/v1/completions",
        MASTER_KEY,
        &json!({"model": "my-instruct", "prompt": "say this", "max_tokens": 5, "metadata": {"k": 1}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(body["choices"][0]["text"], "Echo: say this");
    assert_eq!(body["usage"]["prompt_tokens"], 2);
    assert_eq!(body["usage"]["completion_tokens"], 3);
    let r = up.last_request().unwrap();
    assert_eq!(r.path, "/v1/completions");
    assert_eq!(r.body["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(r.body["max_tokens"], 5);
    assert!(r.body.get("metadata").is_none());

    let (status, _, body) = post_json(
        &gw,
        "/v1/embeddings",
        MASTER_KEY,
        &json!({"model": "my-embed", "input": ["a b", "c"], "dimensions": 4}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, text) in ["a b", "c"].iter().enumerate() {
        assert_eq!(data[i]["index"], i);
        let got: Vec<f64> = data[i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let want = embedding_vector(text, 4);
        assert_eq!(got.len(), 4);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "embedding changed in transit");
        }
    }
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    let r = up.last_request().unwrap();
    assert_eq!(r.path, "/v1/embeddings");
    assert_eq!(r.body["model"], "text-embedding-3-small");
    assert_eq!(r.body["dimensions"], 4);
    assert!(
        r.body.get("stream_options").is_none(),
        "embeddings never stream"
    );

    // LiteLLM's bare aliases (no /v1) reach the same handlers.
    for (path, body) in [
        (
            "/chat/completions",
            json!({"model": "my-gpt", "messages": [{"role": "user", "content": "bare"}]}),
        ),
        (
            "/completions",
            json!({"model": "my-instruct", "prompt": "bare"}),
        ),
        ("/embeddings", json!({"model": "my-embed", "input": "bare"})),
    ] {
        let (status, _, v) = post_json(&gw, path, MASTER_KEY, &body).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
    assert_eq!(up.request_count(), 5);
}

#[tokio::test]
async fn streams_end_with_done_and_carry_usage_only_when_asked() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![
            with_info(
                openai_model("my-gpt", "gpt-4o-mini", &up),
                "id",
                json!("dep-s"),
            ),
            openai_model("my-instruct", "gpt-3.5-turbo-instruct", &up),
        ],
        json!({}),
    );
    let key = new_key(&gw, json!(["my-gpt", "my-instruct"])).await;
    let ask = |stream_options: Option<Value>| {
        let mut b = json!({
            "model": "my-gpt",
            "stream": true,
            "messages": [{"role": "user", "content": "hi there"}],
        });
        if let Some(o) = stream_options {
            b["stream_options"] = o;
        }
        b
    };

    for (options, wants_usage) in [
        (None, false),
        (Some(json!({"include_usage": false})), false),
        (Some(json!({"include_usage": true})), true),
    ] {
        let t0 = Instant::now();
        let resp = post(&gw, "/v1/chat/completions", &key, &ask(options.clone())).await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        assert!(
            header(&h, "content-type").starts_with("text/event-stream"),
            "{h:?}"
        );
        assert_eq!(header(&h, "x-litellm-call-id").len(), 36);
        assert_eq!(header(&h, "x-litellm-model-id"), "dep-s");
        assert_eq!(header(&h, "x-litellm-attempted-fallbacks"), "0");
        assert!(
            header(&h, "x-litellm-overhead-duration-ms")
                .parse::<f64>()
                .is_ok()
        );
        let (text, _) = read_timed(resp, t0).await;
        let data = sse_data(&text);
        assert_eq!(
            data.last().map(String::as_str),
            Some("[DONE]"),
            "stream must end with [DONE]: {text}"
        );
        assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
        let chunks = sse_json(&text);
        assert!(
            chunks
                .iter()
                .all(|c| c["object"] == "chat.completion.chunk"),
            "{text}"
        );
        assert!(chunks.iter().all(|c| c["model"] == "gpt-4o-mini"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunk_text(&chunks), "Echo: hi there");
        let usage_chunks: Vec<&Value> = chunks
            .iter()
            .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
            .collect();
        if wants_usage {
            assert_eq!(usage_chunks.len(), 1, "{text}");
            let u = usage_chunks[0];
            assert_eq!(u["choices"], json!([]));
            assert_eq!(u["usage"]["prompt_tokens"], 5);
            assert_eq!(u["usage"]["completion_tokens"], 3);
            assert_eq!(u["usage"]["total_tokens"], 8);
            // The usage chunk is the last one before [DONE].
            assert_eq!(chunks.last(), Some(u));
        } else {
            assert!(
                usage_chunks.is_empty(),
                "usage chunk sent though not asked for ({options:?}): {text}"
            );
            assert!(
                chunks
                    .iter()
                    .all(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty())),
                "{text}"
            );
        }
        let last_choice = chunks
            .iter()
            .rev()
            .find(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty()))
            .unwrap();
        assert_eq!(last_choice["choices"][0]["finish_reason"], "stop");

        // The gateway always asks the upstream for usage (to cost the call).
        let r = up.last_request().unwrap();
        assert_eq!(r.body["stream"], true);
        assert_eq!(
            r.body["stream_options"]["include_usage"], true,
            "{}",
            r.body
        );
        assert_eq!(r.body["model"], "gpt-4o-mini");
    }

    // Legacy completions stream the same way.
    let t0 = Instant::now();
    let resp = post(
        &gw,
        "/v1/completions",
        &key,
        &json!({"model": "my-instruct", "prompt": "say this", "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (text, _) = read_timed(resp, t0).await;
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    let chunks = sse_json(&text);
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, "Echo: say this");
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none_or(Value::is_null)),
        "{text}"
    );
    assert!(
        up.wait_until(WAIT, |u| u.streams_completed() == 4).await,
        "every upstream stream should have been read to its end"
    );
    assert_eq!(up.streams_cancelled(), 0);
}

#[tokio::test]
async fn streams_are_forwarded_as_they_arrive_not_buffered() {
    let up = FakeUpstream::start();
    up.set_chunk_delay(Duration::from_millis(200));
    let gw = start(vec![openai_model("my-gpt", "gpt-4o-mini", &up)], json!({}));
    let t0 = Instant::now();
    // role, "Echo: ", "hi", finish, usage, [DONE]: five 200 ms gaps upstream.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        MASTER_KEY,
        &json!({"model": "my-gpt", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let headers_at = t0.elapsed();
    assert_eq!(resp.status(), 200);
    let (text, arrivals) = read_timed(resp, t0).await;
    let total = *arrivals.last().unwrap();
    let first = arrivals[0];
    assert!(
        total >= Duration::from_millis(800),
        "the chunk delay should stretch the stream: {total:?}"
    );
    assert!(
        first < total / 2,
        "first chunk at {first:?} of {total:?}: the stream was buffered"
    );
    assert!(
        headers_at < total / 2,
        "headers at {headers_at:?} of {total:?}"
    );
    assert!(
        arrivals.len() >= 4,
        "chunks should arrive separately, got {} reads",
        arrivals.len()
    );
    assert_eq!(chunk_text(&sse_json(&text)), "Echo: hi");
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let up = FakeUpstream::start();
    up.set_chunk_delay(Duration::from_millis(100));
    let gw = start(vec![openai_model("my-gpt", "gpt-4o-mini", &up)], json!({}));
    let long = vec!["word"; 40].join(" ");
    let resp = post(
        &gw,
        "/v1/chat/completions",
        MASTER_KEY,
        &json!({"model": "my-gpt", "stream": true, "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut s = resp.bytes_stream();
    let first = tokio::time::timeout(REQUEST_DEADLINE, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("data:"));
    assert_eq!(up.streams_started(), 1);
    drop(s); // the client goes away mid-stream (about 4 s of stream left)

    assert!(
        up.wait_until(WAIT, |u| u.streams_cancelled() == 1).await,
        "the upstream stream was not cancelled (started {}, completed {}, cancelled {})",
        up.streams_started(),
        up.streams_completed(),
        up.streams_cancelled()
    );
    assert_eq!(up.streams_completed(), 0);

    // The gateway is unaffected.
    up.set_chunk_delay(Duration::ZERO);
    let (status, _, _) = post_json(
        &gw,
        "/v1/chat/completions",
        MASTER_KEY,
        &json!({"model": "my-gpt", "messages": [{"role": "user", "content": "still there?"}]}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_stalled_stream_ends_with_an_error_event_after_stream_timeout() {
    let up = FakeUpstream::start();
    up.set_chunk_delay(Duration::from_secs(2));
    let gw = start(
        vec![with_param(
            openai_model("my-gpt", "gpt-4o-mini", &up),
            "stream_timeout",
            json!(0.3),
        )],
        json!({}),
    );
    let t0 = Instant::now();
    let resp = post(
        &gw,
        "/v1/chat/completions",
        MASTER_KEY,
        &json!({"model": "my-gpt", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (text, _) = read_timed(resp, t0).await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(1800),
        "the idle timeout did not fire: {took:?}"
    );
    let chunks = sse_json(&text);
    let err = chunks
        .iter()
        .find(|c| c.get("error").is_some())
        .unwrap_or_else(|| panic!("no error event: {text}"));
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out")
    );
    assert!(!sse_data(&text).contains(&"[DONE]".to_string()));
    assert!(up.wait_until(WAIT, |u| u.streams_cancelled() == 1).await);
}

#[tokio::test]
async fn azure_deployments_and_the_azure_style_route() {
    let up = FakeUpstream::start();
    let azure = json!({
        "model_name": "azure-gpt",
        "litellm_params": {
            "model": "azure/my-dep",
            "api_base": up.base_url(),
            "api_key": DEFAULT_UPSTREAM_KEY,
            "api_version": "2024-10-21",
        },
    });
    let azure_embed = json!({
        "model_name": "azure-embed",
        "litellm_params": {
            "model": "azure/embed-dep",
            "api_base": up.base_url(),
            "api_key": DEFAULT_UPSTREAM_KEY,
            "api_version": "2024-10-21",
        },
    });
    let gw = start(
        vec![
            azure,
            azure_embed,
            openai_model("my-gpt", "gpt-4o-mini", &up),
        ],
        json!({}),
    );
    let key = new_key(&gw, json!(["azure-gpt", "azure-embed", "my-gpt"])).await;

    // OpenAI route → Azure upstream: deployment URL, api-version query, api-key header.
    let (status, _, body) = post_json(
        &gw,
        "/v1/chat/completions",
        &key,
        &json!({"model": "azure-gpt", "messages": [{"role": "user", "content": "hello azure"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "my-dep");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: hello azure"
    );
    let r = up.last_request().unwrap();
    assert_eq!(r.path, "/openai/deployments/my-dep/chat/completions");
    assert_eq!(r.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(r.header("api-key"), Some(DEFAULT_UPSTREAM_KEY));
    assert_eq!(r.header("authorization"), None);

    // Streaming to Azure.
    let t0 = Instant::now();
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &key,
        &json!({"model": "azure-gpt", "stream": true, "messages": [{"role": "user", "content": "s"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (text, _) = read_timed(resp, t0).await;
    assert_eq!(chunk_text(&sse_json(&text)), "Echo: s");
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        up.last_request().unwrap().path,
        "/openai/deployments/my-dep/chat/completions"
    );

    // The gateway's own Azure-style routes, as the AzureOpenAI SDK calls them: the model in
    // the path, not the body; the key in `api-key`; an api-version of its own.
    let http = client();
    let resp = http
        .post(gw.url("/openai/deployments/azure-gpt/chat/completions?api-version=2024-02-01"))
        .header("api-key", &key)
        .json(&json!({"messages": [{"role": "user", "content": "via azure route"}]}))
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-litellm-model-group"), "azure-gpt");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Echo: via azure route"
    );
    let r = up.last_request().unwrap();
    assert_eq!(r.path, "/openai/deployments/my-dep/chat/completions");
    assert_eq!(r.query.as_deref(), Some("api-version=2024-10-21"));

    // The Azure-style route to a plain OpenAI group.
    let resp = http
        .post(gw.url("/openai/deployments/my-gpt/chat/completions"))
        .header("api-key", &key)
        .json(&json!({"messages": [{"role": "user", "content": "x"}]}))
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = up.last_request().unwrap();
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.body["model"], "gpt-4o-mini");

    // Azure-style embeddings.
    let resp = http
        .post(gw.url("/openai/deployments/azure-embed/embeddings"))
        .header("api-key", &key)
        .json(&json!({"input": "vectors please"}))
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["object"], "embedding");
    assert_eq!(
        up.last_request().unwrap().path,
        "/openai/deployments/embed-dep/embeddings"
    );

    // A path model the key may not use is refused like a body model.
    let other = new_key(&gw, json!(["my-gpt"])).await;
    let resp = http
        .post(gw.url("/openai/deployments/azure-gpt/chat/completions"))
        .header("api-key", &other)
        .json(&json!({"messages": [{"role": "user", "content": "x"}]}))
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn every_credential_header_works_and_bad_credentials_get_401() {
    let up = FakeUpstream::start();
    let gw = start(vec![openai_model("my-gpt", "gpt-4o-mini", &up)], json!({}));
    let key = new_key(&gw, json!(["my-gpt"])).await;
    let body = json!({"model": "my-gpt", "messages": [{"role": "user", "content": "auth"}]});
    let http = client();
    let send = |headers: Vec<(&'static str, String)>| {
        let mut rb = http
            .post(gw.url("/v1/chat/completions"))
            .json(&body)
            .timeout(REQUEST_DEADLINE);
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        rb.send()
    };

    let good = [
        vec![("authorization", format!("Bearer {key}"))],
        vec![("x-api-key", key.clone())],
        vec![("api-key", key.clone())],
        vec![("x-litellm-api-key", key.clone())],
        vec![("x-litellm-api-key", format!("Bearer {key}"))],
        vec![("authorization", format!("Bearer {MASTER_KEY}"))],
    ];
    for headers in good {
        let resp = send(headers.clone()).await.unwrap();
        assert_eq!(resp.status(), 200, "{headers:?}");
    }
    let served = up.request_count();
    assert_eq!(served, 6);

    let bad: [(Vec<(&'static str, String)>, &str); 6] = [
        (vec![], "missing_api_key"),
        (
            vec![("authorization", "Bearer sk-not-a-key".to_string())],
            "invalid_api_key",
        ),
        (
            vec![("x-api-key", "sk-not-a-key".to_string())],
            "invalid_api_key",
        ),
        (
            vec![("api-key", "sk-not-a-key".to_string())],
            "invalid_api_key",
        ),
        (
            vec![("authorization", format!("Basic {key}"))],
            "invalid_api_key",
        ),
        // The upstream's key is not a gateway key.
        (
            vec![("authorization", format!("Bearer {DEFAULT_UPSTREAM_KEY}"))],
            "invalid_api_key",
        ),
    ];
    for (headers, code) in bad {
        let resp = send(headers.clone()).await.unwrap();
        assert_eq!(resp.status(), 401, "{headers:?}");
        assert_eq!(header(resp.headers(), "x-litellm-call-id").len(), 36);
        let v: Value = resp.json().await.unwrap();
        let e = assert_openai_error(&v);
        assert_eq!(e["code"], code, "{headers:?}: {v}");
        assert_eq!(e["type"], "authentication_error");
    }

    // /v1/models wants a key too.
    let resp = http
        .get(gw.url("/v1/models"))
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_openai_error(&resp.json().await.unwrap());

    // A blocked key stops working at once; unblocked, it works again.
    let admin = |path: &'static str| {
        http.post(gw.url(path))
            .bearer_auth(MASTER_KEY)
            .json(&json!({"key": key}))
            .timeout(REQUEST_DEADLINE)
            .send()
    };
    assert_eq!(admin("/key/block").await.unwrap().status(), 200);
    let resp = send(vec![("authorization", format!("Bearer {key}"))])
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(assert_openai_error(&v)["code"], "blocked_api_key");
    assert_eq!(admin("/key/unblock").await.unwrap().status(), 200);
    let resp = send(vec![("authorization", format!("Bearer {key}"))])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    assert_eq!(
        up.request_count(),
        served + 1,
        "refused requests must not reach the upstream"
    );
}

#[tokio::test]
async fn bad_requests_get_exact_statuses_and_the_openai_envelope() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![
            openai_model("my-gpt", "gpt-4o-mini", &up),
            openai_model("other", "gpt-4o", &up),
        ],
        json!({}),
    );
    let key = new_key(&gw, json!(["my-gpt"])).await;
    let http = client();
    let raw = |path: &str, k: &str, body: &str| {
        http.post(gw.url(path))
            .bearer_auth(k)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(REQUEST_DEADLINE)
            .send()
    };

    let chat = "/v1/chat/completions";
    let k = key.as_str();
    // (path, key, raw body, status, code, param)
    let cases: Vec<(&str, &str, String, u16, &str, Value)> = vec![
        (chat, k, r#"{"model": "my-gpt", "messages": ["#.into(), 400, "invalid_json", Value::Null),
        (chat, k, "[1, 2]".into(), 400, "invalid_json", Value::Null),
        (chat, k, r#""a string""#.into(), 400, "invalid_json", Value::Null),
        (chat, k, "".into(), 400, "invalid_value", json!("model")),
        (chat, k, r#"{"messages": [{"role": "user", "content": "x"}]}"#.into(), 400, "invalid_value", json!("model")),
        (chat, k, r#"{"model": "", "messages": [{"role": "user", "content": "x"}]}"#.into(), 400, "invalid_value", json!("model")),
        (chat, k, r#"{"model": 5, "messages": [{"role": "user", "content": "x"}]}"#.into(), 400, "invalid_value", json!("model")),
        (chat, k, r#"{"model": "my-gpt"}"#.into(), 400, "invalid_value", json!("messages")),
        (chat, k, r#"{"model": "my-gpt", "messages": "hi"}"#.into(), 400, "invalid_value", json!("messages")),
        (chat, k, r#"{"model": "my-gpt", "messages": []}"#.into(), 400, "invalid_value", json!("messages")),
        (chat, k, r#"{"model": "my-gpt", "messages": [{"content": "no role"}]}"#.into(), 400, "invalid_value", json!("messages")),
        (chat, k, r#"{"model": "my-gpt", "messages": ["x"]}"#.into(), 400, "invalid_value", json!("messages")),
        (chat, k, r#"{"model": "my-gpt", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}"#.into(), 400, "invalid_value", json!("stream")),
        ("/v1/completions", k, r#"{"model": "my-gpt"}"#.into(), 400, "invalid_value", json!("prompt")),
        ("/v1/completions", k, r#"{"model": "my-gpt", "prompt": 5}"#.into(), 400, "invalid_value", json!("prompt")),
        ("/v1/embeddings", k, r#"{"model": "my-gpt"}"#.into(), 400, "invalid_value", json!("input")),
        ("/v1/embeddings", k, r#"{"model": "my-gpt", "input": []}"#.into(), 400, "invalid_value", json!("input")),
        ("/v1/embeddings", k, r#"{"model": "my-gpt", "input": {"a": 1}}"#.into(), 400, "invalid_value", json!("input")),
        // A model nobody configured: 404 for the admin, who may use anything...
        (chat, MASTER_KEY, r#"{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}"#.into(), 404, "model_not_found", json!("model")),
        // ...and 403 for a key limited to other models, whether the model exists or not.
        (chat, k, r#"{"model": "other", "messages": [{"role": "user", "content": "x"}]}"#.into(), 403, "model_not_allowed", json!("model")),
        (chat, k, r#"{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}"#.into(), 403, "model_not_allowed", json!("model")),
    ];
    for (path, who, body, status, code, param) in &cases {
        let resp = raw(path, who, body).await.unwrap();
        assert_eq!(resp.status().as_u16(), *status, "{path} {body}");
        assert_eq!(
            header(resp.headers(), "x-litellm-call-id").len(),
            36,
            "{path} {body}"
        );
        assert!(header(resp.headers(), "content-type").starts_with("application/json"));
        let v: Value = resp.json().await.unwrap();
        let e = assert_openai_error(&v);
        assert_eq!(e["code"], *code, "{path} {body}: {v}");
        assert_eq!(e["param"], *param, "{path} {body}: {v}");
    }

    // Wrong method and unknown routes: still the OpenAI envelope.
    for (method, path, status) in [
        (reqwest::Method::GET, "/v1/chat/completions", 405),
        (reqwest::Method::DELETE, "/v1/embeddings", 405),
        (reqwest::Method::PUT, "/v1/messages", 405),
        (reqwest::Method::POST, "/v1/models", 405),
        (reqwest::Method::POST, "/v1/nope", 404),
        (reqwest::Method::GET, "/nope/at/all", 404),
    ] {
        let resp = http
            .request(method.clone(), gw.url(path))
            .bearer_auth(&key)
            .timeout(REQUEST_DEADLINE)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        let v: Value = resp.json().await.unwrap();
        assert_openai_error(&v);
    }

    assert_eq!(
        up.request_count(),
        0,
        "no bad request may reach the upstream"
    );

    // The server keeps serving.
    let (status, _, _) = post_json(
        &gw,
        chat,
        &key,
        &json!({"model": "my-gpt", "messages": [{"role": "user", "content": "fine"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let resp = http
        .get(gw.url("/health/liveliness"))
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn oversized_bodies_get_413_with_or_without_content_length() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![openai_model("my-gpt", "gpt-4o-mini", &up)],
        json!({"general_settings": {"max_request_size_mb": 0.001}}),
    );
    let limit = (0.001f64 * 1024.0 * 1024.0) as usize;
    let big = json!({
        "model": "my-gpt",
        "messages": [{"role": "user", "content": "x".repeat(4 * limit)}],
    })
    .to_string();
    let http = client();

    // Declared length over the limit.
    let resp = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("content-type", "application/json")
        .body(big.clone())
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // The unread rest of the body makes the connection unusable: the client must be told.
    assert_eq!(header(resp.headers(), "connection"), "close");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(assert_openai_error(&v)["code"], "request_too_large");

    // Chunked (no Content-Length): the limit holds while reading.
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = big
        .as_bytes()
        .chunks(512)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let resp = http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // The unread rest of the body makes the connection unusable: the client must be told.
    assert_eq!(header(resp.headers(), "connection"), "close");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(assert_openai_error(&v)["code"], "request_too_large");

    // On /v1/messages the same refusal comes in Anthropic's envelope.
    let resp = http
        .post(gw.url("/v1/messages"))
        .header("x-api-key", MASTER_KEY)
        .header("content-type", "application/json")
        .body(big.clone())
        .timeout(REQUEST_DEADLINE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "request_too_large", "{v}");
    assert_eq!(up.request_count(), 0);

    // A request under the limit is served.
    let (status, _, body) = post_json(
        &gw,
        "/v1/chat/completions",
        MASTER_KEY,
        &json!({"model": "my-gpt", "messages": [{"role": "user", "content": "small"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.request_count(), 1);
}
