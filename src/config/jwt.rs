//! JWT auth on the API: `general_settings.enable_jwt_auth` with LiteLLM's `litellm_jwtauth`
//! fields, and the `JWT_PUBLIC_KEY_URL` / `JWT_AUDIENCE` / `JWT_ISSUER` environment LiteLLM
//! reads. Checked here, so a typo stops the start with its path instead of silently letting
//! every token in (or none).

use super::Problem;
// Only `https`, except on this machine: keys fetched in clear text from elsewhere could be
// replaced on the way, and whoever replaces them signs tokens.
use super::sso::url_problem;
use crate::roles::GlobalRole;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// Clock skew tolerated on `exp` and `nbf`.
pub const JWT_LEEWAY: Duration = Duration::from_secs(60);
const DEFAULT_ADMIN_SCOPE: &str = "litellm_proxy_admin";
const DEFAULT_KEY_TTL_SECS: f64 = 600.0;

#[derive(Debug, Default, Deserialize)]
pub struct RawJwtAuth {
    pub admin_jwt_scope: Option<String>,
    pub team_id_jwt_field: Option<String>,
    pub team_ids_jwt_field: Option<String>,
    pub team_id_default: Option<String>,
    /// LiteLLM creates unknown teams; here they are refused (a warning says so).
    pub team_id_upsert: Option<bool>,
    pub user_id_jwt_field: Option<String>,
    pub user_email_jwt_field: Option<String>,
    pub user_id_upsert: Option<bool>,
    pub org_id_jwt_field: Option<String>,
    pub end_user_id_jwt_field: Option<String>,
    pub user_roles_jwt_field: Option<String>,
    pub user_allowed_roles: Option<Vec<String>>,
    pub roles_jwt_field: Option<String>,
    #[serde(default)]
    pub role_mappings: Vec<RawRoleMapping>,
    pub public_key_ttl: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRoleMapping {
    pub role: String,
    pub internal_role: String,
}

/// The role a token's claims give its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRole {
    /// A proxy-wide role, whatever the stored user's own.
    Global(GlobalRole),
    /// LiteLLM's `team` role: the token acts as its team (like a team's service-account key),
    /// not as a user.
    Team,
}

impl JwtRole {
    pub fn parse(text: &str) -> Option<JwtRole> {
        if text == "team" {
            return Some(JwtRole::Team);
        }
        GlobalRole::parse(text).map(JwtRole::Global)
    }
}

/// Where in the claims each identity comes from (dotted paths: `resource_access.app.roles`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JwtClaims {
    pub admin_scope: String,
    pub team_id: Option<String>,
    pub team_ids: Option<String>,
    pub team_default: Option<String>,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    pub user_upsert: bool,
    pub org_id: Option<String>,
    pub end_user_id: Option<String>,
    /// `user_roles_jwt_field` + `user_allowed_roles`: a token must carry one of these roles.
    pub user_roles: Option<String>,
    pub user_allowed_roles: Vec<String>,
    /// `roles_jwt_field` + `role_mappings`: the first mapping whose role the token carries.
    pub roles: Option<String>,
    pub role_mappings: Vec<(String, JwtRole)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    /// The JWKS URLs (`JWT_PUBLIC_KEY_URL`, comma-separated): one per identity provider.
    pub key_urls: Vec<String>,
    /// Accepted `iss` values (`JWT_ISSUER`); empty: not checked.
    pub issuers: Vec<String>,
    /// With one issuer per key URL, in the same order, a URL's keys only verify its issuer's
    /// tokens: one provider cannot sign for another.
    pub paired: bool,
    /// Accepted `aud` values (`JWT_AUDIENCE`); empty: not checked.
    pub audiences: Vec<String>,
    /// How long a fetched key set is used before it is fetched again.
    pub public_key_ttl: Duration,
    pub claims: JwtClaims,
}

fn problem(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_string(),
        message: message.into(),
    }
}

fn list(env: &HashMap<String, String>, name: &str) -> Vec<String> {
    env.get(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A configured claim path: absent, or non-empty text.
fn field(v: Option<String>, path: &str, errors: &mut Vec<Problem>) -> Option<String> {
    match v {
        Some(s) if s.trim().is_empty() => {
            errors.push(problem(path, "must not be empty"));
            None
        }
        other => other.map(|s| s.trim().to_string()),
    }
}

/// `None` unless `enable_jwt_auth` is true; problems go to `errors` (stop the start) and
/// `warnings` (reported, then ignored).
pub(super) fn settings(
    enabled: Option<bool>,
    raw: Option<RawJwtAuth>,
    env: &HashMap<String, String>,
    errors: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<JwtSettings> {
    const AT: &str = "general_settings.litellm_jwtauth";
    if enabled != Some(true) {
        if raw.is_some() {
            warnings.push(problem(
                AT,
                "ignored: general_settings.enable_jwt_auth is not true",
            ));
        }
        return None;
    }
    let r = raw.unwrap_or_default();
    let key_urls = list(env, "JWT_PUBLIC_KEY_URL");
    if key_urls.is_empty() {
        errors.push(problem(
            "general_settings.enable_jwt_auth",
            "JWT auth needs JWT_PUBLIC_KEY_URL: the identity provider's JWKS URL (several, comma-separated)",
        ));
    }
    for url in &key_urls {
        if let Some(p) = url_problem(url) {
            errors.push(problem("JWT_PUBLIC_KEY_URL", p));
        }
    }
    let issuers = list(env, "JWT_ISSUER");
    let paired = issuers.len() > 1 && issuers.len() == key_urls.len();
    if issuers.len() > 1 && !paired {
        errors.push(problem(
            "JWT_ISSUER",
            format!(
                "lists {} issuers for {} key URLs: give one issuer, or one per JWT_PUBLIC_KEY_URL entry in the same order",
                issuers.len(),
                key_urls.len()
            ),
        ));
    }
    if issuers.is_empty() {
        warnings.push(problem(
            "JWT_ISSUER",
            "not set: the iss claim is not checked (any issuer whose tokens these keys sign is accepted)",
        ));
    }
    let audiences = list(env, "JWT_AUDIENCE");
    if audiences.is_empty() {
        warnings.push(problem(
            "JWT_AUDIENCE",
            "not set: the aud claim is not checked (tokens issued for other applications are accepted)",
        ));
    }
    let ttl = r.public_key_ttl.unwrap_or(DEFAULT_KEY_TTL_SECS);
    if !(ttl.is_finite() && (10.0..=604_800.0).contains(&ttl)) {
        errors.push(problem(
            &format!("{AT}.public_key_ttl"),
            "must be between 10 and 604800 seconds",
        ));
    }
    if r.team_id_upsert == Some(true) {
        warnings.push(problem(
            &format!("{AT}.team_id_upsert"),
            "not supported: a token naming a team that does not exist is refused; create the team first",
        ));
    }
    let at = |f: &str| format!("{AT}.{f}");
    let admin_scope = field(r.admin_jwt_scope, &at("admin_jwt_scope"), errors)
        .unwrap_or_else(|| DEFAULT_ADMIN_SCOPE.to_string());
    let user_roles = field(r.user_roles_jwt_field, &at("user_roles_jwt_field"), errors);
    let user_allowed_roles = r.user_allowed_roles.unwrap_or_default();
    let has_allowed = !user_allowed_roles.is_empty();
    if user_roles.is_some() != has_allowed {
        errors.push(problem(
            &at("user_allowed_roles"),
            "user_roles_jwt_field and user_allowed_roles must be set together",
        ));
    }
    let roles = field(r.roles_jwt_field, &at("roles_jwt_field"), errors);
    let mut role_mappings = Vec::new();
    for (i, m) in r.role_mappings.into_iter().enumerate() {
        match JwtRole::parse(m.internal_role.trim()) {
            Some(role) => role_mappings.push((m.role, role)),
            None => errors.push(problem(
                &format!("{AT}.role_mappings[{i}].internal_role"),
                format!(
                    "unknown role `{}`; use one of team, {}",
                    m.internal_role,
                    GlobalRole::names()
                ),
            )),
        }
    }
    if !role_mappings.is_empty() && roles.is_none() {
        errors.push(problem(
            &at("role_mappings"),
            "needs roles_jwt_field: the claim holding the roles to map",
        ));
    }
    let claims = JwtClaims {
        admin_scope,
        team_id: field(r.team_id_jwt_field, &at("team_id_jwt_field"), errors),
        team_ids: field(r.team_ids_jwt_field, &at("team_ids_jwt_field"), errors),
        team_default: field(r.team_id_default, &at("team_id_default"), errors),
        user_id: field(r.user_id_jwt_field, &at("user_id_jwt_field"), errors),
        user_email: field(r.user_email_jwt_field, &at("user_email_jwt_field"), errors),
        user_upsert: r.user_id_upsert.unwrap_or(false),
        org_id: field(r.org_id_jwt_field, &at("org_id_jwt_field"), errors),
        end_user_id: field(
            r.end_user_id_jwt_field,
            &at("end_user_id_jwt_field"),
            errors,
        ),
        user_roles,
        user_allowed_roles,
        roles,
        role_mappings,
    };
    Some(JwtSettings {
        key_urls,
        issuers,
        paired,
        audiences,
        public_key_ttl: Duration::from_secs_f64(ttl.clamp(10.0, 604_800.0)),
        claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        enabled: bool,
        yaml_env: &[(&str, &str)],
        raw: RawJwtAuth,
    ) -> (Option<JwtSettings>, Vec<Problem>, Vec<Problem>) {
        let env: HashMap<String, String> = yaml_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let s = settings(Some(enabled), Some(raw), &env, &mut errors, &mut warnings);
        (s, errors, warnings)
    }

    #[test]
    fn urls_issuers_and_audiences_from_the_environment() {
        let env = [
            (
                "JWT_PUBLIC_KEY_URL",
                "https://a.example/jwks, http://127.0.0.1:9/k",
            ),
            ("JWT_ISSUER", "https://a.example,https://b.example"),
            ("JWT_AUDIENCE", "portcullis"),
        ];
        let (s, errors, warnings) = run(true, &env, RawJwtAuth::default());
        assert!(
            errors.is_empty() && warnings.is_empty(),
            "{errors:?} {warnings:?}"
        );
        let s = s.unwrap_or_else(|| unreachable!());
        assert_eq!(s.key_urls.len(), 2);
        assert!(s.paired);
        assert_eq!(s.audiences, ["portcullis"]);
        assert_eq!(s.claims.admin_scope, "litellm_proxy_admin");
        assert_eq!(s.public_key_ttl, Duration::from_secs(600));
    }

    #[test]
    fn bad_settings_name_their_paths() {
        let env = [
            ("JWT_PUBLIC_KEY_URL", "http://idp.example/jwks"),
            ("JWT_ISSUER", "a,b,c"),
        ];
        let raw = RawJwtAuth {
            user_roles_jwt_field: Some("roles".into()),
            role_mappings: vec![RawRoleMapping {
                role: "x".into(),
                internal_role: "root".into(),
            }],
            public_key_ttl: Some(0.0),
            team_id_jwt_field: Some(" ".into()),
            ..Default::default()
        };
        let (_, errors, warnings) = run(true, &env, raw);
        let paths: Vec<&str> = errors.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "JWT_PUBLIC_KEY_URL",
            "JWT_ISSUER",
            "general_settings.litellm_jwtauth.public_key_ttl",
            "general_settings.litellm_jwtauth.user_allowed_roles",
            "general_settings.litellm_jwtauth.role_mappings[0].internal_role",
            "general_settings.litellm_jwtauth.team_id_jwt_field",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        assert!(warnings.iter().any(|w| w.path == "JWT_AUDIENCE"));
        let (_, errors, _) = run(true, &[], RawJwtAuth::default());
        assert_eq!(errors[0].path, "general_settings.enable_jwt_auth");
    }

    #[test]
    fn disabled_is_none_and_warns_about_ignored_settings() {
        let (s, errors, warnings) = run(false, &[], RawJwtAuth::default());
        assert!(s.is_none() && errors.is_empty());
        assert_eq!(warnings[0].path, "general_settings.litellm_jwtauth");
        assert_eq!(JwtRole::parse("team"), Some(JwtRole::Team));
        assert_eq!(
            JwtRole::parse("proxy_admin"),
            Some(JwtRole::Global(GlobalRole::ProxyAdmin))
        );
    }
}
