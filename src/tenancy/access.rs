//! The per-request decision for an LLM call, and the route gates every caller passes: which
//! chain of objects a key belongs to, whether each level of it is blocked, whether each level
//! allows the model, and whether the key's type, its `allowed_routes` and its owner's role
//! permit the route. The same functions answer `/access/explain`, so an explanation is
//! exactly what enforcement does.

use super::{CustomerEntry, Directory, KeyEntry, OrgEntry, TeamEntry, UserEntry};
use crate::limits::Level;
use crate::roles::{GlobalRole, KeyType};
use std::sync::Arc;

/// Route classes a key's `allowed_routes` and `role_permissions.routes` may name.
pub const LLM_API_ROUTES: &str = "llm_api_routes";
pub const INFO_ROUTES: &str = "info_routes";
pub const MANAGEMENT_ROUTES: &str = "management_routes";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Llm,
    /// Management routes that only read.
    Info,
    /// Management routes that change something.
    Management,
}

/// Classifies a path (without query). Unknown paths count as management: deny by default.
pub fn classify(method: &http::Method, path: &str) -> RouteClass {
    let llm = path.starts_with("/v1/")
        || path.starts_with("/openai/deployments/")
        || matches!(
            path,
            "/chat/completions" | "/completions" | "/embeddings" | "/models"
        )
        || path.starts_with("/models/");
    if llm {
        RouteClass::Llm
    } else if method == http::Method::GET || path.ends_with("/info") || path == "/access/explain" {
        RouteClass::Info
    } else {
        RouteClass::Management
    }
}

/// Whether one `allowed_routes` entry covers a path: a route class, an exact path, or a
/// prefix ending in `*`.
pub fn route_matches(entry: &str, class: RouteClass, path: &str) -> bool {
    match entry {
        LLM_API_ROUTES => class == RouteClass::Llm,
        INFO_ROUTES => class == RouteClass::Info,
        MANAGEMENT_ROUTES => matches!(class, RouteClass::Management | RouteClass::Info),
        _ => match entry.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => entry == path,
        },
    }
}

/// Why a call was refused: the rule, the level of the chain that decided, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub kind: DenialKind,
    pub level: &'static str,
    pub id: String,
    pub rule: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialKind {
    Blocked,
    Model,
    Route,
}

fn deny(kind: DenialKind, level: &'static str, id: &str, rule: impl Into<String>) -> Denial {
    Denial {
        kind,
        level,
        id: id.to_string(),
        rule: rule.into(),
    }
}

/// Everything a key's call is governed by, nearest first.
pub struct Chain {
    pub key: Arc<KeyEntry>,
    pub user: Option<Arc<UserEntry>>,
    pub team: Option<Arc<TeamEntry>>,
    /// The team's (or the key's) organisation and its ancestors, nearest first.
    pub orgs: Vec<Arc<OrgEntry>>,
    pub customer: Option<Arc<CustomerEntry>>,
    /// The role the caller acts in (whose `role_permissions` apply): the key's user's, or
    /// what a JWT says.
    pub role: Option<GlobalRole>,
}

/// Resolves a key's chain, refusing it if any level is blocked or the key's user has left
/// its team.
pub fn chain(
    dir: &Directory,
    key: &Arc<KeyEntry>,
    end_user: Option<&str>,
) -> Result<Chain, Denial> {
    build(dir, key, end_user, None)
}

/// The chain of a verified JWT's entry. The token asserts where its caller acts — its team,
/// its organisation — so the directory's memberships are not required for those; every
/// level's own policies, blocks and limits apply as for a key. `role` overrides the user's.
pub fn asserted_chain(
    dir: &Directory,
    key: &Arc<KeyEntry>,
    end_user: Option<&str>,
    role: Option<GlobalRole>,
) -> Result<Chain, Denial> {
    build(dir, key, end_user, Some(role))
}

/// `asserted`: `Some(role)` for a JWT (memberships come from the token), `None` for a key.
fn build(
    dir: &Directory,
    key: &Arc<KeyEntry>,
    end_user: Option<&str>,
    asserted: Option<Option<GlobalRole>>,
) -> Result<Chain, Denial> {
    let r = &key.record;
    let user = match r.user_id.as_deref() {
        Some(id) => {
            let u = dir.user(id).ok_or_else(|| {
                deny(
                    DenialKind::Blocked,
                    "user",
                    id,
                    "the key's user no longer exists",
                )
            })?;
            if u.record.blocked {
                return Err(deny(DenialKind::Blocked, "user", id, "user is blocked"));
            }
            if u.record.disabled() {
                return Err(deny(
                    DenialKind::Blocked,
                    "user",
                    id,
                    "user was deactivated by SCIM provisioning",
                ));
            }
            Some(u)
        }
        None => None,
    };
    let team = match r.team_id.as_deref() {
        Some(id) => {
            let t = dir.team(id).ok_or_else(|| {
                deny(
                    DenialKind::Blocked,
                    "team",
                    id,
                    "the key's team no longer exists",
                )
            })?;
            if t.record.blocked {
                return Err(deny(DenialKind::Blocked, "team", id, "team is blocked"));
            }
            if let Some(u) = &user
                && asserted.is_none()
                && !t.members.contains_key(&u.record.user_id)
            {
                return Err(deny(
                    DenialKind::Blocked,
                    "team_member",
                    id,
                    format!(
                        "user {} is no longer a member of the team",
                        u.record.user_id
                    ),
                ));
            }
            Some(t)
        }
        None => None,
    };
    let org_id = team
        .as_ref()
        .and_then(|t| t.record.organization_id.clone())
        .or_else(|| r.organization_id.clone());
    let orgs = match (&org_id, &team, &user) {
        (Some(o), _, _) => {
            // A personal key bound to an organisation works while its owner is still inside
            // that organisation's subtree (as a team key stops when its user leaves the team).
            if team.is_none()
                && asserted.is_none()
                && let Some(u) = &user
                && !member_within(dir, &u.record, o)
            {
                return Err(deny(
                    DenialKind::Blocked,
                    "organization",
                    o,
                    format!(
                        "user {} is no longer a member of the organization",
                        u.record.user_id
                    ),
                ));
            }
            dir.org_chain(o)
        }
        // A personal key bound to no organisation is governed by every organisation its owner
        // belongs to: leaving the binding out never escapes an organisation's policies.
        (None, None, Some(u)) if !u.record.organizations.is_empty() => {
            let mut all: Vec<Arc<OrgEntry>> = Vec::new();
            for m in &u.record.organizations {
                for o in dir.org_chain(&m.organization_id) {
                    if !all
                        .iter()
                        .any(|x| x.record.organization_id == o.record.organization_id)
                    {
                        all.push(o);
                    }
                }
            }
            all
        }
        _ => Vec::new(),
    };
    let customer = match end_user {
        Some(id) => match dir.customer(id) {
            Some(c) if c.record.blocked => {
                return Err(deny(
                    DenialKind::Blocked,
                    "end_user",
                    id,
                    "end user is blocked",
                ));
            }
            found => found,
        },
        None => None,
    };
    let stored = user.as_ref().map(|u| u.record.user_role);
    Ok(Chain {
        key: key.clone(),
        role: asserted.flatten().or(stored),
        user,
        team,
        orgs,
        customer,
    })
}

/// Whether a user is in `org` or below it: directly, or through one of its teams.
fn member_within(dir: &Directory, user: &crate::store::UserRecord, org: &str) -> bool {
    user.organizations
        .iter()
        .any(|m| dir.org_within(&m.organization_id, org))
        || user.teams.iter().any(|t| {
            dir.team(t)
                .and_then(|t| t.record.organization_id.clone())
                .is_some_and(|o| dir.org_within(&o, org))
        })
}

/// Whether the key's type, its `allowed_routes` and its owner's role permissions allow a route.
pub fn check_route(
    dir: &Directory,
    key: &KeyEntry,
    role: Option<GlobalRole>,
    class: RouteClass,
    path: &str,
) -> Result<(), Denial> {
    let r = &key.record;
    let by_type = match r.key_type {
        KeyType::Default => true,
        KeyType::LlmApi => class == RouteClass::Llm || path == "/key/info",
        KeyType::Management => class != RouteClass::Llm,
        KeyType::ReadOnly => class == RouteClass::Info,
    };
    if !by_type {
        return Err(deny(
            DenialKind::Route,
            "key",
            &r.token,
            format!("key_type {} does not allow this route", r.key_type),
        ));
    }
    if !r.allowed_routes.is_empty()
        && !r
            .allowed_routes
            .iter()
            .any(|e| route_matches(e, class, path))
    {
        return Err(deny(
            DenialKind::Route,
            "key",
            &r.token,
            "this route is not in the key's allowed_routes".to_string(),
        ));
    }
    if let Some(role) = role
        && let Some(routes) = dir.role_routes(role)
        && !routes.iter().any(|e| route_matches(e, class, path))
    {
        return Err(deny(
            DenialKind::Route,
            "role",
            role.as_str(),
            format!("role_permissions for {role} do not include this route"),
        ));
    }
    Ok(())
}

/// Whether every level of the chain allows `model`. Levels narrow, never widen: the first
/// that refuses decides.
pub fn check_model(dir: &Directory, chain: &Chain, model: &str) -> Result<(), Denial> {
    let through_team = chain.team.is_some();
    let k = &chain.key;
    if !k.models.allows(model, through_team) {
        return Err(deny(
            DenialKind::Model,
            "key",
            &k.record.token,
            format!("the key's models do not include {model}"),
        ));
    }
    // A user's own model list governs its personal keys; a team key is governed by the team.
    if let Some(u) = &chain.user
        && !through_team
        && !u.models.allows(model, through_team)
    {
        return Err(deny(
            DenialKind::Model,
            "user",
            &u.record.user_id,
            format!("the user's models do not include {model}"),
        ));
    }
    if let Some(role) = chain.role
        && let Some(set) = dir.role_models(role)
        && !set.allows(model, through_team)
    {
        return Err(deny(
            DenialKind::Model,
            "role",
            role.as_str(),
            format!("role_permissions for {role} do not include {model}"),
        ));
    }
    if let Some(t) = &chain.team
        && !t.models.allows(model, through_team)
    {
        return Err(deny(
            DenialKind::Model,
            "team",
            &t.record.team_id,
            format!("the team's models do not include {model}"),
        ));
    }
    for o in &chain.orgs {
        if !o.models.allows(model, through_team) {
            return Err(deny(
                DenialKind::Model,
                "organization",
                &o.record.organization_id,
                format!("the organization's models do not include {model}"),
            ));
        }
    }
    Ok(())
}

/// Every metered level of a chain, nearest first.
pub fn levels(chain: &Chain) -> Vec<Level<'_>> {
    let mut out = Vec::with_capacity(4 + chain.orgs.len());
    let k = &chain.key;
    out.push(Level {
        meter: &k.meter,
        limits: &k.limits,
    });
    if let Some(u) = &chain.user {
        out.push(Level {
            meter: &u.meter,
            limits: &u.limits,
        });
    }
    if let Some(t) = &chain.team {
        out.push(Level {
            meter: &t.meter,
            limits: &t.limits,
        });
        if let Some(m) = chain
            .user
            .as_ref()
            .and_then(|u| t.members.get(&u.record.user_id))
        {
            out.push(Level {
                meter: &m.meter,
                limits: &m.limits,
            });
        }
    }
    for o in &chain.orgs {
        out.push(Level {
            meter: &o.meter,
            limits: &o.limits,
        });
    }
    if let Some(c) = &chain.customer {
        out.push(Level {
            meter: &c.meter,
            limits: &c.limits,
        });
    }
    out
}
