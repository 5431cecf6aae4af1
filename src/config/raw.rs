//! The YAML shape as written by users: LiteLLM's `config.yaml` keys, nothing validated yet.
//! Every field is optional here; `validate` decides what is required.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub model_list: Vec<RawModel>,
    #[serde(default)]
    pub router_settings: RawRouterSettings,
    #[serde(default)]
    pub general_settings: RawGeneralSettings,
    #[serde(default)]
    pub litellm_settings: RawLitellmSettings,
    /// LiteLLM exports these into the process environment; we only use them for `os.environ/`
    /// lookups, which read them from the untyped value before this struct exists.
    #[allow(dead_code)]
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawModel {
    pub model_name: Option<String>,
    #[serde(default)]
    pub litellm_params: RawLitellmParams,
    #[serde(default)]
    pub model_info: RawModelInfo,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLitellmParams {
    pub model: Option<String>,
    pub api_base: Option<String>,
    pub api_key: Option<String>,
    pub api_version: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub timeout: Option<f64>,
    pub stream_timeout: Option<f64>,
    pub max_retries: Option<u32>,
    pub weight: Option<f64>,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawModelInfo {
    pub id: Option<String>,
    #[serde(default)]
    pub access_groups: Vec<String>,
    /// Accepted for LiteLLM compatibility (`chat`, `embedding`); routing does not need it.
    #[allow(dead_code)]
    pub mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRouterSettings {
    pub routing_strategy: Option<String>,
    pub num_retries: Option<u32>,
    pub timeout: Option<f64>,
    #[serde(default)]
    pub fallbacks: Vec<BTreeMap<String, Vec<String>>>,
    pub allowed_fails: Option<u32>,
    pub cooldown_time: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawGeneralSettings {
    pub master_key: Option<String>,
    /// LiteLLM's name for the request size limit.
    pub max_request_size_mb: Option<f64>,
    pub ssl_certfile_path: Option<String>,
    pub ssl_keyfile_path: Option<String>,
    /// Seconds that in-flight requests and streams get to finish after SIGTERM.
    pub graceful_shutdown_timeout: Option<f64>,
    /// MiB of request bodies held in memory at once, across all requests.
    pub max_buffered_request_mb: Option<f64>,
    /// Seconds a connection may sit with no request in flight and no byte moving.
    pub idle_timeout: Option<f64>,
    /// `[{role, models, routes}]`: what each proxy-wide role may use.
    #[serde(default)]
    pub role_permissions: Vec<RawRolePermission>,
    /// Seconds between flushes of spend counters and spend logs to disk.
    pub spend_flush_interval: Option<f64>,
    /// Who may read `/metrics`: `auto`, `none`, `master_key` or `admin`.
    pub metrics_auth: Option<String>,
    /// Days audit entries are kept (unset: forever).
    pub audit_retention_days: Option<f64>,
    /// SCIM: a Group member naming no existing user creates that user (default: 400).
    pub scim_upsert_user: Option<bool>,
    /// SCIM: the members of the Group with this displayName become admins.
    pub scim_admin_group: Option<String>,
    /// SCIM: Group displayName → the role its members get.
    pub scim_group_roles: Option<BTreeMap<String, String>>,
    /// SCIM: whether administrators may change what SCIM owns of the objects it manages.
    pub scim_managed_objects_editable: Option<bool>,
    /// A bearer that is a JWT is verified against `JWT_PUBLIC_KEY_URL` (LiteLLM's name).
    pub enable_jwt_auth: Option<bool>,
    /// How a verified token's claims name its user, teams, organisation and role.
    pub litellm_jwtauth: Option<super::jwt::RawJwtAuth>,
    /// OIDC browser login.
    pub sso: Option<super::sso::RawSso>,
    /// Who may sign in to the UI: `all`, `admin_only` or `{type: group, group: <name>}`.
    pub ui_access_mode: Option<serde_json::Value>,
    /// LiteLLM's switch for identity headers from an authenticating proxy.
    pub enable_oauth2_proxy_auth: Option<bool>,
    /// LiteLLM's: which header holds the user id, email (and, ours, the groups).
    pub oauth2_config_mappings: Option<BTreeMap<String, String>>,
    /// The peers (CIDR ranges) whose identity headers count.
    pub trusted_proxy_ranges: Option<serde_json::Value>,
    /// What the proxy's groups give: default role, role and team mappings, email domains.
    pub trusted_proxy_mappings: Option<super::sso::RawGroupMapping>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRolePermission {
    pub role: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub routes: Vec<String>,
}

/// The part of LiteLLM's `litellm_settings` that concerns the proxy; `router_settings` wins
/// where both set the same thing.
#[derive(Debug, Default, Deserialize)]
pub struct RawLitellmSettings {
    pub num_retries: Option<u32>,
    pub request_timeout: Option<f64>,
    #[serde(default)]
    pub fallbacks: Vec<BTreeMap<String, Vec<String>>>,
    /// Accepted: translated requests only ever carry parameters the provider takes, and
    /// OpenAI-compatible upstreams receive the client's parameters as sent.
    #[allow(dead_code)]
    pub drop_params: Option<bool>,
}
