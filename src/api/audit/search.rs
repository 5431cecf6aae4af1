//! `GET /audit/search?q=`: the query language (docs/audit.md) with cursor pagination.

use super::{ApiError, Caller, FRESHNESS_WAIT, MAX_PAGE_SIZE, Params, Visible, blocking};
use crate::app::AppState;
use crate::audit_index::{Search, Sort};
use crate::store::StoreError;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub(super) struct SearchQuery {
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    sort_order: Option<String>,
}

pub(super) fn sort_of(text: Option<&str>) -> Result<Sort, ApiError> {
    match text {
        None | Some("desc") => Ok(Sort::NewestFirst),
        Some("asc") => Ok(Sort::OldestFirst),
        Some(other) => Err(ApiError::invalid(
            format!("`sort_order` must be asc or desc (got `{other}`)."),
            "sort_order",
        )),
    }
}

pub(super) async fn search(
    State(app): State<AppState>,
    caller: Caller,
    Params(p): Params<SearchQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = super::positive(p.limit.as_deref(), "limit", 50)?.min(MAX_PAGE_SIZE);
    let sort = sort_of(p.sort_order.as_deref())?;
    let cursor = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                "`cursor` must be the `next_cursor` of a previous page.",
                "cursor",
            )
        })?),
    };
    let Some(index) = app.audit_index.clone() else {
        return Err(ApiError::Unavailable(
            "The audit search index is unavailable; GET /audit still lists entries.".into(),
        ));
    };
    let query = index
        .parse(p.q.as_deref().unwrap_or(""), crate::types::now_ms())
        .map_err(|e| ApiError::invalid(format!("Bad query: {e}"), "q"))?;
    let visible = Visible::of(&caller);
    let store = app.store.clone();
    let (head, hits, entries, more) = blocking(&caller, move || {
        let (head, _) = store.audit_head()?;
        // Read-your-writes: a change acknowledged before this search is in its results, unless
        // the indexer is far behind (then `index_lag` says by how much).
        index.wait_for(head, FRESHNESS_WAIT);
        let hits = index
            .search(Search {
                query,
                visible_orgs: visible.orgs(),
                sort,
                cursor,
                offset: 0,
                // One more than the page: whether there is a next page at all.
                limit: limit + 1,
                count: true,
            })
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let mut hits = hits;
        let more = hits.seqs.len() > limit;
        hits.seqs.truncate(limit);
        let entries = store.audit_entries_by_seq(&hits.seqs)?;
        Ok((head, hits, entries, more))
    })
    .await?;
    let indexed = app
        .audit_index
        .as_ref()
        .map(|i| i.status().indexed())
        .unwrap_or(0);
    let next_cursor = more.then(|| hits.seqs.last().map(u64::to_string)).flatten();
    // Log-wide positions tell how busy the whole proxy is: only for those who read all of it.
    let all = caller.identity.sees_everything();
    let reader = super::reader_of(&app, &caller);
    Ok(Json(json!({
        "entries": entries.iter().map(|e| super::view_for(&reader, e)).collect::<Vec<_>>(),
        "total": hits.total,
        "next_cursor": next_cursor,
        "indexed_through": all.then_some(indexed),
        "index_lag": head.saturating_sub(indexed),
    })))
}
