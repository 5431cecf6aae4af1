//! OIDC browser login end to end with a real OpenID Provider and a real browser: npm
//! `oidc-provider` (OpenID-certified; `tests/oidc/provider.mjs`) on 127.0.0.1 and headless
//! Debian chromium driven by npm `playwright-core` (`tests/oidc/login.mjs`) sign users in
//! through the real gateway: `/sso/login` → the provider's login form → `/sso/callback` → `/ui/`.
//! Checked: the session cookie's flags, the user provisioned with the role and team the group
//! mappings give (and the default role without a mapped group), the login audited, logout, ES256
//! ID tokens, and a signing-key rotation at the provider (an unknown `kid`, the JWKS fetched
//! again). Node, `tests/oidc/node_modules` (`npm ci`, done here if missing) and chromium are
//! required: a missing one fails the test with what to install, never a skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::harness::{MASTER_KEY, Options, client};
use crate::keys::Api;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "oidc-test-client-secret-6f1d0c2a9b8e7d35";
const START_DEADLINE: Duration = Duration::from_secs(30);

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Node, the npm packages and chromium, checked (and `npm ci` run) once per test binary.
fn tools() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let node = Command::new("node").arg("--version").output();
        if !node.as_ref().is_ok_and(|o| o.status.success()) {
            return Err("`node` is not on PATH (Node 20+; apt-get install nodejs npm)".into());
        }
        if !Path::new(&chromium()).exists() {
            return Err(format!(
                "no chromium at {} (apt-get install chromium, or set CHROMIUM)",
                chromium()
            ));
        }
        let dir = oidc_dir();
        let modules = dir.join("node_modules");
        let installed = ["oidc-provider", "playwright-core"]
            .iter()
            .all(|p| modules.join(p).join("package.json").exists());
        let stale =
            mtime(&dir.join("package-lock.json")) > mtime(&modules.join(".package-lock.json"));
        if !installed || stale {
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .output()
                .map_err(|e| format!("npm: {e} (apt-get install npm)"))?;
            if !out.status.success() {
                return Err(format!(
                    "`npm ci --prefix tests/oidc` failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    });
    if let Err(e) = ready {
        panic!("sso_browser: the OIDC test tools are not usable: {e}");
    }
}

/// `tests/oidc/provider.mjs` on 127.0.0.1, killed on drop.
struct Provider {
    child: Child,
    /// Held open: the provider exits when it closes (should this process die without dropping).
    _stdin: ChildStdin,
    issuer: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Provider {
    fn start(config: Value) -> Provider {
        tools();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("provider.json");
        std::fs::write(&file, config.to_string()).unwrap();
        let log = dir.path().join("provider.log");
        let mut child = Command::new("node")
            .arg(oidc_dir().join("provider.mjs"))
            .arg(&file)
            .env("OIDC_EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn node tests/oidc/provider.mjs");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("READY ") {
                    let _ = tx.send(issuer.trim().to_string());
                }
            }
        });
        let deadline = Instant::now() + START_DEADLINE;
        let issuer = loop {
            if let Ok(issuer) = rx.recv_timeout(Duration::from_millis(50)) {
                break issuer;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "provider.mjs exited during start-up ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "provider.mjs did not print READY:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Provider {
            child,
            _stdin: stdin,
            issuer,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = client().request(method, format!("{}{path}", self.issuer));
        if let Some(b) = body {
            rb = rb.body(b.to_string());
        }
        let r = rb.send().await.unwrap();
        assert!(r.status().is_success(), "provider {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// A new key of `alg` becomes the signer; `retire` drops the older keys of that alg.
    async fn rotate(&self, alg: &str, retire: bool) -> Value {
        self.control(
            reqwest::Method::POST,
            "/__test/rotate",
            Some(json!({"alg": alg, "retire": retire})),
        )
        .await
    }

    /// `{issuer, keys, requests: {"GET /jwks": n, ...}, logins}`.
    async fn state(&self) -> Value {
        self.control(reqwest::Method::GET, "/__test/state", None)
            .await
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn account(id: &str, email: &str, groups: &[&str]) -> Value {
    json!({"id": id, "password": format!("pw-{id}"),
        "claims": {"email": email, "email_verified": true, "name": format!("User {id}"),
                   "groups": groups}})
}

/// The provider with the gateway's client registered for `base` (and the test accounts).
fn provider_for(base: &str, id_token_alg: &str) -> Provider {
    Provider::start(json!({
        // Another host than the gateway's 127.0.0.1: another site, with its own cookies.
        "issuer": "http://localhost:{port}",
        "signing_algs": ["RS256", "ES256"],
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{base}/sso/callback")],
            "post_logout_redirect_uris": [format!("{base}/"), format!("{base}/ui/"),
                                          format!("{base}/sso/login")],
            "token_endpoint_auth_method": "client_secret_basic",
            "id_token_signed_response_alg": id_token_alg,
        }],
        "accounts": [
            account("alice", "alice@example.com", &["portcullis-admins", "eng"]),
            account("bob", "bob@example.com", &["marketing"]),
        ],
    }))
}

/// A free port on 127.0.0.1, held until the gateway is about to take it: the gateway's base
/// URL is part of its config, so the port must be known before it starts.
fn reserve_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

fn sso_config(issuer: &str, base: &str) -> String {
    format!(
        "model_list:\n  - model_name: \"mock/*\"\n    litellm_params: {{model: \"mock/*\"}}\n\
         general_settings:\n  ui_access_mode: all\n  sso:\n    issuer: {issuer}\n    \
         client_id: {CLIENT_ID}\n    client_secret: {CLIENT_SECRET}\n    \
         scopes: \"openid email profile groups\"\n    base_url: {base}\n    \
         groups_claim: groups\n    default_role: internal_user\n    \
         role_mappings: {{portcullis-admins: proxy_admin}}\n    \
         team_mappings: {{eng: engineering}}\n"
    )
}

/// A provider and the real gateway configured for it, on a port chosen before the start (its
/// base URL is part of the config): `--listen` is given as PORTCULLIS_LISTEN, which the
/// harness's environment lets a test override.
struct Setup {
    api: Api,
    idp: Provider,
    base: String,
}

fn setup(id_token_alg: &str) -> Setup {
    let reserved = reserve_port();
    let port = reserved.local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = provider_for(&base, id_token_alg);
    drop(reserved);
    let gw = Options::new()
        .config(sso_config(&idp.issuer, &base))
        .paths_via_env()
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .start();
    assert_eq!(gw.url(""), base, "the gateway is not on the chosen port");
    Setup {
        api: Api::on(gw),
        idp,
        base,
    }
}

/// Runs `tests/oidc/login.mjs`; its JSON result, or a panic with its message (and the
/// screenshot path it printed), the provider's and the gateway's logs.
fn browser_login(s: &Setup, user: &str, logout: bool) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(oidc_dir().join("login.mjs"))
        .args([
            "--gateway",
            &s.base,
            "--user",
            user,
            "--timeout-ms",
            "60000",
        ])
        .env("OIDC_LOGIN_PASSWORD", format!("pw-{user}"));
    if logout {
        cmd.arg("--logout");
    }
    let out = cmd.output().expect("run node tests/oidc/login.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!(
            "browser login of {user} failed ({}):\n{}\n--- provider log (tail) ---\n{}\n\
             --- gateway log (tail) ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&s.idp.log(), 40),
            tail(&s.api.gw.log(), 40),
        );
    }
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("login.mjs printed {stdout:?}: {e}"))
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The gateway's session cookie as the browser holds it.
fn session_cookie(r: &Value) -> &Value {
    r["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "portcullis_session")
        .unwrap_or_else(|| panic!("no portcullis_session cookie: {r}"))
}

fn assert_signed_in(s: &Setup, r: &Value, user: &str, email: &str) {
    assert_eq!(r["final_url"], format!("{}/ui/", s.base), "{r}");
    assert_eq!(r["whoami"], user, "{r}");
    assert_eq!(r["email"], email, "{r}");
    let c = session_cookie(r);
    assert_eq!(c["httpOnly"], true, "{c}");
    assert_eq!(c["sameSite"], "Lax", "{c}");
}

fn team_ids(user_info: &Value) -> Vec<String> {
    let teams = user_info["user_info"]["teams"]
        .as_array()
        .or_else(|| user_info["teams"].as_array())
        .cloned()
        .unwrap_or_default();
    teams
        .iter()
        .filter_map(|t| {
            t.as_str()
                .or_else(|| t["team_id"].as_str())
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn a_browser_signs_in_at_a_real_provider_and_gets_the_mapped_role_and_team_then_signs_out() {
    let s = setup("RS256");
    let (status, out) = s
        .api
        .post("/team/new", json!({"team_id": "engineering"}))
        .await;
    assert_eq!(status, 200, "{out}");

    let r = browser_login(&s, "alice", true);
    assert_signed_in(&s, &r, "alice", "alice@example.com");
    assert_eq!(r["role"], "proxy_admin", "{r}");
    assert_eq!(r["teams"], "engineering", "{r}");

    // Provisioned: the role from role_mappings, the team from team_mappings.
    let (status, info) = s.api.get("/user/info?user_id=alice").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["user_info"]["user_role"], "proxy_admin", "{info}");
    assert_eq!(
        info["user_info"]["user_email"], "alice@example.com",
        "{info}"
    );
    assert_eq!(team_ids(&info), vec!["engineering".to_string()], "{info}");
    let (status, team) = s.api.get("/team/info?team_id=engineering").await;
    assert_eq!(status, 200, "{team}");
    assert!(
        team.to_string().contains("\"alice\""),
        "alice is not in the team: {team}"
    );

    // The login is audited.
    let (status, audit) = s
        .api
        .get("/audit?table_name=sso_session&page_size=100")
        .await;
    assert_eq!(status, 200, "{audit}");
    let logs = audit["audit_logs"].as_array().unwrap();
    assert!(
        logs.iter()
            .any(|l| l["action"] == "login" && l.to_string().contains("alice")),
        "no login entry for alice: {audit}"
    );

    // Signed out: not signed in again by the provider's own session, the cookie gone, and the
    // old session cookie (replayed) no longer accepted.
    let out = &r["logout"];
    assert!(
        out["error"].is_null(),
        "the gateway refused the logout: {out}"
    );
    let (_, audit) = s
        .api
        .get("/audit?table_name=sso_session&page_size=100&sort_order=asc")
        .await;
    let actions: Vec<&str> = audit["audit_logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["action"].as_str())
        .collect();
    assert!(
        out["whoami"].is_null(),
        "still signed in after logout (the provider's own session signs the browser in again \
         unless logout lands on a signed-out page, asks for prompt=login or ends the provider's \
         session too); sso_session audit: {actions:?}; {out}"
    );
    assert!(
        out["login_form"] == true
            || out["sign_in_link"] == true
            || out["final_url"]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("{}/sso/login", s.base))),
        "logout did not land on the login: {out}"
    );
    assert!(
        !out["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "portcullis_session"),
        "the session cookie survived logout: {out}"
    );
    assert!(
        out["replay"]["whoami"].is_null(),
        "the old session still works: {out}"
    );
    assert!(actions.contains(&"logout"), "no logout entry: {audit}");
}

#[tokio::test]
async fn a_user_in_no_mapped_group_gets_the_default_role_with_es256_id_tokens() {
    let s = setup("ES256");
    let r = browser_login(&s, "bob", false);
    assert_signed_in(&s, &r, "bob", "bob@example.com");
    assert_eq!(r["role"], "internal_user", "{r}");
    assert_eq!(r["teams"], "", "{r}");
    let (status, info) = s.api.get("/user/info?user_id=bob").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["user_info"]["user_role"], "internal_user", "{info}");
    assert!(team_ids(&info).is_empty(), "{info}");
    // Signed in at the provider's form; the client is registered for ES256 ID tokens, so the
    // gateway verified an ES256 signature.
    let state = s.idp.state().await;
    assert!(
        state["logins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == "bob"),
        "{state}"
    );
}

#[tokio::test]
async fn a_signing_key_rotated_at_the_provider_is_fetched_and_logins_go_on() {
    let s = setup("RS256");
    let r = browser_login(&s, "bob", false);
    assert_eq!(r["whoami"], "bob", "{r}");
    let fetched = s.idp.state().await["requests"]["GET /jwks"]
        .as_u64()
        .unwrap_or(0);
    assert!(fetched >= 1, "the gateway never fetched the JWKS");

    // A new RS256 signer; the old key is withdrawn from the JWKS.
    let rot = s.idp.rotate("RS256", true).await;
    let r = browser_login(&s, "alice", false);
    assert_signed_in(&s, &r, "alice", "alice@example.com");
    let state = s.idp.state().await;
    let now = state["requests"]["GET /jwks"].as_u64().unwrap_or(0);
    assert!(
        now > fetched,
        "the ID token was signed by the new key {} but the JWKS was not fetched again: {state}",
        rot["kid"]
    );
    assert!(
        !s.api.gw.log().contains(MASTER_KEY),
        "the master key is in the gateway log"
    );
}
