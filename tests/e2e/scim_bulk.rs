//! SCIM Bulk (`POST /scim/v2/Bulk`, RFC 7644 §3.7) end to end: users and a group made in one
//! request with `bulkId` references (forward ones too), then changed and deleted; per-operation
//! errors (uniqueness, bad operations, unknown and circular references) beside successes;
//! `failOnErrors`; the limits, advertised and enforced; malformed requests; who may send one;
//! an organisation-scoped token confined to its organisation; the audit actor.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{MASTER_KEY, Options};
use crate::keys::{Api, secret_of};
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SCIM_JSON: &str = "application/scim+json";

/// Sends `body` (raw) to `/scim/v2{path}` with `token`; status and JSON body.
async fn send_raw(
    api: &Api,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: String,
) -> (u16, Value) {
    let r = api
        .http
        .request(method, api.gw.url(&format!("/scim/v2{path}")))
        .bearer_auth(token)
        .header("content-type", SCIM_JSON)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.unwrap();
    if text.is_empty() {
        return (status, Value::Null);
    }
    assert!(
        content_type.starts_with(SCIM_JSON),
        "{status} as `{content_type}`: {text}"
    );
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn bulk_raw(api: &Api, token: &str, body: String) -> (u16, Value) {
    send_raw(api, token, reqwest::Method::POST, "/Bulk", body).await
}

/// A bulk request of `ops` (and `extra` top-level attributes), asserting a 200 BulkResponse; its
/// `Operations`.
async fn bulk(api: &Api, token: &str, ops: Value, extra: Value) -> Vec<Value> {
    let mut body = json!({"schemas": [BULK_REQUEST], "Operations": ops});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    let (status, out) = bulk_raw(api, token, body.to_string()).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["schemas"], json!([BULK_RESPONSE]), "{out}");
    out["Operations"].as_array().unwrap().clone()
}

async fn get(api: &Api, token: &str, path: &str) -> (u16, Value) {
    send_raw(api, token, reqwest::Method::GET, path, String::new()).await
}

/// Asserts a SCIM Error with `status` and `scim_type`.
#[track_caller]
fn assert_error(body: &Value, status: u16, scim_type: Option<&str>) {
    assert_eq!(body["schemas"], json!([ERROR]), "{body}");
    assert_eq!(body["status"], status.to_string(), "{body}");
    match scim_type {
        Some(t) => assert_eq!(body["scimType"], t, "{body}"),
        None => assert!(body.get("scimType").is_none(), "{body}"),
    }
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

/// Asserts a failed operation's result: its status string and its SCIM Error `response`.
#[track_caller]
fn assert_failed(result: &Value, status: u16, scim_type: Option<&str>) {
    assert_eq!(result["status"], status.to_string(), "{result}");
    assert_error(&result["response"], status, scim_type);
    assert!(result.get("version").is_none(), "{result}");
}

/// The result with `bulkId`.
#[track_caller]
fn by_bulk_id<'a>(results: &'a [Value], id: &str) -> &'a Value {
    results
        .iter()
        .find(|r| r["bulkId"] == id)
        .unwrap_or_else(|| panic!("no result for bulkId {id}: {results:?}"))
}

fn new_user(bulk_id: &str, user_name: &str) -> Value {
    json!({"method": "POST", "path": "/Users", "bulkId": bulk_id,
           "data": {"schemas": [USER], "userName": user_name,
                    "emails": [{"value": user_name, "primary": true}]}})
}

/// A SCIM token made by the master key (optionally scoped to `org`): its secret and key id.
async fn scim_token(api: &Api, org: Option<&str>) -> (String, String) {
    let mut body = json!({"allowed_routes": ["/scim/*"]});
    if let Some(o) = org {
        body["organization_id"] = json!(o);
    }
    let out = api.generate(body).await;
    (secret_of(&out), out["key_id"].as_str().unwrap().to_string())
}

/// The id at the end of a result's `location`.
#[track_caller]
fn id_of(result: &Value) -> String {
    let loc = result["location"]
        .as_str()
        .unwrap_or_else(|| panic!("no location: {result}"));
    loc.rsplit('/').next().unwrap().to_string()
}

/// The audit entries `by` made: (table, action, object id).
async fn audited_by(api: &Api, by: &str) -> Vec<(String, String, String)> {
    let (status, out) = api
        .get(&format!(
            "/audit?changed_by={}&page_size=100",
            by.replace(':', "%3A")
        ))
        .await;
    assert_eq!(status, 200, "{out}");
    out["audit_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["changed_by"], by, "{e}");
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (s("table_name"), s("action"), s("object_id"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_bulk_creates_users_and_a_group_by_bulk_id_then_changes_and_deletes_them() {
    let api = Api::start();
    let (token, key_id) = scim_token(&api, None).await;

    // The group comes first and names users that later operations create (RFC 7644 §3.7.2).
    let ops = json!([
        {"method": "post", "path": "/Groups", "bulkId": "g",
         "data": {"schemas": [GROUP], "displayName": "Bulk team",
                  "members": [{"value": "bulkId:ann"}, {"value": "bulkId:bob"}]}},
        new_user("ann", "ann@bulk.test"),
        new_user("bob", "bob@bulk.test"),
        new_user("cat", "cat@bulk.test"),
        {"method": "PATCH", "path": "/Users/bulkId:ann",
         "data": {"schemas": [PATCH_OP],
                  "Operations": [{"op": "replace", "path": "title", "value": "Lead"}]}},
        {"method": "Patch", "path": "/Groups/bulkId:g",
         "data": {"schemas": [PATCH_OP],
                  "Operations": [{"op": "remove", "path": "members", "value": [{"value": "bulkId:bob"}]}]}},
        {"method": "DELETE", "path": "/Users/bulkId:cat"},
    ]);
    let results = bulk(&api, &token, ops, json!({})).await;
    assert_eq!(results.len(), 7, "{results:?}");
    let (ann, bob, cat, g) = (
        by_bulk_id(&results, "ann"),
        by_bulk_id(&results, "bob"),
        by_bulk_id(&results, "cat"),
        by_bulk_id(&results, "g"),
    );
    for created in [ann, bob, cat, g] {
        assert_eq!(created["method"], "POST", "{created}");
        assert_eq!(created["status"], "201", "{created}");
        assert!(created["version"].as_str().is_some(), "{created}");
        assert!(created.get("response").is_none(), "{created}");
    }
    let (ann_id, bob_id, cat_id, g_id) = (id_of(ann), id_of(bob), id_of(cat), id_of(g));
    assert!(
        ann["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/Users/{ann_id}"))
    );
    assert!(
        g["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/Groups/{g_id}"))
    );
    // The group waited for its members; everything else ran in the order sent.
    let order: Vec<&str> = results
        .iter()
        .map(|r| r["bulkId"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        order,
        ["ann", "bob", "g", "cat", "-", "-", "-"],
        "{results:?}"
    );
    let (patch_user, patch_group, delete) = (&results[4], &results[5], &results[6]);
    assert_eq!(patch_user["method"], "PATCH");
    assert_eq!(patch_user["status"], "200", "{patch_user}");
    assert_eq!(patch_user["location"], ann["location"]);
    assert_eq!(patch_group["method"], "PATCH");
    assert_eq!(patch_group["status"], "200", "{patch_group}");
    assert_eq!(delete["method"], "DELETE");
    assert_eq!(delete["status"], "204", "{delete}");
    assert_eq!(delete["location"], cat["location"]);
    assert!(delete.get("version").is_none(), "{delete}");

    // What the results say is what the resources are.
    let (status, u) = get(&api, &token, &format!("/Users/{ann_id}")).await;
    assert_eq!(status, 200, "{u}");
    assert_eq!(u["title"], "Lead");
    assert_eq!(u["meta"]["version"], patch_user["version"], "{u}");
    let (status, group) = get(&api, &token, &format!("/Groups/{g_id}")).await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["displayName"], "Bulk team");
    let members: Vec<&str> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, [ann_id.as_str()], "{group}");
    assert_eq!(group["meta"]["version"], patch_group["version"], "{group}");
    let (status, b) = get(&api, &token, &format!("/Users/{bob_id}")).await;
    assert_eq!(status, 200, "{b}");
    assert!(b.get("groups").is_none(), "removed from the group: {b}");
    let (status, gone) = get(&api, &token, &format!("/Users/{cat_id}")).await;
    assert_eq!(status, 404, "{gone}");
    // The references were resolved, never stored: no user is called `bulkId:...`.
    let (_, all) = get(&api, &token, "/Users").await;
    assert_eq!(all["totalResults"], 2, "{all}");

    // A leaver in a bulk loses access on the next request, as with a single PATCH.
    let key = secret_of(&api.generate(json!({"user_id": bob_id})).await);
    let chat = json!({"model": "mock/x", "messages": [{"role": "user", "content": "hi"}]});
    let (status, out) = api
        .post_as(&key, "/v1/chat/completions", chat.clone())
        .await;
    assert_eq!(status, 200, "{out}");
    let deactivate = json!([{"method": "PATCH", "path": format!("/Users/{bob_id}"), "version": b["meta"]["version"],
        "data": {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}}]);
    let r = bulk(&api, &token, deactivate.clone(), json!({})).await;
    assert_eq!(r[0]["status"], "200", "{r:?}");
    let (status, out) = api.post_as(&key, "/v1/chat/completions", chat).await;
    assert!(status == 401 || status == 403, "{status}: {out}");
    // `version` is If-Match: a stale one is 412, and nothing changes.
    let r = bulk(&api, &token, deactivate, json!({})).await;
    assert_failed(&r[0], 412, None);

    // Every change is the token's, as if each operation had been sent alone.
    let found = audited_by(&api, &format!("scim:{key_id}")).await;
    let has = |table: &str, action: &str, id: &str| {
        found
            .iter()
            .any(|(t, a, o)| t == table && a == action && o == id)
    };
    assert!(has("LiteLLM_UserTable", "created", &ann_id), "{found:?}");
    assert!(has("LiteLLM_UserTable", "created", &bob_id), "{found:?}");
    assert!(has("LiteLLM_UserTable", "deleted", &cat_id), "{found:?}");
    assert!(has("LiteLLM_UserTable", "blocked", &bob_id), "{found:?}");
    assert!(has("LiteLLM_UserTable", "updated", &ann_id), "{found:?}");
    assert!(has("LiteLLM_TeamTable", "created", &g_id), "{found:?}");
    assert!(has("LiteLLM_TeamTable", "updated", &g_id), "{found:?}");
    let (_, by_master) = api.get("/audit?changed_by=master_key&page_size=100").await;
    assert!(
        by_master["audit_logs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["object_id"] != ann_id.as_str()),
        "{by_master}"
    );

    // Discovery advertises Bulk with the limits enforced below.
    let (status, config) = get(&api, &token, "/ServiceProviderConfig").await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(
        config["bulk"],
        json!({"supported": true, "maxOperations": 1000, "maxPayloadSize": 1_048_576})
    );
}

#[tokio::test]
async fn bulk_errors_are_per_operation_and_fail_on_errors_stops_the_rest() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;

    // A duplicate userName in the bulk is a 409 uniqueness result; the others still succeed.
    let ops = json!([
        new_user("a", "dup@bulk.test"),
        {"method": "POST", "path": "/Users", "bulkId": "b",
         "data": {"schemas": [USER], "userName": "DUP@bulk.test"}},
        new_user("c", "other@bulk.test"),
        // Operations the bulk itself refuses, each with its own error.
        {"method": "POST", "path": "/Users", "data": {"schemas": [USER], "userName": "no-bulk-id"}},
        {"method": "DELETE", "path": "/Users"},
        {"method": "POST", "path": "/Bulk", "bulkId": "nested",
         "data": {"schemas": [BULK_REQUEST], "Operations": []}},
        {"method": "PUT", "path": "/Nothing/x", "data": {}},
        {"method": "GET", "path": "/Users"},
        {"path": "/Users/x"},
        {"method": "PATCH", "data": {}},
        {"method": "PATCH", "path": "/Users/bulkId:nobody", "data": {"schemas": [PATCH_OP], "Operations": []}},
        new_user("a", "second-a@bulk.test"),
        "not an operation",
        // A refused resource, and a reference to it.
        {"method": "POST", "path": "/Users", "bulkId": "nameless", "data": {"schemas": [USER]}},
        {"method": "POST", "path": "/Groups", "bulkId": "gn",
         "data": {"schemas": [GROUP], "displayName": "G", "members": [{"value": "bulkId:nameless"}]}},
    ]);
    let r = bulk(&api, &token, ops, json!({})).await;
    assert_eq!(r.len(), 15, "{r:?}");
    assert_eq!(r[0]["status"], "201", "{r:?}");
    assert_failed(&r[1], 409, Some("uniqueness"));
    assert_eq!(r[1]["bulkId"], "b");
    assert!(
        r[1].get("location").is_none(),
        "a failed POST has no location: {}",
        r[1]
    );
    assert_eq!(r[2]["status"], "201", "{r:?}");
    assert_failed(&r[3], 400, Some("invalidSyntax"));
    assert_failed(&r[4], 405, None);
    assert_failed(&r[5], 400, Some("invalidValue"));
    assert_failed(&r[6], 404, None);
    assert_failed(&r[7], 400, Some("invalidValue"));
    assert_eq!(r[7]["method"], "GET");
    assert_failed(&r[8], 400, Some("invalidSyntax"));
    assert_failed(&r[9], 400, Some("invalidSyntax"));
    assert_failed(&r[10], 409, Some("invalidValue"));
    assert_failed(&r[11], 400, Some("invalidValue"));
    assert_failed(&r[12], 400, Some("invalidSyntax"));
    assert_failed(&r[13], 400, Some("invalidValue"));
    assert_failed(&r[14], 409, Some("invalidValue"));
    let (_, users) = get(&api, &token, "/Users").await;
    let mut names: Vec<&str> = users["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["dup@bulk.test", "other@bulk.test"], "{users}");
    let (_, groups) = get(&api, &token, "/Groups").await;
    assert_eq!(groups["totalResults"], 0, "{groups}");

    // failOnErrors: 2 — processing stops at the second error; what came before stays.
    let ops = json!([
        new_user("f1", "f1@bulk.test"),
        {"method": "POST", "path": "/Users", "bulkId": "bad1", "data": {"schemas": [USER]}},
        new_user("f2", "f2@bulk.test"),
        {"method": "POST", "path": "/Users", "bulkId": "bad2", "data": {"schemas": [USER]}},
        new_user("f3", "f3@bulk.test"),
    ]);
    let r = bulk(&api, &token, ops, json!({"failOnErrors": 2})).await;
    let statuses: Vec<&str> = r.iter().map(|x| x["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201", "400", "201", "400"], "{r:?}");
    for (name, want) in [
        ("f1@bulk.test", 1),
        ("f2@bulk.test", 1),
        ("f3@bulk.test", 0),
    ] {
        let (_, out) = get(
            &api,
            &token,
            &format!("/Users?filter=userName%20eq%20%22{name}%22"),
        )
        .await;
        assert_eq!(out["totalResults"], want, "{name}: {out}");
    }

    // Circular references (two groups naming each other, one naming itself) are 409
    // invalidValue results — answered, not looped on — and create nothing.
    let group = |id: &str, member: &str| {
        json!({"method": "POST", "path": "/Groups", "bulkId": id,
               "data": {"schemas": [GROUP], "displayName": id, "members": [{"value": format!("bulkId:{member}")}]}})
    };
    let ops = json!([
        group("x", "y"),
        group("y", "x"),
        group("self", "self"),
        new_user("after", "after@bulk.test")
    ]);
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        bulk(&api, &token, ops, json!({})),
    )
    .await
    .expect("a circular bulk is answered");
    assert_eq!(r.len(), 4, "{r:?}");
    for id in ["x", "y", "self"] {
        assert_failed(by_bulk_id(&r, id), 409, Some("invalidValue"));
    }
    assert_eq!(by_bulk_id(&r, "after")["status"], "201");
    let (_, groups) = get(&api, &token, "/Groups").await;
    assert_eq!(groups["totalResults"], 0, "{groups}");

    // maxOperations: one over is 413 tooMany before any operation runs; exactly at it is served.
    let (_, config) = get(&api, &token, "/ServiceProviderConfig").await;
    let max_ops = config["bulk"]["maxOperations"].as_u64().unwrap() as usize;
    assert_eq!(max_ops, 1000, "{config}");
    let cheap = || json!({"method": "DELETE", "path": "/Users"});
    let mut ops: Vec<Value> = (0..max_ops).map(|_| cheap()).collect();
    ops.insert(0, new_user("first", "first@bulk.test"));
    let body = json!({"schemas": [BULK_REQUEST], "Operations": ops});
    let (status, out) = bulk_raw(&api, &token, body.to_string()).await;
    assert_eq!(status, 413, "{out}");
    assert_error(&out, 413, Some("tooMany"));
    assert!(out["detail"].as_str().unwrap().contains("1000"), "{out}");
    let (_, users) = get(
        &api,
        &token,
        "/Users?filter=userName%20eq%20%22first%40bulk.test%22",
    )
    .await;
    assert_eq!(users["totalResults"], 0, "nothing ran: {users}");
    ops.remove(0);
    let r = bulk(&api, &token, json!(ops), json!({})).await;
    assert_eq!(r.len(), max_ops);
    assert!(r.iter().all(|x| x["status"] == "405"), "{:?}", &r[..2]);
}

#[tokio::test]
async fn malformed_or_oversized_bulks_and_read_only_callers_are_refused_whole() {
    let api = Api::on(
        Options::new()
            .config(
                "model_list:\n  - model_name: \"mock/*\"\n    litellm_params: {model: \"mock/*\"}\n\
                 general_settings:\n  max_request_size_mb: 0.01\n",
            )
            .start(),
    );
    let (token, _) = scim_token(&api, None).await;
    let whole = |ops: Value| json!({"schemas": [BULK_REQUEST], "Operations": ops}).to_string();

    for (body, why) in [
        ("{not json".to_string(), "not JSON"),
        ("[]".to_string(), "not an object"),
        (json!({"Operations": []}).to_string(), "no schemas"),
        (
            json!({"schemas": [USER], "Operations": []}).to_string(),
            "wrong schema",
        ),
        (
            json!({"schemas": [BULK_REQUEST]}).to_string(),
            "no Operations",
        ),
        (
            json!({"schemas": [BULK_REQUEST], "Operations": {"method": "POST"}}).to_string(),
            "Operations not an array",
        ),
    ] {
        let (status, out) = bulk_raw(&api, &token, body).await;
        assert_eq!(status, 400, "{why}: {out}");
        assert_error(&out, 400, Some("invalidSyntax"));
    }
    for bad in [json!(0), json!(-1), json!("2"), json!(1.5)] {
        let body = json!({"schemas": [BULK_REQUEST], "Operations": [], "failOnErrors": bad});
        let (status, out) = bulk_raw(&api, &token, body.to_string()).await;
        assert_eq!(status, 400, "failOnErrors {bad}: {out}");
        assert_error(&out, 400, Some("invalidValue"));
    }

    // The payload limit follows the server's request cap; advertised, and enforced.
    let (_, config) = get(&api, &token, "/ServiceProviderConfig").await;
    let max_payload = config["bulk"]["maxPayloadSize"].as_u64().unwrap() as usize;
    assert_eq!(
        max_payload,
        (0.01f64 * 1024.0 * 1024.0) as usize,
        "{config}"
    );
    let padded = |size: usize| {
        let mut op = new_user("big", "big@bulk.test");
        op["data"]["nickName"] = json!("x".repeat(size));
        whole(json!([op]))
    };
    let (status, out) = bulk_raw(&api, &token, padded(max_payload)).await;
    assert_eq!(status, 413, "{out}");
    assert_error(&out, 413, None);
    assert!(
        out["detail"]
            .as_str()
            .unwrap()
            .contains(&max_payload.to_string()),
        "{out}"
    );
    let (_, users) = get(&api, &token, "/Users").await;
    assert_eq!(users["totalResults"], 0, "{users}");
    let body = padded(max_payload - 1024);
    assert!(body.len() <= max_payload);
    let (status, out) = bulk_raw(&api, &token, body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["Operations"][0]["status"], "201", "{out}");

    // A read-only credential may not send a bulk at all.
    let (status, v) = api
        .post(
            "/user/new",
            json!({"user_id": "viewer", "user_role": "proxy_admin_viewer"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, out) = bulk_raw(
        &api,
        &secret_of(&v),
        whole(json!([new_user("v", "v@bulk.test")])),
    )
    .await;
    assert_eq!(status, 403, "{out}");
    assert_error(&out, 403, None);
    // Nor may a credential that may not use SCIM; the master key may.
    let (status, u) = api.post("/user/new", json!({"user_id": "worker"})).await;
    assert_eq!(status, 200, "{u}");
    let (status, out) = bulk_raw(&api, &secret_of(&u), whole(json!([]))).await;
    assert_eq!(status, 403, "{out}");
    let r = bulk(
        &api,
        MASTER_KEY,
        json!([new_user("m", "m@bulk.test")]),
        json!({}),
    )
    .await;
    assert_eq!(r[0]["status"], "201", "{r:?}");
}

#[tokio::test]
async fn an_org_scoped_bulk_touches_only_its_organisation() {
    let api = Api::start();
    for org in ["A", "B"] {
        let (status, out) = api
            .post(
                "/organization/new",
                json!({"organization_id": org, "organization_alias": org}),
            )
            .await;
        assert_eq!(status, 200, "{out}");
    }
    let (ta, a_id) = scim_token(&api, Some("A")).await;
    let (tb, _) = scim_token(&api, Some("B")).await;
    let r = bulk(&api, &tb, json!([new_user("b", "bob@b.test")]), json!({})).await;
    let ub = id_of(&r[0]);
    let (_, before) = get(&api, &tb, &format!("/Users/{ub}")).await;

    let ops = json!([
        {"method": "PATCH", "path": format!("/Users/{ub}"),
         "data": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": false}]}},
        {"method": "PUT", "path": format!("/Users/{ub}"), "data": {"schemas": [USER], "userName": "hijacked@a.test"}},
        {"method": "DELETE", "path": format!("/Users/{ub}")},
        {"method": "POST", "path": "/Groups", "bulkId": "sneaky",
         "data": {"schemas": [GROUP], "displayName": "sneaky", "members": [{"value": ub}]}},
        new_user("ann", "ann@a.test"),
        {"method": "POST", "path": "/Groups", "bulkId": "ga",
         "data": {"schemas": [GROUP], "displayName": "A team", "members": [{"value": "bulkId:ann"}]}},
    ]);
    let r = bulk(&api, &ta, ops, json!({})).await;
    assert_eq!(r.len(), 6, "{r:?}");
    for x in &r[..3] {
        assert_failed(x, 404, None);
        assert!(
            x["location"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/Users/{ub}")),
            "{x}"
        );
    }
    assert_failed(&r[3], 400, Some("invalidValue"));
    let (ann, ga) = (by_bulk_id(&r, "ann"), by_bulk_id(&r, "ga"));
    assert_eq!(ann["status"], "201", "{ann}");
    assert_eq!(ga["status"], "201", "{ga}");
    let (ua, ga_id) = (id_of(ann), id_of(ga));
    let (_, after) = get(&api, &tb, &format!("/Users/{ub}")).await;
    assert_eq!(after, before, "B's user is untouched");

    // What the scoped bulk created lands in its organisation.
    let (_, info) = api.get(&format!("/user/info?user_id={ua}")).await;
    assert_eq!(
        info["user_info"]["organization_memberships"],
        json!([{"organization_id": "A", "user_role": "internal_user"}]),
        "{info}"
    );
    let (_, team) = api.get(&format!("/team/info?team_id={ga_id}")).await;
    assert_eq!(team["team_info"]["organization_id"], "A", "{team}");
    let found = audited_by(&api, &format!("scim:{a_id}")).await;
    assert!(
        found.contains(&("LiteLLM_UserTable".into(), "created".into(), ua.clone())),
        "{found:?}"
    );
    assert!(
        found.contains(&("LiteLLM_TeamTable".into(), "created".into(), ga_id.clone())),
        "{found:?}"
    );
    assert!(found.iter().all(|(_, _, o)| o != &ub), "{found:?}");
}
