//! The LiteLLM-compatible key management API end to end: `/key/generate`, `/key/update`,
//! `/key/delete`, `/key/info`, `/key/list`, `/key/regenerate`, `/key/block` — every change seen
//! by the very next request, the error envelope, admin-only routes, secrets never shown back,
//! and concurrent edits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{Gateway, MASTER_KEY, Options, client};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// A gateway plus a client, with shorthands for the management calls tests make.
pub struct Api {
    pub gw: Gateway,
    pub http: reqwest::Client,
}

impl Api {
    pub fn start() -> Api {
        Api::on(Options::new().start())
    }

    pub fn on(gw: Gateway) -> Api {
        Api { gw, http: client() }
    }

    /// POST `path` with `body` as `auth`; the status and the JSON answer (Null if not JSON).
    pub async fn post_as(&self, auth: &str, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.gw.url(path))
            .bearer_auth(auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_as(MASTER_KEY, path, body).await
    }

    pub async fn get_as(&self, auth: &str, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(self.gw.url(path))
            .bearer_auth(auth)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(MASTER_KEY, path).await
    }

    /// Generates a key (asserting success) and returns the whole answer.
    pub async fn generate(&self, body: Value) -> Value {
        let (status, out) = self.post("/key/generate", body.clone()).await;
        assert_eq!(status, 200, "generate {body}: {out}");
        assert!(out["key"].as_str().is_some_and(|k| k.starts_with("sk-")));
        out
    }

    /// Creates users (without keys) and a team holding them as plain members.
    pub async fn team_with(&self, team_id: &str, users: &[&str]) {
        for u in users {
            let (status, out) = self
                .post("/user/new", json!({"user_id": u, "auto_create_key": false}))
                .await;
            assert!(status == 200 || status == 409, "user {u}: {out}");
        }
        let members: Vec<Value> = users
            .iter()
            .map(|u| json!({"user_id": u, "role": "user"}))
            .collect();
        let (status, out) = self
            .post(
                "/team/new",
                json!({"team_id": team_id, "members_with_roles": members}),
            )
            .await;
        assert_eq!(status, 200, "team {team_id}: {out}");
    }

    /// The status of a request that needs nothing but a valid key (`GET /v1/models`).
    pub async fn use_key(&self, secret: &str) -> u16 {
        self.http
            .get(self.gw.url("/v1/models"))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Polls until `secret` gets `want` (or the deadline passes); returns the last status.
    pub async fn wait_for_status(&self, secret: &str, want: u16, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.use_key(secret).await;
            if got == want || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asserts that none of `secrets` (nor the master key) was ever written to the log.
    pub fn assert_log_free_of(&self, secrets: &[&str]) {
        let log = self.gw.log();
        assert!(!log.is_empty(), "the gateway log is empty");
        assert!(
            !log.contains('\u{1b}'),
            "terminal escape codes in a log that is not a terminal"
        );
        assert!(!log.contains(MASTER_KEY), "the master key is in the log");
        for s in secrets {
            assert!(!log.contains(s), "secret {s} is in the log");
        }
    }
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub fn secret_of(v: &Value) -> String {
    v["key"].as_str().unwrap().to_string()
}

/// Asserts the management error envelope: exactly `{"error": {message, type, param, code}}`.
fn assert_envelope(body: &Value, status: u16, kind: &str, param: Option<&str>) {
    let err = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"));
    let mut fields: Vec<&str> = err.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["code", "message", "param", "type"], "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(err["type"], kind, "{body}");
    assert_eq!(err["code"], status.to_string(), "{body}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match param {
        Some(p) => {
            assert_eq!(err["param"], p, "{body}");
            assert!(
                err["message"].as_str().unwrap().contains(p),
                "the message should name `{p}`: {body}"
            );
        }
        None => assert!(err["param"].is_null(), "{body}"),
    }
}

fn parse_time(s: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        s.as_str().unwrap_or_else(|| panic!("not a time: {s}")),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

#[tokio::test]
async fn generate_stores_every_field_and_info_never_shows_the_secret() {
    let api = Api::start();
    api.team_with("team-1", &["user-1"]).await;
    let before = time::OffsetDateTime::now_utc();
    let out = api
        .generate(json!({
            "key_alias": "all-fields",
            "models": ["mock/*", "gpt-4o-mini"],
            "duration": "1h",
            "metadata": {"team": "search", "tags": ["a", "b"]},
            "user_id": "user-1",
            "team_id": "team-1",
            "max_budget": 12.5,
            "budget_duration": "30d",
            "tpm_limit": 1000,
            "rpm_limit": 60,
            "max_parallel_requests": 4,
            "blocked": false,
            "send_invite_email": true,
        }))
        .await;
    let secret = secret_of(&out);
    assert_eq!(secret.len(), 51, "sk- plus 192 random bits in hex");
    let token = sha256_hex(&secret);
    assert_eq!(out["token"], token.as_str());
    assert_eq!(
        out["key_name"],
        format!("sk-...{}", &secret[secret.len() - 4..])
    );
    assert_eq!(out["key_alias"], "all-fields");
    assert_eq!(out["models"], json!(["mock/*", "gpt-4o-mini"]));
    assert_eq!(
        out["metadata"],
        json!({"team": "search", "tags": ["a", "b"]})
    );
    assert_eq!(out["user_id"], "user-1");
    assert_eq!(out["team_id"], "team-1");
    assert_eq!(out["max_budget"], 12.5);
    assert_eq!(out["budget_duration"], "30d");
    assert_eq!(out["tpm_limit"], 1000);
    assert_eq!(out["rpm_limit"], 60);
    assert_eq!(out["max_parallel_requests"], 4);
    assert_eq!(out["blocked"], false);
    assert_eq!(out["spend"], 0.0);
    let expires = parse_time(&out["expires"]);
    let want = before + time::Duration::hours(1);
    assert!(
        (expires - want).abs() < time::Duration::seconds(60),
        "expires {expires} should be about {want}"
    );
    assert_eq!(api.use_key(&secret).await, 200);

    // Info by the secret and by its token agree, and neither shows the secret.
    let (s1, by_secret) = api.get(&format!("/key/info?key={secret}")).await;
    let (s2, by_token) = api.get(&format!("/key/info?key={token}")).await;
    assert_eq!((s1, s2), (200, 200), "{by_secret} {by_token}");
    assert_eq!(by_secret["info"], by_token["info"]);
    assert_eq!(by_secret["info"]["token"], token.as_str());
    assert_eq!(
        by_secret["key"],
        token.as_str(),
        "info names the key by its token"
    );
    assert_eq!(by_secret["info"]["key_alias"], "all-fields");
    assert_eq!(by_secret["info"]["rpm_limit"], 60);
    // The token names a key but never works as one (LiteLLM accepts its hashes as keys).
    assert_eq!(api.use_key(&token).await, 401);
    assert_eq!(api.use_key(&secret).await, 200);
    for body in [&by_secret, &by_token] {
        assert!(
            !body.to_string().contains(&secret),
            "/key/info shows the secret: {body}"
        );
    }

    // A key without fields has the documented defaults.
    let bare = api.generate(json!({})).await;
    assert_eq!(bare["models"], json!([]));
    assert!(bare["expires"].is_null());
    assert!(bare["key_alias"].is_null());
    assert_eq!(bare["metadata"], json!({}));
    assert_eq!(api.use_key(&secret_of(&bare)).await, 200);

    // A key created blocked cannot be used.
    let blocked = api.generate(json!({"blocked": true})).await;
    assert_eq!(api.use_key(&secret_of(&blocked)).await, 401);

    api.assert_log_free_of(&[&secret, &secret_of(&bare), &secret_of(&blocked)]);
}

#[tokio::test]
async fn custom_keys_and_duplicate_aliases() {
    let api = Api::start();
    let custom = "sk-custom-0123456789abcdef";
    let out = api
        .generate(json!({"key": custom, "key_alias": "custom"}))
        .await;
    assert_eq!(out["key"], custom);
    assert_eq!(out["token"], sha256_hex(custom).as_str());
    assert_eq!(api.use_key(custom).await, 200);

    // The same secret again: a conflict, not a second key.
    let (status, body) = api.post("/key/generate", json!({"key": custom})).await;
    assert_eq!(status, 409, "{body}");
    assert_envelope(&body, 409, "conflict_error", None);

    for bad in [
        json!("short"),
        json!("sk-has spaces inside it"),
        json!("pk-0123456789abcdefghij"),
        json!("sk-0123456789abcdefghij\n"),
        json!("sk-0123456789abcdef\u{7f}xyz"),
        json!("sk-ünïcødé-0123456789"),
        json!(12345),
    ] {
        let (status, body) = api.post("/key/generate", json!({"key": bad})).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_envelope(&body, 400, "bad_request_error", Some("key"));
    }

    // Aliases are unique, and the refused request creates nothing.
    let (status, body) = api
        .post(
            "/key/generate",
            json!({"key_alias": "custom", "models": ["x"]}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_envelope(&body, 409, "conflict_error", None);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("custom")
    );
    let (_, list) = api.get("/key/list").await;
    assert_eq!(list["total_count"], 1, "{list}");
    api.assert_log_free_of(&[custom]);
}

#[tokio::test]
async fn bad_field_types_are_400_naming_the_field() {
    let api = Api::start();
    let cases = [
        ("key_alias", json!(5)),
        ("models", json!("mock/*")),
        ("models", json!([1, 2])),
        ("duration", json!("forever")),
        ("duration", json!(30)),
        ("metadata", json!("text")),
        ("metadata", json!([1])),
        ("user_id", json!(7)),
        ("team_id", json!({"id": 1})),
        ("max_budget", json!(-1)),
        ("max_budget", json!("10")),
        ("budget_duration", json!("monthly")),
        ("tpm_limit", json!(1.5)),
        ("tpm_limit", json!(-3)),
        ("rpm_limit", json!("60")),
        ("max_parallel_requests", json!(true)),
        ("blocked", json!("yes")),
    ];
    for (field, value) in &cases {
        let (status, body) = api.post("/key/generate", json!({ *field: value })).await;
        assert_eq!(status, 400, "generate {field}={value}: {body}");
        assert_envelope(&body, 400, "bad_request_error", Some(field));
    }
    let (_, list) = api.get("/key/list").await;
    assert_eq!(
        list["total_count"], 0,
        "a refused generate created a key: {list}"
    );

    // The same checks on update, which then leaves the key untouched.
    let key = api
        .generate(json!({"key_alias": "victim", "rpm_limit": 5}))
        .await;
    let secret = secret_of(&key);
    for (field, value) in &cases {
        let (status, body) = api
            .post(
                "/key/update",
                json!({"key": secret, "rpm_limit": 99, *field: value}),
            )
            .await;
        assert_eq!(status, 400, "update {field}={value}: {body}");
        assert_envelope(&body, 400, "bad_request_error", Some(field));
    }
    let (_, info) = api.get(&format!("/key/info?key={secret}")).await;
    assert_eq!(info["info"]["rpm_limit"], 5, "{info}");
    assert_eq!(info["info"]["key_alias"], "victim");

    // Bodies that are not a JSON object.
    for raw in ["not json", "[1,2]", "\"text\""] {
        let resp = api
            .http
            .post(api.gw.url("/key/generate"))
            .bearer_auth(MASTER_KEY)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{raw}");
        let body: Value = resp.json().await.unwrap();
        assert_envelope(&body, 400, "bad_request_error", None);
    }
    // Update without naming a key.
    let (status, body) = api.post("/key/update", json!({"rpm_limit": 1})).await;
    assert_eq!(status, 400);
    assert_envelope(&body, 400, "bad_request_error", Some("key"));
}

#[tokio::test]
async fn update_is_a_merge_patch() {
    let api = Api::start();
    let key = api
        .generate(json!({
            "key_alias": "patch-me",
            "models": ["mock/*"],
            "metadata": {"a": 1},
            "max_budget": 10.0,
            "rpm_limit": 5,
            "tpm_limit": 500,
            "user_id": "u1",
        }))
        .await;
    let secret = secret_of(&key);
    let token = sha256_hex(&secret);

    // Omitted fields keep their values.
    let (status, out) = api
        .post("/key/update", json!({"key": secret, "rpm_limit": 20}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["rpm_limit"], 20);
    assert_eq!(out["tpm_limit"], 500);
    assert_eq!(out["max_budget"], 10.0);
    assert_eq!(out["key_alias"], "patch-me");
    assert_eq!(out["models"], json!(["mock/*"]));
    assert_eq!(out["metadata"], json!({"a": 1}));
    assert_eq!(out["user_id"], "u1");
    assert_eq!(out["token"], token.as_str());
    assert!(
        !out.to_string().contains(&secret),
        "update shows the secret"
    );

    // null clears; a value replaces; the key may be named by its token.
    let (status, out) = api
        .post(
            "/key/update",
            json!({"key": token, "max_budget": null, "user_id": null, "metadata": {"b": 2}, "models": null}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert!(out["max_budget"].is_null(), "{out}");
    assert!(out["user_id"].is_null(), "{out}");
    assert_eq!(out["metadata"], json!({"b": 2}));
    assert_eq!(out["models"], json!([]));
    assert_eq!(out["rpm_limit"], 20);

    // What info reads back is what update answered (it was stored, not just echoed).
    let (_, info) = api.get(&format!("/key/info?key={token}")).await;
    assert_eq!(info["info"], out);

    // Renaming frees the old alias; taking a used alias is a conflict.
    let (status, out) = api
        .post(
            "/key/update",
            json!({"key": secret, "key_alias": "renamed"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let other = api.generate(json!({"key_alias": "patch-me"})).await;
    let (status, body) = api
        .post(
            "/key/update",
            json!({"key": secret_of(&other), "key_alias": "renamed"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_envelope(&body, 409, "conflict_error", None);
    let (_, listed) = api.get("/key/list?key_alias=renamed").await;
    assert_eq!(listed["keys"], json!([token]), "{listed}");
    // Setting a key's own alias again is not a conflict.
    let (status, _) = api
        .post(
            "/key/update",
            json!({"key": secret, "key_alias": "renamed"}),
        )
        .await;
    assert_eq!(status, 200);

    // Unknown keys are 404 and nothing is created.
    let (status, body) = api
        .post(
            "/key/update",
            json!({"key": "sk-does-not-exist-000000", "rpm_limit": 1}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_envelope(&body, 404, "not_found_error", None);
    let (_, list) = api.get("/key/list").await;
    assert_eq!(list["total_count"], 2, "{list}");

    // Through all of it the key kept working; blocking via update takes effect at once.
    assert_eq!(api.use_key(&secret).await, 200);
    let (status, _) = api
        .post("/key/update", json!({"key": secret, "blocked": true}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(api.use_key(&secret).await, 401);
    let (status, _) = api
        .post("/key/update", json!({"key": secret, "blocked": null}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(api.use_key(&secret).await, 200);
    api.assert_log_free_of(&[&secret, &secret_of(&other)]);
}

#[tokio::test]
async fn delete_by_keys_and_aliases_is_immediate_and_all_or_nothing() {
    let api = Api::start();
    let mut secrets = Vec::new();
    for i in 0..6 {
        let k = api.generate(json!({"key_alias": format!("d{i}")})).await;
        secrets.push(secret_of(&k));
    }
    for s in &secrets {
        assert_eq!(api.use_key(s).await, 200);
    }

    // By secret: refused on the very next request.
    let (status, out) = api.post("/key/delete", json!({"keys": [secrets[0]]})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["deleted_keys"], json!([sha256_hex(&secrets[0])]));
    assert!(!out.to_string().contains(&secrets[0]));
    assert_eq!(api.use_key(&secrets[0]).await, 401);

    // By alias.
    let (status, out) = api
        .post("/key/delete", json!({"key_aliases": ["d1"]}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(api.use_key(&secrets[1]).await, 401);
    // The alias is free again.
    api.generate(json!({"key_alias": "d1"})).await;

    // By token.
    let (status, _) = api
        .post("/key/delete", json!({"keys": [sha256_hex(&secrets[2])]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(api.use_key(&secrets[2]).await, 401);

    // One unknown key (or alias) anywhere: nothing is deleted.
    let (status, body) = api
        .post(
            "/key/delete",
            json!({"keys": [secrets[3], "sk-unknown-key-123456789"]}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_envelope(&body, 404, "not_found_error", None);
    let (status, _) = api
        .post(
            "/key/delete",
            json!({"keys": [secrets[3]], "key_aliases": ["no-such-alias"]}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(api.use_key(&secrets[3]).await, 200);

    // Naming the same key twice (by secret and by alias) deletes it once, not a 404.
    let (status, out) = api
        .post(
            "/key/delete",
            json!({"keys": [secrets[3], secrets[4]], "key_aliases": ["d3"]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let deleted: HashSet<&str> = out["deleted_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        deleted,
        HashSet::from([
            sha256_hex(&secrets[3]).as_str(),
            sha256_hex(&secrets[4]).as_str()
        ])
    );
    assert_eq!(api.use_key(&secrets[3]).await, 401);
    assert_eq!(api.use_key(&secrets[4]).await, 401);

    // Deleting again: 404. Deleting nothing: 400.
    let (status, _) = api.post("/key/delete", json!({"keys": [secrets[0]]})).await;
    assert_eq!(status, 404);
    let (status, body) = api.post("/key/delete", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_envelope(&body, 400, "bad_request_error", Some("keys"));
    let (status, body) = api.post("/key/delete", json!({"keys": "sk-x"})).await;
    assert_eq!(status, 400, "{body}");
    assert_envelope(&body, 400, "bad_request_error", Some("keys"));

    // Only the untouched key and the re-used alias remain.
    assert_eq!(api.use_key(&secrets[5]).await, 200);
    let (_, list) = api.get("/key/list").await;
    assert_eq!(list["total_count"], 2, "{list}");
    let all: Vec<&str> = secrets.iter().map(String::as_str).collect();
    api.assert_log_free_of(&all);
}

#[tokio::test]
async fn info_is_own_key_only_and_other_keys_are_hidden() {
    let api = Api::start();
    let a = api
        .generate(json!({"key_alias": "a", "user_id": "ua"}))
        .await;
    let b = api.generate(json!({"key_alias": "b"})).await;
    let (sa, sb) = (secret_of(&a), secret_of(&b));
    let (ta, tb) = (sha256_hex(&sa), sha256_hex(&sb));

    // Without ?key a virtual key gets its own info.
    let (status, own) = api.get_as(&sa, "/key/info").await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["info"]["token"], ta.as_str());
    assert_eq!(own["info"]["key_alias"], "a");
    assert!(!own.to_string().contains(&sa), "{own}");
    // Naming itself works too; naming another key answers 404 (never 403: no existence leak).
    let (status, _) = api.get_as(&sa, &format!("/key/info?key={sa}")).await;
    assert_eq!(status, 200);
    for other in [&sb, &tb] {
        let (status, body) = api.get_as(&sa, &format!("/key/info?key={other}")).await;
        assert_eq!(status, 404, "{body}");
        assert_envelope(&body, 404, "not_found_error", None);
        assert!(!body.to_string().contains("\"b\""), "{body}");
    }
    let (status, _) = api
        .get_as(&sa, "/key/info?key=sk-no-such-key-0000000000")
        .await;
    assert_eq!(status, 404);

    // The admin: must name a key; unknown keys are 404.
    let (status, body) = api.get("/key/info").await;
    assert_eq!(status, 400, "{body}");
    assert_envelope(&body, 400, "bad_request_error", Some("key"));
    let (status, _) = api.get(&format!("/key/info?key={}", "0".repeat(64))).await;
    assert_eq!(status, 404);

    // No credential or a wrong one: 401 in the management envelope.
    let resp = api.http.get(api.gw.url("/key/info")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_envelope(&body, 401, "auth_error", None);
    let (status, _) = api.get_as("sk-wrong-key-000000000000", "/key/info").await;
    assert_eq!(status, 401);

    // A user's key governs its own keys only: every key outside its scope is 404 (its
    // existence is not disclosed), whatever the route.
    let outside = [
        (
            "/key/update".to_string(),
            json!({"key": sb, "blocked": true}),
        ),
        ("/key/delete".to_string(), json!({"keys": [sb]})),
        ("/key/block".to_string(), json!({"key": sb})),
        ("/key/regenerate".to_string(), json!({"key": sb})),
        (format!("/key/{sb}/regenerate"), json!({})),
        (
            "/key/generate".to_string(),
            json!({"key_alias": "sneaky", "user_id": "someone-else"}),
        ),
    ];
    for (path, body) in &outside {
        let (status, out) = api.post_as(&sa, path, body.clone()).await;
        assert_eq!(status, 404, "{path}: {out}");
        assert_envelope(&out, 404, "not_found_error", None);
    }
    // Unblocking needs someone above the key, even for its owner (blocking it is a narrowing
    // the owner may make, tested elsewhere, and would lock this test out).
    let (status, out) = api.post_as(&sa, "/key/unblock", json!({"key": sa})).await;
    assert_eq!(status, 403, "{out}");
    assert_envelope(&out, 403, "permission_error", None);
    // Its list holds its own key only.
    let (status, own_list) = api.get_as(&sa, "/key/list").await;
    assert_eq!(status, 200);
    assert_eq!(own_list["keys"], json!([ta]), "{own_list}");
    // Nothing changed.
    assert_eq!(api.use_key(&sb).await, 200);
    let (_, list) = api.get("/key/list?return_full_object=true").await;
    assert_eq!(list["total_count"], 2, "{list}");
    let (_, info) = api.get(&format!("/key/info?key={ta}")).await;
    assert_eq!(info["info"]["models"], json!([]));
    api.assert_log_free_of(&[&sa, &sb]);
}

#[tokio::test]
async fn list_pages_filters_and_full_objects_without_secrets() {
    let api = Api::start();
    api.team_with("t1", &["u1"]).await;
    api.team_with("t2", &["u2"]).await;
    let mut secrets = Vec::new();
    for i in 0..7 {
        let (user, team) = if i < 3 { ("u1", "t1") } else { ("u2", "t2") };
        let k = api
            .generate(json!({"key_alias": format!("l{i}"), "user_id": user, "team_id": team}))
            .await;
        secrets.push(secret_of(&k));
    }
    let tokens: HashSet<String> = secrets.iter().map(|s| sha256_hex(s)).collect();

    // Paging: every key exactly once across the pages, with consistent counts.
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (status, out) = api.get(&format!("/key/list?page={page}&size=3")).await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["total_count"], 7, "{out}");
        assert_eq!(out["current_page"], page, "{out}");
        assert_eq!(out["total_pages"], 3, "{out}");
        let keys = out["keys"].as_array().unwrap();
        assert_eq!(keys.len(), if page < 3 { 3 } else { 1 }, "{out}");
        seen.extend(keys.iter().map(|k| k.as_str().unwrap().to_string()));
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), tokens);
    let (_, past) = api.get("/key/list?page=4&size=3").await;
    assert_eq!(past["keys"], json!([]), "{past}");
    assert_eq!(past["total_count"], 7);
    // The default page holds up to 10.
    let (_, default) = api.get("/key/list").await;
    assert_eq!(default["keys"].as_array().unwrap().len(), 7);
    assert_eq!(default["current_page"], 1);
    assert_eq!(default["total_pages"], 1);

    // Filters.
    let (_, u1) = api.get("/key/list?user_id=u1").await;
    assert_eq!(u1["total_count"], 3, "{u1}");
    let (_, t2) = api.get("/key/list?team_id=t2&size=2").await;
    assert_eq!(t2["total_count"], 4, "{t2}");
    assert_eq!(t2["total_pages"], 2, "{t2}");
    let (_, both) = api.get("/key/list?user_id=u1&team_id=t2").await;
    assert_eq!(both["total_count"], 0, "{both}");
    let (_, alias) = api.get("/key/list?key_alias=l4").await;
    assert_eq!(alias["keys"], json!([sha256_hex(&secrets[4])]), "{alias}");

    // Full objects: the stored fields, never the secret.
    let (status, full) = api
        .get("/key/list?return_full_object=true&user_id=u1")
        .await;
    assert_eq!(status, 200);
    let objects = full["keys"].as_array().unwrap();
    assert_eq!(objects.len(), 3);
    for o in objects {
        assert!(tokens.contains(o["token"].as_str().unwrap()), "{o}");
        assert_eq!(o["user_id"], "u1");
        assert_eq!(o["team_id"], "t1");
        assert!(o["key_name"].as_str().unwrap().starts_with("sk-..."));
        assert!(o.get("key").is_none(), "{o}");
    }
    let (_, everything) = api.get("/key/list?return_full_object=true&size=100").await;
    let text = everything.to_string();
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "/key/list shows a secret");
    }

    // Bad paging parameters name themselves.
    for (q, field) in [
        ("page=0", "page"),
        ("size=abc", "size"),
        ("page=-1", "page"),
    ] {
        let (status, body) = api.get(&format!("/key/list?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_envelope(&body, 400, "bad_request_error", Some(field));
    }
}

#[tokio::test]
async fn regenerate_with_and_without_a_grace_period() {
    let api = Api::start();

    // Without grace: the old secret fails at once, the new one works, the key keeps its fields.
    let k = api
        .generate(json!({"key_alias": "rot", "models": ["mock/*"], "rpm_limit": 7}))
        .await;
    let old = secret_of(&k);
    let (status, out) = api
        .post(
            &format!("/key/{old}/regenerate"),
            json!({"max_budget": 3.0}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let new = secret_of(&out);
    assert_ne!(new, old);
    assert_eq!(out["token"], sha256_hex(&new).as_str());
    assert_eq!(out["key_alias"], "rot");
    assert_eq!(out["models"], json!(["mock/*"]));
    assert_eq!(out["rpm_limit"], 7);
    assert_eq!(
        out["max_budget"], 3.0,
        "fields in the body apply to the new key"
    );
    assert_eq!(api.use_key(&old).await, 401);
    assert_eq!(api.use_key(&new).await, 200);
    let (status, _) = api.get(&format!("/key/info?key={old}")).await;
    assert_eq!(status, 404);
    let (_, list) = api.get("/key/list?key_alias=rot").await;
    assert_eq!(list["keys"], json!([sha256_hex(&new)]), "{list}");

    // With grace: both work until the period ends, then only the new one.
    let g = api.generate(json!({"key_alias": "graceful"})).await;
    let g_old = secret_of(&g);
    let started = Instant::now();
    let (status, out) = api
        .post(
            "/key/regenerate",
            json!({"key": g_old, "grace_period": "2s"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let g_new = secret_of(&out);
    assert_eq!(
        api.use_key(&g_old).await,
        200,
        "the old key works during the grace period"
    );
    assert_eq!(api.use_key(&g_new).await, 200);
    let last = api
        .wait_for_status(&g_old, 401, Duration::from_secs(10))
        .await;
    assert_eq!(last, 401, "the old key still works after its grace period");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the grace period ended early ({:?})",
        started.elapsed()
    );
    assert_eq!(api.use_key(&g_new).await, 200);

    // A custom new key, named by token; then errors.
    let custom = "sk-rotated-custom-key-0001";
    let (status, out) = api
        .post(
            "/key/regenerate",
            json!({"key": sha256_hex(&new), "new_key": custom}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["key"], custom);
    assert_eq!(api.use_key(custom).await, 200);
    assert_eq!(api.use_key(&new).await, 401);

    let (status, body) = api
        .post(
            "/key/regenerate",
            json!({"key": "sk-never-existed-00000000"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_envelope(&body, 404, "not_found_error", None);
    let (status, body) = api
        .post(
            "/key/regenerate",
            json!({"key": custom, "grace_period": "soon"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_envelope(&body, 400, "bad_request_error", Some("grace_period"));
    // A new secret that no client could present would lock the key's owner out for good.
    for bad in [
        "short",
        "sk-0123456789abcdefghij\n",
        "sk-with a space-0123456789",
    ] {
        let (status, body) = api
            .post("/key/regenerate", json!({"key": custom, "new_key": bad}))
            .await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_envelope(&body, 400, "bad_request_error", Some("new_key"));
    }
    // Refused regenerations left the key as it was.
    assert_eq!(api.use_key(custom).await, 200);
    api.assert_log_free_of(&[&old, &new, &g_old, &g_new, custom]);
}

#[tokio::test]
async fn block_unblock_and_expiry() {
    let api = Api::start();
    let k = api.generate(json!({"key_alias": "blockme"})).await;
    let secret = secret_of(&k);
    assert_eq!(api.use_key(&secret).await, 200);

    let (status, out) = api.post("/key/block", json!({"key": secret})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["blocked"], true);
    assert_eq!(api.use_key(&secret).await, 401);
    // The refusal names the reason in the OpenAI envelope on /v1.
    let resp = api
        .http
        .post(api.gw.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "mock/x", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "blocked_api_key", "{body}");
    let (_, info) = api.get(&format!("/key/info?key={secret}")).await;
    assert_eq!(info["info"]["blocked"], true);

    let (status, out) = api
        .post("/key/unblock", json!({"key": sha256_hex(&secret)}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["blocked"], false);
    assert_eq!(api.use_key(&secret).await, 200);

    let (status, _) = api
        .post("/key/block", json!({"key": "sk-not-a-real-key-0000000"}))
        .await;
    assert_eq!(status, 404);
    let (status, body) = api.post("/key/block", json!({})).await;
    assert_eq!(status, 400);
    assert_envelope(&body, 400, "bad_request_error", Some("key"));

    // A key that expires after one second is refused once it has.
    let short = api.generate(json!({"duration": "1s"})).await;
    let short_secret = secret_of(&short);
    let expires = parse_time(&short["expires"]);
    let now = time::OffsetDateTime::now_utc();
    assert!(
        expires > now - time::Duration::seconds(5) && expires <= now + time::Duration::seconds(1),
        "expires {expires} should be about a second from {now}"
    );
    let last = api
        .wait_for_status(&short_secret, 401, Duration::from_secs(10))
        .await;
    assert_eq!(last, 401, "an expired key is still accepted");
    let resp = api
        .http
        .get(api.gw.url("/v1/models"))
        .bearer_auth(&short_secret)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "expired_api_key", "{body}");
    // Clearing the expiry brings it back; a new duration counts from now.
    let (status, out) = api
        .post(
            "/key/update",
            json!({"key": short_secret, "duration": null}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert!(out["expires"].is_null());
    assert_eq!(api.use_key(&short_secret).await, 200);
    let (_, out) = api
        .post(
            "/key/update",
            json!({"key": short_secret, "duration": "2h"}),
        )
        .await;
    let expires = parse_time(&out["expires"]);
    assert!(expires > time::OffsetDateTime::now_utc() + time::Duration::minutes(110));
    assert_eq!(api.use_key(&short_secret).await, 200);
    api.assert_log_free_of(&[&secret, &short_secret]);
}

#[tokio::test]
async fn concurrent_generates_and_updates_lose_nothing() {
    let api = std::sync::Arc::new(Api::start());

    // 50 at once: all succeed, all distinct, all listed, all usable.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.post(
                "/key/generate",
                json!({"key_alias": format!("c{i}"), "user_id": "conc"}),
            )
            .await
        }));
    }
    let mut secrets = HashSet::new();
    for t in tasks {
        let (status, out) = t.await.unwrap();
        assert_eq!(status, 200, "{out}");
        assert!(
            secrets.insert(secret_of(&out)),
            "a duplicate key was handed out"
        );
    }
    let (_, list) = api.get("/key/list?size=1000&user_id=conc").await;
    assert_eq!(list["total_count"], 50, "{list}");
    let listed: HashSet<String> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        listed,
        secrets
            .iter()
            .map(|s| sha256_hex(s))
            .collect::<HashSet<_>>()
    );
    for s in secrets.iter().take(10) {
        assert_eq!(api.use_key(s).await, 200);
    }

    // Racing for one alias: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.post("/key/generate", json!({"key_alias": "contested"}))
                .await
                .0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409, 409, 409]);

    // Many updates to one key while it is in use: it is never refused, and the last write wins.
    let target = secrets.iter().next().unwrap().clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let user = {
        let (api, target, stop) = (api.clone(), target.clone(), stop.clone());
        tokio::spawn(async move {
            let mut uses = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(
                    api.use_key(&target).await,
                    200,
                    "the key vanished mid-update"
                );
                uses += 1;
            }
            uses
        })
    };
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let (api, target) = (api.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            api.post(
                "/key/update",
                json!({"key": target, "rpm_limit": i, "key_alias": format!("upd{}", i % 3), "metadata": {"i": i}}),
            )
            .await
            .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(user.await.unwrap() > 0);
    let (_, info) = api.get(&format!("/key/info?key={target}")).await;
    let rpm = info["info"]["rpm_limit"].as_u64().unwrap();
    assert_eq!(
        info["info"]["metadata"]["i"], rpm,
        "fields from different writes mixed: {info}"
    );
    assert_eq!(info["info"]["key_alias"], format!("upd{}", rpm % 3));
    // The aliases of the losing writes were released: only the winner holds one.
    for i in 0..3 {
        let (_, l) = api.get(&format!("/key/list?key_alias=upd{i}")).await;
        let want = u64::from(i == rpm % 3);
        assert_eq!(l["total_count"], want, "upd{i}: {l}");
    }
    assert_eq!(api.use_key(&target).await, 200);
}
