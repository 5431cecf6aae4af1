//! `GET /audit` (LiteLLM's parameters and answer), `GET /audit/{id}`, `GET /audit/head` (the
//! hash-chain head, to anchor elsewhere and detect truncation), `GET /audit/search` (the query
//! language) and `GET /audit/export` (JSON lines for a SIEM). Read-only: no route changes an
//! entry. Proxy admins and their viewers read every entry; an organisation admin reads the
//! entries of its organisations' subtrees (the scope is a clause of the index query, not a
//! filter applied afterwards); other callers see none.

mod export;
mod search;

use super::fields::positive;
use super::spend::{date_arg, token_of};
use super::{ApiError, Caller, Params};
use crate::app::AppState;
use crate::audit::Entry;
use crate::audit_index::{AuditIndex, Search, Sort};
use crate::store::AuditFilter;
use crate::types::ms_to_rfc3339;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

const MAX_PAGE_SIZE: usize = 1000;
/// How long a read waits for the index to cover the log's head before answering from what it
/// has (search) or scanning the table (`/audit`).
const FRESHNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(list))
        .route("/audit/head", get(head))
        .route("/audit/search", get(search::search))
        .route("/audit/export", get(export::export))
        .route("/audit/{id}", get(one))
}

/// Which entries a caller may read.
#[derive(Debug, Clone)]
enum Visible {
    All,
    /// Entries whose scope names one of these organisations (their subtrees, since a scope
    /// holds every ancestor).
    Orgs(Vec<String>),
    Nothing,
}

impl Visible {
    fn of(caller: &Caller) -> Visible {
        if caller.identity.sees_everything() {
            return Visible::All;
        }
        let orgs: Vec<String> = caller
            .identity
            .admin_orgs()
            .into_iter()
            .map(String::from)
            .collect();
        if orgs.is_empty() {
            Visible::Nothing
        } else {
            Visible::Orgs(orgs)
        }
    }

    fn orgs(&self) -> Option<&[String]> {
        match self {
            Visible::All => None,
            Visible::Orgs(o) => Some(o),
            Visible::Nothing => Some(&[]),
        }
    }

    fn shows(&self, e: &Entry) -> bool {
        match self {
            Visible::All => true,
            Visible::Orgs(orgs) => e.scope.iter().any(|o| orgs.contains(o)),
            Visible::Nothing => false,
        }
    }
}

/// The index, once it covers the log's current head (`None`: unavailable or still behind).
async fn fresh_index(app: &AppState, caller: &Caller) -> Result<Option<Arc<AuditIndex>>, ApiError> {
    let Some(index) = app.audit_index.clone() else {
        return Ok(None);
    };
    let store = app.store.clone();
    let head = blocking(caller, move || store.audit_head().map(|(s, _)| s)).await?;
    let i = index.clone();
    let caught_up = tokio::task::spawn_blocking(move || i.wait_for(head, FRESHNESS_WAIT))
        .await
        .unwrap_or(false);
    Ok(caught_up.then_some(index))
}

fn json_text(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    }
}

/// An entry in LiteLLM's shape, plus what Portcullis records besides.
/// An entry as `reader` may see it. An organisation admin reads the entries about a user who
/// also belongs to other organisations; the user's memberships there are left out of the values,
/// as `/user/info` leaves them out.
fn view_for(reader: &Reader, e: &Entry) -> Value {
    let mut v = view(e);
    if let Some((caller, dir)) = reader
        && e.change.table_name == crate::api::users::TABLE
    {
        let id = &caller.identity;
        for side in ["before_value", "updated_values"] {
            let Some(m) = v.get_mut(side).and_then(Value::as_object_mut) else {
                continue;
            };
            if let Some(teams) = m.get_mut("teams").and_then(Value::as_array_mut) {
                teams.retain(|t| {
                    t.as_str().and_then(|t| dir.team(t)).is_some_and(|t| {
                        id.team_reach(dir, &t.record) >= crate::tenancy::scope::Reach::Read
                    })
                });
            }
            if let Some(orgs) = m
                .get_mut("organization_memberships")
                .and_then(Value::as_array_mut)
            {
                orgs.retain(|o| {
                    o["organization_id"]
                        .as_str()
                        .and_then(|o| dir.org(o))
                        .is_some_and(|o| {
                            id.org_reach(dir, &o) >= crate::tenancy::scope::Reach::Read
                        })
                });
            }
        }
    }
    v
}

/// Who reads, when the values must be trimmed to its reach (`None`: it sees everything).
type Reader = Option<(Caller, Arc<crate::tenancy::Directory>)>;

fn reader_of(app: &AppState, caller: &Caller) -> Reader {
    (!caller.identity.sees_everything()).then(|| (caller.clone(), app.directory.clone()))
}

fn view(e: &Entry) -> Value {
    let role = e.actor.role();
    json!({
        "id": e.seq.to_string(),
        "updated_at": ms_to_rfc3339(e.timestamp_ms),
        "changed_by": e.actor.changed_by(),
        "changed_by_api_key": e.actor.api_key(),
        "actor_role": role,
        "action": e.change.action,
        "table_name": e.change.table_name,
        "object_id": e.change.object_id,
        "before_value": json_text(&e.change.before_value),
        "updated_values": json_text(&e.change.updated_values),
        "request_id": e.origin.request_id,
        "source_ip": e.origin.source_ip,
        "user_agent": e.origin.user_agent,
        "scope": e.scope,
        "prev_hash": e.prev_hash,
    })
}

async fn blocking<T: Send + 'static>(
    caller: &Caller,
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal {
            request_id: caller.origin.request_id.clone(),
            detail: e.to_string(),
        })?
        .map_err(ApiError::from)
}

#[derive(Deserialize)]
struct ListQuery {
    page: Option<String>,
    page_size: Option<String>,
    changed_by: Option<String>,
    changed_by_api_key: Option<String>,
    action: Option<String>,
    table_name: Option<String>,
    object_id: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = positive(q.page.as_deref(), "page", 1)?;
    // An oversized page is capped, not refused (a UI asking for "everything" still works).
    let size = positive(q.page_size.as_deref(), "page_size", 10)?.min(MAX_PAGE_SIZE);
    if let Some(by) = q.sort_by.as_deref().filter(|b| *b != "updated_at") {
        return Err(ApiError::invalid(
            format!("`sort_by` can only be updated_at (got `{by}`)."),
            "sort_by",
        ));
    }
    let oldest_first = match q.sort_order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("`sort_order` must be asc or desc (got `{other}`)."),
                "sort_order",
            ));
        }
    };
    let start_ms = q
        .start_date
        .as_deref()
        .map(|d| date_arg(d, "start_date", false))
        .transpose()?;
    let end_ms = q
        .end_date
        .as_deref()
        .map(|d| date_arg(d, "end_date", true))
        .transpose()?;
    if let (Some(s), Some(e)) = (start_ms, end_ms)
        && s > e
    {
        return Err(ApiError::invalid(
            "`start_date` is after `end_date`.",
            "start_date",
        ));
    }
    let visible = Visible::of(&caller);
    if let Visible::Nothing = visible {
        return Ok(Json(json!({
            "audit_logs": [], "total": 0, "page": page, "page_size": size, "total_pages": 0,
        })));
    }
    let filter = AuditFilter {
        changed_by: q.changed_by,
        changed_by_api_key: q.changed_by_api_key.map(|k| token_of(&k)),
        action: q.action,
        table_name: q.table_name,
        object_id: q.object_id,
        start_ms,
        end_ms,
        visible_orgs: visible.orgs().map(<[String]>::to_vec),
    };
    let store = app.store.clone();
    let found = match fresh_index(&app, &caller).await? {
        Some(index) => {
            blocking(&caller, move || {
                let hits = index
                    .search(Search {
                        query: index.filter(&filter),
                        visible_orgs: filter.visible_orgs.as_deref(),
                        sort: if oldest_first {
                            Sort::OldestFirst
                        } else {
                            Sort::NewestFirst
                        },
                        cursor: None,
                        offset: (page - 1).saturating_mul(size),
                        limit: size,
                        count: true,
                    })
                    .map_err(|e| crate::store::StoreError::Db(e.to_string()))?;
                Ok(crate::store::AuditPage {
                    entries: store.audit_entries_by_seq(&hits.seqs)?,
                    total: hits.total.unwrap_or(0),
                })
            })
            .await?
        }
        // No index (or it is still catching up): the table itself, scanned.
        None => {
            blocking(&caller, move || {
                store.audit_page(&filter, page, size, oldest_first)
            })
            .await?
        }
    };
    let reader = reader_of(&app, &caller);
    Ok(Json(json!({
        "audit_logs": found.entries.iter().map(|e| view_for(&reader, e)).collect::<Vec<_>>(),
        "total": found.total,
        "page": page,
        "page_size": size,
        "total_pages": found.total.div_ceil(size),
    })))
}

async fn one(
    State(app): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id.map_err(|r| ApiError::invalid(r.body_text(), "id"))?;
    let not_found = || ApiError::NotFound(format!("Audit entry {id} not found."));
    let seq: u64 = id.parse().map_err(|_| not_found())?;
    let visible = Visible::of(&caller);
    if let Visible::Nothing = visible {
        return Err(not_found());
    }
    let store = app.store.clone();
    let entry = blocking(&caller, move || store.audit_entry(seq))
        .await?
        .filter(|e| visible.shows(e))
        .ok_or_else(not_found)?;
    Ok(Json(view_for(&reader_of(&app, &caller), &entry)))
}

async fn head(State(app): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    if !caller.identity.sees_everything() {
        return Err(ApiError::Forbidden(
            "The chain head is readable by proxy admins and viewers.".into(),
        ));
    }
    let store = app.store.clone();
    let ((seq, hash), checkpoint) = blocking(&caller, move || {
        Ok((store.audit_head()?, store.audit_checkpoint()?))
    })
    .await?;
    let index = app.audit_index.as_ref().map(|i| {
        let indexed = i.status().indexed();
        json!({
            "indexed_seq": indexed,
            "lag": seq.saturating_sub(indexed),
            "healthy": i.status().healthy(),
            "size_bytes": i.size_bytes(),
        })
    });
    Ok(Json(json!({
        "seq": seq,
        "hash": hash,
        "pruned_through_seq": checkpoint.as_ref().map(|c| c.through_seq),
        "pruned_through_hash": checkpoint.as_ref().map(|c| c.through_hash.clone()),
        "index": index,
    })))
}
