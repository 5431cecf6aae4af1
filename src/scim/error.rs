//! SCIM errors (RFC 7644 §3.12): the Error schema, its `scimType`, and
//! `application/scim+json` — every failure under `/scim/v2` answers in this shape.

use crate::api::ApiError;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

pub const CONTENT_TYPE: &str = "application/scim+json";

#[derive(Debug)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        ScimError::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ScimError::new(StatusCode::NOT_FOUND, None, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        ScimError::new(StatusCode::CONFLICT, Some("uniqueness"), detail)
    }
}

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let scim_type = match &e {
            ApiError::Invalid { .. } | ApiError::Body(_) => Some("invalidValue"),
            ApiError::Conflict(_) => Some("uniqueness"),
            _ => None,
        };
        if let ApiError::Internal { request_id, detail } = &e {
            tracing::error!(request_id, detail, "SCIM request failed");
        }
        ScimError::new(status, scim_type, e.to_string())
    }
}

impl From<crate::store::StoreError> for ScimError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl ScimError {
    /// The Error resource: the body of a failed request, and of a failed bulk operation's
    /// `response`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "schemas": [super::schema::ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(m)) = (self.scim_type, body.as_object_mut()) {
            m.insert("scimType".into(), json!(t));
        }
        body
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        super::reply(self.status, &self.body())
    }
}
