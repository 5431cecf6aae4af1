//! Monitoring end to end: `GET /metrics` parses as Prometheus text and counts what happened
//! (calls by route/model/status, latency histograms, tokens and spend, refusals by level and
//! kind, bad keys, upstream errors and cooldowns), `general_settings.metrics_auth` guards it,
//! and the log of a run is JSON lines without a secret in them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{MASTER_KEY, Options};
use crate::keys::{Api, secret_of};
use crate::llm_support::{openai_model, start, with_info};
use crate::upstream::{Behavior, FakeUpstream};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

const CONFIG: &str = r#"
model_list:
  - model_name: "mock/*"
    litellm_params:
      model: "mock/*"
      input_cost_per_token: 0.001
      output_cost_per_token: 0.002
  - model_name: gpt-test
    litellm_params:
      model: mock/gpt-test
"#;

/// One parsed exposition: samples by name and label set, and each family's declared type.
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    types: HashMap<String, String>,
    text: String,
}

impl Scrape {
    /// Parses the Prometheus text format strictly: every line is a `# HELP`, a `# TYPE` or a
    /// sample of a declared family.
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        let mut types = HashMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "type {kind} in {line}"
                );
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (name, labels, value) = parse_sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(&name)
                .to_string();
            assert!(types.contains_key(&family), "no TYPE for {name}: {line}");
            samples.push((name, labels, value));
        }
        Scrape {
            samples,
            types,
            text: text.to_string(),
        }
    }

    /// The value of the sample with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
    }

    /// Like [`Scrape::get`], a missing series counting as 0.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Every sample of `name` whose labels include these.
    fn matching(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, l, v)| (l, *v))
            .collect()
    }

    /// A histogram series' buckets are cumulative, end in `+Inf`, and agree with `_count`.
    fn assert_histogram(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        assert_eq!(
            self.types.get(family).map(String::as_str),
            Some("histogram")
        );
        let mut buckets: Vec<(f64, f64)> = self
            .matching(&format!("{family}_bucket"), labels)
            .into_iter()
            .map(|(l, v)| {
                let le = &l["le"];
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (bound, v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.len() >= 5,
            "{family} {labels:?} has too few buckets:\n{}",
            self.text
        );
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "not cumulative"
        );
        let last = buckets.last().unwrap();
        assert_eq!(last.0, f64::INFINITY);
        let count = self.value(&format!("{family}_count"), labels);
        assert_eq!(last.1, count, "{family} +Inf bucket vs _count");
        assert!(self.get(&format!("{family}_sum"), labels).is_some());
        count
    }
}

fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let name_end = line.find(['{', ' ']).expect("sample name");
    let name = line[..name_end].to_string();
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inner.split_once("=\"").expect("label key");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("unterminated label value") {
                    (_, '\\') => value.push(chars.next().expect("escape").1),
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.to_string(), value);
            inner = &after[end + 1..];
            inner = inner.strip_prefix(',').unwrap_or(inner);
        }
    }
    let value = rest.trim();
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    (name, labels, value)
}

async fn scrape_as(api: &Api, auth: Option<&str>) -> (u16, String) {
    let mut req = api.http.get(api.gw.url("/metrics"));
    if let Some(a) = auth {
        req = req.bearer_auth(a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if status == 200 {
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    }
    (status, resp.text().await.unwrap())
}

async fn scrape(api: &Api) -> Scrape {
    let (status, text) = scrape_as(api, None).await;
    assert_eq!(status, 200, "{text}");
    Scrape::parse(&text)
}

async fn chat(api: &Api, key: &str, model: &str, stream: bool) -> (u16, String) {
    let resp = api
        .http
        .post(api.gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({
            "model": model,
            "stream": stream,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "count to three"}],
        }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

const CHAT: &str = "/v1/chat/completions";

#[tokio::test]
async fn metrics_count_calls_refusals_and_bad_keys() {
    let api = Api::on(Options::new().config(CONFIG).start());
    let key = secret_of(&api.generate(json!({})).await);
    let broke = secret_of(&api.generate(json!({"max_budget": 0.0})).await);

    // On a loopback address the default (`auto`) needs no credential.
    let before = scrape(&api).await;
    let ok = [("route", CHAT), ("model", "gpt-test"), ("status", "200")];
    assert_eq!(before.value("portcullis_requests_total", &ok), 0.0);
    assert!(
        before.get(
            "portcullis_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ) == Some(1.0)
    );

    for _ in 0..3 {
        let (status, body) = chat(&api, &key, "gpt-test", false).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = chat(&api, &key, "mock/streamer", true).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let (status, body) = chat(&api, &broke, "gpt-test", false).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = chat(&api, "sk-not-a-real-key-0000", "gpt-test", false).await;
    assert_eq!(status, 401);
    let (status, _) = chat(&api, &key, "no-such-model", false).await;
    assert_eq!(status, 404);

    let m = scrape(&api).await;
    let requests = |model: &str, status: &str| {
        m.value(
            "portcullis_requests_total",
            &[("route", CHAT), ("model", model), ("status", status)],
        )
    };
    assert_eq!(requests("gpt-test", "200"), 3.0, "{}", m.text);
    assert_eq!(requests("mock/*", "200"), 1.0);
    assert_eq!(requests("gpt-test", "400"), 1.0);
    // A bad key is refused before the body is read; a model the config does not have is never
    // a label of its own.
    assert_eq!(requests("unknown", "401"), 1.0);
    assert_eq!(requests("unknown", "404"), 1.0);
    assert!(!m.text.contains("no-such-model"));
    assert!(!m.text.contains("mock/streamer"));

    assert_eq!(
        m.value(
            "portcullis_limit_rejections_total",
            &[("level", "key"), ("kind", "budget")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "portcullis_limit_rejections_total",
            &[("level", "team"), ("kind", "rpm")]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.value(
            "portcullis_auth_failures_total",
            &[("code", "invalid_api_key")]
        ),
        1.0
    );

    // Histograms: every call of gpt-test, including the refused one; the stream has its
    // first-token time; the overhead of the four served calls.
    assert_eq!(
        m.assert_histogram(
            "portcullis_request_duration_seconds",
            &[("model", "gpt-test")]
        ),
        4.0
    );
    assert_eq!(
        m.assert_histogram(
            "portcullis_request_duration_seconds",
            &[("model", "mock/*")]
        ),
        1.0
    );
    assert_eq!(
        m.assert_histogram(
            "portcullis_time_to_first_token_seconds",
            &[("model", "mock/*")]
        ),
        1.0
    );
    assert_eq!(
        m.assert_histogram("portcullis_overhead_duration_seconds", &[]),
        4.0
    );

    let tokens = |model: &str, kind: &str| {
        m.value(
            "portcullis_tokens_total",
            &[("model", model), ("type", kind)],
        )
    };
    assert!(tokens("gpt-test", "prompt") > 0.0, "{}", m.text);
    assert!(tokens("gpt-test", "completion") > 0.0);
    assert!(tokens("mock/*", "completion") > 0.0);
    assert!(m.value("portcullis_spend_usd_total", &[("model", "mock/*")]) > 0.0);
    // gpt-test has no price: nothing was spent on it.
    assert_eq!(
        m.value("portcullis_spend_usd_total", &[("model", "gpt-test")]),
        0.0
    );

    assert_eq!(
        m.get("portcullis_spend_log_rows_dropped_total", &[]),
        Some(0.0)
    );
    assert!(m.value("portcullis_database_size_bytes", &[]) > 0.0);
    let cooling = m.matching("portcullis_deployment_cooling", &[("model", "gpt-test")]);
    assert_eq!(cooling.len(), 1);
    assert_eq!(cooling[0].1, 0.0);

    // Counters only go up.
    let (status, _) = chat(&api, &key, "gpt-test", false).await;
    assert_eq!(status, 200);
    let again = scrape(&api).await;
    assert_eq!(
        again.value(
            "portcullis_requests_total",
            &[("route", CHAT), ("model", "gpt-test"), ("status", "200")]
        ),
        4.0
    );
    assert!(
        again.value(
            "portcullis_tokens_total",
            &[("model", "gpt-test"), ("type", "prompt")]
        ) > tokens("gpt-test", "prompt")
    );

    // The harness's stderr is a file, not a terminal: one JSON object per line.
    let log = api.gw.log();
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        assert!(v["fields"]["message"].is_string(), "{line}");
        lines += 1;
    }
    assert!(log.contains("\"listening\""), "{log}");
    assert!(lines >= 2, "{log}");
    api.assert_log_free_of(&[&key, &broke, "sk-not-a-real-key-0000"]);
}

#[tokio::test]
async fn metrics_auth_admin_takes_the_master_key_or_an_admin_user() {
    let api = Api::on(
        Options::new()
            .config(format!(
                "{CONFIG}general_settings:\n  metrics_auth: admin\n"
            ))
            .start(),
    );
    let plain = secret_of(&api.generate(json!({})).await);
    let user = |id: &'static str, role: &'static str| {
        let api = &api;
        async move {
            let (s, out) = api
                .post("/user/new", json!({"user_id": id, "user_role": role}))
                .await;
            assert_eq!(s, 200, "{out}");
            secret_of(&out)
        }
    };
    let viewer = user("metrics-viewer", "proxy_admin_viewer").await;
    let internal = user("metrics-user", "internal_user").await;

    let (status, body) = scrape_as(&api, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("portcullis_"), "{body}");
    assert_eq!(scrape_as(&api, Some("sk-wrong-0000")).await.0, 401);
    assert_eq!(scrape_as(&api, Some(&plain)).await.0, 403);
    assert_eq!(scrape_as(&api, Some(&internal)).await.0, 403);
    let (status, text) = scrape_as(&api, Some(&viewer)).await;
    assert_eq!(status, 200);
    Scrape::parse(&text);
    assert_eq!(scrape_as(&api, Some(MASTER_KEY)).await.0, 200);
}

#[tokio::test]
async fn metrics_auth_master_key_and_human_logs_on_request() {
    let api = Api::on(
        Options::new()
            .config(format!(
                "{CONFIG}general_settings:\n  metrics_auth: master_key\n"
            ))
            .arg("--log-format")
            .arg("human")
            .start(),
    );
    let (s, out) = api
        .post(
            "/user/new",
            json!({"user_id": "boss", "user_role": "proxy_admin"}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let admin = secret_of(&out);
    assert_eq!(scrape_as(&api, None).await.0, 401);
    assert_eq!(scrape_as(&api, Some(&admin)).await.0, 403);
    assert_eq!(scrape_as(&api, Some(MASTER_KEY)).await.0, 200);

    let log = api.gw.log();
    assert!(log.contains("listening"), "{log}");
    assert!(
        log.lines().all(|l| !l.trim_start().starts_with('{')),
        "JSON despite --log-format human:\n{log}"
    );
    api.assert_log_free_of(&[&admin]);
}

#[tokio::test]
async fn metrics_count_upstream_errors_and_cooldowns() {
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
        json!({"router_settings": {"num_retries": 1, "allowed_fails": 0, "cooldown_time": 60}}),
    );
    let api = Api::on(gw);
    bad.push(Behavior::status(503));
    // The bad deployment is picked at random; its first failure (retried on the good one)
    // starts its cooldown.
    let mut sent = 0;
    while bad.request_count() < 1 {
        assert!(sent < 200, "the bad deployment was never picked");
        let (status, body) = chat(&api, MASTER_KEY, "pool", false).await;
        assert_eq!(status, 200, "{body}");
        sent += 1;
    }
    let m = scrape(&api).await;
    let dep = |id: &'static str| [("model", "pool"), ("deployment", id)];
    assert_eq!(
        m.value(
            "portcullis_upstream_errors_total",
            &[
                ("model", "pool"),
                ("deployment", "dep-bad"),
                ("class", "5xx")
            ]
        ),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.matching("portcullis_upstream_errors_total", &dep("dep-good"))
            .len(),
        0
    );
    assert_eq!(
        m.value("portcullis_deployment_cooldowns_total", &dep("dep-bad")),
        1.0
    );
    assert_eq!(
        m.get("portcullis_deployment_cooldowns_total", &dep("dep-good")),
        Some(0.0)
    );
    assert_eq!(
        m.value("portcullis_deployment_cooling", &dep("dep-bad")),
        1.0
    );
    assert_eq!(
        m.get("portcullis_deployment_cooling", &dep("dep-good")),
        Some(0.0)
    );
    assert_eq!(
        m.get("portcullis_upstream_in_flight", &dep("dep-good")),
        Some(0.0)
    );
    assert_eq!(
        m.value(
            "portcullis_requests_total",
            &[("route", CHAT), ("model", "pool"), ("status", "200")]
        ),
        sent as f64
    );
}

#[tokio::test]
async fn budget_remaining_is_exported_for_organisations_and_teams_with_a_budget() {
    let api = Api::start();
    for (path, body) in [
        (
            "/organization/new",
            json!({"organization_id": "org \"q\"", "organization_alias": "Q", "max_budget": 50}),
        ),
        (
            "/organization/new",
            json!({"organization_id": "free", "organization_alias": "F"}),
        ),
        ("/team/new", json!({"team_id": "t1", "max_budget": 5})),
    ] {
        let (status, out) = api.post(path, body).await;
        assert_eq!(status, 200, "{out}");
    }
    let (status, text) = scrape_as(&api, None).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE portcullis_budget_remaining_usd gauge"),
        "{text}"
    );
    assert!(
        text.contains(r#"portcullis_budget_remaining_usd{level="organization",id="org \"q\""} 50"#),
        "{text}"
    );
    assert!(text.contains(r#"portcullis_budget_remaining_usd{level="team",id="t1"} 5"#));
    assert!(!text.contains(r#"id="free""#), "no budget, no series");
}

#[tokio::test]
async fn the_audit_head_and_the_search_index_lag_are_exported() {
    let api = Api::start();
    for i in 0..3 {
        let (status, out) = api
            .post("/team/new", json!({"team_id": format!("m{i}")}))
            .await;
        assert_eq!(status, 200, "{out}");
    }
    // The index catches up within its commit interval; the scrape shows the lag falling to 0.
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape_as(&api, None).await.1;
        if text.contains("portcullis_audit_index_lag_entries 0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(text.contains("portcullis_audit_head_seq 3"), "{text}");
    assert!(
        text.contains("portcullis_audit_index_lag_entries 0"),
        "{text}"
    );
    assert!(text.contains("portcullis_audit_index_healthy 1"), "{text}");
}
