//! The management API (LiteLLM-compatible routes and shapes): virtual keys today; users, teams
//! and organisations as they land. Every change goes through the store's audited write path and
//! then updates the in-memory caches, under one lock so concurrent edits cannot reorder them.

mod caller;
mod error;
mod key_fields;
mod keys;

pub use caller::{Caller, PeerAddr};
pub use error::ApiError;

use crate::app::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    keys::routes()
}
