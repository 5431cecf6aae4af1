//! `GET /spend/logs` and `POST /access/explain` end to end: spend rows appear after calls (the
//! flusher is batched, so tests poll), filter by key, user, team and date, page, and stay within
//! the caller's scope; explanations name the level that decides, and hide what the caller may
//! not see.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::customers::{PRICED, chat_for, user_key};
use crate::harness::{Options, eventually_async};
use crate::keys::{Api, secret_of, sha256_hex};
use serde_json::{Value, json};
use std::time::Duration;

fn rows(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}"))
}

async fn logs_as(api: &Api, auth: &str, query: &str) -> Value {
    let (s, out) = api.get_as(auth, &format!("/spend/logs{query}")).await;
    assert_eq!(s, 200, "{query}: {out}");
    out
}

#[tokio::test]
async fn spend_logs_filtered_paged_and_scoped() {
    let api = Api::on(Options::new().config(PRICED).start());
    let master = crate::harness::MASTER_KEY;
    let alice = user_key(&api, "alice", "internal_user").await;
    let bob = user_key(&api, "bob", "internal_user").await;
    let (s, out) = api
        .post(
            "/team/new",
            json!({"team_id": "t-spend", "members_with_roles": [{"user_id": "bob", "role": "admin"}]}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let team_key = secret_of(&api.generate(json!({"team_id": "t-spend"})).await);

    for _ in 0..2 {
        assert_eq!(chat_for(&api, &alice, None).await.0, 200);
    }
    assert_eq!(chat_for(&api, &bob, None).await.0, 200);
    assert_eq!(chat_for(&api, &team_key, Some("end-1")).await.0, 200);

    let all = eventually_async(Duration::from_secs(10), || async {
        rows(&logs_as(&api, master, "").await).len() == 4
    })
    .await;
    assert!(
        all,
        "spend logs never appeared: {}",
        logs_as(&api, master, "").await
    );

    let all = logs_as(&api, master, "").await;
    let newest = &rows(&all)[0];
    assert_eq!(newest["api_key"], sha256_hex(&team_key));
    assert_eq!(newest["team_id"], "t-spend");
    assert_eq!(newest["end_user"], "end-1");
    assert_eq!(newest["call_type"], "acompletion");
    assert_eq!(newest["model"], "mock/x");
    assert_eq!(newest["status"], "success");
    assert_eq!(newest["stream"], false);
    assert!(newest["spend"].as_f64().unwrap() > 0.0, "{newest}");
    assert!(newest["total_tokens"].as_u64().unwrap() > 0, "{newest}");
    assert_eq!(
        newest["total_tokens"].as_u64(),
        Some(
            newest["prompt_tokens"].as_u64().unwrap()
                + newest["completion_tokens"].as_u64().unwrap()
        )
    );
    assert!(newest["startTime"].as_str().unwrap().contains('T'));
    assert_eq!(newest["metadata"]["user_api_key_team_id"], "t-spend");

    // Filters: by secret or token, user, team, request id, end user, date.
    let by_secret = logs_as(&api, master, &format!("?api_key={alice}")).await;
    assert_eq!(rows(&by_secret).len(), 2);
    let by_token = logs_as(&api, master, &format!("?api_key={}", sha256_hex(&alice))).await;
    assert_eq!(by_token, by_secret);
    assert!(rows(&by_secret).iter().all(|r| r["user"] == "alice"));
    assert_eq!(rows(&logs_as(&api, master, "?user_id=bob").await).len(), 1);
    assert_eq!(
        rows(&logs_as(&api, master, "?team_id=t-spend").await).len(),
        1
    );
    let id = newest["request_id"].as_str().unwrap();
    let one = logs_as(&api, master, &format!("?request_id={id}")).await;
    assert_eq!(rows(&one).len(), 1);
    assert_eq!(
        rows(&logs_as(&api, master, "?status=failure").await).len(),
        0
    );
    assert_eq!(rows(&logs_as(&api, master, "?model=mock/y").await).len(), 0);
    let old = logs_as(&api, master, "?start_date=2000-01-01&end_date=2000-01-31").await;
    assert!(rows(&old).is_empty());
    let since = logs_as(&api, master, "?start_date=2000-01-01").await;
    assert_eq!(rows(&since).len(), 4);
    for bad in [
        "?start_date=yesterday",
        "?page_size=1001",
        "?page=0",
        "?status=maybe",
    ] {
        let (s, out) = api.get(&format!("/spend/logs{bad}")).await;
        assert_eq!(s, 400, "{bad}: {out}");
    }

    // Pages: newest first, with totals.
    let p1 = logs_as(&api, master, "?page=1&page_size=3").await;
    assert_eq!(
        (p1["total"].as_u64(), p1["total_pages"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(p1["data"].as_array().unwrap().len(), 3);
    assert_eq!(p1["data"][0]["request_id"], newest["request_id"]);
    let p2 = logs_as(&api, master, "?page=2&page_size=3").await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 1);
    assert_eq!(p2["data"][0]["request_id"], rows(&all)[3]["request_id"]);

    // Scope: a user sees its own rows; asking for others' answers nothing, not an error.
    let mine = logs_as(&api, &alice, "").await;
    assert_eq!(rows(&mine).len(), 2);
    assert!(rows(&logs_as(&api, &alice, "?user_id=bob").await).is_empty());
    let others_key = format!("?api_key={}", sha256_hex(&bob));
    assert!(rows(&logs_as(&api, &alice, &others_key).await).is_empty());
    assert!(rows(&logs_as(&api, &alice, "?team_id=t-spend").await).is_empty());
    let paged = logs_as(&api, &alice, "?page=1&page_size=10").await;
    assert_eq!(paged["total"], 2);
    // A team admin sees its team's rows besides its own.
    let bobs = logs_as(&api, &bob, "").await;
    assert_eq!(rows(&bobs).len(), 2);
    assert_eq!(
        rows(&logs_as(&api, &bob, "?team_id=t-spend").await).len(),
        1
    );
    // A key of no user sees what it spent itself.
    let own = logs_as(&api, &team_key, "").await;
    assert_eq!(rows(&own).len(), 1);
    assert_eq!(rows(&own)[0]["api_key"], sha256_hex(&team_key));
    // A viewer sees everything.
    let viewer = user_key(&api, "vera", "proxy_admin_viewer").await;
    assert_eq!(rows(&logs_as(&api, &viewer, "").await).len(), 4);

    // An org admin sees the rows of teams in its organisation, and nobody else's.
    let (s, out) = api
        .post(
            "/organization/new",
            json!({"organization_id": "o1", "organization_alias": "O1"}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let olga = user_key(&api, "olga", "internal_user").await;
    let (s, out) = api
        .post(
            "/organization/member_add",
            json!({"organization_id": "o1", "member": {"user_id": "olga", "role": "org_admin"}}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let (s, out) = api
        .post(
            "/team/new",
            json!({"team_id": "t-org", "organization_id": "o1"}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let org_key = secret_of(&api.generate(json!({"team_id": "t-org"})).await);
    assert_eq!(chat_for(&api, &org_key, None).await.0, 200);
    let flushed = eventually_async(Duration::from_secs(10), || async {
        rows(&logs_as(&api, master, "").await).len() == 5
    })
    .await;
    assert!(flushed);
    let olgas = logs_as(&api, &olga, "").await;
    assert_eq!(rows(&olgas).len(), 1, "{olgas}");
    assert_eq!(rows(&olgas)[0]["organization_id"], "o1");
    assert_eq!(rows(&olgas)[0]["team_id"], "t-org");
    assert!(rows(&logs_as(&api, &olga, "?user_id=alice").await).is_empty());
    assert_eq!(rows(&logs_as(&api, &alice, "").await).len(), 2);
}

async fn explain_as(api: &Api, auth: &str, body: Value) -> (u16, Value) {
    api.post_as(auth, "/access/explain", body).await
}

fn decided(v: &Value) -> (&str, &str) {
    (
        v["decided_by"]["level"]
            .as_str()
            .unwrap_or_else(|| panic!("no decision: {v}")),
        v["checks"].as_array().unwrap().last().unwrap()["check"]
            .as_str()
            .unwrap(),
    )
}

#[tokio::test]
async fn explain_names_the_deciding_level() {
    let api = Api::start();
    let master = crate::harness::MASTER_KEY;
    let narrow = secret_of(&api.generate(json!({"models": ["mock/a"]})).await);

    let (s, out) = explain_as(&api, master, json!({"key": narrow, "model": "mock/a"})).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["allowed"], true, "{out}");
    assert_eq!(out["decided_by"], Value::Null);
    assert_eq!(out["key"], sha256_hex(&narrow));
    assert_eq!(out["route"], "/v1/chat/completions");
    let checks: Vec<(&str, &str, &str)> = out["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["level"].as_str().unwrap(),
                c["check"].as_str().unwrap(),
                c["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        [
            ("key", "status", "pass"),
            ("key", "route", "pass"),
            ("key", "model", "pass"),
            ("proxy", "model_exists", "pass"),
            ("key", "budget", "pass"),
        ]
    );

    // The key's models refuse another model; the token names the key as well as the secret.
    let (s, out) = explain_as(
        &api,
        master,
        json!({"key": sha256_hex(&narrow), "model": "mock/b"}),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["allowed"], false);
    assert_eq!(decided(&out), ("key", "model"));
    assert_eq!(out["decided_by"]["id"], sha256_hex(&narrow));
    assert!(
        out["decided_by"]["rule"]
            .as_str()
            .unwrap()
            .contains("mock/b")
    );

    // A user's block decides, through its key or asked about directly.
    let carol = user_key(&api, "carol", "internal_user").await;
    let (s, _) = api
        .post("/user/update", json!({"user_id": "carol", "blocked": true}))
        .await;
    assert_eq!(s, 200);
    let (_, out) = explain_as(&api, master, json!({"key": carol})).await;
    assert_eq!(decided(&out), ("user", "status"));
    let (_, out) = explain_as(&api, master, json!({"user_id": "carol"})).await;
    assert_eq!(decided(&out), ("user", "status"));
    assert_eq!(out["user_id"], "carol");

    // A blocked team decides for its keys, after the key's own checks passed.
    let (s, out) = api.post("/team/new", json!({"team_id": "t-x"})).await;
    assert_eq!(s, 200, "{out}");
    let team_key = secret_of(&api.generate(json!({"team_id": "t-x"})).await);
    let (_, out) = explain_as(&api, master, json!({"key": team_key})).await;
    assert_eq!(out["allowed"], true, "{out}");
    let (s, out) = api.post("/team/block", json!({"team_id": "t-x"})).await;
    assert_eq!(s, 200, "{out}");
    let (_, out) = explain_as(&api, master, json!({"key": team_key})).await;
    assert_eq!(decided(&out), ("team", "status"));
    assert_eq!(out["decided_by"]["id"], "t-x");

    // Each level's rates and parallel slots are listed with it.
    let (s, out) = api
        .post("/team/new", json!({"team_id": "t-rates", "rpm_limit": 600}))
        .await;
    assert_eq!(s, 200, "{out}");
    let rated = secret_of(
        &api.generate(json!({"team_id": "t-rates", "tpm_limit": 1000}))
            .await,
    );
    let (_, out) = explain_as(&api, master, json!({"key": rated})).await;
    assert_eq!(out["allowed"], true, "{out}");
    let rates: Vec<(String, String)> = out["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == "rate_limits")
        .map(|c| {
            (
                c["level"].as_str().unwrap().to_string(),
                c["detail"].to_string(),
            )
        })
        .collect();
    assert_eq!(rates.len(), 2, "{out}");
    assert_eq!(rates[0].0, "key");
    assert!(rates[0].1.contains("tpm_limit 1000"), "{rates:?}");
    assert_eq!(rates[1].0, "team");
    assert!(rates[1].1.contains("rpm_limit 600"), "{rates:?}");

    // A blocked end user, a blocked key, a spent budget, a route the key type refuses.
    let (s, _) = api
        .post("/customer/block", json!({"user_ids": ["bad-actor"]}))
        .await;
    assert_eq!(s, 200);
    let (_, out) = explain_as(
        &api,
        master,
        json!({"key": narrow, "end_user": "bad-actor"}),
    )
    .await;
    assert_eq!(decided(&out), ("end_user", "status"));
    let broke = secret_of(&api.generate(json!({"max_budget": 0.0})).await);
    let (_, out) = explain_as(&api, master, json!({"key": broke, "model": "mock/a"})).await;
    assert_eq!(decided(&out), ("key", "budget"));
    let llm_only = secret_of(&api.generate(json!({"key_type": "llm_api"})).await);
    let (_, out) = explain_as(
        &api,
        master,
        json!({"key": llm_only, "route": "/key/list", "method": "GET"}),
    )
    .await;
    assert_eq!(decided(&out), ("key", "route"));
    let (s, _) = api.post("/key/block", json!({"key": narrow})).await;
    assert_eq!(s, 200);
    let (_, out) = explain_as(&api, master, json!({"key": narrow, "model": "mock/a"})).await;
    assert_eq!(decided(&out), ("key", "status"));
    assert_eq!(out["checks"].as_array().unwrap().len(), 1);

    // An unknown model is refused after every level allowed it.
    let open = secret_of(&api.generate(json!({})).await);
    let (_, out) = explain_as(&api, master, json!({"key": open, "model": "nope"})).await;
    assert_eq!(decided(&out), ("proxy", "model_exists"));

    // Scope: others' keys and users are hidden from a user; its own are explained.
    let dave = user_key(&api, "dave", "internal_user").await;
    let (s, _) = explain_as(&api, &dave, json!({"key": open})).await;
    assert_eq!(s, 404);
    let (s, _) = explain_as(&api, &dave, json!({"user_id": "carol"})).await;
    assert_eq!(s, 404);
    let (s, out) = explain_as(&api, &dave, json!({"key": dave, "model": "mock/a"})).await;
    assert_eq!((s, &out["allowed"]), (200, &json!(true)), "{out}");
    let (s, out) = explain_as(&api, &dave, json!({"user_id": "dave"})).await;
    assert_eq!((s, &out["allowed"]), (200, &json!(true)), "{out}");
    let viewer = user_key(&api, "vince", "proxy_admin_viewer").await;
    let (s, _) = explain_as(&api, &viewer, json!({"key": open})).await;
    assert_eq!(s, 200);

    // Bad requests.
    let (s, _) = explain_as(&api, master, json!({"key": "sk-never-issued-0000000"})).await;
    assert_eq!(s, 404);
    let (s, _) = explain_as(&api, master, json!({"user_id": "nobody"})).await;
    assert_eq!(s, 404);
    let (s, out) = explain_as(&api, master, json!({"model": "mock/a"})).await;
    assert_eq!((s, &out["error"]["param"]), (400, &json!("key")), "{out}");
    let (s, _) = explain_as(&api, master, json!({"key": open, "user_id": "dave"})).await;
    assert_eq!(s, 400);
    let (s, out) = explain_as(&api, master, json!({"key": open, "route": "v1/x"})).await;
    assert_eq!((s, &out["error"]["param"]), (400, &json!("route")), "{out}");
}
