//! A verified login becomes a user and a session, in one audited transaction: the identity
//! `(issuer, subject)` is found linked to its user, or — on a first login — a user is created
//! with the default role; never linked to an existing account by email unless the email is
//! verified and `link_verified_email` allows it. The group mappings set the role and team
//! memberships on every login, taking back only what they gave.

use crate::api::ApiError;
use crate::api::write::{Effects, commit_as};
use crate::app::AppState;
use crate::audit::{Actor, Change, Origin};
use crate::auth::oidc::{Verified, random_token};
use crate::auth::session;
use crate::config::{GroupMapping, SsoSettings, UiAccessMode};
use crate::roles::{GlobalRole, TeamRole};
use crate::store::sso::{SessionRecord, SsoIdentity, SsoRoleGrant};
use crate::store::{Budget, TeamMember, TeamRecord, Tx, UserRecord};
use http::StatusCode;
use serde_json::{Map, Value, json};

/// What the claims say about the person, read with the configured claim paths.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub user_id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// A role named directly (`role_claim`).
    pub role: Option<GlobalRole>,
}

/// One text claim: a string, or a number.
fn text(claims: &Map<String, Value>, path: &str) -> Option<String> {
    match crate::auth::jwt::claim_at(claims, path)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A list claim: an array of strings, or one string.
pub fn texts(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    match crate::auth::jwt::claim_at(claims, path) {
        Some(Value::String(s)) => vec![s.trim().to_string()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

pub fn person(s: &SsoSettings, claims: &Map<String, Value>) -> Option<Person> {
    let email = text(claims, &s.email_claim).map(|e| e.to_lowercase());
    Some(Person {
        user_id: text(claims, &s.user_id_claim)?,
        email_verified: matches!(claims.get("email_verified"), Some(Value::Bool(true)))
            || matches!(claims.get("email_verified"), Some(Value::String(v)) if v == "true"),
        email,
        name: text(claims, &s.name_claim),
        groups: s
            .groups_claim
            .as_deref()
            .map(|g| texts(claims, g))
            .unwrap_or_default(),
        role: s
            .role_claim
            .as_deref()
            .and_then(|r| text(claims, r))
            .and_then(|r| GlobalRole::parse(&r)),
    })
}

/// How much a role may do, for picking the strongest a person's groups give.
fn rank(r: GlobalRole) -> u8 {
    match r {
        GlobalRole::ProxyAdmin => 3,
        GlobalRole::ProxyAdminViewer => 2,
        GlobalRole::InternalUser => 1,
        GlobalRole::InternalUserViewer => 0,
    }
}

fn holds(p: &Person, group: &str) -> bool {
    p.groups.iter().any(|g| g.eq_ignore_ascii_case(group))
}

/// The role the mappings give (the strongest of the groups held), or the role claim's.
pub fn mapped_role(m: &GroupMapping, p: &Person) -> Option<GlobalRole> {
    p.role.or_else(|| {
        m.role_mappings
            .iter()
            .filter(|(g, _)| holds(p, g))
            .map(|(_, r)| *r)
            .max_by_key(|r| rank(*r))
    })
}

/// The teams the mappings give, in config order, once each.
pub fn mapped_teams(m: &GroupMapping, p: &Person) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (g, t) in &m.team_mappings {
        if holds(p, g) && !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

/// The role after a login: the mapping's, remembered with the role it replaced so it can be
/// given back; a role an administrator set since the last grant is theirs and stays.
pub fn sync_role(
    current: GlobalRole,
    prev: Option<&SsoRoleGrant>,
    mapped: Option<GlobalRole>,
) -> (GlobalRole, Option<SsoRoleGrant>) {
    // An administrator changed the role since the mapping set it: the grant is forgotten.
    let prev = prev.filter(|g| g.granted == current);
    match (mapped, prev) {
        (Some(r), Some(g)) => (
            r,
            Some(SsoRoleGrant {
                granted: r,
                replaced: g.replaced,
            }),
        ),
        (Some(r), None) if r != current => (
            r,
            Some(SsoRoleGrant {
                granted: r,
                replaced: current,
            }),
        ),
        (Some(_), None) => (current, None),
        (None, Some(g)) => (g.replaced, None),
        (None, None) => (current, None),
    }
}

/// Team memberships to add and remove: the mapping's teams the user is not in are added (and
/// become grants); grants the mapping no longer gives are removed; memberships an
/// administrator gave are never touched. Returns (add, remove, grants after).
pub fn sync_teams(
    member_of: &[String],
    prev_grants: &[String],
    wanted: &[String],
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut add = Vec::new();
    let mut grants = Vec::new();
    for t in wanted {
        if !member_of.contains(t) {
            add.push(t.clone());
            grants.push(t.clone());
        } else if prev_grants.contains(t) {
            grants.push(t.clone());
        }
    }
    let remove = prev_grants
        .iter()
        .filter(|t| !wanted.contains(t) && member_of.contains(t))
        .cloned()
        .collect();
    (add, remove, grants)
}

/// The audit entry of a session's creation or end. Names the session by its id, never the
/// cookie or its digest.
pub fn session_change(action: &str, s: &SessionRecord) -> Change {
    let v = json!({
        "session_id": s.session_id,
        "user_id": s.user_id,
        "subject": s.subject,
        "created_at": crate::types::ms_to_rfc3339(s.created_at_ms),
        "expires_at": crate::types::ms_to_rfc3339(s.expires_at_ms),
    });
    let (before, after) = if action == "login" {
        (String::new(), v.to_string())
    } else {
        (v.to_string(), String::new())
    };
    Change {
        action: action.to_string(),
        table_name: super::TABLE.to_string(),
        object_id: s.session_id.clone(),
        before_value: before,
        updated_values: after,
        within: Default::default(),
    }
}

/// A refused or failed login's entry: who tried (as the provider named them) and why.
pub fn failure_change(subject: &str, reason: &str, detail: Value) -> Change {
    Change {
        action: "login_failed".into(),
        table_name: super::TABLE.into(),
        object_id: subject.to_string(),
        before_value: String::new(),
        updated_values: json!({"reason": reason, "detail": detail}).to_string(),
        within: Default::default(),
    }
}

pub enum Outcome {
    /// An OIDC login: the session opened.
    In {
        cookie: String,
        session: SessionRecord,
    },
    /// A trusted proxy's person, provisioned and in step with its groups (no session: the
    /// proxy vouches for every request).
    Known,
    Refused {
        status: StatusCode,
        message: String,
    },
}

fn refused(
    tx: &mut Tx,
    subject: &str,
    status: StatusCode,
    reason: &str,
    message: &str,
    detail: Value,
) -> Result<Outcome, ApiError> {
    tx.audit(failure_change(subject, reason, detail));
    Ok(Outcome::Refused {
        status,
        message: message.to_string(),
    })
}

pub fn email_allowed(m: &GroupMapping, email: Option<&str>) -> bool {
    if m.allowed_email_domains.is_empty() {
        return true;
    }
    let Some(e) = email else { return false };
    let domain = e.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    m.allowed_email_domains.iter().any(|d| d == domain)
}

pub fn access_allowed(mode: &UiAccessMode, role: GlobalRole, groups: &[String]) -> bool {
    let admin = matches!(role, GlobalRole::ProxyAdmin | GlobalRole::ProxyAdminViewer);
    match mode {
        UiAccessMode::All => true,
        UiAccessMode::AdminOnly => admin,
        UiAccessMode::Group(g) => admin || groups.iter().any(|x| x.eq_ignore_ascii_case(g)),
    }
}

/// The longest user id a sign-in may create, as for ids given to the API.
const MAX_ID: usize = 256;

/// Whether a sign-in may create a user of this id: the rule ids given to the API follow
/// (`api::fields::check_id`): 1 to 256 bytes, no control characters — ids end up in logs,
/// URLs and audit entries.
fn valid_user_id(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= MAX_ID && !id.chars().any(char::is_control)
}

/// The issuer half of a trusted proxy's identity links (the subject is the user id it sends).
pub const PROXY_ISSUER: &str = "trusted-proxy";

/// Where a sign-in comes from.
pub enum Via<'a> {
    /// A verified OIDC login: opens a session.
    Oidc(&'a SsoSettings, &'a Verified),
    /// A trusted proxy's identity headers.
    Proxy(&'a GroupMapping),
}

impl Via<'_> {
    fn mapping(&self) -> &GroupMapping {
        match self {
            Via::Oidc(s, _) => &s.mapping,
            Via::Proxy(m) => m,
        }
    }

    fn link_key(&self, p: &Person) -> (String, String) {
        match self {
            Via::Oidc(_, v) => (v.issuer.clone(), v.subject.clone()),
            Via::Proxy(_) => (PROXY_ISSUER.to_string(), p.user_id.clone()),
        }
    }
}

/// Provisions and signs in the person a verified login names.
pub async fn sign_in(
    app: &AppState,
    s: &SsoSettings,
    v: Verified,
    origin: Origin,
) -> Result<Outcome, ApiError> {
    let subject = format!("{}|{}", v.issuer, v.subject);
    let actor_subject = format!("oidc:{subject}");
    let Some(p) = person(s, &v.claims) else {
        let actor = Actor::Sso {
            subject: actor_subject.clone(),
            user_id: None,
        };
        let claim = s.user_id_claim.clone();
        return commit_as(app, actor, origin, move |tx, _| {
            refused(
                tx,
                &actor_subject,
                StatusCode::UNAUTHORIZED,
                "no_user_id",
                "The identity provider did not say who you are (the user id claim is missing).",
                json!({"claim": claim}),
            )
        })
        .await;
    };
    let actor = Actor::Sso {
        subject: actor_subject.clone(),
        user_id: Some(p.user_id.clone()),
    };
    let s = s.clone();
    commit_as(app, actor, origin, move |tx, fx| {
        login_tx(tx, fx, &Via::Oidc(&s, &v), &p, &subject, &actor_subject)
    })
    .await
}

/// Provisions the person a trusted proxy names and brings their role and teams in step with
/// the groups it sends. Writes only when something changes (a first sight, other groups).
pub async fn proxy_sign_in(
    app: &AppState,
    mapping: &GroupMapping,
    p: Person,
    origin: Origin,
) -> Result<Outcome, ApiError> {
    let subject = format!("{PROXY_ISSUER}|{}", p.user_id);
    let who = format!("proxy:{}", p.user_id);
    let actor = Actor::Sso {
        subject: who.clone(),
        user_id: Some(p.user_id.clone()),
    };
    let mapping = mapping.clone();
    commit_as(app, actor, origin, move |tx, fx| {
        login_tx(tx, fx, &Via::Proxy(&mapping), &p, &subject, &who)
    })
    .await
}

/// What a sign-in finds: the existing user it is (if any) and whether it was linked now by a
/// verified email — or the refusal's reason and message.
type Found = Result<(Option<UserRecord>, bool), (&'static str, &'static str)>;

/// The existing user a sign-in is, if any.
fn existing_user(
    tx: &Tx,
    via: &Via<'_>,
    p: &Person,
    link: Option<&SsoIdentity>,
) -> Result<Found, ApiError> {
    if let Some(l) = link
        && let Some(u) = tx.get_user(&l.user_id)?
    {
        return Ok(Ok((Some(u), false)));
    }
    let Via::Oidc(s, _) = via else {
        // The proxy is trusted to name users: the user of that id is the one it means. It is
        // never matched by email.
        return Ok(Ok((tx.get_user(&p.user_id)?, false)));
    };
    let by_email = match &p.email {
        Some(e) => tx.user_by_email(e)?,
        None => None,
    };
    Ok(match by_email {
        Some(u) if s.link_verified_email && p.email_verified => Ok((Some(u), true)),
        Some(_) => Err((
            "email_in_use",
            "An account with your email address already exists and is not linked to this sign-in. Ask an administrator.",
        )),
        None if tx.get_user(&p.user_id)?.is_some() => Err((
            "user_id_in_use",
            "An account with your user id already exists and is not linked to this sign-in. Ask an administrator.",
        )),
        None => Ok((None, false)),
    })
}

fn login_tx(
    tx: &mut Tx,
    fx: &mut Effects,
    via: &Via<'_>,
    p: &Person,
    subject: &str,
    who: &str,
) -> Result<Outcome, ApiError> {
    let m = via.mapping();
    // What the provider sent, cut short: a refusal's audit entry is no place for megabytes.
    let short = |v: &str| v.chars().take(MAX_ID).collect::<String>();
    let detail = json!({"user_id": short(&p.user_id), "email": p.email.as_deref().map(short)});
    // With domains restricted, an address the provider says it has not verified proves nothing.
    let unverified = match via {
        Via::Oidc(_, v) => v.claims.get("email_verified") == Some(&Value::Bool(false)),
        Via::Proxy(_) => false,
    };
    if !email_allowed(m, p.email.as_deref()) || (!m.allowed_email_domains.is_empty() && unverified)
    {
        let (reason, message) = if p.email.is_none() {
            (
                "email_missing",
                "This gateway admits only email addresses at allowed domains, and the sign-in \
                 named no email address.",
            )
        } else {
            (
                "email_domain",
                "Your email domain is not allowed to sign in here.",
            )
        };
        return refused(tx, who, StatusCode::FORBIDDEN, reason, message, detail);
    }
    let now = crate::types::now_ms();
    let (issuer, link_subject) = via.link_key(p);
    let link = tx.get_sso_identity(&issuer, &link_subject)?;
    let (existing, linked_now) = match existing_user(tx, via, p, link.as_ref())? {
        Ok(found) => found,
        Err((reason, message)) => {
            return refused(tx, who, StatusCode::FORBIDDEN, reason, message, detail);
        }
    };
    if existing.is_none() && !valid_user_id(&p.user_id) {
        return refused(
            tx,
            who,
            StatusCode::FORBIDDEN,
            "invalid_user_id",
            "The identity provider's user id cannot be used here (empty, longer than 256 bytes or with control characters). Ask an administrator.",
            detail,
        );
    }
    if let Some(u) = &existing
        && u.disabled()
    {
        return refused(
            tx,
            who,
            StatusCode::FORBIDDEN,
            "user_disabled",
            "Your account is deactivated.",
            json!({"user_id": u.user_id}),
        );
    }
    let before = existing.clone();
    let mut user = existing.unwrap_or_else(|| {
        let mut u = crate::api::users::blank_user(&p.user_id, who);
        u.user_role = m.default_role;
        u.user_alias = p.name.clone();
        if let Via::Oidc(_, v) = via {
            u.sso_user_id = Some(v.subject.clone());
        }
        u
    });
    if before.is_none()
        && let Some(e) = &p.email
        && tx.user_by_email(e)?.is_none()
    {
        // An email another user holds stays with that user.
        user.user_email = Some(e.clone());
    }
    // A stale link (its user deleted since) grants nothing any more.
    let prev = link.clone().filter(|l| l.user_id == user.user_id);
    let (role, role_grant) = sync_role(
        user.user_role,
        prev.as_ref().and_then(|l| l.role_grant.as_ref()),
        mapped_role(m, p),
    );
    if let Via::Oidc(s, _) = via
        && !access_allowed(&s.ui_access_mode, role, &p.groups)
    {
        return refused(
            tx,
            who,
            StatusCode::FORBIDDEN,
            "ui_access_mode",
            "You are not allowed to sign in to this gateway's UI.",
            detail,
        );
    }
    user.user_role = role;
    let team_grants = sync_groups(tx, fx, m, p, &mut user, prev.as_ref(), who, now)?;
    // The user: created, or updated when the sign-in changed it.
    match &before {
        None => {
            user.created_at_ms = now;
            user.updated_at_ms = now;
            tx.put_user(&user)?;
            tx.audit(crate::api::users::change("created", None, Some(&user)));
            fx.users.push(user.clone());
        }
        Some(b) if *b != user => {
            user.updated_at_ms = now;
            user.updated_by = who.to_string();
            tx.put_user(&user)?;
            tx.audit(crate::api::users::change("updated", Some(b), Some(&user)));
            fx.users.push(user.clone());
        }
        Some(_) => {}
    }
    let identity = SsoIdentity {
        issuer,
        subject: link_subject,
        user_id: user.user_id.clone(),
        created_at_ms: prev.as_ref().map_or(now, |l| l.created_at_ms),
        last_login_ms: now,
        role_grant,
        team_grants,
    };
    let Via::Oidc(s, _) = via else {
        // The proxy signs in on every request: the link is written when what it holds changes
        // (a first sign-in is audited as one), not at every sight.
        let same = prev.as_ref().is_some_and(|l| {
            l.role_grant == identity.role_grant && l.team_grants == identity.team_grants
        });
        if !same {
            tx.put_sso_identity(&identity)?;
            if prev.is_none() {
                tx.audit(Change {
                    action: "login".into(),
                    table_name: super::TABLE.into(),
                    object_id: subject.to_string(),
                    before_value: String::new(),
                    updated_values: json!({"user_id": user.user_id, "subject": subject,
                                           "via": "trusted_proxy"})
                    .to_string(),
                    within: Default::default(),
                });
            } else if before.as_ref() == Some(&user) {
                // Only the link's grants moved (a team the mapping names was deleted).
                tx.audit(Change {
                    action: "updated".into(),
                    table_name: "sso_identity".into(),
                    object_id: subject.to_string(),
                    before_value: String::new(),
                    updated_values: json!({"user_id": user.user_id,
                                           "team_grants": identity.team_grants})
                    .to_string(),
                    within: Default::default(),
                });
            }
        }
        return Ok(Outcome::Known);
    };
    tx.put_sso_identity(&identity)?;
    let cookie = random_token();
    let record = SessionRecord {
        session_id: uuid::Uuid::new_v4().to_string(),
        user_id: user.user_id.clone(),
        subject: subject.to_string(),
        csrf_token: random_token(),
        created_at_ms: now,
        expires_at_ms: now + s.session_ttl.as_millis() as i64,
    };
    let digest = session::digest(&cookie);
    tx.put_session(&digest, &record)?;
    fx.sessions.push((digest, record.clone()));
    let mut entry = session_change("login", &record);
    if linked_now {
        entry.updated_values = json!({
            "session_id": record.session_id,
            "user_id": record.user_id,
            "subject": record.subject,
            "linked_by_verified_email": true,
            "expires_at": crate::types::ms_to_rfc3339(record.expires_at_ms),
        })
        .to_string();
    }
    tx.audit(entry);
    Ok(Outcome::In {
        cookie,
        session: record,
    })
}

/// Team memberships in step with the mapping (teams made first with `create_teams`); the
/// memberships the mapping holds afterwards.
#[allow(clippy::too_many_arguments)]
fn sync_groups(
    tx: &mut Tx,
    fx: &mut Effects,
    m: &GroupMapping,
    p: &Person,
    user: &mut UserRecord,
    prev: Option<&SsoIdentity>,
    who: &str,
    now: i64,
) -> Result<Vec<String>, ApiError> {
    // Teams: only those that exist (or, with create_teams, are made now).
    let mut wanted = Vec::new();
    for t in mapped_teams(m, p) {
        match tx.get_team(&t)? {
            Some(_) => wanted.push(t),
            None if m.create_teams => {
                let team = TeamRecord {
                    team_id: t.clone(),
                    team_alias: Some(t.clone()),
                    organization_id: None,
                    models: Vec::new(),
                    budget: Budget::default(),
                    members: Vec::new(),
                    blocked: false,
                    metadata_json: "{}".into(),
                    external_id: None,
                    created_at_ms: now,
                    updated_at_ms: now,
                    created_by: who.to_string(),
                    updated_by: who.to_string(),
                    scim: None,
                };
                tx.put_team(&team)?;
                tx.audit(crate::api::teams::change("created", None, Some(&team)));
                fx.teams.push(team);
                wanted.push(t);
            }
            None => tracing::warn!(team = %t, "SSO team mapping names a team that does not exist"),
        }
    }
    let prev_grants = prev.map(|l| l.team_grants.clone()).unwrap_or_default();
    let (add, remove, team_grants) = sync_teams(&user.teams, &prev_grants, &wanted);
    for (t, join) in add
        .iter()
        .map(|t| (t, true))
        .chain(remove.iter().map(|t| (t, false)))
    {
        let Some(mut team) = fx
            .teams
            .iter()
            .find(|x| &x.team_id == t)
            .cloned()
            .map_or_else(|| tx.get_team(t), |x| Ok(Some(x)))?
        else {
            continue;
        };
        let old = team.clone();
        team.members.retain(|m| m.user_id != user.user_id);
        if join {
            team.members.push(TeamMember {
                user_id: user.user_id.clone(),
                role: TeamRole::User,
                budget: Budget::default(),
            });
            user.teams.push(t.clone());
        } else {
            user.teams.retain(|x| x != t);
        }
        team.updated_at_ms = now;
        team.updated_by = who.to_string();
        tx.put_team(&team)?;
        tx.audit(crate::api::teams::change(
            "updated",
            Some(&old),
            Some(&team),
        ));
        fx.teams.retain(|x| &x.team_id != t);
        fx.teams.push(team);
    }
    Ok(team_grants)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_by_dot_path() {
        let c = json!({"realm_access": {"roles": ["a", "b"]}, "https://x.example/groups": "g",
                       "sub": 42, "email": "A@B.com"})
        .as_object()
        .cloned()
        .unwrap_or_default();
        assert_eq!(texts(&c, "realm_access.roles"), ["a", "b"]);
        assert_eq!(texts(&c, "https://x.example/groups"), ["g"]);
        assert!(texts(&c, "realm_access.nope").is_empty());
        assert_eq!(text(&c, "sub").as_deref(), Some("42"));
        assert_eq!(text(&c, "realm_access"), None);
    }

    #[test]
    fn role_grants_are_taken_back_but_an_admins_choice_stays() {
        use GlobalRole::*;
        // First grant remembers what it replaced.
        let (r, g) = sync_role(InternalUser, None, Some(ProxyAdmin));
        assert_eq!(r, ProxyAdmin);
        let g = g.unwrap_or_else(|| unreachable!());
        assert_eq!(g.replaced, InternalUser);
        // The group is gone: the old role comes back.
        assert_eq!(sync_role(ProxyAdmin, Some(&g), None), (InternalUser, None));
        // An administrator set another role meanwhile: it stays, the grant is forgotten.
        assert_eq!(
            sync_role(ProxyAdminViewer, Some(&g), None),
            (ProxyAdminViewer, None)
        );
        // Already held by an administrator's hand: no grant, nothing to take back later.
        assert_eq!(
            sync_role(ProxyAdmin, None, Some(ProxyAdmin)),
            (ProxyAdmin, None)
        );
    }

    #[test]
    fn team_sync_keeps_what_an_admin_gave() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // Member of `admin-given` by hand; the mapping gave `eng` last time, now gives `ops`.
        let (add, remove, grants) = sync_teams(
            &s(&["admin-given", "eng"]),
            &s(&["eng"]),
            &s(&["ops", "admin-given"]),
        );
        assert_eq!(add, s(&["ops"]));
        assert_eq!(remove, s(&["eng"]));
        assert_eq!(grants, s(&["ops"]));
        // Next login without any group: only the mapping's own membership goes.
        let (add, remove, grants) = sync_teams(&s(&["admin-given", "ops"]), &grants, &[]);
        assert!(add.is_empty() && grants.is_empty());
        assert_eq!(remove, s(&["ops"]));
    }

    #[test]
    fn mapped_role_takes_the_strongest() {
        let raw = json!({"issuer": "https://i.example", "client_id": "c", "base_url": "https://g.example",
            "groups_claim": "groups",
            "role_mappings": {"viewers": "proxy_admin_viewer", "admins": "proxy_admin"},
            "team_mappings": {"eng": "engineering", "all": "engineering"}});
        let cfg = crate::config::Config::from_yaml(
            &format!("general_settings:\n  sso: {raw}\n"),
            &Default::default(),
        );
        let sso = cfg
            .ok()
            .and_then(|(c, _)| c.sso)
            .unwrap_or_else(|| unreachable!());
        let claims = json!({"sub": "s", "groups": ["Viewers", "admins", "eng", "all"]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let p = person(&sso, &claims).unwrap_or_else(|| unreachable!());
        assert_eq!(mapped_role(&sso.mapping, &p), Some(GlobalRole::ProxyAdmin));
        assert_eq!(mapped_teams(&sso.mapping, &p), ["engineering"]);
    }
}
