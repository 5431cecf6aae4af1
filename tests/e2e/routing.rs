//! The router end to end: retries (with backoff and `retry-after`), what is never retried,
//! fallbacks to other groups, cooldown of failing deployments, timeouts, unreachable upstreams,
//! weighted shuffle and least-busy selection, wildcard groups, and the model list a key sees.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::harness::{Gateway, MASTER_KEY, client};
use crate::llm_support::{
    REQUEST_DEADLINE, anthropic_model, assert_openai_error, closed_base, header, new_key,
    openai_model, post, post_json, start, with_info, with_param,
};
use crate::upstream::{Behavior, FakeUpstream};

const WAIT: Duration = Duration::from_secs(5);

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

async fn chat(gw: &Gateway, model: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    post_json(gw, "/v1/chat/completions", MASTER_KEY, &hello(model)).await
}

#[tokio::test]
async fn server_errors_are_retried_until_one_succeeds() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![openai_model("m", "gpt-4o-mini", &up)],
        json!({"router_settings": {"num_retries": 2}}),
    );
    up.push(Behavior::status(500));
    up.push(Behavior::status(503));
    let (status, h, body) = chat(&gw, "m").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Echo: hello");
    assert_eq!(header(&h, "x-litellm-attempted-retries"), "2");
    assert_eq!(header(&h, "x-litellm-attempted-fallbacks"), "0");
    assert_eq!(up.request_count(), 3);
    // Each attempt was the same request.
    let reqs = up.requests();
    assert!(reqs.windows(2).all(|w| w[0].body == w[1].body));

    // Out of retries: the last upstream error, with its status and body, reaches the client.
    up.clear();
    for _ in 0..3 {
        up.push(Behavior::status(503));
    }
    let (status, _, body) = chat(&gw, "m").await;
    assert_eq!(status, 503);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded"),
        "{body}"
    );
    assert_eq!(up.request_count(), 3);

    // A dropped connection is retried too.
    up.clear();
    up.push(Behavior::CloseConnection);
    let (status, h, _) = chat(&gw, "m").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-litellm-attempted-retries"), "1");
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_upstreams_retry_after() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![openai_model("m", "gpt-4o-mini", &up)],
        json!({"router_settings": {"num_retries": 2}}),
    );
    up.push(Behavior::rate_limited("1"));
    let t0 = Instant::now();
    let (status, h, _) = chat(&gw, "m").await;
    let took = t0.elapsed();
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-litellm-attempted-retries"), "1");
    assert_eq!(up.request_count(), 2);
    assert!(
        took >= Duration::from_secs(1),
        "retried after {took:?}, before the upstream's retry-after of 1 s"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A retry-after too long to wait is handed to the client instead of waited out.
    up.clear();
    up.push(Behavior::rate_limited("30"));
    let t0 = Instant::now();
    let (status, h, body) = chat(&gw, "m").await;
    assert_eq!(status, 429, "{body}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(header(&h, "retry-after"), "30");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn client_errors_from_the_upstream_pass_through_and_are_not_retried() {
    let up = FakeUpstream::start();
    let backup = FakeUpstream::start();
    let gw = start(
        vec![
            openai_model("m", "gpt-4o-mini", &up),
            openai_model("backup", "gpt-4o", &backup),
        ],
        json!({"router_settings": {"num_retries": 3, "fallbacks": [{"m": ["backup"]}]}}),
    );
    let custom = r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    let cases = [
        (
            Behavior::Status {
                status: 400,
                body: Some(custom.to_string()),
                retry_after: None,
            },
            400,
            Some(custom),
        ),
        (Behavior::status(401), 401, None),
        (Behavior::status(403), 403, None),
        (Behavior::status(404), 404, None),
    ];
    for (behavior, status, exact) in cases {
        up.clear();
        up.push(behavior);
        let resp = post(&gw, "/v1/chat/completions", MASTER_KEY, &hello("m")).await;
        assert_eq!(resp.status().as_u16(), status);
        let text = resp.text().await.unwrap();
        if let Some(exact) = exact {
            assert_eq!(
                text, exact,
                "the upstream's body must pass through untouched"
            );
        }
        let v: Value = serde_json::from_str(&text).unwrap();
        let e = assert_openai_error(&v);
        assert!(
            e["message"].as_str().unwrap().contains(if exact.is_some() {
                "context length"
            } else {
                "scripted"
            }),
            "{v}"
        );
        assert_eq!(up.request_count(), 1, "{status} must not be retried");
    }
    assert_eq!(
        backup.request_count(),
        0,
        "client errors must not fall back"
    );
}

#[tokio::test]
async fn a_failing_group_falls_back_to_the_next() {
    let primary = FakeUpstream::start();
    let backup = FakeUpstream::start();
    let gw = start(
        vec![
            with_info(
                openai_model("primary", "gpt-primary", &primary),
                "id",
                json!("dep-primary"),
            ),
            with_info(
                openai_model("backup", "gpt-backup", &backup),
                "id",
                json!("dep-backup"),
            ),
        ],
        json!({"router_settings": {"num_retries": 1, "fallbacks": [{"primary": ["backup"]}]}}),
    );
    // A fallback is a model like any other: a key that may not use it is not served by it.
    let narrow = new_key(&gw, json!(["primary"])).await;
    primary.push(Behavior::status(500));
    primary.push(Behavior::status(500));
    let (status, _, body) =
        post_json(&gw, "/v1/chat/completions", &narrow, &hello("primary")).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        backup.request_count(),
        0,
        "no fallback to a model the key may not use"
    );
    primary.clear();

    let key = new_key(&gw, json!(["primary", "backup"])).await;
    primary.push(Behavior::status(500));
    primary.push(Behavior::status(500));
    let (status, h, body) = post_json(&gw, "/v1/chat/completions", &key, &hello("primary")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "gpt-backup");
    assert_eq!(header(&h, "x-litellm-attempted-fallbacks"), "1");
    assert_eq!(header(&h, "x-litellm-model-id"), "dep-backup");
    assert_eq!(header(&h, "x-litellm-model-group"), "backup");
    assert_eq!(
        primary.request_count(),
        2,
        "the primary gets its retries first"
    );
    assert_eq!(backup.request_count(), 1);
    assert_eq!(backup.last_request().unwrap().body["model"], "gpt-backup");

    // Streams fall back the same way (before the first byte).
    primary.clear();
    backup.clear();
    primary.push(Behavior::status(503));
    primary.push(Behavior::status(503));
    let mut b = hello("primary");
    b["stream"] = json!(true);
    let resp = post(&gw, "/v1/chat/completions", &key, &b).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-litellm-attempted-fallbacks"), "1");
    let text = resp.text().await.unwrap();
    assert!(text.contains("gpt-backup") && text.trim_end().ends_with("data: [DONE]"));

    // Both groups down: the last error is returned.
    primary.clear();
    backup.clear();
    for _ in 0..2 {
        primary.push(Behavior::status(500));
        backup.push(Behavior::status(502));
    }
    let (status, h, body) = post_json(&gw, "/v1/chat/completions", &key, &hello("primary")).await;
    assert_eq!(status, 502, "{body}");
    assert_openai_error(&body);
    // The failure names the deployment that failed last and how far the fallbacks went.
    assert_eq!(header(&h, "x-litellm-model-id"), "dep-backup");
    assert_eq!(header(&h, "x-litellm-attempted-fallbacks"), "1");
    assert_eq!((primary.request_count(), backup.request_count()), (2, 2));
}

#[tokio::test]
async fn a_deployment_cools_down_after_allowed_fails() {
    let bad = FakeUpstream::start();
    let good = FakeUpstream::start();
    let gw = start(
        vec![
            with_info(
                openai_model("pool", "gpt-4o-mini", &bad),
                "id",
                json!("dep-bad"),
            ),
            with_info(
                openai_model("pool", "gpt-4o-mini", &good),
                "id",
                json!("dep-good"),
            ),
        ],
        json!({"router_settings": {"num_retries": 1, "allowed_fails": 2, "cooldown_time": 60}}),
    );
    for _ in 0..50 {
        bad.push(Behavior::status(500));
    }
    // Until the bad one has failed allowed_fails + 1 = 3 times it still gets picked now and
    // then; each of its failures is retried on the good one at once, so clients see no error.
    let mut sent = 0;
    while bad.request_count() < 3 {
        assert!(sent < 200, "the bad deployment was never picked");
        let (status, h, _) = chat(&gw, "pool").await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "x-litellm-model-id"), "dep-good");
        sent += 1;
    }
    // Now it cools down: no more traffic to it.
    for _ in 0..30 {
        let (status, h, _) = chat(&gw, "pool").await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "x-litellm-model-id"), "dep-good");
        assert_eq!(header(&h, "x-litellm-attempted-retries"), "0");
    }
    assert_eq!(
        bad.request_count(),
        3,
        "a cooling deployment must not receive traffic"
    );
}

#[tokio::test]
async fn when_every_deployment_cools_down_the_gateway_answers_429() {
    let a = FakeUpstream::start();
    let b = FakeUpstream::start();
    let gw = start(
        vec![
            openai_model("pool", "gpt-4o-mini", &a),
            openai_model("pool", "gpt-4o-mini", &b),
        ],
        json!({"router_settings": {"num_retries": 1, "allowed_fails": 0, "cooldown_time": 30}}),
    );
    a.push(Behavior::status(500));
    b.push(Behavior::status(500));
    let (status, _, _) = chat(&gw, "pool").await;
    assert_eq!(status, 500);
    assert_eq!((a.request_count(), b.request_count()), (1, 1));

    let (status, h, body) = chat(&gw, "pool").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        assert_openai_error(&body)["code"],
        "no_deployments_available"
    );
    let retry_after: u64 = header(&h, "retry-after").parse().expect("retry-after");
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(
        (a.request_count(), b.request_count()),
        (1, 1),
        "cooling deployments must not be called"
    );
}

#[tokio::test]
async fn a_hung_upstream_times_out_with_504() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![with_param(
            openai_model("m", "gpt-4o-mini", &up),
            "timeout",
            json!(0.3),
        )],
        json!({"router_settings": {"num_retries": 0}}),
    );
    up.push(Behavior::Hang);
    let t0 = Instant::now();
    let (status, h, body) = chat(&gw, "m").await;
    let took = t0.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(assert_openai_error(&body)["code"], "upstream_timeout");
    assert_eq!(header(&h, "x-litellm-call-id").len(), 36);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // Slow beyond the timeout (not hung) is the same; within it is fine.
    up.push(Behavior::Delay(Duration::from_millis(800)));
    let (status, _, _) = chat(&gw, "m").await;
    assert_eq!(status, 504);
    up.push(Behavior::Delay(Duration::from_millis(50)));
    let (status, _, _) = chat(&gw, "m").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![with_param(
            openai_model("m", "gpt-4o-mini", &up),
            "timeout",
            json!(0.3),
        )],
        json!({"router_settings": {"num_retries": 1}}),
    );
    up.push(Behavior::Hang);
    let t0 = Instant::now();
    let (status, h, _) = chat(&gw, "m").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-litellm-attempted-retries"), "1");
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn an_unreachable_upstream_gives_502_without_naming_it() {
    let base = closed_base();
    let port = base.rsplit(':').next().unwrap().to_string();
    let gw = start(
        vec![json!({
            "model_name": "gone",
            "litellm_params": {"model": "openai/gpt-4o", "api_base": format!("{base}/v1"), "api_key": "k"},
        })],
        json!({"router_settings": {"num_retries": 1}}),
    );
    let t0 = Instant::now();
    let (status, h, body) = chat(&gw, "gone").await;
    assert_eq!(status, 502, "{body}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(header(&h, "x-litellm-call-id").len(), 36);
    assert_eq!(assert_openai_error(&body)["code"], "upstream_unreachable");
    assert!(
        !body.to_string().contains(&port),
        "the internal address leaked to the client: {body}"
    );

    // Streaming requests fail the same way, before any SSE is sent.
    let mut b = hello("gone");
    b["stream"] = json!(true);
    let (status, _, body) = post_json(&gw, "/v1/chat/completions", MASTER_KEY, &b).await;
    assert_eq!(status, 502);
    assert_openai_error(&body);
}

/// Sends `n` chat requests, `parallel` at a time; all must succeed.
async fn burst(gw: &Gateway, model: &str, n: usize, parallel: usize) {
    let url = gw.url("/v1/chat/completions");
    let http = client();
    let mut set = JoinSet::new();
    for i in 0..n {
        if set.len() >= parallel {
            let status: u16 = set.join_next().await.unwrap().unwrap();
            assert_eq!(status, 200);
        }
        let (http, url, body) = (http.clone(), url.clone(), hello(model));
        set.spawn(async move {
            let _ = i;
            http.post(url)
                .bearer_auth(MASTER_KEY)
                .json(&body)
                .timeout(REQUEST_DEADLINE)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_shuffle_roughly_follows_the_weights() {
    let heavy = FakeUpstream::start();
    let light = FakeUpstream::start();
    let gw = start(
        vec![
            with_param(
                openai_model("pool", "gpt-4o-mini", &heavy),
                "weight",
                json!(9),
            ),
            with_param(
                openai_model("pool", "gpt-4o-mini", &light),
                "weight",
                json!(1),
            ),
        ],
        json!({"router_settings": {"routing_strategy": "simple-shuffle"}}),
    );
    burst(&gw, "pool", 200, 8).await;
    let (h, l) = (heavy.request_count(), light.request_count());
    assert_eq!(h + l, 200);
    // Expected 180 / 20 (binomial sd ≈ 4.2): these bounds are > 6 sd wide.
    assert!(
        (150..=197).contains(&h),
        "weight 9 got {h} of 200, weight 1 got {l}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_busy_sends_traffic_to_the_idle_deployment() {
    let a = FakeUpstream::start();
    let b = FakeUpstream::start();
    // Non-streaming answers are instant; a stream holds its deployment busy while it lasts.
    a.set_chunk_delay(Duration::from_millis(100));
    b.set_chunk_delay(Duration::from_millis(100));
    let gw = start(
        vec![
            openai_model("pool", "gpt-4o-mini", &a),
            openai_model("pool", "gpt-4o-mini", &b),
        ],
        json!({"router_settings": {"routing_strategy": "least-busy"}}),
    );
    let long = vec!["word"; 60].join(" ");
    let resp = post(
        &gw,
        "/v1/chat/completions",
        MASTER_KEY,
        &json!({"model": "pool", "stream": true, "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    tokio::time::timeout(REQUEST_DEADLINE, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (busy, idle) = if a.streams_started() == 1 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(busy.streams_started(), 1);
    let busy_before = busy.request_count();

    for _ in 0..12 {
        let (status, _, _) = chat(&gw, "pool").await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        busy.request_count(),
        busy_before,
        "least-busy sent work to the deployment with a request in flight"
    );
    assert_eq!(idle.request_count(), 12);

    // Once the stream is gone (client disconnect), both are idle again and share the work.
    drop(stream);
    assert!(busy.wait_until(WAIT, |u| u.streams_cancelled() == 1).await);
    let deadline = Instant::now() + WAIT;
    while busy.request_count() == busy_before {
        assert!(
            Instant::now() < deadline,
            "the disconnected stream still counts as in flight"
        );
        let (status, _, _) = chat(&gw, "pool").await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn latency_based_routing_prefers_the_fast_deployment() {
    let fast = FakeUpstream::start();
    let slow = FakeUpstream::start();
    slow.set_latency(Duration::from_millis(150));
    let gw = start(
        vec![
            openai_model("pool", "gpt-4o-mini", &fast),
            openai_model("pool", "gpt-4o-mini", &slow),
        ],
        json!({"router_settings": {"routing_strategy": "latency-based-routing"}}),
    );
    // Each deployment is measured once first, then the faster one takes the traffic.
    for _ in 0..12 {
        let (status, _, _) = chat(&gw, "pool").await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        slow.request_count(),
        1,
        "the slow deployment kept getting traffic"
    );
    assert_eq!(fast.request_count(), 11);
}

#[tokio::test]
async fn wildcard_groups_forward_the_requested_name() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![json!({
            "model_name": "openai/*",
            "litellm_params": {"model": "openai/*", "api_base": format!("{}/v1", up.base_url()), "api_key": "sk-upstream-test"},
        })],
        json!({}),
    );
    let key = new_key(&gw, json!(["openai/*"])).await;
    for model in ["openai/gpt-4o", "openai/gpt-4o-mini"] {
        let (status, _, body) = post_json(&gw, "/v1/chat/completions", &key, &hello(model)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            up.last_request().unwrap().body["model"],
            model.trim_start_matches("openai/")
        );
    }
    let (status, _, _) = post_json(&gw, "/v1/chat/completions", &key, &hello("anthropic/x")).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_model_list_shows_what_a_key_may_use() {
    let up = FakeUpstream::start();
    let gw = start(
        vec![
            openai_model("gpt-a", "gpt-4o", &up),
            with_info(
                openai_model("gpt-b", "gpt-4o-mini", &up),
                "access_groups",
                json!(["team-x"]),
            ),
            with_info(
                anthropic_model("claude", "claude-sonnet-4-5", &up),
                "access_groups",
                json!(["team-x", "team-y"]),
            ),
            openai_model("embed", "text-embedding-3-small", &up),
        ],
        json!({}),
    );
    let grouped = new_key(&gw, json!(["gpt-a", "team-x"])).await;
    let single = new_key(&gw, json!(["embed"])).await;
    let unrestricted = new_key(&gw, json!([])).await;
    let every = new_key(&gw, json!(["all-proxy-models"])).await;
    let http = client();
    let list = |key: String, path: &'static str| {
        let http = http.clone();
        let url = gw.url(path);
        async move {
            let resp = http
                .get(url)
                .bearer_auth(key)
                .timeout(REQUEST_DEADLINE)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["object"], "list");
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    assert_eq!(m["object"], "model");
                    m["id"].as_str().unwrap().to_string()
                })
                .collect::<BTreeSet<String>>()
        }
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let all = set(&["gpt-a", "gpt-b", "claude", "embed"]);
    assert_eq!(
        list(grouped.clone(), "/v1/models").await,
        set(&["gpt-a", "gpt-b", "claude"])
    );
    assert_eq!(
        list(grouped.clone(), "/models").await,
        set(&["gpt-a", "gpt-b", "claude"])
    );
    assert_eq!(list(single.clone(), "/v1/models").await, set(&["embed"]));
    assert_eq!(list(unrestricted.clone(), "/v1/models").await, all);
    assert_eq!(list(every.clone(), "/v1/models").await, all);
    assert_eq!(list(MASTER_KEY.to_string(), "/v1/models").await, all);

    // One model: visible ones answer, the others are absent (404), not forbidden.
    let get = |key: &str, model: &str| {
        http.get(gw.url(&format!("/v1/models/{model}")))
            .bearer_auth(key)
            .timeout(REQUEST_DEADLINE)
            .send()
    };
    let resp = get(&grouped, "claude").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["id"], "claude");
    let resp = get(&single, "claude").await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_openai_error(&resp.json().await.unwrap());

    // The list matches what the key may call.
    let (status, _, _) = post_json(&gw, "/v1/chat/completions", &grouped, &hello("gpt-b")).await;
    assert_eq!(status, 200);
    let (status, _, _) = post_json(&gw, "/v1/chat/completions", &single, &hello("gpt-a")).await;
    assert_eq!(status, 403);
}
