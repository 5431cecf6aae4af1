//! `GET /audit/export`: every visible entry of a time range (and optionally a query), oldest
//! first, as JSON lines — streamed, so an export of millions of entries holds one batch in memory.

use super::{ApiError, Caller, Params, Visible, date_arg, view_for};
use crate::app::AppState;
use crate::audit_index::{Search, Sort};
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

/// Entries read per step (one index page, one read transaction).
const BATCH: usize = 1000;
/// Bytes of JSON lines sent at a time.
const CHUNK_BYTES: usize = 256 * 1024;

#[derive(Deserialize)]
pub(super) struct ExportQuery {
    start_date: Option<String>,
    end_date: Option<String>,
    q: Option<String>,
}

pub(super) async fn export(
    State(app): State<AppState>,
    caller: Caller,
    Params(p): Params<ExportQuery>,
) -> Result<Response, ApiError> {
    let start_ms = p
        .start_date
        .as_deref()
        .map(|d| date_arg(d, "start_date", false))
        .transpose()?;
    let end_ms = p
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
    if app.audit_index.is_none() {
        return Err(ApiError::Unavailable(
            "The audit search index is unavailable; GET /audit still lists entries.".into(),
        ));
    }
    // An export is for a SIEM: it must be complete, so it starts only once the index covers
    // the log (a rebuild in progress, or a failing indexer, is a 503 to retry — never a short
    // file).
    let Some(index) = super::fresh_index(&app, &caller).await? else {
        return Err(ApiError::Unavailable(
            "The audit search index is catching up with the log; retry the export shortly \
             (GET /audit/head shows the lag)."
                .into(),
        ));
    };
    let now = crate::types::now_ms();
    // Validate the query before the answer starts: a stream cannot turn into a 400 later.
    index
        .parse(p.q.as_deref().unwrap_or(""), now)
        .map_err(|e| ApiError::invalid(format!("Bad query: {e}"), "q"))?;
    let visible = Visible::of(&caller);
    let store = app.store.clone();
    let request_id = caller.origin.request_id.clone();
    let reader = super::reader_of(&app, &caller);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let q = p.q.unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        let run = || -> Result<(), String> {
            let mut cursor = None;
            let mut out = Vec::new();
            loop {
                let query = index.parse(&q, now).map_err(|e| e.to_string())?;
                let range = crate::store::AuditFilter {
                    start_ms,
                    end_ms,
                    ..Default::default()
                };
                let query: Box<dyn tantivy::query::Query> =
                    Box::new(tantivy::query::BooleanQuery::intersection(vec![
                        query,
                        index.filter(&range),
                    ]));
                let hits = index
                    .search(Search {
                        query,
                        visible_orgs: visible.orgs(),
                        sort: Sort::OldestFirst,
                        cursor,
                        offset: 0,
                        limit: BATCH,
                        count: false,
                    })
                    .map_err(|e| e.to_string())?;
                let entries = store
                    .audit_entries_by_seq(&hits.seqs)
                    .map_err(|e| e.to_string())?;
                for e in &entries {
                    serde_json::to_writer(&mut out, &view_for(&reader, e))
                        .map_err(|e| e.to_string())?;
                    out.push(b'\n');
                    // Sent in chunks of bounded size: entries can be large.
                    if out.len() >= CHUNK_BYTES
                        && tx
                            .blocking_send(Ok(Bytes::from(std::mem::take(&mut out))))
                            .is_err()
                    {
                        return Ok(()); // the client went away
                    }
                }
                if hits.seqs.len() < BATCH {
                    if !out.is_empty() {
                        let _ = tx.blocking_send(Ok(Bytes::from(out)));
                    }
                    return Ok(());
                }
                cursor = hits.seqs.last().copied();
            }
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
            .unwrap_or_else(|_| Err("the export panicked".into()));
        if let Err(detail) = outcome {
            tracing::error!(request_id, detail, "audit export failed");
            // Ending the body with an error aborts the response, so a truncated export is
            // never mistaken for a complete one.
            let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = Body::from_stream(stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(
        http::header::CONTENT_DISPOSITION,
        http::HeaderValue::from_static("attachment; filename=\"audit.jsonl\""),
    );
    Ok(resp)
}
