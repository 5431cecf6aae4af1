//! OIDC browser login end to end: a crafted OpenID provider served from the test (discovery,
//! key set, an authorize endpoint that sends the browser straight back with a code, a token
//! endpoint that checks the PKCE verifier and answers ID tokens the test shapes), the real
//! gateway, and a cookie-keeping client that follows the redirects by hand.
//!
//! Covered: first login and provisioning, group → role / team mapping and its re-sync, cookie
//! attributes, `/ui/` and `/sso/session`, session-authenticated management calls with CSRF,
//! logout, revocation on blocking, every ID token defect failing closed, key rotation, PKCE,
//! replayed and missing state, open redirects, email takeover attempts, email domains,
//! `ui_access_mode: admin_only`, session expiry, and the audit entries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{Gateway, MASTER_KEY, Options, client};
use crate::jwt::{SignKey, b64json, es256, now};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "op-client-secret";

/// How the next ID token is made.
#[derive(Clone)]
pub(crate) enum Sign {
    /// With the provider's current key at this index.
    Key(usize),
    /// `alg: none`, no signature.
    None,
    /// HS256 keyed with the public key's bytes (the algorithm confusion attack).
    HmacWithPublic(usize),
    /// With a key the provider never published.
    Foreign,
}

#[derive(Clone)]
pub(crate) struct Profile {
    /// Merged over the defaults (iss, aud, iat, exp, nonce).
    pub(crate) claims: Value,
    pub(crate) sign: Sign,
    /// Replaces the nonce the login sent.
    pub(crate) nonce: Option<String>,
}

pub(crate) struct Login {
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

pub(crate) struct OpState {
    pub(crate) keys: Vec<Arc<SignKey>>,
    pub(crate) foreign: Arc<SignKey>,
    pub(crate) profile: Profile,
    /// code → the login it was issued for.
    pub(crate) codes: HashMap<String, Login>,
    pub(crate) pkce_checked: u64,
    pub(crate) pkce_refused: u64,
    pub(crate) basic_auth_seen: u64,
    /// The provider spells its issuer with a trailing `/` (as Auth0 does) in its discovery
    /// document and tokens, while the gateway's config names it without.
    pub(crate) issuer_slash: bool,
}

/// The crafted OpenID provider.
pub(crate) struct Op {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<Mutex<OpState>>,
    pub(crate) jwks_fetches: Arc<AtomicU64>,
}

fn sign_with(state: &OpState, claims: &Value) -> String {
    match &state.profile.sign {
        Sign::Key(i) => crate::jwt::sign(&state.keys[*i], claims),
        Sign::Foreign => crate::jwt::sign(&state.foreign, claims),
        Sign::None => format!(
            "{}.{}.",
            b64json(&json!({"alg": "none", "typ": "JWT"})),
            b64json(claims)
        ),
        Sign::HmacWithPublic(i) => {
            let k = &state.keys[*i];
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.kid = Some(k.kid.clone());
            jsonwebtoken::encode(
                &h,
                claims,
                &jsonwebtoken::EncodingKey::from_secret(&k.public).unwrap(),
            )
            .unwrap()
        }
    }
}

pub(crate) fn query_of(uri: &str) -> HashMap<String, String> {
    let q = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl Op {
    pub(crate) fn start() -> Op {
        let state = Arc::new(Mutex::new(OpState {
            keys: vec![Arc::new(es256("k1"))],
            foreign: Arc::new(es256("k1-foreign")),
            profile: Profile {
                claims: json!({}),
                sign: Sign::Key(0),
                nonce: None,
            },
            codes: HashMap::new(),
            pkce_checked: 0,
            pkce_refused: 0,
            basic_auth_seen: 0,
            issuer_slash: false,
        }));
        let fetches = Arc::new(AtomicU64::new(0));
        let (st, f) = (state.clone(), fetches.clone());
        let addr = crate::harness::spawn_http(move |addr, req| {
            let (st, f) = (st.clone(), f.clone());
            async move { serve(addr, &st, &f, req).await }
        });
        Op {
            addr,
            state,
            jwks_fetches: fetches,
        }
    }

    pub(crate) fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next logins' ID tokens carry these claims and are made this way.
    pub(crate) fn next(&self, claims: Value, sign: Sign) {
        let mut s = self.state.lock().unwrap();
        s.profile = Profile {
            claims,
            sign,
            nonce: None,
        };
    }
}

fn reply(status: u16, body: Value) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

async fn serve(
    addr: SocketAddr,
    st: &Mutex<OpState>,
    fetches: &AtomicU64,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let base = format!("http://{addr}");
    let iss = if st.lock().unwrap().issuer_slash {
        format!("{base}/")
    } else {
        base.clone()
    };
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/.well-known/openid-configuration" => reply(
            200,
            json!({
                "issuer": iss,
                "authorization_endpoint": format!("{base}/authorize"),
                "token_endpoint": format!("{base}/token"),
                "jwks_uri": format!("{base}/jwks"),
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["ES256"],
            }),
        ),
        "/jwks" => {
            fetches.fetch_add(1, Ordering::SeqCst);
            let s = st.lock().unwrap();
            let keys: Vec<Value> = s.keys.iter().map(|k| k.jwk.clone()).collect();
            reply(200, json!({"keys": keys}))
        }
        "/authorize" => {
            let q = query_of(&req.uri().to_string());
            assert_eq!(q["response_type"], "code");
            assert_eq!(q["client_id"], CLIENT_ID);
            assert_eq!(q["code_challenge_method"], "S256");
            assert!(q["scope"].split(' ').any(|s| s == "openid"));
            let code = format!("code-{}", uuid::Uuid::new_v4());
            st.lock().unwrap().codes.insert(
                code.clone(),
                Login {
                    nonce: q["nonce"].clone(),
                    challenge: q["code_challenge"].clone(),
                    redirect_uri: q["redirect_uri"].clone(),
                },
            );
            let back = format!(
                "{}?{}",
                q["redirect_uri"],
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("code", &code)
                    .append_pair("state", &q["state"])
                    .finish()
            );
            let mut r = http::Response::new(Full::new(Bytes::new()));
            *r.status_mut() = http::StatusCode::FOUND;
            r.headers_mut().insert("location", back.parse().unwrap());
            r
        }
        "/token" => {
            let basic = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let form: HashMap<String, String> = form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let mut s = st.lock().unwrap();
            let want = format!(
                "Basic {}",
                STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
            );
            if basic.as_deref() != Some(want.as_str()) {
                return reply(401, json!({"error": "invalid_client"}));
            }
            s.basic_auth_seen += 1;
            let Some(login) = s.codes.remove(&form["code"]) else {
                return reply(400, json!({"error": "invalid_grant"}));
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != login.challenge
                || form.get("redirect_uri") != Some(&login.redirect_uri)
            {
                s.pkce_refused += 1;
                return reply(400, json!({"error": "invalid_grant"}));
            }
            s.pkce_checked += 1;
            let mut claims = json!({"iss": iss, "aud": CLIENT_ID, "iat": now(),
                "exp": now() + 300, "nonce": login.nonce});
            for (k, v) in s.profile.claims.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            if let Some(n) = &s.profile.nonce {
                claims["nonce"] = json!(n);
            }
            let id_token = sign_with(&s, &claims);
            reply(
                200,
                json!({"access_token": "at-opaque", "token_type": "Bearer",
                       "expires_in": 300, "id_token": id_token}),
            )
        }
        _ => reply(404, json!({"error": "not_found"})),
    }
}

/// A browser: keeps the session cookie, follows redirects by hand.
pub(crate) struct Browser {
    pub(crate) http: reqwest::Client,
    pub(crate) cookie: Option<String>,
    /// The login cookie (`portcullis_login`) that binds a login to this browser.
    pub(crate) login_cookie: Option<String>,
    /// The last Set-Cookie the gateway sent.
    pub(crate) set_cookie: Option<String>,
}

pub(crate) struct Landed {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
}

impl Browser {
    pub(crate) fn new() -> Browser {
        let _ = client();
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
            login_cookie: None,
            set_cookie: None,
        }
    }

    pub(crate) async fn send(&mut self, req: reqwest::RequestBuilder) -> Landed {
        let mut jar = Vec::new();
        if let Some(c) = &self.cookie {
            jar.push(format!("portcullis_session={c}"));
        }
        if let Some(c) = &self.login_cookie {
            jar.push(format!("portcullis_login={c}"));
        }
        let req = if jar.is_empty() {
            req
        } else {
            req.header("cookie", jar.join("; "))
        };
        let resp = req.send().await.unwrap();
        for sc in resp.headers().get_all("set-cookie") {
            let sc = sc.to_str().unwrap().to_string();
            if let Some(v) = sc
                .split(';')
                .next()
                .unwrap()
                .trim()
                .strip_prefix("portcullis_login=")
            {
                self.login_cookie = (!v.is_empty()).then(|| v.to_string());
                continue;
            }
            let Some(value) = sc
                .split(';')
                .next()
                .unwrap()
                .trim()
                .strip_prefix("portcullis_session=")
                .map(str::to_string)
            else {
                continue;
            };
            self.cookie = (!value.is_empty()).then_some(value);
            self.set_cookie = Some(sc);
        }
        Landed {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string()),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    pub(crate) async fn get(&mut self, url: &str) -> Landed {
        let r = self.http.get(url);
        self.send(r).await
    }

    /// Starts a login and walks it to the provider and back: the callback's answer, plus the
    /// callback URL (for replays).
    pub(crate) async fn login_at(&mut self, gw: &Gateway, start: &str) -> (Landed, String) {
        let to_op = self.get(&gw.url(start)).await;
        assert_eq!(to_op.status, 302, "{}", to_op.body);
        let authorize = to_op.location.unwrap();
        let q = query_of(&authorize);
        assert_eq!(q["redirect_uri"], gw.url("/sso/callback"));
        assert!(q["code_challenge"].len() >= 43 && q["state"].len() >= 43);
        let back = self.get(&authorize).await;
        assert_eq!(back.status, 302);
        let callback = back.location.unwrap();
        (self.get(&callback).await, callback)
    }

    pub(crate) async fn login(&mut self, gw: &Gateway, return_to: &str) -> Landed {
        self.login_at(gw, &format!("/sso/login?return_to={return_to}"))
            .await
            .0
    }

    pub(crate) async fn session(&mut self, gw: &Gateway) -> (u16, Value) {
        let r = self.get(&gw.url("/sso/session")).await;
        (
            r.status,
            serde_json::from_str(&r.body).unwrap_or(Value::Null),
        )
    }
}

pub(crate) fn config(op: &Op, extra_general: &str) -> String {
    format!(
        "model_list:\n  - model_name: mock/gpt\n    litellm_params:\n      model: mock/gpt\n\
         general_settings:\n  sso:\n    issuer: {iss}\n    client_id: {CLIENT_ID}\n\
         \x20   client_secret: os.environ/SSO_CLIENT_SECRET\n\
         \x20   scopes: \"openid email profile groups\"\n\
         \x20   groups_claim: groups\n    default_role: internal_user\n\
         \x20   role_mappings: {{portcullis-admins: proxy_admin}}\n\
         \x20   team_mappings: {{eng: engineering, platform: platform}}\n\
         \x20   allowed_email_domains: [example.com]\n{extra_general}",
        iss = op.issuer()
    )
}

pub(crate) fn start(op: &Op, extra_general: &str) -> Gateway {
    // The base URL (redirect_uri) must be known before start: a port picked now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Options::new()
        .config(config(op, extra_general))
        .paths_via_env()
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("PROXY_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("SSO_CLIENT_SECRET", CLIENT_SECRET)
        .start()
}

pub(crate) async fn admin(gw: &Gateway, method: &str, path: &str, body: Value) -> (u16, Value) {
    let c = client();
    let req = match method {
        "GET" => c.get(gw.url(path)),
        _ => c.post(gw.url(path)).json(&body),
    };
    let resp = req.bearer_auth(MASTER_KEY).send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) fn person(sub: &str, email: &str, groups: &[&str]) -> Value {
    json!({"sub": sub, "email": email, "email_verified": true, "name": sub, "groups": groups})
}

pub(crate) async fn audit(gw: &Gateway, action: &str) -> Vec<Value> {
    let (s, v) = admin(
        gw,
        "GET",
        &format!("/audit?table_name=sso_session&action={action}&page_size=100"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["audit_logs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_login_provisions_maps_and_governs_sessions() {
    let op = Op::start();
    let gw = start(&op, "");
    // Teams the mapping names, one made by an administrator beforehand; an existing admin.
    for t in ["engineering", "ops"] {
        let (s, v) = admin(&gw, "POST", "/team/new", json!({"team_id": t})).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = admin(
        &gw,
        "POST",
        "/user/new",
        json!({"user_id": "root-admin", "user_email": "admin@example.com", "user_role": "proxy_admin"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // Not signed in: /ui/ sends the browser to the login.
    let mut alice = Browser::new();
    let r = alice.get(&gw.url("/ui/")).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.location.as_deref(), Some("/sso/login?return_to=/ui/"));
    assert_eq!(alice.session(&gw).await.0, 401);

    // First login: provisioned with the default role and the mapped team.
    op.next(
        person("alice-sub", "alice@example.com", &["eng", "unmapped"]),
        Sign::Key(0),
    );
    let r = alice.login(&gw, "/ui/welcome").await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/ui/welcome"));
    let sc = alice.set_cookie.clone().unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(sc.contains(attr), "{sc}");
    }
    assert!(!sc.contains("Secure"), "plain http: {sc}");
    let cookie = alice.cookie.clone().unwrap();
    assert!(URL_SAFE_NO_PAD.decode(&cookie).unwrap().len() >= 32);
    let (s, me) = alice.session(&gw).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["user_id"], "alice-sub");
    assert_eq!(me["user_email"], "alice@example.com");
    assert_eq!(me["user_role"], "internal_user");
    assert_eq!(me["teams"], json!(["engineering"]));
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    let page = alice.get(&gw.url("/ui/")).await;
    assert_eq!(page.status, 200);
    for want in [
        "<span id=\"whoami\">alice-sub</span>",
        "<span id=\"email\">alice@example.com</span>",
        "<span id=\"role\">internal_user</span>",
        "<span id=\"teams\">engineering</span>",
        "id=\"logout\"",
        &csrf,
    ] {
        assert!(page.body.contains(want), "{want} missing: {}", page.body);
    }
    let (_, team) = admin(&gw, "GET", "/team/info?team_id=engineering", json!({})).await;
    assert!(team.to_string().contains("alice-sub"), "{team}");

    // The session authenticates management calls as the user (no credential header).
    let r = alice.get(&gw.url("/user/info?user_id=alice-sub")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Writes need the CSRF token, and no cross-site Origin.
    let post = |b: &Browser, path: &str| {
        b.http
            .post(gw.url(path))
            .header("content-type", "application/json")
            .body(json!({"models": ["mock/gpt"]}).to_string())
    };
    let r = alice.send(post(&alice, "/key/generate")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = alice
        .send(post(&alice, "/key/generate").header("x-csrf-token", "wrong"))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = alice
        .send(
            post(&alice, "/key/generate")
                .header("x-csrf-token", &csrf)
                .header("origin", "https://evil.example"),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = alice
        .send(
            post(&alice, "/key/generate")
                .header("x-csrf-token", &csrf)
                .header("origin", gw.url("")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let key: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(key["user_id"], "alice-sub");
    // Governed as the user's own key would be: it sees itself only, and may not make users.
    let r = alice.get(&gw.url("/user/list")).await;
    let listed: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    let r = alice
        .send(
            alice
                .http
                .post(gw.url("/user/new"))
                .header("x-csrf-token", &csrf)
                .json(&json!({"user_id": "made-by-alice"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // An administrator adds alice to `ops` by hand; the next login's groups give the admin
    // role and no longer `eng`: the mapping's membership goes, the administrator's stays.
    let (s, v) = admin(
        &gw,
        "POST",
        "/team/member_add",
        json!({"team_id": "ops", "member": {"user_id": "alice-sub", "role": "user"}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    op.next(
        person(
            "alice-sub",
            "alice@example.com",
            &["portcullis-admins", "platform"],
        ),
        Sign::Key(0),
    );
    let r = alice.login(&gw, "/ui/").await;
    assert_eq!(r.status, 302, "{}", r.body);
    let (_, me) = alice.session(&gw).await;
    assert_eq!(me["user_role"], "proxy_admin");
    assert_eq!(
        me["teams"],
        json!(["ops"]),
        "platform does not exist: not created"
    );
    // Groups gone: the role the mapping gave is taken back.
    op.next(
        person("alice-sub", "alice@example.com", &["eng"]),
        Sign::Key(0),
    );
    alice.login(&gw, "/ui/").await;
    let (_, me) = alice.session(&gw).await;
    assert_eq!(me["user_role"], "internal_user");
    let mut teams: Vec<String> = serde_json::from_value(me["teams"].clone()).unwrap();
    teams.sort();
    assert_eq!(teams, ["engineering", "ops"]);

    // Logout: needs the CSRF token; then the cookie is cleared and the session is gone.
    let old = alice.cookie.clone().unwrap();
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    let r = alice
        .send(
            alice
                .http
                .post(gw.url("/sso/logout"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("csrf_token=nope"),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(alice.session(&gw).await.0, 200);
    let r = alice
        .send(
            alice
                .http
                .post(gw.url("/sso/logout"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("csrf_token={csrf}")),
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(r.location.as_deref(), Some("/ui/"));
    assert!(alice.set_cookie.as_deref().unwrap().contains("Max-Age=0"));
    alice.cookie = Some(old);
    assert_eq!(alice.session(&gw).await.0, 401);

    // Deactivation: a blocked user's session fails on its next request.
    let mut bob = Browser::new();
    op.next(person("bob-sub", "bob@example.com", &[]), Sign::Key(0));
    assert_eq!(bob.login(&gw, "/ui/").await.status, 302);
    assert_eq!(bob.session(&gw).await.0, 200);
    let (s, v) = admin(
        &gw,
        "POST",
        "/user/update",
        json!({"user_id": "bob-sub", "blocked": true}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(bob.session(&gw).await.0, 401);
    assert_eq!(
        bob.get(&gw.url("/user/info?user_id=bob-sub")).await.status,
        401
    );
    // ... and cannot sign in again.
    let r = bob.login(&gw, "/ui/").await;
    assert_eq!(r.status, 403, "{}", r.body);

    // Takeover attempts against the admin by email: unverified, and verified with linking
    // off (the default) — both refused, nothing created or merged.
    let mut mallory = Browser::new();
    for verified in [false, true] {
        op.next(
            json!({"sub": "mallory", "email": "admin@example.com", "email_verified": verified,
                   "groups": []}),
            Sign::Key(0),
        );
        let r = mallory.login(&gw, "/ui/").await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(mallory.cookie.is_none());
    }
    // A subject that is an existing user's id is not that user either.
    op.next(person("root-admin", "other@example.com", &[]), Sign::Key(0));
    assert_eq!(mallory.login(&gw, "/ui/").await.status, 403);
    let (s, _) = admin(&gw, "GET", "/user/info?user_id=mallory", json!({})).await;
    assert_eq!(s, 404);
    let (_, root) = admin(&gw, "GET", "/user/info?user_id=root-admin", json!({})).await;
    assert!(!root.to_string().contains("mallory"));
    // A domain not allowed.
    op.next(person("eve", "eve@evil.example", &[]), Sign::Key(0));
    let r = mallory.login(&gw, "/ui/").await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("domain"), "{}", r.body);

    // Open redirects: whatever the return URL, the browser stays here.
    let mut carol = Browser::new();
    op.next(person("carol", "carol@example.com", &[]), Sign::Key(0));
    for evil in [
        "//evil.example",
        "/%5Cevil.example",
        "https://evil.example/",
        "%2F%2Fevil.example",
        "/%252F%252Fevil.example",
        "javascript:alert(1)",
    ] {
        let r = carol.login(&gw, evil).await;
        assert_eq!(r.status, 302, "{evil}");
        assert_eq!(r.location.as_deref(), Some("/ui/"), "{evil}");
    }
    let r = carol.login_at(&gw, "/sso/key/generate").await.0;
    assert_eq!(r.location.as_deref(), Some("/ui/"));

    // The audit log has the logins, the failures, the logout and the provisioning.
    assert!(audit(&gw, "login").await.len() >= 5);
    let failed = audit(&gw, "login_failed").await;
    let reasons: Vec<String> = failed
        .iter()
        .map(|e| {
            e["updated_values"]["reason"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    for want in [
        "email_in_use",
        "user_id_in_use",
        "email_domain",
        "user_disabled",
    ] {
        assert!(reasons.iter().any(|r| r == want), "{want} in {reasons:?}");
    }
    assert_eq!(audit(&gw, "logout").await.len(), 1);
    assert!(!audit(&gw, "revoked").await.is_empty());
    let (_, created) = admin(
        &gw,
        "GET",
        "/audit?object_id=alice-sub&action=created",
        json!({}),
    )
    .await;
    let entry = &created["audit_logs"][0];
    assert_eq!(entry["changed_by"], "alice-sub", "{created}");
    // The cookie never reaches the log or the audit entries.
    let (_, all) = admin(&gw, "GET", "/audit?page_size=1000", json!({})).await;
    assert!(!all.to_string().contains(&cookie));
    assert!(!gw.log().contains(&cookie));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_id_token_defects_fail_closed() {
    let op = Op::start();
    let gw = start(&op, "");
    let mut b = Browser::new();
    let ok = |sub: &str| person(sub, &format!("{sub}@example.com"), &[]);

    // Key rotation first (an unknown kid may refetch once per 10 s): a new key signs.
    {
        let mut s = op.state.lock().unwrap();
        s.keys.push(Arc::new(es256("k2")));
    }
    let before = op.jwks_fetches.load(Ordering::SeqCst);
    op.next(ok("rotated"), Sign::Key(1));
    let r = b.login(&gw, "/ui/").await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert!(op.jwks_fetches.load(Ordering::SeqCst) > before);

    let defects: Vec<(&str, Value, Sign, Option<&str>)> = vec![
        (
            "wrong aud",
            json!({"aud": "someone-else"}),
            Sign::Key(0),
            None,
        ),
        (
            "wrong iss",
            json!({"iss": "https://evil.example"}),
            Sign::Key(0),
            None,
        ),
        (
            "expired",
            json!({"exp": now() - 3600, "iat": now() - 7200}),
            Sign::Key(0),
            None,
        ),
        ("no exp", json!({"exp": null}), Sign::Key(0), None),
        (
            "not yet valid",
            json!({"nbf": now() + 3600}),
            Sign::Key(0),
            None,
        ),
        (
            "iat in the future",
            json!({"iat": now() + 3600}),
            Sign::Key(0),
            None,
        ),
        (
            "azp of another client",
            json!({"azp": "other"}),
            Sign::Key(0),
            None,
        ),
        ("alg none", json!({}), Sign::None, None),
        (
            "HS256 keyed with the public key",
            json!({}),
            Sign::HmacWithPublic(0),
            None,
        ),
        ("unknown kid", json!({}), Sign::Foreign, None),
        ("bad nonce", json!({}), Sign::Key(0), Some("another-nonce")),
    ];
    for (what, extra, sign, nonce) in defects {
        let mut claims = ok("defect");
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        op.next(claims, sign);
        op.state.lock().unwrap().profile.nonce = nonce.map(str::to_string);
        let mut fresh = Browser::new();
        let r = fresh.login(&gw, "/ui/").await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert!(fresh.cookie.is_none(), "{what}");
        assert!(!r.body.contains("eyJ"), "{what}: the page shows no token");
    }
    let (s, _) = admin(&gw, "GET", "/user/info?user_id=defect", json!({})).await;
    assert_eq!(s, 404, "no defective login provisioned anything");

    // Replayed state: the same callback twice; missing state.
    op.next(ok("replay"), Sign::Key(0));
    let mut r1 = Browser::new();
    let (first, callback) = r1.login_at(&gw, "/sso/login").await;
    assert_eq!(first.status, 302);
    let mut r2 = Browser::new();
    assert_eq!(r2.get(&callback).await.status, 400);
    assert!(r2.cookie.is_none());
    assert_eq!(r2.get(&gw.url("/sso/callback?code=x")).await.status, 400);
    assert_eq!(
        r2.get(&gw.url("/sso/callback?code=x&state=made-up"))
            .await
            .status,
        400
    );

    // PKCE: a code issued to one login, presented with another login's state, carries the
    // wrong verifier — the provider refuses it, and so does the gateway.
    let mut a = Browser::new();
    let start_a = a.get(&gw.url("/sso/login")).await.location.unwrap();
    let back_a = a.get(&start_a).await.location.unwrap();
    let start_b = a.get(&gw.url("/sso/login")).await.location.unwrap();
    let back_b = a.get(&start_b).await.location.unwrap();
    let (qa, qb) = (query_of(&back_a), query_of(&back_b));
    let refused_before = op.state.lock().unwrap().pkce_refused;
    let mixed = format!(
        "{}?code={}&state={}",
        gw.url("/sso/callback"),
        qb["code"],
        qa["state"]
    );
    assert_eq!(a.get(&mixed).await.status, 401);
    let (refused, checked, basic) = {
        let s = op.state.lock().unwrap();
        (s.pkce_refused, s.pkce_checked, s.basic_auth_seen)
    };
    assert_eq!(refused, refused_before + 1);
    assert!(checked >= 2 && basic >= 3);
    assert!(a.cookie.is_none());

    // Every token defect is audited as a failed login.
    let failed = audit(&gw, "login_failed").await;
    assert!(failed.len() >= 11, "{}", failed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_admin_only_ui_and_session_expiry() {
    let op = Op::start();
    let gw = start(&op, "    session_ttl: 3\n  ui_access_mode: admin_only\n");
    let mut user = Browser::new();
    op.next(person("plain", "plain@example.com", &["eng"]), Sign::Key(0));
    let r = user.login(&gw, "/ui/").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(user.cookie.is_none());
    let (s, _) = admin(&gw, "GET", "/user/info?user_id=plain", json!({})).await;
    assert_eq!(s, 404, "a refused first login creates nobody");

    let mut boss = Browser::new();
    op.next(
        person("boss", "boss@example.com", &["portcullis-admins"]),
        Sign::Key(0),
    );
    assert_eq!(boss.login(&gw, "/ui/").await.status, 302);
    let (s, me) = boss.session(&gw).await;
    assert_eq!(s, 200);
    assert_eq!(me["user_role"], "proxy_admin");
    // An admin's session reads admin routes.
    assert_eq!(boss.get(&gw.url("/user/list")).await.status, 200);
    // session_ttl: 3 s.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert_eq!(boss.session(&gw).await.0, 401);
    assert_eq!(boss.get(&gw.url("/user/list")).await.status, 401);
    let r = boss.get(&gw.url("/ui/")).await;
    assert_eq!(r.status, 302);
}

/// A provider whose issuer ends in `/` (Auth0's) while the config names it without: logins
/// work, with the issuer exactly as the provider spells it.
#[tokio::test]
async fn sso_an_issuer_spelled_with_a_trailing_slash_signs_in() {
    let op = Op::start();
    op.state.lock().unwrap().issuer_slash = true;
    let gw = start(&op, "");
    let mut b = Browser::new();
    op.next(person("slash", "slash@example.com", &[]), Sign::Key(0));
    let r = b.login(&gw, "/ui/").await;
    assert_eq!(r.status, 302, "{}", r.body);
    let (s, me) = b.session(&gw).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["user_id"], "slash");
    // A token naming the issuer without the `/` is not the provider's: refused.
    let mut other = Browser::new();
    op.next(json!({"sub": "other", "iss": op.issuer()}), Sign::Key(0));
    let r = other.login(&gw, "/ui/").await;
    assert_eq!(r.status, 401, "{}", r.body);
}

/// One person logging in again and again keeps at most 20 sessions: each login past that ends
/// the oldest (audited as `revoked`), so repeated logins cannot grow memory and the store.
#[tokio::test]
async fn sso_a_user_keeps_at_most_twenty_sessions() {
    let op = Op::start();
    let gw = start(&op, "");
    let mut browsers = Vec::new();
    for _ in 0..21 {
        let mut b = Browser::new();
        op.next(person("many", "many@example.com", &[]), Sign::Key(0));
        assert_eq!(b.login(&gw, "/ui/").await.status, 302);
        browsers.push(b);
    }
    // The oldest session ended (its row's deletion is audited shortly after the login).
    assert_eq!(browsers[0].session(&gw).await.0, 401);
    for b in browsers.iter_mut().skip(1) {
        assert_eq!(b.session(&gw).await.0, 200);
    }
    let revoked = crate::harness::eventually_async(std::time::Duration::from_secs(5), || async {
        audit(&gw, "revoked").await.len() == 1
    })
    .await;
    assert!(revoked, "no revoked entry for the trimmed session");
}
