//! Attacks on SCIM Bulk, roles from SCIM groups and SCIM-managed objects against the real
//! binary: bulk paths that try to smuggle another request, an organisation-scoped bulk that
//! tries to leave its organisation, read-only credentials, bulkId collisions and references
//! that go nowhere, bulks built to cost CPU or memory; a group renamed or moved to mint a proxy
//! admin, a team admin handing out the admin group, a user in two mapped groups, concurrent
//! group and admin edits; and administrators routing around `scim_managed_objects_editable`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::keys::{Api, secret_of};
use crate::scim_roles::{Idp, info, new_org, start};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

fn bulk_body(ops: Value) -> Value {
    json!({"schemas": [BULK_REQUEST], "Operations": ops})
}

/// A bulk of `ops` sent by `idp`, asserting a 200 BulkResponse; its results.
async fn bulk(idp: &Idp<'_>, ops: Value) -> Vec<Value> {
    let (status, out) = idp.call(Method::POST, "/Bulk", Some(bulk_body(ops))).await;
    assert_eq!(status, 200, "{out}");
    out["Operations"].as_array().unwrap().clone()
}

fn status_of(result: &Value) -> u16 {
    result["status"].as_str().unwrap().parse().unwrap()
}

fn new_user(bulk_id: &str, name: &str) -> Value {
    json!({"method": "POST", "path": "/Users", "bulkId": bulk_id,
           "data": {"schemas": [USER], "userName": name,
                    "emails": [{"value": name, "primary": true}]}})
}

fn add_member(path: &str, value: &str) -> Value {
    json!({"method": "PATCH", "path": path, "data": {"schemas": [PATCH_OP],
           "Operations": [{"op": "add", "path": "members", "value": [{"value": value}]}]}})
}

async fn user_count(api: &Api) -> usize {
    let (_, list) = api.get("/user/list?page_size=1000").await;
    list["users"].as_array().map_or(0, Vec::len)
}

async fn team_count(api: &Api) -> usize {
    let (_, list) = api.get("/team/list").await;
    list.as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn crafted_bulk_paths_and_versions_smuggle_nothing() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let uid = idp.user("pat@example.com").await;
    let gid = idp.group("Crew", &[]).await;
    let (users, teams) = (user_count(&api).await, team_count(&api).await);
    let data = json!({"schemas": [USER], "userName": "smuggled@example.com"});
    let patch = json!({"schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Smuggled"}]});
    let mut ops = Vec::new();
    for path in [
        "/Users/../Groups",
        "/Users/..",
        "/Users/%2e%2e",
        "/Users/%2e%2e%2fGroups",
        "/Users?attributes=id",
        "/Users#x",
        "http://evil.test/scim/v2/Users",
        "//Users",
        "/Users/",
        "Users",
        "/users",
        "/Users/a/b",
        "/Bulk",
        "/bulk",
        "/scim/v2/Users",
        "/ServiceProviderConfig",
        "/Me",
        "/Users/.search",
        "/Users/x y",
        "/Users/\r\nHost: evil",
        "",
    ] {
        ops.push(
            json!({"method": "POST", "path": path, "bulkId": format!("b{}", ops.len()),
                        "data": data}),
        );
        for m in ["PUT", "PATCH", "DELETE"] {
            let d = if m == "PATCH" { &patch } else { &data };
            ops.push(json!({"method": m, "path": path, "data": d}));
        }
        let with_id = format!("{path}/{uid}");
        ops.push(json!({"method": "PATCH", "path": with_id, "data": patch}));
    }
    // A version with a header break, and one with an injected second precondition.
    ops.push(json!({"method": "PATCH", "path": format!("/Users/{uid}"),
                    "version": "W/\"1\"\r\nX-Injected: 1", "data": patch}));
    ops.push(json!({"method": "DELETE", "path": format!("/Groups/{gid}"),
                    "version": "W/\"999\""}));
    let n = ops.len();
    let results = bulk(&idp, Value::Array(ops)).await;
    assert_eq!(results.len(), n);
    for r in &results {
        let s = status_of(r);
        assert!((400..500).contains(&s), "{r}");
    }
    assert_eq!(user_count(&api).await, users, "a user was made");
    assert_eq!(team_count(&api).await, teams, "a team was made or deleted");
    let u = info(&api, &uid).await;
    assert_ne!(u["user_alias"], "Smuggled", "{u}");
    // The header names the outer body: an inner operation is not cut or extended by it.
    let body = bulk_body(json!([new_user("ok", "len@example.com")])).to_string();
    let r = api
        .http
        .post(api.gw.url("/scim/v2/Bulk"))
        .bearer_auth(&idp.token)
        .header("content-type", "application/scim+json")
        .header("if-match", "W/\"nope\"")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["Operations"][0]["status"], "201", "{out}");
}

#[tokio::test]
async fn an_org_scoped_bulk_cannot_leave_its_organisation_or_touch_a_proxy_admin() {
    let api = start("");
    new_org(&api, "A").await;
    new_org(&api, "B").await;
    let a = Idp::connect(&api, Some("A")).await;
    let b = Idp::connect(&api, Some("B")).await;
    let ub = b.user("ub@example.com").await;
    let gb = b.group("B Crew", &[&ub]).await;
    // A proxy admin who belongs to A.
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "root-admin", "user_role": "proxy_admin",
                   "organization_id": "A", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let ua = a.user("ua@example.com").await;
    let deactivate = |id: &str| {
        json!({"method": "PATCH", "path": format!("/Users/{id}"), "data": {"schemas": [PATCH_OP],
               "Operations": [{"op": "replace", "path": "active", "value": false}]}})
    };
    let results = bulk(
        &a,
        json!([
            new_user("new", "new@example.com"),
            deactivate(&ub),
            {"method": "DELETE", "path": format!("/Users/{ub}")},
            {"method": "PUT", "path": format!("/Users/{ub}"),
             "data": {"schemas": [USER], "userName": "taken-over@example.com"}},
            add_member(&format!("/Groups/{gb}"), "bulkId:new"),
            add_member(&format!("/Groups/{gb}"), &ua),
            {"method": "DELETE", "path": format!("/Groups/{gb}")},
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"schemas": [GROUP], "displayName": "Portcullis Admins",
                      "members": [{"value": ub}]}},
            deactivate("root-admin"),
            {"method": "DELETE", "path": "/Users/root-admin"},
            {"method": "PUT", "path": "/Users/root-admin",
             "data": {"schemas": [USER], "userName": "root-admin", "active": false}},
            // The scoped admin group, with the user this bulk made: org admin of A at most.
            {"method": "POST", "path": "/Groups", "bulkId": "g2",
             "data": {"schemas": [GROUP], "displayName": "Portcullis Admins",
                      "members": [{"value": "bulkId:new"}]}},
        ]),
    )
    .await;
    let statuses: Vec<u16> = results.iter().map(status_of).collect();
    assert_eq!(statuses[0], 201, "{results:?}");
    for (i, s) in statuses.iter().enumerate().take(11).skip(1) {
        assert!((400..500).contains(s), "operation {i}: {:?}", results[i]);
    }
    assert_eq!(statuses[11], 201, "{results:?}");
    // B's user and group, and the proxy admin, as they were.
    let u = info(&api, &ub).await;
    assert_eq!(u["user_email"], "ub@example.com", "{u}");
    assert_eq!(u["user_role"], "internal_user", "{u}");
    let (_, g) = b.call(Method::GET, &format!("/Groups/{gb}"), None).await;
    assert_eq!(g["members"].as_array().map(Vec::len), Some(1), "{g}");
    let root = info(&api, "root-admin").await;
    assert_eq!(root["user_role"], "proxy_admin", "{root}");
    let (status, _) = api.get("/user/info?user_id=root-admin").await;
    assert_eq!(status, 200);
    assert_eq!(
        api.use_key(&secret_of(
            &api.generate(json!({"user_id": "root-admin"})).await
        ))
        .await,
        200
    );
    // The new user got org admin of A, never proxy admin.
    let new_id = results[0]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let n = info(&api, &new_id).await;
    assert_eq!(n["user_role"], "internal_user", "{n}");
    assert!(n["scim_granted_user_role"].is_null(), "{n}");
}

#[tokio::test]
async fn read_only_credentials_send_no_bulk() {
    let api = start("");
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "viewer", "user_role": "proxy_admin_viewer", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let viewer = secret_of(&api.generate(json!({"user_id": "viewer"})).await);
    let read_only = secret_of(
        &api.generate(json!({"allowed_routes": ["/scim/*"], "key_type": "read_only"}))
            .await,
    );
    let users = user_count(&api).await;
    for token in [&viewer, &read_only] {
        let r = api
            .http
            .post(api.gw.url("/scim/v2/Bulk"))
            .bearer_auth(token)
            .header("content-type", "application/scim+json")
            .body(bulk_body(json!([new_user("x", "x@example.com")])).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403);
    }
    assert_eq!(user_count(&api).await, users);
}

#[tokio::test]
async fn bulk_ids_collide_and_dangle_safely_and_costly_bulks_stay_cheap() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let gid = idp.group("Target", &[]).await;
    // Two POSTs with one bulkId: the second is refused, a reference means the first.
    let results = bulk(
        &idp,
        json!([
            new_user("dup", "first@example.com"),
            new_user("dup", "second@example.com"),
            add_member(&format!("/Groups/{gid}"), "bulkId:dup"),
            // Its POST fails (no userName): references to it are 409, never another id.
            {"method": "POST", "path": "/Users", "bulkId": "bad", "data": {"schemas": [USER]}},
            add_member(&format!("/Groups/{gid}"), "bulkId:bad"),
            {"method": "DELETE", "path": "/Users/bulkId:bad"},
            // Declared by no POST (a PATCH's bulkId declares nothing).
            {"method": "PATCH", "path": format!("/Groups/{gid}"), "bulkId": "p",
             "data": {"schemas": [PATCH_OP], "Operations": []}},
            {"method": "DELETE", "path": "/Users/bulkId:p"},
            {"method": "DELETE", "path": "/Users/bulkId:"},
        ]),
    )
    .await;
    let s: Vec<u16> = results.iter().map(status_of).collect();
    assert_eq!(&s[..3], &[201, 400, 200], "{results:?}");
    assert_eq!(s[3] / 100, 4, "{results:?}");
    assert_eq!(&s[4..6], &[409, 409], "{results:?}");
    assert_eq!(&s[7..], &[409, 409], "{results:?}");
    let (_, g) = idp.call(Method::GET, &format!("/Groups/{gid}"), None).await;
    assert_eq!(g["members"].as_array().map(Vec::len), Some(1), "{g}");

    // maxOperations + 1: refused whole.
    let ops: Vec<Value> = (0..1001)
        .map(|i| json!({"method": "DELETE", "path": format!("/Users/u{i}")}))
        .collect();
    let (status, _) = idp
        .call(Method::POST, "/Bulk", Some(bulk_body(Value::Array(ops))))
        .await;
    assert_eq!(status, 413);
    // Deeply nested data: refused whole, quickly.
    let deep = format!(
        "{{\"schemas\":[\"{BULK_REQUEST}\"],\"Operations\":[{{\"method\":\"POST\",\"path\":\"/Users\",\"bulkId\":\"d\",\"data\":{}{}}}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let started = Instant::now();
    let r = api
        .http
        .post(api.gw.url("/scim/v2/Bulk"))
        .bearer_auth(&idp.token)
        .header("content-type", "application/scim+json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // A circle through all 1000 operations, and a 1000-long chain whose last POST fails:
    // every one answered, none run, in bounded time.
    let n = 1000;
    let circle: Vec<Value> = (0..n)
        .map(|i| {
            json!({"method": "POST", "path": "/Groups", "bulkId": format!("c{i}"),
                   "data": {"schemas": [GROUP], "displayName": format!("circle {i}"),
                            "externalId": format!("bulkId:c{}", (i + 1) % n)}})
        })
        .collect();
    let results = bulk(&idp, Value::Array(circle)).await;
    assert_eq!(results.len(), n);
    assert!(
        results.iter().all(|r| status_of(r) == 409),
        "{:?}",
        &results[..3]
    );
    let chain: Vec<Value> = (0..n)
        .map(|i| {
            let next = if i + 1 == n {
                json!(null)
            } else {
                json!(format!("bulkId:c{}", i + 1))
            };
            let name = if i + 1 == n {
                json!(null)
            } else {
                json!(format!("chain {i}"))
            };
            json!({"method": "POST", "path": "/Groups", "bulkId": format!("c{i}"),
                   "data": {"schemas": [GROUP], "displayName": name, "externalId": next}})
        })
        .collect();
    let results = bulk(&idp, Value::Array(chain)).await;
    assert_eq!(results.len(), n);
    assert!(
        results.iter().all(|r| status_of(r) / 100 == 4),
        "{:?}",
        &results[..3]
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        team_count(&api).await,
        1,
        "a group of the circle or chain was made"
    );
}

#[tokio::test]
async fn a_team_admin_cannot_hand_out_the_admin_group() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let ann = idp.user("ann@example.com").await;
    let bob = idp.user("bob@example.com").await;
    let gid = idp.group("Portcullis Admins", &[&ann]).await;
    assert_eq!(info(&api, &ann).await["user_role"], "proxy_admin");
    // A proxy admin makes a plain user a team admin of the admin group (which grants it nothing:
    // it is not a SCIM user).
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "tam", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = api
        .post(
            "/team/member_add",
            json!({"team_id": gid, "member": {"user_id": "tam", "role": "admin"}}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(info(&api, "tam").await["user_role"], "internal_user");
    let tam = secret_of(&api.generate(json!({"user_id": "tam"})).await);
    // The team admin adds a SCIM user, or promotes one: refused / grants nothing more.
    let (status, out) = api
        .post_as(
            &tam,
            "/team/member_add",
            json!({"team_id": gid, "member": {"user_id": bob, "role": "user"}}),
        )
        .await;
    assert_eq!(status, 403, "{out}");
    let (status, out) = api
        .post_as(
            &tam,
            "/team/member_update",
            json!({"team_id": gid, "user_id": ann, "role": "admin"}),
        )
        .await;
    assert_eq!(status, 403, "{out}");
    assert_eq!(info(&api, &bob).await["user_role"], "internal_user");
    // The team admin cannot take the admin role away from a SCIM-made proxy admin either.
    let (status, out) = api
        .post_as(
            &tam,
            "/team/member_delete",
            json!({"team_id": gid, "user_id": ann}),
        )
        .await;
    assert_eq!(status, 403, "{out}");
    assert_eq!(info(&api, &ann).await["user_role"], "proxy_admin");
}

/// `/user/new {"teams": [...]}` puts a new user in a team with only team-admin reach: around
/// `check_may_add` (so the user got the group's role once the IdP adopted it) and around
/// `scim_managed_objects_editable: false` — until `new_user` applied the member_add rules.
#[tokio::test]
async fn a_team_admin_cannot_put_a_new_user_in_the_admin_group_through_user_new() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let ann = idp.user("ann@example.com").await;
    let gid = idp.group("Portcullis Admins", &[&ann]).await;
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "tam", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = api
        .post(
            "/team/member_add",
            json!({"team_id": gid, "member": {"user_id": "tam", "role": "admin"}}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let tam = secret_of(&api.generate(json!({"user_id": "tam"})).await);
    let (status, out) = api
        .post_as(
            &tam,
            "/user/new",
            json!({"user_id": "dan@example.com", "teams": [gid], "auto_create_key": false}),
        )
        .await;
    assert_eq!(
        status, 403,
        "a team admin put a user in the admin group: {out}"
    );
    // Had it passed: the IdP adopting dan makes it a proxy admin.
    let ops = json!([{"op": "replace", "path": "active", "value": true}]);
    let body = json!({"schemas": [PATCH_OP], "Operations": ops});
    idp.call(Method::PATCH, "/Users/dan@example.com", Some(body))
        .await;
    let (_, u) = api.get("/user/info?user_id=dan@example.com").await;
    assert_ne!(u["user_info"]["user_role"], "proxy_admin", "{u}");
}

#[tokio::test]
async fn a_scoped_group_renamed_or_moved_mints_no_proxy_admin() {
    let api = start("");
    new_org(&api, "A").await;
    new_org(&api, "B").await;
    let a = Idp::connect(&api, Some("A")).await;
    let uma = a.user("uma@example.com").await;
    let gid = a.group("Builders", &[&uma]).await;
    a.rename(&gid, "Portcullis Admins").await;
    let u = info(&api, &uma).await;
    assert_eq!(u["user_role"], "internal_user", "{u}");
    // A careless proxy admin moves the group out of its organisation: its IdP-chosen name would
    // make every member a proxy admin.
    let (status, out) = api
        .post(
            "/team/update",
            json!({"team_id": gid, "organization_id": null}),
        )
        .await;
    assert_eq!(status, 409, "{out}");
    let (status, out) = api
        .post(
            "/team/update",
            json!({"team_id": gid, "organization_id": ""}),
        )
        .await;
    assert_eq!(status, 409, "{out}");
    assert_eq!(info(&api, &uma).await["user_role"], "internal_user");
    // Into another organisation: org admin there at most, for its members there.
    let (status, out) = api
        .post(
            "/team/update",
            json!({"team_id": gid, "organization_id": "B"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let u = info(&api, &uma).await;
    assert_eq!(u["user_role"], "internal_user", "{u}");
    // The group is now outside A: A's token no longer sees or changes it.
    let (status, _) = a.call(Method::GET, &format!("/Groups/{gid}"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_user_in_two_mapped_groups_keeps_the_other_ones_role() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let vic = idp.user("vic@example.com").await;
    let admins = idp.group("Portcullis Admins", &[&vic]).await;
    let auditors = idp.group("Auditors", &[&vic]).await;
    assert_eq!(info(&api, &vic).await["user_role"], "proxy_admin");
    idp.remove(&admins, &vic).await;
    let u = info(&api, &vic).await;
    assert_eq!(u["user_role"], "proxy_admin_viewer", "{u}");
    assert_eq!(u["scim_granted_user_role"], "proxy_admin_viewer", "{u}");
    idp.add(&admins, &vic).await;
    idp.remove(&auditors, &vic).await;
    assert_eq!(info(&api, &vic).await["user_role"], "proxy_admin");
    idp.remove(&admins, &vic).await;
    let u = info(&api, &vic).await;
    assert_eq!(u["user_role"], "internal_user", "{u}");
    assert!(u["scim_granted_user_role"].is_null(), "{u}");
}

#[tokio::test]
async fn concurrent_group_changes_and_admin_edits_end_consistent() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let wes = idp.user("wes@example.com").await;
    let admins = idp.group("Portcullis Admins", &[]).await;
    let flips = async {
        for _ in 0..15 {
            idp.add(&admins, &wes).await;
            idp.remove(&admins, &wes).await;
        }
    };
    let edits = async {
        for i in 0..30 {
            let (status, out) = api
                .post(
                    "/user/update",
                    json!({"user_id": wes, "max_budget": 10.0 + i as f64}),
                )
                .await;
            assert_eq!(status, 200, "{out}");
        }
    };
    tokio::join!(flips, edits);
    let u = info(&api, &wes).await;
    assert_eq!(u["user_role"], "internal_user", "{u}");
    assert!(u["scim_granted_user_role"].is_null(), "{u}");
    assert_eq!(u["max_budget"], 39.0, "{u}");
    // An admin role change racing the group: whoever set it by hand owns it.
    idp.add(&admins, &wes).await;
    let (status, out) = api
        .post(
            "/user/update",
            json!({"user_id": wes, "user_role": "proxy_admin"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    idp.remove(&admins, &wes).await;
    assert_eq!(info(&api, &wes).await["user_role"], "proxy_admin");
}

#[tokio::test]
async fn with_editing_off_no_other_route_changes_what_scim_owns() {
    let api = start("  scim_managed_objects_editable: false\n");
    let idp = Idp::connect(&api, None).await;
    let xia = idp.user("xia@example.com").await;
    let gid = idp.group("Ops", &[&xia]).await;
    for (route, body) in [
        ("/user/delete", json!({"user_ids": [xia], "cascade": true})),
        ("/user/delete", json!({"user_ids": ["nobody", xia]})),
        ("/team/delete", json!({"team_ids": [gid], "cascade": true})),
        (
            "/team/member_delete",
            json!({"team_id": gid, "user_email": "xia@example.com"}),
        ),
        ("/team/update", json!({"team_id": gid, "team_alias": ""})),
    ] {
        let (status, out) = api.post(route, body.clone()).await;
        assert!(
            status == 409 || status == 404 || status == 400,
            "{route} {body}: {status} {out}"
        );
    }
    let u = info(&api, &xia).await;
    assert_eq!(u["user_email"], "xia@example.com", "{u}");
    let (_, t) = api.get(&format!("/team/info?team_id={gid}")).await;
    assert_eq!(t["team_info"]["team_alias"], "Ops", "{t}");
    assert_eq!(
        t["team_info"]["members_with_roles"][0]["user_id"],
        xia.as_str(),
        "{t}"
    );
}
