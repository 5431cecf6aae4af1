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

#[tokio::test]
async fn a_change_names_its_request_and_open_ranges_match_everything() {
    let api = Api::start();
    let resp = api
        .http
        .post(api.gw.url("/team/new"))
        .bearer_auth(crate::harness::MASTER_KEY)
        .json(&json!({"team_id": "traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .expect("management answers carry x-request-id");
    // The client finds its change by the id it got back.
    let (s, found) = api
        .get(&format!("/audit/search?q=request:{request_id}"))
        .await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["entries"][0]["object_id"], "traced");

    // A range open at both ends is every entry (it used to crash the query).
    for q in [
        "seq:%5B*%20TO%20*%5D",
        "time:%7B*%20TO%20*%7D",
        "-seq:%5B*%20TO%20*%5D",
    ] {
        let (s, out) = api.get(&format!("/audit/search?q={q}")).await;
        assert_eq!(s, 200, "{q}: {out}");
        let expected = if q.starts_with('-') { 0 } else { 1 };
        assert_eq!(out["total"], expected, "{q}: {out}");
    }
}

/// An organisation admin reads the entries about its members, but a membership change another
/// organisation's admin makes to a shared user is that organisation's business.
#[tokio::test]
async fn membership_changes_elsewhere_are_not_read_by_a_shared_users_other_org() {
    let api = Api::start();
    for (path, body) in [
        (
            "/organization/new",
            json!({"organization_id": "A", "organization_alias": "A"}),
        ),
        (
            "/organization/new",
            json!({"organization_id": "B", "organization_alias": "B"}),
        ),
        (
            "/team/new",
            json!({"team_id": "TA", "organization_id": "A"}),
        ),
        (
            "/team/new",
            json!({"team_id": "TB", "organization_id": "B"}),
        ),
        ("/user/new", json!({"user_id": "shared"})),
        ("/user/new", json!({"user_id": "admin-a"})),
        (
            "/organization/member_add",
            json!({"organization_id": "A", "member": [{"user_id": "admin-a", "role": "org_admin"}, {"user_id": "shared", "role": "internal_user"}]}),
        ),
        (
            "/organization/member_add",
            json!({"organization_id": "B", "member": {"user_id": "shared", "role": "internal_user"}}),
        ),
        (
            "/team/member_add",
            json!({"team_id": "TA", "member": {"user_id": "shared", "role": "user"}}),
        ),
        (
            "/team/member_add",
            json!({"team_id": "TB", "member": {"user_id": "shared", "role": "user"}}),
        ),
    ] {
        let (s, out) = api.post(path, body).await;
        assert_eq!(s, 200, "{path}: {out}");
    }
    let (s, key) = api
        .post("/key/generate", json!({"user_id": "admin-a"}))
        .await;
    assert_eq!(s, 200, "{key}");
    let admin_a = secret_of(&key);
    let (s, found) = api
        .get_as(&admin_a, "/audit/search?q=object:shared&limit=100")
        .await;
    assert_eq!(s, 200, "{found}");
    let entries = found["entries"].as_array().unwrap();
    assert!(!entries.is_empty(), "{found}");
    for e in entries {
        // Nothing about team TB or organisation B: not the entry, not inside the values.
        let scope = e["scope"].as_array().unwrap();
        assert!(scope.iter().any(|o| o == "A"), "{e}");
        let text = e.to_string();
        assert!(!text.contains("\"TB\"") && !text.contains("\"B\""), "{e}");
    }
}
