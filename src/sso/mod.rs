//! OIDC browser login (docs/sso.md): `/sso/login` (and LiteLLM's `/sso/key/generate`) sends
//! the browser to the provider, `/sso/callback` verifies what comes back, provisions the user
//! and opens a server-side session (cookie `portcullis_session`), `/ui/` shows who is signed
//! in, `/sso/logout` ends the session. Sessions also authenticate management calls
//! (`api::Caller`), with a CSRF token on every write.

mod pages;
mod provision;
pub mod proxy;
pub mod return_to;

pub use provision::session_change;

use crate::api::ApiError;
use crate::api::write::commit_as;
use crate::app::AppState;
use crate::audit::{Actor, Origin};
use crate::auth::AuthError;
use crate::auth::oidc::{Oidc, OidcError};
use crate::auth::session::{self, COOKIE, Session};
use crate::tenancy::UserEntry;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The audit entries' `table_name` for logins, failed logins, logouts and revocations.
pub const TABLE: &str = "sso_session";
/// The header a cookie-authenticated write repeats its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Set by a sign-out: the next login asks the provider to authenticate again (`prompt=login`),
/// so signing out is not undone at once by the provider's own session.
const SIGNED_OUT: &str = "portcullis_signed_out";
/// Binds a login to the browser that started it: set by `/sso/login`, required by
/// `/sso/callback` (RFC 6749 §10.12). Without it, anyone could send a victim the callback URL
/// of a login of their own and sign the victim's browser in as themselves.
const LOGIN_COOKIE: &str = "portcullis_login";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sso/login", get(login))
        .route("/sso/key/generate", get(login))
        .route("/sso/callback", get(callback))
        .route("/sso/logout", get(logout_page).post(logout))
        .route("/sso/session", get(session_info))
        .route("/ui", get(ui))
        .route("/ui/", get(ui))
}

fn query(uri: &http::Uri) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        // The first of a repeated parameter wins; later ones cannot override it.
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

pub fn origin_of(headers: &HeaderMap, ext: &http::Extensions) -> Origin {
    Origin {
        request_id: ext
            .get::<crate::api::RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(crate::request::new_call_id),
        source_ip: ext
            .get::<crate::api::PeerAddr>()
            .map(|p| p.0.ip().to_string())
            .unwrap_or_default(),
        user_agent: crate::request::user_agent(headers),
    }
}

fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    pages::harden(&mut resp);
    resp
}

fn cookie(oidc: &Oidc, value: &str, max_age_secs: u64) -> Option<HeaderValue> {
    let secure = if oidc.secure_cookie { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

fn marker(oidc: &Oidc, max_age_secs: u64) -> Option<HeaderValue> {
    let secure = if oidc.secure_cookie { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SIGNED_OUT}=1; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

/// The value of the first cookie called `name`.
fn cookie_named<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

fn signed_out(headers: &HeaderMap) -> bool {
    cookie_named(headers, SIGNED_OUT).is_some()
}

/// The browser's login cookie, when it is one this gateway could have made (43 base64url
/// characters); anything else is replaced.
fn login_binding(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, LOGIN_COOKIE).filter(|v| {
        v.len() == 43
            && v.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    })
}

fn login_cookie(oidc: &Oidc, value: &str) -> Option<HeaderValue> {
    let secure = if oidc.secure_cookie { "; Secure" } else { "" };
    let max_age = crate::auth::oidc::PENDING_TTL_MS / 1000;
    HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={value}; Path=/sso; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

fn not_configured() -> Response {
    pages::error(
        StatusCode::NOT_FOUND,
        "Single sign-on is not configured on this gateway.",
    )
}

/// The live session and user a request's cookie names. A session found dead (expired, idle,
/// its user gone or deactivated) is removed on the spot.
pub fn resolve(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<(Arc<Session>, Arc<UserEntry>), ApiError> {
    let (Some(oidc), Some(value)) = (&app.oidc, session::cookie_value(headers)) else {
        return Err(ApiError::Auth(AuthError::Session));
    };
    let idle = oidc.settings.session_idle_timeout.as_millis() as i64;
    let s = match app.sessions.touch(value, idle) {
        Ok(s) => s,
        Err((_, Some(dead))) => {
            forget(app, dead, "expired");
            return Err(ApiError::Auth(AuthError::Session));
        }
        Err((_, None)) => return Err(ApiError::Auth(AuthError::Session)),
    };
    match app.directory.user(&s.record.user_id) {
        Some(u) if !u.record.disabled() => Ok((s, u)),
        _ => {
            app.sessions.remove(&s.digest);
            forget(app, s, "revoked");
            Err(ApiError::Auth(AuthError::Session))
        }
    }
}

/// Deletes a dead session's row (it is already gone from memory), audited as the server.
fn forget(app: &AppState, s: Arc<Session>, action: &'static str) {
    let app = app.clone();
    tokio::spawn(async move {
        let digest = s.digest.clone();
        let done = commit_as(&app, Actor::System, Origin::default(), move |tx, _| {
            if let Some(rec) = tx.delete_session(&digest)? {
                tx.audit(session_change(action, &rec));
            }
            Ok(())
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "an ended session's row could not be deleted");
        }
    });
}

/// Sessions one user may hold at once: a new login ends the oldest beyond it, so repeated
/// logins cannot grow memory and the store without bound.
pub const MAX_SESSIONS_PER_USER: usize = 20;

fn trim_sessions(app: &AppState, user_id: &str, new: &str) {
    let mut older = app.sessions.sessions_of(user_id);
    if older.len() <= MAX_SESSIONS_PER_USER {
        return;
    }
    older.retain(|s| s.digest != new);
    older.sort_by_key(|s| s.record.created_at_ms);
    let excess = older.len() + 1 - MAX_SESSIONS_PER_USER;
    for s in older.into_iter().take(excess) {
        app.sessions.remove(&s.digest);
        forget(app, s, "revoked");
    }
}

/// Whether a request comes from another site: `Sec-Fetch-Site: cross-site`, or an `Origin`
/// that is neither `base_url`'s nor the `Host` it was sent to.
pub fn cross_site(headers: &HeaderMap, base_url: &str) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let own = base_url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| Some(format!("{}://{}", u.scheme_str()?, u.authority()?)));
    if own.as_deref() == Some(origin) {
        return false;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    !host.is_some_and(|h| origin == format!("http://{h}") || origin == format!("https://{h}"))
}

/// A cookie-authenticated request that changes something must come from this site and
/// repeat the session's CSRF token (`x-csrf-token`, or the form field `csrf_token`).
pub fn check_csrf(
    app: &AppState,
    method: &Method,
    headers: &HeaderMap,
    s: &Session,
    form_token: Option<&str>,
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if cross_site(headers, app.base_url()) {
        return Err(ApiError::Forbidden(
            "Cross-site request refused (Origin).".into(),
        ));
    }
    let token = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(form_token)
        .unwrap_or("");
    if token.is_empty() || !bool::from(token.as_bytes().ct_eq(s.record.csrf_token.as_bytes())) {
        return Err(ApiError::Forbidden(
            "A request made with the session cookie must send the session's CSRF token in x-csrf-token.".into(),
        ));
    }
    Ok(())
}

async fn login(State(app): State<AppState>, req: Request) -> Response {
    let Some(oidc) = app.oidc.clone() else {
        return not_configured();
    };
    let q = query(req.uri());
    let to = return_to::sanitize(q.get("return_to").map(String::as_str));
    let signed_out = signed_out(req.headers());
    // One binding per browser (several tabs may be signing in at once), kept while it lives.
    let binding = login_binding(req.headers())
        .map(str::to_string)
        .unwrap_or_else(crate::auth::oidc::random_token);
    match oidc.begin(to, signed_out, &binding).await {
        Ok(url) => {
            let mut resp = redirect(&url);
            if let Some(c) = login_cookie(&oidc, &binding) {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            if signed_out && let Some(c) = marker(&oidc, 0) {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            resp
        }
        Err(e) => failure_page(&e),
    }
}

fn failure_page(e: &OidcError) -> Response {
    let status = match e {
        OidcError::BadState | OidcError::Expired | OidcError::OtherBrowser => {
            StatusCode::BAD_REQUEST
        }
        OidcError::Unavailable(_) => StatusCode::BAD_GATEWAY,
        OidcError::Refused(_) | OidcError::Token(_) => StatusCode::UNAUTHORIZED,
    };
    let message = match e {
        // What failed inside is logged; the page says only what the user can act on.
        OidcError::Unavailable(_) => {
            "The identity provider cannot be reached. Try again later.".to_string()
        }
        other => other.to_string(),
    };
    pages::error(status, &message)
}

/// Audits a failed login that has no verified identity (rate-limited).
async fn audit_failure(app: &AppState, oidc: &Oidc, origin: Origin, reason: &str, detail: String) {
    if !oidc.may_audit_failure() {
        tracing::warn!(reason, "failed login not audited (too many this second)");
        return;
    }
    let reason = reason.to_string();
    let actor = Actor::Sso {
        subject: "oidc:(unverified)".into(),
        user_id: None,
    };
    let done = commit_as(app, actor, origin, move |tx, _| {
        tx.audit(provision::failure_change(
            "(unverified)",
            &reason,
            json!(detail),
        ));
        Ok(())
    })
    .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "a failed login could not be audited");
    }
}

async fn callback(State(app): State<AppState>, req: Request) -> Response {
    let Some(oidc) = app.oidc.clone() else {
        return not_configured();
    };
    let q = query(req.uri());
    let origin = origin_of(req.headers(), req.extensions());
    let state = q.get("state").map(String::as_str);
    let binding = login_binding(req.headers());
    if let Some(err) = q.get("error") {
        let err: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        if !state.is_some_and(|s| oidc.abandon(s, binding)) {
            return failure_page(&OidcError::BadState);
        }
        audit_failure(&app, &oidc, origin, "provider_error", err.clone()).await;
        return pages::error(
            StatusCode::UNAUTHORIZED,
            &format!("The identity provider did not sign you in ({err})."),
        );
    }
    let verified = match oidc
        .finish(
            &app.upstream,
            state,
            q.get("code").map(String::as_str),
            binding,
        )
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(error = %e, "OIDC login failed");
            match &e {
                OidcError::Refused(_) => {
                    audit_failure(&app, &oidc, origin, "token_exchange", e.to_string()).await
                }
                OidcError::Token(t) => {
                    audit_failure(&app, &oidc, origin, "id_token", t.to_string()).await
                }
                _ => {}
            }
            return failure_page(&e);
        }
    };
    let return_to = verified.return_to.clone();
    match provision::sign_in(&app, &oidc.settings, verified, origin).await {
        Ok(provision::Outcome::In {
            cookie: value,
            session,
        }) => {
            let ttl = oidc.settings.session_ttl.as_secs();
            // The session is already in memory (put there with the commit).
            let user = session.user_id.clone();
            tracing::info!(user = %user, "signed in with SSO");
            trim_sessions(&app, &user, &session::digest(&value));
            let mut resp = redirect(&return_to);
            if let Some(c) = cookie(&oidc, &value, ttl) {
                resp.headers_mut().insert(header::SET_COOKIE, c);
            }
            resp
        }
        Ok(provision::Outcome::Refused { status, message }) => pages::error(status, &message),
        Ok(provision::Outcome::Known) => pages::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Signing in failed on the server; try again.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "SSO sign-in failed");
            pages::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Signing in failed on the server; try again.",
            )
        }
    }
}

async fn ui(State(app): State<AppState>, req: Request) -> Response {
    let headers = req.headers();
    if let Ok((s, u)) = resolve(&app, headers) {
        let r = &u.record;
        return pages::ui(&pages::Whoami {
            user_id: &r.user_id,
            email: r.user_email.as_deref().unwrap_or(""),
            role: r.user_role.as_str(),
            teams: &r.teams,
            csrf: &s.record.csrf_token,
            expires: &crate::types::ms_to_rfc3339(s.record.expires_at_ms),
        });
    }
    if let Some(tp) = &app.trusted_proxy
        && crate::auth::credential(headers).is_none()
    {
        match proxy::proxy_user(&app, headers, req.extensions()).await {
            Ok(Some((u, id))) => {
                let r = &u.record;
                if !provision::access_allowed(&tp.ui_access, r.user_role, &id.groups) {
                    return pages::error(
                        StatusCode::FORBIDDEN,
                        "You are not allowed to use this gateway's UI.",
                    );
                }
                // Signed in by the proxy: there is no session here to end or protect.
                return pages::ui(&pages::Whoami {
                    user_id: &r.user_id,
                    email: r.user_email.as_deref().unwrap_or(""),
                    role: r.user_role.as_str(),
                    teams: &r.teams,
                    csrf: "",
                    expires: "",
                });
            }
            Ok(None) => {}
            Err(e) => {
                let status = e.status();
                return pages::error(status, &e.to_string());
            }
        }
    }
    if app.oidc.is_none() {
        return not_configured();
    }
    redirect("/sso/login?return_to=/ui/")
}

async fn session_info(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match resolve(&app, &headers) {
        Ok((s, u)) => {
            let r = &u.record;
            let mut resp = axum::Json(json!({
                "user_id": r.user_id,
                "user_email": r.user_email,
                "user_role": r.user_role.as_str(),
                "teams": r.teams,
                "csrf_token": s.record.csrf_token,
                "expires_at": crate::types::ms_to_rfc3339(s.record.expires_at_ms),
            }))
            .into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn logout_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match resolve(&app, &headers) {
        Ok((s, _)) => pages::logout(Some(&s.record.csrf_token)),
        Err(_) => pages::logout(None),
    }
}

async fn logout(State(app): State<AppState>, req: Request) -> Response {
    let Some(oidc) = app.oidc.clone() else {
        return not_configured();
    };
    let (parts, body) = req.into_parts();
    // Refused before anything, so another site cannot even clear the cookies (a forced
    // sign-out in the browser, and `prompt=login` on the next login).
    if cross_site(&parts.headers, app.base_url()) {
        return pages::error(
            StatusCode::FORBIDDEN,
            "Cross-site request refused (Origin).",
        );
    }
    let form = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => return pages::error(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."),
    };
    let form_token = form_urlencoded::parse(&form)
        .find(|(k, _)| k == "csrf_token")
        .map(|(_, v)| v.into_owned());
    let mut resp = redirect(return_to::HOME);
    if let Some(c) = cookie(&oidc, "", 0) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    if let Some(c) = marker(&oidc, 600) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    let Ok((s, u)) = resolve(&app, &parts.headers) else {
        return resp;
    };
    if let Err(e) = check_csrf(
        &app,
        &parts.method,
        &parts.headers,
        &s,
        form_token.as_deref(),
    ) {
        return pages::error(StatusCode::FORBIDDEN, &e.to_string());
    }
    let actor = Actor::User {
        user_id: u.record.user_id.clone(),
        key: None,
        role: u.record.user_role.as_str().to_string(),
    };
    let digest = s.digest.clone();
    let origin = origin_of(&parts.headers, &parts.extensions);
    let done = commit_as(&app, actor, origin, move |tx, fx| {
        if let Some(rec) = tx.delete_session(&digest)? {
            tx.audit(session_change("logout", &rec));
        }
        fx.removed_sessions.push(digest);
        Ok(())
    })
    .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "signing out failed");
        return pages::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Signing out failed; try again.",
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_origins() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        let base = "http://127.0.0.1:4000";
        assert!(!cross_site(&h(&[]), base));
        assert!(!cross_site(
            &h(&[("origin", "http://127.0.0.1:4000")]),
            base
        ));
        assert!(!cross_site(
            &h(&[
                ("origin", "http://gw.local:4000"),
                ("host", "gw.local:4000")
            ]),
            base
        ));
        assert!(cross_site(&h(&[("origin", "https://evil.example")]), base));
        assert!(cross_site(&h(&[("origin", "null")]), base));
        assert!(cross_site(&h(&[("sec-fetch-site", "cross-site")]), base));
    }
}
