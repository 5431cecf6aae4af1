//! `/scim/v2/Groups`: SCIM Groups are Portcullis teams; their members are team members.
//! Members must be existing users the token may see (400 otherwise — never auto-created).

use super::error::ScimError;
use super::resource::{self, GroupInput};
use super::schema::{self, GROUP_ATTRS};
use super::users::{check_if_match, join_org, pairs, resource_reply};
use super::{Base, ScimCaller, json_body, list, reply};
use crate::api::scim_roles;
use crate::api::write::{Effects, commit};
use crate::app::AppState;
use crate::roles::TeamRole;
use crate::store::{Budget, ScimGroup, TeamMember, TeamRecord, Tx};
use crate::tenancy::Directory;
use crate::types::now_ms;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

async fn run_listing(
    app: AppState,
    sc: ScimCaller,
    base: Base,
    params: serde_json::Map<String, Value>,
) -> Result<Response, ScimError> {
    let l = list::listing(&params)?;
    if let Some(f) = &l.filter {
        super::filter::check(f, &schema::GroupAttributes)
            .map_err(|e| ScimError::bad("invalidFilter", e.message))?;
    }
    let dir = &app.directory;
    let mut teams: Vec<TeamRecord> = dir
        .teams()
        .into_iter()
        .map(|t| t.record.clone())
        .filter(|t| resource::team_visible(dir, sc.org.as_deref(), t))
        .collect();
    teams.sort_by(|a, b| (a.created_at_ms, &a.team_id).cmp(&(b.created_at_ms, &b.team_id)));
    let mut matched = Vec::new();
    for t in &teams {
        let r = resource::group_resource(t, dir, sc.org.as_deref(), &base.0);
        let keep = match &l.filter {
            None => true,
            Some(f) => super::filter::evaluate(f, &r, &schema::GroupAttributes)
                .map_err(|e| ScimError::bad("invalidFilter", e.message))?,
        };
        if keep {
            matched.push(r);
        }
    }
    Ok(reply(
        StatusCode::OK,
        &list::respond(matched, &l, GROUP_ATTRS, schema::GROUP),
    ))
}

pub async fn list(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    q: Pairs,
) -> Result<Response, ScimError> {
    let params = pairs(q)?;
    run_listing(app, sc, base, params).await
}

pub async fn search(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let params = list::search_request(&app, &headers, body).await?;
    run_listing(app, sc, base, params).await
}

pub async fn get_one(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    Path(id): Path<String>,
    q: Pairs,
) -> Result<Response, ScimError> {
    let params = pairs(q)?;
    let l = list::listing(&params)?;
    let t = app
        .directory
        .team(&id)
        .map(|t| t.record.clone())
        .filter(|t| resource::team_visible(&app.directory, sc.org.as_deref(), t))
        .ok_or_else(|| ScimError::not_found(format!("Group {id} not found.")))?;
    let r = resource::group_resource(&t, &app.directory, sc.org.as_deref(), &base.0);
    let r = list::project(r, &l.attributes, &l.excluded, GROUP_ATTRS, schema::GROUP);
    Ok(resource_reply(StatusCode::OK, &r))
}

/// An id a created user may have: what the IdP sent, if it is printable and not too long.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control)
}

/// Makes the team's members exactly `wanted` (both sides of each membership, each change
/// audited); every wanted member must be an existing user the token may see.
fn set_members(
    tx: &mut Tx,
    fx: &mut Effects,
    dir: &Directory,
    org: Option<&str>,
    team: &mut TeamRecord,
    wanted: &[String],
    upsert: Option<&str>,
) -> Result<(), ScimError> {
    for id in wanted {
        match tx.get_user(id)? {
            Some(u) if resource::user_visible(dir, org, &u) => {}
            // `scim_upsert_user`: an unknown member becomes a user (with no keys, so no access).
            None if upsert.is_some() && valid_id(id) => {
                let by = upsert.unwrap_or_default();
                let mut user = crate::api::users::blank_user(id, by);
                user.scim = Some(crate::store::ScimUser {
                    user_name: id.clone(),
                    active: true,
                    attributes_json: "{}".into(),
                    version: 1,
                    provisioned_by: by.to_string(),
                    grants: Default::default(),
                });
                if tx.user_by_scim_name(id)?.is_some() || tx.user_by_email(id)?.is_some() {
                    return Err(ScimError::conflict(format!(
                        "Member {id} names no user, and another user is called {id}."
                    )));
                }
                if let Some(o) = org {
                    join_org(tx, fx, &mut user, o)?;
                }
                tx.put_user(&user)?;
                tx.audit(crate::api::users::change("created", None, Some(&user)));
                fx.users.push(user);
            }
            _ => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("Member {id} is not an existing User."),
                ));
            }
        }
    }
    let gone: Vec<String> = team
        .members
        .iter()
        .filter(|m| !wanted.contains(&m.user_id))
        .map(|m| m.user_id.clone())
        .collect();
    let added: Vec<String> = wanted
        .iter()
        .filter(|w| !team.members.iter().any(|m| &m.user_id == *w))
        .cloned()
        .collect();
    team.members.retain(|m| !gone.contains(&m.user_id));
    for id in &added {
        team.members.push(TeamMember {
            user_id: id.clone(),
            role: TeamRole::User,
            budget: Budget::default(),
        });
    }
    for id in gone.iter().chain(&added) {
        let Some(before) = tx.get_user(id)? else {
            continue;
        };
        let mut after = before.clone();
        after.teams.retain(|t| t != &team.team_id);
        if added.contains(id) {
            after.teams.push(team.team_id.clone());
            // A team member belongs to the team's organisation.
            if let Some(o) = &team.organization_id {
                join_org(tx, fx, &mut after, o)?;
            }
        }
        after.updated_at_ms = now_ms();
        // Its `groups` changed: a new version, so ETags tell.
        if let Some(s) = after.scim.as_mut() {
            s.version += 1;
        }
        tx.put_user(&after)?;
        let mut within = crate::audit::Within::default();
        within.add_team(Some(&team.team_id));
        tx.audit(crate::api::users::membership_change(
            Some(&before),
            Some(&after),
            within,
        ));
        fx.users.push(after);
    }
    Ok(())
}

pub async fn create(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    sc.require_writer()?;
    let v = json_body(&app, &headers, body).await?;
    let input = resource::group_input(&v)?;
    let who = sc.label();
    let dir = app.directory.clone();
    let org = sc.org.clone();
    let upsert = app.scim.upsert_user.then(|| who.clone());
    let roles = app.scim.group_roles.clone();
    let saved = commit(&app, &sc.caller, move |tx, fx| {
        let now = now_ms();
        let mut team = TeamRecord {
            team_id: uuid::Uuid::new_v4().to_string(),
            team_alias: Some(input.display_name.clone()),
            organization_id: org.clone(),
            models: Vec::new(),
            budget: Budget::default(),
            members: Vec::new(),
            blocked: false,
            metadata_json: "{}".into(),
            external_id: input.external_id.clone(),
            created_at_ms: now,
            updated_at_ms: now,
            created_by: who.clone(),
            updated_by: who.clone(),
            scim: Some(ScimGroup {
                display_name: input.display_name.clone(),
                version: 1,
                provisioned_by: who.clone(),
            }),
        };
        let wanted = input.members.clone().unwrap_or_default();
        if let Err(e) = set_members(
            tx,
            fx,
            &dir,
            org.as_deref(),
            &mut team,
            &wanted,
            upsert.as_deref(),
        ) {
            return Ok(Err(e));
        }
        tx.put_team(&team)?;
        tx.audit(crate::api::teams::change("created", None, Some(&team)));
        scim_roles::team_changed(tx, fx, &roles, &who, None, Some(&team))?;
        fx.teams.push(team.clone());
        Ok(Ok(team))
    })
    .await??;
    let r = resource::group_resource(&saved, &app.directory, sc.org.as_deref(), &base.0);
    Ok(resource_reply(StatusCode::CREATED, &r))
}

async fn write_group(
    app: AppState,
    sc: ScimCaller,
    base: Base,
    id: String,
    headers: HeaderMap,
    make: impl FnOnce(&Value) -> Result<GroupInput, ScimError> + Send + 'static,
) -> Result<Response, ScimError> {
    sc.require_writer()?;
    let who = sc.label();
    let dir = app.directory.clone();
    let (org, base_url) = (sc.org.clone(), base.0.clone());
    let upsert = app.scim.upsert_user.then(|| who.clone());
    let roles = app.scim.group_roles.clone();
    let saved = commit(&app, &sc.caller, move |tx, fx| {
        let Some(before) = tx
            .get_team(&id)?
            .filter(|t| resource::team_visible(&dir, org.as_deref(), t))
        else {
            return Ok(Err(ScimError::not_found(format!("Group {id} not found."))));
        };
        let current = resource::group_resource(&before, &dir, org.as_deref(), &base_url);
        if let Err(e) = check_if_match(&headers, current["meta"]["version"].as_str().unwrap_or(""))
        {
            return Ok(Err(e));
        }
        let input = match make(&current) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e)),
        };
        let mut after = before.clone();
        after.team_alias = Some(input.display_name.clone());
        after.external_id = input.external_id.clone();
        let version = before.scim.as_ref().map_or(1, |s| s.version + 1);
        let provisioned_by = before
            .scim
            .as_ref()
            .map_or_else(|| who.clone(), |s| s.provisioned_by.clone());
        after.scim = Some(ScimGroup {
            display_name: input.display_name.clone(),
            version,
            provisioned_by,
        });
        // Members the token cannot see are not the token's to remove.
        if let Some(wanted) = &input.members {
            let mut wanted = wanted.clone();
            for m in &before.members {
                let hidden = !dir
                    .user(&m.user_id)
                    .is_some_and(|u| resource::user_visible(&dir, org.as_deref(), &u.record));
                if hidden && !wanted.contains(&m.user_id) {
                    wanted.push(m.user_id.clone());
                }
            }
            if let Err(e) = set_members(
                tx,
                fx,
                &dir,
                org.as_deref(),
                &mut after,
                &wanted,
                upsert.as_deref(),
            ) {
                return Ok(Err(e));
            }
        }
        after.updated_at_ms = now_ms();
        after.updated_by = who.clone();
        tx.put_team(&after)?;
        tx.audit(crate::api::teams::change(
            "updated",
            Some(&before),
            Some(&after),
        ));
        // Members who joined or left, or all of them if a rename changed what the group grants.
        scim_roles::team_changed(tx, fx, &roles, &who, Some(&before), Some(&after))?;
        fx.teams.push(after.clone());
        Ok(Ok(after))
    })
    .await??;
    let r = resource::group_resource(&saved, &app.directory, sc.org.as_deref(), &base.0);
    Ok(resource_reply(StatusCode::OK, &r))
}

pub async fn replace(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let v = json_body(&app, &headers, body).await?;
    write_group(app, sc, base, id, headers, move |_| {
        let mut input = resource::group_input(&v)?;
        // PUT replaces: no `members` means none.
        input.members.get_or_insert_with(Vec::new);
        Ok(input)
    })
    .await
}

pub async fn patch(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ScimError> {
    let ops = json_body(&app, &headers, body).await?;
    write_group(app, sc, base, id, headers, move |current| {
        let mut r = current.clone();
        super::patch::apply(&mut r, &ops, &schema::GroupAttributes)
            .map_err(|e| ScimError::bad(e.scim_type, e.message))?;
        let mut input = resource::group_input(&r)?;
        input.members.get_or_insert_with(Vec::new);
        Ok(input)
    })
    .await
}

pub async fn delete(
    State(app): State<AppState>,
    sc: ScimCaller,
    base: Base,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    sc.require_writer()?;
    let dir = app.directory.clone();
    let (org, base_url) = (sc.org.clone(), base.0.clone());
    let (roles, who) = (app.scim.group_roles.clone(), sc.label());
    commit(&app, &sc.caller, move |tx, fx| {
        let Some(team) = tx
            .get_team(&id)?
            .filter(|t| resource::team_visible(&dir, org.as_deref(), t))
        else {
            return Ok(Err(ScimError::not_found(format!("Group {id} not found."))));
        };
        let current = resource::group_resource(&team, &dir, org.as_deref(), &base_url);
        if let Err(e) = check_if_match(&headers, current["meta"]["version"].as_str().unwrap_or(""))
        {
            return Ok(Err(e));
        }
        // Its members leave it, and the keys bound to the team go with it (a team key's
        // budget and models are the team's; it cannot outlive it).
        let mut emptied = team.clone();
        if let Err(e) = set_members(tx, fx, &dir, org.as_deref(), &mut emptied, &[], None) {
            return Ok(Err(e));
        }
        for k in tx.all_keys()? {
            if k.team_id.as_deref() == Some(team.team_id.as_str()) {
                tx.delete_key(&k.token)?;
                tx.audit(crate::api::keys::change(
                    "deleted",
                    Some(&k),
                    None,
                    &k.token,
                ));
                fx.removed_keys.push(k);
            }
        }
        tx.delete_team(&team.team_id)?;
        tx.audit(crate::api::teams::change("deleted", Some(&team), None));
        // Its members lose what it granted them.
        scim_roles::team_changed(tx, fx, &roles, &who, Some(&team), None)?;
        fx.removed_teams.push(team.team_id.clone());
        Ok(Ok(()))
    })
    .await??;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}
