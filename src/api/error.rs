//! Management API failures and their one envelope, `{"error": {message, type, param, code}}`
//! (LiteLLM's shape, with the status as `code`). Internal failures say only "internal error"
//! plus a request id; the detail is logged once.

use crate::auth::AuthError;
use crate::request::BodyError;
use crate::store::StoreError;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Body(BodyError),
    #[error("{message}")]
    Invalid {
        message: String,
        param: Option<String>,
    },
    #[error("{0}")]
    Auth(AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error (request id {request_id})")]
    Internal { request_id: String, detail: String },
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: &str) -> Self {
        ApiError::Invalid {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Body(BodyError::Timeout) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Body(BodyError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Body(_) | ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Auth(e) if e.forbidden() => StatusCode::FORBIDDEN,
            ApiError::Auth(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::Body(_) | ApiError::Invalid { .. } => "bad_request_error",
            ApiError::Auth(e) if e.forbidden() => "permission_error",
            ApiError::Auth(_) => "auth_error",
            ApiError::Forbidden(_) => "permission_error",
            ApiError::NotFound(_) => "not_found_error",
            ApiError::Conflict(_) => "conflict_error",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Internal { .. } => "internal_error",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal {
            request_id: crate::request::new_call_id(),
            detail: format!("{} ({})", e, e.code()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal { request_id, detail } = &self {
            tracing::error!(request_id, detail, "management request failed");
        }
        let status = self.status();
        let param = match &self {
            ApiError::Invalid { param, .. } => param.clone(),
            _ => None,
        };
        let body = json!({"error": {
            "message": self.to_string(),
            "type": self.kind(),
            "param": param,
            "code": status.as_u16().to_string(),
        }});
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::Body(BodyError::TooLarge { .. } | BodyError::Timeout | BodyError::Busy) =
            &self
        {
            // The unread rest of the body makes this connection unusable for a next request.
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}
