//! The authenticated caller of a management route, with the origin recorded in audit entries.

use super::ApiError;
use crate::app::AppState;
use crate::audit::Origin;
use crate::auth::Principal;
use axum::extract::FromRequestParts;
use http::request::Parts;
use std::net::SocketAddr;

/// The peer address of a connection, put on each request by the server.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

pub struct Caller {
    pub principal: Principal,
    pub origin: Origin,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.principal.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "Only a proxy admin (the master key) may do this.".into(),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let principal = app
            .auth
            .authenticate(&parts.headers)
            .map_err(ApiError::Auth)?;
        let origin = Origin {
            request_id: crate::request::new_call_id(),
            source_ip: parts
                .extensions
                .get::<PeerAddr>()
                .map(|p| p.0.ip().to_string())
                .unwrap_or_default(),
            user_agent: crate::request::user_agent(&parts.headers),
        };
        Ok(Caller { principal, origin })
    }
}
