//! `AppState`: the one bundle of shared services every HTTP surface receives. Cheap to clone
//! (one `Arc`), built once by the server, no global statics anywhere.

use crate::auth::Authenticator;
use crate::router::Router;
use crate::store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting = 0,
    Ready = 1,
    Draining = 2,
}

pub struct Inner {
    pub auth: Authenticator,
    /// Users, teams, organisations and end users in memory, with their meters.
    pub directory: Arc<crate::tenancy::Directory>,
    /// Spend log rows on their way to the batched writer.
    pub spend: crate::limits::SpendQueue,
    pub store: Store,
    /// Swapped whole when SIGHUP reloads `model_list` / `router_settings`.
    router: arc_swap::ArcSwap<Router>,
    /// Upstream pool for requests that arrive without their worker's own.
    pub upstream: crate::providers::HttpClient,
    pub body_limits: crate::request::BodyLimits,
    /// Prometheus series and their lock-free recording handles (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Held across an administrative write and the cache update that follows it, so two
    /// concurrent edits cannot land in the cache in the opposite order of their commits.
    pub admin_writes: std::sync::Mutex<()>,
    /// The audit search index (`None` when it could not be opened: `/audit` then scans the
    /// table, and `/audit/search` and `/audit/export` answer 503).
    pub audit_index: Option<Arc<crate::audit_index::AuditIndex>>,
    /// SCIM settings read at start-up.
    pub scim: crate::config::ScimSettings,
    /// OIDC browser login (`None` when not configured).
    pub oidc: Option<Arc<crate::auth::oidc::Oidc>>,
    /// Browser sessions by cookie digest (empty without OIDC login).
    pub sessions: Arc<crate::auth::session::Sessions>,
    /// Identity headers from a trusted proxy (`None` when not enabled).
    pub trusted_proxy: Option<Arc<crate::auth::proxy_headers::TrustedProxy>>,
    phase: AtomicU8,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    // One argument per shared service: built in one place, by the server.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        auth: Authenticator,
        directory: Arc<crate::tenancy::Directory>,
        spend: crate::limits::SpendQueue,
        store: Store,
        router: Router,
        upstream: crate::providers::HttpClient,
        body_limits: crate::request::BodyLimits,
        metrics: Arc<crate::metrics::Metrics>,
        audit_index: Option<Arc<crate::audit_index::AuditIndex>>,
        scim: crate::config::ScimSettings,
        oidc: Option<Arc<crate::auth::oidc::Oidc>>,
        sessions: Arc<crate::auth::session::Sessions>,
        trusted_proxy: Option<Arc<crate::auth::proxy_headers::TrustedProxy>>,
    ) -> Self {
        AppState(Arc::new(Inner {
            auth,
            directory,
            spend,
            store,
            router: arc_swap::ArcSwap::from_pointee(router),
            upstream,
            body_limits,
            metrics,
            admin_writes: std::sync::Mutex::new(()),
            audit_index,
            scim,
            oidc,
            sessions,
            trusted_proxy,
            phase: AtomicU8::new(Phase::Starting as u8),
        }))
    }

    /// The URL browsers reach this gateway at (`sso.base_url`), when configured: what a
    /// same-site request's `Origin` is.
    pub fn base_url(&self) -> &str {
        self.oidc
            .as_ref()
            .map(|o| o.settings.base_url.as_str())
            .unwrap_or("")
    }

    /// The routing table in force (requests keep the one they started with).
    pub fn router(&self) -> Arc<Router> {
        self.router.load_full()
    }

    /// Puts a new routing table in force for the requests that start from now on.
    pub fn replace_router(&self, router: Router) {
        self.router.store(Arc::new(router));
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }
}
