//! `/organization/*`: organisations in a tree, LiteLLM-compatible plus `/organization/tree`.
//!
//! An org admin governs its organisation's whole subtree: it manages the members of its own
//! organisation and everything below it, never the organisation itself (its budget and models
//! are set from above) nor anything outside. Moves keep the tree a tree: no cycles, no branch
//! deeper than [`MAX_ORG_DEPTH`]. Deletion never orphans: an organisation with anything in it
//! is refused unless `cascade` asks for the whole subtree to go.

use super::fields::{
    budget_field, cascade, check_budget, id_list, metadata, optional, required, string, strings,
};
use super::write::{Effects, commit};
use super::{ApiError, Caller, Params, body_of, spend};
use crate::app::AppState;
use crate::audit::Change;
use crate::store::{Budget, OrgRecord, Tx, UserRecord};
use crate::tenancy::scope::Reach;
use crate::tenancy::{Directory, MAX_ORG_DEPTH, OrgEntry};
use crate::types::now_ms;
use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

mod members;

/// LiteLLM's table name for organisations, kept so audit filters written for it still match.
pub const TABLE: &str = "LiteLLM_OrganizationTable";
const MAX_ID_BYTES: usize = 256;
const PARENT: &str = "parent_organization_id";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organization/new", post(new_org))
        .route("/organization/update", post(update_org))
        .route("/organization/delete", post(delete_org))
        .route("/organization/info", get(info_org))
        .route("/organization/list", get(list_orgs))
        .route("/organization/tree", get(tree_orgs))
        .route("/organization/member_add", post(members::member_add))
        .route("/organization/member_update", post(members::member_update))
        .route("/organization/member_delete", post(members::member_delete))
}

/// An organisation as the API shows it.
pub fn view(o: &OrgRecord, spend: f64) -> Value {
    let mut out = json!({
        "organization_id": o.organization_id,
        "organization_alias": o.organization_alias,
        "parent_organization_id": o.parent_id,
        "models": o.models,
        "spend": spend,
        "members": o.members.iter().map(|m| json!({
            "user_id": m.user_id,
            "user_role": m.role.as_str(),
        })).collect::<Vec<_>>(),
        "metadata": super::fields::metadata_view(&o.metadata_json),
        "created_at": crate::types::ms_to_rfc3339(o.created_at_ms),
        "updated_at": crate::types::ms_to_rfc3339(o.updated_at_ms),
        "created_by": o.created_by,
        "updated_by": o.updated_by,
    });
    if let Some(m) = out.as_object_mut() {
        super::fields::budget_view(&o.budget, m);
    }
    out
}

pub fn change(action: &str, before: Option<&OrgRecord>, after: Option<&OrgRecord>) -> Change {
    let id = after
        .or(before)
        .map(|o| o.organization_id.clone())
        .unwrap_or_default();
    let view = |o: &OrgRecord| view(o, 0.0);
    let mut within = crate::audit::Within::default();
    for r in before.into_iter().chain(after) {
        within.add_org(Some(&r.organization_id));
    }
    super::audit_change(action, TABLE, id, before.map(view), after.map(view), within)
}

fn entry_view(e: &OrgEntry) -> Value {
    view(&e.record, spend(&e.meter, &e.limits))
}

/// The organisation if the caller may see it; unknown and hidden answer alike.
fn visible(dir: &Directory, caller: &Caller, id: &str) -> Result<Arc<OrgEntry>, ApiError> {
    dir.org(id)
        .filter(|o| caller.identity.org_reach(dir, o) != Reach::Hidden)
        .ok_or_else(|| ApiError::NotFound(format!("Organization {id} not found.")))
}

fn id_arg(body: &Map<String, Value>) -> Result<String, ApiError> {
    super::fields::id_or_new(body, "organization_id")
}

/// Applies the writable fields present in `body` (the parent and memberships excluded).
fn apply(o: &mut OrgRecord, body: &Map<String, Value>) -> Result<(), ApiError> {
    for (field, v) in body {
        let f = field.as_str();
        if budget_field(&mut o.budget, f, v)? {
            continue;
        }
        match f {
            "organization_alias" => match v {
                Value::String(s) if !s.trim().is_empty() && s.len() <= MAX_ID_BYTES => {
                    o.organization_alias = s.clone();
                }
                _ => {
                    return Err(ApiError::invalid(
                        "`organization_alias` must be a non-empty string.",
                        f,
                    ));
                }
            },
            "models" => o.models = strings(v, f)?,
            "metadata" => o.metadata_json = metadata(v, f)?,
            _ => {}
        }
    }
    check_budget(&o.budget)
}

/// Refuses models wider than the chain above grants, for everyone but proxy admins. An
/// empty list narrows nothing and widens nothing (every level of the chain is enforced).
fn check_models(
    dir: &Directory,
    caller: &Caller,
    models: &[String],
    parent: Option<&str>,
) -> Result<(), ApiError> {
    if caller.identity.is_proxy_admin() || models.is_empty() {
        return Ok(());
    }
    let mine = dir.compile_models(models);
    for o in parent.map(|p| dir.org_chain(p)).unwrap_or_default() {
        if !mine.within(&o.models, false) {
            return Err(ApiError::Forbidden(format!(
                "`models` may not exceed the models of organization {}.",
                o.record.organization_id
            )));
        }
    }
    Ok(())
}

/// Each organisation's children, by id.
fn children_of(orgs: &[OrgRecord]) -> HashMap<&str, Vec<&str>> {
    let mut out: HashMap<&str, Vec<&str>> = HashMap::new();
    for o in orgs {
        if let Some(p) = &o.parent_id {
            out.entry(p.as_str()).or_default().push(&o.organization_id);
        }
    }
    out
}

/// `root` and everything below it, each level after the one above; safe on a damaged tree.
fn subtree(children: &HashMap<&str, Vec<&str>>, root: &str) -> Vec<Vec<String>> {
    let mut seen = HashSet::from([root.to_string()]);
    let mut levels = vec![vec![root.to_string()]];
    while levels.len() <= MAX_ORG_DEPTH {
        let next: Vec<String> = levels
            .last()
            .into_iter()
            .flatten()
            .flat_map(|id| children.get(id.as_str()).into_iter().flatten())
            .filter(|c| seen.insert(c.to_string()))
            .map(|c| c.to_string())
            .collect();
        if next.is_empty() {
            break;
        }
        levels.push(next);
    }
    levels
}

/// Refuses a placement under `parent` (whose chain has `parent_depth` levels) of a branch
/// `height` levels tall.
fn check_depth(parent_depth: usize, height: usize) -> Result<(), ApiError> {
    if parent_depth + height > MAX_ORG_DEPTH {
        return Err(ApiError::invalid(
            format!("Organizations may nest at most {MAX_ORG_DEPTH} levels deep."),
            PARENT,
        ));
    }
    Ok(())
}

/// The parent a caller may place an organisation under: visible (else 404) and governed by
/// the caller (else 403).
fn usable_parent(dir: &Directory, caller: &Caller, p: &str) -> Result<(), ApiError> {
    visible(dir, caller, p)?;
    if !caller.identity.is_proxy_admin() && !caller.identity.governs_org(dir, p) {
        return Err(ApiError::Forbidden(format!(
            "Not allowed to place organizations under organization {p}."
        )));
    }
    Ok(())
}

async fn new_org(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    caller.require_writer()?;
    let body = body_of(&app, &headers, body).await?;
    let now = now_ms();
    let mut org = OrgRecord {
        organization_id: id_arg(&body)?,
        organization_alias: required(&body, "organization_alias")?,
        parent_id: optional(&body, PARENT)?,
        models: Vec::new(),
        budget: Budget::default(),
        members: Vec::new(),
        metadata_json: "{}".into(),
        created_at_ms: now,
        updated_at_ms: now,
        created_by: caller.label(),
        updated_by: caller.label(),
    };
    apply(&mut org, &body)?;
    let who = caller.clone();
    let dir_app = app.clone();
    let saved = commit(&app, &caller, move |tx, fx| {
        let dir = &dir_app.directory;
        match org.parent_id.as_deref() {
            Some(p) => {
                usable_parent(dir, &who, p)?;
                check_depth(dir.org_chain(p).len(), 1)?;
            }
            None => {
                if !who.identity.is_proxy_admin() {
                    return Err(ApiError::Forbidden(
                        "Only a proxy admin may create a top-level organization.".into(),
                    ));
                }
            }
        }
        check_models(dir, &who, &org.models, org.parent_id.as_deref())?;
        if tx.get_org(&org.organization_id)?.is_some() {
            return Err(ApiError::Conflict(format!(
                "Organization {} already exists.",
                org.organization_id
            )));
        }
        tx.put_org(&org)?;
        tx.audit(change("created", None, Some(&org)));
        fx.orgs.push(org.clone());
        Ok(org)
    })
    .await?;
    Ok(Json(view(&saved, 0.0)))
}

async fn update_org(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let id = required(&body, "organization_id")?;
    // Absent keeps the parent; null asks for a root.
    let new_parent = match body.get(PARENT) {
        None => None,
        Some(v) => Some(string(v, PARENT)?.filter(|p| !p.is_empty())),
    };
    let who = caller.clone();
    let dir_app = app.clone();
    let saved = commit(&app, &caller, move |tx, fx| {
        let dir = &dir_app.directory;
        let entry = visible(dir, &who, &id)?;
        // Budgets, models and the parent are set from above; an org admin may rename and
        // annotate its own organisation.
        let cosmetic = body.keys().all(|k| {
            matches!(
                k.as_str(),
                "organization_id" | "organization_alias" | "metadata"
            )
        });
        who.need(
            who.identity.org_reach(dir, &entry),
            if cosmetic {
                Reach::Members
            } else {
                Reach::Manage
            },
            "Organization",
        )?;
        let before = tx
            .get_org(&id)?
            .ok_or_else(|| ApiError::NotFound(format!("Organization {id} not found.")))?;
        let mut after = before.clone();
        apply(&mut after, &body)?;
        if let Some(parent) = new_parent.filter(|p| *p != before.parent_id) {
            match parent.as_deref() {
                None => who.require_admin()?,
                Some(p) => {
                    usable_parent(dir, &who, p)?;
                    if p == id || dir.org_within(p, &id) {
                        return Err(ApiError::invalid(
                            format!(
                                "Moving organization {id} under {p} would create a cycle: \
                                 {p} is {id} or lies below it."
                            ),
                            PARENT,
                        ));
                    }
                    let all: Vec<OrgRecord> = dir.orgs().iter().map(|o| o.record.clone()).collect();
                    let height = subtree(&children_of(&all), &id).len();
                    check_depth(dir.org_chain(p).len(), height)?;
                }
            }
            after.parent_id = parent;
        }
        if body.contains_key("models") || after.parent_id != before.parent_id {
            check_models(dir, &who, &after.models, after.parent_id.as_deref())?;
        }
        after.updated_at_ms = now_ms();
        after.updated_by = who.label();
        tx.put_org(&after)?;
        tx.audit(change("updated", Some(&before), Some(&after)));
        fx.orgs.push(after.clone());
        Ok(after)
    })
    .await?;
    let e = app.directory.org(&saved.organization_id);
    Ok(Json(
        e.map_or_else(|| view(&saved, 0.0), |e| entry_view(&e)),
    ))
}

/// Changes one user's side of memberships, with its audit entry, if anything changed.
fn edit_user(
    tx: &mut Tx,
    fx: &mut Effects,
    user_id: &str,
    edit: impl FnOnce(&mut UserRecord),
) -> Result<(), ApiError> {
    if let Some(before) = tx.get_user(user_id)? {
        let mut after = before.clone();
        edit(&mut after);
        if after != before {
            tx.put_user(&after)?;
            tx.audit(super::users::change("updated", Some(&before), Some(&after)));
            fx.users.push(after);
        }
    }
    Ok(())
}

/// Deletes `root` and, when `cascade`, everything in its subtree: child organisations, their
/// teams, those teams' keys and the keys attached to the organisations, with every member's
/// side of its memberships. Returns the organisations deleted.
fn remove_subtree(
    tx: &mut Tx,
    fx: &mut Effects,
    root: &str,
    cascade: bool,
    scim: &crate::config::ScimSettings,
) -> Result<Vec<String>, ApiError> {
    let orgs = tx.all_orgs()?;
    let levels = subtree(&children_of(&orgs), root);
    let in_tree: HashSet<&str> = levels.iter().flatten().map(String::as_str).collect();
    let teams: Vec<_> = tx
        .all_teams()?
        .into_iter()
        .filter(|t| {
            t.organization_id
                .as_deref()
                .is_some_and(|o| in_tree.contains(o))
        })
        .collect();
    let team_ids: HashSet<&str> = teams.iter().map(|t| t.team_id.as_str()).collect();
    let keys: Vec<_> = tx
        .all_keys()?
        .into_iter()
        .filter(|k| {
            k.organization_id
                .as_deref()
                .is_some_and(|o| in_tree.contains(o))
                || k.team_id.as_deref().is_some_and(|t| team_ids.contains(t))
        })
        .collect();
    if !cascade && (in_tree.len() > 1 || !teams.is_empty() || !keys.is_empty()) {
        return Err(ApiError::Conflict(format!(
            "Organization {root} still holds {} organization(s), {} team(s) and {} key(s); \
             delete them first or pass \"cascade\": true.",
            in_tree.len() - 1,
            teams.len(),
            keys.len()
        )));
    }
    // A cascade does not delete what the IdP owns when it is the only source of truth.
    for t in &teams {
        super::scim_managed::check_team_delete(scim, t)?;
    }
    for k in &keys {
        tx.delete_key(&k.token)?;
        tx.audit(super::keys::change("deleted", Some(k), None, &k.token));
        fx.removed_keys.push(k.clone());
    }
    for t in &teams {
        for m in &t.members {
            edit_user(tx, fx, &m.user_id, |u| u.teams.retain(|x| *x != t.team_id))?;
        }
        tx.delete_team(&t.team_id)?;
        tx.audit(super::teams::change("deleted", Some(t), None));
        fx.removed_teams.push(t.team_id.clone());
    }
    let mut deleted = Vec::new();
    // Deepest first, so no moment of the audit trail shows a child without its parent.
    for id in levels.iter().rev().flatten() {
        let Some(org) = tx.get_org(id)? else { continue };
        for m in &org.members {
            edit_user(tx, fx, &m.user_id, |u| {
                u.organizations.retain(|x| x.organization_id != *id);
                u.take_over_org_role(id);
            })?;
        }
        tx.delete_org(id)?;
        tx.audit(change("deleted", Some(&org), None));
        fx.removed_orgs.push(id.clone());
        deleted.push(id.clone());
    }
    Ok(deleted)
}

async fn delete_org(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(&app, &headers, body).await?;
    let ids = id_list(&body, "organization_ids")?;
    if ids.is_empty() {
        return Err(ApiError::invalid(
            "Give `organization_ids` to delete.",
            "organization_ids",
        ));
    }
    let cascade = cascade(&body)?;
    let who = caller.clone();
    let dir_app = app.clone();
    let deleted = commit(&app, &caller, move |tx, fx| {
        let dir = &dir_app.directory;
        // Every id is checked against the tree as it stood, before anything is removed.
        for id in &ids {
            let org = visible(dir, &who, id)?;
            who.need(
                who.identity.org_reach(dir, &org),
                Reach::Manage,
                "Organization",
            )?;
        }
        let mut gone: HashSet<String> = HashSet::new();
        for id in &ids {
            // Already removed with an ancestor named earlier in this request.
            if !gone.contains(id) {
                gone.extend(remove_subtree(tx, fx, id, cascade, &dir_app.scim)?);
            }
        }
        Ok(ids)
    })
    .await?;
    Ok(Json(json!({"deleted_organizations": deleted})))
}

#[derive(Deserialize)]
struct InfoQuery {
    organization_id: Option<String>,
}

async fn info_org(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<InfoQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = q
        .organization_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("`organization_id` is required.", "organization_id"))?;
    let dir = &app.directory;
    let org = visible(dir, &caller, &id)?;
    let mut teams: Vec<_> = dir
        .teams()
        .into_iter()
        .filter(|t| t.record.organization_id.as_deref() == Some(id.as_str()))
        .filter(|t| caller.identity.team_reach(dir, &t.record) >= Reach::Read)
        .map(|t| (t.record.team_id.clone(), t.record.team_alias.clone()))
        .collect();
    teams.sort();
    let mut out = entry_view(&org);
    out["teams"] = teams
        .into_iter()
        .map(|(id, alias)| json!({"team_id": id, "team_alias": alias}))
        .collect();
    Ok(Json(out))
}

/// The organisations the caller can see, oldest first.
fn readable(dir: &Directory, caller: &Caller) -> Vec<Arc<OrgEntry>> {
    let mut orgs: Vec<_> = dir
        .orgs()
        .into_iter()
        .filter(|o| caller.identity.org_reach(dir, o) >= Reach::Read)
        .collect();
    orgs.sort_by(|a, b| {
        (a.record.created_at_ms, &a.record.organization_id)
            .cmp(&(b.record.created_at_ms, &b.record.organization_id))
    });
    orgs
}

async fn list_orgs(State(app): State<AppState>, caller: Caller) -> Json<Value> {
    let orgs = readable(&app.directory, &caller);
    Json(orgs.iter().map(|o| entry_view(o)).collect())
}

/// One node of the tree and the visible branches below it.
fn node(
    o: &OrgEntry,
    by_id: &HashMap<&str, &Arc<OrgEntry>>,
    children: &HashMap<&str, Vec<&str>>,
    depth: usize,
) -> Value {
    let id = o.record.organization_id.as_str();
    // The depth bound also ends the walk on a damaged (cyclic) tree.
    let kids: Vec<Value> = if depth >= MAX_ORG_DEPTH {
        Vec::new()
    } else {
        children
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|c| by_id.get(c))
            .map(|c| node(c, by_id, children, depth + 1))
            .collect()
    };
    json!({
        "organization_id": id,
        "organization_alias": o.record.organization_alias,
        // A parent outside the caller's view is not named.
        "parent_organization_id": o.record.parent_id.as_deref().filter(|p| by_id.contains_key(p)),
        "spend": spend(&o.meter, &o.limits),
        "max_budget": o.record.budget.max_budget,
        "children": kids,
    })
}

async fn tree_orgs(State(app): State<AppState>, caller: Caller) -> Json<Value> {
    let orgs = readable(&app.directory, &caller);
    let records: Vec<OrgRecord> = orgs.iter().map(|o| o.record.clone()).collect();
    let children = children_of(&records);
    let by_id: HashMap<&str, &Arc<OrgEntry>> = orgs
        .iter()
        .map(|o| (o.record.organization_id.as_str(), o))
        .collect();
    // An organisation whose parent the caller cannot see is a root of the caller's forest.
    let roots: Vec<Value> = orgs
        .iter()
        .filter(|o| {
            o.record
                .parent_id
                .as_deref()
                .is_none_or(|p| !by_id.contains_key(p))
        })
        .map(|o| node(o, &by_id, &children, 1))
        .collect();
    Json(Value::Array(roots))
}
