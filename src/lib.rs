//! Portcullis library.
pub mod config;
pub mod types;
pub mod audit;
pub mod store;
pub mod auth;
pub mod providers;
