//! Team membership: `/team/member_add`, `/team/member_delete`, `/team/member_update`, and the
//! member handling `/team/new` and `/team/delete` share. Each membership change writes the team
//! and the user, with both audit entries, in the same transaction.

use super::{current_view, modify_team};
use crate::api::fields::{
    BUDGET_FIELDS, budget_field, budget_view, check_budget, optional, required, string,
};
use crate::api::write::Effects;
use crate::api::{ApiError, Caller, body_of, spend};
use crate::app::AppState;
use crate::roles::TeamRole;
use crate::store::{Budget, TeamMember, TeamRecord, Tx, UserRecord};
use crate::tenancy::Directory;
use crate::tenancy::scope::Reach;
use crate::types::now_ms;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use http::HeaderMap;
use serde_json::{Map, Value, json};

/// A member's budget inside the team, under LiteLLM's `max_budget_in_team` name as well.
pub(super) fn member_budget_view(b: &Budget, out: &mut Map<String, Value>) {
    budget_view(b, out);
    out.insert("max_budget_in_team".into(), json!(b.max_budget));
}

/// Applies a member's budget fields present in `body`. `max_budget` is left out: next to a
/// `team_id` it reads as the team's budget, and silently setting the member's would surprise.
fn apply_member_budget(b: &mut Budget, body: &Map<String, Value>) -> Result<(), ApiError> {
    for (field, v) in body {
        if field != "max_budget" {
            budget_field(b, field, v)?;
        }
    }
    check_budget(b)
}

fn role_arg(v: &Value, field: &str) -> Result<TeamRole, ApiError> {
    let text = string(v, field)?.unwrap_or_default();
    TeamRole::parse(&text).ok_or_else(|| {
        ApiError::invalid(
            format!(
                "`{field}` must be one of {} (got `{text}`).",
                TeamRole::names()
            ),
            field,
        )
    })
}

/// Names a user by id or by email, as LiteLLM's member objects do.
enum Who {
    Id(String),
    Email(String),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Id(s) | Who::Email(s) => f.write_str(s),
        }
    }
}

fn who_arg(m: &Map<String, Value>, field: &str) -> Result<Who, ApiError> {
    if let Some(id) = optional(m, "user_id")? {
        return Ok(Who::Id(id));
    }
    if let Some(e) = optional(m, "user_email")? {
        return Ok(Who::Email(e));
    }
    Err(ApiError::invalid(
        format!("`{field}` needs a `user_id` or a `user_email`."),
        field,
    ))
}

pub(super) struct MemberSpec {
    who: Who,
    role: TeamRole,
}

/// A member object, or an array of them: `{user_id | user_email, role}` (role defaults to user).
pub(super) fn member_specs(v: Option<&Value>, field: &str) -> Result<Vec<MemberSpec>, ApiError> {
    let items: Vec<&Value> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(o @ Value::Object(_)) => vec![o],
        Some(_) => {
            return Err(ApiError::invalid(
                format!("`{field}` must be a member object or an array of them."),
                field,
            ));
        }
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Object(m) = item else {
                return Err(ApiError::invalid(
                    format!("Each `{field}` entry must be an object."),
                    field,
                ));
            };
            let role = match m.get("role") {
                None | Some(Value::Null) => TeamRole::User,
                Some(r) => role_arg(r, &format!("{field}.role"))?,
            };
            Ok(MemberSpec {
                who: who_arg(m, field)?,
                role,
            })
        })
        .collect()
}

/// The user a member spec names, if the caller may see it: within its reach, or a member of
/// the team's organisation (whom the team's admins may add without seeing all of them).
fn find_user(
    tx: &Tx,
    dir: &Directory,
    who: &Caller,
    spec: &Who,
    team_org: Option<&str>,
) -> Result<UserRecord, ApiError> {
    let found = match spec {
        Who::Id(id) => tx.get_user(id)?,
        Who::Email(e) => tx.user_by_email(e)?,
    };
    let user = found
        .filter(|u| {
            who.identity.user_reach(dir, u) >= Reach::Read
                || team_org.is_some_and(|o| u.organizations.iter().any(|m| m.organization_id == o))
        })
        .ok_or_else(|| ApiError::NotFound(format!("User {spec} not found.")))?;
    who.may_change_memberships_of(&user)?;
    Ok(user)
}

/// Adds or removes `team_id` on the user's side of a membership.
pub(super) fn link_user(
    tx: &mut Tx,
    fx: &mut Effects,
    by: &str,
    user: &UserRecord,
    team_id: &str,
    member: bool,
) -> Result<(), ApiError> {
    let mut after = user.clone();
    after.teams.retain(|t| t != team_id);
    if member {
        after.teams.push(team_id.to_string());
    }
    if after.teams == user.teams {
        return Ok(());
    }
    after.updated_at_ms = now_ms();
    after.updated_by = by.to_string();
    tx.put_user(&after)?;
    let mut within = crate::audit::Within::default();
    within.add_team(Some(team_id));
    tx.audit(crate::api::users::membership_change(
        Some(user),
        Some(&after),
        within,
    ));
    fx.users.push(after);
    Ok(())
}

/// Adds members to `team` (both sides). Refuses one already in it.
pub(super) fn add_members(
    tx: &mut Tx,
    fx: &mut Effects,
    dir: &Directory,
    who: &Caller,
    team: &mut TeamRecord,
    specs: &[MemberSpec],
    budget: &Budget,
) -> Result<Vec<UserRecord>, ApiError> {
    let mut added = Vec::with_capacity(specs.len());
    for spec in specs {
        let user = find_user(tx, dir, who, &spec.who, team.organization_id.as_deref())?;
        if team.members.iter().any(|m| m.user_id == user.user_id) {
            return Err(ApiError::Conflict(format!(
                "User {} is already a member of team {}.",
                user.user_id, team.team_id
            )));
        }
        team.members.push(TeamMember {
            user_id: user.user_id.clone(),
            role: spec.role,
            budget: budget.clone(),
        });
        link_user(tx, fx, &who.label(), &user, &team.team_id, true)?;
        added.push(user);
    }
    Ok(added)
}

pub(super) async fn member_add(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let team_id = required(&body, "team_id")?;
    let specs = member_specs(body.get("member"), "member")?;
    if specs.is_empty() {
        return Err(ApiError::invalid("`member` is required.", "member"));
    }
    let mut budget = Budget::default();
    if let Some(v) = body.get("max_budget_in_team") {
        budget_field(&mut budget, "max_budget_in_team", v)?;
    }
    let scim = app.scim.clone();
    let (saved, added) = modify_team(
        &app,
        &caller,
        team_id,
        Reach::Members,
        "updated",
        move |tx, fx, dir, who, t| {
            crate::api::scim_managed::check_team_members(&scim, t)?;
            crate::api::scim_roles::check_may_add(who, dir, &scim.group_roles, t)?;
            add_members(tx, fx, dir, who, t, &specs, &budget)
        },
    )
    .await?;
    let users: Vec<Value> = added
        .iter()
        .filter_map(|u| app.directory.user(&u.user_id))
        .map(|u| crate::api::users::view(&u.record, spend(&u.meter, &u.limits)))
        .collect();
    let mut out = current_view(&app, &saved);
    out["updated_users"] = Value::Array(users);
    Ok(Json(out))
}

pub(super) async fn member_delete(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let team_id = required(&body, "team_id")?;
    let target = who_arg(&body, "user_id")?;
    let scim = app.scim.clone();
    let (saved, ()) = modify_team(
        &app,
        &caller,
        team_id,
        Reach::Members,
        "updated",
        move |tx, fx, _, who, t| {
            crate::api::scim_managed::check_team_members(&scim, t)?;
            let user = match &target {
                Who::Id(id) => tx.get_user(id)?,
                Who::Email(e) => tx.user_by_email(e)?,
            };
            if let Some(u) = &user {
                who.may_change_memberships_of(u)?;
            }
            let user_id = match (&user, &target) {
                (Some(u), _) => u.user_id.clone(),
                (None, Who::Id(id)) => id.clone(),
                (None, Who::Email(_)) => String::new(),
            };
            let before = t.members.len();
            t.members.retain(|m| m.user_id != user_id);
            if t.members.len() == before {
                return Err(ApiError::NotFound(format!(
                    "User {target} is not a member of team {}.",
                    t.team_id
                )));
            }
            if let Some(u) = &user {
                link_user(tx, fx, &who.label(), u, &t.team_id, false)?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(Json(current_view(&app, &saved)))
}

pub(super) async fn member_update(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let team_id = required(&body, "team_id")?;
    let target = who_arg(&body, "user_id")?;
    let role = match body.get("role") {
        None | Some(Value::Null) => None,
        Some(v) => Some(role_arg(v, "role")?),
    };
    // A member's budget and limits are set from above the team: a team admin changes roles,
    // not its own (or its members') allowance.
    let needed = if body
        .keys()
        .any(|k| k == "max_budget_in_team" || BUDGET_FIELDS.contains(&k.as_str()))
    {
        Reach::Manage
    } else {
        Reach::Members
    };
    let (saved, id) = modify_team(
        &app,
        &caller,
        team_id,
        needed,
        "updated",
        move |tx, _, _, who, t| {
            let id = match &target {
                Who::Id(id) => id.clone(),
                Who::Email(e) => tx.user_by_email(e)?.map(|u| u.user_id).unwrap_or_default(),
            };
            if let Some(u) = tx.get_user(&id)? {
                who.may_change_memberships_of(&u)?;
            }
            let team_id = t.team_id.clone();
            let member = t
                .members
                .iter_mut()
                .find(|m| m.user_id == id)
                .ok_or_else(|| {
                    ApiError::NotFound(format!("User {target} is not a member of team {team_id}."))
                })?;
            if let Some(r) = role {
                member.role = r;
            }
            apply_member_budget(&mut member.budget, &body)?;
            Ok(id)
        },
    )
    .await?;
    let member = saved.members.iter().find(|m| m.user_id == id);
    let mut out = json!({
        "team_id": saved.team_id,
        "user_id": id,
        "role": member.map(|m| m.role.as_str()),
    });
    if let (Some(m), Some(map)) = (member, out.as_object_mut()) {
        member_budget_view(&m.budget, map);
    }
    Ok(Json(out))
}
