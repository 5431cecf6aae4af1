//! SCIM v2 provisioning (RFC 7643 / 7644) at `/scim/v2`: Users are Portcullis users, Groups are
//! teams. Entra ID, Okta, OneLogin and JumpCloud drive it; their quirks are accepted where
//! they bend the RFC (see docs/scim.md). Every change is an audited store write with the token
//! as actor, and a deactivated user's keys fail on the next request.

mod bulk;
mod caller;
mod discovery;
mod error;
pub mod filter;
mod groups;
mod list;
pub mod patch;
pub mod path;
mod resource;
pub mod schema;
mod users;

pub use caller::{ScimCaller, is_scim_token};
pub use error::ScimError;

use crate::app::AppState;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use http::request::Parts;
use serde_json::Value;

pub fn routes() -> Router<AppState> {
    // Full paths, not `nest`: the route gates (a key's `allowed_routes`) see the real path.
    const V2: &str = "/scim/v2";
    let p = |rest: &str| format!("{V2}{rest}");
    Router::new()
        .route(
            &p("/ServiceProviderConfig"),
            get(discovery::service_provider_config),
        )
        .route(&p("/ResourceTypes"), get(discovery::resource_types_list))
        .route(&p("/ResourceTypes/{id}"), get(discovery::resource_type))
        .route(&p("/Schemas"), get(discovery::schemas_list))
        .route(&p("/Schemas/{id}"), get(discovery::schema_one))
        .route(&p("/Users"), get(users::list).post(users::create))
        .route(&p("/Users/.search"), axum::routing::post(users::search))
        .route(
            &p("/Users/{id}"),
            get(users::get_one)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route(&p("/Groups"), get(groups::list).post(groups::create))
        .route(&p("/Groups/.search"), axum::routing::post(groups::search))
        .route(
            &p("/Groups/{id}"),
            get(groups::get_one)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .route(&p("/Bulk"), axum::routing::post(bulk::bulk))
        .route(&p("/.search"), axum::routing::post(root_search))
        .route(&p("/{*rest}"), axum::routing::any(not_found))
        // Applies to every route above, so a wrong method is a SCIM Error too, not a bare 405.
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed(method: http::Method) -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        format!("{method} is not supported on this SCIM endpoint."),
    )
}

/// Searching every resource type at once (RFC 7644 §3.4.3) is not offered: search `/Users` or
/// `/Groups`. 501 is the RFC's answer for an unsupported operation.
async fn root_search(_: ScimCaller) -> ScimError {
    ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "Search /Users/.search or /Groups/.search; a search over all resource types is not supported.",
    )
}

async fn not_found() -> ScimError {
    ScimError::not_found("No such SCIM endpoint.")
}

/// A SCIM answer: the body as `application/scim+json`.
pub fn reply(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, error::CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// The service provider's base URL (`meta.location`s are built on it): the request's own scheme
/// (`x-forwarded-proto`, as a TLS-terminating proxy sets it) and host. Only locations are built
/// from it; nothing is authorised by it.
#[derive(Clone)]
pub struct Base(pub String);

impl FromRequestParts<AppState> for Base {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ScimError> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let host = header("host").unwrap_or_else(|| "localhost".into());
        let scheme = header("x-forwarded-proto").unwrap_or_else(|| "http".into());
        Ok(Base(format!("{scheme}://{host}/scim/v2")))
    }
}

/// A SCIM request body: JSON, sent as `application/scim+json` or plain `application/json`.
pub async fn json_body(
    app: &AppState,
    headers: &http::HeaderMap,
    body: axum::body::Body,
) -> Result<Value, ScimError> {
    let limit = crate::api::MAX_MANAGEMENT_BODY;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("The request body is over {limit} bytes."),
        )
    })?;
    let _ = (app, headers);
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("The body is not valid JSON: {e}")))
}
