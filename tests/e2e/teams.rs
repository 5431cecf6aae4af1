//! The LiteLLM-compatible team API end to end: `/team/new`, `/team/update`, `/team/delete`,
//! `/team/info`, `/team/list`, membership on both sides, blocking, team models, and who may do
//! which of these (team admins, members, outsiders, organisation admins).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::keys::{Api, secret_of};
use serde_json::{Value, json};

/// A chat completion with `secret`: the status and the JSON answer.
async fn chat(api: &Api, secret: &str, model: &str) -> (u16, Value) {
    let resp = api
        .http
        .post(api.gw.url("/v1/chat/completions"))
        .bearer_auth(secret)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Creates a user without a key (asserting success).
async fn new_user(api: &Api, id: &str, email: Option<&str>) {
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": id, "user_email": email, "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "user {id}: {out}");
}

/// Creates a team (asserting success) and returns its view.
async fn new_team(api: &Api, body: Value) -> Value {
    let (status, out) = api.post("/team/new", body.clone()).await;
    assert_eq!(status, 200, "team {body}: {out}");
    out
}

/// The team ids `/user/info` shows for a user.
async fn teams_of(api: &Api, user: &str) -> Vec<String> {
    let (status, out) = api.get(&format!("/user/info?user_id={user}")).await;
    assert_eq!(status, 200, "{out}");
    out["user_info"]["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn create_update_info_list_delete() {
    let api = Api::start();
    let out = new_team(
        &api,
        json!({
            "team_id": "t1", "team_alias": "Team One", "models": ["mock/*"],
            "max_budget": 10.5, "rpm_limit": 100, "budget_duration": "30d",
            "metadata": {"cost_center": "42"},
        }),
    )
    .await;
    assert_eq!(out["team_id"], "t1");
    assert_eq!(out["team_alias"], "Team One");
    assert_eq!(out["models"], json!(["mock/*"]));
    assert_eq!(out["max_budget"], 10.5);
    assert_eq!(out["rpm_limit"], 100);
    assert_eq!(out["budget_duration"], "30d");
    assert_eq!(out["metadata"]["cost_center"], "42");
    assert_eq!(out["blocked"], false);
    assert_eq!(out["members_with_roles"], json!([]));

    // A generated id when none is given; a taken id is a conflict.
    let other = new_team(&api, json!({"team_alias": "generated"})).await;
    assert!(other["team_id"].as_str().is_some_and(|t| t.len() >= 32));
    let (status, body) = api.post("/team/new", json!({"team_id": "t1"})).await;
    assert_eq!(status, 409, "{body}");

    // Update is a merge patch: omitted fields keep their value, null clears.
    let (status, out) = api
        .post(
            "/team/update",
            json!({"team_id": "t1", "team_alias": "Renamed", "rpm_limit": null, "tpm_limit": 5}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["team_alias"], "Renamed");
    assert_eq!(out["rpm_limit"], Value::Null);
    assert_eq!(out["tpm_limit"], 5);
    assert_eq!(out["max_budget"], 10.5);
    assert_eq!(out["models"], json!(["mock/*"]));

    let key = api.generate(json!({"team_id": "t1"})).await;
    let (status, info) = api.get("/team/info?team_id=t1").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["team_id"], "t1");
    assert_eq!(info["team_info"]["team_alias"], "Renamed");
    assert_eq!(info["team_info"]["spend"], 0.0);
    assert_eq!(info["keys"].as_array().unwrap().len(), 1);
    assert_eq!(info["keys"][0]["token"], key["token"]);
    assert_eq!(info["team_memberships"], json!([]));

    let (status, list) = api.get("/team/list").await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["team_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"t1"));
    let (_, list) = api.get("/team/list?organization_id=nowhere").await;
    assert_eq!(list, json!([]));

    let (status, out) = api
        .post("/team/delete", json!({"team_ids": [other["team_id"]]}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["deleted_teams"], json!([other["team_id"]]));
    let (status, _) = api
        .get(&format!(
            "/team/info?team_id={}",
            other["team_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 404);
    // All or nothing: an unknown id deletes none of the others.
    let (status, body) = api
        .post(
            "/team/delete",
            json!({"team_ids": ["t1", "missing"], "cascade": true}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(api.get("/team/info?team_id=t1").await.0, 200);
}

#[tokio::test]
async fn membership_changes_show_on_both_sides() {
    let api = Api::start();
    new_user(&api, "alice", None).await;
    new_user(&api, "bob", Some("bob@example.com")).await;
    let out = new_team(
        &api,
        json!({"team_id": "t", "members_with_roles": [{"user_id": "alice", "role": "admin"}]}),
    )
    .await;
    assert_eq!(out["members_with_roles"][0]["user_id"], "alice");
    assert_eq!(out["members_with_roles"][0]["role"], "admin");
    assert_eq!(teams_of(&api, "alice").await, vec!["t"]);

    // By email, with a budget inside the team.
    let (status, out) = api
        .post(
            "/team/member_add",
            json!({"team_id": "t", "member": {"user_email": "bob@example.com", "role": "user"},
                   "max_budget_in_team": 3.0}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["members_with_roles"].as_array().unwrap().len(), 2);
    assert_eq!(out["updated_users"][0]["user_id"], "bob");
    assert_eq!(teams_of(&api, "bob").await, vec!["t"]);
    let (status, body) = api
        .post(
            "/team/member_add",
            json!({"team_id": "t", "member": {"user_id": "bob"}}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(message(&body).contains("already a member"), "{body}");
    let (status, body) = api
        .post(
            "/team/member_add",
            json!({"team_id": "t", "member": [{"user_id": "nobody"}]}),
        )
        .await;
    assert_eq!(status, 404, "{body}");

    let (status, out) = api
        .post(
            "/team/member_update",
            json!({"team_id": "t", "user_id": "bob", "role": "admin", "max_budget_in_team": 7.5,
                   "rpm_limit": 9}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["role"], "admin");
    assert_eq!(out["max_budget_in_team"], 7.5);
    assert_eq!(out["rpm_limit"], 9);
    let (_, info) = api.get("/team/info?team_id=t").await;
    let bob = info["team_memberships"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == "bob")
        .unwrap()
        .clone();
    assert_eq!(bob["role"], "admin");
    assert_eq!(bob["max_budget_in_team"], 7.5);
    assert_eq!(bob["spend"], 0.0);

    // A member's team key stops working once the member leaves, by itself.
    let key = secret_of(
        &api.generate(json!({"team_id": "t", "user_id": "bob"}))
            .await,
    );
    assert_eq!(chat(&api, &key, "mock/x").await.0, 200);
    let (status, out) = api
        .post(
            "/team/member_delete",
            json!({"team_id": "t", "user_email": "bob@example.com"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["members_with_roles"].as_array().unwrap().len(), 1);
    assert!(teams_of(&api, "bob").await.is_empty());
    assert_eq!(chat(&api, &key, "mock/x").await.0, 401);
    let (status, body) = api
        .post(
            "/team/member_delete",
            json!({"team_id": "t", "user_id": "bob"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(message(&body).contains("not a member"), "{body}");

    // Deleting the team takes it off its members' records.
    let (status, body) = api
        .post("/team/delete", json!({"team_ids": ["t"], "cascade": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(teams_of(&api, "alice").await.is_empty());
}

#[tokio::test]
async fn deleting_a_team_with_keys_needs_cascade() {
    let api = Api::start();
    new_team(&api, json!({"team_id": "t"})).await;
    let k1 = secret_of(&api.generate(json!({"team_id": "t"})).await);
    let k2 = secret_of(&api.generate(json!({"team_id": "t"})).await);
    let (status, body) = api.post("/team/delete", json!({"team_ids": ["t"]})).await;
    assert_eq!(status, 409, "{body}");
    let msg = message(&body);
    assert!(
        msg.contains("2 key(s)") && msg.contains("\"cascade\": true"),
        "{msg}"
    );
    assert_eq!(chat(&api, &k1, "mock/x").await.0, 200);

    let (status, body) = api
        .post("/team/delete", json!({"team_ids": ["t"], "cascade": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    for k in [&k1, &k2] {
        assert_eq!(chat(&api, k, "mock/x").await.0, 401);
    }
    let (status, _) = api.get("/team/info?team_id=t").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_blocked_team_s_keys_are_refused_until_unblocked() {
    let api = Api::start();
    new_team(&api, json!({"team_id": "t"})).await;
    let key = secret_of(&api.generate(json!({"team_id": "t"})).await);
    assert_eq!(chat(&api, &key, "mock/x").await.0, 200);
    let (status, out) = api.post("/team/block", json!({"team_id": "t"})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["blocked"], true);
    let (status, body) = chat(&api, &key, "mock/x").await;
    assert_eq!(status, 401, "{body}");
    let (_, info) = api.get("/team/info?team_id=t").await;
    assert_eq!(info["team_info"]["blocked"], true);
    let (status, out) = api.post("/team/unblock", json!({"team_id": "t"})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["blocked"], false);
    assert_eq!(chat(&api, &key, "mock/x").await.0, 200);
    let (status, _) = api.post("/team/block", json!({"team_id": "ghost"})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn team_models_narrow_what_its_keys_may_call() {
    let api = Api::start();
    new_team(&api, json!({"team_id": "t", "models": ["mock/a"]})).await;
    let key = secret_of(&api.generate(json!({"team_id": "t"})).await);
    assert_eq!(chat(&api, &key, "mock/a").await.0, 200);
    let (status, body) = chat(&api, &key, "mock/b").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_not_allowed", "{body}");

    let (status, out) = api
        .post(
            "/team/model/add",
            json!({"team_id": "t", "models": ["mock/b", "mock/a"]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["models"], json!(["mock/a", "mock/b"]));
    assert_eq!(chat(&api, &key, "mock/b").await.0, 200);

    let (status, out) = api
        .post(
            "/team/model/delete",
            json!({"team_id": "t", "models": ["mock/a"]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["models"], json!(["mock/b"]));
    let (status, body) = chat(&api, &key, "mock/a").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_not_allowed");
    // Removing the last model would mean "all models": refused.
    let (status, body) = api
        .post(
            "/team/model/delete",
            json!({"team_id": "t", "models": ["mock/b"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "models");
    assert_eq!(chat(&api, &key, "mock/a").await.0, 403);
    let (status, body) = api
        .post("/team/model/add", json!({"team_id": "t", "models": []}))
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn bad_input_is_400_or_404_naming_the_field() {
    let api = Api::start();
    new_team(&api, json!({"team_id": "t"})).await;
    for (path, body, param) in [
        ("/team/new", json!({"max_budget": -1}), "max_budget"),
        ("/team/new", json!({"team_id": 5}), "team_id"),
        (
            "/team/new",
            json!({"soft_budget": 5, "max_budget": 1}),
            "soft_budget",
        ),
        (
            "/team/new",
            json!({"budget_duration": "forever"}),
            "budget_duration",
        ),
        ("/team/new", json!({"models": "mock/*"}), "models"),
        (
            "/team/new",
            json!({"members_with_roles": [{"user_id": "u", "role": "owner"}]}),
            "members_with_roles.role",
        ),
        ("/team/update", json!({"team_alias": "x"}), "team_id"),
        (
            "/team/update",
            json!({"team_id": "t", "max_budget": -2}),
            "max_budget",
        ),
        ("/team/delete", json!({}), "team_ids"),
        ("/team/member_add", json!({"team_id": "t"}), "member"),
        (
            "/team/member_add",
            json!({"team_id": "t", "member": {"user_id": "u", "role": "boss"}}),
            "member.role",
        ),
        (
            "/team/member_update",
            json!({"team_id": "t", "user_id": "u", "role": "x"}),
            "role",
        ),
        ("/team/member_delete", json!({"team_id": "t"}), "user_id"),
        ("/team/block", json!({}), "team_id"),
        ("/team/model/add", json!({"team_id": "t"}), "models"),
    ] {
        let (status, out) = api.post(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {out}");
        assert_eq!(out["error"]["param"], param, "{path} {body}: {out}");
        assert!(!message(&out).is_empty());
    }
    let (status, out) = api.get("/team/info").await;
    assert_eq!(status, 400, "{out}");
    assert_eq!(out["error"]["param"], "team_id");
    let (status, out) = api
        .post("/team/new", json!({"organization_id": "no-such-org"}))
        .await;
    assert_eq!(status, 404, "{out}");
    assert!(message(&out).contains("no-such-org"), "{out}");
    let (status, out) = api
        .post(
            "/team/update",
            json!({"team_id": "nope", "team_alias": "x"}),
        )
        .await;
    assert_eq!(status, 404, "{out}");
    let (status, _) = api.get("/team/info?team_id=nope").await;
    assert_eq!(status, 404);
    // Nothing half-made by the refused requests.
    let (_, list) = api.get("/team/list").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn team_admins_members_and_outsiders() {
    let api = Api::start();
    for u in ["admin", "member", "outsider", "extra"] {
        new_user(&api, u, None).await;
    }
    new_team(
        &api,
        json!({"team_id": "t", "members_with_roles": [
        {"user_id": "admin", "role": "admin"}, {"user_id": "member", "role": "user"}]}),
    )
    .await;
    new_team(&api, json!({"team_id": "other"})).await;
    let key = |u: &str| json!({"user_id": u});
    let admin = secret_of(&api.generate(key("admin")).await);
    let member = secret_of(&api.generate(key("member")).await);
    let outsider = secret_of(&api.generate(key("outsider")).await);

    // The team admin manages alias, metadata and members, but not budgets, models or blocks.
    let (status, out) = api
        .post_as(
            &admin,
            "/team/update",
            json!({"team_id": "t", "team_alias": "mine"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    for (path, body) in [
        ("/team/update", json!({"team_id": "t", "max_budget": 100})),
        ("/team/block", json!({"team_id": "t"})),
        (
            "/team/model/add",
            json!({"team_id": "t", "models": ["mock/*"]}),
        ),
        ("/team/delete", json!({"team_ids": ["t"]})),
    ] {
        let (status, out) = api.post_as(&admin, path, body).await;
        assert_eq!(status, 403, "{path}: {out}");
    }
    // Members are added only from among the users the admin can see.
    let (status, out) = api
        .post_as(
            &admin,
            "/team/member_add",
            json!({"team_id": "t", "member": {"user_id": "extra"}}),
        )
        .await;
    assert_eq!(status, 404, "{out}");
    // Roles are the team admin's to set; members' budgets and limits come from above.
    let (status, out) = api
        .post_as(
            &admin,
            "/team/member_update",
            json!({"team_id": "t", "user_id": "member", "role": "user"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = api
        .post_as(
            &admin,
            "/team/member_update",
            json!({"team_id": "t", "user_id": "member", "tpm_limit": 10}),
        )
        .await;
    assert_eq!(status, 403, "{out}");

    // A plain member reads but changes nothing.
    assert_eq!(api.get_as(&member, "/team/info?team_id=t").await.0, 200);
    let (status, out) = api
        .post_as(
            &member,
            "/team/update",
            json!({"team_id": "t", "team_alias": "x"}),
        )
        .await;
    assert_eq!(status, 403, "{out}");
    let (status, out) = api
        .post_as(
            &member,
            "/team/member_delete",
            json!({"team_id": "t", "user_id": "admin"}),
        )
        .await;
    assert_eq!(status, 403, "{out}");

    // Outsiders see nothing: 404, never 403, and empty lists.
    let (status, _) = api.get_as(&outsider, "/team/info?team_id=t").await;
    assert_eq!(status, 404);
    let (status, out) = api
        .post_as(
            &outsider,
            "/team/update",
            json!({"team_id": "t", "team_alias": "x"}),
        )
        .await;
    assert_eq!(status, 404, "{out}");
    let (status, list) = api.get_as(&outsider, "/team/list").await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([]));
    let (_, list) = api.get_as(&member, "/team/list").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["team_id"], "t");
    // Only proxy admins create teams outside any organisation.
    let (status, out) = api
        .post_as(&admin, "/team/new", json!({"team_id": "n"}))
        .await;
    assert_eq!(status, 403, "{out}");
}

#[tokio::test]
async fn org_admins_govern_teams_in_their_organization() {
    let api = Api::start();
    let (status, out) = api
        .post(
            "/organization/new",
            json!({"organization_id": "acme", "organization_alias": "Acme", "models": ["mock/*"]}),
        )
        .await;
    if status == 404 || status == 405 {
        eprintln!("skipped: /organization/new is not served ({status}: {out})");
        return;
    }
    assert_eq!(status, 200, "{out}");
    let (status, out) = api
        .post(
            "/organization/new",
            json!({"organization_id": "other", "organization_alias": "Other"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    new_user(&api, "boss", None).await;
    new_user(&api, "worker", None).await;
    new_user(&api, "stranger", None).await;
    let (status, out) = api
        .post(
            "/organization/member_add",
            json!({"organization_id": "acme", "member": [
                {"user_id": "boss", "role": "org_admin"}, {"user_id": "worker", "role": "internal_user"}]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let boss = secret_of(&api.generate(json!({"user_id": "boss"})).await);

    let (status, out) = api
        .post_as(
            &boss,
            "/team/new",
            json!({"team_id": "ops", "organization_id": "acme", "models": ["mock/a"],
                   "members_with_roles": [{"user_id": "worker", "role": "admin"}]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(teams_of(&api, "worker").await, vec!["ops"]);
    for (body, want) in [
        // Models the organisation does not have.
        (
            json!({"organization_id": "acme", "models": ["gpt-4o-mini"]}),
            403,
        ),
        // No organisation at all.
        (json!({"team_id": "loose"}), 403),
        // An organisation the caller does not see.
        (json!({"organization_id": "other"}), 404),
        // A user the caller cannot see.
        (
            json!({"organization_id": "acme", "members_with_roles": [{"user_id": "stranger"}]}),
            404,
        ),
    ] {
        let (status, out) = api.post_as(&boss, "/team/new", body.clone()).await;
        assert_eq!(status, want, "{body}: {out}");
    }
    // Governance fields are the org admin's to change; moving out of its reach is not.
    let (status, out) = api
        .post_as(
            &boss,
            "/team/update",
            json!({"team_id": "ops", "max_budget": 50, "models": ["mock/b"]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["max_budget"], 50.0);
    let (status, out) = api
        .post_as(
            &boss,
            "/team/update",
            json!({"team_id": "ops", "organization_id": "other"}),
        )
        .await;
    assert_eq!(status, 404, "{out}");
    let (status, out) = api
        .post_as(&boss, "/team/block", json!({"team_id": "ops"}))
        .await;
    assert_eq!(status, 200, "{out}");
    let (_, list) = api.get_as(&boss, "/team/list?organization_id=acme").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // Teams of other organisations stay hidden.
    new_team(
        &api,
        json!({"team_id": "theirs", "organization_id": "other"}),
    )
    .await;
    assert_eq!(api.get_as(&boss, "/team/info?team_id=theirs").await.0, 404);
    let (status, out) = api
        .post_as(&boss, "/team/delete", json!({"team_ids": ["ops"]}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert!(teams_of(&api, "worker").await.is_empty());
}
