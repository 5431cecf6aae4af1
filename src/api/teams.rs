//! `/team/*`: teams, LiteLLM-compatible. A team's members are stored on both sides (the team
//! lists them, each user lists its teams); every route here that changes a membership writes
//! both records, with their audit entries, in one transaction.
//!
//! Who may do what: team admins manage members, alias and metadata (`Reach::Members`);
//! budgets, limits, models, blocking and the organisation need someone above the team
//! (`Reach::Manage`: a proxy admin, or an admin of the team's organisation subtree).

use super::fields::{
    boolean, budget_field, cascade, check_budget, id_list, metadata, required, string, strings,
    touches_governance,
};
use super::write::{Effects, commit};
use super::{ApiError, Caller, Params, body_of, spend};
use crate::app::AppState;
use crate::audit::Change;
use crate::store::{Budget, TeamRecord, Tx};
use crate::tenancy::Directory;
use crate::tenancy::scope::Reach;
use crate::types::now_ms;
use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

mod members;

use members::{
    add_members, link_user, member_add, member_budget_view, member_delete, member_specs,
    member_update,
};

/// LiteLLM's table name for teams, kept so audit filters written for it still match.
pub const TABLE: &str = "LiteLLM_TeamTable";

/// Team fields only someone above the team may change.
const GOVERNANCE_EXTRA: &[&str] = &["organization_id", "blocked"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/team/new", post(new_team))
        .route("/team/update", post(update_team))
        .route("/team/delete", post(delete_team))
        .route("/team/info", get(info_team))
        .route("/team/list", get(list_teams))
        .route("/team/member_add", post(member_add))
        .route("/team/member_delete", post(member_delete))
        .route("/team/member_update", post(member_update))
        .route(
            "/team/block",
            team_route(|app, caller, headers, body| set_blocked(app, caller, headers, body, true)),
        )
        .route(
            "/team/unblock",
            team_route(|app, caller, headers, body| set_blocked(app, caller, headers, body, false)),
        )
        .route(
            "/team/model/add",
            team_route(|app, caller, headers, body| {
                change_models(app, caller, headers, body, true)
            }),
        )
        .route(
            "/team/model/delete",
            team_route(|app, caller, headers, body| {
                change_models(app, caller, headers, body, false)
            }),
        )
}

/// A team as the API shows it.
pub fn view(t: &TeamRecord, spend: f64) -> Value {
    let mut out = json!({
        "team_id": t.team_id,
        "team_alias": t.team_alias,
        "organization_id": t.organization_id,
        "models": t.models,
        "spend": spend,
        "members_with_roles": t.members.iter().map(|m| {
            let mut v = json!({"user_id": m.user_id, "role": m.role.as_str()});
            if let Some(map) = v.as_object_mut() {
                super::fields::budget_view(&m.budget, map);
            }
            v
        }).collect::<Vec<_>>(),
        "blocked": t.blocked,
        "metadata": super::fields::metadata_view(&t.metadata_json),
        "created_at": crate::types::ms_to_rfc3339(t.created_at_ms),
        "updated_at": crate::types::ms_to_rfc3339(t.updated_at_ms),
        "created_by": t.created_by,
        "updated_by": t.updated_by,
    });
    if let Some(m) = out.as_object_mut() {
        super::fields::budget_view(&t.budget, m);
        super::scim_managed::mark_team(t, m);
    }
    out
}

pub fn change(action: &str, before: Option<&TeamRecord>, after: Option<&TeamRecord>) -> Change {
    let id = after
        .or(before)
        .map(|t| t.team_id.clone())
        .unwrap_or_default();
    let view = |t: &TeamRecord| view(t, 0.0);
    let mut within = crate::audit::Within::default();
    for r in before.into_iter().chain(after) {
        within.add_org(r.organization_id.as_deref());
        within.add_team(Some(&r.team_id));
    }
    super::audit_change(action, TABLE, id, before.map(view), after.map(view), within)
}

/// The team as it is now, with its live spend.
fn current_view(app: &AppState, t: &TeamRecord) -> Value {
    match app.directory.team(&t.team_id) {
        Some(e) => view(&e.record, spend(&e.meter, &e.limits)),
        None => view(t, 0.0),
    }
}

/// Applies the team's own writable fields present in `body` (members excluded).
fn apply(t: &mut TeamRecord, body: &Map<String, Value>) -> Result<(), ApiError> {
    for (field, v) in body {
        let f = field.as_str();
        // `max_budget_in_team` is a member's budget, never the team's.
        if f != "max_budget_in_team" && budget_field(&mut t.budget, f, v)? {
            continue;
        }
        match f {
            "team_alias" => t.team_alias = string(v, f)?.filter(|s| !s.trim().is_empty()),
            "models" => t.models = strings(v, f)?,
            "metadata" => t.metadata_json = metadata(v, f)?,
            "blocked" => t.blocked = boolean(v, f)?,
            "organization_id" => t.organization_id = string(v, f)?.filter(|s| !s.is_empty()),
            _ => {}
        }
    }
    check_budget(&t.budget)
}

/// Unknown and invisible teams answer alike, so the answer does not disclose which it is.
fn need_team(
    who: &Caller,
    dir: &Directory,
    found: Option<TeamRecord>,
    id: &str,
    needed: Reach,
) -> Result<TeamRecord, ApiError> {
    let missing = || ApiError::NotFound(format!("Team {id} not found."));
    let team = found.ok_or_else(missing)?;
    match who.identity.team_reach(dir, &team) {
        Reach::Hidden => Err(missing()),
        reach => who.need(reach, needed, "Team").map(|()| team),
    }
}

/// Refuses, for callers below a proxy admin, team models wider than the organisation chain's.
/// An empty list narrows nothing at the team level, so it widens nothing either: the
/// organisation's own list still applies to every call.
fn check_models(dir: &Directory, who: &Caller, team: &TeamRecord) -> Result<(), ApiError> {
    if who.identity.is_proxy_admin() || team.models.is_empty() {
        return Ok(());
    }
    let Some(org) = team.organization_id.as_deref() else {
        return Ok(());
    };
    let wanted = dir.compile_models(&team.models);
    for o in dir.org_chain(org) {
        if !wanted.within(&o.models, true) {
            return Err(ApiError::Forbidden(format!(
                "The team's models must be within the models of organization {}.",
                o.record.organization_id
            )));
        }
    }
    Ok(())
}

/// Checks that the caller may place a team in `org` (None: outside any organisation).
fn check_org(dir: &Directory, who: &Caller, org: Option<&str>) -> Result<(), ApiError> {
    let id = &who.identity;
    match org {
        None if id.is_proxy_admin() => Ok(()),
        None => Err(ApiError::Forbidden(
            "Only a proxy admin may have a team outside any organization; give `organization_id`."
                .into(),
        )),
        Some(o) => {
            let visible = dir
                .org(o)
                .is_some_and(|e| id.org_reach(dir, &e) != Reach::Hidden);
            if !visible {
                return Err(ApiError::NotFound(format!("Organization {o} not found.")));
            }
            if !id.is_proxy_admin() && !id.governs_org(dir, o) {
                return Err(ApiError::Forbidden(format!(
                    "Not allowed to place teams in organization {o}."
                )));
            }
            Ok(())
        }
    }
}

async fn new_team(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require_writer()?;
    let body = body_of(&app, &headers, body).await?;
    let team_id = super::fields::id_or_new(&body, "team_id")?;
    let now = now_ms();
    let mut team = TeamRecord {
        team_id,
        team_alias: None,
        organization_id: None,
        models: Vec::new(),
        budget: Budget::default(),
        members: Vec::new(),
        blocked: false,
        metadata_json: "{}".into(),
        external_id: None,
        created_at_ms: now,
        updated_at_ms: now,
        created_by: caller.label(),
        updated_by: caller.label(),
        scim: None,
    };
    apply(&mut team, &body)?;
    let specs = member_specs(body.get("members_with_roles"), "members_with_roles")?;
    let who = caller.clone();
    let dir_app = app.clone();
    let saved = commit(&app, &caller, move |tx, fx| {
        let dir = &dir_app.directory;
        check_org(dir, &who, team.organization_id.as_deref())?;
        check_models(dir, &who, &team)?;
        if tx.get_team(&team.team_id)?.is_some() {
            return Err(ApiError::Conflict(format!(
                "Team {} already exists.",
                team.team_id
            )));
        }
        add_members(tx, fx, dir, &who, &mut team, &specs, &Budget::default())?;
        tx.put_team(&team)?;
        tx.audit(change("created", None, Some(&team)));
        fx.teams.push(team.clone());
        Ok(team)
    })
    .await?;
    Ok(Json(view(&saved, 0.0)))
}

/// Reads a team, edits it, and writes it back with its audit entry, in one transaction. The
/// caller needs `needed` reach over the team as it was.
async fn modify_team<R: Send + 'static>(
    app: &AppState,
    caller: &Caller,
    team_id: String,
    needed: Reach,
    action: &'static str,
    edit: impl FnOnce(
        &mut Tx,
        &mut Effects,
        &Directory,
        &Caller,
        &mut TeamRecord,
    ) -> Result<R, ApiError>
    + Send
    + 'static,
) -> Result<(TeamRecord, R), ApiError> {
    let who = caller.clone();
    let dir_app = app.clone();
    commit(app, caller, move |tx, fx| {
        let dir = &dir_app.directory;
        let before = need_team(&who, dir, tx.get_team(&team_id)?, &team_id, needed)?;
        let mut after = before.clone();
        let out = edit(tx, fx, dir, &who, &mut after)?;
        after.updated_at_ms = now_ms();
        after.updated_by = who.label();
        tx.put_team(&after)?;
        tx.audit(change(action, Some(&before), Some(&after)));
        // Members who joined or left a SCIM group, or all of them if it moved, gain or lose
        // what it grants.
        let roles = &dir_app.scim.group_roles;
        super::scim_roles::team_changed(tx, fx, roles, &who.label(), Some(&before), Some(&after))?;
        fx.teams.push(after.clone());
        Ok((after, out))
    })
    .await
}

async fn update_team(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let team_id = required(&body, "team_id")?;
    let needed = if touches_governance(&body, GOVERNANCE_EXTRA) {
        Reach::Manage
    } else {
        Reach::Members
    };
    let scim = app.scim.clone();
    let (saved, ()) = modify_team(
        &app,
        &caller,
        team_id,
        needed,
        "updated",
        move |_, _, dir, who, t| {
            let old_org = t.organization_id.clone();
            let before = t.clone();
            apply(t, &body)?;
            super::scim_managed::check_team_edit(&scim, &before, t)?;
            super::scim_roles::check_move(&scim.group_roles, &before, t)?;
            if t.organization_id != old_org {
                check_org(dir, who, t.organization_id.as_deref())?;
            }
            if t.organization_id != old_org || body.contains_key("models") {
                check_models(dir, who, t)?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(Json(current_view(&app, &saved)))
}

async fn delete_team(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let mut ids = id_list(&body, "team_ids")?;
    if ids.is_empty() {
        return Err(ApiError::invalid("Give `team_ids` to delete.", "team_ids"));
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    let cascade = cascade(&body)?;
    let who = caller.clone();
    let dir_app = app.clone();
    let deleted = commit(&app, &caller, move |tx, fx| {
        let dir = &dir_app.directory;
        let all_keys = tx.all_keys()?;
        // All or nothing: one refused team deletes none.
        for id in &ids {
            let team = need_team(&who, dir, tx.get_team(id)?, id, Reach::Manage)?;
            super::scim_managed::check_team_delete(&dir_app.scim, &team)?;
            let keys: Vec<_> = all_keys
                .iter()
                .filter(|k| k.team_id.as_deref() == Some(id.as_str()))
                .collect();
            if !keys.is_empty() && !cascade {
                return Err(ApiError::Conflict(format!(
                    "Team {id} still has {} key(s); delete them first or pass \"cascade\": true.",
                    keys.len()
                )));
            }
            for k in keys {
                tx.delete_key(&k.token)?;
                tx.audit(super::keys::change("deleted", Some(k), None, &k.token));
                fx.removed_keys.push(k.clone());
            }
            for m in &team.members {
                // Read from the transaction: an earlier team in this request may have changed it.
                if let Some(user) = tx.get_user(&m.user_id)? {
                    link_user(tx, fx, &who.label(), &user, id, false)?;
                }
            }
            tx.delete_team(id)?;
            tx.audit(change("deleted", Some(&team), None));
            let roles = &dir_app.scim.group_roles;
            super::scim_roles::team_changed(tx, fx, roles, &who.label(), Some(&team), None)?;
            fx.removed_teams.push(id.clone());
        }
        Ok(ids)
    })
    .await?;
    Ok(Json(json!({"deleted_teams": deleted})))
}

#[derive(Deserialize)]
struct InfoQuery {
    team_id: Option<String>,
}

async fn info_team(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<InfoQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = q
        .team_id
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid("`team_id` is required.", "team_id"))?;
    let dir = &app.directory;
    let team = dir.team(&id);
    need_team(
        &caller,
        dir,
        team.as_ref().map(|t| t.record.clone()),
        &id,
        Reach::Read,
    )?;
    // need_team has answered 404 for a missing team already.
    let Some(team) = team else {
        return Err(ApiError::NotFound(format!("Team {id} not found.")));
    };
    let store = app.store.clone();
    let keys = tokio::task::spawn_blocking(move || store.all_keys())
        .await
        .map_err(|e| ApiError::Internal {
            request_id: caller.origin.request_id.clone(),
            detail: e.to_string(),
        })??;
    let keys: Vec<Value> = keys
        .iter()
        .filter(|k| k.team_id.as_deref() == Some(id.as_str()))
        .filter(|k| caller.identity.key_reach(dir, k) >= Reach::Read)
        .map(|k| super::keys::live_view(&app, k))
        .collect();
    let memberships: Vec<Value> = team
        .record
        .members
        .iter()
        .map(|m| {
            let spent = team
                .members
                .get(&m.user_id)
                .map_or(0.0, |e| spend(&e.meter, &e.limits));
            let mut v = json!({
                "user_id": m.user_id,
                "team_id": id,
                "role": m.role.as_str(),
                "spend": spent,
            });
            if let Some(map) = v.as_object_mut() {
                member_budget_view(&m.budget, map);
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "team_id": id,
        "team_info": view(&team.record, spend(&team.meter, &team.limits)),
        "keys": keys,
        "team_memberships": memberships,
    })))
}

#[derive(Deserialize)]
struct ListQuery {
    user_id: Option<String>,
    organization_id: Option<String>,
}

async fn list_teams(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let dir = &app.directory;
    let mut teams: Vec<_> = dir
        .teams()
        .into_iter()
        .filter(|t| caller.identity.team_reach(dir, &t.record) >= Reach::Read)
        .filter(|t| {
            let r = &t.record;
            q.user_id
                .as_ref()
                .is_none_or(|u| r.members.iter().any(|m| &m.user_id == u))
                && q.organization_id
                    .as_ref()
                    .is_none_or(|o| r.organization_id.as_ref() == Some(o))
        })
        .collect();
    teams.sort_by(|a, b| {
        a.record
            .created_at_ms
            .cmp(&b.record.created_at_ms)
            .then_with(|| a.record.team_id.cmp(&b.record.team_id))
    });
    Ok(Json(Value::Array(
        teams
            .iter()
            .map(|t| view(&t.record, spend(&t.meter, &t.limits)))
            .collect(),
    )))
}

/// A POST route whose handler takes the state, caller, headers and body (the block and model
/// routes differ only by a flag).
fn team_route<F, Fut>(handler: F) -> axum::routing::MethodRouter<AppState>
where
    F: Fn(AppState, Caller, HeaderMap, Body) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Json<Value>, ApiError>> + Send + 'static,
{
    post(
        move |State(app): State<AppState>, caller: Caller, headers: HeaderMap, body: Body| {
            handler(app, caller, headers, body)
        },
    )
}

async fn set_blocked(
    app: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
    blocked: bool,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let team_id = required(&body, "team_id")?;
    let action = if blocked { "blocked" } else { "unblocked" };
    let (saved, ()) = modify_team(
        &app,
        &caller,
        team_id,
        Reach::Manage,
        action,
        move |_, _, _, _, t| {
            t.blocked = blocked;
            Ok(())
        },
    )
    .await?;
    Ok(Json(current_view(&app, &saved)))
}

async fn change_models(
    app: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
    add: bool,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let team_id = required(&body, "team_id")?;
    let models = strings(body.get("models").unwrap_or(&Value::Null), "models")?;
    if models.is_empty() || models.iter().any(|m| m.trim().is_empty()) {
        return Err(ApiError::invalid(
            "`models` must be a non-empty array of model names.",
            "models",
        ));
    }
    let (saved, ()) = modify_team(
        &app,
        &caller,
        team_id,
        Reach::Manage,
        "updated",
        move |_, _, dir, who, t| {
            if add {
                for m in models {
                    if !t.models.contains(&m) {
                        t.models.push(m);
                    }
                }
                return check_models(dir, who, t);
            }
            let had_models = !t.models.is_empty();
            t.models.retain(|m| !models.contains(m));
            // An empty list means every model: removing the last one must not open the team up.
            if had_models && t.models.is_empty() {
                return Err(ApiError::invalid(
                    "Removing every model would let the team call all models; block the team or \
                 leave at least one model.",
                    "models",
                ));
            }
            Ok(())
        },
    )
    .await?;
    Ok(Json(current_view(&app, &saved)))
}
