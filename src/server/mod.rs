//! The server: builds `AppState` from the config and data dir, composes every surface's routes,
//! accepts plain or TLS connections (HTTP/1.1 and HTTP/2), and drains gracefully on SIGTERM.

mod boot;
mod conn;
mod health;
mod listen;
mod notify;
mod reload;

use crate::api;
use crate::app::AppState;
use crate::auth::{Authenticator, KeyCache};
use crate::config::{MetricsAuth, TlsFiles};
use crate::router::Router;
use crate::store::Store;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use boot::load_config;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, String),
    #[error("{0}")]
    Config(String),
    /// The config file parsed but does not validate (exit status 64, as `check-config`).
    #[error("{0}")]
    InvalidConfig(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, String),
    #[error("{0}")]
    Io(String),
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Written (atomically) with the bound address once the server accepts connections.
    pub ready_file: Option<PathBuf>,
    /// The process environment, for `os.environ/` and the master key variables.
    pub env: HashMap<String, String>,
}

pub fn build_app(state: AppState) -> axum::Router {
    crate::gateway::routes()
        .merge(api::routes())
        .merge(crate::scim::routes())
        .merge(crate::sso::routes())
        .merge(health::routes())
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .with_state(state)
}

pub async fn run(opts: ServeOptions) -> Result<(), ServerError> {
    boot::ensure_data_dir(&opts.data_dir)?;
    let config_path = boot::config_path(opts.config.as_deref(), &opts.data_dir)?;
    let config = boot::load_config(&config_path, &opts.env)?;
    let master = boot::master_key(&config, &opts.env, &opts.data_dir)?;

    let store_path = opts.data_dir.join("portcullis.redb");
    // On the blocking pool, and a panic from a damaged file becomes an error, not a crash.
    let (store, stored) = {
        let p = store_path.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let store = Store::open(&p)?;
            let keys = store.all_keys()?;
            let tenancy = store.tenancy_snapshot()?;
            let counters = store.load_counters()?;
            let sessions = store.all_sessions()?;
            Ok::<_, crate::store::StoreError>((store, (keys, tenancy, counters, sessions)))
        })
        .await;
        match loaded {
            Ok(result) => result?,
            Err(_) => {
                return Err(ServerError::Store(crate::store::StoreError::Corrupt {
                    path: store_path.clone(),
                    detail: "reading it failed".into(),
                }));
            }
        }
    };
    let (stored_keys, tenancy, counters, stored_sessions) = stored;
    let mut router = Router::new(&config);
    let metrics = Arc::new(crate::metrics::Metrics::new(
        &crate::gateway::LLM_ROUTES,
        router.groups().iter().map(|g| g.name.as_str()),
        router.groups().iter().flat_map(|g| {
            g.members.iter().map(|m| crate::metrics::DeploymentName {
                model: &g.name,
                id: &m.deployment.id,
            })
        }),
        &store_path,
        config
            .metrics_auth
            .unwrap_or_else(|| MetricsAuth::default_for(opts.listen.ip().is_loopback())),
    ));
    router.set_metrics(metrics.clone());
    let ledger = Arc::new(crate::limits::Ledger::new());
    // Persisted spend first, so no budget restarts from zero after a restart.
    ledger.restore(counters);
    let directory = Arc::new(crate::tenancy::Directory::new(
        ledger,
        router.access_groups(),
        &config.role_permissions,
    ));
    directory.load(tenancy);
    let keys = KeyCache::default();
    let key_count = stored_keys.len();
    for record in stored_keys {
        keys.upsert(directory.key_entry(record));
    }
    let extra_roots = match opts.env.get("SSL_CERT_FILE") {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| ServerError::Config(format!("SSL_CERT_FILE {path}: {e}")))?,
        ),
        None => None,
    };
    let client =
        crate::providers::http_client(extra_roots.as_deref()).map_err(ServerError::Config)?;
    // JWT auth: one task fetches the identity providers' key sets for the server's whole life,
    // the first round at once; requests only read them.
    let jwt = config
        .jwt
        .clone()
        .map(|settings| Arc::new(crate::auth::JwtAuth::new(settings)));
    let jwt_refresher = jwt
        .as_ref()
        .map(|j| tokio::spawn(j.refresher(client.clone())));
    // OIDC browser login: one task discovers the provider and keeps its key set fresh.
    let serves_tls = opts.tls.is_some() || config.tls.is_some();
    let oidc = config
        .sso
        .clone()
        .map(|s| Arc::new(crate::auth::oidc::Oidc::new(s, serves_tls)));
    let oidc_task = oidc
        .as_ref()
        .map(|o| tokio::spawn(o.clone().run(client.clone())));
    let sessions = Arc::new(crate::auth::session::Sessions::default());
    let now = crate::types::now_ms();
    let mut ended_sessions = Vec::new();
    for (digest, record) in stored_sessions {
        if oidc.is_some() && record.expires_at_ms > now {
            sessions.insert(digest, record);
        } else {
            ended_sessions.push(digest);
        }
    }
    tracing::info!(
        config = %config_path.display(),
        data = %store_path.display(),
        models = router.groups().len(),
        keys = key_count,
        "state loaded"
    );
    let (spend_queue, spend_rx) = crate::limits::SpendQueue::new(crate::limits::QUEUE_CAPACITY);
    let (flush_stop, flush_stop_rx) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(crate::limits::run_flusher(
        store.clone(),
        directory.ledger().clone(),
        spend_rx,
        config.spend_flush_interval,
        flush_stop_rx,
    ));
    let audit_index = start_audit_index(&opts.data_dir, &store).await;
    let pruner = config
        .audit_retention
        .map(|keep| tokio::spawn(prune_audit_forever(store.clone(), keep)));
    let indexer = audit_index.clone();
    let state = AppState::new(
        match &jwt {
            Some(j) => Authenticator::new(Some(&master), keys).with_jwt(j.clone()),
            None => Authenticator::new(Some(&master), keys),
        },
        directory,
        spend_queue,
        store,
        router,
        client,
        crate::request::BodyLimits::new(
            config.max_request_bytes,
            config.idle_timeout,
            config.max_buffered_request_bytes,
        ),
        metrics,
        audit_index,
        crate::config::ScimSettings {
            upsert_user: config.scim_upsert_user,
            group_roles: config.scim_group_roles.clone(),
            managed_editable: config.scim_managed_objects_editable,
        },
        oidc,
        sessions,
        config.trusted_proxy.clone().map(|p| {
            Arc::new(crate::auth::proxy_headers::TrustedProxy::new(
                p,
                config.ui_access_mode.clone(),
            ))
        }),
    );
    // Sessions that ended while the server was down (or with SSO switched off) are deleted.
    if !ended_sessions.is_empty() {
        let done = crate::api::write::commit_as(
            &state,
            crate::audit::Actor::System,
            crate::audit::Origin::default(),
            move |tx, _| {
                for d in ended_sessions {
                    if let Some(rec) = tx.delete_session(&d)? {
                        tx.audit(crate::sso::session_change("expired", &rec));
                    }
                }
                Ok(())
            },
        )
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "ended sessions could not be deleted");
        }
    }
    // Roles SCIM granted follow the group-role settings now in force (a mapping removed from
    // the config takes its roles back) before the first request is served.
    let reconciling = state.clone();
    match tokio::task::spawn_blocking(move || crate::api::scim_roles::reconcile(&reconciling)).await
    {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(
            users = n,
            "SCIM group roles brought in step with the config"
        ),
        Ok(Err(e)) => tracing::error!(error = %e, "SCIM group roles could not be reconciled"),
        Err(e) => tracing::error!(error = %e, "SCIM group roles could not be reconciled"),
    }
    let tls = opts.tls.clone().or(config.tls.clone());
    let (shutdown_timeout, idle_timeout) = (config.shutdown_timeout, config.idle_timeout);
    let reloader = reload::Reloader::new(
        config_path.clone(),
        opts.env.clone(),
        config,
        state.metrics.clone(),
    );
    let served = listen::serve(
        state,
        &opts,
        tls,
        shutdown_timeout,
        idle_timeout,
        extra_roots,
        Box::new(move |app: &AppState| reloader.reload(app)),
    )
    .await;
    if let Some(r) = jwt_refresher {
        r.abort();
    }
    if let Some(t) = oidc_task {
        t.abort();
    }
    // After the drain: the last requests' spend is written before the process ends.
    let _ = flush_stop.send(true);
    let _ = flusher.await;
    // Every handle on the store goes before the process ends, so redb records a clean close.
    if let Some(p) = pruner {
        p.abort();
        let _ = p.await;
    }
    if let Some(index) = indexer {
        let _ = tokio::task::spawn_blocking(move || index.stop()).await;
    }
    served
}

/// Opens the audit search index (rebuilding it if needed, in the background). A failure is
/// logged and the server runs without it: the audit log itself is in the store.
async fn start_audit_index(
    data_dir: &std::path::Path,
    store: &Store,
) -> Option<Arc<crate::audit_index::AuditIndex>> {
    let dir = crate::audit_index::index_dir(data_dir);
    let store = store.clone();
    let opened =
        tokio::task::spawn_blocking(move || crate::audit_index::AuditIndex::start(&dir, store))
            .await;
    match opened {
        Ok(Ok(index)) => Some(index),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the audit search index is unavailable; /audit scans the log");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "the audit search index is unavailable; /audit scans the log");
            None
        }
    }
}

/// Applies `general_settings.audit_retention_days`: at start-up and then hourly, prunes the
/// entries older than the retention period, a bounded batch per transaction.
async fn prune_audit_forever(store: Store, keep: std::time::Duration) {
    const BATCH: usize = 10_000;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let cutoff = crate::types::now_ms() - keep.as_millis() as i64;
        let store = store.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let mut total = 0u64;
            while let Some(p) = store.prune_audit(cutoff, BATCH)? {
                total += p.entries;
            }
            Ok::<u64, crate::store::StoreError>(total)
        })
        .await;
        match ran {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(entries = n, "audit retention pruned old entries"),
            Ok(Err(e)) => tracing::error!(error = %e, "audit retention failed"),
            Err(e) => tracing::error!(error = %e, "audit retention failed"),
        }
    }
}
