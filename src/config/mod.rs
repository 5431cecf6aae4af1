//! Configuration: LiteLLM-style `config.yaml` → a validated, immutable [`Config`].
//!
//! Parsing happens in two steps: YAML → JSON value (with `os.environ/NAME` resolved from the
//! environment map passed in, never read from globals), then value → typed structs, reporting
//! type errors and unknown keys by their YAML path. Nothing here performs I/O besides what the
//! caller hands in.

mod jwt;
mod proxy;
mod raw;
mod sso;
mod validate;

use crate::types::Secret;
use std::collections::HashMap;
use std::time::Duration;

pub use jwt::{JWT_LEEWAY, JwtClaims, JwtRole, JwtSettings};
pub use proxy::{Cidr, ProxyHeaders, ProxySettings};
pub use sso::{GroupMapping, SsoSettings, UiAccessMode, url_problem as secure_url_problem};
pub use validate::default_config_yaml;

/// One problem in a config file, located by its YAML path (`model_list[0].litellm_params.rpm`).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI itself and every server speaking its API (vLLM, Ollama, Groq, Together...).
    OpenAi,
    Azure,
    Anthropic,
    /// The built-in deterministic provider: answers without credentials or network.
    Mock,
}

#[derive(Debug, Clone)]
pub struct Deployment {
    /// `model_info.id`, or a stable id derived from the entry.
    pub id: String,
    /// The public name clients ask for; may end in `*` (wildcard group).
    pub model_name: String,
    pub provider: ProviderKind,
    /// `litellm_params.model` with its provider prefix removed; may end in `*`.
    pub upstream_model: String,
    pub api_base: String,
    pub api_key: Option<Secret<String>>,
    pub api_version: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub timeout: Option<Duration>,
    pub stream_timeout: Option<Duration>,
    pub max_retries: Option<u32>,
    pub weight: f64,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub access_groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingStrategy {
    SimpleShuffle,
    LeastBusy,
    LatencyBased,
}

#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub strategy: RoutingStrategy,
    pub num_retries: u32,
    pub timeout: Duration,
    /// `model_name` → the groups to try, in order, once it is exhausted.
    pub fallbacks: HashMap<String, Vec<String>>,
    pub allowed_fails: u32,
    pub cooldown: Duration,
}

/// Who may read `GET /metrics` (`general_settings.metrics_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAuth {
    /// Anyone who can reach the port (LiteLLM's behaviour).
    None,
    /// Only the master key.
    MasterKey,
    /// The master key, or a key of a `proxy_admin` or `proxy_admin_viewer` user.
    Admin,
}

impl MetricsAuth {
    pub fn parse(text: &str) -> Option<MetricsAuth> {
        match text {
            "none" => Some(MetricsAuth::None),
            "master_key" => Some(MetricsAuth::MasterKey),
            "admin" => Some(MetricsAuth::Admin),
            _ => None,
        }
    }

    /// The policy when the config sets none (`auto`): open on a loopback address, where only
    /// this machine can scrape; admin-only anywhere else.
    pub fn default_for(loopback: bool) -> MetricsAuth {
        if loopback {
            MetricsAuth::None
        } else {
            MetricsAuth::Admin
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub deployments: Vec<Deployment>,
    pub router: RouterSettings,
    pub master_key: Option<Secret<String>>,
    pub max_request_bytes: usize,
    pub max_buffered_request_bytes: usize,
    pub tls: Option<TlsFiles>,
    pub shutdown_timeout: Duration,
    pub idle_timeout: Duration,
    pub role_permissions: Vec<RolePermission>,
    pub spend_flush_interval: Duration,
    /// How long audit entries are kept; `None` keeps them forever.
    pub audit_retention: Option<Duration>,
    /// SCIM: unknown Group members are created as users instead of refused.
    pub scim_upsert_user: bool,
    /// SCIM: the roles Groups give their members (`scim_admin_group`, `scim_group_roles`).
    pub scim_group_roles: GroupRoles,
    /// SCIM: administrators may change what SCIM owns of the users and teams it manages.
    pub scim_managed_objects_editable: bool,
    /// `None` (`auto`): decided by the listen address, see [`MetricsAuth::default_for`].
    pub metrics_auth: Option<MetricsAuth>,
    /// JWT auth on the API (`enable_jwt_auth`); `None` when off.
    pub jwt: Option<JwtSettings>,
    /// OIDC browser login (`general_settings.sso`, LiteLLM's SSO variables); `None` when off.
    pub sso: Option<SsoSettings>,
    /// Identity headers from a trusted proxy (`enable_oauth2_proxy_auth`); `None` when off.
    pub trusted_proxy: Option<ProxySettings>,
    /// Who may open the UI (`ui_access_mode`), whichever way they signed in.
    pub ui_access_mode: UiAccessMode,
}

/// SCIM behaviour chosen in `general_settings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimSettings {
    /// A Group member naming no existing user creates it (`scim_upsert_user`).
    pub upsert_user: bool,
    /// What role each named Group gives its members.
    pub group_roles: GroupRoles,
    /// Administrators may change the SCIM-owned attributes of SCIM-managed users and teams
    /// (`scim_managed_objects_editable`); when false the IdP is their only source of truth.
    pub managed_editable: bool,
}

impl Default for ScimSettings {
    /// The settings of a config that sets none.
    fn default() -> Self {
        ScimSettings {
            upsert_user: false,
            group_roles: GroupRoles::default(),
            managed_editable: true,
        }
    }
}

/// The role a SCIM Group gives its members (`scim_group_roles` values). What it becomes depends
/// on where the Group sits: outside any organisation `proxy_admin` and `proxy_admin_viewer` are
/// the global roles; inside one, `proxy_admin` and `org_admin` make its members org admins of
/// that organisation (never anything global), and `proxy_admin_viewer` gives nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    ProxyAdmin,
    ProxyAdminViewer,
    OrgAdmin,
}

impl GroupRole {
    pub fn parse(text: &str) -> Option<GroupRole> {
        match text {
            "proxy_admin" => Some(GroupRole::ProxyAdmin),
            "proxy_admin_viewer" => Some(GroupRole::ProxyAdminViewer),
            "org_admin" => Some(GroupRole::OrgAdmin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupRole::ProxyAdmin => "proxy_admin",
            GroupRole::ProxyAdminViewer => "proxy_admin_viewer",
            GroupRole::OrgAdmin => "org_admin",
        }
    }
}

/// Group displayName → role, compared case-insensitively (IdPs and people spell group names
/// inconsistently; SCIM compares `displayName` case-insensitively too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRoles(Vec<(String, GroupRole)>);

impl GroupRoles {
    /// From (name, role) pairs; names are kept lower-cased.
    pub fn new(pairs: impl IntoIterator<Item = (String, GroupRole)>) -> GroupRoles {
        GroupRoles(
            pairs
                .into_iter()
                .map(|(n, r)| (n.to_lowercase(), r))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The role a Group called `display_name` gives, if any.
    pub fn role_of(&self, display_name: &str) -> Option<GroupRole> {
        let name = display_name.trim().to_lowercase();
        self.0.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }
}

/// What one proxy-wide role may use: models (empty: no narrowing) and routes (empty: no
/// narrowing).
#[derive(Debug, Clone, PartialEq)]
pub struct RolePermission {
    pub role: crate::roles::GlobalRole,
    pub models: Vec<String>,
    pub routes: Vec<String>,
}

/// The result of loading: a config plus warnings, or every error found.
pub type Loaded = Result<(Config, Vec<Problem>), Vec<Problem>>;

impl Config {
    /// Parses and validates YAML text. `env` is the process environment (for `os.environ/NAME`).
    pub fn from_yaml(text: &str, env: &HashMap<String, String>) -> Loaded {
        validate::load(text, env)
    }
}
