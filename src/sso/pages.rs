//! The few HTML pages of browser login: who is signed in (`/ui/`), sign out, and errors. Every
//! value is escaped; pages are never cached or framed, and send no referrer to other sites (the
//! callback's URL carries the authorization code).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Headers every page and redirect of the login flow carries.
pub fn harden(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        // `same-origin`, not `no-referrer`: a page under `no-referrer` makes browsers send
        // `Origin: null` on its own form posts, which the CSRF check must refuse.
        HeaderValue::from_static("same-origin"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // No `form-action`: browsers apply it to the redirects after a post too, and signing out
    // ends at the identity provider's login (another origin).
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
}

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{t} · Portcullis</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}\
         dt{{font-weight:600}}dd{{margin:0 0 .6rem}}</style></head>\
         <body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = escape(title)
    )
}

pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        shell(title, body),
    )
        .into_response();
    harden(&mut resp);
    resp
}

/// A failure: its message, a way to start again, never a token or a trace.
pub fn error(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Sign-in failed",
        &format!(
            "<p id=\"error\">{}</p><p><a href=\"/sso/login\">Sign in again</a></p>",
            escape(message)
        ),
    )
}

fn logout_form(csrf: &str) -> String {
    format!(
        "<form id=\"logout\" method=\"post\" action=\"/sso/logout\">\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
         <button type=\"submit\" id=\"logout-button\">Sign out</button></form>",
        escape(csrf)
    )
}

pub struct Whoami<'a> {
    pub user_id: &'a str,
    pub email: &'a str,
    pub role: &'a str,
    pub teams: &'a [String],
    pub csrf: &'a str,
    pub expires: &'a str,
}

pub fn ui(w: &Whoami<'_>) -> Response {
    let who = format!(
        "<dt>User</dt><dd><span id=\"whoami\">{}</span></dd>\
         <dt>Email</dt><dd><span id=\"email\">{}</span></dd>\
         <dt>Role</dt><dd><span id=\"role\">{}</span></dd>\
         <dt>Teams</dt><dd><span id=\"teams\">{}</span></dd>",
        escape(w.user_id),
        escape(w.email),
        escape(w.role),
        escape(&w.teams.join(",")),
    );
    let body = if w.csrf.is_empty() {
        // Signed in by a trusted proxy: it owns the sign-in and the sign-out.
        format!("<p>Signed in through your organisation's sign-in proxy.</p><dl>{who}</dl>")
    } else {
        format!(
            "<p>Signed in.</p><dl>{who}\
             <dt>Session ends</dt><dd><span id=\"expires\">{}</span></dd></dl>\
             <meta name=\"csrf-token\" content=\"{}\">{}",
            escape(w.expires),
            escape(w.csrf),
            logout_form(w.csrf),
        )
    };
    page(StatusCode::OK, "Portcullis", &body)
}

pub fn logout(csrf: Option<&str>) -> Response {
    match csrf {
        Some(c) => page(
            StatusCode::OK,
            "Sign out",
            &format!("<p>Sign out of Portcullis?</p>{}", logout_form(c)),
        ),
        None => page(
            StatusCode::OK,
            "Sign out",
            "<p>You are not signed in.</p><p><a href=\"/sso/login\">Sign in</a></p>",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(escape("<script>\"'&"), "&lt;script&gt;&quot;&#39;&amp;");
    }
}
