//! `/customer/*` (and LiteLLM's older `/end_user/*` names): end users, the people an
//! application calls on behalf of (the `user` of an LLM request or `x-litellm-end-user-id`).
//! They belong to no organisation or team, so only proxy admins change them and only proxy
//! admins and their viewers see them; to anyone else none exist.

use super::fields::{
    boolean, budget_field, budget_view, check_budget, id_list, metadata, metadata_view, string,
};
use super::write::commit;
use super::{ApiError, Caller, Params, body_of, spend};
use crate::app::AppState;
use crate::audit::Change;
use crate::store::{Budget, CustomerRecord};
use crate::tenancy::CustomerEntry;
use crate::types::{ms_to_rfc3339, now_ms};
use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// LiteLLM's table name for end users, kept so audit filters written for it still match.
pub const TABLE: &str = "LiteLLM_EndUserTable";
const MAX_ID_BYTES: usize = 256;

pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for prefix in ["/customer", "/end_user"] {
        r = r
            .route(&format!("{prefix}/new"), post(new_customer))
            .route(&format!("{prefix}/update"), post(update_customer))
            .route(&format!("{prefix}/delete"), post(delete_customers))
            .route(&format!("{prefix}/info"), get(info_customer))
            .route(&format!("{prefix}/list"), get(list_customers))
            .route(&format!("{prefix}/block"), post(block))
            .route(&format!("{prefix}/unblock"), post(unblock));
    }
    r
}

/// An end user as the API shows it: flat budget fields, and LiteLLM's nested
/// `litellm_budget_table` for clients that read that.
pub fn view(c: &CustomerRecord, spend: f64) -> Value {
    let mut budget = Map::new();
    budget_view(&c.budget, &mut budget);
    let mut out = json!({
        "user_id": c.user_id,
        "alias": c.alias,
        "blocked": c.blocked,
        "spend": spend,
        "metadata": metadata_view(&c.metadata_json),
        "created_at": ms_to_rfc3339(c.created_at_ms),
        "updated_at": ms_to_rfc3339(c.updated_at_ms),
        "litellm_budget_table": Value::Object(budget.clone()),
    });
    if let Some(m) = out.as_object_mut() {
        m.extend(budget);
    }
    out
}

fn entry_view(e: &CustomerEntry) -> Value {
    view(&e.record, spend(&e.meter, &e.limits))
}

/// The view of a record just committed: its live spend if the directory has it.
fn fresh_view(app: &AppState, c: &CustomerRecord) -> Value {
    app.directory
        .customer(&c.user_id)
        .map_or_else(|| view(c, 0.0), |e| entry_view(&e))
}

pub fn change(
    action: &str,
    before: Option<&CustomerRecord>,
    after: Option<&CustomerRecord>,
) -> Change {
    let id = after
        .or(before)
        .map(|c| c.user_id.clone())
        .unwrap_or_default();
    let view = |c: &CustomerRecord| view(c, 0.0);
    // End users are proxy-level objects: only proxy admins read their entries.
    super::audit_change(
        action,
        TABLE,
        id,
        before.map(view),
        after.map(view),
        crate::audit::Within::default(),
    )
}

/// End users are outside every organisation, so changing them is a proxy admin's job; a
/// read-only key of a proxy admin changes nothing either.
fn require_customer_writer(caller: &Caller) -> Result<(), ApiError> {
    caller.require_writer()?;
    caller.require_admin()
}

fn id_arg(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("user_id") {
        Some(Value::String(s))
            if !s.trim().is_empty()
                && s.len() <= MAX_ID_BYTES
                && !s.chars().any(char::is_control) =>
        {
            Ok(s.clone())
        }
        _ => Err(ApiError::invalid(
            format!("`user_id` is required (a non-empty string of at most {MAX_ID_BYTES} bytes)."),
            "user_id",
        )),
    }
}

fn ids_arg(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let mut ids = id_list(body, "user_ids")?;
    if ids.is_empty() {
        return Err(ApiError::invalid(
            "Give `user_ids` (a list of end user ids).",
            "user_ids",
        ));
    }
    if ids.iter().any(|id| {
        id.trim().is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control)
    }) {
        return Err(ApiError::invalid(
            format!(
                "Each of `user_ids` must be a non-empty string of at most {MAX_ID_BYTES} bytes."
            ),
            "user_ids",
        ));
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Applies the writable fields present in `body`; unknown fields are ignored, as LiteLLM does.
fn apply(c: &mut CustomerRecord, body: &Map<String, Value>) -> Result<(), ApiError> {
    for (field, v) in body {
        let f = field.as_str();
        if budget_field(&mut c.budget, f, v)? {
            continue;
        }
        match f {
            "alias" => c.alias = string(v, f)?,
            "blocked" => c.blocked = boolean(v, f)?,
            "metadata" => c.metadata_json = metadata(v, f)?,
            _ => {}
        }
    }
    check_budget(&c.budget)
}

fn blank(user_id: String, now: i64) -> CustomerRecord {
    CustomerRecord {
        user_id,
        alias: None,
        blocked: false,
        budget: Budget::default(),
        metadata_json: "{}".into(),
        created_at_ms: now,
        updated_at_ms: now,
    }
}

async fn new_customer(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    require_customer_writer(&caller)?;
    let body = body_of(&app, &headers, body).await?;
    let mut record = blank(id_arg(&body)?, now_ms());
    apply(&mut record, &body)?;
    let saved = commit(&app, &caller, move |tx, fx| {
        if tx.get_customer(&record.user_id)?.is_some() {
            return Err(ApiError::Conflict(format!(
                "Customer {} already exists.",
                record.user_id
            )));
        }
        tx.put_customer(&record)?;
        tx.audit(change("created", None, Some(&record)));
        fx.customers.push(record.clone());
        Ok(record)
    })
    .await?;
    Ok(Json(fresh_view(&app, &saved)))
}

async fn update_customer(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    require_customer_writer(&caller)?;
    let body = body_of(&app, &headers, body).await?;
    let id = id_arg(&body)?;
    // Validate before taking the write lock: a bad field fails fast.
    apply(&mut blank(id.clone(), 0), &body)?;
    let saved = commit(&app, &caller, move |tx, fx| {
        let before = tx
            .get_customer(&id)?
            .ok_or_else(|| ApiError::NotFound(format!("Customer {id} not found.")))?;
        let mut after = before.clone();
        apply(&mut after, &body)?;
        after.updated_at_ms = now_ms();
        tx.put_customer(&after)?;
        tx.audit(change("updated", Some(&before), Some(&after)));
        fx.customers.push(after.clone());
        Ok(after)
    })
    .await?;
    Ok(Json(fresh_view(&app, &saved)))
}

async fn delete_customers(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    require_customer_writer(&caller)?;
    let body = body_of(&app, &headers, body).await?;
    let ids = ids_arg(&body)?;
    let deleted = commit(&app, &caller, move |tx, fx| {
        // All or nothing: one unknown id deletes none.
        for id in &ids {
            let before = tx
                .delete_customer(id)?
                .ok_or_else(|| ApiError::NotFound(format!("Customer {id} not found.")))?;
            tx.audit(change("deleted", Some(&before), None));
            fx.removed_customers.push(id.clone());
        }
        Ok(ids)
    })
    .await?;
    let message = format!("Deleted customers: {}", deleted.join(", "));
    Ok(Json(
        json!({"deleted_customers": deleted, "message": message}),
    ))
}

/// Sets `blocked` on each end user. Blocking an end user not seen yet creates it blocked (as
/// LiteLLM does), so an abusive id can be shut out before its first request; unblocking an
/// unknown one is a 404.
async fn set_blocked(
    app: AppState,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
    blocked: bool,
) -> Result<Vec<CustomerRecord>, ApiError> {
    require_customer_writer(&caller)?;
    let body = body_of(&app, &headers, body).await?;
    let ids = ids_arg(&body)?;
    commit(&app, &caller, move |tx, fx| {
        let now = now_ms();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let before = tx.get_customer(&id)?;
            if before.is_none() && !blocked {
                return Err(ApiError::NotFound(format!("Customer {id} not found.")));
            }
            let mut after = before.clone().unwrap_or_else(|| blank(id, now));
            if before.is_some() && after.blocked == blocked {
                out.push(after);
                continue;
            }
            after.blocked = blocked;
            after.updated_at_ms = now;
            tx.put_customer(&after)?;
            let action = if before.is_none() {
                "created"
            } else {
                "updated"
            };
            tx.audit(change(action, before.as_ref(), Some(&after)));
            fx.customers.push(after.clone());
            out.push(after);
        }
        Ok(out)
    })
    .await
}

async fn block(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let saved = set_blocked(app.clone(), caller, headers, body, true).await?;
    let views: Vec<Value> = saved.iter().map(|c| fresh_view(&app, c)).collect();
    Ok(Json(json!({"blocked_users": views})))
}

async fn unblock(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let saved = set_blocked(app.clone(), caller, headers, body, false).await?;
    let views: Vec<Value> = saved.iter().map(|c| fresh_view(&app, c)).collect();
    Ok(Json(json!({"unblocked_users": views})))
}

#[derive(Deserialize)]
struct InfoQuery {
    end_user_id: Option<String>,
    /// Accepted as well: the field is `user_id` everywhere else.
    user_id: Option<String>,
}

async fn info_customer(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<InfoQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = q
        .end_user_id
        .or(q.user_id)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid("`end_user_id` is required.", "end_user_id"))?;
    let not_found = || ApiError::NotFound(format!("Customer {id} not found."));
    if !caller.identity.sees_everything() {
        return Err(not_found());
    }
    let entry = app.directory.customer(&id).ok_or_else(not_found)?;
    Ok(Json(entry_view(&entry)))
}

async fn list_customers(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    if !caller.identity.sees_everything() {
        return Ok(Json(json!([])));
    }
    let mut all = app.directory.customers();
    all.sort_by(|a, b| {
        b.record
            .created_at_ms
            .cmp(&a.record.created_at_ms)
            .then_with(|| a.record.user_id.cmp(&b.record.user_id))
    });
    Ok(Json(Value::Array(
        all.iter().map(|c| entry_view(c)).collect(),
    )))
}
