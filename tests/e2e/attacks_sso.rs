//! Attacks on single sign-on against the real binary: the crafted OpenID provider and the
//! cookie-keeping browser of `sso.rs`, and trusted-proxy clients connecting from 127.0.0.1
//! (trusted) as in `sso_proxy.rs`.
//!
//! Covered: login CSRF (a callback URL of someone else's login opened in a victim's browser),
//! concurrent callbacks with one state, a flood of `/sso/login` not locking legitimate users
//! out, open redirects and header injection through `return_to` and `state`, session cookie
//! tricks (duplicates, case, fixation), CSRF on writes and on sign-out, sessions ending after
//! logout in another tab and staying dead after an unblock, ID token claim shapes, user ids a
//! provider or proxy sends that no API caller could create, email case takeovers, groups as
//! objects, and two first logins of one identity at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{MASTER_KEY, Options};
use crate::jwt::now;
use crate::sso::{Browser, Op, Sign, admin, audit, person, query_of, start};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};

fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Walks a login to the provider and back without following the callback: the callback URL
/// (and the browser keeps the login cookie `/sso/login` set).
async fn callback_url(b: &mut Browser, gw: &crate::harness::Gateway) -> String {
    let to_op = b.get(&gw.url("/sso/login")).await;
    assert_eq!(to_op.status, 302, "{}", to_op.body);
    let back = b.get(&to_op.location.unwrap()).await;
    assert_eq!(back.status, 302);
    back.location.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_attack_login_csrf_and_state_races() {
    let op = Op::start();
    let gw = start(&op, "");

    // The attacker signs in at the provider as themselves and keeps the callback URL.
    op.next(
        person("attacker", "attacker@example.com", &[]),
        Sign::Key(0),
    );
    let mut attacker = Browser::new();
    let to_op = attacker.get(&gw.url("/sso/login")).await;
    assert!(
        attacker
            .login_cookie
            .as_ref()
            .is_some_and(|c| c.len() == 43),
        "/sso/login binds the login to the browser"
    );
    let back = attacker.get(&to_op.location.unwrap()).await;
    let evil_callback = back.location.unwrap();

    // A victim's browser that never started that login: refused, nothing signed in.
    let mut victim = Browser::new();
    let r = victim.get(&evil_callback).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(victim.cookie.is_none());
    // Nor does a victim with a login of its own in progress get the attacker's account.
    let mut victim2 = Browser::new();
    let _own = victim2.get(&gw.url("/sso/login")).await;
    assert!(victim2.login_cookie.is_some());
    let mut b2 = Browser::new();
    b2.login_cookie = victim2.login_cookie.clone();
    op.next(
        person("attacker", "attacker@example.com", &[]),
        Sign::Key(0),
    );
    let other = callback_url(&mut attacker, &gw).await;
    assert_eq!(b2.get(&other).await.status, 400);
    assert!(b2.cookie.is_none());
    // The state was used up by the refused attempt: the attacker cannot reuse it either.
    assert_eq!(attacker.get(&evil_callback).await.status, 400);
    assert_eq!(attacker.get(&other).await.status, 400);
    // A provider error answer with another browser's state does not cancel that login.
    let pending = callback_url(&mut attacker, &gw).await;
    let state = query_of(&pending)["state"].clone();
    let r = victim
        .get(&gw.url(&format!(
            "/sso/callback?error=access_denied&state={}",
            enc(&state)
        )))
        .await;
    assert_eq!(r.status, 400);
    // ... (it is used up, and fails closed for the attacker too: single use either way).
    let (s, _) = admin(&gw, "GET", "/user/info?user_id=attacker", json!({})).await;
    assert_eq!(s, 404, "no callback above signed anyone in");

    // The login cookie's attributes.
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(gw.url("/sso/login"))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = raw
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let login = cookies
        .iter()
        .find(|c| c.starts_with("portcullis_login="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/sso", "Max-Age=600"] {
        assert!(login.contains(attr), "{login}");
    }

    // Concurrent callbacks with one state (same browser): exactly one wins.
    op.next(person("racer", "racer@example.com", &[]), Sign::Key(0));
    let mut racer = Browser::new();
    let cb = callback_url(&mut racer, &gw).await;
    let binding = racer.login_cookie.clone().unwrap();
    let http = racer.http.clone();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (http, cb, binding) = (http.clone(), cb.clone(), binding.clone());
        set.spawn(async move {
            let r = http
                .get(&cb)
                .header("cookie", format!("portcullis_login={binding}"))
                .send()
                .await
                .unwrap();
            let session = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("portcullis_session="));
            (r.status().as_u16(), session)
        });
    }
    let mut wins = 0;
    while let Some(r) = set.join_next().await {
        let (status, session) = r.unwrap();
        match status {
            302 => {
                assert!(session);
                wins += 1;
            }
            400 => assert!(!session),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(audit(&gw, "login").await.len(), 1);

    // Two first logins of one new identity at once: one user, one link, both signed in.
    op.next(person("twin", "twin@example.com", &["eng"]), Sign::Key(0));
    let (s, _) = admin(&gw, "POST", "/team/new", json!({"team_id": "engineering"})).await;
    assert_eq!(s, 200);
    let (mut t1, mut t2) = (Browser::new(), Browser::new());
    let (c1, c2) = (
        callback_url(&mut t1, &gw).await,
        callback_url(&mut t2, &gw).await,
    );
    let (r1, r2) = tokio::join!(t1.get(&c1), t2.get(&c2));
    assert_eq!((r1.status, r2.status), (302, 302));
    assert_eq!(t1.session(&gw).await.0, 200);
    assert_eq!(t2.session(&gw).await.0, 200);
    let (_, team) = admin(&gw, "GET", "/team/info?team_id=engineering", json!({})).await;
    assert_eq!(
        team["team_info"]["members_with_roles"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{team}"
    );
    let (_, created) = admin(
        &gw,
        "GET",
        "/audit?object_id=twin&action=created",
        json!({}),
    )
    .await;
    assert_eq!(created["audit_logs"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_attack_login_flood_does_not_lock_people_out() {
    let op = Op::start();
    let gw = start(&op, "");
    // More logins started (and never finished) than may be pending: none is refused.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (http, url) = (http.clone(), gw.url("/sso/login"));
        set.spawn(async move {
            let mut statuses = std::collections::BTreeMap::new();
            for _ in 0..(10_100 / 8 + usize::from(w == 0) * 8) {
                let s = http.get(&url).send().await.unwrap().status().as_u16();
                *statuses.entry(s).or_insert(0u32) += 1;
            }
            statuses
        });
    }
    while let Some(r) = set.join_next().await {
        let statuses = r.unwrap();
        assert_eq!(
            statuses.keys().copied().collect::<Vec<_>>(),
            [302],
            "{statuses:?}"
        );
    }
    // A person signing in now gets in.
    op.next(person("legit", "legit@example.com", &[]), Sign::Key(0));
    let mut b = Browser::new();
    let r = b.login(&gw, "/ui/").await;
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(b.session(&gw).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_attack_redirects_sessions_and_csrf() {
    let op = Op::start();
    let gw = start(&op, "");
    op.next(person("carol", "carol@example.com", &[]), Sign::Key(0));

    // return_to: whatever it says, the browser lands on this gateway, with no injected header.
    let mut carol = Browser::new();
    let long = format!("/{}", "a".repeat(10_000));
    for evil in [
        "//evil.example",
        "/\\evil.example",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/\t/evil.example",
        "/%09/evil.example",
        "/..//evil.example",
        "/ui/../..//evil.example",
        "/%2e%2e//evil.example",
        "/ui/\r\nSet-Cookie: pwn=1",
        "/ui/%0d%0aSet-Cookie:%20pwn=1",
        "\u{0130}//evil",
        long.as_str(),
    ] {
        let r = carol
            .login_at(&gw, &format!("/sso/login?return_to={}", enc(evil)))
            .await
            .0;
        assert_eq!(r.status, 302, "{evil:?}: {}", r.body);
        assert_eq!(r.location.as_deref(), Some("/ui/"), "{evil:?}");
        assert!(!carol.set_cookie.as_deref().unwrap_or("").contains("pwn"));
    }
    // Raw in the query: bytes that are not UTF-8, encoded slashes and line breaks.
    for raw in [
        "/%ff%fe",
        "%2F%2Fevil.example",
        "/%5C%5Cevil",
        "/ui/%0D%0ALocation:%20//evil",
    ] {
        let r = carol
            .login_at(&gw, &format!("/sso/login?return_to={raw}"))
            .await
            .0;
        assert_eq!(r.location.as_deref(), Some("/ui/"), "{raw}");
    }
    // A local path survives.
    let r = carol.login(&gw, "/ui/keys%3Fx%3D1").await;
    assert_eq!(r.location.as_deref(), Some("/ui/keys?x=1"));
    // A state with CRLF or of huge length: 400, nothing reflected or injected.
    for state in ["x\r\nSet-Cookie: pwn=1", &"s".repeat(60_000)] {
        let r = carol
            .http
            .get(gw.url(&format!("/sso/callback?code=c&state={}", enc(state))))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status == 400 || status == 414 || status == 431, "{status}");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(!r.text().await.unwrap().contains("pwn"));
    }

    // Session cookie tricks. Carol is signed in.
    let cookie = carol.cookie.clone().unwrap();
    let (s, me) = carol.session(&gw).await;
    assert_eq!(s, 200);
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    let with_cookie = |c: &str| {
        carol
            .http
            .get(gw.url("/sso/session"))
            .header("cookie", c.to_string())
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    // A junk cookie of the same name first: the first wins, and it is not valid.
    let r = with_cookie(&format!(
        "portcullis_session=junk; portcullis_session={cookie}"
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(status(r), 401);
    let r = with_cookie(&format!("Portcullis_Session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 401, "the name is case-sensitive");
    let r = with_cookie(&format!(
        "portcullis_session={cookie}; portcullis_session=junk"
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(status(r), 200);
    // Fixation: a value the attacker planted before a login is not what the login issues.
    let mut fixed = Browser::new();
    fixed.cookie = Some("attacker-chosen-value".into());
    op.next(person("dave", "dave@example.com", &[]), Sign::Key(0));
    assert_eq!(fixed.login(&gw, "/ui/").await.status, 302);
    assert_ne!(fixed.cookie.as_deref(), Some("attacker-chosen-value"));
    let r = with_cookie("portcullis_session=attacker-chosen-value")
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 401);

    // CSRF on writes made with the cookie.
    let dave_csrf = fixed.session(&gw).await.1["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let post = |extra: &[(&str, &str)]| {
        let mut r = carol
            .http
            .post(gw.url("/key/generate"))
            .header("cookie", format!("portcullis_session={cookie}"))
            .header("content-type", "application/json")
            .body(json!({"models": ["mock/gpt"]}).to_string());
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        r
    };
    for (what, headers) in [
        ("no token", vec![]),
        (
            "another session's token",
            vec![("x-csrf-token", dave_csrf.as_str())],
        ),
        (
            "Origin: null",
            vec![("x-csrf-token", csrf.as_str()), ("origin", "null")],
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![
                ("x-csrf-token", csrf.as_str()),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ] {
        let r = post(&headers).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{what}");
    }
    // A text/plain form post (what another site can send without a preflight) carrying the
    // token in its body is still refused: only the header counts for the API.
    let r = carol
        .http
        .post(gw.url("/key/generate"))
        .header("cookie", format!("portcullis_session={cookie}"))
        .header("content-type", "text/plain")
        .body(format!("csrf_token={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = post(&[("x-csrf-token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Sign-out from another site: refused, and no cookie is touched (no forced sign-out).
    for cookie_header in [format!("portcullis_session={cookie}"), String::new()] {
        let mut req = carol
            .http
            .post(gw.url("/sso/logout"))
            .header("origin", "https://evil.example")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("csrf_token=x");
        if !cookie_header.is_empty() {
            req = req.header("cookie", cookie_header);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 403);
        assert!(r.headers().get("set-cookie").is_none());
    }
    assert_eq!(carol.session(&gw).await.0, 200);

    // Logout in another tab (the same cookie): the first tab's session is gone too.
    let mut tab2 = Browser::new();
    tab2.cookie = Some(cookie.clone());
    let r = tab2
        .send(
            tab2.http
                .post(gw.url("/sso/logout"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("csrf_token={csrf}")),
        )
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(carol.session(&gw).await.0, 401);

    // Blocked, then unblocked: the session ended at the block and stays ended.
    let (s, _) = admin(
        &gw,
        "POST",
        "/user/update",
        json!({"user_id": "dave", "blocked": true}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = admin(
        &gw,
        "POST",
        "/user/update",
        json!({"user_id": "dave", "blocked": false}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(fixed.session(&gw).await.0, 401);
    // Deleted: the same.
    let mut erin = Browser::new();
    op.next(person("erin", "erin@example.com", &[]), Sign::Key(0));
    assert_eq!(erin.login(&gw, "/ui/").await.status, 302);
    let (s, _) = admin(&gw, "POST", "/user/delete", json!({"user_ids": ["erin"]})).await;
    assert_eq!(s, 200);
    assert_eq!(erin.session(&gw).await.0, 401);

    // Nothing secret reached the log.
    let log = gw.log();
    for secret in [cookie.as_str(), csrf.as_str(), "op-client-secret"] {
        assert!(!log.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_attack_claims_and_provisioning() {
    let op = Op::start();
    let gw = start(&op, "");
    let (s, v) = admin(
        &gw,
        "POST",
        "/user/new",
        json!({"user_id": "root-admin", "user_email": "admin@example.com", "user_role": "proxy_admin"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // User ids no API caller could create: refused, audited, nothing created.
    let long = "u".repeat(300);
    for sub in ["evil\nid", "tab\tid", long.as_str()] {
        op.next(person(sub, "odd@example.com", &[]), Sign::Key(0));
        let mut b = Browser::new();
        let r = b.login(&gw, "/ui/").await;
        assert_eq!(r.status, 403, "{sub:?}: {}", r.body);
        assert!(b.cookie.is_none());
    }
    let (_, users) = admin(&gw, "GET", "/user/list", json!({})).await;
    assert_eq!(users["total"], 1, "{users}");
    let failed = audit(&gw, "login_failed").await;
    assert!(
        failed
            .iter()
            .filter(|e| e["updated_values"]["reason"] == "invalid_user_id")
            .count()
            >= 3
    );
    assert!(
        failed
            .iter()
            .all(|e| e["updated_values"].to_string().len() < 2_000),
        "a refusal's entry is cut short"
    );

    // The admin's email in other letter case, verified or not: refused (no takeover).
    for verified in [false, true] {
        op.next(
            json!({"sub": "mallory", "email": "ADMIN@Example.COM", "email_verified": verified}),
            Sign::Key(0),
        );
        let mut b = Browser::new();
        assert_eq!(b.login(&gw, "/ui/").await.status, 403);
    }
    // A subject equal to the admin's user id is not the admin.
    op.next(person("root-admin", "x@example.com", &[]), Sign::Key(0));
    assert_eq!(Browser::new().login(&gw, "/ui/").await.status, 403);

    // Groups as objects or a huge list: no role from an object that names a mapped group.
    let mut many: Vec<Value> = (0..5_000).map(|i| json!(format!("g{i}"))).collect();
    many.push(json!({"name": "portcullis-admins"}));
    many.push(json!(["portcullis-admins"]));
    op.next(
        json!({"sub": "grace", "email": "grace@example.com", "groups": many}),
        Sign::Key(0),
    );
    let mut grace = Browser::new();
    assert_eq!(grace.login(&gw, "/ui/").await.status, 302);
    assert_eq!(grace.session(&gw).await.1["user_role"], "internal_user");
    op.next(
        json!({"sub": "heidi", "email": "heidi@example.com",
               "groups": {"portcullis-admins": true}}),
        Sign::Key(0),
    );
    let mut heidi = Browser::new();
    assert_eq!(heidi.login(&gw, "/ui/").await.status, 302);
    assert_eq!(heidi.session(&gw).await.1["user_role"], "internal_user");

    // ID token claim shapes.
    for (what, extra) in [
        (
            "aud with another audience and no azp",
            json!({"aud": [crate::sso::CLIENT_ID, "other-client"]}),
        ),
        ("exp as a string", json!({"exp": (now() + 300).to_string()})),
        ("iat an hour old", json!({"iat": now() - 3600})),
        ("iat as a string", json!({"iat": now().to_string()})),
        ("sub as an object", json!({"sub": {"id": "x"}})),
        ("sub empty", json!({"sub": " "})),
    ] {
        let mut claims = person("shapes", "shapes@example.com", &[]);
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        op.next(claims, Sign::Key(0));
        let mut b = Browser::new();
        let r = b.login(&gw, "/ui/").await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert!(b.cookie.is_none(), "{what}");
    }
    // aud naming several clients with azp = this client: accepted.
    let mut claims = person("multi-aud", "multi@example.com", &[]);
    claims["aud"] = json!([crate::sso::CLIENT_ID, "other-client"]);
    claims["azp"] = json!(crate::sso::CLIENT_ID);
    op.next(claims, Sign::Key(0));
    assert_eq!(Browser::new().login(&gw, "/ui/").await.status, 302);
}

// ---- trusted proxy ----

fn proxy_config() -> String {
    "model_list:\n  - model_name: mock/gpt\n    litellm_params:\n      model: mock/gpt\n\
     general_settings:\n  enable_oauth2_proxy_auth: true\n  \
     trusted_proxy_ranges: [127.0.0.1/32]\n  \
     trusted_proxy_mappings:\n    role_mappings: {portcullis-admins: proxy_admin}\n"
        .to_string()
}

fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_attack_trusted_proxy_headers() {
    let gw = Options::new().config(proxy_config()).start();
    let proxy = client_from(Ipv4Addr::new(127, 0, 0, 1));
    let get = |headers: Vec<(&'static str, reqwest::header::HeaderValue)>| {
        let mut r = proxy.get(gw.url("/user/info"));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move {
            let resp = r.send().await.unwrap();
            let s = resp.status().as_u16();
            (s, resp.text().await.unwrap())
        }
    };
    let hv = |s: &str| reqwest::header::HeaderValue::from_str(s).unwrap();

    // A tab inside the user id (visible to HTTP, a control character for everything else).
    let (s, body) = get(vec![("x-forwarded-user", hv("ann\tbob"))]).await;
    assert_eq!(s, 403, "{body}");
    // Non-ASCII bytes, over-long values, and duplicates across letter case: 401.
    let (s, _) = get(vec![(
        "x-forwarded-user",
        reqwest::header::HeaderValue::from_bytes(b"ann\xc3\xa9").unwrap(),
    )])
    .await;
    assert_eq!(s, 401);
    let (s, _) = get(vec![("x-forwarded-user", hv(&"a".repeat(300)))]).await;
    assert_eq!(s, 401);
    let (s, _) = get(vec![
        ("x-forwarded-user", hv("ann")),
        ("X-Forwarded-User", hv("root")),
    ])
    .await;
    assert_eq!(s, 401);
    let (s, _) = get(vec![("x-forwarded-groups", hv(&"g,".repeat(5_000)))]).await;
    assert_eq!(s, 401, "a groups header over 8 KiB");
    // Whitespace around a value is not part of the name.
    let (s, body) = get(vec![("x-forwarded-user", hv("  ann  "))]).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["user_id"], "ann", "{v}");
    // Nobody was created for the refused values.
    let (_, users) = {
        let r = reqwest::Client::new()
            .get(gw.url("/user/list"))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json::<Value>().await.unwrap())
    };
    assert_eq!(users["total"], 1, "{users}");
}
