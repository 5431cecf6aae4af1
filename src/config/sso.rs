//! OIDC browser login (`general_settings.sso`, `general_settings.ui_access_mode`) and LiteLLM's
//! SSO environment: `GENERIC_*`, `MICROSOFT_*`, `GOOGLE_*`, `PROXY_BASE_URL`,
//! `ALLOWED_EMAIL_DOMAINS`. The file wins where both set a value. Checked here, so a typo stops
//! the start with its YAML path.

use super::Problem;
use crate::roles::GlobalRole;
use crate::types::Secret;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

const AT: &str = "general_settings.sso";
const DEFAULT_SCOPES: &str = "openid email profile";
const DEFAULT_TTL: Duration = Duration::from_secs(8 * 3600);
const DEFAULT_IDLE: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Deserialize)]
pub struct RawSso {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// A space-separated string or a list.
    pub scopes: Option<Value>,
    pub base_url: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub user_id_claim: Option<String>,
    pub email_claim: Option<String>,
    pub name_claim: Option<String>,
    pub role_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub default_role: Option<String>,
    pub role_mappings: Option<BTreeMap<String, String>>,
    pub team_mappings: Option<BTreeMap<String, String>>,
    pub create_teams: Option<bool>,
    pub allowed_email_domains: Option<Value>,
    pub link_verified_email: Option<bool>,
    /// A LiteLLM duration (`8h`) or seconds.
    pub session_ttl: Option<Value>,
    pub session_idle_timeout: Option<Value>,
}

/// Who may sign in to the UI (`general_settings.ui_access_mode`, LiteLLM's name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UiAccessMode {
    /// Every user the identity provider vouches for (the default).
    #[default]
    All,
    /// Proxy admins and proxy admin viewers only.
    AdminOnly,
    /// Members of this identity-provider group (from `groups_claim`), and proxy admins.
    Group(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SsoSettings {
    /// Discovery at `{issuer}/.well-known/openid-configuration`; `None`: the explicit
    /// `GENERIC_*` endpoints, identity from the userinfo endpoint (no ID token check).
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: Option<Secret<String>>,
    pub scopes: Vec<String>,
    /// `PROXY_BASE_URL`, without a trailing slash: redirect_uri = `{base_url}/sso/callback`.
    pub base_url: String,
    pub user_id_claim: String,
    pub email_claim: String,
    pub name_claim: String,
    /// A claim holding a role name directly (`GENERIC_USER_ROLE_ATTRIBUTE`).
    pub role_claim: Option<String>,
    pub groups_claim: Option<String>,
    /// Default role, group → role and group → team, allowed email domains.
    pub mapping: GroupMapping,
    pub link_verified_email: bool,
    pub session_ttl: Duration,
    pub session_idle_timeout: Duration,
    pub ui_access_mode: UiAccessMode,
}

/// What a sign-in's groups give (OIDC login and the trusted proxy alike): the role of a user
/// made on first sign-in, group → role and group → team, and who may sign in by email domain.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMapping {
    pub default_role: GlobalRole,
    /// Group → role (the most powerful role among the groups held wins).
    pub role_mappings: Vec<(String, GlobalRole)>,
    /// Group → team id.
    pub team_mappings: Vec<(String, String)>,
    pub create_teams: bool,
    /// Lower-cased domains; empty: any.
    pub allowed_email_domains: Vec<String>,
}

impl GroupMapping {
    pub fn maps_groups(&self) -> bool {
        !self.role_mappings.is_empty() || !self.team_mappings.is_empty()
    }
}

/// The raw fields of a [`GroupMapping`], wherever they sit in the file.
#[derive(Debug, Default, Deserialize)]
pub struct RawGroupMapping {
    pub default_role: Option<String>,
    pub role_mappings: Option<BTreeMap<String, String>>,
    pub team_mappings: Option<BTreeMap<String, String>>,
    pub create_teams: Option<bool>,
    pub allowed_email_domains: Option<Value>,
}

/// Reads a [`GroupMapping`] whose fields sit under `at`; `ALLOWED_EMAIL_DOMAINS` when the file
/// names no domains.
pub(super) fn group_mapping(
    r: RawGroupMapping,
    at: &str,
    env: &HashMap<String, String>,
    errors: &mut Vec<Problem>,
) -> GroupMapping {
    let at = |f: &str| format!("{at}.{f}");
    let default_role = match r.default_role.as_deref().map(str::trim) {
        None => GlobalRole::InternalUser,
        Some(t) => GlobalRole::parse(t).unwrap_or_else(|| {
            errors.push(problem(
                &at("default_role"),
                format!("unknown role `{t}`; use one of {}", GlobalRole::names()),
            ));
            GlobalRole::InternalUser
        }),
    };
    let mut role_mappings = Vec::new();
    for (group, role) in r.role_mappings.unwrap_or_default() {
        match GlobalRole::parse(role.trim()) {
            Some(r) => role_mappings.push((group, r)),
            None => errors.push(problem(
                &at(&format!("role_mappings.{group}")),
                format!("unknown role `{role}`; use one of {}", GlobalRole::names()),
            )),
        }
    }
    let mut team_mappings = Vec::new();
    for (group, team) in r.team_mappings.unwrap_or_default() {
        if team.trim().is_empty() {
            errors.push(problem(
                &at(&format!("team_mappings.{group}")),
                "must name a team id",
            ));
        } else {
            team_mappings.push((group, team.trim().to_string()));
        }
    }
    let mut domains = words(
        r.allowed_email_domains,
        &at("allowed_email_domains"),
        errors,
    )
    .or_else(|| {
        env_of(env, "ALLOWED_EMAIL_DOMAINS").map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
    })
    .unwrap_or_default();
    for d in &mut domains {
        *d = d.trim_start_matches('@').to_lowercase();
    }
    GroupMapping {
        default_role,
        role_mappings,
        team_mappings,
        create_teams: r.create_teams.unwrap_or(false),
        allowed_email_domains: domains,
    }
}

impl SsoSettings {
    pub fn redirect_uri(&self) -> String {
        format!("{}/sso/callback", self.base_url)
    }
}

fn problem(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_string(),
        message: message.into(),
    }
}

fn env_of(env: &HashMap<String, String>, name: &str) -> Option<String> {
    env.get(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A duration: seconds as a number, or LiteLLM's `30m` / `8h` / `1d`.
fn duration(
    v: Option<Value>,
    path: &str,
    default: Duration,
    errors: &mut Vec<Problem>,
) -> Duration {
    let parsed = match v {
        None | Some(Value::Null) => return default,
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 1.0 && *s < 1e9)
            .map(Duration::from_secs_f64),
        Some(Value::String(s)) => crate::types::parse_duration(&s)
            .or_else(|| s.trim().parse::<u64>().ok().map(Duration::from_secs))
            .filter(|d| !d.is_zero()),
        Some(_) => None,
    };
    parsed.unwrap_or_else(|| {
        errors.push(problem(
            path,
            "must be a duration: seconds, or such as 30m, 8h, 1d",
        ));
        default
    })
}

fn words(v: Option<Value>, path: &str, errors: &mut Vec<Problem>) -> Option<Vec<String>> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                    _ => errors.push(problem(
                        &format!("{path}[{i}]"),
                        "must be a non-empty string",
                    )),
                }
            }
            Some(out)
        }
        Some(_) => {
            errors.push(problem(path, "must be a string or a list of strings"));
            None
        }
    }
}

/// Only `https`, except on this machine: what a provider's URLs must be.
pub fn url_problem(url: &str) -> Option<String> {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Some(format!("`{url}` is not a URL"));
    };
    let host = uri.host().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        _ if host.is_empty() => Some(format!("`{url}` names no host")),
        Some("https") => None,
        Some("http") if loopback => None,
        Some("http") => Some(format!(
            "`{url}` must use https (plain http is accepted only for localhost)"
        )),
        _ => Some(format!("`{url}` must be an https URL")),
    }
}

/// `ui_access_mode`: `all`, `admin_only`, or `{type: group, group: <name>}`.
pub(super) fn ui_access_mode(v: Option<Value>, errors: &mut Vec<Problem>) -> UiAccessMode {
    const P: &str = "general_settings.ui_access_mode";
    match v {
        None | Some(Value::Null) => UiAccessMode::All,
        Some(Value::String(s)) => match s.trim() {
            "all" => UiAccessMode::All,
            "admin_only" => UiAccessMode::AdminOnly,
            other => {
                errors.push(problem(
                    P,
                    format!("unknown value `{other}`; use all, admin_only or {{type: group, group: <name>}}"),
                ));
                UiAccessMode::All
            }
        },
        Some(Value::Object(m)) => {
            let kind = m.get("type").and_then(Value::as_str).unwrap_or_default();
            let group = m.get("group").and_then(Value::as_str).map(str::trim);
            for k in m.keys().filter(|k| *k != "type" && *k != "group") {
                errors.push(problem(&format!("{P}.{k}"), "unknown key"));
            }
            match (kind, group) {
                ("group", Some(g)) if !g.is_empty() => UiAccessMode::Group(g.to_string()),
                ("group", _) => {
                    errors.push(problem(&format!("{P}.group"), "required: the group's name"));
                    UiAccessMode::AdminOnly
                }
                _ => {
                    errors.push(problem(&format!("{P}.type"), "must be `group`"));
                    UiAccessMode::AdminOnly
                }
            }
        }
        Some(_) => {
            errors.push(problem(
                P,
                "must be all, admin_only or {type: group, group: <name>}",
            ));
            UiAccessMode::All
        }
    }
}

/// `None` when no SSO is configured (neither `general_settings.sso` nor a client id in the
/// environment). `tls`: the server itself serves TLS (for the warning about cookies).
pub(super) fn settings(
    raw: Option<RawSso>,
    access: UiAccessMode,
    proxy_auth: bool,
    env: &HashMap<String, String>,
    errors: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<SsoSettings> {
    let env_client = env_of(env, "GENERIC_CLIENT_ID")
        .map(|c| ("GENERIC", c))
        .or_else(|| env_of(env, "MICROSOFT_CLIENT_ID").map(|c| ("MICROSOFT", c)))
        .or_else(|| env_of(env, "GOOGLE_CLIENT_ID").map(|c| ("GOOGLE", c)));
    if raw.is_none() && env_client.is_none() {
        if access != UiAccessMode::All && !proxy_auth {
            warnings.push(problem(
                "general_settings.ui_access_mode",
                "has no effect without SSO (general_settings.sso) or a trusted proxy \
                 (enable_oauth2_proxy_auth)",
            ));
        }
        return None;
    }
    let r = raw.unwrap_or_default();
    let at = |f: &str| format!("{AT}.{f}");
    let text = |v: Option<String>, path: &str, errors: &mut Vec<Problem>| match v {
        Some(s) if s.trim().is_empty() => {
            errors.push(problem(path, "must not be empty"));
            None
        }
        other => other.map(|s| s.trim().to_string()),
    };
    let family = env_client.as_ref().map(|(f, _)| *f).unwrap_or("GENERIC");
    let client_id = text(r.client_id, &at("client_id"), errors).or(env_client.map(|(_, c)| c));
    let client_secret = text(r.client_secret, &at("client_secret"), errors)
        .or_else(|| env_of(env, &format!("{family}_CLIENT_SECRET")))
        .map(Secret::new);
    let issuer = text(r.issuer, &at("issuer"), errors)
        .or_else(|| match family {
            "MICROSOFT" => env_of(env, "MICROSOFT_TENANT")
                .map(|t| format!("https://login.microsoftonline.com/{t}/v2.0")),
            "GOOGLE" => Some("https://accounts.google.com".into()),
            _ => None,
        })
        .map(|i| i.trim_end_matches('/').to_string());
    let endpoint = |v: Option<String>, f: &str, var: &str, errors: &mut Vec<Problem>| {
        text(v, &at(f), errors).or_else(|| env_of(env, var))
    };
    let authorization_endpoint = endpoint(
        r.authorization_endpoint,
        "authorization_endpoint",
        "GENERIC_AUTHORIZATION_ENDPOINT",
        errors,
    );
    let token_endpoint = endpoint(
        r.token_endpoint,
        "token_endpoint",
        "GENERIC_TOKEN_ENDPOINT",
        errors,
    );
    let userinfo_endpoint = endpoint(
        r.userinfo_endpoint,
        "userinfo_endpoint",
        "GENERIC_USERINFO_ENDPOINT",
        errors,
    );
    let base_url = text(r.base_url, &at("base_url"), errors)
        .or_else(|| env_of(env, "PROXY_BASE_URL"))
        .map(|b| b.trim_end_matches('/').to_string());
    if client_id.is_none() {
        errors.push(problem(
            &at("client_id"),
            "required (or GENERIC_CLIENT_ID / MICROSOFT_CLIENT_ID / GOOGLE_CLIENT_ID)",
        ));
    }
    if family == "MICROSOFT" && issuer.is_none() {
        errors.push(problem(
            "MICROSOFT_TENANT",
            "required with MICROSOFT_CLIENT_ID (the directory's tenant id)",
        ));
    }
    match &issuer {
        Some(i) => {
            if let Some(p) = url_problem(i) {
                errors.push(problem(&at("issuer"), p));
            }
        }
        None => {
            if authorization_endpoint.is_none()
                || token_endpoint.is_none()
                || userinfo_endpoint.is_none()
            {
                errors.push(problem(
                    &at("issuer"),
                    "required: the provider's issuer URL (discovery), or all three of \
                     GENERIC_AUTHORIZATION_ENDPOINT, GENERIC_TOKEN_ENDPOINT and \
                     GENERIC_USERINFO_ENDPOINT",
                ));
            } else {
                warnings.push(problem(
                    &at("issuer"),
                    "not set: users are identified by the userinfo endpoint, without an ID \
                     token check; set the issuer to have ID tokens verified",
                ));
            }
        }
    }
    for (f, v) in [
        ("authorization_endpoint", &authorization_endpoint),
        ("token_endpoint", &token_endpoint),
        ("userinfo_endpoint", &userinfo_endpoint),
    ] {
        if let Some(p) = v.as_deref().and_then(url_problem) {
            errors.push(problem(&at(f), p));
        }
    }
    match &base_url {
        None => errors.push(problem(
            &at("base_url"),
            "required (or PROXY_BASE_URL): the URL browsers reach this gateway at",
        )),
        Some(b) => {
            if let Some(p) = url_problem(b) {
                errors.push(problem(&at("base_url"), p));
            }
        }
    }
    let scopes = words(r.scopes, &at("scopes"), errors)
        .or_else(|| {
            env_of(env, &format!("{family}_SCOPE"))
                .map(|s| s.split_whitespace().map(str::to_string).collect())
        })
        .unwrap_or_else(|| DEFAULT_SCOPES.split(' ').map(str::to_string).collect());
    if issuer.is_some() && !scopes.iter().any(|s| s == "openid") {
        errors.push(problem(&at("scopes"), "must include `openid`"));
    }
    let claim =
        |v: Option<String>, f: &str, var: &str, default: &str, errors: &mut Vec<Problem>| {
            text(v, &at(f), errors)
                .or_else(|| env_of(env, var))
                .unwrap_or_else(|| default.to_string())
        };
    let user_id_claim = claim(
        r.user_id_claim,
        "user_id_claim",
        "GENERIC_USER_ID_ATTRIBUTE",
        "sub",
        errors,
    );
    let email_claim = claim(
        r.email_claim,
        "email_claim",
        "GENERIC_USER_EMAIL_ATTRIBUTE",
        "email",
        errors,
    );
    let name_claim = claim(
        r.name_claim,
        "name_claim",
        "GENERIC_USER_DISPLAY_NAME_ATTRIBUTE",
        "name",
        errors,
    );
    let role_claim = text(r.role_claim, &at("role_claim"), errors)
        .or_else(|| env_of(env, "GENERIC_USER_ROLE_ATTRIBUTE"));
    let groups_claim = text(r.groups_claim, &at("groups_claim"), errors);
    let mapping = group_mapping(
        RawGroupMapping {
            default_role: r.default_role,
            role_mappings: r.role_mappings,
            team_mappings: r.team_mappings,
            create_teams: r.create_teams,
            allowed_email_domains: r.allowed_email_domains,
        },
        AT,
        env,
        errors,
    );
    if mapping.maps_groups() && groups_claim.is_none() {
        errors.push(problem(
            &at("groups_claim"),
            "required with role_mappings or team_mappings: the claim holding the groups",
        ));
    }
    if matches!(access, UiAccessMode::Group(_)) && groups_claim.is_none() {
        errors.push(problem(
            "general_settings.ui_access_mode",
            "a group access mode needs general_settings.sso.groups_claim",
        ));
    }
    let session_ttl = duration(r.session_ttl, &at("session_ttl"), DEFAULT_TTL, errors);
    let session_idle_timeout = duration(
        r.session_idle_timeout,
        &at("session_idle_timeout"),
        DEFAULT_IDLE,
        errors,
    );
    let (Some(client_id), Some(base_url)) = (client_id, base_url) else {
        return None;
    };
    if client_secret.is_none() {
        warnings.push(problem(
            &at("client_secret"),
            "not set: the code is exchanged as a public client (PKCE only)",
        ));
    }
    Some(SsoSettings {
        issuer,
        authorization_endpoint,
        token_endpoint,
        userinfo_endpoint,
        client_id,
        client_secret,
        scopes,
        base_url,
        user_id_claim,
        email_claim,
        name_claim,
        role_claim,
        groups_claim,
        mapping,
        link_verified_email: r.link_verified_email.unwrap_or(false),
        session_ttl,
        session_idle_timeout,
        ui_access_mode: access,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: Value, env: &[(&str, &str)]) -> (Option<SsoSettings>, Vec<Problem>, Vec<Problem>) {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let raw: Option<RawSso> = if yaml.is_null() {
            None
        } else {
            serde_json::from_value(yaml).ok()
        };
        let (mut e, mut w) = (Vec::new(), Vec::new());
        let s = settings(raw, UiAccessMode::All, false, &env, &mut e, &mut w);
        (s, e, w)
    }

    #[test]
    fn file_settings_and_defaults() {
        let (s, e, _) = run(
            serde_json::json!({"issuer": "http://127.0.0.1:9/", "client_id": "c",
                "client_secret": "s", "base_url": "http://127.0.0.1:4000/",
                "scopes": "openid email groups", "session_ttl": "8h", "session_idle_timeout": 600,
                "groups_claim": "realm_access.roles", "role_mappings": {"admins": "proxy_admin"},
                "allowed_email_domains": ["@Example.com"]}),
            &[],
        );
        assert!(e.is_empty(), "{e:?}");
        let s = s.unwrap_or_else(|| unreachable!());
        assert_eq!(s.issuer.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(s.redirect_uri(), "http://127.0.0.1:4000/sso/callback");
        assert_eq!(s.scopes, ["openid", "email", "groups"]);
        assert_eq!(s.session_ttl, Duration::from_secs(8 * 3600));
        assert_eq!(s.session_idle_timeout, Duration::from_secs(600));
        assert_eq!(s.mapping.allowed_email_domains, ["example.com"]);
        assert_eq!(s.mapping.default_role, GlobalRole::InternalUser);
        assert_eq!(s.user_id_claim, "sub");
    }

    #[test]
    fn litellm_environment() {
        let (s, e, _) = run(
            Value::Null,
            &[
                ("MICROSOFT_CLIENT_ID", "app"),
                ("MICROSOFT_CLIENT_SECRET", "x"),
                ("MICROSOFT_TENANT", "t1"),
                ("PROXY_BASE_URL", "https://gw.example"),
                ("ALLOWED_EMAIL_DOMAINS", "a.com, b.com"),
            ],
        );
        assert!(e.is_empty(), "{e:?}");
        let s = s.unwrap_or_else(|| unreachable!());
        assert_eq!(
            s.issuer.as_deref(),
            Some("https://login.microsoftonline.com/t1/v2.0")
        );
        assert_eq!(s.mapping.allowed_email_domains, ["a.com", "b.com"]);
        let (s, e, w) = run(
            Value::Null,
            &[
                ("GENERIC_CLIENT_ID", "app"),
                ("GENERIC_AUTHORIZATION_ENDPOINT", "https://idp.example/auth"),
                ("GENERIC_TOKEN_ENDPOINT", "https://idp.example/token"),
                ("GENERIC_USERINFO_ENDPOINT", "https://idp.example/userinfo"),
                ("GENERIC_USER_ID_ATTRIBUTE", "preferred_username"),
                ("PROXY_BASE_URL", "https://gw.example"),
            ],
        );
        assert!(e.is_empty(), "{e:?}");
        assert!(w.iter().any(|p| p.path == "general_settings.sso.issuer"));
        let s = s.unwrap_or_else(|| unreachable!());
        assert!(s.issuer.is_none());
        assert_eq!(s.user_id_claim, "preferred_username");
        assert!(run(Value::Null, &[]).0.is_none());
    }

    #[test]
    fn problems_name_their_paths() {
        let (_, e, _) = run(
            serde_json::json!({"issuer": "http://idp.example", "client_id": " ",
                "base_url": "ftp://x", "default_role": "root", "session_ttl": "forever",
                "role_mappings": {"g": "god", "h": "proxy_admin"}, "scopes": "email"}),
            &[],
        );
        let paths: Vec<&str> = e.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "general_settings.sso.issuer",
            "general_settings.sso.client_id",
            "general_settings.sso.base_url",
            "general_settings.sso.default_role",
            "general_settings.sso.session_ttl",
            "general_settings.sso.role_mappings.g",
            "general_settings.sso.groups_claim",
            "general_settings.sso.scopes",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        let mut e = Vec::new();
        assert_eq!(
            ui_access_mode(
                Some(serde_json::json!({"type": "group", "group": "ui"})),
                &mut e
            ),
            UiAccessMode::Group("ui".into())
        );
        assert_eq!(
            ui_access_mode(Some("admin_only".into()), &mut e),
            UiAccessMode::AdminOnly
        );
        assert!(e.is_empty());
        ui_access_mode(Some("nobody".into()), &mut e);
        assert_eq!(e[0].path, "general_settings.ui_access_mode");
    }
}
