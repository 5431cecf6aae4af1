//! SCIM Bulk (RFC 7644 §3.7) at `POST /scim/v2/Bulk`: the BulkRequest and its limits, the order
//! operations run in (`bulkId` references, forward ones included; circular and unknown ones
//! refused), and the BulkResponse. It implements no operation of its own: each one is sent
//! through the SCIM router as the single request it stands for — same credential, Host, route
//! gates, checks, organisation scope, audit actor and leaver effects as when an IdP sends it
//! alone — and that answer becomes its result. A bulk is not atomic (the RFC does not ask it to
//! be): every operation commits in its own transaction, so a failed one leaves those before it
//! in place, and `failOnErrors` only stops what comes after.
//!
//! `request` reads and checks the request, `refs` resolves and orders `bulkId` references,
//! `send` sends one operation.

mod refs;
mod request;
mod send;

use super::error::ScimError;
use super::schema::BULK_RESPONSE;
use super::{Base, ScimCaller, reply};
use crate::api::PeerAddr;
use crate::app::AppState;
use crate::request::BodyError;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use refs::{REF, schedule};
use request::{Parsed, operation, parse_request};
use send::{Sender, forwarded};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// Operations one bulk request may hold (advertised as `bulk.maxOperations`).
pub const MAX_OPERATIONS: usize = 1000;

/// The largest bulk body (advertised as `bulk.maxPayloadSize`): the management body cap, or the
/// server's own request cap when that is lower.
pub fn max_payload(app: &AppState) -> usize {
    app.body_limits
        .max_bytes
        .min(crate::api::MAX_MANAGEMENT_BODY)
}

/// An operation whose `bulkId` references cannot be resolved (RFC 7644 §3.7.2).
fn conflict(detail: String) -> ScimError {
    ScimError::new(StatusCode::CONFLICT, Some("invalidValue"), detail)
}

pub async fn bulk(State(app): State<AppState>, req: Request) -> Result<Response, ScimError> {
    let (mut parts, body) = req.into_parts();
    let sc = ScimCaller::from_request_parts(&mut parts, &app).await?;
    sc.require_writer()?;
    let Base(base) = Base::from_request_parts(&mut parts, &app).await?;
    // The body's share of the server's body budget is held until the bulk is done.
    let (request, _permit) = read_body(&app, &parts.headers, body).await?;
    let (ops, fail_on_errors) = parse_request(&request)?;
    let sender = Sender {
        router: super::routes().with_state(app.clone()),
        headers: forwarded(&parts.headers),
        peer: parts.extensions.get::<PeerAddr>().copied(),
        // One request id for every operation, so their audit entries read as one request.
        request_id: sc.caller.origin.request_id.clone(),
        base,
    };
    let results = run(&sender, ops.iter().map(operation).collect(), fail_on_errors).await;
    Ok(reply(
        StatusCode::OK,
        &json!({"schemas": [BULK_RESPONSE], "Operations": results}),
    ))
}

async fn read_body(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Map<String, Value>, crate::request::BodyPermit), ScimError> {
    let limits = crate::request::BodyLimits {
        max_bytes: max_payload(app),
        idle: app.body_limits.idle,
        budget: app.body_limits.budget.clone(),
    };
    crate::request::json_object(headers, body, &limits)
        .await
        .map_err(|e| match e {
            // RFC 7644 §3.7.4: 413, naming the limit.
            BodyError::TooLarge { limit } => ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                format!("The bulk request is over maxPayloadSize ({limit} bytes)."),
            ),
            BodyError::Timeout => ScimError::new(StatusCode::REQUEST_TIMEOUT, None, e.to_string()),
            BodyError::Busy => ScimError::new(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
            BodyError::NotObject => {
                ScimError::bad("invalidSyntax", "A BulkRequest is a JSON object.")
            }
            BodyError::Unreadable(_) | BodyError::NotJson(_) => {
                ScimError::bad("invalidSyntax", e.to_string())
            }
        })
}

/// Runs the operations; the BulkResponse's `Operations`.
async fn run(s: &Sender, mut ops: Vec<Parsed>, fail_on_errors: Option<usize>) -> Vec<Value> {
    // bulkId → the POST that creates it; a bulkId is unique within a request (RFC 7644 §3.7).
    let mut declared: HashMap<String, usize> = HashMap::new();
    for (i, p) in ops.iter_mut().enumerate() {
        let Ok(op) = &p.op else { continue };
        let Some(b) = p.bulk_id.clone().filter(|_| op.method == Method::POST) else {
            continue;
        };
        match declared.entry(b) {
            Entry::Occupied(e) => {
                p.op = Err(ScimError::bad(
                    "invalidValue",
                    format!(
                        "bulkId {} is already used by another POST of this request.",
                        e.key()
                    ),
                ));
            }
            Entry::Vacant(e) => {
                e.insert(i);
            }
        }
    }
    let deps: Vec<Vec<usize>> = ops
        .iter()
        .map(|p| match &p.op {
            Ok(op) => op
                .refs
                .iter()
                .filter_map(|r| declared.get(r).copied())
                .collect(),
            Err(_) => Vec::new(),
        })
        .collect();
    let (order, circular) = schedule(&deps);
    let mut created: HashMap<String, String> = HashMap::new();
    let (mut results, mut errors) = (Vec::new(), 0);
    for i in order {
        let p = &ops[i];
        let (status, entry) = match &p.op {
            Err(e) => (e.status, entry(p, e.status, None, None, Some(e.body()))),
            Ok(_) if circular[i] => {
                let e = conflict(format!(
                    "The bulkId references of this operation go round in a circle ({}).",
                    deps[i]
                        .iter()
                        .filter_map(|d| ops[*d].bulk_id.as_deref())
                        .map(|b| format!("{REF}{b}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                (e.status, entry(p, e.status, None, None, Some(e.body())))
            }
            Ok(op) => {
                let (status, entry, id) = s.perform(p, op, &created, &declared).await;
                if let (Some(id), Some(b)) = (id, &p.bulk_id) {
                    created.insert(b.clone(), id);
                }
                (status, entry)
            }
        };
        results.push(entry);
        if status.is_client_error() || status.is_server_error() {
            errors += 1;
            if fail_on_errors.is_some_and(|n| errors >= n) {
                break;
            }
        }
    }
    results
}

/// One result of the BulkResponse.
fn entry(
    p: &Parsed,
    status: StatusCode,
    location: Option<String>,
    version: Option<String>,
    response: Option<Value>,
) -> Value {
    let mut e = Map::new();
    if let Some(m) = &p.method {
        e.insert("method".into(), json!(m));
    }
    if let Some(b) = &p.bulk_id {
        e.insert("bulkId".into(), json!(b));
    }
    if let Some(v) = version {
        e.insert("version".into(), json!(v));
    }
    if let Some(l) = location {
        e.insert("location".into(), json!(l));
    }
    // A string, as RFC 7644 §3.7.3 shows it.
    e.insert("status".into(), json!(status.as_str()));
    if let Some(r) = response {
        e.insert("response".into(), r);
    }
    Value::Object(e)
}
