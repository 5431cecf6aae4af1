//! Roles from SCIM groups (`scim_admin_group`, `scim_group_roles`) against the real binary: a
//! group's role comes and goes with its membership (renames and deletes included, across a
//! restart), a scoped token only ever grants org admin of its organisation, what an
//! administrator gave is never taken back, and every change is audited as the token. The SCIM
//! client here is shared with `scim_managed.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::Options;
use crate::keys::{Api, secret_of};
use reqwest::Method;
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USERS: &str = "LiteLLM_UserTable";

fn config(extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: \"mock/*\"\n    litellm_params: {{model: \"mock/*\"}}\n\
         general_settings:\n  scim_admin_group: Portcullis Admins\n  scim_group_roles:\n    \
         Auditors: proxy_admin_viewer\n{extra}"
    )
}

pub fn start(extra: &str) -> Api {
    Api::on(Options::new().config(config(extra)).start())
}

/// An identity provider holding one SCIM token.
pub struct Idp<'a> {
    api: &'a Api,
    pub token: String,
    id: String,
}

impl<'a> Idp<'a> {
    /// A SCIM token minted by the master key, optionally scoped to `org`.
    pub async fn connect(api: &'a Api, org: Option<&str>) -> Idp<'a> {
        let mut body = json!({"allowed_routes": ["/scim/*"]});
        if let Some(o) = org {
            body["organization_id"] = json!(o);
        }
        let out = api.generate(body).await;
        let id = out["key_id"].as_str().unwrap().to_string();
        Idp {
            api,
            token: secret_of(&out),
            id,
        }
    }

    pub fn actor(&self) -> String {
        format!("scim:{}", self.id)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = self.api.gw.url(&format!("/scim/v2{path}"));
        let mut rb = self.api.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn user(&self, name: &str) -> String {
        let body = json!({"schemas": [USER], "userName": name,
            "emails": [{"value": name, "primary": true}], "displayName": name});
        let (status, out) = self.call(Method::POST, "/Users", Some(body)).await;
        assert_eq!(status, 201, "{out}");
        out["id"].as_str().unwrap().to_string()
    }

    pub async fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let body = json!({"schemas": [GROUP], "displayName": name, "members": members});
        let (status, out) = self.call(Method::POST, "/Groups", Some(body)).await;
        assert_eq!(status, 201, "{out}");
        out["id"].as_str().unwrap().to_string()
    }

    pub async fn patch(&self, gid: &str, ops: Value) {
        let body = json!({"schemas": [PATCH_OP], "Operations": ops});
        let (status, out) = self
            .call(Method::PATCH, &format!("/Groups/{gid}"), Some(body))
            .await;
        assert_eq!(status, 200, "{out}");
    }

    pub async fn add(&self, gid: &str, uid: &str) {
        let ops = json!([{"op": "add", "path": "members", "value": [{"value": uid}]}]);
        self.patch(gid, ops).await;
    }

    /// Okta's removal shape.
    pub async fn remove(&self, gid: &str, uid: &str) {
        let ops = json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]);
        self.patch(gid, ops).await;
    }

    pub async fn rename(&self, gid: &str, name: &str) {
        let ops = json!([{"op": "replace", "path": "displayName", "value": name}]);
        self.patch(gid, ops).await;
    }
}

/// The user as `/user/info` shows it to the master key.
pub async fn info(api: &Api, uid: &str) -> Value {
    let (status, out) = api.get(&format!("/user/info?user_id={uid}")).await;
    assert_eq!(status, 200, "{out}");
    out["user_info"].clone()
}

async fn role(api: &Api, uid: &str) -> String {
    info(api, uid).await["user_role"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A personal key of `uid`.
async fn key_of(api: &Api, uid: &str) -> String {
    secret_of(&api.generate(json!({"user_id": uid})).await)
}

/// The status of creating a user outside any organisation with `key`: only proxy admins may
/// (`org`: inside that organisation, which its org admins may too).
async fn may_create(api: &Api, key: &str, org: Option<&str>) -> u16 {
    let mut body = json!({"auto_create_key": false});
    if let Some(o) = org {
        body["organization_id"] = json!(o);
    }
    api.post_as(key, "/user/new", body).await.0
}

pub async fn new_org(api: &Api, id: &str) {
    let (status, out) = api
        .post(
            "/organization/new",
            json!({"organization_id": id, "organization_alias": id}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
}

/// The (before, after) values of `table`'s `object` entries written by `actor`.
async fn changes(api: &Api, actor: &str, table: &str, object: &str) -> Vec<(Value, Value)> {
    let path = format!(
        "/audit?changed_by={actor}&table_name={table}&object_id={object}&sort_order=asc&page_size=1000"
    );
    let (status, out) = api.get(&path).await;
    assert_eq!(status, 200, "{out}");
    out["audit_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["before_value"].clone(), e["updated_values"].clone()))
        .collect()
}

/// The global roles `uid` went through in the entries `actor` wrote about it.
async fn role_changes(api: &Api, actor: &str, uid: &str) -> Vec<(String, String)> {
    changes(api, actor, USERS, uid)
        .await
        .into_iter()
        .filter(|(b, a)| b.is_object() && a.is_object() && b["user_role"] != a["user_role"])
        .map(|(b, a)| {
            let r = |v: &Value| v["user_role"].as_str().unwrap().to_string();
            (r(&b), r(&a))
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[tokio::test]
async fn an_unscoped_tokens_admin_group_makes_proxy_admins_and_takes_it_back() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let ann = idp.user("ann@example.com").await;
    let ann_key = key_of(&api, &ann).await;
    assert_eq!(may_create(&api, &ann_key, None).await, 403);

    // The name matches case-insensitively.
    let admins = idp.group("portcullis ADMINS", &[&ann]).await;
    let u = info(&api, &ann).await;
    assert_eq!(u["user_role"], "proxy_admin", "{u}");
    assert_eq!(u["scim_granted_user_role"], "proxy_admin", "{u}");
    assert_eq!(may_create(&api, &ann_key, None).await, 200);
    let (status, head) = api.get_as(&ann_key, "/audit/head").await;
    assert_eq!(status, 200, "{head}");

    // Leaving the group takes it back on the very next request.
    idp.remove(&admins, &ann).await;
    let u = info(&api, &ann).await;
    assert_eq!(u["user_role"], "internal_user", "{u}");
    assert!(u["scim_granted_user_role"].is_null(), "{u}");
    assert_eq!(may_create(&api, &ann_key, None).await, 403);
    assert_eq!(api.get_as(&ann_key, "/audit/head").await.0, 403);
    assert_eq!(
        role_changes(&api, &idp.actor(), &ann).await,
        [
            pair("internal_user", "proxy_admin"),
            pair("proxy_admin", "internal_user")
        ]
    );

    // A proxy admin an administrator made stays one.
    let bob = idp.user("bob@example.com").await;
    let (status, _) = api
        .post(
            "/user/update",
            json!({"user_id": bob, "user_role": "proxy_admin"}),
        )
        .await;
    assert_eq!(status, 200);
    idp.add(&admins, &bob).await;
    assert!(info(&api, &bob).await["scim_granted_user_role"].is_null());
    idp.remove(&admins, &bob).await;
    assert_eq!(role(&api, &bob).await, "proxy_admin");
    // And so does one SCIM made when an administrator then grants the role by hand.
    let cat = idp.user("cat@example.com").await;
    idp.add(&admins, &cat).await;
    assert_eq!(role(&api, &cat).await, "proxy_admin");
    let (status, _) = api
        .post(
            "/user/update",
            json!({"user_id": cat, "user_role": "proxy_admin"}),
        )
        .await;
    assert_eq!(status, 200);
    idp.remove(&admins, &cat).await;
    assert_eq!(role(&api, &cat).await, "proxy_admin");

    // The viewers' group and the admins' group together: the stronger role, then each taken
    // back in turn.
    let dan = idp.user("dan@example.com").await;
    let auditors = idp.group("Auditors", &[&dan]).await;
    assert_eq!(role(&api, &dan).await, "proxy_admin_viewer");
    idp.add(&admins, &dan).await;
    assert_eq!(role(&api, &dan).await, "proxy_admin");
    idp.remove(&admins, &dan).await;
    assert_eq!(role(&api, &dan).await, "proxy_admin_viewer");
    idp.remove(&auditors, &dan).await;
    assert_eq!(role(&api, &dan).await, "internal_user");

    // An administrator adding a member hands out the role too, and removing takes it back;
    // a team admin of the group (who could not grant proxy_admin) may not add anyone.
    let eve = idp.user("eve@example.com").await;
    let add = json!({"team_id": admins, "member": {"user_id": eve}});
    assert_eq!(api.post("/team/member_add", add.clone()).await.0, 200);
    assert_eq!(role(&api, &eve).await, "proxy_admin");
    let del = json!({"team_id": admins, "user_id": eve});
    assert_eq!(api.post("/team/member_delete", del).await.0, 200);
    assert_eq!(role(&api, &eve).await, "internal_user");
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "lead", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let lead = json!({"team_id": admins, "member": {"user_id": "lead", "role": "admin"}});
    assert_eq!(api.post("/team/member_add", lead).await.0, 200);
    assert_eq!(role(&api, "lead").await, "internal_user", "not a SCIM user");
    let lead_key = key_of(&api, "lead").await;
    let (status, out) = api.post_as(&lead_key, "/team/member_add", add).await;
    assert_eq!(status, 403, "{out}");
    assert_eq!(role(&api, &eve).await, "internal_user");
}

#[tokio::test]
async fn an_org_scoped_token_grants_org_admin_of_its_organisation_and_never_proxy_admin() {
    let api = start("");
    new_org(&api, "A").await;
    new_org(&api, "B").await;
    let a = Idp::connect(&api, Some("A")).await;
    let b = Idp::connect(&api, Some("B")).await;
    let fay = a.user("fay@a.test").await;
    let fay_key = key_of(&api, &fay).await;
    assert_eq!(may_create(&api, &fay_key, Some("A")).await, 403);

    // The config names the group as proxy admins': inside an organisation that is org admin.
    let admins = a.group("Portcullis Admins", &[&fay]).await;
    let u = info(&api, &fay).await;
    assert_eq!(u["user_role"], "internal_user", "{u}");
    assert!(u["scim_granted_user_role"].is_null(), "{u}");
    assert_eq!(
        u["organization_memberships"],
        json!([{"organization_id": "A", "user_role": "org_admin", "scim_granted": true}]),
        "{u}"
    );
    let (_, org) = api.get("/organization/info?organization_id=A").await;
    assert_eq!(org["members"][0]["user_role"], "org_admin", "{org}");
    assert_eq!(may_create(&api, &fay_key, Some("A")).await, 200);
    assert_eq!(may_create(&api, &fay_key, Some("B")).await, 404);
    assert_eq!(may_create(&api, &fay_key, None).await, 403);
    // The viewers' group grants nothing inside an organisation.
    let gus = a.user("gus@a.test").await;
    a.group("Auditors", &[&gus]).await;
    let u = info(&api, &gus).await;
    assert_eq!(u["user_role"], "internal_user", "{u}");
    assert_eq!(
        u["organization_memberships"][0]["user_role"],
        "internal_user"
    );
    // Another business unit's group of the same name is its own organisation's.
    let hal = b.user("hal@b.test").await;
    b.group("PORTCULLIS ADMINS", &[&hal]).await;
    let u = info(&api, &hal).await;
    assert_eq!(u["user_role"], "internal_user", "{u}");
    assert_eq!(
        u["organization_memberships"],
        json!([{"organization_id": "B", "user_role": "org_admin", "scim_granted": true}])
    );

    // A PUT without her takes it back.
    let body = json!({"schemas": [GROUP], "displayName": "Portcullis Admins", "members": []});
    let (status, out) = a
        .call(Method::PUT, &format!("/Groups/{admins}"), Some(body))
        .await;
    assert_eq!(status, 200, "{out}");
    let u = info(&api, &fay).await;
    assert_eq!(
        u["organization_memberships"],
        json!([{"organization_id": "A", "user_role": "internal_user"}])
    );
    assert_eq!(may_create(&api, &fay_key, Some("A")).await, 403);
    // Audited as the token: the user's side and the organisation's, both ways.
    let org_roles: Vec<Value> = changes(&api, &a.actor(), "LiteLLM_OrganizationTable", "A")
        .await
        .into_iter()
        .filter(|(b, a)| b["members"] != a["members"])
        .map(|(_, a)| a["members"].clone())
        .collect();
    assert!(
        org_roles.contains(&json!([{"user_id": fay, "user_role": "org_admin"}])),
        "{org_roles:?}"
    );
    let user_side = changes(&api, &a.actor(), USERS, &fay).await;
    let role_in_a = |v: &Value| v["organization_memberships"][0]["user_role"].clone();
    let moves: Vec<(Value, Value)> = user_side
        .iter()
        .filter(|(b, a)| b.is_object() && role_in_a(b) != role_in_a(a))
        .map(|(b, a)| (role_in_a(b), role_in_a(a)))
        .collect();
    assert_eq!(
        moves,
        [
            (json!("internal_user"), json!("org_admin")),
            (json!("org_admin"), json!("internal_user"))
        ]
    );
    // Nothing any scoped token did changed a global role.
    for (uid, idp) in [(&fay, &a), (&gus, &a), (&hal, &b)] {
        assert!(role_changes(&api, &idp.actor(), uid).await.is_empty());
    }
}

#[tokio::test]
async fn renaming_or_deleting_a_group_moves_its_role() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let ida = idp.user("ida@example.com").await;
    let jon = idp.user("jon@example.com").await;
    let gid = idp.group("Engineering", &[&ida, &jon]).await;
    assert_eq!(role(&api, &ida).await, "internal_user");
    idp.rename(&gid, "Portcullis Admins").await;
    assert_eq!(role(&api, &ida).await, "proxy_admin");
    assert_eq!(role(&api, &jon).await, "proxy_admin");
    idp.rename(&gid, "Engineering").await;
    assert_eq!(role(&api, &ida).await, "internal_user");
    idp.rename(&gid, "Portcullis Admins").await;

    // What SCIM granted is on disk: a restart still knows what to take back.
    let (token, id) = (idp.token, idp.id);
    let Api { gw, .. } = api;
    let api = Api::on(gw.restart());
    let idp = Idp {
        api: &api,
        token,
        id,
    };
    assert_eq!(
        info(&api, &jon).await["scim_granted_user_role"],
        "proxy_admin"
    );
    let (status, out) = idp
        .call(Method::DELETE, &format!("/Groups/{gid}"), None)
        .await;
    assert_eq!(status, 204, "{out}");
    assert_eq!(role(&api, &ida).await, "internal_user");
    assert_eq!(role(&api, &jon).await, "internal_user");
    assert_eq!(
        role_changes(&api, &idp.actor(), &jon).await,
        [
            pair("internal_user", "proxy_admin"),
            pair("proxy_admin", "internal_user"),
            pair("internal_user", "proxy_admin"),
            pair("proxy_admin", "internal_user"),
        ]
    );
}

/// Removing a mapping from the config takes back, at the next start, exactly what it granted
/// (an administrator must not be left with proxy admins whose reason is gone), and adding one
/// grants to the members already in the group; each change is audited as the system's.
#[tokio::test]
async fn a_start_brings_granted_roles_in_step_with_the_config() {
    let api = start("");
    let idp = Idp::connect(&api, None).await;
    let ida = idp.user("ida@example.com").await;
    let eve = idp.user("eve@example.com").await;
    idp.group("Portcullis Admins", &[&ida]).await;
    idp.group("Platform", &[&eve]).await;
    assert_eq!(role(&api, &ida).await, "proxy_admin");
    assert_eq!(role(&api, &eve).await, "internal_user");

    // The admin group is no longer mapped; "Platform" now is.
    let plain = "model_list:\n  - model_name: \"mock/*\"\n    litellm_params: {model: \"mock/*\"}\n\
                 general_settings:\n  scim_group_roles:\n    Platform: proxy_admin_viewer\n";
    let Api { gw, .. } = api;
    let api = Api::on(gw.restart_with(|o| o.config(plain)));
    assert_eq!(role(&api, &ida).await, "internal_user");
    assert_eq!(
        info(&api, &ida).await["scim_granted_user_role"],
        Value::Null
    );
    assert_eq!(role(&api, &eve).await, "proxy_admin_viewer");
    assert_eq!(
        role_changes(&api, "system", &ida).await,
        [pair("proxy_admin", "internal_user")]
    );
    assert_eq!(
        role_changes(&api, "system", &eve).await,
        [pair("internal_user", "proxy_admin_viewer")]
    );
    // A start with nothing to change writes nothing.
    let (_, head) = api.get("/audit/head").await;
    let Api { gw, .. } = api;
    let api = Api::on(gw.restart());
    let (_, again) = api.get("/audit/head").await;
    assert_eq!(head["seq"], again["seq"], "{head} {again}");
}
