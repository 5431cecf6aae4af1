//! `/customer/*` end to end: end users created, read, changed, blocked and deleted by proxy
//! admins only; a blocked end user's requests refused at once and served again after
//! unblocking; an end user's budget enforced on the requests made for it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{Options, eventually_async};
use crate::keys::{Api, secret_of};
use serde_json::{Value, json};
use std::time::Duration;

/// The mock provider with prices, so calls cost something, and a fast spend flush.
pub const PRICED: &str = "model_list:\n  - model_name: \"mock/*\"\n    litellm_params:\n      model: \"mock/*\"\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.002\ngeneral_settings:\n  spend_flush_interval: 0.1\n";

/// POST /v1/chat/completions for `end_user` (in the body's `user`) with `secret`.
pub async fn chat_for(api: &Api, secret: &str, end_user: Option<&str>) -> (u16, Value) {
    let mut body = json!({"model": "mock/x", "messages": [{"role": "user", "content": "hello"}]});
    if let Some(u) = end_user {
        body["user"] = json!(u);
    }
    api.post_as(secret, "/v1/chat/completions", body).await
}

/// A user with `role`, and the secret of its auto-created key.
pub async fn user_key(api: &Api, user_id: &str, role: &str) -> String {
    let (s, out) = api
        .post("/user/new", json!({"user_id": user_id, "user_role": role}))
        .await;
    assert_eq!(s, 200, "{out}");
    secret_of(&out)
}

#[tokio::test]
async fn customer_crud_scope_and_block() {
    let api = Api::start();
    let (s, out) = api
        .post(
            "/customer/new",
            json!({"user_id": "cust-1", "alias": "Acme", "max_budget": 5.0,
                   "budget_duration": "30d", "rpm_limit": 10, "metadata": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["user_id"], "cust-1");
    assert_eq!(out["alias"], "Acme");
    assert_eq!(out["blocked"], false);
    assert_eq!(out["max_budget"], 5.0);
    assert_eq!(out["litellm_budget_table"]["budget_duration"], "30d");
    assert_eq!(out["metadata"]["tier"], "gold");
    assert_eq!(out["spend"], 0.0);

    let (s, out) = api
        .post("/customer/new", json!({"user_id": "cust-1"}))
        .await;
    assert_eq!(s, 409, "{out}");
    let (s, out) = api.post("/customer/new", json!({"alias": "x"})).await;
    assert_eq!(
        (s, &out["error"]["param"]),
        (400, &json!("user_id")),
        "{out}"
    );
    let (s, out) = api
        .post("/customer/new", json!({"user_id": "c2", "max_budget": -1}))
        .await;
    assert_eq!(
        (s, &out["error"]["param"]),
        (400, &json!("max_budget")),
        "{out}"
    );
    let (s, out) = api
        .post(
            "/customer/new",
            json!({"user_id": "c2", "budget_duration": "often"}),
        )
        .await;
    assert_eq!(
        (s, &out["error"]["param"]),
        (400, &json!("budget_duration")),
        "{out}"
    );

    let (s, out) = api.get("/customer/info?end_user_id=cust-1").await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["rpm_limit"], 10);
    let (s, _) = api.get("/customer/info?end_user_id=nobody").await;
    assert_eq!(s, 404);
    let (s, _) = api.get("/customer/info").await;
    assert_eq!(s, 400);

    // Merge-patch: omitted fields keep their value, null clears.
    let (s, out) = api
        .post(
            "/customer/update",
            json!({"user_id": "cust-1", "alias": "Acme Corp", "max_budget": null}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["alias"], "Acme Corp");
    assert_eq!(out["max_budget"], Value::Null);
    assert_eq!(out["rpm_limit"], 10);
    let (s, _) = api
        .post(
            "/customer/update",
            json!({"user_id": "nobody", "alias": "x"}),
        )
        .await;
    assert_eq!(s, 404);

    let (s, list) = api.get("/customer/list").await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cust-1"]);

    // An internal user sees no end users and changes none; a viewer reads but writes nothing.
    let user = user_key(&api, "ivy", "internal_user").await;
    let viewer = user_key(&api, "vic", "proxy_admin_viewer").await;
    let (s, _) = api.get_as(&user, "/customer/info?end_user_id=cust-1").await;
    assert_eq!(s, 404);
    let (s, out) = api.get_as(&user, "/customer/list").await;
    assert_eq!((s, out), (200, json!([])));
    let (s, out) = api
        .get_as(&viewer, "/customer/info?end_user_id=cust-1")
        .await;
    assert_eq!((s, &out["user_id"]), (200, &json!("cust-1")));
    let (s, out) = api.get_as(&viewer, "/customer/list").await;
    assert_eq!((s, out.as_array().map(Vec::len)), (200, Some(1)));
    for who in [&user, &viewer] {
        for (path, body) in [
            ("/customer/new", json!({"user_id": "c3"})),
            (
                "/customer/update",
                json!({"user_id": "cust-1", "alias": "x"}),
            ),
            ("/customer/block", json!({"user_ids": ["cust-1"]})),
            ("/customer/unblock", json!({"user_ids": ["cust-1"]})),
            ("/customer/delete", json!({"user_ids": ["cust-1"]})),
        ] {
            let (s, out) = api.post_as(who, path, body).await;
            assert_eq!(s, 403, "{path}: {out}");
        }
    }

    // Blocking refuses requests made for the end user at once, by body or by header.
    let key = secret_of(&api.generate(json!({})).await);
    assert_eq!(chat_for(&api, &key, Some("cust-1")).await.0, 200);
    let (s, out) = api
        .post("/customer/block", json!({"user_ids": ["cust-1"]}))
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["blocked_users"][0]["blocked"], true);
    let (s, out) = chat_for(&api, &key, Some("cust-1")).await;
    assert_eq!(s, 401, "{out}");
    let header_call = api
        .http
        .post(api.gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-litellm-end-user-id", "cust-1")
        .json(&json!({"model": "mock/x", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(header_call.status(), 401);
    // Other end users, and calls for nobody, are unaffected.
    assert_eq!(chat_for(&api, &key, Some("cust-2")).await.0, 200);
    assert_eq!(chat_for(&api, &key, None).await.0, 200);
    let (s, out) = api
        .post("/customer/unblock", json!({"user_ids": ["cust-1"]}))
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["unblocked_users"][0]["blocked"], false);
    assert_eq!(chat_for(&api, &key, Some("cust-1")).await.0, 200);

    // Blocking an id not seen yet creates it blocked; unblocking an unknown one is a 404.
    let (s, _) = api
        .post("/customer/block", json!({"user_ids": ["spammer"]}))
        .await;
    assert_eq!(s, 200);
    let (s, out) = api.get("/customer/info?end_user_id=spammer").await;
    assert_eq!((s, &out["blocked"]), (200, &json!(true)));
    assert_eq!(chat_for(&api, &key, Some("spammer")).await.0, 401);
    let (s, _) = api
        .post("/customer/unblock", json!({"user_ids": ["ghost"]}))
        .await;
    assert_eq!(s, 404);
    let (s, _) = api.post("/customer/block", json!({"user_ids": []})).await;
    assert_eq!(s, 400);

    // Deleting is all or nothing.
    let (s, _) = api
        .post("/customer/delete", json!({"user_ids": ["cust-1", "ghost"]}))
        .await;
    assert_eq!(s, 404);
    assert_eq!(api.get("/customer/info?end_user_id=cust-1").await.0, 200);
    let (s, out) = api
        .post(
            "/customer/delete",
            json!({"user_ids": ["cust-1", "spammer"]}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["deleted_customers"], json!(["cust-1", "spammer"]));
    assert_eq!(api.get("/customer/info?end_user_id=cust-1").await.0, 404);
    // A deleted blocked end user is no longer refused.
    assert_eq!(chat_for(&api, &key, Some("spammer")).await.0, 200);
    // LiteLLM's older names still answer.
    let (s, out) = api.get("/end_user/list").await;
    assert_eq!((s, out), (200, json!([])));
}

#[tokio::test]
async fn customer_budget_is_enforced() {
    let api = Api::on(Options::new().config(PRICED).start());
    let (s, out) = api
        .post(
            "/customer/new",
            json!({"user_id": "thrifty", "max_budget": 0.000001}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let key = secret_of(&api.generate(json!({})).await);
    // The first call finds the budget untouched; what it costs uses the budget up.
    let (s, out) = chat_for(&api, &key, Some("thrifty")).await;
    assert_eq!(s, 200, "{out}");
    let refused = eventually_async(Duration::from_secs(10), || async {
        let (s, out) = chat_for(&api, &key, Some("thrifty")).await;
        s == 400 && out["error"]["type"] == "budget_exceeded"
    })
    .await;
    assert!(refused, "the end user's budget was never enforced");
    let (s, out) = api.get("/customer/info?end_user_id=thrifty").await;
    assert_eq!(s, 200);
    assert!(out["spend"].as_f64().unwrap() > 0.000001, "{out}");
    // Only that end user is out of budget.
    assert_eq!(chat_for(&api, &key, Some("other")).await.0, 200);
    // Raising its budget lets it through again.
    let (s, _) = api
        .post(
            "/customer/update",
            json!({"user_id": "thrifty", "max_budget": 100.0}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(chat_for(&api, &key, Some("thrifty")).await.0, 200);
}
