//! Sign-in by a trusted proxy's identity headers (oauth2-proxy and the like) against the real
//! binary. The gateway trusts 127.0.0.1 only; a second client connects from 127.0.0.2 (all of
//! 127/8 is loopback on Linux) to play an attacker who sends the same headers directly.
//!
//! Covered: first sight provisions the user (default role, group → role and → team, audited
//! once), later requests write nothing, a change of groups re-syncs and takes back what the
//! mapping gave, spoofed headers from an untrusted peer (also with `X-Forwarded-For`) are
//! ignored and logged, ambiguous headers are refused, a credential header wins over the proxy's,
//! a blocked user is refused, cross-site writes are refused, email domains, `/ui/` and
//! `ui_access_mode`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::Options;
use crate::keys::{Api, secret_of};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};

fn config(extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: mock/gpt\n    litellm_params:\n      model: mock/gpt\n\
         general_settings:\n  enable_oauth2_proxy_auth: true\n  \
         trusted_proxy_ranges: [127.0.0.1/32]\n  \
         trusted_proxy_mappings:\n    role_mappings: {{portcullis-admins: proxy_admin}}\n    \
         team_mappings: {{eng: engineering}}\n{extra}"
    )
}

/// A client whose connections come from `ip`.
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .build()
        .unwrap()
}

struct Proxy {
    http: reqwest::Client,
}

const TRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const UNTRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

impl Proxy {
    fn from(ip: Ipv4Addr) -> Proxy {
        Proxy {
            http: client_from(ip),
        }
    }

    /// A request as the proxy forwards it: `headers` are (name, value) pairs.
    async fn send(
        &self,
        api: &Api,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, String) {
        let mut req = self.http.request(method, api.gw.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    async fn get(&self, api: &Api, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let (s, body) = self
            .send(api, reqwest::Method::GET, path, headers, None)
            .await;
        (
            s,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }
}

fn person<'a>(user: &'a str, email: &'a str, groups: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("x-forwarded-user", user),
        ("x-forwarded-email", email),
        ("x-forwarded-groups", groups),
    ]
}

/// `POST /user/new` (proxy admins only) as whoever `headers` name.
async fn new_user(api: &Api, via: &Proxy, headers: &[(&str, &str)], id: &str) -> (u16, String) {
    via.send(
        api,
        reqwest::Method::POST,
        "/user/new",
        headers,
        Some(json!({"user_id": id, "auto_create_key": false})),
    )
    .await
}

async fn audit_count(api: &Api, query: &str) -> usize {
    let (status, out) = api.get(&format!("/audit?{query}&page_size=100")).await;
    assert_eq!(status, 200, "{out}");
    out["audit_logs"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_trusted_proxy_signs_people_in_and_keeps_their_groups_in_step() {
    let api = Api::on(Options::new().config(config("")).start());
    let (status, out) = api
        .post("/team/new", json!({"team_id": "engineering"}))
        .await;
    assert_eq!(status, 200, "{out}");
    let proxy = Proxy::from(TRUSTED);
    let ann = person("ann", "ann@example.com", "portcullis-admins, eng");

    // First sight: created with the mapped role and team, audited.
    let (status, out) = proxy.get(&api, "/user/info?user_id=ann", &ann).await;
    assert_eq!(status, 200, "{out}");
    let user = &out["user_info"];
    assert_eq!(user["user_role"], "proxy_admin", "{out}");
    assert_eq!(user["user_email"], "ann@example.com", "{out}");
    assert_eq!(user["teams"], json!(["engineering"]), "{out}");
    assert_eq!(
        audit_count(&api, "table_name=sso_session&action=login").await,
        1
    );
    assert_eq!(
        audit_count(
            &api,
            "table_name=LiteLLM_UserTable&action=created&object_id=ann"
        )
        .await,
        1
    );
    // As a proxy admin she may do admin things.
    let (status, body) = new_user(&api, &proxy, &ann, "made-by-ann").await;
    assert_eq!(status, 200, "{body}");

    // The same person again writes nothing.
    let entries = audit_count(&api, "").await;
    for _ in 0..3 {
        let (status, _) = proxy.get(&api, "/user/info?user_id=ann", &ann).await;
        assert_eq!(status, 200);
    }
    assert_eq!(audit_count(&api, "").await, entries);

    // Her groups change: the role and the team the mapping gave are taken back.
    let plain = person("ann", "ann@example.com", "marketing");
    let (status, out) = proxy.get(&api, "/user/info?user_id=ann", &plain).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["user_info"]["user_role"], "internal_user", "{out}");
    assert_eq!(out["user_info"]["teams"], json!([]), "{out}");
    let (status, _) = new_user(&api, &proxy, &plain, "not-made").await;
    assert_eq!(status, 403);
    // ... and given again when they come back.
    let (_, out) = proxy.get(&api, "/user/info?user_id=ann", &ann).await;
    assert_eq!(out["user_info"]["user_role"], "proxy_admin", "{out}");

    // A proxy admin's cookie-borne sign-in may not be used for a cross-site write.
    let cross = [ann.clone(), vec![("origin", "https://evil.example")]].concat();
    let (status, body) = proxy
        .send(
            &api,
            reqwest::Method::POST,
            "/key/generate",
            &cross,
            Some(json!({"user_id": "ann"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Cross-site"), "{body}");
    let (status, body) = proxy
        .send(
            &api,
            reqwest::Method::POST,
            "/key/generate",
            &ann,
            Some(json!({"user_id": "ann"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Blocked by an administrator: refused at once, from memory.
    let (status, out) = api
        .post("/user/update", json!({"user_id": "ann", "blocked": true}))
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, body) = proxy.get(&api, "/user/info?user_id=ann", &ann).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn identity_headers_from_anyone_else_are_ignored_and_logged() {
    let api = Api::on(Options::new().config(config("")).start());
    let attacker = Proxy::from(UNTRUSTED);
    let admin = person("root", "root@example.com", "portcullis-admins");
    let (status, out) = new_user(&api, &attacker, &admin, "not-made").await;
    assert_eq!(status, 401, "{out}");
    // Claiming to be relayed by the trusted address changes nothing: the peer decides.
    let relayed = [admin.clone(), vec![("x-forwarded-for", "127.0.0.1")]].concat();
    let (status, _) = new_user(&api, &attacker, &relayed, "not-made").await;
    assert_eq!(status, 401);
    // Nobody was created.
    let (status, _) = api.get("/user/info?user_id=root").await;
    assert_eq!(status, 404);
    let log = api.gw.log();
    assert!(
        log.contains("identity headers from an address outside trusted_proxy_ranges"),
        "{log}"
    );
    assert!(
        !log.contains("root@example.com"),
        "the log echoes a spoofed value"
    );

    // From the trusted address, a header given twice is ambiguous: refused, nobody made.
    let proxy = Proxy::from(TRUSTED);
    let twice = [("x-forwarded-user", "ann"), ("x-forwarded-user", "root")];
    let (status, out) = proxy.get(&api, "/user/list", &twice).await;
    assert_eq!(status, 401, "{out}");
    assert!(out.to_string().contains("more than once"), "{out}");
    let (status, _) = api.get("/user/info?user_id=root").await;
    assert_eq!(status, 404);

    // A credential header wins over the proxy's headers: the key's caller acts.
    let key = secret_of(
        &api.generate(json!({"user_id": "kim", "key_alias": "kim"}))
            .await,
    );
    let mut with_key = admin.clone();
    let bearer = format!("Bearer {key}");
    with_key.push(("authorization", bearer.as_str()));
    let (status, _) = new_user(&api, &proxy, &with_key, "not-made").await;
    assert_eq!(status, 403, "the proxy's admin claim was used over the key");
    for id in ["root", "not-made"] {
        let (status, _) = api.get(&format!("/user/info?user_id={id}")).await;
        assert_eq!(status, 404, "{id} exists");
    }
}

#[tokio::test]
async fn email_domains_and_ui_access_apply_to_proxy_sign_ins() {
    let api = Api::on(
        Options::new()
            .config(config(
                "    allowed_email_domains: [example.com]\n  ui_access_mode: admin_only\n",
            ))
            .start(),
    );
    let proxy = Proxy::from(TRUSTED);
    let eve = person("eve", "eve@elsewhere.test", "");
    let (status, out) = proxy.get(&api, "/user/info?user_id=eve", &eve).await;
    assert_eq!(status, 403, "{out}");
    assert!(out.to_string().contains("email domain"), "{out}");
    // Refused again from memory: one audited failure, not one per request.
    let (status, _) = proxy.get(&api, "/user/info?user_id=eve", &eve).await;
    assert_eq!(status, 403);
    assert_eq!(
        audit_count(&api, "table_name=sso_session&action=login_failed").await,
        1
    );
    let (status, _) = api.get("/user/info?user_id=eve").await;
    assert_eq!(status, 404);

    // The UI: an admin sees who they are; an ordinary user is turned away (admin_only).
    let ann = person("ann", "ann@example.com", "portcullis-admins");
    let (status, page) = proxy
        .send(&api, reqwest::Method::GET, "/ui/", &ann, None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"<span id="whoami">ann</span>"#), "{page}");
    assert!(
        page.contains(r#"<span id="role">proxy_admin</span>"#),
        "{page}"
    );
    assert!(
        !page.contains("logout"),
        "a proxy sign-in has no session to end"
    );
    let bob = person("bob", "bob@example.com", "eng");
    let (status, page) = proxy
        .send(&api, reqwest::Method::GET, "/ui/", &bob, None)
        .await;
    assert_eq!(status, 403, "{page}");
    // Without any sign-in and no OIDC configured there is nothing to log in to.
    let (status, _) = proxy
        .send(&api, reqwest::Method::GET, "/ui/", &[], None)
        .await;
    assert_eq!(status, 404);
}
