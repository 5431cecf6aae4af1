//! Attacks on JWT auth against the real binary: forged algorithms (`none` in any case, HMAC
//! keyed with the published key as JWK, raw bytes or PEM), keys the token brings itself (`jwk`,
//! `jku`, `x5u`), `kid` injection, claims that try to make an admin, odd `aud` / `exp`, huge
//! tokens, floods of unknown key ids, broken or slow key sets, a withdrawn key, a user blocked
//! or deleted while its token is cached, and a token reaching teams, organisations and
//! management objects it does not belong to. Every one must fail closed (or, for a valid
//! token, stay within what it names), and no token may reach the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{Options, eventually_async};
use crate::jwt::{
    AUD, CONFIG, ISS, Idp, SignKey, Tap, b64json, chat, claims, es256, gateway, now, refused, sign,
};
use crate::keys::Api;
use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::ops::Not;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token with exactly this header (as JSON text) over `payload`, signed by `key` with `alg`.
fn crafted(header: &Value, payload: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let msg = format!("{}.{}", b64json(header), b64json(payload));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).unwrap();
    format!("{msg}.{sig}")
}

fn ok_claims(sub: &str) -> Value {
    claims(json!({"sub": sub}))
}

#[tokio::test]
async fn forged_algorithms_foreign_keys_and_kid_injection_fail_closed() {
    let key = es256("k1");
    let idp = Idp::start(&[&key]);
    // What an attacker hosts: its own key set, which the gateway must never fetch.
    let evil = es256("evil");
    let evil_idp = Idp::start(&[&evil]);
    let api = gateway(&[&idp], ISS).await;
    let payload = ok_claims("dee");
    assert_eq!(
        chat(&api, &sign(&key, &payload), "mock/x", None).await.0,
        200
    );

    // `none` in any capitalisation, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        for sig in ["", "c2ln"] {
            let t = format!(
                "{}.{}.{sig}",
                b64json(&json!({"alg": alg, "kid": "k1"})),
                b64json(&payload)
            );
            let (status, out) = chat(&api, &t, "mock/x", None).await;
            assert_eq!(status, 401, "{alg}/{sig}: {out}");
        }
    }
    // No alg, or one that is not a string.
    for h in [
        json!({"kid": "k1"}),
        json!({"alg": 256, "kid": "k1"}),
        json!({"alg": null}),
    ] {
        let t = format!("{}.{}.c2ln", b64json(&h), b64json(&payload));
        assert_eq!(chat(&api, &t, "mock/x", None).await.0, 401, "{h}");
    }
    // HMAC keyed with what the key set publishes: the JWK's JSON, its raw point, its PEM.
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let published: Vec<Vec<u8>> = vec![
        key.jwk.to_string().into_bytes(),
        key.public.clone(),
        kp.public_key_pem().into_bytes(),
        key.jwk["x"].as_str().unwrap().as_bytes().to_vec(),
    ];
    for secret in &published {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let t = crafted(
                &json!({"alg": format!("{alg:?}"), "kid": "k1", "typ": "JWT"}),
                &payload,
                &EncodingKey::from_secret(secret).unwrap(),
                alg,
            );
            refused(&api, &t, "is not allowed").await;
        }
    }
    // An RSA algorithm named with the EC key's id: the key type must fit.
    let t = crafted(
        &json!({"alg": "RS256", "kid": "k1"}),
        &payload,
        &key.enc,
        Algorithm::ES256,
    );
    assert_eq!(chat(&api, &t, "mock/x", None).await.0, 401);

    // Keys the token brings itself are ignored: signed by the attacker, naming the real kid,
    // with its own key embedded (`jwk`) or linked (`jku`, `x5u`).
    let evil_url = evil_idp.url();
    for extra in [
        json!({"jwk": evil.jwk}),
        json!({"jku": evil_url}),
        json!({"x5u": evil_url}),
        json!({"jwk": evil.jwk, "jku": evil_url, "x5u": evil_url}),
    ] {
        let mut h = json!({"alg": "ES256", "kid": "k1"});
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        let t = crafted(&h, &payload, &evil.enc, Algorithm::ES256);
        refused(&api, &t, "signature").await;
        // The attacker's own kid, with its key linked: unknown here.
        h["kid"] = json!("evil");
        let t = crafted(&h, &payload, &evil.enc, Algorithm::ES256);
        refused(&api, &t, "key id").await;
        // No kid at all: the one fitting key is the real one, and it does not verify.
        h.as_object_mut().unwrap().remove("kid");
        let t = crafted(&h, &payload, &evil.enc, Algorithm::ES256);
        refused(&api, &t, "signature").await;
    }
    assert_eq!(evil_idp.fetches(), 0, "a URL in a token was fetched");

    // kid injection: traversal, empty, huge, control characters, not a string.
    let huge = "k".repeat(10_000);
    for kid in [
        json!("../../../../etc/passwd"),
        json!("/dev/zero"),
        json!(""),
        json!(huge),
        json!("k1\n\u{1b}[31mforged"),
        json!("k1' OR '1'='1"),
        json!(1),
        json!(["k1"]),
    ] {
        let t = crafted(
            &json!({"alg": "ES256", "kid": kid}),
            &payload,
            &key.enc,
            Algorithm::ES256,
        );
        let (status, out) = chat(&api, &t, "mock/x", None).await;
        assert_eq!(status, 401, "kid {kid}: {out}");
        assert!(out.to_string().len() < 2_000, "the kid is echoed whole");
    }
    api.assert_log_free_of(&[&sign(&key, &payload)]);
}

#[tokio::test]
async fn claims_cannot_make_an_admin_and_odd_registered_claims_are_refused() {
    let key = es256("k1");
    let idp = Idp::start(&[&key]);
    let api = gateway(&[&idp], ISS).await;
    let with = |extra: Value| sign(&key, &claims(json!({"sub": "eli"})).tap(extra));
    // Only the exact admin scope in `scope` / `scp` makes a proxy admin.
    for extra in [
        json!({"role": "proxy_admin"}),
        json!({"user_role": "proxy_admin"}),
        json!({"roles": ["proxy_admin", "litellm_proxy_admin"]}),
        json!({"groups": ["litellm_proxy_admin"]}),
        json!({"scope": "LITELLM_PROXY_ADMIN"}),
        json!({"scope": "litellm_proxy_admin_x openid"}),
        json!({"scope": "litellm_proxy_admin,openid"}),
        json!({"scope": {"litellm_proxy_admin": true}}),
        json!({"scope": [["litellm_proxy_admin"]]}),
        json!({"scope": ""}),
        json!({"litellm_proxy_admin": true}),
        json!({"is_admin": true, "admin": true}),
    ] {
        let t = with(extra.clone());
        let (status, out) = api
            .post_as(&t, "/team/new", json!({"team_id": "by-jwt"}))
            .await;
        assert!(
            status == 403 || status == 401,
            "{extra} made an admin: {status} {out}"
        );
    }
    let (status, _) = api.get("/team/info?team_id=by-jwt").await;
    assert_eq!(status, 404, "a team was made");
    // A user's token may not raise its own role.
    let t = with(json!({}));
    let (status, out) = api
        .post_as(
            &t,
            "/user/update",
            json!({"user_id": "eli", "user_role": "proxy_admin"}),
        )
        .await;
    assert_eq!(status, 403, "{out}");

    // aud: a list holding ours is ours; one without it, or a number, is not.
    let (status, out) = chat(
        &api,
        &with(json!({"aud": ["other", AUD, "third"]})),
        "mock/x",
        None,
    )
    .await;
    assert_eq!(status, 200, "{out}");
    refused(&api, &with(json!({"aud": ["other", "third"]})), "audience").await;
    refused(&api, &with(json!({"aud": []})), "aud").await;
    assert_eq!(
        chat(&api, &with(json!({"aud": 7})), "mock/x", None).await.0,
        401
    );
    // exp: a string, an object, a float in the past; iss as a list.
    for extra in [
        json!({"exp": (now() + 3600).to_string()}),
        json!({"exp": {"at": now() + 3600}}),
        json!({"exp": (now() - 600) as f64 + 0.5}),
        json!({"exp": -1}),
        json!({"nbf": (now() + 600).to_string()}),
        json!({"iss": [ISS]}),
    ] {
        let (status, out) = chat(&api, &with(extra.clone()), "mock/x", None).await;
        assert_eq!(status, 401, "{extra}: {out}");
    }
    // A float exp in the future is a NumericDate (RFC 7519 allows fractions): either answer
    // is safe, but never a server error.
    let (status, _) = chat(
        &api,
        &with(json!({"exp": (now() + 3600) as f64 + 0.25})),
        "mock/x",
        None,
    )
    .await;
    assert!(status == 200 || status == 401, "{status}");
    api.assert_log_free_of(&[&t]);
}

#[tokio::test]
async fn huge_tokens_and_floods_of_unknown_kids_leave_the_server_up() {
    let key = es256("k1");
    let idp = Idp::start(&[&key]);
    let api = gateway(&[&idp], ISS).await;
    // Huge tokens, signed and not: refused (by the header limit or the verifier), never a crash.
    for size in [20_000, 200_000, 2_000_000] {
        let big = claims(json!({"sub": "fay", "pad": "x".repeat(size)}));
        for t in [
            sign(&key, &big),
            format!(
                "{}.{}.c2ln",
                b64json(&json!({"alg": "ES256"})),
                b64json(&big)
            ),
        ] {
            let status = api
                .http
                .get(api.gw.url("/v1/models"))
                .bearer_auth(&t)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            assert_ne!(status / 100, 5, "size {size}");
            assert!(
                status != 200 || t.ends_with(".c2ln").not(),
                "size {size}: an unsigned token was accepted"
            );
        }
    }
    // 200 made-up key ids at once: one refetch (rate-limited), every one refused, soon.
    let before = idp.fetches();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let t = sign(&es256(&format!("flood-{i}")), &ok_claims("fay"));
        let (http, url) = (api.http.clone(), api.gw.url("/v1/models"));
        tasks.push(tokio::spawn(async move {
            http.get(url)
                .bearer_auth(t)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        idp.fetches() <= before + 2,
        "{} fetches for one flood",
        idp.fetches() - before
    );
    // Still serving valid tokens.
    let (status, out) = chat(&api, &sign(&key, &ok_claims("fay")), "mock/x", None).await;
    assert_eq!(status, 200, "{out}");
}

/// What a misbehaving key set endpoint answers.
#[derive(Clone)]
enum Answer {
    Keys(Vec<Value>),
    Raw(u16, Bytes),
    /// Accepts and never answers.
    Hang,
}

/// An identity provider whose `/jwks` answer can be broken at will.
struct BrokenIdp {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicU64>,
}

impl BrokenIdp {
    fn start(key: &SignKey) -> BrokenIdp {
        let answer = Arc::new(Mutex::new(Answer::Keys(vec![key.jwk.clone()])));
        let fetches = Arc::new(AtomicU64::new(0));
        let (a, f) = (answer.clone(), fetches.clone());
        let addr = crate::harness::spawn_http(move |_, _req| {
            let (a, f) = (a.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                let answer = a.lock().unwrap().clone();
                let (status, body) = match answer {
                    Answer::Keys(k) => (200, Bytes::from(json!({"keys": k}).to_string())),
                    Answer::Raw(s, b) => (s, b),
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        (200, Bytes::new())
                    }
                };
                let mut r = http::Response::new(Full::new(body));
                *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                r
            }
        });
        BrokenIdp {
            addr,
            answer,
            fetches,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn broken_gateway(idp: &BrokenIdp) -> Api {
    let api = Api::on(
        Options::new()
            .config(CONFIG)
            .env("JWT_PUBLIC_KEY_URL", idp.url())
            .env("JWT_AUDIENCE", AUD)
            .env("JWT_ISSUER", ISS)
            .start(),
    );
    let fetched = eventually_async(Duration::from_secs(10), || async { idp.fetches() > 0 }).await;
    assert!(fetched, "never fetched:\n{}", api.gw.log());
    tokio::time::sleep(Duration::from_millis(200)).await;
    api
}

/// After the key set endpoint starts answering `answer`, a refetch (caused by an unknown kid)
/// keeps the keys in use, and a new token of the old key works at once.
async fn keys_survive(answer: Answer, what: &str) {
    let key = es256("k1");
    let idp = BrokenIdp::start(&key);
    let api = broken_gateway(&idp).await;
    assert_eq!(
        chat(&api, &sign(&key, &ok_claims("gus")), "mock/x", None)
            .await
            .0,
        200,
        "{what}"
    );
    *idp.answer.lock().unwrap() = answer;
    let before = idp.fetches();
    let unknown = sign(&es256("rotated?"), &ok_claims("gus"));
    assert_eq!(chat(&api, &unknown, "mock/x", None).await.0, 401, "{what}");
    assert!(idp.fetches() > before, "{what}: no refetch");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let fresh = sign(&key, &claims(json!({"sub": "gus", "jti": "after"})));
    let (status, out) = chat(&api, &fresh, "mock/x", None).await;
    assert_eq!(status, 200, "{what}: the old keys were dropped: {out}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{what}: a known key waited for the fetch"
    );
}

#[tokio::test]
async fn broken_huge_or_slow_key_sets_keep_the_keys_in_use() {
    let hmac_only = json!({"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]});
    tokio::join!(
        keys_survive(
            Answer::Raw(200, Bytes::from_static(b"<html>login</html>")),
            "html"
        ),
        keys_survive(Answer::Raw(500, Bytes::from_static(b"{}")), "500"),
        keys_survive(Answer::Keys(Vec::new()), "an empty key set"),
        keys_survive(
            Answer::Raw(200, Bytes::from(hmac_only.to_string())),
            "a symmetric key only"
        ),
        keys_survive(
            Answer::Raw(200, Bytes::from(vec![b' '; 3 << 20])),
            "3 MiB of spaces"
        ),
        keys_survive(Answer::Hang, "a hanging endpoint"),
    );
}

#[tokio::test]
async fn a_withdrawn_key_stops_the_tokens_it_signed_though_they_are_cached() {
    let (k1, k2) = (es256("k1"), es256("k2"));
    let idp = Idp::start(&[&k1]);
    let api = gateway(&[&idp], ISS).await;
    let old = sign(&k1, &ok_claims("hal"));
    assert_eq!(chat(&api, &old, "mock/x", None).await.0, 200);
    // The IdP withdraws k1 (compromised) and signs with k2 from now on.
    *idp.keys.lock().unwrap() = vec![k2.jwk.clone()];
    let new = sign(&k2, &ok_claims("hal"));
    assert_eq!(
        chat(&api, &new, "mock/x", None).await.0,
        200,
        "k2 after refetch"
    );
    refused(&api, &old, "key id").await;
}

const ORG_CONFIG: &str = r#"
model_list:
  - model_name: "mock/*"
    litellm_params:
      model: "mock/*"
general_settings:
  enable_jwt_auth: true
  litellm_jwtauth:
    user_id_jwt_field: sub
    team_id_jwt_field: team
    team_ids_jwt_field: groups
    org_id_jwt_field: org
    user_id_upsert: true
"#;

#[tokio::test]
async fn a_cached_token_stops_when_its_user_is_blocked_deleted_or_its_team_blocked() {
    let key = es256("k1");
    let idp = Idp::start(&[&key]);
    let api = gateway(&[&idp], ISS).await;
    let (status, out) = api.post("/team/new", json!({"team_id": "t1"})).await;
    assert_eq!(status, 200, "{out}");
    let ivy = sign(&key, &claims(json!({"sub": "ivy", "team": "t1"})));
    assert_eq!(chat(&api, &ivy, "mock/x", None).await.0, 200);
    assert_eq!(api.get_as(&ivy, "/key/list").await.0, 200);

    // Blocked: refused on the next request, on both surfaces.
    let (status, out) = api
        .post("/user/update", json!({"user_id": "ivy", "blocked": true}))
        .await;
    assert_eq!(status, 200, "{out}");
    let (status, out) = chat(&api, &ivy, "mock/x", None).await;
    assert!(status == 401 || status == 403, "{status} {out}");
    let (status, out) = api.get_as(&ivy, "/key/list").await;
    assert_eq!(status, 403, "{out}");
    let (status, out) = api
        .post("/user/update", json!({"user_id": "ivy", "blocked": false}))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(chat(&api, &ivy, "mock/x", None).await.0, 200);

    // The team blocked: the token's team no longer serves it.
    assert_eq!(
        api.post("/team/block", json!({"team_id": "t1"})).await.0,
        200
    );
    let (status, out) = chat(&api, &ivy, "mock/x", None).await;
    assert!(status == 401 || status == 403, "{status} {out}");
    assert_eq!(
        api.post("/team/unblock", json!({"team_id": "t1"})).await.0,
        200
    );
    assert_eq!(chat(&api, &ivy, "mock/x", None).await.0, 200);

    // Deleted: the cached token does not bring the user back (user_id_upsert makes a user on a
    // token's first use, not again after an administrator removed it).
    let (status, out) = api
        .post(
            "/user/delete",
            json!({"user_ids": ["ivy"], "cascade": true}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    refused(&api, &ivy, "deleted").await;
    let (status, out) = api.get("/user/info?user_id=ivy").await;
    assert_eq!(status, 404, "the token made the deleted user again: {out}");
    api.assert_log_free_of(&[&ivy]);
}

#[tokio::test]
async fn a_token_reaches_only_the_teams_it_names_and_manages_nothing_it_is_not_a_member_of() {
    let key = es256("k1");
    let idp = Idp::start(&[&key]);
    let api = Api::on(
        Options::new()
            .config(ORG_CONFIG)
            .env("JWT_PUBLIC_KEY_URL", idp.url())
            .env("JWT_AUDIENCE", AUD)
            .env("JWT_ISSUER", ISS)
            .start(),
    );
    eventually_async(Duration::from_secs(10), || async { idp.fetches() > 0 }).await;
    for (org, model) in [("o1", "mock/one"), ("o2", "mock/two")] {
        let (status, out) = api
            .post(
                "/organization/new",
                json!({"organization_id": org, "organization_alias": org, "models": [model]}),
            )
            .await;
        assert_eq!(status, 200, "{out}");
    }
    for (team, org) in [("t1", "o1"), ("t2", "o2")] {
        let (status, out) = api
            .post(
                "/team/new",
                json!({"team_id": team, "organization_id": org}),
            )
            .await;
        assert_eq!(status, 200, "{out}");
    }
    // The token names team t1 and claims organisation o2.
    let jo = sign(
        &key,
        &claims(json!({"sub": "jo", "groups": ["t1"], "org": "o2"})),
    );
    assert_eq!(chat(&api, &jo, "mock/one", None).await.0, 200);
    // The team's organisation governs, not the org the token claims.
    let (status, out) = chat(&api, &jo, "mock/two", None).await;
    assert_eq!(status, 403, "{out}");
    // The header cannot pick a team the token does not name, in its org or another.
    for team in ["t2", "t1 ", "T1", "t1,t2", "*"] {
        let (status, out) = chat(&api, &jo, "mock/one", Some(team)).await;
        assert!(
            status == 403 || (team == "t1 " && status == 200),
            "{team}: {status} {out}"
        );
    }
    // Naming a team in a token makes no one a member of it for management.
    for path in ["/team/info?team_id=t1", "/team/info?team_id=t2"] {
        let (status, out) = api.get_as(&jo, path).await;
        assert_eq!(status, 404, "{path}: {out}");
    }
    let (status, out) = api
        .post_as(&jo, "/key/generate", json!({"team_id": "t1"}))
        .await;
    assert!(status == 403 || status == 404, "{out}");
    let (status, out) = api
        .post_as(
            &jo,
            "/team/member_add",
            json!({"team_id": "t1", "member": {"user_id": "jo", "role": "admin"}}),
        )
        .await;
    assert!(status == 403 || status == 404, "{out}");
    let (status, out) = api
        .post_as(
            &jo,
            "/organization/member_add",
            json!({"organization_id": "o2", "member": {"user_id": "jo", "role": "org_admin"}}),
        )
        .await;
    assert!(status == 403 || status == 404, "{out}");
    let (_, team) = api.get("/team/info?team_id=t1").await;
    assert!(
        team["team_info"]["members_with_roles"]
            .as_array()
            .is_none_or(|m| m.is_empty()),
        "{team}"
    );
    // A token naming only a team that does not exist acts for nobody.
    let ghost = sign(&key, &claims(json!({"team": "ghost"})));
    assert_eq!(chat(&api, &ghost, "mock/one", None).await.0, 401);
    api.assert_log_free_of(&[&jo]);
}

#[tokio::test]
async fn one_issuers_key_cannot_sign_for_another_even_in_a_list() {
    let (a, b) = (es256("a1"), crate::jwt::ed25519("b1"));
    let (idp_a, idp_b) = (Idp::start(&[&a]), Idp::start(&[&b]));
    const ISS_B: &str = "https://other-idp.test";
    let api = gateway(&[&idp_a, &idp_b], &format!("{ISS},{ISS_B}")).await;
    let with = |key: &SignKey, iss: Value| sign(key, &ok_claims("kim").tap(json!({"iss": iss})));
    assert_eq!(
        chat(&api, &with(&a, json!(ISS)), "mock/x", None).await.0,
        200
    );
    // A's key naming B, alone or beside A; a list, or no issuer at all.
    refused(&api, &with(&a, json!(ISS_B)), "issuer").await;
    for iss in [
        json!([ISS_B, ISS]),
        json!([ISS]),
        json!([]),
        json!(null),
        json!(7),
    ] {
        let (status, out) = chat(&api, &with(&a, iss.clone()), "mock/x", None).await;
        assert_eq!(status, 401, "iss {iss}: {out}");
    }
    // B's key naming A.
    refused(&api, &with(&b, json!(ISS)), "issuer").await;
}
