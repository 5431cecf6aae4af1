//! `/user/*`: users, LiteLLM-compatible. A user's teams and organisations are memberships
//! managed from the team and organisation routes; `/user/new` may place a new user in them.
//! Password hashes never leave the server.

use super::fields::{
    boolean, budget_field, budget_view, cascade, check_budget, id_list, id_or_new, metadata,
    metadata_view, positive, string, strings,
};
use super::write::commit;
use super::{ApiError, Caller, Params, body_of, spend};
use crate::app::AppState;
use crate::audit::Change;
use crate::auth::password::{MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS, hash_password};
use crate::roles::{GlobalRole, TeamRole};
use crate::store::{Budget, OrgMembership, TeamMember, Tx, UserRecord};
use crate::tenancy::UserEntry;
use crate::tenancy::scope::Reach;
use crate::types::{ms_to_rfc3339, now_ms};
use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// LiteLLM's table name for users, kept so audit filters written for it still match.
pub const TABLE: &str = "LiteLLM_UserTable";
const MAX_PAGE_SIZE: usize = 1000;

/// Fields a user may change on itself; everything else needs someone above it.
const SELF_FIELDS: &[&str] = &[
    "user_id",
    "password",
    "user_email",
    "user_alias",
    "metadata",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/user/new", post(new_user))
        .route("/user/update", post(update_user))
        .route("/user/delete", post(delete_user))
        .route("/user/info", get(info_user))
        .route("/user/list", get(list_users))
}

/// A user as the API shows it: never its password hash.
pub fn view(u: &UserRecord, spend: f64) -> Value {
    let mut out = json!({
        "user_id": u.user_id,
        "user_email": u.user_email,
        "user_alias": u.user_alias,
        "user_role": u.user_role.as_str(),
        "models": u.models,
        "spend": spend,
        "teams": u.teams,
        "organization_memberships": u.organizations.iter()
            .map(|m| super::scim_managed::membership_view(u, m))
            .collect::<Vec<_>>(),
        "metadata": metadata_view(&u.metadata_json),
        "blocked": u.blocked,
        "sso_user_id": u.sso_user_id,
        "has_password": u.password_hash.is_some(),
        "created_at": ms_to_rfc3339(u.created_at_ms),
        "updated_at": ms_to_rfc3339(u.updated_at_ms),
        "created_by": u.created_by,
        "updated_by": u.updated_by,
    });
    if let Some(m) = out.as_object_mut() {
        budget_view(&u.budget, m);
        super::scim_managed::mark_user(u, m);
    }
    out
}

fn entry_view(e: &UserEntry) -> Value {
    view(&e.record, spend(&e.meter, &e.limits))
}

/// A user as `caller` may see it: memberships in teams and organisations outside the caller's
/// scope are left out (a user shared with another organisation is that one's business).
fn scoped_view(caller: &Caller, dir: &crate::tenancy::Directory, e: &UserEntry) -> Value {
    let id = &caller.identity;
    if id.sees_everything() || id.user_id() == Some(e.record.user_id.as_str()) {
        return entry_view(e);
    }
    let mut record = e.record.clone();
    record.teams.retain(|t| {
        dir.team(t)
            .is_some_and(|t| id.team_reach(dir, &t.record) >= Reach::Read)
    });
    record.organizations.retain(|m| {
        dir.org(&m.organization_id)
            .is_some_and(|o| id.org_reach(dir, &o) >= Reach::Read)
    });
    view(&record, spend(&e.meter, &e.limits))
}

/// A change to a user's membership of one team or organisation: its entry is scoped to that
/// team or organisation only, so the admins of the user's other organisations do not read it.
pub fn membership_change(
    before: Option<&UserRecord>,
    after: Option<&UserRecord>,
    within: crate::audit::Within,
) -> Change {
    Change {
        within,
        ..change("updated", before, after)
    }
}

pub fn change(action: &str, before: Option<&UserRecord>, after: Option<&UserRecord>) -> Change {
    let id = after
        .or(before)
        .map(|u| u.user_id.clone())
        .unwrap_or_default();
    let view = |u: &UserRecord| view(u, 0.0);
    let mut within = crate::audit::Within::default();
    for r in before.into_iter().chain(after) {
        for m in &r.organizations {
            within.add_org(Some(&m.organization_id));
        }
        for t in &r.teams {
            within.add_team(Some(t));
        }
    }
    super::audit_change(action, TABLE, id, before.map(view), after.map(view), within)
}

/// A new internal user with nothing granted.
pub fn blank_user(user_id: &str, by: &str) -> UserRecord {
    let now = now_ms();
    UserRecord {
        user_id: user_id.to_string(),
        user_email: None,
        user_alias: None,
        user_role: GlobalRole::InternalUser,
        password_hash: None,
        models: Vec::new(),
        budget: Budget::default(),
        teams: Vec::new(),
        organizations: Vec::new(),
        metadata_json: "{}".into(),
        blocked: false,
        sso_user_id: None,
        external_id: None,
        created_at_ms: now,
        updated_at_ms: now,
        created_by: by.to_string(),
        updated_by: by.to_string(),
        scim: None,
    }
}

fn role_arg(v: &Value) -> Result<GlobalRole, ApiError> {
    let text = string(v, "user_role")?.unwrap_or_default();
    GlobalRole::parse(&text).ok_or_else(|| {
        ApiError::invalid(
            format!(
                "`user_role` must be one of {} (got `{text}`).",
                GlobalRole::names()
            ),
            "user_role",
        )
    })
}

fn password_arg(v: &Value) -> Result<Option<String>, ApiError> {
    match string(v, "password")? {
        None => Ok(None),
        Some(p) if p.chars().count() < MIN_PASSWORD_CHARS || p.len() > MAX_PASSWORD_BYTES => {
            Err(ApiError::invalid(
                format!(
                    "`password` must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} bytes long."
                ),
                "password",
            ))
        }
        Some(p) => hash_password(&p).map(Some).map_err(|e| ApiError::Internal {
            request_id: crate::request::new_call_id(),
            detail: format!("password hashing failed: {e}"),
        }),
    }
}

fn email_arg(v: &Value) -> Result<Option<String>, ApiError> {
    let email = string(v, "user_email")?.filter(|e| !e.trim().is_empty());
    if let Some(e) = &email
        && (!e.contains('@') || e.len() > 320 || e.chars().any(char::is_whitespace))
    {
        return Err(ApiError::invalid(
            "`user_email` must be an email address.",
            "user_email",
        ));
    }
    Ok(email)
}

/// Applies the writable fields present in `body` (memberships excluded).
fn apply(u: &mut UserRecord, body: &Map<String, Value>) -> Result<(), ApiError> {
    for (field, v) in body {
        let f = field.as_str();
        if budget_field(&mut u.budget, f, v)? {
            continue;
        }
        match f {
            "user_email" => u.user_email = email_arg(v)?,
            "user_alias" => u.user_alias = string(v, f)?,
            "user_role" => u.user_role = role_arg(v)?,
            "password" => u.password_hash = password_arg(v)?,
            "models" => u.models = strings(v, f)?,
            "metadata" => u.metadata_json = metadata(v, f)?,
            "blocked" => u.blocked = boolean(v, f)?,
            _ => {}
        }
    }
    check_budget(&u.budget)
}

/// Refuses a role the caller may not hand out: only proxy admins create proxy admins or
/// their viewers.
fn check_role_grant(caller: &Caller, role: GlobalRole) -> Result<(), ApiError> {
    if matches!(role, GlobalRole::ProxyAdmin | GlobalRole::ProxyAdminViewer)
        && !caller.identity.is_proxy_admin()
    {
        return Err(ApiError::Forbidden(format!(
            "Only a proxy admin may grant the role {role}."
        )));
    }
    Ok(())
}

fn check_email_free(tx: &Tx, email: Option<&str>, user_id: &str) -> Result<(), ApiError> {
    if let Some(e) = email
        && let Some(other) = tx.user_by_email(e)?
        && other.user_id != user_id
    {
        return Err(ApiError::Conflict(format!(
            "user_email `{e}` already belongs to another user."
        )));
    }
    Ok(())
}

async fn new_user(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require_writer()?;
    let body = body_of(&app, &headers, body).await?;
    let user_id = id_or_new(&body, "user_id")?;
    let mut user = blank_user(&user_id, &caller.label());
    apply(&mut user, &body)?;
    check_role_grant(&caller, user.user_role)?;
    let teams = id_list(&body, "teams")?;
    let mut orgs = id_list(&body, "organizations")?;
    if let Some(o) = super::fields::optional(&body, "organization_id")? {
        orgs.push(o);
    }
    orgs.dedup();
    let auto_key = body
        .get("auto_create_key")
        .map_or(Ok(true), |v| boolean(v, "auto_create_key"))?;
    let who = caller.clone();
    let dir_app = app.clone();
    let (saved, secret) = commit(&app, &caller, move |tx, fx| {
        let dir = &dir_app.directory;
        let id = &who.identity;
        if tx.get_user(&user.user_id)?.is_some() {
            return Err(ApiError::Conflict(format!(
                "User {} already exists.",
                user.user_id
            )));
        }
        check_email_free(tx, user.user_email.as_deref(), &user.user_id)?;
        // A user created by anyone but a proxy admin must land inside the creator's reach.
        let mut governed = id.is_proxy_admin();
        for o in &orgs {
            let org = dir
                .org(o)
                .filter(|org| id.org_reach(dir, org) != Reach::Hidden)
                .ok_or_else(|| ApiError::NotFound(format!("Organization {o} not found.")))?;
            if !id.is_proxy_admin() && !id.governs_org(dir, o) {
                return Err(ApiError::Forbidden(format!(
                    "Not allowed to add users to organization {o}."
                )));
            }
            governed = true;
            let mut rec = org.record.clone();
            if !rec.members.iter().any(|m| m.user_id == user.user_id) {
                rec.members.push(crate::store::OrgMember {
                    user_id: user.user_id.clone(),
                    role: crate::roles::OrgRole::InternalUser,
                });
            }
            user.organizations.push(OrgMembership {
                organization_id: o.clone(),
                role: crate::roles::OrgRole::InternalUser,
            });
            tx.put_org(&rec)?;
            fx.orgs.push(rec);
        }
        for t in &teams {
            let team = dir
                .team(t)
                .filter(|team| id.team_reach(dir, &team.record) != Reach::Hidden)
                .ok_or_else(|| ApiError::NotFound(format!("Team {t} not found.")))?;
            if id.team_reach(dir, &team.record) < Reach::Members {
                return Err(ApiError::Forbidden(format!(
                    "Not allowed to add users to team {t}."
                )));
            }
            // The same rules as /team/member_add: a SCIM group's members may be locked to the
            // IdP, and joining a group that grants a role needs the right to grant it.
            crate::api::scim_managed::check_team_members(&dir_app.scim, &team.record)?;
            crate::api::scim_roles::check_may_add(
                &who,
                dir,
                &dir_app.scim.group_roles,
                &team.record,
            )?;
            governed = true;
            let mut rec = team.record.clone();
            rec.members.push(TeamMember {
                user_id: user.user_id.clone(),
                role: TeamRole::User,
                budget: Budget::default(),
            });
            user.teams.push(t.clone());
            tx.put_team(&rec)?;
            tx.audit(super::teams::change(
                "updated",
                Some(&team.record),
                Some(&rec),
            ));
            fx.teams.push(rec);
        }
        if !governed {
            return Err(ApiError::Forbidden(
                "Only a proxy admin may create a user outside any organization or team.".into(),
            ));
        }
        tx.put_user(&user)?;
        tx.audit(change("created", None, Some(&user)));
        fx.users.push(user.clone());
        let secret = if auto_key {
            let secret = crate::auth::generate_key().map_err(|e| ApiError::Internal {
                request_id: who.origin.request_id.clone(),
                detail: format!("no randomness: {e}"),
            })?;
            let mut key =
                super::keys::new_record(&secret, &who.label(), Some(user.user_id.clone()));
            // The first key lives where the user was put: its one team, or else its one
            // organisation, so that team's or organisation's policies govern it.
            match (user.teams.as_slice(), user.organizations.as_slice()) {
                ([team], _) => key.team_id = Some(team.clone()),
                ([], [org]) => key.organization_id = Some(org.organization_id.clone()),
                _ => {}
            }
            tx.put_key(&key)?;
            tx.audit(super::keys::change("created", None, Some(&key), &key.token));
            fx.keys.push(key);
            Some(secret)
        } else {
            None
        };
        Ok((user, secret))
    })
    .await?;
    let mut out = view(&saved, 0.0);
    out["key"] = json!(secret);
    Ok(Json(out))
}

async fn update_user(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let target = match super::fields::optional(&body, "user_id")? {
        Some(id) => id,
        None => match (&body.get("user_email"), caller.identity.user_id()) {
            (_, Some(me)) => me.to_string(),
            _ => return Err(ApiError::invalid("`user_id` is required.", "user_id")),
        },
    };
    let who = caller.clone();
    let dir_app = app.clone();
    let saved = commit(&app, &caller, move |tx, fx| {
        let dir = &dir_app.directory;
        let before = tx
            .get_user(&target)?
            .ok_or_else(|| ApiError::NotFound("User not found.".into()))?;
        let reach = who.identity.user_reach(dir, &before);
        let self_only = body.keys().all(|k| SELF_FIELDS.contains(&k.as_str()));
        who.need(
            reach,
            if self_only {
                Reach::Owner
            } else {
                Reach::Manage
            },
            "User",
        )?;
        let mut after = before.clone();
        apply(&mut after, &body)?;
        super::scim_managed::check_user_edit(&dir_app.scim, &before, &after)?;
        if after.user_role != before.user_role {
            check_role_grant(&who, after.user_role)?;
        }
        if body.contains_key("user_role") {
            // Set by hand: the administrator's from now on, even if SCIM had granted it.
            after.take_over_role();
        }
        check_email_free(tx, after.user_email.as_deref(), &after.user_id)?;
        after.updated_at_ms = now_ms();
        after.updated_by = who.label();
        tx.put_user(&after)?;
        tx.audit(change("updated", Some(&before), Some(&after)));
        fx.users.push(after.clone());
        Ok(after)
    })
    .await?;
    let e = app.directory.user(&saved.user_id);
    Ok(Json(e.map_or_else(
        || view(&saved, 0.0),
        |e| scoped_view(&caller, &app.directory, &e),
    )))
}

/// Removes a user and its memberships; its keys too when `cascade` (else 409 if it has any).
pub fn remove_user(
    tx: &mut Tx,
    fx: &mut super::write::Effects,
    user: &UserRecord,
    cascade: bool,
    all_keys: &[crate::store::KeyRecord],
) -> Result<(), ApiError> {
    let keys: Vec<&crate::store::KeyRecord> = all_keys
        .iter()
        .filter(|k| k.user_id.as_deref() == Some(user.user_id.as_str()))
        .collect();
    if !keys.is_empty() && !cascade {
        return Err(ApiError::Conflict(format!(
            "User {} still has {} key(s); delete them first or pass \"cascade\": true.",
            user.user_id,
            keys.len()
        )));
    }
    for k in keys {
        tx.delete_key(&k.token)?;
        tx.audit(super::keys::change("deleted", Some(k), None, &k.token));
        fx.removed_keys.push(k.clone());
    }
    for t in &user.teams {
        if let Some(before) = tx.get_team(t)? {
            let mut after = before.clone();
            after.members.retain(|m| m.user_id != user.user_id);
            tx.put_team(&after)?;
            tx.audit(super::teams::change("updated", Some(&before), Some(&after)));
            fx.teams.push(after);
        }
    }
    for m in &user.organizations {
        if let Some(before) = tx.get_org(&m.organization_id)? {
            let mut after = before.clone();
            after.members.retain(|x| x.user_id != user.user_id);
            tx.put_org(&after)?;
            tx.audit(super::orgs::change("updated", Some(&before), Some(&after)));
            fx.orgs.push(after);
        }
    }
    tx.delete_user(&user.user_id)?;
    tx.audit(change("deleted", Some(user), None));
    fx.removed_users.push(user.user_id.clone());
    Ok(())
}

async fn delete_user(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let ids = id_list(&body, "user_ids")?;
    if ids.is_empty() {
        return Err(ApiError::invalid("Give `user_ids` to delete.", "user_ids"));
    }
    let cascade = cascade(&body)?;
    let who = caller.clone();
    let dir_app = app.clone();
    let deleted = commit(&app, &caller, move |tx, fx| {
        let dir = &dir_app.directory;
        let all_keys = tx.all_keys()?;
        // All or nothing: one refused user deletes none.
        for id in &ids {
            let user = tx
                .get_user(id)?
                .ok_or_else(|| ApiError::NotFound(format!("User {id} not found.")))?;
            who.need(who.identity.user_reach(dir, &user), Reach::Manage, "User")?;
            if who.identity.user_id() == Some(id.as_str()) {
                return Err(ApiError::Forbidden("A user cannot delete itself.".into()));
            }
            super::scim_managed::check_user_delete(&dir_app.scim, &user)?;
            remove_user(tx, fx, &user, cascade, &all_keys)?;
        }
        Ok(ids)
    })
    .await?;
    Ok(Json(json!({"deleted_users": deleted})))
}

#[derive(Deserialize)]
struct InfoQuery {
    user_id: Option<String>,
}

async fn info_user(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<InfoQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = match (q.user_id, caller.identity.user_id()) {
        (Some(id), _) => id,
        (None, Some(me)) => me.to_string(),
        (None, None) => return Err(ApiError::invalid("`user_id` is required.", "user_id")),
    };
    let dir = &app.directory;
    let user = dir
        .user(&id)
        .ok_or_else(|| ApiError::NotFound("User not found.".into()))?;
    caller.need(
        caller.identity.user_reach(dir, &user.record),
        Reach::Read,
        "User",
    )?;
    let teams: Vec<Value> = user
        .record
        .teams
        .iter()
        .filter_map(|t| dir.team(t))
        .filter(|t| {
            caller.identity.team_reach(dir, &t.record) >= Reach::Read
                || caller.identity.user_id() == Some(id.as_str())
        })
        .map(|t| json!({"team_id": t.record.team_id, "team_alias": t.record.team_alias}))
        .collect();
    let store = app.store.clone();
    let keys = tokio::task::spawn_blocking(move || store.all_keys())
        .await
        .map_err(|e| ApiError::Internal {
            request_id: caller.origin.request_id.clone(),
            detail: e.to_string(),
        })??;
    let keys: Vec<Value> = keys
        .iter()
        .filter(|k| k.user_id.as_deref() == Some(id.as_str()))
        .filter(|k| caller.identity.key_reach(dir, k) >= Reach::Read)
        .map(|k| super::keys::live_view(&app, k))
        .collect();
    Ok(Json(json!({
        "user_id": id,
        "user_info": scoped_view(&caller, dir, &user),
        "keys": keys,
        "teams": teams,
    })))
}

#[derive(Deserialize)]
struct ListQuery {
    page: Option<String>,
    page_size: Option<String>,
    role: Option<String>,
    user_ids: Option<String>,
    team_id: Option<String>,
    organization_id: Option<String>,
    user_email: Option<String>,
}

async fn list_users(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = positive(q.page.as_deref(), "page", 1)?;
    let size = positive(q.page_size.as_deref(), "page_size", 25)?.min(MAX_PAGE_SIZE);
    let role = match q.role.as_deref() {
        None => None,
        Some(r) => Some(role_arg(&Value::String(r.to_string()))?),
    };
    let ids: Option<Vec<&str>> = q.user_ids.as_deref().map(|s| s.split(',').collect());
    let dir = &app.directory;
    let mut users: Vec<_> = dir
        .users()
        .into_iter()
        .filter(|u| caller.identity.user_reach(dir, &u.record) >= Reach::Read)
        .filter(|u| {
            let r = &u.record;
            role.is_none_or(|x| r.user_role == x)
                && ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&r.user_id.as_str()))
                && q.team_id.as_ref().is_none_or(|t| r.teams.contains(t))
                && q.organization_id
                    .as_ref()
                    .is_none_or(|o| r.organizations.iter().any(|m| &m.organization_id == o))
                && q.user_email.as_ref().is_none_or(|e| {
                    r.user_email
                        .as_ref()
                        .is_some_and(|x| x.to_lowercase().contains(&e.to_lowercase()))
                })
        })
        .collect();
    users.sort_by(|a, b| {
        b.record
            .created_at_ms
            .cmp(&a.record.created_at_ms)
            .then_with(|| a.record.user_id.cmp(&b.record.user_id))
    });
    let total = users.len();
    let shown: Vec<Value> = users
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|u| scoped_view(&caller, dir, u))
        .collect();
    Ok(Json(json!({
        "users": shown,
        "total": total,
        "page": page,
        "page_size": size,
        "total_pages": total.div_ceil(size),
    })))
}
