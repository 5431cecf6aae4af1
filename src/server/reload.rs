//! What SIGHUP re-reads besides the TLS certificate: the config file. The routing table
//! (`model_list`, `router_settings`, fallbacks) is swapped in place for new requests; anything
//! else that changed is named in the log as needing a restart, and a config that no longer
//! validates is refused whole, keeping what runs.

use crate::app::AppState;
use crate::config::Config;
use crate::router::Router;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

pub struct Reloader {
    path: PathBuf,
    env: HashMap<String, String>,
    /// The config whose routing is in force (the start-up one for the rest).
    running: Mutex<Config>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// A deployment list as text, secrets included (their `Debug` is masked, and a rotated
/// provider key is a change).
fn deployments_fingerprint(c: &Config) -> String {
    c.deployments
        .iter()
        .map(|d| format!("{d:?}{:?}", d.api_key.as_ref().map(|k| k.expose())))
        .collect()
}

/// The deployments as an audit entry shows them: what serves which model, never a secret.
fn deployments_view(c: &Config) -> serde_json::Value {
    let list: Vec<serde_json::Value> = c
        .deployments
        .iter()
        .map(|d| {
            serde_json::json!({
                "model_name": d.model_name,
                "id": d.id,
                "model": d.upstream_model,
                "api_base": d.api_base,
                "weight": d.weight,
                "rpm": d.rpm,
                "tpm": d.tpm,
            })
        })
        .collect();
    serde_json::json!({"model_list": list, "router_settings": format!("{:?}", c.router)})
}

/// Settings that are read once at start-up and so need a restart, by the YAML path they come
/// from, when they differ.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |changed: bool, path: &'static str| {
        if changed {
            out.push(path);
        }
    };
    check(
        old.master_key.as_ref().map(|k| k.expose()) != new.master_key.as_ref().map(|k| k.expose()),
        "general_settings.master_key",
    );
    check(
        old.max_request_bytes != new.max_request_bytes,
        "general_settings.max_request_size_mb",
    );
    check(
        old.max_buffered_request_bytes != new.max_buffered_request_bytes,
        "general_settings.max_buffered_request_mb",
    );
    check(
        format!("{:?}", old.tls) != format!("{:?}", new.tls),
        "general_settings.ssl_certfile_path / ssl_keyfile_path",
    );
    check(
        old.shutdown_timeout != new.shutdown_timeout,
        "general_settings.graceful_shutdown_timeout",
    );
    check(
        old.idle_timeout != new.idle_timeout,
        "general_settings.idle_timeout",
    );
    check(
        old.role_permissions != new.role_permissions,
        "general_settings.role_permissions",
    );
    check(
        old.spend_flush_interval != new.spend_flush_interval,
        "general_settings.spend_flush_interval",
    );
    check(
        old.metrics_auth != new.metrics_auth,
        "general_settings.metrics_auth",
    );
    check(
        old.audit_retention != new.audit_retention,
        "general_settings.audit_retention_days",
    );
    check(
        old.scim_upsert_user != new.scim_upsert_user,
        "general_settings.scim_upsert_user",
    );
    check(
        old.scim_group_roles != new.scim_group_roles,
        "general_settings.scim_admin_group / scim_group_roles",
    );
    check(
        old.scim_managed_objects_editable != new.scim_managed_objects_editable,
        "general_settings.scim_managed_objects_editable",
    );
    check(
        old.jwt != new.jwt,
        "general_settings.enable_jwt_auth / litellm_jwtauth / JWT_*",
    );
    check(
        old.sso != new.sso || old.ui_access_mode != new.ui_access_mode,
        "general_settings.sso / ui_access_mode / GENERIC_* / MICROSOFT_* / GOOGLE_* / PROXY_BASE_URL",
    );
    check(
        old.trusted_proxy != new.trusted_proxy,
        "general_settings.enable_oauth2_proxy_auth / oauth2_config_mappings / \
         trusted_proxy_ranges / trusted_proxy_mappings",
    );
    out
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        env: HashMap<String, String>,
        running: Config,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Reloader {
        Reloader {
            path,
            env,
            running: Mutex::new(running),
            metrics,
        }
    }

    /// A reload that changed the serving models is an administrative change: audited like one.
    fn record(&self, app: &AppState, before: serde_json::Value, after: serde_json::Value) {
        let origin = crate::audit::Origin {
            request_id: format!("sighup-{}", uuid::Uuid::now_v7()),
            ..Default::default()
        };
        let written = app
            .store
            .write(&crate::audit::Actor::System, &origin, |tx| {
                tx.audit(crate::audit::Change {
                    action: "updated".into(),
                    table_name: "config".into(),
                    object_id: self.path.display().to_string(),
                    before_value: before.to_string(),
                    updated_values: after.to_string(),
                    within: Default::default(),
                });
                Ok::<_, crate::store::StoreError>(())
            });
        if let Err(e) = written {
            tracing::error!(error = %e, "SIGHUP: the reload could not be written to the audit log");
        }
    }

    /// Re-reads the config file and applies what can change while serving.
    pub fn reload(&self, app: &AppState) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "SIGHUP: cannot read the config; keeping the running one");
                return;
            }
        };
        let new = match Config::from_yaml(&text, &self.env) {
            Ok((config, _warnings)) => config,
            Err(problems) => {
                for p in &problems {
                    tracing::error!(path = %p.path, problem = %p.message, "SIGHUP: config problem");
                }
                tracing::error!("SIGHUP: the config does not validate; keeping the running one");
                return;
            }
        };
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let routing_changed = deployments_fingerprint(&running) != deployments_fingerprint(&new)
            || format!("{:?}", running.router) != format!("{:?}", new.router);
        let mut restart = restart_needed(&running, &new);
        let mut reloaded = Vec::new();
        let before = deployments_view(&running);
        if routing_changed {
            let mut router = Router::rebuilt(&new, &app.router());
            // Keys' model rules were compiled with the access groups in force; changing the
            // groups would need every key recompiled, which a restart does.
            if router.access_groups() == app.router().access_groups() {
                router.set_metrics(self.metrics.clone());
                let models = router.groups().len();
                app.replace_router(router);
                running.deployments = new.deployments.clone();
                running.router = new.router.clone();
                reloaded.push(format!("model_list and router_settings ({models} models)"));
            } else {
                restart.push("model_info.access_groups");
            }
        }
        if reloaded.is_empty() && restart.is_empty() {
            tracing::info!("SIGHUP: the config is unchanged");
        }
        // Both lines are logged before the audit write (a durable commit), so a reader who saw
        // "reloaded" also sees what still needs a restart.
        if !reloaded.is_empty() {
            tracing::info!(reloaded = %reloaded.join(", "), "SIGHUP: config reloaded");
        }
        if !restart.is_empty() {
            tracing::warn!(needs_restart = %restart.join(", "), "SIGHUP: these changes take effect after a restart");
        }
        if !reloaded.is_empty() {
            self.record(app, before, deployments_view(&running));
        }
    }
}
