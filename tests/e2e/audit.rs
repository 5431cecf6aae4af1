//! The audit trail as LiteLLM's `/audit` serves it: every administrative change listed with who,
//! what, before and after, filterable and paged; single entries; the chain head; nothing
//! readable by callers below proxy admin viewers, and no secret in any entry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::keys::{Api, secret_of, sha256_hex};
use serde_json::json;

#[tokio::test]
async fn audit_lists_every_change_with_its_actor_and_values() {
    let api = Api::start();
    let (s, _) = api
        .post("/team/new", json!({"team_id": "t1", "max_budget": 5}))
        .await;
    assert_eq!(s, 200);
    let (s, user) = api
        .post(
            "/user/new",
            json!({"user_id": "u1", "teams": ["t1"], "password": "a-secret-password"}),
        )
        .await;
    assert_eq!(s, 200);
    let user_key = secret_of(&user);
    // The user renames its own key: an entry attributed to the user and that key.
    let (s, _) = api
        .post_as(
            &user_key,
            "/key/update",
            json!({"key": user_key, "key_alias": "mine"}),
        )
        .await;
    assert_eq!(s, 200);

    let (s, all) = api.get("/audit?page_size=100").await;
    assert_eq!(s, 200, "{all}");
    let logs = all["audit_logs"].as_array().unwrap();
    assert_eq!(all["total"].as_u64().unwrap() as usize, logs.len());
    assert!(logs.len() >= 4, "{all}");
    // Newest first; the newest is the user's own change.
    let newest = &logs[0];
    assert_eq!(newest["action"], "updated");
    assert_eq!(newest["table_name"], "LiteLLM_VerificationToken");
    assert_eq!(newest["changed_by"], "u1");
    assert_eq!(newest["changed_by_api_key"], sha256_hex(&user_key).as_str());
    assert_eq!(newest["updated_values"]["key_alias"], "mine");
    assert!(newest["before_value"]["key_alias"].is_null());
    // No secret and no password hash anywhere in the log.
    let text = all.to_string();
    assert!(
        !text.contains(&user_key)
            && !text.contains("$argon2")
            && !text.contains("a-secret-password")
    );

    // Filters, order, paging.
    let (_, teams) = api
        .get("/audit?table_name=LiteLLM_TeamTable&page_size=100")
        .await;
    let team_logs = teams["audit_logs"].as_array().unwrap();
    assert!(!team_logs.is_empty());
    assert!(
        team_logs
            .iter()
            .all(|l| l["table_name"] == "LiteLLM_TeamTable")
    );
    let (_, by_key) = api
        .get(&format!("/audit?changed_by_api_key={user_key}"))
        .await;
    assert_eq!(by_key["total"], 1, "{by_key}");
    let (_, created) = api.get("/audit?action=created&object_id=u1").await;
    assert_eq!(created["total"], 1, "{created}");
    let (_, asc) = api.get("/audit?sort_order=asc&page_size=1").await;
    assert_eq!(asc["audit_logs"][0]["id"], "1");
    assert_eq!(asc["total_pages"], all["total"]);
    let (_, capped) = api.get("/audit?page_size=100000").await;
    assert_eq!(capped["page_size"], 1000);
    let (s, out) = api
        .get("/audit?start_date=2030-01-02&end_date=2030-01-01")
        .await;
    assert_eq!(s, 400, "{out}");
    let (s, _) = api.get("/audit?sort_order=sideways").await;
    assert_eq!(s, 400);

    // One entry by id, and the chain head naming the newest.
    let id = newest["id"].as_str().unwrap();
    let (s, one) = api.get(&format!("/audit/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(&one, newest);
    let (s, head) = api.get("/audit/head").await;
    assert_eq!(s, 200);
    assert_eq!(head["seq"].to_string(), id);
    assert_eq!(head["hash"].as_str().unwrap().len(), 64);
    let (s, _) = api.get("/audit/999999").await;
    assert_eq!(s, 404);

    // A viewer reads it; an internal user sees none of it.
    let (_, viewer) = api
        .post(
            "/user/new",
            json!({"user_id": "v", "user_role": "proxy_admin_viewer"}),
        )
        .await;
    let (s, seen) = api.get_as(&secret_of(&viewer), "/audit").await;
    assert_eq!(s, 200);
    assert!(seen["total"].as_u64().unwrap() > 0);
    let (s, none) = api.get_as(&user_key, "/audit").await;
    assert_eq!(s, 200);
    assert_eq!(none["total"], 0);
    assert_eq!(api.get_as(&user_key, &format!("/audit/{id}")).await.0, 404);
    assert_eq!(api.get_as(&user_key, "/audit/head").await.0, 403);
}
