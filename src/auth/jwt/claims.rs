//! What a verified token's claims say about its caller, read with `litellm_jwtauth`'s field
//! names: who the user is, which teams and organisation it acts in, and its role. Pure.

use super::JwtError;
use crate::config::{JwtClaims, JwtRole};
use crate::roles::GlobalRole;
use serde_json::{Map, Value};

/// A token's caller, as its claims name it (nothing looked up yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// `<iss>|<sub>`: who the token is, for audit and spend (never the token itself).
    pub subject: String,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    /// The role the token gives; `None`: the stored user's own role applies.
    pub role: Option<JwtRole>,
    /// The teams the token names, in order: `team_id_jwt_field` (or `team_id_default`) first,
    /// then `team_ids_jwt_field`.
    pub teams: Vec<String>,
    /// `teams[0]` came from `team_id_jwt_field` or `team_id_default`: it is the team, and it
    /// must exist.
    pub required_team: bool,
    pub org_id: Option<String>,
    pub end_user: Option<String>,
    /// `exp`, in seconds since the epoch.
    pub expires_s: i64,
}

/// A claim by path: the whole path as one name first (namespaced claims such as
/// `https://example.com/roles` contain dots), else walked by its dots (`realm_access.roles`).
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// One id: a string, or a number (some providers send numeric ids). Empty counts as absent.
fn text(claims: &Map<String, Value>, path: &str) -> Result<Option<String>, JwtError> {
    match lookup(claims, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(JwtError::BadClaim(path.to_string())),
    }
}

/// A list of names: an array of strings, or one string.
fn texts(claims: &Map<String, Value>, path: &str) -> Result<Vec<String>, JwtError> {
    match lookup(claims, path) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.trim().to_string()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.trim().to_string()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(JwtError::BadClaim(path.to_string())),
            })
            .filter(|r| r.as_ref().map_or(true, |s| !s.is_empty()))
            .collect(),
        Some(_) => Err(JwtError::BadClaim(path.to_string())),
    }
}

/// OAuth scopes: `scope` (space-separated, or a list) and Azure AD's `scp`.
pub fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    ["scope", "scp"]
        .iter()
        .flat_map(|name| match claims.get(*name) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The role, in LiteLLM's order: the admin scope; else the first `role_mappings` entry whose
/// role the token carries; else, when `user_allowed_roles` is set, one of them is required
/// (and makes an `internal_user`).
fn role(cfg: &JwtClaims, claims: &Map<String, Value>) -> Result<Option<JwtRole>, JwtError> {
    if scopes(claims).contains(&cfg.admin_scope) {
        return Ok(Some(JwtRole::Global(GlobalRole::ProxyAdmin)));
    }
    if let Some(path) = &cfg.roles {
        let held = texts(claims, path)?;
        if let Some((_, r)) = cfg
            .role_mappings
            .iter()
            .find(|(name, _)| held.contains(name))
        {
            return Ok(Some(*r));
        }
    }
    if let Some(path) = &cfg.user_roles {
        let held = texts(claims, path)?;
        if !held.iter().any(|r| cfg.user_allowed_roles.contains(r)) {
            return Err(JwtError::RoleNotAllowed);
        }
        return Ok(Some(JwtRole::Global(GlobalRole::InternalUser)));
    }
    Ok(None)
}

pub fn map(cfg: &JwtClaims, claims: &Map<String, Value>) -> Result<Mapped, JwtError> {
    let role = role(cfg, claims)?;
    let user_email = match &cfg.user_email {
        Some(p) => text(claims, p)?,
        None => None,
    };
    // LiteLLM's fallback: without a user id claim, the email is the user id.
    let user_id = match &cfg.user_id {
        Some(p) => text(claims, p)?,
        None => None,
    }
    .or_else(|| user_email.clone());
    let mut teams: Vec<String> = Vec::new();
    let mut required_team = false;
    if let Some(p) = &cfg.team_id
        && let Some(t) = text(claims, p)?
    {
        teams.push(t);
        required_team = true;
    }
    if let Some(p) = &cfg.team_ids {
        for t in texts(claims, p)? {
            if !teams.contains(&t) {
                teams.push(t);
            }
        }
    }
    if teams.is_empty()
        && let Some(d) = &cfg.team_default
    {
        teams.push(d.clone());
        required_team = true;
    }
    let org_id = match &cfg.org_id {
        Some(p) => text(claims, p)?,
        None => None,
    };
    let end_user = match &cfg.end_user_id {
        Some(p) => text(claims, p)?,
        None => None,
    };
    // A team-role token acts as its team alone, like a team's service-account key.
    let user_id = if role == Some(JwtRole::Team) {
        None
    } else {
        user_id
    };
    let global = matches!(role, Some(JwtRole::Global(_)));
    if user_id.is_none() && teams.is_empty() && org_id.is_none() && !global {
        return Err(JwtError::NoIdentity);
    }
    let expires_s = claims
        .get("exp")
        .and_then(Value::as_f64)
        .ok_or_else(|| JwtError::MissingClaim("exp".into()))? as i64;
    let part = |name: &str| text(claims, name).ok().flatten().unwrap_or_default();
    let sub = Some(part("sub"))
        .filter(|s| !s.is_empty())
        .or_else(|| user_id.clone())
        .unwrap_or_default();
    Ok(Mapped {
        subject: format!("{}|{sub}", part("iss")),
        user_id,
        user_email,
        role,
        teams,
        required_team,
        org_id,
        end_user,
        expires_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn cfg() -> JwtClaims {
        JwtClaims {
            admin_scope: "litellm_proxy_admin".into(),
            user_id: Some("sub".into()),
            user_email: Some("email".into()),
            team_id: Some("team".into()),
            team_ids: Some("groups".into()),
            org_id: Some("org".into()),
            ..Default::default()
        }
    }

    #[test]
    fn ids_teams_and_org_come_from_their_claims() {
        let c = claims(json!({
            "iss": "https://idp", "sub": "ana", "email": "ana@x.io", "exp": 2e9,
            "team": "search", "groups": ["ads", "search", "Everyone"], "org": "eng",
        }));
        let m = map(&cfg(), &c).unwrap();
        assert_eq!(m.subject, "https://idp|ana");
        assert_eq!(m.user_id.as_deref(), Some("ana"));
        assert_eq!(m.user_email.as_deref(), Some("ana@x.io"));
        assert_eq!(m.teams, ["search", "ads", "Everyone"]);
        assert!(m.required_team);
        assert_eq!(m.org_id.as_deref(), Some("eng"));
        assert_eq!(m.role, None);
        assert_eq!(m.expires_s, 2_000_000_000);
    }

    #[test]
    fn nested_and_namespaced_paths() {
        let c = claims(json!({
            "resource_access": {"app": {"roles": ["reader"]}},
            "https://x.io/team": "t1", "exp": 1,
        }));
        assert_eq!(
            lookup(&c, "resource_access.app.roles"),
            Some(&json!(["reader"]))
        );
        assert_eq!(lookup(&c, "https://x.io/team"), Some(&json!("t1")));
        assert_eq!(lookup(&c, "resource_access.nope.roles"), None);
    }

    #[test]
    fn email_stands_in_for_a_missing_user_id_and_the_default_team_for_none() {
        let mut cfg = cfg();
        cfg.team_default = Some("general".into());
        let c = claims(json!({"email": "bo@x.io", "exp": 5}));
        let m = map(&cfg, &c).unwrap();
        assert_eq!(m.user_id.as_deref(), Some("bo@x.io"));
        assert_eq!(m.teams, ["general"]);
        assert!(m.required_team);
        assert_eq!(m.subject, "|bo@x.io");
    }

    #[test]
    fn roles_admin_scope_mappings_and_the_allowed_roles_gate() {
        let mut cfg = cfg();
        cfg.roles = Some("realm.roles".into());
        cfg.role_mappings = vec![
            (
                "auditor".into(),
                JwtRole::Global(GlobalRole::ProxyAdminViewer),
            ),
            ("svc".into(), JwtRole::Team),
        ];
        cfg.user_roles = Some("realm.roles".into());
        cfg.user_allowed_roles = vec!["basic".into()];
        let with = |extra: Value| {
            let mut c = claims(json!({"sub": "u", "exp": 9, "team": "t"}));
            c.extend(claims(extra));
            map(&cfg, &c)
        };
        let admin = with(json!({"scope": "openid litellm_proxy_admin"})).unwrap();
        assert_eq!(admin.role, Some(JwtRole::Global(GlobalRole::ProxyAdmin)));
        let admin = with(json!({"scp": ["litellm_proxy_admin"]})).unwrap();
        assert_eq!(admin.role, Some(JwtRole::Global(GlobalRole::ProxyAdmin)));
        let viewer = with(json!({"realm": {"roles": ["x", "auditor"]}})).unwrap();
        assert_eq!(
            viewer.role,
            Some(JwtRole::Global(GlobalRole::ProxyAdminViewer))
        );
        let team = with(json!({"realm": {"roles": "svc"}})).unwrap();
        assert_eq!(team.role, Some(JwtRole::Team));
        assert_eq!(
            team.user_id, None,
            "a team-role token acts as its team only"
        );
        let user = with(json!({"realm": {"roles": ["basic"]}})).unwrap();
        assert_eq!(user.role, Some(JwtRole::Global(GlobalRole::InternalUser)));
        assert_eq!(
            with(json!({"realm": {"roles": ["other"]}})),
            Err(JwtError::RoleNotAllowed)
        );
        assert_eq!(with(json!({})), Err(JwtError::RoleNotAllowed));
    }

    #[test]
    fn a_token_naming_nobody_or_with_odd_claims_is_refused() {
        let c = claims(json!({"iss": "x", "exp": 9}));
        assert_eq!(map(&cfg(), &c), Err(JwtError::NoIdentity));
        let c = claims(json!({"sub": {"id": 1}, "exp": 9}));
        assert_eq!(map(&cfg(), &c), Err(JwtError::BadClaim("sub".into())));
        let c = claims(json!({"sub": "u", "groups": [1, {"x": 1}], "exp": 9}));
        assert_eq!(map(&cfg(), &c), Err(JwtError::BadClaim("groups".into())));
        let c = claims(json!({"sub": 42, "exp": 9}));
        assert_eq!(map(&cfg(), &c).unwrap().user_id.as_deref(), Some("42"));
        let c = claims(json!({"scope": "litellm_proxy_admin", "exp": 9}));
        assert!(map(&cfg(), &c).is_ok(), "an admin token may name no user");
    }
}
