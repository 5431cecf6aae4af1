//! JWT auth on the API, end to end: a real JWKS served over HTTP by a fake identity provider,
//! tokens signed with keys made at test time (ES256 and EdDSA), the real gateway binary.
//! Governance (models, limits, budgets, spend) as for a key; admin scope; every defect of a
//! token refused with 401; key rotation; several issuers; `x-litellm-team-id`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{Options, eventually_async};
use crate::keys::{Api, secret_of};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const ISS: &str = "https://idp.test";
pub(crate) const AUD: &str = "portcullis";

/// A signing key made now, with its public half as a JWK.
pub(crate) struct SignKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) enc: EncodingKey,
    pub(crate) jwk: Value,
    /// Bytes an attacker could take from the published key (for the HMAC confusion attack).
    pub(crate) public: Vec<u8>,
}

pub(crate) fn es256(kid: &str) -> SignKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw().to_vec(); // 0x04 || x || y
    SignKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        enc: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                    "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])}),
        public: raw,
    }
}

pub(crate) fn ed25519(kid: &str) -> SignKey {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let raw = kp.public_key_raw().to_vec();
    SignKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        enc: EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": URL_SAFE_NO_PAD.encode(&raw)}),
        public: raw,
    }
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims valid for an hour, plus `extra`.
pub(crate) fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": AUD, "iat": now(), "exp": now() + 3600});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

pub(crate) fn sign(key: &SignKey, claims: &Value) -> String {
    let mut h = Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, claims, &key.enc).unwrap()
}

pub(crate) fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A fake identity provider: `GET /jwks` answers the current key set; fetches are counted.
pub(crate) struct Idp {
    addr: SocketAddr,
    pub(crate) keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicU64>,
}

impl Idp {
    pub(crate) fn start(keys: &[&SignKey]) -> Idp {
        let set = Arc::new(Mutex::new(
            keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>(),
        ));
        let fetches = Arc::new(AtomicU64::new(0));
        let (s, f) = (set.clone(), fetches.clone());
        let addr = crate::harness::spawn_http(move |_, req| {
            let (s, f) = (s.clone(), f.clone());
            async move {
                if req.uri().path() == "/jwks" {
                    f.fetch_add(1, Ordering::SeqCst);
                    let keys = s.lock().unwrap().clone();
                    http::Response::new(Full::new(Bytes::from(json!({"keys": keys}).to_string())))
                } else {
                    let mut r = http::Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = http::StatusCode::NOT_FOUND;
                    r
                }
            }
        });
        Idp {
            addr,
            keys: set,
            fetches,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    pub(crate) fn publish(&self, key: &SignKey) {
        self.keys.lock().unwrap().push(key.jwk.clone());
    }

    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

pub(crate) const CONFIG: &str = r#"
model_list:
  - model_name: "mock/*"
    litellm_params:
      model: "mock/*"
      input_cost_per_token: 0.001
      output_cost_per_token: 0.002
general_settings:
  spend_flush_interval: 0.2
  enable_jwt_auth: true
  litellm_jwtauth:
    user_id_jwt_field: sub
    user_email_jwt_field: email
    team_id_jwt_field: team
    team_ids_jwt_field: groups
    org_id_jwt_field: org
    user_id_upsert: true
"#;

/// The gateway trusting `idps` (paired with `issuers` when given), started once the
/// providers' keys were fetched, so no test's first token races the start-up fetch.
pub(crate) async fn gateway(idps: &[&Idp], issuers: &str) -> Api {
    let urls: Vec<String> = idps.iter().map(|i| i.url()).collect();
    let api = Api::on(
        Options::new()
            .config(CONFIG)
            .env("JWT_PUBLIC_KEY_URL", urls.join(","))
            .env("JWT_AUDIENCE", AUD)
            .env("JWT_ISSUER", issuers)
            .start(),
    );
    let fetched = eventually_async(Duration::from_secs(10), || async {
        idps.iter().all(|i| i.fetches() > 0)
    })
    .await;
    assert!(
        fetched,
        "the key sets were never fetched:\n{}",
        api.gw.log()
    );
    // The fetch answered; give the gateway a moment to store what it read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    api
}

pub(crate) async fn chat(api: &Api, bearer: &str, model: &str, team: Option<&str>) -> (u16, Value) {
    let mut req = api
        .http
        .post(api.gw.url("/v1/chat/completions"))
        .bearer_auth(bearer)
        .json(&json!({"model": model, "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hello"}]}));
    if let Some(t) = team {
        req = req.header("x-litellm-team-id", t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_jwt_caller_is_governed_like_a_key() {
    let key = es256("k1");
    let idp = Idp::start(&[&key]);
    let api = gateway(&[&idp], ISS).await;
    for body in [
        json!({"team_id": "search", "models": ["mock/allowed"], "rpm_limit": 3}),
        json!({"team_id": "ads"}),
        json!({"team_id": "tight", "max_budget": 0.000001}),
    ] {
        let (status, out) = api.post("/team/new", body).await;
        assert_eq!(status, 200, "{out}");
    }
    let ana = sign(
        &key,
        &claims(json!({"sub": "ana", "email": "ana@example.test", "team": "search"})),
    );
    // The first use creates the user (user_id_upsert), as the JWT.
    let (status, out) = chat(&api, &ana, "mock/allowed", None).await;
    assert_eq!(status, 200, "{out}");
    let (status, user) = api.get("/user/info?user_id=ana").await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        user["user_info"]["user_email"], "ana@example.test",
        "{user}"
    );
    // The team's model list governs the token, as it governs the team's keys.
    let (status, out) = chat(&api, &ana, "mock/other", None).await;
    assert_eq!(status, 403, "{out}");
    assert_eq!(out["error"]["code"], "model_not_allowed", "{out}");
    assert!(
        out["error"]["message"].as_str().unwrap().contains("team"),
        "{out}"
    );
    // The team's rpm limit: three calls a minute, the 403 above not counted.
    for _ in 0..2 {
        assert_eq!(chat(&api, &ana, "mock/allowed", None).await.0, 200);
    }
    let (status, out) = chat(&api, &ana, "mock/allowed", None).await;
    assert_eq!(status, 429, "{out}");

    // Several teams in `groups`: the header picks one; a team the token does not name is
    // refused; one budget spent stops the next call.
    let bo = sign(
        &key,
        &claims(json!({"sub": "bo", "groups": ["ads", "tight", "Everyone"]})),
    );
    let (status, out) = chat(&api, &bo, "mock/x", Some("ads")).await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = chat(&api, &bo, "mock/x", Some("search")).await;
    assert_eq!(status, 403, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-litellm-team-id"),
        "{out}"
    );
    assert_eq!(chat(&api, &bo, "mock/x", Some("tight")).await.0, 200);
    let (status, out) = chat(&api, &bo, "mock/x", Some("tight")).await;
    assert_eq!(status, 400, "{out}");
    assert_eq!(out["error"]["type"], "budget_exceeded", "{out}");

    // Spend is attributed to the user and team the token named, never to the token itself.
    let flushed = eventually_async(Duration::from_secs(10), || async {
        let (_, logs) = api.get("/spend/logs?team_id=ads").await;
        logs.as_array().is_some_and(|rows| !rows.is_empty())
    })
    .await;
    assert!(flushed, "no spend rows for team ads");
    let (_, logs) = api.get("/spend/logs?team_id=ads").await;
    let row = &logs.as_array().unwrap()[0];
    assert_eq!(row["user"], "bo", "{row}");
    assert_eq!(row["api_key"], format!("jwt:{ISS}|bo"), "{row}");
    let (_, team) = api.get("/team/info?team_id=search").await;
    assert!(team["team_info"]["spend"].as_f64().unwrap() > 0.0, "{team}");
    let (_, user) = api.get("/user/info?user_id=ana").await;
    assert!(user["user_info"]["spend"].as_f64().unwrap() > 0.0, "{user}");

    // The user was created by the token, and the audit log says so.
    let (_, audit) = api
        .get("/audit?table_name=LiteLLM_UserTable&object_id=ana")
        .await;
    let entry = &audit["audit_logs"][0];
    assert_eq!(entry["changed_by"], "ana", "{audit}");
    assert_eq!(
        entry["changed_by_api_key"],
        format!("jwt:{ISS}|ana"),
        "{audit}"
    );

    // A virtual key works alongside.
    let k = secret_of(&api.generate(json!({})).await);
    assert_eq!(chat(&api, &k, "mock/x", None).await.0, 200);
    api.assert_log_free_of(&[&ana, &bo]);
}

#[tokio::test]
async fn the_admin_scope_reaches_management_routes_and_nothing_else_does() {
    let key = es256("k1");
    let idp = Idp::start(&[&key]);
    let api = gateway(&[&idp], ISS).await;
    let admin = sign(
        &key,
        &claims(json!({"sub": "ops-bot", "scope": "openid litellm_proxy_admin"})),
    );
    let (status, out) = api
        .post_as(&admin, "/team/new", json!({"team_id": "made-by-jwt"}))
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = api.get_as(&admin, "/key/list").await;
    assert_eq!(status, 200, "{out}");
    let (_, audit) = api
        .get("/audit?table_name=LiteLLM_TeamTable&object_id=made-by-jwt")
        .await;
    let entry = &audit["audit_logs"][0];
    // The token names a user (created on first use); the key column says it was a JWT.
    assert_eq!(entry["changed_by"], "ops-bot", "{audit}");
    assert_eq!(
        entry["changed_by_api_key"],
        format!("jwt:{ISS}|ops-bot"),
        "{audit}"
    );
    assert_eq!(entry["actor_role"], "proxy_admin", "{audit}");

    // A user's token without the scope acts as that user: an internal user creates no teams.
    let plain = sign(&key, &claims(json!({"sub": "carla"})));
    let (status, out) = api
        .post_as(&plain, "/team/new", json!({"team_id": "nope"}))
        .await;
    assert_eq!(status, 403, "{out}");
    let (status, out) = api.get_as(&plain, "/user/info?user_id=carla").await;
    assert_eq!(status, 200, "{out}");
}

/// Asserts a 401 on both surfaces naming the failed check, and that the token is not echoed.
pub(crate) async fn refused(api: &Api, token: &str, says: &str) {
    let (status, out) = chat(api, token, "mock/x", None).await;
    assert_eq!(status, 401, "{says}: {out}");
    assert_eq!(out["error"]["type"], "authentication_error", "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{says}: {out}");
    assert!(
        !out.to_string().contains(token),
        "the token is echoed: {out}"
    );
    let (status, out) = api.get_as(token, "/key/list").await;
    assert_eq!(status, 401, "{says}: {out}");
    assert_eq!(out["error"]["code"], "401", "{out}");
    assert!(
        out["error"]["message"].as_str().unwrap().contains(says),
        "{out}"
    );
}

#[tokio::test]
async fn every_defect_of_a_token_fails_closed() {
    let key = es256("k1");
    let idp = Idp::start(&[&key]);
    let api = gateway(&[&idp], ISS).await;
    let ok = |extra: Value| sign(&key, &claims(json!({"sub": "dee"})).tap(extra));
    // Within the 60 s clock skew an expired token still passes; beyond it, it does not.
    assert_eq!(
        chat(&api, &ok(json!({"exp": now() - 30})), "mock/x", None)
            .await
            .0,
        200
    );
    refused(&api, &ok(json!({"exp": now() - 600})), "expired").await;
    refused(&api, &ok(json!({"nbf": now() + 600})), "not valid yet").await;
    refused(&api, &ok(json!({"aud": "another-app"})), "audience").await;
    refused(&api, &ok(json!({"iss": "https://evil.test"})), "issuer").await;
    refused(&api, &ok(json!({"exp": null})), "exp").await;

    // `alg: none`, signature left empty.
    let payload = b64json(&claims(json!({"sub": "dee"})));
    let none = format!(
        "{}.{payload}.",
        b64json(&json!({"alg": "none", "kid": "k1"}))
    );
    refused(&api, &none, "algorithm `none` is not allowed").await;
    // HS256 "signed" with the published public key: the classic key-confusion forgery.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let forged = jsonwebtoken::encode(
        &h,
        &claims(json!({"sub": "dee"})),
        &EncodingKey::from_secret(&key.public).unwrap(),
    )
    .unwrap();
    refused(&api, &forged, "algorithm `HS256` is not allowed").await;
    // A payload changed after signing.
    let good = ok(json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64json(&claims(
            json!({"sub": "dee", "scope": "litellm_proxy_admin"})
        )),
        parts[2]
    );
    refused(&api, &tampered, "signature").await;
    // An unknown key id makes the gateway refetch the key set once, then refuse.
    let before = idp.fetches();
    let stranger = es256("k-unknown");
    refused(
        &api,
        &sign(&stranger, &claims(json!({"sub": "dee"}))),
        "key id",
    )
    .await;
    assert_eq!(
        idp.fetches(),
        before + 1,
        "one refetch for the unknown key id"
    );
    // Another unknown key id right after: rate-limited, no second fetch.
    let other = es256("k-other");
    refused(
        &api,
        &sign(&other, &claims(json!({"sub": "dee"}))),
        "key id",
    )
    .await;
    assert_eq!(idp.fetches(), before + 1, "refetches are rate-limited");
    // A user that does not exist without user_id_upsert is covered by the unit tests; a
    // token that names nobody is refused here.
    refused(&api, &sign(&key, &claims(json!({}))), "names no user").await;
    api.assert_log_free_of(&[&good, &tampered, &forged]);
}

#[tokio::test]
async fn rotated_keys_and_several_issuers_are_accepted() {
    let (a1, a2, b1) = (es256("a1"), es256("a2"), ed25519("b1"));
    let (idp_a, idp_b) = (Idp::start(&[&a1]), Idp::start(&[&b1]));
    const ISS_B: &str = "https://other-idp.test";
    let api = gateway(&[&idp_a, &idp_b], &format!("{ISS},{ISS_B}")).await;
    let from_a = sign(&a1, &claims(json!({"sub": "eve"})));
    assert_eq!(chat(&api, &from_a, "mock/x", None).await.0, 200);
    let from_b = sign(&b1, &claims(json!({"sub": "fay", "iss": ISS_B})));
    let (status, out) = chat(&api, &from_b, "mock/x", None).await;
    assert_eq!(status, 200, "EdDSA from the second issuer: {out}");
    // Issuers pair with their key URLs: A's key cannot sign for B.
    let crossed = sign(&a1, &claims(json!({"sub": "eve", "iss": ISS_B})));
    refused(&api, &crossed, "issuer").await;
    // Rotation: a key published after start works once the gateway refetches for its kid.
    idp_a.publish(&a2);
    let rotated = sign(&a2, &claims(json!({"sub": "eve"})));
    let (status, out) = chat(&api, &rotated, "mock/x", None).await;
    assert_eq!(status, 200, "the rotated key: {out}");
    // Cached: the same token again does not fetch anything.
    let fetched = idp_a.fetches();
    assert_eq!(chat(&api, &rotated, "mock/x", None).await.0, 200);
    assert_eq!(idp_a.fetches(), fetched);
}

const ROLES_CONFIG: &str = r#"
model_list:
  - model_name: "mock/*"
    litellm_params:
      model: "mock/*"
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth:
    user_id_jwt_field: sub
    user_roles_jwt_field: realm_access.roles
    user_allowed_roles: [basic]
    roles_jwt_field: realm_access.roles
    role_mappings:
      - role: auditors
        internal_role: proxy_admin_viewer
"#;

#[tokio::test]
async fn users_must_exist_and_roles_map_without_upsert() {
    let key = es256("k1");
    let idp = Idp::start(&[&key]);
    let api = Api::on(
        Options::new()
            .config(ROLES_CONFIG)
            .env("JWT_PUBLIC_KEY_URL", idp.url())
            .env("JWT_AUDIENCE", AUD)
            .env("JWT_ISSUER", ISS)
            .start(),
    );
    let token = |roles: Value| {
        sign(
            &key,
            &claims(json!({"sub": "hal", "realm_access": {"roles": roles}})),
        )
    };
    // Without user_id_upsert a token naming an unknown user is refused.
    let basic = token(json!(["basic"]));
    refused(&api, &basic, "does not exist").await;
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "hal", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(chat(&api, &basic, "mock/x", None).await.0, 200);
    // A role outside user_allowed_roles: a valid token that may not act (403).
    let (status, out) = chat(&api, &token(json!(["other"])), "mock/x", None).await;
    assert_eq!(status, 403, "{out}");
    assert_eq!(out["error"]["code"], "jwt_not_allowed", "{out}");
    // role_mappings: `auditors` acts as a proxy admin viewer — reads everything, changes nothing.
    let (status, out) = api
        .post(
            "/user/new",
            json!({"user_id": "zed", "auto_create_key": false}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let auditor = token(json!(["auditors"]));
    let (status, out) = api.get_as(&auditor, "/user/info?user_id=zed").await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = api
        .post_as(&auditor, "/team/new", json!({"team_id": "t"}))
        .await;
    assert_eq!(status, 403, "{out}");
    // The same user with a plain role sees only itself.
    let (status, out) = api.get_as(&basic, "/user/info?user_id=zed").await;
    assert_eq!(status, 404, "{out}");
}

#[tokio::test]
async fn a_jwt_is_an_unknown_key_when_jwt_auth_is_off() {
    let api = Api::start();
    let key = es256("k1");
    let token = sign(&key, &claims(json!({"sub": "gil"})));
    let (status, out) = chat(&api, &token, "mock/x", None).await;
    assert_eq!(status, 401, "{out}");
    assert_eq!(out["error"]["code"], "invalid_api_key", "{out}");
}

pub(crate) trait Tap {
    fn tap(self, extra: Value) -> Value;
}

impl Tap for Value {
    /// These claims with `extra` laid over them (`null` removes one).
    fn tap(mut self, extra: Value) -> Value {
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                self.as_object_mut().unwrap().remove(k);
            } else {
                self[k] = v.clone();
            }
        }
        self
    }
}
