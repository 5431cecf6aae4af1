//! Budgets, rate limits and spend end to end: the concurrent budget race, every level of the
//! chain enforced on its own, rpm/parallel limits with their headers, streams costed (also
//! when the client cuts them), and spend surviving a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{Options, eventually_async};
use crate::keys::{Api, secret_of};
use crate::upstream::FakeUpstream;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The mock at a price high enough that a few calls add up.
const PRICED: &str = r#"
model_list:
  - model_name: "mock/*"
    litellm_params:
      model: "mock/*"
      input_cost_per_token: 0.001
      output_cost_per_token: 0.002
general_settings:
  spend_flush_interval: 0.2
"#;

async fn chat(api: &Api, key: &str, extra: Value) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut body = json!({
        "model": "mock/fixed",
        "messages": [{"role": "user", "content": "say something"}],
        "max_tokens": 8,
        "mock_response": "one two three four",
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let resp = api
        .http
        .post(api.gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap_or(Value::Null), headers)
}

async fn key_spend(api: &Api, key: &str) -> f64 {
    let (_, info) = api.get(&format!("/key/info?key={key}")).await;
    info["info"]["spend"].as_f64().unwrap()
}

#[tokio::test]
async fn five_hundred_concurrent_requests_cannot_overspend_a_budget_that_fits_ten() {
    let api = Arc::new(Api::on(Options::new().config(PRICED).start()));
    // The price of one call, measured.
    let probe = secret_of(&api.generate(json!({})).await);
    let (status, out, _) = chat(&api, &probe, json!({})).await;
    assert_eq!(status, 200, "{out}");
    let one = key_spend(&api, &probe).await;
    assert!(one > 0.0, "a priced call must cost something");

    let budget = one * 10.0;
    let key = secret_of(&api.generate(json!({"max_budget": budget})).await);
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (api, key) = (api.clone(), key.clone());
        tasks.push(tokio::spawn(
            async move { chat(&api, &key, json!({})).await },
        ));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (status, out, _) = t.await.unwrap();
        match status {
            200 => ok += 1,
            400 => {
                assert_eq!(out["error"]["type"], "budget_exceeded", "{out}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {out}"),
        }
    }
    let spent = key_spend(&api, &key).await;
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    assert!(ok <= 11, "{ok} calls ran against a budget that fits 10");
    // Never past the budget by more than the one request whose reservation fit last.
    assert!(
        spent <= budget + one + 1e-9,
        "spent {spent} of a budget of {budget} (one call costs {one})"
    );
    // And once exhausted, it stays exhausted.
    let (status, out, _) = chat(&api, &key, json!({})).await;
    if spent >= budget {
        assert_eq!(status, 400, "{out}");
    }
}

#[tokio::test]
async fn every_level_of_the_chain_is_enforced_on_its_own() {
    let api = Api::on(Options::new().config(PRICED).start());
    let probe = secret_of(&api.generate(json!({})).await);
    chat(&api, &probe, json!({})).await;
    let one = key_spend(&api, &probe).await;

    // A generous key under a team that affords two calls: the team decides.
    api.team_with("t-small", &["u-small"]).await;
    let (status, out) = api
        .post(
            "/team/update",
            json!({"team_id": "t-small", "max_budget": one * 1.5}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let key = secret_of(
        &api.generate(json!({"user_id": "u-small", "team_id": "t-small", "max_budget": 100.0}))
            .await,
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, out, _) = chat(&api, &key, json!({})).await;
        if status == 400 {
            assert_eq!(out["error"]["type"], "budget_exceeded");
            assert!(
                out["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("t-small"),
                "{out}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 400, 400]);
    // The team's spend is what its keys spent; the user's too.
    let (_, team) = api.get("/team/info?team_id=t-small").await;
    let team_spend = team["team_info"]["spend"].as_f64().unwrap();
    assert!((team_spend - 2.0 * one).abs() < 1e-9, "{team}");
    let (_, user) = api.get("/user/info?user_id=u-small").await;
    assert!((user["user_info"]["spend"].as_f64().unwrap() - 2.0 * one).abs() < 1e-9);

    // A user budget binds all of the user's keys together.
    let (status, _) = api
        .post(
            "/user/new",
            json!({"user_id": "u-cap", "max_budget": one * 0.5, "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200);
    let k1 = secret_of(&api.generate(json!({"user_id": "u-cap"})).await);
    let k2 = secret_of(&api.generate(json!({"user_id": "u-cap"})).await);
    assert_eq!(chat(&api, &k1, json!({})).await.0, 200);
    let (status, out, _) = chat(&api, &k2, json!({})).await;
    assert_eq!(status, 400, "{out}");

    // An end user's budget binds whichever key calls for it.
    let (status, out) = api
        .post(
            "/customer/new",
            json!({"user_id": "end-1", "max_budget": one * 0.5}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let free = secret_of(&api.generate(json!({})).await);
    assert_eq!(chat(&api, &free, json!({"user": "end-1"})).await.0, 200);
    assert_eq!(chat(&api, &free, json!({"user": "end-1"})).await.0, 400);
    assert_eq!(chat(&api, &free, json!({"user": "end-2"})).await.0, 200);
}

#[tokio::test]
async fn rpm_and_parallel_limits_answer_429_with_rate_headers() {
    let api = Api::start();
    let key = secret_of(&api.generate(json!({"rpm_limit": 2})).await);
    let (status, _, h) = chat(&api, &key, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(h["x-ratelimit-limit-requests"], "2");
    assert_eq!(h["x-ratelimit-remaining-requests"], "1");
    assert_eq!(chat(&api, &key, json!({})).await.0, 200);
    let (status, out, h) = chat(&api, &key, json!({})).await;
    assert_eq!(status, 429, "{out}");
    assert_eq!(out["error"]["type"], "rate_limit_error");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");

    // Parallel: a slow upstream holds the one slot; the second call is refused meanwhile.
    let up = FakeUpstream::start();
    up.set_latency(Duration::from_millis(1500));
    let api = Arc::new(Api::on(
        Options::new()
            .config(format!(
                "model_list:\n  - model_name: slow\n    litellm_params:\n      model: openai/slow\n      api_base: {}\n      api_key: sk-upstream-test\n",
                up.base_url()
            ))
            .start(),
    ));
    let key = secret_of(&api.generate(json!({"max_parallel_requests": 1})).await);
    let first = {
        let (api, key) = (api.clone(), key.clone());
        tokio::spawn(async move { chat(&api, &key, json!({"model": "slow"})).await.0 })
    };
    assert!(
        up.wait_until(Duration::from_secs(5), |u| u.request_count() >= 1)
            .await
    );
    let (status, out, _) = chat(&api, &key, json!({"model": "slow"})).await;
    assert_eq!(status, 429, "{out}");
    assert_eq!(first.await.unwrap(), 200);
    // The slot is free again.
    assert_eq!(chat(&api, &key, json!({"model": "slow"})).await.0, 200);
}

#[tokio::test]
async fn spend_is_logged_in_batches_and_survives_a_restart() {
    let api = Api::on(Options::new().config(PRICED).start());
    let key = secret_of(&api.generate(json!({"max_budget": 1000.0})).await);
    for _ in 0..3 {
        assert_eq!(chat(&api, &key, json!({})).await.0, 200);
    }
    // A stream, costed from its final usage.
    let resp = api
        .http
        .post(api.gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "mock/s", "stream": true, "max_tokens": 8,
            "messages": [{"role": "user", "content": "stream please"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let before = key_spend(&api, &key).await;
    assert!(before > 0.0);
    let logged = eventually_async(Duration::from_secs(10), || async {
        let (_, logs) = api.get(&format!("/spend/logs?api_key={key}")).await;
        logs.as_array().is_some_and(|rows| rows.len() == 4)
    })
    .await;
    assert!(logged, "four spend log rows");

    let api = Api::on(api.gw.restart());
    let after = key_spend(&api, &key).await;
    assert!(
        (after - before).abs() < 1e-9,
        "spend before restart {before}, after {after}"
    );
    let (_, logs) = api.get(&format!("/spend/logs?api_key={key}")).await;
    assert_eq!(logs.as_array().map(Vec::len), Some(4), "{logs}");
}

#[tokio::test]
async fn a_stream_cut_by_the_client_is_charged_for_what_was_delivered() {
    use futures_util::StreamExt;
    let up = FakeUpstream::start();
    up.set_chunk_delay(Duration::from_millis(100));
    let api = Api::on(
        Options::new()
            .config(format!(
                "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: {}\n      api_key: sk-upstream-test\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\ngeneral_settings:\n  spend_flush_interval: 0.2\n",
                up.base_url()
            ))
            .start(),
    );
    let key = secret_of(&api.generate(json!({})).await);
    let long = vec!["word"; 40].join(" ");
    let resp = api
        .http
        .post(api.gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt", "stream": true, "messages": [{"role": "user", "content": long}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut s = resp.bytes_stream();
    let mut seen = 0;
    while seen < 3 {
        let chunk = s.next().await.unwrap().unwrap();
        seen += String::from_utf8_lossy(&chunk).matches("data:").count();
    }
    drop(s); // the client leaves with most of the answer undelivered
    assert!(
        up.wait_until(Duration::from_secs(10), |u| u.streams_cancelled() == 1)
            .await
    );

    let charged = eventually_async(Duration::from_secs(10), || async {
        let (_, logs) = api.get(&format!("/spend/logs?api_key={key}")).await;
        logs.as_array()
            .and_then(|rows| rows.first().cloned())
            .is_some_and(|row| {
                let done = row["completion_tokens"].as_u64().unwrap_or(0);
                // Charged for what arrived: some tokens, far fewer than the 40-word answer.
                (1..40).contains(&done) && row["spend"].as_f64().unwrap_or(0.0) > 0.0
            })
    })
    .await;
    assert!(
        charged,
        "the cut stream was not charged for what was delivered"
    );
    assert!(key_spend(&api, &key).await > 0.0);
}
