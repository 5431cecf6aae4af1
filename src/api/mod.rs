//! The management API (LiteLLM-compatible routes and shapes): virtual keys today; users, teams
//! and organisations as they land. Every change goes through the store's audited write path and
//! then updates the in-memory caches, under one lock so concurrent edits cannot reorder them.

mod audit;
mod caller;
mod customers;
mod error;
mod explain;
mod fields;
pub(crate) mod jwt;
mod key_fields;
mod key_policy;
pub(crate) mod keys;
pub(crate) mod orgs;
pub(crate) mod scim_managed;
pub(crate) mod scim_roles;
mod spend;
pub(crate) mod teams;
pub(crate) mod users;
pub(crate) mod write;

pub use caller::{Caller, PeerAddr};
pub use error::ApiError;

use crate::app::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    keys::routes()
        .merge(audit::routes())
        .merge(users::routes())
        .merge(teams::routes())
        .merge(orgs::routes())
        .merge(customers::routes())
        .merge(spend::routes())
        .merge(explain::routes())
        .layer(axum::middleware::from_fn(tag_request))
}

/// The id of one management request: recorded in the audit entries of the changes it makes
/// and returned as `x-request-id`, so a client can find its change in the log.
#[derive(Clone)]
pub struct RequestId(pub String);

async fn tag_request(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = crate::request::new_call_id();
    let header = http::HeaderValue::from_str(&id).ok();
    req.extensions_mut().insert(RequestId(id));
    let mut resp = next.run(req).await;
    if let Some(v) = header {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Management bodies describe one object (or a short list of ids): 1 MiB is generous, and
/// every change is kept in the audit log, before and after, so an unbounded body would be an
/// unbounded entry.
pub const MAX_MANAGEMENT_BODY: usize = 1024 * 1024;

/// A request body as a JSON object (an empty body is an empty object).
async fn body_of(
    app: &AppState,
    headers: &http::HeaderMap,
    body: axum::body::Body,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let limits = crate::request::BodyLimits {
        max_bytes: app.body_limits.max_bytes.min(MAX_MANAGEMENT_BODY),
        idle: app.body_limits.idle,
        budget: app.body_limits.budget.clone(),
    };
    crate::request::json_object(headers, body, &limits)
        .await
        .map(|(map, _permit)| map)
        .map_err(ApiError::Body)
}

/// The audit entry of a change to one object, from its JSON views before and after and where it
/// sits (which decides who may read the entry). Live counters (`spend`) are left out: an entry
/// records the object, not its meter.
fn audit_change(
    action: &str,
    table: &str,
    object_id: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    within: crate::audit::Within,
) -> crate::audit::Change {
    let text = |mut v: serde_json::Value| {
        if let Some(m) = v.as_object_mut() {
            m.remove("spend");
        }
        v.to_string()
    };
    crate::audit::Change {
        action: action.to_string(),
        table_name: table.to_string(),
        object_id,
        before_value: before.map(text).unwrap_or_default(),
        updated_values: after.map(text).unwrap_or_default(),
        within,
    }
}

/// The caller's spend view of a meter: current-period spend.
fn spend(meter: &crate::limits::Meter, limits: &crate::limits::Limits) -> f64 {
    meter.snapshot(limits, crate::types::now_ms()).spend
}

/// Query parameters whose rejection is a management error (400 in the `{error}` envelope)
/// rather than axum's plain-text answer.
pub struct Params<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Params(q))
            .map_err(|r| ApiError::invalid(r.body_text(), "query"))
    }
}
