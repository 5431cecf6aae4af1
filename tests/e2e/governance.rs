//! The role × route × scope matrix of `docs/governance.md`, walked cell by cell against the
//! real server: the table in the document is read here, so the document is the behaviour.
//!
//! For every row and caller a fresh little world is built (organisations A → A1 and B, teams
//! TA in A1 and TB in B, one user per role, targets inside and outside the caller's scope),
//! with ids prefixed per cell so cells cannot disturb each other.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::keys::Api;
use serde_json::{Value, json};
use std::collections::HashMap;

const CALLERS: [&str; 6] = [
    "proxy_admin",
    "proxy_admin_viewer",
    "org_admin",
    "team_admin",
    "internal_user",
    "internal_user_viewer",
];

/// One row of the matrix: the request and, per caller, the expected (inside, outside) cells.
struct Row {
    method: String,
    path: String,
    body: Option<String>,
    cells: Vec<(String, String)>,
}

fn matrix() -> Vec<Row> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/governance.md"))
        .unwrap();
    let start = doc.find("<!-- matrix:start -->").unwrap();
    let end = doc.find("<!-- matrix:end -->").unwrap();
    let mut rows = Vec::new();
    for line in doc[start..end].lines().filter(|l| l.starts_with("| `")) {
        let cols: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(
            cols.len(),
            1 + CALLERS.len(),
            "malformed matrix row: {line}"
        );
        let route = cols[0].trim_matches('`');
        let (method, rest) = route.split_once(' ').unwrap();
        let (path, body) = match rest.split_once(' ') {
            Some((p, b)) => (p.to_string(), Some(b.to_string())),
            None => (rest.to_string(), None),
        };
        let cells = cols[1..]
            .iter()
            .map(|c| {
                let (a, b) = c.split_once('/').unwrap();
                (a.to_string(), b.to_string())
            })
            .collect();
        rows.push(Row {
            method: method.to_string(),
            path,
            body,
            cells,
        });
    }
    assert!(rows.len() >= 30, "the matrix lost rows: {}", rows.len());
    rows
}

/// The objects of one cell's world.
struct World {
    keys: HashMap<&'static str, String>,
    /// Placeholder → value, inside and outside, per caller.
    inside: HashMap<&'static str, HashMap<&'static str, String>>,
    outside: HashMap<&'static str, String>,
}

async fn ok(api: &Api, path: &str, body: Value) -> Value {
    let (status, out) = api.post(path, body.clone()).await;
    assert_eq!(status, 200, "world setup {path} {body}: {out}");
    out
}

async fn user(api: &Api, id: &str, role: &str) -> String {
    let out = ok(api, "/user/new", json!({"user_id": id, "user_role": role})).await;
    out["key"].as_str().unwrap().to_string()
}

async fn build(api: &Api, p: &str) -> World {
    let id = |s: &str| format!("{p}-{s}");
    ok(
        api,
        "/organization/new",
        json!({"organization_id": id("A"), "organization_alias": "A"}),
    )
    .await;
    ok(api, "/organization/new", json!({"organization_id": id("A1"), "organization_alias": "A1", "parent_organization_id": id("A")})).await;
    ok(
        api,
        "/organization/new",
        json!({"organization_id": id("B"), "organization_alias": "B"}),
    )
    .await;
    ok(
        api,
        "/team/new",
        json!({"team_id": id("TA"), "organization_id": id("A1")}),
    )
    .await;
    ok(
        api,
        "/team/new",
        json!({"team_id": id("TB"), "organization_id": id("B")}),
    )
    .await;

    let mut keys = HashMap::new();
    keys.insert("proxy_admin", user(api, &id("pa"), "proxy_admin").await);
    keys.insert(
        "proxy_admin_viewer",
        user(api, &id("pv"), "proxy_admin_viewer").await,
    );
    keys.insert("org_admin", user(api, &id("oa"), "internal_user").await);
    keys.insert("team_admin", user(api, &id("ta"), "internal_user").await);
    keys.insert("internal_user", user(api, &id("iu"), "internal_user").await);
    keys.insert(
        "internal_user_viewer",
        user(api, &id("iv"), "internal_user_viewer").await,
    );
    for u in ["uin", "uout", "member", "orgmember"] {
        user(api, &id(u), "internal_user").await;
    }
    let org_member = |org: String, u: String, role: &str| json!({"organization_id": org, "member": {"user_id": u, "role": role}});
    let team_member = |team: String, u: String, role: &str| json!({"team_id": team, "member": {"user_id": u, "role": role}});
    let memberships = [
        (id("A"), "oa", "org_admin"),
        (id("A1"), "ta", "internal_user"),
        (id("A1"), "iu", "internal_user"),
        (id("A1"), "iv", "internal_user"),
        (id("A1"), "uin", "internal_user"),
        (id("A1"), "member", "internal_user"),
        (id("A"), "orgmember", "internal_user"),
        (id("B"), "uout", "internal_user"),
    ];
    for (org, u, role) in memberships {
        ok(
            api,
            "/organization/member_add",
            org_member(org, id(u), role),
        )
        .await;
    }
    let teams = [
        (id("TA"), "ta", "admin"),
        (id("TA"), "iu", "user"),
        (id("TA"), "iv", "user"),
        (id("TA"), "uin", "user"),
        (id("TB"), "uout", "user"),
    ];
    for (team, u, role) in teams {
        ok(api, "/team/member_add", team_member(team, id(u), role)).await;
    }

    // Keys with a budget, so raising it is a raise.
    let key_in = ok(
        api,
        "/key/generate",
        json!({"user_id": id("uin"), "team_id": id("TA"), "max_budget": 10}),
    )
    .await;
    let key_out = ok(
        api,
        "/key/generate",
        json!({"user_id": id("uout"), "team_id": id("TB"), "max_budget": 10}),
    )
    .await;
    let key_iu = ok(
        api,
        "/key/generate",
        json!({"user_id": id("iu"), "max_budget": 10}),
    )
    .await;
    let key_iv = ok(
        api,
        "/key/generate",
        json!({"user_id": id("iv"), "max_budget": 10}),
    )
    .await;
    let token = |v: &Value| v["token"].as_str().unwrap().to_string();

    let mut inside = HashMap::new();
    for caller in CALLERS {
        let (user, key) = match caller {
            "internal_user" => (id("iu"), token(&key_iu)),
            "internal_user_viewer" => (id("iv"), token(&key_iv)),
            _ => (id("uin"), token(&key_in)),
        };
        let mut m = HashMap::new();
        m.insert("user", user);
        m.insert("key", key);
        m.insert("team", id("TA"));
        m.insert("org", id("A1"));
        inside.insert(caller, m);
    }
    let mut outside = HashMap::new();
    outside.insert("user", id("uout"));
    outside.insert("key", token(&key_out));
    outside.insert("team", id("TB"));
    outside.insert("org", id("B"));
    for m in inside.values_mut().chain(std::iter::once(&mut outside)) {
        m.insert("member", id("member"));
        m.insert("orgmember", id("orgmember"));
    }
    World {
        keys,
        inside,
        outside,
    }
}

fn fill(text: &str, values: &HashMap<&'static str, String>, fresh: &str) -> String {
    let mut out = text.replace("{new}", fresh);
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The id a list row looks for, inside and outside.
fn list_target(path: &str, values: &HashMap<&'static str, String>) -> String {
    let field = match path {
        "/user/list" => "user",
        "/team/list" => "team",
        "/organization/list" => "org",
        _ => "key",
    };
    values[field].clone()
}

#[tokio::test]
async fn every_role_route_and_scope_behaves_as_documented() {
    let api = Api::start();
    let rows = matrix();
    let mut failures = Vec::new();
    let mut cells = 0;
    for (r, row) in rows.iter().enumerate() {
        for (c, caller) in CALLERS.iter().enumerate() {
            let world = build(&api, &format!("r{r}c{c}")).await;
            let key = &world.keys[caller];
            let (want_in, want_out) = &row.cells[c];
            for (scope, want, values) in [
                ("inside", want_in, &world.inside[caller]),
                ("outside", want_out, &world.outside),
            ] {
                if want == "—" {
                    continue;
                }
                cells += 1;
                let fresh = format!("r{r}c{c}-{scope}-new");
                let path = fill(&row.path, values, &fresh);
                let got = if row.method == "GET" && path.ends_with("/list") {
                    let (status, out) = api.get_as(key, &path).await;
                    let listed = status == 200
                        && out
                            .to_string()
                            .contains(&format!("\"{}\"", list_target(&path, values)));
                    if listed { "✓" } else { "✗" }.to_string()
                } else if row.method == "GET" {
                    api.get_as(key, &path).await.0.to_string()
                } else {
                    let body: Value = serde_json::from_str(&fill(
                        row.body.as_deref().unwrap_or("{}"),
                        values,
                        &fresh,
                    ))
                    .unwrap();
                    let (status, out) = api.post_as(key, &path, body).await;
                    // Refusals use the management envelope with the status as its code.
                    if status >= 400 {
                        assert_eq!(out["error"]["code"], status.to_string(), "{path}: {out}");
                    }
                    status.to_string()
                };
                if &got != want {
                    failures.push(format!(
                        "{} {} {} as {caller} ({scope}): want {want}, got {got}",
                        row.method,
                        row.path,
                        row.body.as_deref().unwrap_or(""),
                    ));
                }
            }
        }
    }
    assert!(cells > 300, "only {cells} cells walked");
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ from docs/governance.md:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

async fn status(api: &Api, key: &str, path: &str, body: Value) -> u16 {
    api.post_as(key, path, body).await.0
}

async fn chat(api: &Api, key: &str, model: &str) -> u16 {
    api.http
        .post(api.gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Escalations an adversarial review found, each closed: a team admin acting as a more powerful
/// teammate, an org admin managing a proxy admin in its subtree, and a key's owner widening
/// what an admin narrowed.
#[tokio::test]
async fn nobody_gains_power_through_someone_else_s_key_or_their_own() {
    let api = Api::start();
    let w = build(&api, "esc").await;
    let id = |s: &str| format!("esc-{s}");
    // A proxy admin who is also a plain member of TA and an internal_user of A1.
    let (s, out) = api
        .post(
            "/user/new",
            json!({"user_id": id("boss"), "user_role": "proxy_admin", "auto_create_key": false}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    ok(
        &api,
        "/team/member_add",
        json!({"team_id": id("TA"), "member": {"user_id": id("boss"), "role": "user"}}),
    )
    .await;
    ok(&api, "/organization/member_add", json!({"organization_id": id("A1"), "member": {"user_id": id("boss"), "role": "internal_user"}})).await;

    // The team admin cannot mint (or regenerate) a key that acts as the proxy admin.
    let ta = &w.keys["team_admin"];
    let (s, out) = api
        .post_as(
            ta,
            "/key/generate",
            json!({"user_id": id("boss"), "team_id": id("TA")}),
        )
        .await;
    assert_eq!(s, 403, "{out}");
    // Not even an LLM-only one: a proxy admin's keys come from proxy admins.
    let (s, out) = api
        .post_as(
            ta,
            "/key/generate",
            json!({"user_id": id("boss"), "team_id": id("TA"), "key_type": "llm_api"}),
        )
        .await;
    assert_eq!(s, 403, "{out}");
    // An LLM-only key for an ordinary teammate is fine, and it manages nothing.
    let (s, out) = api
        .post_as(
            ta,
            "/key/generate",
            json!({"user_id": id("uin"), "team_id": id("TA"), "key_type": "llm_api"}),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    let llm_only = out["key"].as_str().unwrap().to_string();
    assert_eq!(
        status(
            &api,
            &llm_only,
            "/user/update",
            json!({"user_id": id("ta"), "user_role": "proxy_admin"})
        )
        .await,
        403
    );
    assert_eq!(chat(&api, &llm_only, "mock/x").await, 200);
    // Nor can it turn that key into a powerful one afterwards and regenerate it.
    let token = out["token"].as_str().unwrap().to_string();
    assert_eq!(
        status(
            &api,
            ta,
            "/key/update",
            json!({"key": token, "key_type": "default"})
        )
        .await,
        403
    );
    // Regenerating it keeps it an LLM-only key, which is fine; the teammate's own powerful
    // keys cannot be regenerated by the team admin (the matrix covers that).
    let (s, out) = api
        .post_as(ta, "/key/regenerate", json!({"key": token}))
        .await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["key_type"], "llm_api");
    let token = out["token"].as_str().unwrap().to_string();
    let llm_only = out["key"].as_str().unwrap().to_string();
    assert_eq!(
        status(
            &api,
            ta,
            "/key/update",
            json!({"key": token, "key_type": "management"})
        )
        .await,
        403
    );

    // The org admin of A sees the proxy admin inside A1 but cannot manage or impersonate it.
    let oa = &w.keys["org_admin"];
    let (s, _) = api
        .get_as(oa, &format!("/user/info?user_id={}", id("boss")))
        .await;
    assert_eq!(s, 200);
    for (path, body) in [
        (
            "/user/update",
            json!({"user_id": id("boss"), "password": "taken-over-now"}),
        ),
        (
            "/user/update",
            json!({"user_id": id("boss"), "blocked": true}),
        ),
        (
            "/user/delete",
            json!({"user_ids": [id("boss")], "cascade": true}),
        ),
        ("/key/generate", json!({"user_id": id("boss")})),
    ] {
        assert_eq!(
            status(&api, oa, path, body.clone()).await,
            403,
            "{path} {body}"
        );
    }

    // A key's owner cannot widen what an admin narrowed.
    let iu = &w.keys["internal_user"];
    let (_, narrowed) = api
        .post("/key/generate", json!({"user_id": id("iu"), "models": ["mock/a"], "max_budget": 0.000001, "duration": "1h"}))
        .await;
    let k = narrowed["token"].as_str().unwrap().to_string();
    let secret = narrowed["key"].as_str().unwrap().to_string();
    for body in [
        json!({"key": k, "models": []}),
        json!({"key": k, "models": ["all-proxy-models"]}),
        json!({"key": k, "models": ["mock/a", "mock/b"]}),
        json!({"key": k, "duration": "30d"}),
        json!({"key": k, "duration": null}),
        json!({"key": k, "budget_duration": "1s"}),
        json!({"key": k, "max_budget": null}),
    ] {
        assert_eq!(
            status(&api, iu, "/key/update", body.clone()).await,
            403,
            "{body}"
        );
    }
    // Narrowing further is the owner's right.
    assert_eq!(
        status(
            &api,
            iu,
            "/key/update",
            json!({"key": k, "duration": "10m"})
        )
        .await,
        200
    );
    assert_eq!(chat(&api, &secret, "mock/b").await, 403);

    // A team admin sets roles in its team, not its own allowance.
    assert_eq!(
        status(
            &api,
            ta,
            "/team/member_update",
            json!({"team_id": id("TA"), "user_id": id("ta"), "max_budget_in_team": 1000000})
        )
        .await,
        403
    );
    // An llm_api key reads its own info only; a management key lists no models.
    let (s, _) = api.get_as(&llm_only, &format!("/key/info?key={k}")).await;
    assert_eq!(s, 404);
    let (_, mgmt) = api
        .post(
            "/key/generate",
            json!({"user_id": id("iu"), "key_type": "management"}),
        )
        .await;
    let (s, _) = api
        .get_as(mgmt["key"].as_str().unwrap(), "/v1/models")
        .await;
    assert_eq!(s, 403);
    // An org admin reading a user shared with another organisation sees only its own part.
    ok(&api, "/organization/member_add", json!({"organization_id": id("B"), "member": {"user_id": id("uin"), "role": "internal_user"}})).await;
    let (_, info) = api
        .get_as(oa, &format!("/user/info?user_id={}", id("uin")))
        .await;
    assert!(
        !info.to_string().contains(&format!("\"{}\"", id("B"))),
        "{info}"
    );
}

/// Model rules from config and from every level: `role_permissions`, access groups,
/// `no-default-models` and `all-team-models`.
#[tokio::test]
async fn role_permissions_access_groups_and_special_model_names() {
    let config = r#"
model_list:
  - model_name: "mock/*"
    litellm_params:
      model: "mock/*"
  - model_name: beta-model
    litellm_params:
      model: mock/beta
    model_info:
      access_groups: ["beta"]
general_settings:
  role_permissions:
    - role: internal_user_viewer
      models: ["mock/allowed", "beta-model"]
      routes: ["llm_api_routes", "/key/info"]
"#;
    let api = Api::on(crate::harness::Options::new().config(config).start());
    // A role narrowed by role_permissions: other models and routes are refused at "role".
    let (_, viewer) = api
        .post(
            "/user/new",
            json!({"user_id": "v", "user_role": "internal_user_viewer"}),
        )
        .await;
    let vk = viewer["key"].as_str().unwrap().to_string();
    assert_eq!(chat(&api, &vk, "mock/allowed").await, 200);
    assert_eq!(chat(&api, &vk, "mock/other").await, 403);
    let (s, _) = api.get_as(&vk, "/user/info").await;
    assert_eq!(s, 403, "/user/info is not in the role's routes");
    let (s, out) = api
        .post("/access/explain", json!({"key": vk, "model": "mock/other"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(out["decided_by"]["level"], "role", "{out}");

    // An access group grants its models.
    let beta = api.generate(json!({"models": ["beta"]})).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(chat(&api, &beta, "beta-model").await, 200);
    assert_eq!(chat(&api, &beta, "mock/x").await, 403);

    // no-default-models: nothing outside the user's teams; all-team-models: the team's list.
    api.team_with("tm", &["nd"]).await;
    let (s, _) = api
        .post(
            "/user/update",
            json!({"user_id": "nd", "models": ["no-default-models"]}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .post(
            "/team/update",
            json!({"team_id": "tm", "models": ["mock/team-only"]}),
        )
        .await;
    assert_eq!(s, 200);
    let personal = api.generate(json!({"user_id": "nd"})).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(chat(&api, &personal, "mock/team-only").await, 403);
    let team_key = api
        .generate(json!({"user_id": "nd", "team_id": "tm", "models": ["all-team-models"]}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(chat(&api, &team_key, "mock/team-only").await, 200);
    assert_eq!(chat(&api, &team_key, "mock/elsewhere").await, 403);
}

/// A personal key is governed by its owner's organisation, not only keys that name one.
#[tokio::test]
async fn personal_keys_fall_under_their_owner_s_organisation() {
    let api = Api::start();
    ok(
        &api,
        "/organization/new",
        json!({"organization_id": "rd", "organization_alias": "R&D", "models": ["mock/*"]}),
    )
    .await;
    ok(
        &api,
        "/organization/new",
        json!({"organization_id": "ops", "organization_alias": "Ops"}),
    )
    .await;
    let first = ok(
        &api,
        "/user/new",
        json!({"user_id": "oscar", "organization_id": "rd"}),
    )
    .await;
    // The first key lands in the user's organisation, and so does a later personal key.
    let k1 = first["key"].as_str().unwrap().to_string();
    let k2 = api.generate(json!({"user_id": "oscar"})).await;
    assert_eq!(k2["organization_id"], "rd");
    let k2 = k2["key"].as_str().unwrap().to_string();
    for k in [&k1, &k2] {
        assert_eq!(chat(&api, k, "mock/x").await, 200);
        assert_eq!(chat(&api, k, "gpt-4o-mini").await, 403);
    }
    // In two organisations, a personal key must say which one governs it.
    ok(
        &api,
        "/organization/member_add",
        json!({"organization_id": "ops", "member": {"user_id": "oscar", "role": "internal_user"}}),
    )
    .await;
    let (s, out) = api.post("/key/generate", json!({"user_id": "oscar"})).await;
    assert_eq!(s, 400, "{out}");
    assert_eq!(out["error"]["param"], "organization_id");
    let (s, _) = api
        .post(
            "/key/generate",
            json!({"user_id": "oscar", "organization_id": "ops"}),
        )
        .await;
    assert_eq!(s, 200);
}

/// Second review's findings, closed: no personal key escapes its owner's organisations (not by
/// an explicit null, not by detaching it later), proxy admins' memberships and keys are not
/// managed from below, and an admin's restricted key cannot scrape metrics.
#[tokio::test]
async fn personal_keys_cannot_leave_their_organisation_and_proxy_admins_stay_above() {
    let api = Api::start();
    ok(
        &api,
        "/organization/new",
        json!({"organization_id": "A", "organization_alias": "A", "models": ["mock/a"]}),
    )
    .await;
    ok(
        &api,
        "/organization/new",
        json!({"organization_id": "A1", "organization_alias": "A1", "parent_organization_id": "A"}),
    )
    .await;
    let solo = ok(
        &api,
        "/user/new",
        json!({"user_id": "solo", "organization_id": "A1"}),
    )
    .await;
    let solo_key = solo["key"].as_str().unwrap().to_string();
    // Asking for no organisation still lands in the owner's.
    let (s, k) = api
        .post_as(&solo_key, "/key/generate", json!({"organization_id": null}))
        .await;
    assert_eq!(s, 200, "{k}");
    assert_eq!(k["organization_id"], "A1");
    let k = k["key"].as_str().unwrap().to_string();
    assert_eq!(chat(&api, &k, "mock/b").await, 403);
    // Detaching a key does not free it: an unbound personal key answers to all the owner's
    // organisations.
    let (s, _) = api
        .post_as(
            &solo_key,
            "/key/update",
            json!({"key": k, "organization_id": null}),
        )
        .await;
    assert!(s == 200 || s == 403, "{s}");
    assert_eq!(chat(&api, &k, "mock/b").await, 403);
    assert_eq!(chat(&api, &k, "mock/a").await, 200);
    // Leaving the organisation stops a key bound to it.
    let (s, _) = api
        .post(
            "/organization/member_delete",
            json!({"organization_id": "A1", "user_id": "solo"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(chat(&api, &solo_key, "mock/a").await, 401);

    // A proxy admin inside A1 and a team there: the org admin of A cannot touch its
    // memberships or keys.
    ok(
        &api,
        "/team/new",
        json!({"team_id": "TA", "organization_id": "A1"}),
    )
    .await;
    let boss = ok(
        &api,
        "/user/new",
        json!({"user_id": "boss", "user_role": "proxy_admin", "auto_create_key": false}),
    )
    .await;
    assert!(boss["key"].is_null());
    ok(
        &api,
        "/organization/member_add",
        json!({"organization_id": "A1", "member": {"user_id": "boss", "role": "internal_user"}}),
    )
    .await;
    ok(
        &api,
        "/team/member_add",
        json!({"team_id": "TA", "member": {"user_id": "boss", "role": "user"}}),
    )
    .await;
    let boss_key = api
        .generate(json!({"user_id": "boss", "team_id": "TA"}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let oa = ok(
        &api,
        "/user/new",
        json!({"user_id": "oa", "organization_id": "A"}),
    )
    .await;
    let oa = oa["key"].as_str().unwrap().to_string();
    let (s, _) = api
        .post(
            "/organization/member_update",
            json!({"organization_id": "A", "user_id": "oa", "role": "org_admin"}),
        )
        .await;
    assert_eq!(s, 200);
    for (path, body) in [
        (
            "/organization/member_update",
            json!({"organization_id": "A1", "user_id": "boss", "role": "org_admin"}),
        ),
        (
            "/organization/member_delete",
            json!({"organization_id": "A1", "user_id": "boss"}),
        ),
        (
            "/team/member_update",
            json!({"team_id": "TA", "user_id": "boss", "role": "admin"}),
        ),
        (
            "/team/member_delete",
            json!({"team_id": "TA", "user_id": "boss"}),
        ),
        ("/key/block", json!({"key": boss_key})),
        ("/key/delete", json!({"keys": [boss_key]})),
        (
            "/key/generate",
            json!({"user_id": "boss", "team_id": "TA", "key_type": "llm_api"}),
        ),
    ] {
        assert_eq!(
            status(&api, &oa, path, body.clone()).await,
            403,
            "{path} {body}"
        );
    }
    assert_eq!(chat(&api, &boss_key, "mock/a").await, 200);

    // An admin's LLM-only key cannot read the metrics (the listener here is loopback, so make
    // scraping need an admin first).
    let api = Api::on(
        crate::harness::Options::new()
            .config("general_settings:\n  metrics_auth: admin\n")
            .start(),
    );
    let admin = ok(
        &api,
        "/user/new",
        json!({"user_id": "adm", "user_role": "proxy_admin", "auto_create_key": false}),
    )
    .await;
    assert!(admin["key"].is_null());
    let llm_only = api
        .generate(json!({"user_id": "adm", "key_type": "llm_api"}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let full = api.generate(json!({"user_id": "adm"})).await["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api.get_as(&llm_only, "/metrics").await.0, 403);
    let resp = api
        .http
        .get(api.gw.url("/metrics"))
        .bearer_auth(&full)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
