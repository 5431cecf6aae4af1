//! SCIM-managed users and teams on the management API: their marks on reads, and
//! `scim_managed_objects_editable` — off, administrators (the master key included) cannot
//! change what the IdP owns while budgets, limits and blocking stay theirs; on (the default),
//! everything stays editable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::scim_roles::{Idp, PATCH_OP, info, new_org, start};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn management_reads_mark_what_scim_manages() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let kim = idp.user("kim@example.com").await;
    let gid = idp.group("Research", &[&kim]).await;
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "by-hand", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{out}");

    let u = info(&api, &kim).await;
    assert_eq!(u["scim_managed"], true, "{u}");
    assert_eq!(u["scim_provisioned_by"], idp.actor(), "{u}");
    let u = info(&api, "by-hand").await;
    assert_eq!(u["scim_managed"], false, "{u}");
    assert!(u["scim_provisioned_by"].is_null(), "{u}");
    let (_, list) = api.get("/user/list?page_size=100").await;
    for u in list["users"].as_array().unwrap() {
        assert_eq!(u["scim_managed"], u["user_id"] == kim.as_str(), "{u}");
    }
    // No secret in the mark: the token's id, never its key or hash.
    assert!(!list.to_string().contains(&idp.token), "{list}");

    let (_, t) = api.get(&format!("/team/info?team_id={gid}")).await;
    let t = &t["team_info"];
    assert_eq!(t["scim_managed"], true, "{t}");
    assert_eq!(t["scim_provisioned_by"], idp.actor(), "{t}");
    assert_eq!(t["scim_display_name"], "Research", "{t}");
    let (status, _) = api
        .post("/team/new", json!({"team_id": "by-hand-team"}))
        .await;
    assert_eq!(status, 200);
    let (_, teams) = api.get("/team/list").await;
    for t in teams.as_array().unwrap() {
        assert_eq!(t["scim_managed"], t["team_id"] == gid.as_str(), "{t}");
    }
}

/// Asserts a 409 in the management envelope that names SCIM and the IdP.
#[track_caller]
fn assert_managed((status, out): &(u16, Value)) {
    assert_eq!(*status, 409, "{out}");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("managed by SCIM"), "{out}");
    assert!(message.contains("identity provider"), "{out}");
}

#[tokio::test]
async fn with_editing_off_administrators_cannot_change_what_scim_owns() {
    let api = start("  scim_managed_objects_editable: false\n");
    new_org(&api, "C").await;
    let idp = Idp::connect(&api, None).await;
    let scoped = Idp::connect(&api, Some("C")).await;
    let lea = idp.user("lea@example.com").await;
    let max = idp.user("max@example.com").await;
    let gid = idp.group("Platform", &[&lea]).await;
    let before = info(&api, &lea).await;

    // Identity and existence: the IdP's. The master key included.
    let update = |body: Value| api.post("/user/update", body);
    assert_managed(&update(json!({"user_id": lea, "user_email": "x@evil.test"})).await);
    assert_managed(&update(json!({"user_id": lea, "user_alias": "Renamed"})).await);
    assert_managed(&api.post("/user/delete", json!({"user_ids": [lea]})).await);
    let after = info(&api, &lea).await;
    assert_eq!(after["user_email"], before["user_email"]);
    assert_eq!(after["user_alias"], before["user_alias"]);
    // Budgets, limits and models are not SCIM's; restating the email is no change.
    let body = json!({"user_id": lea, "max_budget": 42.0, "models": ["mock/x"],
        "user_email": "lea@example.com"});
    let (status, out) = update(body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(info(&api, &lea).await["max_budget"], 42.0);

    // A SCIM group's name, members and existence too; its budget and blocking are not.
    let team = |route: &'static str, body: Value| api.post(route, body);
    assert_managed(&team("/team/update", json!({"team_id": gid, "team_alias": "X"})).await);
    let add = json!({"team_id": gid, "member": {"user_id": max}});
    assert_managed(&team("/team/member_add", add).await);
    let del = json!({"team_id": gid, "user_id": lea});
    assert_managed(&team("/team/member_delete", del).await);
    assert_managed(&team("/team/delete", json!({"team_ids": [gid]})).await);
    let (status, out) = team("/team/update", json!({"team_id": gid, "max_budget": 5.0})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(team("/team/block", json!({"team_id": gid})).await.0, 200);
    assert_eq!(team("/team/unblock", json!({"team_id": gid})).await.0, 200);
    let (_, t) = api.get(&format!("/team/info?team_id={gid}")).await;
    assert_eq!(t["team_info"]["team_alias"], "Platform", "{t}");
    assert_eq!(
        t["team_info"]["members_with_roles"][0]["user_id"],
        lea.as_str()
    );
    // Deleting an organisation would delete the SCIM groups in it.
    scoped.group("C Team", &[]).await;
    let body = json!({"organization_ids": ["C"], "cascade": true});
    assert_managed(&api.post("/organization/delete", body).await);
    assert_eq!(api.get("/organization/info?organization_id=C").await.0, 200);

    // What SCIM does not manage stays editable, and the IdP still changes its own.
    let (status, _) = api
        .post(
            "/user/new",
            json!({"user_id": "plain", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = update(json!({"user_id": "plain", "user_email": "p@example.com"})).await;
    assert_eq!(status, 200);
    let ops = json!([{"op": "replace", "path": "displayName", "value": "Lea L"}]);
    let body = json!({"schemas": [PATCH_OP], "Operations": ops});
    let (status, _) = idp
        .call(Method::PATCH, &format!("/Users/{lea}"), Some(body))
        .await;
    assert_eq!(status, 200);
    assert_eq!(info(&api, &lea).await["user_alias"], "Lea L");
    assert_eq!(
        api.post("/user/delete", json!({"user_ids": ["plain"]}))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn by_default_administrators_may_edit_scim_managed_objects() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let ned = idp.user("ned@example.com").await;
    let ola = idp.user("ola@example.com").await;
    let gid = idp.group("Sales", &[&ned]).await;
    let body = json!({"user_id": ned, "user_email": "ned@new.test", "user_alias": "N"});
    let (status, out) = api.post("/user/update", body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(info(&api, &ned).await["user_email"], "ned@new.test");
    let body = json!({"team_id": gid, "team_alias": "Sales EU"});
    assert_eq!(api.post("/team/update", body).await.0, 200);
    let add = json!({"team_id": gid, "member": {"user_id": ola}});
    assert_eq!(api.post("/team/member_add", add).await.0, 200);
    let del = json!({"team_id": gid, "user_id": ned});
    assert_eq!(api.post("/team/member_delete", del).await.0, 200);
    assert_eq!(
        api.post("/team/delete", json!({"team_ids": [gid]})).await.0,
        200
    );
    assert_eq!(
        api.post("/user/delete", json!({"user_ids": [ned]})).await.0,
        200
    );
    assert_eq!(api.get(&format!("/user/info?user_id={ned}")).await.0, 404);
}
