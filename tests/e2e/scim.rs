//! SCIM v2 (`/scim/v2`) end to end, the way identity providers drive it: SCIM tokens and who
//! may use them, Users (create, uniqueness, filters, paging, projection, the PATCH shapes Entra
//! ID and Okta send, PUT, ETags), leavers losing access on the very next request, Groups as
//! teams, a token scoped to one organisation seeing nothing else, the audit trail, and
//! discovery. Every answer is checked for `application/scim+json`, every failure for the SCIM
//! Error schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::MASTER_KEY;
use crate::keys::{Api, secret_of};
use reqwest::Method;
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
const SCIM_JSON: &str = "application/scim+json";

/// One SCIM answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    content_type: String,
    etag: Option<String>,
    location: Option<String>,
    body: Value,
}

/// Percent-encodes a query parameter value (everything but RFC 3986's unreserved characters).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

/// Sends one request under `/scim/v2` (`auth` None: no credential at all).
async fn send(
    api: &Api,
    auth: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
    if_match: Option<&str>,
) -> Resp {
    let mut rb = api
        .http
        .request(method.clone(), api.gw.url(&format!("/scim/v2{path}")));
    if let Some(a) = auth {
        rb = rb.bearer_auth(a);
    }
    if let Some(b) = body {
        rb = rb.header("content-type", SCIM_JSON).body(b.to_string());
    }
    if let Some(m) = if_match {
        rb = rb.header("if-match", m);
    }
    let r = rb.send().await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let etag = header("etag");
    let location = header("location");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
    };
    if !text.is_empty() {
        assert!(
            content_type.starts_with(SCIM_JSON),
            "{method} {path}: {status} answered as `{content_type}`: {text}"
        );
    }
    Resp {
        status,
        content_type,
        etag,
        location,
        body,
    }
}

/// Asserts the SCIM Error schema with `status` and `scim_type` (None: no scimType).
#[track_caller]
fn assert_scim_error(r: &Resp, status: u16, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(r.content_type.starts_with(SCIM_JSON), "{r:?}");
    assert_eq!(r.body["schemas"], json!([ERROR]), "{r:?}");
    assert_eq!(r.body["status"], status.to_string(), "{r:?}");
    match scim_type {
        Some(t) => assert_eq!(r.body["scimType"], t, "{r:?}"),
        None => assert!(r.body.get("scimType").is_none(), "{r:?}"),
    }
    assert!(
        r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{r:?}"
    );
}

/// A SCIM client holding one credential.
struct Scim<'a> {
    api: &'a Api,
    token: String,
}

impl Scim<'_> {
    async fn get(&self, path: &str) -> Resp {
        send(self.api, Some(&self.token), Method::GET, path, None, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        send(
            self.api,
            Some(&self.token),
            Method::POST,
            path,
            Some(&body),
            None,
        )
        .await
    }
    async fn put(&self, path: &str, body: Value) -> Resp {
        send(
            self.api,
            Some(&self.token),
            Method::PUT,
            path,
            Some(&body),
            None,
        )
        .await
    }
    /// PATCH with a PatchOp body holding `ops`.
    async fn patch(&self, path: &str, ops: Value) -> Resp {
        self.patch_if(path, ops, None).await
    }
    async fn patch_if(&self, path: &str, ops: Value, if_match: Option<&str>) -> Resp {
        let body = json!({"schemas": [PATCH_OP], "Operations": ops});
        send(
            self.api,
            Some(&self.token),
            Method::PATCH,
            path,
            Some(&body),
            if_match,
        )
        .await
    }
    async fn delete(&self, path: &str) -> Resp {
        send(
            self.api,
            Some(&self.token),
            Method::DELETE,
            path,
            None,
            None,
        )
        .await
    }

    /// POST /Users, asserting 201; the created resource.
    async fn create_user(&self, body: Value) -> Value {
        let r = self.post("/Users", body).await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body
    }

    /// POST /Users with a plain body for `user_name`; the new user's id.
    async fn new_user(&self, user_name: &str) -> String {
        let u = self
            .create_user(json!({
                "schemas": [USER],
                "userName": user_name,
                "emails": [{"value": user_name, "type": "work", "primary": true}],
                "active": true,
            }))
            .await;
        u["id"].as_str().unwrap().to_string()
    }

    /// POST /Groups, asserting 201; the created resource.
    async fn create_group(&self, name: &str, members: &[&str]) -> Value {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let r = self
            .post(
                "/Groups",
                json!({"schemas": [GROUP], "displayName": name, "members": members}),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body
    }

    /// GET a listing (`resource` is `/Users` or `/Groups`) with query parameters, asserting 200.
    async fn list(&self, resource: &str, params: &[(&str, &str)]) -> Value {
        let r = self.get(&format!("{resource}{}", query(params))).await;
        assert_eq!(r.status, 200, "{params:?}: {r:?}");
        assert_eq!(r.body["schemas"], json!([LIST]), "{r:?}");
        r.body
    }

    /// The sorted userNames a `/Users` filter matches.
    async fn matching(&self, filter: &str) -> Vec<String> {
        let out = self.list("/Users", &[("filter", filter)]).await;
        let mut names = user_names(&out);
        assert_eq!(
            out["totalResults"].as_u64().unwrap() as usize,
            names.len(),
            "{filter}: {out}"
        );
        names.sort();
        names
    }
}

/// The userNames of a ListResponse, in its order.
fn user_names(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no Resources: {list}"))
        .iter()
        .map(|r| r["userName"].as_str().unwrap().to_string())
        .collect()
}

fn ids_of(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// The member ids of a Group resource, sorted.
fn member_ids(group: &Value) -> Vec<String> {
    let mut out: Vec<String> = group["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| x["value"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// A SCIM token made by the master key (optionally scoped to `org`): its secret and key id.
async fn scim_token(api: &Api, org: Option<&str>) -> (String, String) {
    let mut body = json!({"allowed_routes": ["/scim/*"]});
    if let Some(o) = org {
        body["organization_id"] = json!(o);
    }
    let out = api.generate(body).await;
    let key_id = out["key_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no key_id in {out}"))
        .to_string();
    (secret_of(&out), key_id)
}

async fn new_org(api: &Api, id: &str) {
    let (status, out) = api
        .post(
            "/organization/new",
            json!({"organization_id": id, "organization_alias": format!("{id} alias")}),
        )
        .await;
    assert_eq!(status, 200, "org {id}: {out}");
}

/// A chat completion with `secret` on the embedded mock provider.
async fn llm(api: &Api, secret: &str) -> (u16, Value) {
    let body = json!({"model": "mock/x", "messages": [{"role": "user", "content": "hi"}]});
    api.post_as(secret, "/v1/chat/completions", body).await
}

/// Asserts an LLM call was refused, in the OpenAI error shape.
#[track_caller]
fn assert_refused((status, body): &(u16, Value), why: &str) {
    assert!(
        *status == 401 || *status == 403,
        "{why}: expected 401/403, got {status}: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{why}: not an OpenAI error: {body}"
    );
    assert!(body["error"].get("type").is_some(), "{why}: {body}");
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn scim_tokens_work_on_scim_only_and_other_credentials_are_refused() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let scim = Scim {
        api: &api,
        token: token.clone(),
    };
    let out = scim.list("/Users", &[]).await;
    assert_eq!(out["totalResults"], 0, "{out}");
    assert_eq!(out["Resources"], json!([]));
    let r = scim.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, 200, "{r:?}");

    // The token is no management or LLM key.
    let (status, out) = api
        .post_as(&token, "/key/generate", json!({"key_alias": "escalate"}))
        .await;
    assert_eq!(status, 403, "{out}");
    assert!(out["error"]["message"].as_str().is_some(), "{out}");
    let (status, out) = api.get_as(&token, "/v1/models").await;
    assert_eq!(status, 403, "{out}");
    assert!(out["error"].is_object(), "{out}");
    let (status, out) = llm(&api, &token).await;
    assert_eq!(status, 403, "{out}");
    let (status, out) = api.get_as(&token, "/user/list").await;
    assert_eq!(status, 403, "{out}");

    // An internal user's ordinary key may not provision, nor mint a SCIM token.
    let (status, u) = api.post("/user/new", json!({"user_id": "worker"})).await;
    assert_eq!(status, 200, "{u}");
    let worker = secret_of(&u);
    let as_worker = Scim {
        api: &api,
        token: worker.clone(),
    };
    assert_scim_error(&as_worker.get("/Users").await, 403, None);
    let r = as_worker
        .post("/Users", json!({"schemas": [USER], "userName": "sneaky"}))
        .await;
    assert_scim_error(&r, 403, None);
    let (status, out) = api
        .post_as(
            &worker,
            "/key/generate",
            json!({"allowed_routes": ["/scim/*"]}),
        )
        .await;
    assert_eq!(status, 403, "{out}");

    // No credential, or a wrong one: 401 in the SCIM Error format.
    let r = send(&api, None, Method::GET, "/Users", None, None).await;
    assert_scim_error(&r, 401, None);
    let r = send(
        &api,
        Some("sk-not-a-key"),
        Method::GET,
        "/Users",
        None,
        None,
    )
    .await;
    assert_scim_error(&r, 401, None);
    let r = send(
        &api,
        None,
        Method::POST,
        "/Users",
        Some(&json!({"userName": "x"})),
        None,
    )
    .await;
    assert_scim_error(&r, 401, None);

    // The master key may use SCIM too (it is a proxy admin), and sees the worker.
    let master = Scim {
        api: &api,
        token: MASTER_KEY.into(),
    };
    let out = master.list("/Users", &[]).await;
    assert_eq!(user_names(&out), ["worker"], "{out}");

    // Unknown SCIM endpoints answer 404 in the SCIM shape.
    assert_scim_error(&scim.get("/Nothing").await, 404, None);

    // A proxy admin viewer reads but does not provision.
    let (status, v) = api
        .post(
            "/user/new",
            json!({"user_id": "viewer", "user_role": "proxy_admin_viewer"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let viewer = Scim {
        api: &api,
        token: secret_of(&v),
    };
    assert_eq!(viewer.list("/Users", &[]).await["totalResults"], 2);
    let r = viewer
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "by-viewer"}),
        )
        .await;
    assert_scim_error(&r, 403, None);

    // A blocked SCIM token stops working at once; unblocked, it works again.
    let (status, out) = api.post("/key/block", json!({"key": token})).await;
    assert_eq!(status, 200, "{out}");
    let r = scim.get("/Users").await;
    assert!(r.status == 401 || r.status == 403, "{r:?}");
    assert_scim_error(&r, r.status, None);
    let (status, out) = api.post("/key/unblock", json!({"key": token})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(scim.get("/Users").await.status, 200);
}

#[tokio::test]
async fn users_are_created_read_and_unique_by_user_name() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let scim = Scim { api: &api, token };

    let r = scim
        .post(
            "/Users",
            json!({
                "schemas": [USER],
                "userName": "Jane.Doe@Example.com",
                "externalId": "00u1",
                "name": {"givenName": "Jane", "familyName": "Doe"},
                "displayName": "Jane Doe",
                "emails": [{"value": "jane@example.com", "type": "work", "primary": true}],
                "title": "Engineer",
                "active": true,
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let u = r.body.clone();
    let id = u["id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    assert_eq!(u["schemas"], json!([USER]));
    assert_eq!(u["userName"], "Jane.Doe@Example.com");
    assert_eq!(u["externalId"], "00u1");
    assert_eq!(u["name"]["givenName"], "Jane");
    assert_eq!(u["displayName"], "Jane Doe");
    assert_eq!(u["emails"][0]["value"], "jane@example.com");
    assert_eq!(u["title"], "Engineer");
    assert_eq!(u["active"], true);
    assert_eq!(u["meta"]["resourceType"], "User");
    let location = u["meta"]["location"].as_str().unwrap();
    assert!(location.ends_with(&format!("/scim/v2/Users/{id}")), "{u}");
    assert_eq!(r.location.as_deref(), Some(location), "{r:?}");
    let version = u["meta"]["version"].as_str().unwrap();
    assert_eq!(r.etag.as_deref(), Some(version), "{r:?}");
    assert!(u.get("password").is_none());

    // GET by id: the same resource, with its ETag.
    let got = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, u);
    assert_eq!(got.etag.as_deref(), Some(version));
    assert_scim_error(&scim.get("/Users/no-such-id").await, 404, None);

    // The same userName in another case: 409 uniqueness, and the existing user is unchanged.
    let r = scim
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "jane.doe@example.COM", "title": "Impostor",
                   "emails": [{"value": "other@example.com"}]}),
        )
        .await;
    assert_scim_error(&r, 409, Some("uniqueness"));
    let after = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(after.body, u);
    let out = scim.list("/Users", &[]).await;
    assert_eq!(out["totalResults"], 1, "{out}");

    // An email another user holds is also taken.
    let r = scim
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "someone-else",
                   "emails": [{"value": "JANE@example.com", "primary": true}]}),
        )
        .await;
    assert_scim_error(&r, 409, Some("uniqueness"));

    // userName is required.
    let r = scim
        .post(
            "/Users",
            json!({"schemas": [USER], "displayName": "Nameless"}),
        )
        .await;
    assert_scim_error(&r, 400, Some("invalidValue"));
    let r = scim
        .post("/Users", json!({"schemas": [USER], "userName": "  "}))
        .await;
    assert_scim_error(&r, 400, Some("invalidValue"));
    // Not JSON at all.
    let r = send(
        &api,
        Some(&scim.token),
        Method::POST,
        "/Users",
        Some(&json!("{")),
        None,
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    let out = scim.list("/Users", &[]).await;
    assert_eq!(out["totalResults"], 1, "{out}");

    // A rename frees the old userName and email and takes the new ones, for lookups too.
    let r = scim
        .patch(
            &format!("/Users/{id}"),
            json!([
                {"op": "replace", "path": "userName", "value": "jd@example.com"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "jd@example.com"},
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["userName"], "jd@example.com");
    assert_eq!(
        scim.matching(r#"userName eq "jane.doe@example.com""#).await,
        Vec::<String>::new()
    );
    assert_eq!(
        scim.matching(r#"emails.value eq "jane@example.com""#).await,
        Vec::<String>::new()
    );
    assert_eq!(
        scim.matching(r#"userName eq "JD@example.com""#).await,
        ["jd@example.com"]
    );
    assert_eq!(
        scim.matching(r#"emails.value eq "JD@example.com""#).await,
        ["jd@example.com"]
    );
    // A case-only change of one's own name is no conflict.
    let r = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "userName", "value": "JD@example.com"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["userName"], "JD@example.com");
    let other = scim.new_user("Jane.Doe@Example.com").await;
    assert_ne!(other, id);
    let r = scim
        .patch(
            &format!("/Users/{other}"),
            json!([{"op": "replace", "path": "userName", "value": "JD@EXAMPLE.COM"}]),
        )
        .await;
    assert_scim_error(&r, 409, Some("uniqueness"));
}

#[tokio::test]
async fn user_listings_filter_page_sort_and_project() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let scim = Scim { api: &api, token };
    let alice = scim
        .create_user(json!({
            "schemas": [USER],
            "userName": "alice@example.com",
            "externalId": "ext-alice",
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "emails": [{"value": "alice@example.com", "type": "work", "primary": true}],
            "active": true,
        }))
        .await;
    // Distinct lastModified times for the `gt` filter below.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Her work address is not her first (so not her primary) one.
    scim.create_user(json!({
        "schemas": [USER],
        "userName": "Barbara@Corp.test",
        "externalId": "ext-barb",
        "name": {"givenName": "Barbara", "familyName": "Jones"},
        "emails": [
            {"value": "barb@corp.test", "type": "home"},
            {"value": "barbara.work@corp.test", "type": "work"},
        ],
        "active": false,
    }))
    .await;
    scim.create_user(json!({
        "schemas": [USER],
        "userName": "bart@example.org",
        "externalId": "ext-bart",
        "name": {"givenName": "Bart"},
        "emails": [{"value": "bart@example.org", "type": "work"}],
        "title": "Engineer",
    }))
    .await;
    let (a, b, t) = ("alice@example.com", "Barbara@Corp.test", "bart@example.org");

    // Filters.
    let cases: Vec<(String, Vec<&str>)> = vec![
        (r#"userName eq "ALICE@example.com""#.into(), vec![a]),
        (r#"username EQ "barbara@corp.test""#.into(), vec![b]),
        (r#"userName eq "nobody@example.com""#.into(), vec![]),
        (
            r#"emails[type eq "work" and value eq "barb@corp.test"]"#.into(),
            vec![],
        ),
        (r#"emails.value eq "BARB@corp.test""#.into(), vec![b]),
        (
            r#"emails[type eq "work" and value co "barbara.work"]"#.into(),
            vec![b],
        ),
        (r#"emails[type eq "home"]"#.into(), vec![b]),
        (r#"emails.value co "@example""#.into(), vec![a, t]),
        (r#"emails.value ew ".org""#.into(), vec![t]),
        (r#"name.givenName sw "Bar""#.into(), vec![b, t]),
        (r#"name.familyName pr"#.into(), vec![a, b]),
        (r#"externalId eq "ext-bart""#.into(), vec![t]),
        // externalId is caseExact.
        (r#"externalId eq "EXT-BART""#.into(), vec![]),
        (r#"active eq false"#.into(), vec![b]),
        (r#"not (active eq false)"#.into(), vec![a, t]),
        (r#"title eq "engineer""#.into(), vec![t]),
        (
            r#"(name.givenName sw "Bar" or userName eq "alice@example.com") and not (active eq false)"#
                .into(),
            vec![a, t],
        ),
        (
            r#"name.givenName sw "Bar" and (title pr or externalId eq "ext-barb")"#.into(),
            vec![b, t],
        ),
        (
            format!(
                r#"meta.lastModified gt "{}""#,
                alice["meta"]["lastModified"].as_str().unwrap()
            ),
            vec![b, t],
        ),
        (
            format!(
                r#"meta.lastModified le "{}""#,
                alice["meta"]["lastModified"].as_str().unwrap()
            ),
            vec![a],
        ),
    ];
    for (filter, want) in &cases {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(scim.matching(filter).await, want, "filter {filter}");
    }

    // An unknown attribute is refused, even when nothing could match; so is bad syntax.
    for bad in [
        r#"nosuch eq "x""#,
        r#"userName eq "nobody" and nosuch eq "x""#,
        r#"name.nosuch eq "x""#,
        r#"userName eq"#,
        r#"userName xx "a""#,
        r#"(userName eq "a""#,
        r#"userName eq "a" and"#,
        // Only PATCH paths may follow a value filter with a sub-attribute (RFC 7644 ABNF).
        r#"emails[type eq "work"].value eq "alice@example.com""#,
    ] {
        let r = scim
            .get(&format!("/Users{}", query(&[("filter", bad)])))
            .await;
        assert_scim_error(&r, 400, Some("invalidFilter"));
    }

    // Sorting and paging.
    let sort = [("sortBy", "userName")];
    let out = scim.list("/Users", &sort).await;
    assert_eq!(user_names(&out), [a, b, t], "{out}");
    assert_eq!(out["totalResults"], 3);
    assert_eq!(out["startIndex"], 1);
    assert_eq!(out["itemsPerPage"], 3);
    let out = scim
        .list(
            "/Users",
            &[("sortBy", "userName"), ("sortOrder", "descending")],
        )
        .await;
    assert_eq!(user_names(&out), [t, b, a], "{out}");
    let out = scim
        .list("/Users", &[("sortBy", "name.givenName"), ("count", "2")])
        .await;
    assert_eq!(user_names(&out), [a, b], "{out}");
    assert_eq!(out["totalResults"], 3);
    let out = scim.list("/Users", &[("count", "0")]).await;
    assert_eq!(out["totalResults"], 3, "{out}");
    assert_eq!(out["itemsPerPage"], 0, "{out}");
    assert!(
        out.get("Resources")
            .is_none_or(|r| r.as_array().is_some_and(Vec::is_empty)),
        "{out}"
    );
    let page = |start: &'static str| {
        [
            ("sortBy", "userName"),
            ("startIndex", start),
            ("count", "1"),
        ]
    };
    let out = scim.list("/Users", &page("0")).await;
    assert_eq!(out["startIndex"], 1, "{out}");
    assert_eq!(user_names(&out), [a]);
    let out = scim.list("/Users", &page("-5")).await;
    assert_eq!(user_names(&out), [a], "{out}");
    let out = scim.list("/Users", &page("2")).await;
    assert_eq!(user_names(&out), [b], "{out}");
    assert_eq!(out["totalResults"], 3);
    assert_eq!(out["itemsPerPage"], 1);
    let out = scim.list("/Users", &page("3")).await;
    assert_eq!(user_names(&out), [t], "{out}");
    let out = scim
        .list("/Users", &[("startIndex", "10"), ("count", "5")])
        .await;
    assert_eq!(out["totalResults"], 3, "{out}");
    assert_eq!(out["itemsPerPage"], 0);
    assert!(
        out.get("Resources")
            .is_none_or(|r| r.as_array().is_some_and(Vec::is_empty)),
        "{out}"
    );
    let r = scim.get("/Users?count=many").await;
    assert_scim_error(&r, 400, Some("invalidValue"));

    // Projection.
    let out = scim
        .list(
            "/Users",
            &[
                ("filter", r#"userName eq "alice@example.com""#),
                ("attributes", "userName,emails"),
            ],
        )
        .await;
    let r = &out["Resources"][0];
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["emails", "id", "schemas", "userName"], "{r}");
    assert_eq!(r["emails"][0]["value"], "alice@example.com");
    let out = scim
        .list(
            "/Users",
            &[
                ("filter", r#"userName eq "alice@example.com""#),
                ("excludedAttributes", "name"),
            ],
        )
        .await;
    let r = &out["Resources"][0];
    assert!(r.get("name").is_none(), "{r}");
    assert_eq!(r["userName"], a);
    assert_eq!(r["externalId"], "ext-alice");
    assert!(r["emails"].is_array(), "{r}");
    assert!(r["meta"].is_object(), "{r}");
    let id = alice["id"].as_str().unwrap();
    let r = scim
        .get(&format!("/Users/{id}?attributes=name.givenName"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["name"], json!({"givenName": "Alice"}), "{r:?}");
    assert_eq!(r.body["id"], id);
    assert!(r.body.get("emails").is_none(), "{r:?}");

    // POST /Users/.search with a SearchRequest body.
    let r = scim
        .post(
            "/Users/.search",
            json!({
                "schemas": [SEARCH],
                "filter": r#"name.givenName sw "b""#,
                "attributes": ["userName"],
                "sortBy": "userName",
                "sortOrder": "descending",
                "startIndex": 1,
                "count": 10,
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["schemas"], json!([LIST]));
    assert_eq!(r.body["totalResults"], 2);
    assert_eq!(user_names(&r.body), [t, b], "{r:?}");
    assert!(r.body["Resources"][0].get("name").is_none(), "{r:?}");
    let r = scim
        .post(
            "/Users/.search",
            json!({"schemas": [SEARCH], "filter": "bogus eq 1"}),
        )
        .await;
    assert_scim_error(&r, 400, Some("invalidFilter"));
}

/// `emails.value eq` and `emails[value eq ...]` must find a user by any of its addresses, not
/// only by the primary one (the one a Portcullis user's `user_email` holds).
#[tokio::test]
async fn an_email_filter_finds_a_user_by_a_secondary_address() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let scim = Scim { api: &api, token };
    scim.create_user(json!({
        "schemas": [USER],
        "userName": "dana",
        "emails": [
            {"value": "dana@home.test", "type": "home"},
            {"value": "dana@work.test", "type": "work"},
        ],
    }))
    .await;
    let dana = vec!["dana".to_string()];
    // Control: a filter the server evaluates resource by resource finds her.
    assert_eq!(
        scim.matching(r#"emails.value co "dana@work.test""#).await,
        dana
    );
    for filter in [
        r#"emails.value eq "dana@work.test""#,
        r#"emails eq "dana@work.test""#,
        r#"emails[value eq "dana@work.test"]"#,
        r#"emails[type eq "work" and value eq "dana@work.test"]"#,
        r#"emails[value eq "dana@work.test"] and userName eq "dana""#,
    ] {
        assert_eq!(scim.matching(filter).await, dana, "filter {filter}");
    }
}

/// `externalId eq` is answered from an index (`user_external_ids_v1`) kept in the same
/// transactions as the users: exact (externalId is caseExact), several users may share one, and
/// a PUT, PATCH, SCIM DELETE or administrator's delete moves or removes the user's row.
#[tokio::test]
async fn an_external_id_filter_finds_exactly_its_users_as_they_change() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let scim = Scim { api: &api, token };
    let user = |name: &str, external_id: Option<&str>| {
        let mut body = json!({"schemas": [USER], "userName": name});
        if let Some(x) = external_id {
            body["externalId"] = json!(x);
        }
        body
    };
    let ann = scim.create_user(user("ann", Some("Ext-1"))).await;
    let ann = ann["id"].as_str().unwrap().to_string();
    // Neighbours in the index: a longer value with the same start, another case, none at all.
    scim.create_user(user("bob", Some("Ext-10"))).await;
    let cy = scim.create_user(user("cy", Some("ext-1"))).await;
    let cy = cy["id"].as_str().unwrap().to_string();
    scim.create_user(user("dee", None)).await;
    let none: Vec<String> = Vec::new();
    let by = |x: &str| format!(r#"externalId eq "{x}""#);
    assert_eq!(scim.matching(&by("Ext-1")).await, ["ann"]);
    assert_eq!(scim.matching(&by("ext-1")).await, ["cy"]);
    assert_eq!(scim.matching(&by("Ext-10")).await, ["bob"]);
    assert_eq!(scim.matching(&by("Ext-")).await, none);
    assert_eq!(scim.matching(&by("EXT-1")).await, none);
    assert_eq!(
        scim.matching(&format!("{USER}:externalId eq \"Ext-1\""))
            .await,
        ["ann"]
    );
    assert_eq!(
        scim.matching(r#"externalId eq "Ext-1" and userName eq "ann""#)
            .await,
        ["ann"]
    );
    assert_eq!(
        scim.matching(r#"externalId eq "Ext-1" and userName eq "bob""#)
            .await,
        none
    );
    // Control: the same question asked resource by resource.
    assert_eq!(
        scim.matching(r#"externalId sw "Ext-1""#).await,
        ["ann", "bob"]
    );
    // Two users may carry the same externalId (it is not unique).
    scim.create_user(user("eve", Some("shared"))).await;
    scim.create_user(user("fay", Some("shared"))).await;
    assert_eq!(scim.matching(&by("shared")).await, ["eve", "fay"]);

    // PUT moves ann's row.
    let r = scim
        .put(&format!("/Users/{ann}"), user("ann", Some("Ext-2")))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(scim.matching(&by("Ext-1")).await, none);
    assert_eq!(scim.matching(&by("Ext-2")).await, ["ann"]);
    // So does PATCH, with and without a path; removing it leaves no row.
    let r = scim
        .patch(
            &format!("/Users/{ann}"),
            json!([{"op": "replace", "path": "externalId", "value": "Ext-3"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(scim.matching(&by("Ext-2")).await, none);
    assert_eq!(scim.matching(&by("Ext-3")).await, ["ann"]);
    let r = scim
        .patch(
            &format!("/Users/{ann}"),
            json!([{"op": "Replace", "value": {"externalId": "Ext-4"}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(scim.matching(&by("Ext-3")).await, none);
    assert_eq!(scim.matching(&by("Ext-4")).await, ["ann"]);
    let r = scim
        .patch(
            &format!("/Users/{ann}"),
            json!([{"op": "remove", "path": "externalId"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.get("externalId").is_none(), "{r:?}");
    assert_eq!(scim.matching(&by("Ext-4")).await, none);
    let r = scim
        .patch(
            &format!("/Users/{ann}"),
            json!([{"op": "add", "path": "externalId", "value": "Ext-5"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(scim.matching(&by("Ext-5")).await, ["ann"]);

    // A SCIM DELETE and an administrator's delete take the row with the user.
    assert_eq!(scim.delete(&format!("/Users/{cy}")).await.status, 204);
    assert_eq!(scim.matching(&by("ext-1")).await, none);
    let eve = scim.list("/Users", &[("filter", &by("shared"))]).await;
    let eve = eve["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["userName"] == "eve")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .unwrap();
    let (status, out) = api.post("/user/delete", json!({"user_ids": [eve]})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(scim.matching(&by("shared")).await, ["fay"]);

    // The index is stored: a restart answers the same.
    let token = scim.token.clone();
    let api = Api::on(api.gw.restart());
    let scim = Scim { api: &api, token };
    assert_eq!(scim.matching(&by("Ext-5")).await, ["ann"]);
    assert_eq!(scim.matching(&by("Ext-10")).await, ["bob"]);
    assert_eq!(scim.matching(&by("shared")).await, ["fay"]);
    assert_eq!(scim.matching(&by("Ext-1")).await, none);
}

#[tokio::test]
async fn patch_accepts_the_shapes_identity_providers_send() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let scim = Scim { api: &api, token };
    let manager = scim.new_user("boss@example.com").await;
    let u = scim
        .create_user(json!({
            "schemas": [USER],
            "userName": "carol@example.com",
            "name": {"givenName": "Carol", "familyName": "Jones"},
            "displayName": "Carol Jones",
            "emails": [{"value": "carol@example.com", "type": "work", "primary": true}],
            "title": "Manager",
            "active": true,
        }))
        .await;
    let id = u["id"].as_str().unwrap().to_string();
    let path = format!("/Users/{id}");

    // Entra ID: capitalised op, the boolean as a string.
    let r = scim
        .patch(
            &path,
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["active"], false, "{r:?}");
    assert_eq!(r.body["userName"], "carol@example.com");
    assert_ne!(r.body["meta"]["version"], u["meta"]["version"]);
    assert_eq!(r.etag.as_deref(), r.body["meta"]["version"].as_str());
    assert_eq!(scim.get(&path).await.body["active"], false);

    // Okta: no path, the attributes as a value object.
    let r = scim
        .patch(&path, json!([{"op": "replace", "value": {"active": true}}]))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["active"], true, "{r:?}");

    // A value filter in the path.
    let r = scim
        .patch(
            &path,
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value",
                    "value": "carol.jones@example.com"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["emails"].as_array().unwrap().len(), 1, "{r:?}");
    assert_eq!(r.body["emails"][0]["value"], "carol.jones@example.com");
    assert_eq!(r.body["emails"][0]["type"], "work");

    // A sub-attribute: the others stay.
    let r = scim
        .patch(
            &path,
            json!([{"op": "replace", "path": "name.givenName", "value": "Caroline"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["name"],
        json!({"givenName": "Caroline", "familyName": "Jones"})
    );

    // The enterprise extension, by URN paths.
    let r = scim
        .patch(
            &path,
            json!([
                {"op": "Replace", "path": format!("{ENTERPRISE}:manager"), "value": {"value": manager}},
                {"op": "Add", "path": format!("{ENTERPRISE}:department"), "value": "R&D"},
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body[ENTERPRISE]["manager"]["value"], manager.as_str());
    assert_eq!(r.body[ENTERPRISE]["department"], "R&D");
    let schemas = r.body["schemas"].as_array().unwrap();
    assert!(schemas.contains(&json!(USER)) && schemas.contains(&json!(ENTERPRISE)));

    // No path, a value object with dotted and URN-qualified keys (Entra ID).
    let r = scim
        .patch(
            &path,
            json!([{"op": "Replace", "value": {
                "name.familyName": "Brown",
                "displayName": "Caroline Brown",
                format!("{ENTERPRISE}:department"): "Sales",
            }}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["name"],
        json!({"givenName": "Caroline", "familyName": "Brown"})
    );
    assert_eq!(r.body["displayName"], "Caroline Brown");
    assert_eq!(r.body[ENTERPRISE]["department"], "Sales");
    assert_eq!(r.body[ENTERPRISE]["manager"]["value"], manager.as_str());

    // remove.
    let r = scim
        .patch(&path, json!([{"op": "remove", "path": "title"}]))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.get("title").is_none(), "{r:?}");
    let current = scim.get(&path).await;
    assert!(current.body.get("title").is_none());

    // Read-only and unknown attributes: refused, nothing changes.
    let r = scim
        .patch(
            &path,
            json!([{"op": "replace", "path": "id", "value": "someone-else"}]),
        )
        .await;
    assert_scim_error(&r, 400, Some("mutability"));
    let r = scim
        .patch(
            &path,
            json!([{"op": "replace", "path": "nosuch", "value": "x"}]),
        )
        .await;
    assert_scim_error(&r, 400, Some("invalidPath"));
    let r = scim
        .patch(
            &path,
            json!([
                {"op": "replace", "path": "title", "value": "Half done"},
                {"op": "replace", "path": "name.nosuch", "value": "x"},
            ]),
        )
        .await;
    assert_scim_error(&r, 400, Some("invalidPath"));
    let r = scim
        .patch(&path, json!([{"op": "frobnicate", "path": "title"}]))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(scim.get(&path).await.body, current.body);
    assert_scim_error(
        &scim
            .patch(
                "/Users/no-such-id",
                json!([{"op": "replace", "path": "title", "value": "x"}]),
            )
            .await,
        404,
        None,
    );

    // If-Match: a stale version is refused, the current one and `*` are not.
    let stale = u["meta"]["version"].as_str().unwrap();
    let etag = current.etag.clone().unwrap();
    let op = json!([{"op": "replace", "path": "title", "value": "Director"}]);
    let r = scim.patch_if(&path, op.clone(), Some(stale)).await;
    assert_scim_error(&r, 412, None);
    assert_eq!(scim.get(&path).await.body, current.body);
    let r = scim.patch_if(&path, op.clone(), Some(&etag)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["title"], "Director");
    // The version we just used is stale now.
    let r = scim.patch_if(&path, op.clone(), Some(&etag)).await;
    assert_scim_error(&r, 412, None);
    let r = scim
        .patch_if(
            &path,
            json!([{"op": "replace", "path": "title", "value": "VP"}]),
            Some("*"),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["title"], "VP");
    let r = send(
        &api,
        Some(&scim.token),
        Method::DELETE,
        &path,
        None,
        Some(stale),
    )
    .await;
    assert_scim_error(&r, 412, None);

    // PUT replaces the whole resource: what is not sent is gone.
    let r = scim
        .put(
            &path,
            json!({
                "schemas": [USER],
                "userName": "carol@example.com",
                "emails": [{"value": "carol@example.com", "type": "work", "primary": true}],
                "active": true,
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let got = scim.get(&path).await.body;
    assert_eq!(got, r.body);
    for gone in ["name", "displayName", "title", ENTERPRISE] {
        assert!(got.get(gone).is_none(), "{gone} survived PUT: {got}");
    }
    assert_eq!(got["schemas"], json!([USER]));
    assert_eq!(got["emails"][0]["value"], "carol@example.com");
    assert_eq!(got["id"], id.as_str());
    // PUT may not take another user's name.
    let r = scim
        .put(
            &path,
            json!({"schemas": [USER], "userName": "BOSS@example.com"}),
        )
        .await;
    assert_scim_error(&r, 409, Some("uniqueness"));
    let r = scim
        .put(&path, json!({"schemas": [USER], "displayName": "x"}))
        .await;
    assert_scim_error(&r, 400, Some("invalidValue"));
    assert_eq!(scim.get(&path).await.body, got);
}

#[tokio::test]
async fn a_deactivated_or_deleted_user_loses_access_on_the_next_request() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let scim = Scim { api: &api, token };
    let id = scim.new_user("leaver@example.com").await;
    let path = format!("/Users/{id}");
    let key = api.generate(json!({"user_id": id})).await;
    let secret = secret_of(&key);
    let (status, out) = llm(&api, &secret).await;
    assert_eq!(status, 200, "{out}");

    let entra = |v: &str| json!([{"op": "Replace", "path": "active", "value": v}]);
    // Deactivated: refused on the very next request.
    let r = scim.patch(&path, entra("False")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_refused(&llm(&api, &secret).await, "after SCIM active=false");
    assert_refused(
        &api.get_as(&secret, "/v1/models").await,
        "listing models after SCIM active=false",
    );
    let (status, _) = api.get_as(&secret, "/key/info").await;
    assert!(status == 401 || status == 403, "{status}");
    // Reactivated: works again at once.
    let r = scim.patch(&path, entra("True")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let (status, out) = llm(&api, &secret).await;
    assert_eq!(status, 200, "after SCIM active=true: {out}");

    // An administrator's block is not undone by the IdP reactivating the user.
    let (status, out) = api
        .post("/user/update", json!({"user_id": id, "blocked": true}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_refused(&llm(&api, &secret).await, "blocked by an admin");
    assert_eq!(scim.patch(&path, entra("False")).await.status, 200);
    assert_refused(&llm(&api, &secret).await, "blocked and deactivated");
    let r = scim.patch(&path, entra("True")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["active"], true);
    assert_refused(
        &llm(&api, &secret).await,
        "admin block after SCIM reactivation",
    );
    let (status, out) = api
        .post("/user/update", json!({"user_id": id, "blocked": false}))
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = llm(&api, &secret).await;
    assert_eq!(status, 200, "after the admin's unblock: {out}");

    // And an IdP deactivation survives an administrator's unblock.
    assert_eq!(scim.patch(&path, entra("False")).await.status, 200);
    let (status, out) = api
        .post("/user/update", json!({"user_id": id, "blocked": false}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_refused(
        &llm(&api, &secret).await,
        "SCIM deactivation after an admin unblock",
    );
    assert_eq!(scim.patch(&path, entra("True")).await.status, 200);
    assert_eq!(llm(&api, &secret).await.0, 200);

    // Deleted: the key fails on the next request and is gone with the user.
    let r = scim.delete(&path).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.body, Value::Null);
    assert_refused(&llm(&api, &secret).await, "after SCIM delete");
    assert_scim_error(&scim.get(&path).await, 404, None);
    assert_scim_error(&scim.delete(&path).await, 404, None);
    assert_scim_error(&scim.patch(&path, entra("True")).await, 404, None);
    let (status, out) = api.get(&format!("/key/info?key={secret}")).await;
    assert_eq!(status, 404, "{out}");
    let (status, out) = api.get(&format!("/user/info?user_id={id}")).await;
    assert_eq!(status, 404, "{out}");
    // Its userName is free again.
    scim.new_user("leaver@example.com").await;
}

#[tokio::test]
async fn deactivation_and_scim_state_survive_a_restart() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let (id, secret, before) = {
        let scim = Scim {
            api: &api,
            token: token.clone(),
        };
        let id = scim.new_user("Restart@Example.com").await;
        let secret = secret_of(&api.generate(json!({"user_id": id})).await);
        let r = scim
            .patch(
                &format!("/Users/{id}"),
                json!([{"op": "Replace", "path": "active", "value": "False"}]),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        (id, secret, r.body)
    };
    let api = Api::on(api.gw.restart());
    let scim = Scim { api: &api, token };
    assert_refused(&llm(&api, &secret).await, "deactivated, after a restart");
    let got = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(got.status, 200, "{got:?}");
    // The same resource (the port, so `meta.location`, is new).
    let without_location = |mut v: Value| {
        v["meta"].as_object_mut().unwrap().remove("location");
        v
    };
    assert_eq!(without_location(got.body), without_location(before));
    let r = scim
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "restart@example.COM"}),
        )
        .await;
    assert_scim_error(&r, 409, Some("uniqueness"));
    assert_eq!(
        scim.matching(r#"userName eq "restart@example.com""#).await,
        ["Restart@Example.com"]
    );
    let r = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": true}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(llm(&api, &secret).await.0, 200);
}

#[tokio::test]
async fn groups_are_teams_and_their_members_team_members() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let scim = Scim { api: &api, token };
    let u1 = scim.new_user("g1@example.com").await;
    let u2 = scim.new_user("g2@example.com").await;
    let u3 = scim.new_user("g3@example.com").await;

    let r = scim
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Engineering", "externalId": "grp-1",
                   "members": [{"value": u1}, {"value": u2}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let g = r.body.clone();
    let gid = g["id"].as_str().unwrap().to_string();
    let gpath = format!("/Groups/{gid}");
    assert_eq!(g["displayName"], "Engineering");
    assert_eq!(g["externalId"], "grp-1");
    assert_eq!(member_ids(&g), sorted(&[&u1, &u2]));
    assert_eq!(r.location.as_deref(), g["meta"]["location"].as_str());
    assert_eq!(r.etag.as_deref(), g["meta"]["version"].as_str());

    let team_members = |info: &Value| {
        let mut v: Vec<String> = info["team_info"]["members_with_roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user_id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let (status, info) = api.get(&format!("/team/info?team_id={gid}")).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["team_info"]["team_alias"], "Engineering");
    assert_eq!(team_members(&info), sorted(&[&u1, &u2]), "{info}");
    let (_, user_info) = api.get(&format!("/user/info?user_id={u1}")).await;
    let teams = user_info["user_info"]["teams"].as_array().unwrap();
    assert!(teams.contains(&json!(gid)), "{user_info}");

    // A member naming no user: 400, no team made.
    let r = scim
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Ghosts", "members": [{"value": u1}, {"value": "no-such-user"}]}),
        )
        .await;
    assert_scim_error(&r, 400, Some("invalidValue"));
    let out = scim
        .list("/Groups", &[("filter", r#"displayName eq "Ghosts""#)])
        .await;
    assert_eq!(out["totalResults"], 0, "{out}");
    let (_, teams) = api.get("/team/list").await;
    assert_eq!(teams.as_array().unwrap().len(), 1, "{teams}");
    // A displayName is required.
    let r = scim.post("/Groups", json!({"schemas": [GROUP]})).await;
    assert_scim_error(&r, 400, Some("invalidValue"));

    // Add a member.
    let r = scim
        .patch(
            &gpath,
            json!([{"op": "add", "path": "members", "value": [{"value": u3}]}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(member_ids(&r.body), sorted(&[&u1, &u2, &u3]));
    // Okta removes by a value filter.
    let r = scim
        .patch(
            &gpath,
            json!([{"op": "remove", "path": format!("members[value eq \"{u1}\"]")}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(member_ids(&r.body), sorted(&[&u2, &u3]));
    // Entra ID removes with the member in `value`.
    let r = scim
        .patch(
            &gpath,
            json!([{"op": "Remove", "path": "members", "value": [{"value": u2}]}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(member_ids(&r.body), sorted(&[&u3]));
    // Adding someone who does not exist is refused and changes nothing.
    let r = scim
        .patch(
            &gpath,
            json!([{"op": "add", "path": "members", "value": [{"value": "ghost"}]}]),
        )
        .await;
    assert_scim_error(&r, 400, Some("invalidValue"));
    // Rename (Okta also sends the unchanged id).
    let r = scim
        .patch(
            &gpath,
            json!([{"op": "replace", "value": {"id": gid, "displayName": "Platform"}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["displayName"], "Platform");
    assert_eq!(member_ids(&r.body), sorted(&[&u3]));

    let (_, info) = api.get(&format!("/team/info?team_id={gid}")).await;
    assert_eq!(info["team_info"]["team_alias"], "Platform");
    assert_eq!(team_members(&info), sorted(&[&u3]), "{info}");
    let got = scim.get(&gpath).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["displayName"], "Platform");
    let u3r = scim.get(&format!("/Users/{u3}")).await.body;
    assert_eq!(u3r["groups"].as_array().unwrap().len(), 1, "{u3r}");
    assert_eq!(u3r["groups"][0]["value"], gid.as_str());
    assert_eq!(u3r["groups"][0]["display"], "Platform");
    let u1r = scim.get(&format!("/Users/{u1}")).await.body;
    assert!(
        u1r.get("groups")
            .is_none_or(|g| g.as_array().is_some_and(Vec::is_empty)),
        "{u1r}"
    );
    let out = scim
        .list("/Groups", &[("filter", r#"displayName eq "platform""#)])
        .await;
    assert_eq!(ids_of(&out), [gid.as_str()]);
    let out = scim
        .list(
            "/Groups",
            &[("filter", &format!(r#"members[value eq "{u3}"]"#))],
        )
        .await;
    assert_eq!(ids_of(&out), [gid.as_str()], "{out}");

    // Entra ID reads groups without their members; Okta replaces the whole member list.
    let out = scim
        .list(
            "/Groups",
            &[
                ("filter", r#"displayName eq "Platform""#),
                ("excludedAttributes", "members"),
            ],
        )
        .await;
    assert_eq!(out["totalResults"], 1, "{out}");
    assert!(out["Resources"][0].get("members").is_none(), "{out}");
    assert_eq!(out["Resources"][0]["displayName"], "Platform");
    let r = scim
        .patch(
            &gpath,
            json!([{"op": "replace", "path": "members", "value": [{"value": u1}, {"value": u2}]}]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(member_ids(&r.body), sorted(&[&u1, &u2]));

    // PUT replaces the member list.
    let r = scim
        .put(
            &gpath,
            json!({"schemas": [GROUP], "displayName": "Platform", "members": [{"value": u1}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(member_ids(&r.body), sorted(&[&u1]));
    let (_, info) = api.get(&format!("/team/info?team_id={gid}")).await;
    assert_eq!(team_members(&info), sorted(&[&u1]), "{info}");

    // DELETE.
    let r = scim.delete(&gpath).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_scim_error(&scim.get(&gpath).await, 404, None);
    let (status, _) = api.get(&format!("/team/info?team_id={gid}")).await;
    assert_eq!(status, 404);
    let u1r = scim.get(&format!("/Users/{u1}")).await.body;
    assert!(u1r.get("groups").is_none_or(|g| g == &json!([])), "{u1r}");
    let (_, user_info) = api.get(&format!("/user/info?user_id={u1}")).await;
    assert_eq!(user_info["user_info"]["teams"], json!([]), "{user_info}");
}

#[tokio::test]
async fn an_org_scoped_token_sees_and_touches_only_its_organisation() {
    let api = Api::start();
    new_org(&api, "A").await;
    new_org(&api, "B").await;
    let (ta, _) = scim_token(&api, Some("A")).await;
    let (tb, _) = scim_token(&api, Some("B")).await;
    let (tu, _) = scim_token(&api, None).await;
    let a = Scim {
        api: &api,
        token: ta,
    };
    let b = Scim {
        api: &api,
        token: tb,
    };
    let all = Scim {
        api: &api,
        token: tu,
    };

    let ua = a.new_user("ann@a.test").await;
    let ub = b.new_user("bob@b.test").await;
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "plain", "user_email": "plain@proxy.test", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{out}");

    // What a scoped token creates lands in its organisation.
    let (_, info) = api.get(&format!("/user/info?user_id={ua}")).await;
    assert_eq!(
        info["user_info"]["organization_memberships"],
        json!([{"organization_id": "A", "user_role": "internal_user"}]),
        "{info}"
    );
    let (_, org) = api.get("/organization/info?organization_id=A").await;
    let members: Vec<&str> = org["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(members, [ua.as_str()], "{org}");
    let ga = a.create_group("A team", &[&ua]).await;
    let ga_id = ga["id"].as_str().unwrap().to_string();
    let (_, team) = api.get(&format!("/team/info?team_id={ga_id}")).await;
    assert_eq!(team["team_info"]["organization_id"], "A", "{team}");
    let gb = b.create_group("B team", &[&ub]).await;
    let gb_id = gb["id"].as_str().unwrap().to_string();
    let (_, team) = api.get(&format!("/team/info?team_id={gb_id}")).await;
    assert_eq!(team["team_info"]["organization_id"], "B", "{team}");

    // Listings: only its own.
    let out = a.list("/Users", &[]).await;
    assert_eq!(out["totalResults"], 1, "{out}");
    assert_eq!(ids_of(&out), [ua.as_str()]);
    let out = b.list("/Users", &[]).await;
    assert_eq!(ids_of(&out), [ub.as_str()], "{out}");
    let out = a.list("/Groups", &[]).await;
    assert_eq!(out["totalResults"], 1, "{out}");
    assert_eq!(ids_of(&out), [ga_id.as_str()]);
    let out = a.list("/Users", &[("count", "0")]).await;
    assert_eq!(out["totalResults"], 1, "{out}");
    // Filters, including those answered from an index, find nothing outside.
    for f in [
        r#"userName eq "bob@b.test""#.to_string(),
        r#"emails.value eq "bob@b.test""#.to_string(),
        r#"emails[value eq "bob@b.test"]"#.to_string(),
        r#"userName eq "plain@proxy.test""#.to_string(),
        format!(r#"userName eq "{ub}""#),
        r#"userName eq "plain""#.to_string(),
        r#"emails.value co "b.test""#.to_string(),
    ] {
        let out = a.list("/Users", &[("filter", &f)]).await;
        assert_eq!(out["totalResults"], 0, "{f}: {out}");
    }
    let out = a
        .list("/Users", &[("filter", r#"emails.value co "proxy""#)])
        .await;
    assert_eq!(out["totalResults"], 0);
    let out = a
        .list("/Groups", &[("filter", r#"displayName eq "B team""#)])
        .await;
    assert_eq!(out["totalResults"], 0, "{out}");
    let r = a
        .post(
            "/Users/.search",
            json!({"schemas": [SEARCH], "filter": "userName eq \"bob@b.test\""}),
        )
        .await;
    assert_eq!(r.body["totalResults"], 0, "{r:?}");

    // Another organisation's (or the proxy's) users and groups do not exist for it.
    let before_b = b.get(&format!("/Users/{ub}")).await.body;
    for target in [format!("/Users/{ub}"), "/Users/plain".to_string()] {
        assert_scim_error(&a.get(&target).await, 404, None);
        let r = a
            .put(
                &target,
                json!({"schemas": [USER], "userName": "hijacked@a.test"}),
            )
            .await;
        assert_scim_error(&r, 404, None);
        let r = a
            .patch(
                &target,
                json!([{"op": "Replace", "path": "active", "value": "False"}]),
            )
            .await;
        assert_scim_error(&r, 404, None);
        assert_scim_error(&a.delete(&target).await, 404, None);
    }
    assert_eq!(b.get(&format!("/Users/{ub}")).await.body, before_b);
    let (status, info) = api.get("/user/info?user_id=plain").await;
    assert_eq!(status, 200, "{info}");
    let before_gb = b.get(&format!("/Groups/{gb_id}")).await.body;
    let gb_path = format!("/Groups/{gb_id}");
    assert_scim_error(&a.get(&gb_path).await, 404, None);
    let r = a
        .put(
            &gb_path,
            json!({"schemas": [GROUP], "displayName": "taken"}),
        )
        .await;
    assert_scim_error(&r, 404, None);
    let r = a
        .patch(
            &gb_path,
            json!([{"op": "add", "path": "members", "value": [{"value": ua}]}]),
        )
        .await;
    assert_scim_error(&r, 404, None);
    assert_scim_error(&a.delete(&gb_path).await, 404, None);
    assert_eq!(b.get(&gb_path).await.body, before_gb);

    // Nor may it make them members of its groups.
    let ga_path = format!("/Groups/{ga_id}");
    for outsider in [ub.as_str(), "plain"] {
        let r = a
            .patch(
                &ga_path,
                json!([{"op": "add", "path": "members", "value": [{"value": outsider}]}]),
            )
            .await;
        assert_scim_error(&r, 400, Some("invalidValue"));
        let r = a
            .post(
                "/Groups",
                json!({"schemas": [GROUP], "displayName": "sneaky", "members": [{"value": outsider}]}),
            )
            .await;
        assert_scim_error(&r, 400, Some("invalidValue"));
    }
    assert_eq!(member_ids(&a.get(&ga_path).await.body), [ua.as_str()]);
    let (_, info) = api.get(&format!("/user/info?user_id={ub}")).await;
    assert_eq!(
        info["user_info"]["organization_memberships"],
        json!([{"organization_id": "B", "user_role": "internal_user"}]),
        "{info}"
    );

    // The unscoped token sees everything.
    let out = all.list("/Users", &[]).await;
    let mut want = vec![ua.clone(), ub.clone(), "plain".to_string()];
    want.sort();
    assert_eq!(ids_of(&out), want, "{out}");
    let out = all.list("/Groups", &[]).await;
    let mut want = vec![ga_id.clone(), gb_id.clone()];
    want.sort();
    assert_eq!(ids_of(&out), want, "{out}");
    assert_eq!(all.get(&format!("/Users/{ub}")).await.status, 200);
    assert_eq!(all.get(&ga_path).await.status, 200);
    let out = all
        .list("/Users", &[("filter", r#"userName eq "plain@proxy.test""#)])
        .await;
    assert_eq!(ids_of(&out), ["plain".to_string()], "{out}");
    // The scoped token may still delete its own.
    assert_eq!(a.delete(&ga_path).await.status, 204);
    assert_eq!(a.delete(&format!("/Users/{ua}")).await.status, 204);
    assert_eq!(a.list("/Users", &[]).await["totalResults"], 0);
    assert_eq!(b.list("/Users", &[]).await["totalResults"], 1);
}

/// A business unit's IdP may not lock out or delete the proxy's administrators, even those
/// who are members of its organisation: it reads them, and every write is 403.
#[tokio::test]
async fn an_org_scoped_token_cannot_deactivate_or_delete_a_proxy_admin() {
    let api = Api::start();
    new_org(&api, "A").await;
    let (ta, _) = scim_token(&api, Some("A")).await;
    let a = Scim {
        api: &api,
        token: ta,
    };
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "boss", "user_email": "boss@proxy.test", "user_role": "proxy_admin"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let boss_key = secret_of(&out);
    let (status, out) = api
        .post(
            "/organization/member_add",
            json!({"organization_id": "A", "member": {"user_id": "boss", "role": "internal_user"}}),
        )
        .await;
    assert_eq!(status, 200, "{out}");

    assert_eq!(a.get("/Users/boss").await.status, 200);
    let deactivate = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]});
    assert_scim_error(&a.patch("/Users/boss", deactivate.clone()).await, 403, None);
    let put = json!({"schemas": [USER], "userName": "boss@proxy.test", "active": false});
    assert_scim_error(&a.put("/Users/boss", put).await, 403, None);
    assert_scim_error(&a.delete("/Users/boss").await, 403, None);
    let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "PATCH", "path": "/Users/boss", "data": deactivate},
        {"method": "DELETE", "path": "/Users/boss"},
    ]});
    let r = a.post("/Bulk", bulk).await;
    assert_eq!(r.status, 200, "{r:?}");
    let statuses: Vec<&str> = r.body["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["403", "403"], "{r:?}");
    // Untouched: the administrator's key still manages the proxy.
    let (status, out) = api.get_as(&boss_key, "/user/info?user_id=boss").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["user_info"]["user_role"], "proxy_admin", "{out}");
    assert_eq!(a.get("/Users/boss").await.body["active"], true);
}

#[tokio::test]
async fn every_scim_change_is_audited_as_its_token() {
    let api = Api::start();
    new_org(&api, "A").await;
    let (token, key_id) = scim_token(&api, None).await;
    let (scoped, scoped_id) = scim_token(&api, Some("A")).await;
    let scim = Scim { api: &api, token };
    let a = Scim {
        api: &api,
        token: scoped,
    };

    let uid = scim.new_user("audited@example.com").await;
    let upath = format!("/Users/{uid}");
    let entra = |v: &str| json!([{"op": "Replace", "path": "active", "value": v}]);
    assert_eq!(scim.patch(&upath, entra("False")).await.status, 200);
    assert_eq!(scim.patch(&upath, entra("True")).await.status, 200);
    let r = scim
        .patch(
            &upath,
            json!([{"op": "replace", "path": "title", "value": "Lead"}]),
        )
        .await;
    assert_eq!(r.status, 200);
    let g = scim.create_group("Audited", &[&uid]).await;
    let gid = g["id"].as_str().unwrap().to_string();
    let gpath = format!("/Groups/{gid}");
    let r = scim
        .patch(
            &gpath,
            json!([{"op": "replace", "path": "displayName", "value": "Renamed"}]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(scim.delete(&gpath).await.status, 204);
    assert_eq!(scim.delete(&upath).await.status, 204);
    // A refused change leaves no entry.
    let r = scim
        .post(
            "/Users",
            json!({"schemas": [USER], "displayName": "nameless"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let scoped_uid = a.new_user("scoped@a.test").await;

    let entries = |by: String| {
        let api = &api;
        async move {
            let (status, out) = api
                .get(&format!("/audit?changed_by={}&page_size=100", enc(&by)))
                .await;
            assert_eq!(status, 200, "{out}");
            let logs = out["audit_logs"].as_array().unwrap().clone();
            assert_eq!(out["total"], logs.len(), "{out}");
            for e in &logs {
                assert_eq!(e["changed_by"], by.as_str(), "{e}");
                assert!(e["changed_by_api_key"].is_null(), "{e}");
            }
            logs.iter()
                .map(|e| {
                    (
                        e["table_name"].as_str().unwrap().to_string(),
                        e["action"].as_str().unwrap().to_string(),
                        e["object_id"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let found = entries(format!("scim:{key_id}")).await;
    let user = "LiteLLM_UserTable";
    let team = "LiteLLM_TeamTable";
    let has = |t: &str, action: &str, id: &str| {
        found
            .iter()
            .filter(|(tt, a, o)| tt == t && a == action && o == id)
            .count()
    };
    assert_eq!(has(user, "created", &uid), 1, "{found:?}");
    assert_eq!(has(user, "blocked", &uid), 1, "{found:?}");
    assert_eq!(has(user, "unblocked", &uid), 1, "{found:?}");
    assert!(has(user, "updated", &uid) >= 1, "{found:?}");
    assert_eq!(has(user, "deleted", &uid), 1, "{found:?}");
    assert_eq!(has(team, "created", &gid), 1, "{found:?}");
    assert_eq!(has(team, "updated", &gid), 1, "{found:?}");
    assert_eq!(has(team, "deleted", &gid), 1, "{found:?}");
    assert!(
        found.iter().all(|(_, _, o)| o == &uid || o == &gid),
        "{found:?}"
    );
    // The scoped token's changes are its own, including joining the user to A.
    let found = entries(format!("scim:{scoped_id}")).await;
    assert!(
        found.contains(&(user.into(), "created".into(), scoped_uid.clone())),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            "LiteLLM_OrganizationTable".into(),
            "updated".into(),
            "A".into()
        )),
        "{found:?}"
    );
    assert!(found.iter().all(|(_, _, o)| o != &uid), "{found:?}");
    // Nothing SCIM did is attributed to the master key.
    let by_master = entries("master_key".into()).await;
    assert!(
        by_master
            .iter()
            .all(|(t, _, o)| t != user || (o != &uid && o != &scoped_uid)),
        "{by_master:?}"
    );
}

/// Entra ID's default mapping sends the work address as
/// `addresses[type eq "work"].streetAddress` and friends; the RFC's other multi-valued core
/// attributes (ims, photos, entitlements, roles, x509Certificates) are kept as sent too — a
/// PATCH naming one must not fail the whole update.
#[tokio::test]
async fn rfc_core_multi_valued_attributes_are_kept_and_patchable() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let scim = Scim { api: &api, token };
    let user = scim
        .create_user(json!({
            "schemas": [USER],
            "userName": "addr@example.com",
            "addresses": [{"type": "home", "locality": "Lyon", "country": "FR"}],
            "ims": [{"value": "addr@xmpp.example", "type": "xmpp"}],
            "photos": [{"value": "https://img.example/a.png", "type": "photo"}],
            "entitlements": [{"value": "gpu-quota"}],
            "roles": [{"value": "Engineer", "primary": "True"}],
            "x509Certificates": [{"value": "MIIBAA=="}],
        }))
        .await;
    let path = format!("/Users/{}", user["id"].as_str().unwrap());
    assert_eq!(user["addresses"][0]["locality"], "Lyon", "{user}");
    assert_eq!(user["ims"][0]["type"], "xmpp", "{user}");
    assert_eq!(user["roles"][0]["primary"], true, "{user}");
    assert_eq!(user["x509Certificates"][0]["value"], "MIIBAA==", "{user}");
    let ops = json!([
        {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"},
        {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Redmond"},
        {"op": "Replace", "path": "addresses[type eq \"home\"].country", "value": "BE"},
    ]);
    let r = scim.patch(&path, ops).await;
    assert_eq!(r.status, 200, "{r:?}");
    let addresses = r.body["addresses"].as_array().unwrap();
    assert_eq!(addresses.len(), 2, "{r:?}");
    let work = addresses.iter().find(|a| a["type"] == "work").unwrap();
    assert_eq!(work["streetAddress"], "1 Main St");
    assert_eq!(work["locality"], "Redmond");
    let home = addresses.iter().find(|a| a["type"] == "home").unwrap();
    assert_eq!(home["country"], "BE");
    let found = scim
        .matching(r#"addresses[type eq "work" and locality eq "redmond"]"#)
        .await;
    assert_eq!(found, ["addr@example.com".to_string()]);
    // The schema advertises them.
    let r = scim.get(&format!("/Schemas/{USER}")).await;
    let names: Vec<&str> = r.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for want in [
        "addresses",
        "ims",
        "photos",
        "entitlements",
        "roles",
        "x509Certificates",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
}

#[tokio::test]
async fn discovery_describes_what_is_supported() {
    let api = Api::start();
    let (token, _) = scim_token(&api, None).await;
    let scim = Scim { api: &api, token };

    let r = scim.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, 200, "{r:?}");
    let c = &r.body;
    assert_eq!(
        c["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    assert_eq!(c["patch"]["supported"], true);
    assert_eq!(c["filter"]["supported"], true);
    assert!(c["filter"]["maxResults"].as_u64().unwrap() > 0);
    assert_eq!(c["sort"]["supported"], true);
    assert_eq!(c["etag"]["supported"], true);
    // Bulk's limits and behaviour: tests/e2e/scim_bulk.rs.
    assert_eq!(c["bulk"]["supported"], true);
    assert_eq!(c["changePassword"]["supported"], false);
    assert_eq!(c["authenticationSchemes"][0]["type"], "oauthbearertoken");
    // A route that exists, with a method it does not take: a SCIM Error, not a bare 405.
    assert_scim_error(&scim.get("/Bulk").await, 405, None);
    assert_scim_error(&scim.delete("/Users").await, 405, None);

    let r = scim.get("/ResourceTypes").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["totalResults"], 2);
    let types = r.body["Resources"].as_array().unwrap();
    let user = types.iter().find(|t| t["id"] == "User").unwrap();
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(user["schema"], USER);
    assert_eq!(
        user["schemaExtensions"],
        json!([{"schema": ENTERPRISE, "required": false}])
    );
    let group = types.iter().find(|t| t["id"] == "Group").unwrap();
    assert_eq!(group["endpoint"], "/Groups");
    assert_eq!(group["schema"], GROUP);
    let r = scim.get("/ResourceTypes/Group").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["schema"], GROUP);
    assert_scim_error(&scim.get("/ResourceTypes/Nope").await, 404, None);

    let r = scim.get("/Schemas").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["totalResults"], 3);
    let mut ids: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = [USER, GROUP, ENTERPRISE];
    want.sort_unstable();
    assert_eq!(ids, want);

    let r = scim.get(&format!("/Schemas/{USER}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["id"], USER);
    let attrs = r.body["attributes"].as_array().unwrap();
    let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["caseExact"], false);
    assert_eq!(user_name["required"], true);
    assert_eq!(user_name["type"], "string");
    let active = attrs.iter().find(|a| a["name"] == "active").unwrap();
    assert_eq!(active["type"], "boolean");
    let emails = attrs.iter().find(|a| a["name"] == "emails").unwrap();
    assert_eq!(emails["multiValued"], true);
    assert!(
        emails["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "value")
    );
    let groups = attrs.iter().find(|a| a["name"] == "groups").unwrap();
    assert_eq!(groups["mutability"], "readOnly");
    let r = scim.get(&format!("/Schemas/{ENTERPRISE}")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "manager")
    );
    assert_scim_error(&scim.get("/Schemas/urn:nope").await, 404, None);
}
