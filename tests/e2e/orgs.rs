//! `/organization/*` end to end: the tree and its shape, refused cycles and depth, deletion
//! that never orphans (409 without `cascade`, the whole subtree with it), an org admin who
//! governs its subtree and sees nothing else, and an organisation's budget governing the
//! keys of teams below it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::Options;
use crate::keys::{Api, secret_of};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

impl Api {
    /// Creates an organisation as the master key (asserting success).
    async fn org(&self, id: &str, parent: Option<&str>) -> Value {
        let body = json!({
            "organization_id": id,
            "organization_alias": format!("{id} alias"),
            "parent_organization_id": parent,
        });
        let (status, out) = self.post("/organization/new", body).await;
        assert_eq!(status, 200, "create {id}: {out}");
        out
    }

    /// A chat call with `secret` on the mock model: status and answer.
    async fn chat(&self, secret: &str) -> (u16, Value) {
        let body = json!({"model": "mock/x", "messages": [{"role": "user", "content": "hi"}]});
        self.post_as(secret, "/v1/chat/completions", body).await
    }
}

fn ids(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["organization_id"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// The tree as nested (id, children) pairs, children sorted, for comparing shapes.
fn shape(nodes: &Value) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let id = n["organization_id"].as_str().unwrap().to_string();
            let kids: Vec<Value> = shape(&n["children"])
                .into_iter()
                .map(|(id, kids)| json!([id, kids]))
                .collect();
            (id, Value::Array(kids))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn three_level_tree_has_the_litellm_shapes() {
    let api = Api::start();
    api.org("root", None).await;
    let child = api.org("child", Some("root")).await;
    assert_eq!(child["parent_organization_id"], "root");
    assert_eq!(child["organization_alias"], "child alias");
    api.org("grandchild", Some("child")).await;
    api.org("sibling", Some("root")).await;

    let (status, tree) = api.get("/organization/tree").await;
    assert_eq!(status, 200, "{tree}");
    assert_eq!(
        shape(&tree),
        vec![(
            "root".to_string(),
            json!([["child", [["grandchild", []]]], ["sibling", []]])
        )]
    );
    let root = &tree[0];
    assert_eq!(root["organization_alias"], "root alias");
    assert_eq!(root["spend"], 0.0);
    assert!(root.get("max_budget").is_some(), "{root}");

    let (status, list) = api.get("/organization/list").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list), ["child", "grandchild", "root", "sibling"]);

    let (status, info) = api.get("/organization/info?organization_id=child").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["parent_organization_id"], "root");
    assert_eq!(info["teams"], json!([]));
    assert_eq!(info["members"], json!([]));

    // Bad input, unknown ids, duplicates.
    let (status, out) = api
        .post("/organization/new", json!({"organization_id": "x"}))
        .await;
    assert_eq!(status, 400, "{out}");
    assert_eq!(out["error"]["param"], "organization_alias");
    let (status, _) = api
        .post(
            "/organization/new",
            json!({"organization_alias": "x", "parent_organization_id": "nope"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post(
            "/organization/new",
            json!({"organization_id": "child", "organization_alias": "again"}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, out) = api
        .post(
            "/organization/new",
            json!({"organization_alias": "x", "max_budget": -1}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(out["error"]["param"], "max_budget");
    let (status, _) = api.get("/organization/info?organization_id=nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn depth_is_bounded() {
    let api = Api::start();
    api.org("d1", None).await;
    for i in 2..=32 {
        api.org(&format!("d{i}"), Some(&format!("d{}", i - 1)))
            .await;
    }
    let (status, out) = api
        .post(
            "/organization/new",
            json!({"organization_alias": "too deep", "parent_organization_id": "d32"}),
        )
        .await;
    assert_eq!(status, 400, "{out}");
    assert_eq!(out["error"]["param"], "parent_organization_id");
    // Moving a two-level branch under the deepest level would overflow too.
    api.org("branch", None).await;
    api.org("leaf", Some("branch")).await;
    let (status, _) = api
        .post(
            "/organization/update",
            json!({"organization_id": "branch", "parent_organization_id": "d31"}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, out) = api
        .post(
            "/organization/update",
            json!({"organization_id": "branch", "parent_organization_id": "d30"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
}

#[tokio::test]
async fn cycles_are_refused_and_change_nothing() {
    let api = Api::start();
    api.org("r", None).await;
    api.org("c", Some("r")).await;
    api.org("g", Some("c")).await;
    let (_, before) = api.get("/organization/tree").await;

    for target in ["g", "c", "r"] {
        let (status, out) = api
            .post(
                "/organization/update",
                json!({"organization_id": "r", "parent_organization_id": target, "organization_alias": "renamed"}),
            )
            .await;
        assert_eq!(status, 400, "under {target}: {out}");
        assert!(
            out["error"]["message"].as_str().unwrap().contains("cycle"),
            "{out}"
        );
        assert_eq!(out["error"]["param"], "parent_organization_id");
    }
    let (_, after) = api.get("/organization/tree").await;
    assert_eq!(before, after);
    let (_, r) = api.get("/organization/info?organization_id=r").await;
    assert_eq!(r["organization_alias"], "r alias");
    assert_eq!(r["parent_organization_id"], Value::Null);

    // A legal move, and back to a root.
    let (status, out) = api
        .post(
            "/organization/update",
            json!({"organization_id": "g", "parent_organization_id": "r"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["parent_organization_id"], "r");
    let (status, out) = api
        .post(
            "/organization/update",
            json!({"organization_id": "g", "parent_organization_id": null}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (_, tree) = api.get("/organization/tree").await;
    assert_eq!(
        shape(&tree),
        vec![
            ("g".to_string(), json!([])),
            ("r".to_string(), json!([["c", []]])),
        ]
    );
}

#[tokio::test]
async fn delete_refuses_orphans_and_cascades_the_subtree() {
    let api = Api::start();
    api.org("p", None).await;
    api.org("kid", Some("p")).await;
    api.org("other", None).await;
    api.org("empty", None).await;
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "member", "organization_id": "kid", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = api
        .post(
            "/team/new",
            json!({"team_id": "kid-team", "organization_id": "kid",
                   "members_with_roles": [{"user_id": "member", "role": "user"}]}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let team_key = secret_of(&api.generate(json!({"team_id": "kid-team"})).await);
    let org_key = secret_of(&api.generate(json!({"organization_id": "p"})).await);
    let outside = secret_of(&api.generate(json!({"organization_id": "other"})).await);
    assert_eq!(api.chat(&team_key).await.0, 200);

    let (_, before) = api.get("/organization/tree").await;
    let (status, out) = api
        .post("/organization/delete", json!({"organization_ids": ["p"]}))
        .await;
    assert_eq!(status, 409, "{out}");
    // All or nothing: one refused id deletes none.
    let (status, _) = api
        .post(
            "/organization/delete",
            json!({"organization_ids": ["empty", "p"]}),
        )
        .await;
    assert_eq!(status, 409);
    let (_, after) = api.get("/organization/tree").await;
    assert_eq!(before, after);
    assert_eq!(api.chat(&team_key).await.0, 200);

    let (status, out) = api
        .post(
            "/organization/delete",
            json!({"organization_ids": ["p"], "cascade": true}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["deleted_organizations"], json!(["p"]));
    for id in ["p", "kid"] {
        let (status, _) = api
            .get(&format!("/organization/info?organization_id={id}"))
            .await;
        assert_eq!(status, 404, "{id}");
    }
    let (status, _) = api.get("/team/info?team_id=kid-team").await;
    assert_eq!(status, 404);
    assert_eq!(api.chat(&team_key).await.0, 401);
    assert_eq!(api.chat(&org_key).await.0, 401);
    assert_eq!(api.chat(&outside).await.0, 200);
    // The member survives, without the memberships that pointed into the deleted subtree.
    let (status, info) = api.get("/user/info?user_id=member").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["user_info"]["organization_memberships"], json!([]));
    assert_eq!(info["user_info"]["teams"], json!([]));
    let (_, list) = api.get("/organization/list").await;
    assert_eq!(ids(&list), ["empty", "other"]);
}

#[tokio::test]
async fn org_admin_governs_its_subtree_only() {
    let api = Api::start();
    api.org("A", None).await;
    api.org("A1", Some("A")).await;
    api.org("B", None).await;
    let (status, _) = api
        .post(
            "/organization/update",
            json!({"organization_id": "A", "models": ["mock/*"]}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, u) = api.post("/user/new", json!({"user_id": "u"})).await;
    assert_eq!(status, 200, "{u}");
    let me = secret_of(&u);
    let (status, _) = api
        .post(
            "/user/new",
            json!({"user_id": "outsider", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, out) = api
        .post(
            "/organization/member_add",
            json!({"organization_id": "A", "member": {"user_id": "u", "role": "org_admin"}}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, _) = api
        .post(
            "/organization/member_add",
            json!({"organization_id": "A", "member": {"user_id": "u"}}),
        )
        .await;
    assert_eq!(status, 409);
    let (_, info) = api.get("/user/info?user_id=u").await;
    assert_eq!(
        info["user_info"]["organization_memberships"],
        json!([{"organization_id": "A", "user_role": "org_admin"}])
    );

    let new = |alias: &str, parent: Option<&str>| json!({"organization_id": alias, "organization_alias": alias, "parent_organization_id": parent});
    let (status, out) = api
        .post_as(&me, "/organization/new", new("A1x", Some("A1")))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        api.post_as(&me, "/organization/new", new("Bx", Some("B")))
            .await
            .0,
        404
    );
    assert_eq!(
        api.post_as(&me, "/organization/new", new("top", None))
            .await
            .0,
        403
    );
    // Models only within the chain above.
    let mut wide = new("wide", Some("A1"));
    wide["models"] = json!(["gpt-4o-mini"]);
    assert_eq!(api.post_as(&me, "/organization/new", wide).await.0, 403);
    let mut narrow = new("narrow", Some("A1"));
    narrow["models"] = json!(["mock/a"]);
    assert_eq!(api.post_as(&me, "/organization/new", narrow).await.0, 200);

    let (status, _) = api
        .post_as(
            &me,
            "/organization/update",
            json!({"organization_id": "A", "max_budget": 100}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, out) = api
        .post_as(
            &me,
            "/organization/update",
            json!({"organization_id": "A1", "max_budget": 10}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["max_budget"], 10.0);
    // Moves stay inside the subtree.
    let move_to = |p: &str| json!({"organization_id": "A1x", "parent_organization_id": p});
    assert_eq!(
        api.post_as(&me, "/organization/update", move_to("B"))
            .await
            .0,
        404
    );
    assert_eq!(
        api.post_as(&me, "/organization/update", move_to("A"))
            .await
            .0,
        200
    );
    let root = json!({"organization_id": "A1x", "parent_organization_id": null});
    assert_eq!(api.post_as(&me, "/organization/update", root).await.0, 403);

    let (status, list) = api.get_as(&me, "/organization/list").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list), ["A", "A1", "A1x", "narrow"]);
    let (_, tree) = api.get_as(&me, "/organization/tree").await;
    assert_eq!(
        shape(&tree),
        vec![(
            "A".to_string(),
            json!([["A1", [["narrow", []]]], ["A1x", []]])
        )]
    );
    assert_eq!(
        api.get_as(&me, "/organization/info?organization_id=B")
            .await
            .0,
        404
    );
    assert_eq!(
        api.get_as(&me, "/organization/info?organization_id=A")
            .await
            .0,
        200
    );

    // Members of its own organisation: only users it can see.
    let add = |user: &str, role: &str| json!({"organization_id": "A", "member": {"user_id": user, "role": role}});
    assert_eq!(
        api.post_as(
            &me,
            "/organization/member_add",
            add("outsider", "internal_user")
        )
        .await
        .0,
        404
    );
    assert_eq!(
        api.post_as(
            &me,
            "/organization/member_add",
            add("ghost", "internal_user")
        )
        .await
        .0,
        404
    );
    let (status, out) = api
        .post_as(&me, "/organization/member_add", add("outsider", "boss"))
        .await;
    assert_eq!(status, 400);
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("org_admin, internal_user"),
        "{out}"
    );
    // Once a proxy admin places the outsider in A, A's admin manages its membership.
    let (status, _) = api
        .post("/organization/member_add", add("outsider", "internal_user"))
        .await;
    assert_eq!(status, 200);
    let (status, out) = api
        .post_as(
            &me,
            "/organization/member_update",
            json!({"organization_id": "A", "user_id": "outsider", "role": "internal_user_viewer"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (_, info) = api.get("/organization/info?organization_id=A").await;
    let roles: Vec<(String, String)> = info["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap().into(),
                m["user_role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(roles.contains(&("outsider".into(), "internal_user_viewer".into())));
    let del = json!({"organization_id": "A", "user_id": "outsider"});
    let (status, _) = api
        .post_as(&me, "/organization/member_delete", del.clone())
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        api.post_as(&me, "/organization/member_delete", del).await.0,
        404
    );
    let (_, info) = api.get("/user/info?user_id=outsider").await;
    assert_eq!(info["user_info"]["organization_memberships"], json!([]));

    // Deletion: never its own organisation; a subtree only with cascade.
    let gone = |id: &str| json!({"organization_ids": [id]});
    assert_eq!(
        api.post_as(&me, "/organization/delete", gone("A")).await.0,
        403
    );
    assert_eq!(
        api.post_as(&me, "/organization/delete", gone("A1")).await.0,
        409
    );
    assert_eq!(
        api.post_as(&me, "/organization/delete", gone("B")).await.0,
        404
    );
    assert_eq!(
        api.post_as(&me, "/organization/delete", gone("A1x"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn an_org_budget_governs_the_keys_of_teams_below_it() {
    let config = "model_list:\n  - model_name: \"mock/*\"\n    litellm_params:\n      model: \"mock/*\"\n      input_cost_per_token: 0.001\n      output_cost_per_token: 0.001\n";
    let api = Api::on(Options::new().config(config).start());
    api.org("A", None).await;
    api.org("A1", Some("A")).await;
    let (status, out) = api
        .post(
            "/organization/update",
            json!({"organization_id": "A1", "max_budget": 0.0000001}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = api
        .post(
            "/team/new",
            json!({"team_id": "t", "organization_id": "A1"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let secret = secret_of(&api.generate(json!({"team_id": "t"})).await);

    let (status, out) = api.chat(&secret).await;
    assert_eq!(status, 200, "{out}");
    // Spend is charged as the answer completes; poll rather than assume when.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let (status, out) = api.chat(&secret).await;
        if status != 200 || Instant::now() > deadline {
            break (status, out);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.0, 400, "{}", refused.1);
    assert_eq!(refused.1["error"]["type"], "budget_exceeded");
    let message = refused.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("organization A1"), "{message}");

    let (_, info) = api.get("/organization/info?organization_id=A1").await;
    assert!(info["spend"].as_f64().unwrap() > 0.0, "{info}");
    assert_eq!(info["teams"], json!([{"team_id": "t", "team_alias": null}]));
}
