//! YAML text → [`Config`]: environment indirection, typed parse with paths, semantic checks.

use super::raw::{RawConfig, RawModel};
use super::{
    Config, Deployment, GroupRole, GroupRoles, Loaded, MetricsAuth, Problem, ProviderKind,
    RolePermission, RouterSettings, RoutingStrategy, TlsFiles,
};
use crate::roles::GlobalRole;
use crate::types::Secret;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const DEFAULT_MAX_REQUEST_MB: f64 = 32.0;
const DEFAULT_MAX_BUFFERED_MB: f64 = 256.0;

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

pub(super) fn load(text: &str, env: &HashMap<String, String>) -> Loaded {
    let mut value: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            vec![problem(
                "",
                format!("invalid YAML: {}", first_line(&e.to_string())),
            )]
        })?
    };
    if value.is_null() {
        value = Value::Object(Default::default());
    }
    if !value.is_object() {
        return Err(vec![problem(
            "",
            "the config must be a mapping at the top level",
        )]);
    }

    // `environment_variables` feeds lookups too; the real environment wins over the file.
    let mut lookup: HashMap<String, String> = HashMap::new();
    if let Some(Value::Object(vars)) = value.get("environment_variables") {
        for (k, v) in vars {
            if let Some(s) = v.as_str() {
                lookup.insert(k.clone(), s.to_string());
            }
        }
    }
    lookup.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut errors = Vec::new();
    // Unset variables are reported together with the type errors below, in one run.
    resolve_env(&mut value, "", &lookup, &mut errors);

    // Each section (and each model entry) is typed on its own, so one run reports every
    // type error rather than only the first.
    let mut warnings = Vec::new();
    let mut sections = match value {
        Value::Object(m) => m,
        _ => Default::default(),
    };
    let models = sections.remove("model_list");
    let router = sections.remove("router_settings");
    let litellm = sections.remove("litellm_settings");
    let general = sections.remove("general_settings");
    let mut raw: RawConfig =
        typed(&Value::Object(sections), "", &mut warnings, &mut errors).unwrap_or_default();
    match models {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("model_list[{i}]");
                if let Some(m) = typed(item, &at, &mut warnings, &mut errors) {
                    raw.model_list.push(m);
                }
            }
        }
        Some(_) => errors.push(problem("model_list", "must be a list of model entries")),
    }
    if let Some(v) = router.filter(|v| !v.is_null()) {
        raw.router_settings =
            typed(&v, "router_settings", &mut warnings, &mut errors).unwrap_or_default();
    }
    if let Some(v) = litellm.filter(|v| !v.is_null()) {
        raw.litellm_settings =
            typed(&v, "litellm_settings", &mut warnings, &mut errors).unwrap_or_default();
    }
    if let Some(v) = general.filter(|v| !v.is_null()) {
        raw.general_settings =
            typed(&v, "general_settings", &mut warnings, &mut errors).unwrap_or_default();
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    validate(raw, warnings, &lookup)
}

const UNKNOWN_KEY: &str = "unknown key, ignored";

/// Deserializes one part of the config, naming unknown keys and type errors by their full path.
fn typed<T: serde::de::DeserializeOwned>(
    value: &Value,
    prefix: &str,
    warnings: &mut Vec<Problem>,
    errors: &mut Vec<Problem>,
) -> Option<T> {
    let join = |inner: String| match (prefix.is_empty(), inner.is_empty()) {
        (true, _) => inner,
        (false, true) => prefix.to_string(),
        (false, false) if inner.starts_with('[') => format!("{prefix}{inner}"),
        (false, false) => format!("{prefix}.{inner}"),
    };
    let mut on_ignored = |path: serde_ignored::Path<'_>| {
        warnings.push(problem(join(yaml_path(&path.to_string())), UNKNOWN_KEY));
    };
    let ignored = serde_ignored::Deserializer::new(value, &mut on_ignored);
    match serde_path_to_error::deserialize(ignored) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = join(yaml_path(&e.path().to_string()));
            errors.push(problem(path, redact_values(&e.into_inner().to_string())));
            None
        }
    }
}

/// The parser's first line (position and reason). The rest quotes the file's lines, which may
/// hold secrets, and problems end up in logs.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_string()
}

/// A type error without the value it quotes (`invalid type: string "sk-…"`): the value may be
/// a secret put under the wrong key, and problems end up in logs. The path says where to look.
fn redact_values(message: &str) -> String {
    // Only the value given is redacted; what was expected (variant lists) stays helpful.
    if !(message.starts_with("invalid type") || message.starts_with("invalid value")) {
        return message.to_string();
    }
    let (given, expected) = message.split_once(", expected").unwrap_or((message, ""));
    let tail = if expected.is_empty() {
        String::new()
    } else {
        format!(", expected{expected}")
    };
    let message = given;
    let mut out = String::with_capacity(message.len() + tail.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    quote = Some(c);
                }
            }
        }
    }
    out + &tail
}

/// serde_path_to_error writes `model_list[0].x`; serde_ignored writes `model_list.0.x`.
fn yaml_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for part in path.split('.') {
        if part == "?" {
            // serde_ignored's step into an `Option`: not a key of the file.
            continue;
        }
        if !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()) {
            out.push('[');
            out.push_str(part);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

fn resolve_env(
    value: &mut Value,
    path: &str,
    env: &HashMap<String, String>,
    errors: &mut Vec<Problem>,
) {
    let mut unset = false;
    match value {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("os.environ/") {
                match env.get(name) {
                    Some(v) => *s = v.clone(),
                    None => {
                        errors.push(problem(
                            path,
                            format!("environment variable {name} is not set"),
                        ));
                        unset = true;
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve_env(item, &format!("{path}[{i}]"), env, errors);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                resolve_env(v, &child, env, errors);
            }
        }
        _ => {}
    }
    // The type checks still run on the rest; the unset value reads as absent, not as the
    // `os.environ/` text (which would add a second, misleading problem at the same path).
    if unset {
        *value = Value::Null;
    }
}

fn seconds(v: Option<f64>, path: &str, errors: &mut Vec<Problem>) -> Option<Duration> {
    let v = v?;
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Some(Duration::from_secs_f64(v))
    } else {
        errors.push(problem(path, "must be a positive number of seconds"));
        None
    }
}

fn cost(v: Option<f64>, path: &str, errors: &mut Vec<Problem>) -> Option<f64> {
    let v = v?;
    if v.is_finite() && v >= 0.0 {
        Some(v)
    } else {
        errors.push(problem(path, "must be a finite number >= 0"));
        None
    }
}

/// Splits `provider/model` and returns the provider and its default API base.
fn provider_of(model: &str) -> Result<(ProviderKind, &str, Option<&'static str>), String> {
    let (prefix, rest) = match model.split_once('/') {
        Some((p, r)) => (p, r),
        // LiteLLM infers the provider from well-known bare names.
        None if model.starts_with("claude") => ("anthropic", model),
        None => ("openai", model),
    };
    if rest.is_empty() {
        return Err("the model name after the provider prefix is empty".into());
    }
    let found = match prefix {
        "openai" | "text-completion-openai" => {
            (ProviderKind::OpenAi, Some("https://api.openai.com/v1"))
        }
        "hosted_vllm" | "openai_like" | "custom_openai" | "lm_studio" | "llamafile" => {
            (ProviderKind::OpenAi, None)
        }
        "ollama_chat" | "ollama" => (ProviderKind::OpenAi, Some("http://localhost:11434/v1")),
        "groq" => (ProviderKind::OpenAi, Some("https://api.groq.com/openai/v1")),
        "together_ai" => (ProviderKind::OpenAi, Some("https://api.together.xyz/v1")),
        "deepseek" => (ProviderKind::OpenAi, Some("https://api.deepseek.com/v1")),
        "fireworks_ai" => (
            ProviderKind::OpenAi,
            Some("https://api.fireworks.ai/inference/v1"),
        ),
        "mistral" => (ProviderKind::OpenAi, Some("https://api.mistral.ai/v1")),
        "openrouter" => (ProviderKind::OpenAi, Some("https://openrouter.ai/api/v1")),
        "xai" => (ProviderKind::OpenAi, Some("https://api.x.ai/v1")),
        "perplexity" => (ProviderKind::OpenAi, Some("https://api.perplexity.ai")),
        "azure" => (ProviderKind::Azure, None),
        "anthropic" => (ProviderKind::Anthropic, Some("https://api.anthropic.com")),
        "mock" => (ProviderKind::Mock, Some("mock://builtin")),
        other => return Err(format!("unsupported provider `{other}`")),
    };
    Ok((found.0, rest, found.1))
}

fn deployment(i: usize, m: RawModel, errors: &mut Vec<Problem>) -> Option<Deployment> {
    let at = |f: &str| format!("model_list[{i}].{f}");
    let model_name = match m.model_name.filter(|s| !s.trim().is_empty()) {
        Some(n) => n,
        None => {
            errors.push(problem(at("model_name"), "required"));
            return None;
        }
    };
    let p = m.litellm_params;
    let Some(model) = p.model.filter(|s| !s.trim().is_empty()) else {
        errors.push(problem(at("litellm_params.model"), "required"));
        return None;
    };
    let (provider, upstream_model, default_base) = match provider_of(&model) {
        Ok(x) => x,
        Err(e) => {
            errors.push(problem(at("litellm_params.model"), e));
            return None;
        }
    };
    let api_base = match p.api_base.or(default_base.map(str::to_string)) {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => {
            errors.push(problem(
                at("litellm_params.api_base"),
                "required for this provider",
            ));
            return None;
        }
    };
    if provider != ProviderKind::Mock
        && !(api_base.starts_with("http://") || api_base.starts_with("https://"))
    {
        errors.push(problem(
            at("litellm_params.api_base"),
            "must be an http:// or https:// URL",
        ));
    }
    if model_name.contains('*') != upstream_model.contains('*') {
        errors.push(problem(
            at("model_name"),
            "a wildcard `*` must appear in both model_name and litellm_params.model",
        ));
    }
    let weight = p.weight.unwrap_or(1.0);
    // Bounded so that a group's weights always sum to a finite number.
    if !(weight.is_finite() && weight > 0.0 && weight <= 1e6) {
        errors.push(problem(
            at("litellm_params.weight"),
            "must be a number above 0 and at most 1000000",
        ));
    }
    let api_version = match provider {
        ProviderKind::Azure => Some(p.api_version.unwrap_or_else(|| "2024-10-21".to_string())),
        _ => p.api_version,
    };
    let id = m.model_info.id.unwrap_or_else(|| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{i}\n{model_name}\n{model}\n{api_base}"));
        hex::encode(&digest[..8])
    });
    Some(Deployment {
        id,
        model_name,
        provider,
        upstream_model: upstream_model.to_string(),
        api_base,
        api_key: p.api_key.map(Secret::new),
        api_version,
        rpm: p.rpm,
        tpm: p.tpm,
        timeout: seconds(p.timeout, &at("litellm_params.timeout"), errors),
        stream_timeout: seconds(
            p.stream_timeout,
            &at("litellm_params.stream_timeout"),
            errors,
        ),
        max_retries: p.max_retries,
        weight,
        input_cost_per_token: cost(
            p.input_cost_per_token,
            &at("litellm_params.input_cost_per_token"),
            errors,
        ),
        output_cost_per_token: cost(
            p.output_cost_per_token,
            &at("litellm_params.output_cost_per_token"),
            errors,
        ),
        access_groups: m.model_info.access_groups,
    })
}

fn validate(raw: RawConfig, mut warnings: Vec<Problem>, env: &HashMap<String, String>) -> Loaded {
    let mut errors = Vec::new();
    let mut deployments = Vec::new();
    for (i, m) in raw.model_list.into_iter().enumerate() {
        if let Some(d) = deployment(i, m, &mut errors) {
            deployments.push(d);
        }
    }
    let mut ids = HashSet::new();
    for (i, d) in deployments.iter().enumerate() {
        if !ids.insert(d.id.as_str()) {
            errors.push(problem(
                format!("model_list[{i}].model_info.id"),
                format!("duplicate id `{}`", d.id),
            ));
        }
    }
    let names: HashSet<&str> = deployments.iter().map(|d| d.model_name.as_str()).collect();

    let mut r = raw.router_settings;
    let l = raw.litellm_settings;
    r.num_retries = r.num_retries.or(l.num_retries);
    r.timeout = r.timeout.or(l.request_timeout);
    if r.fallbacks.is_empty() {
        r.fallbacks = l.fallbacks;
    }
    let strategy = match r.routing_strategy.as_deref() {
        None | Some("simple-shuffle") => RoutingStrategy::SimpleShuffle,
        Some("least-busy") => RoutingStrategy::LeastBusy,
        Some("latency-based-routing") => RoutingStrategy::LatencyBased,
        Some(other) => {
            errors.push(problem(
                "router_settings.routing_strategy",
                format!("unknown strategy `{other}` (use simple-shuffle, least-busy or latency-based-routing)"),
            ));
            RoutingStrategy::SimpleShuffle
        }
    };
    let mut fallbacks = HashMap::new();
    for (i, entry) in r.fallbacks.into_iter().enumerate() {
        for (from, to) in entry {
            for (j, target) in to.iter().enumerate() {
                if !names.contains(target.as_str()) {
                    errors.push(problem(
                        format!("router_settings.fallbacks[{i}].{from}[{j}]"),
                        format!("no model_list entry is named `{target}`"),
                    ));
                }
            }
            fallbacks.insert(from, to);
        }
    }
    let router = RouterSettings {
        strategy,
        num_retries: r.num_retries.unwrap_or(2),
        timeout: seconds(r.timeout, "router_settings.timeout", &mut errors)
            .unwrap_or(Duration::from_secs(600)),
        fallbacks,
        allowed_fails: r.allowed_fails.unwrap_or(3),
        cooldown: seconds(
            r.cooldown_time,
            "router_settings.cooldown_time",
            &mut errors,
        )
        .unwrap_or(Duration::from_secs(5)),
    };

    let g = raw.general_settings;
    let max_mb = g.max_request_size_mb.unwrap_or(DEFAULT_MAX_REQUEST_MB);
    // Below a kilobyte not even a short chat request fits: a typo, not a policy.
    if !(max_mb.is_finite() && max_mb * 1024.0 * 1024.0 >= 1024.0 && max_mb <= 4096.0) {
        errors.push(problem(
            "general_settings.max_request_size_mb",
            "must be between 0.001 (1 KiB) and 4096",
        ));
    }
    let buffered_mb = g
        .max_buffered_request_mb
        .unwrap_or(DEFAULT_MAX_BUFFERED_MB.max(max_mb));
    // One largest request must always fit, or it could only ever be refused.
    if !(buffered_mb.is_finite() && buffered_mb >= max_mb && buffered_mb <= 1_048_576.0) {
        errors.push(problem(
            "general_settings.max_buffered_request_mb",
            "must be at least max_request_size_mb (and at most 1048576)",
        ));
    }
    let tls = match (g.ssl_certfile_path, g.ssl_keyfile_path) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        (None, None) => None,
        _ => {
            errors.push(problem(
                "general_settings",
                "ssl_certfile_path and ssl_keyfile_path must be given together",
            ));
            None
        }
    };
    if let Some(k) = &g.master_key
        && k.trim().is_empty()
    {
        errors.push(problem("general_settings.master_key", "must not be empty"));
    }
    let shutdown_timeout = seconds(
        g.graceful_shutdown_timeout,
        "general_settings.graceful_shutdown_timeout",
        &mut errors,
    )
    .unwrap_or(Duration::from_secs(30));
    let idle_timeout = seconds(g.idle_timeout, "general_settings.idle_timeout", &mut errors)
        .unwrap_or(Duration::from_secs(30));

    let mut role_permissions: Vec<RolePermission> = Vec::new();
    for (i, rp) in g.role_permissions.into_iter().enumerate() {
        let path = format!("general_settings.role_permissions[{i}].role");
        match GlobalRole::parse(&rp.role) {
            Some(role) if role_permissions.iter().any(|r| r.role == role) => {
                errors.push(problem(path, "this role is listed twice"));
            }
            Some(role) => role_permissions.push(RolePermission {
                role,
                models: rp.models,
                routes: rp.routes,
            }),
            None => errors.push(problem(
                path,
                format!(
                    "unknown role `{}`; use one of {}",
                    rp.role,
                    GlobalRole::names()
                ),
            )),
        }
    }
    let spend_flush_interval = seconds(
        g.spend_flush_interval,
        "general_settings.spend_flush_interval",
        &mut errors,
    )
    .unwrap_or(Duration::from_secs(1));
    if spend_flush_interval.is_zero() || spend_flush_interval > Duration::from_secs(300) {
        errors.push(problem(
            "general_settings.spend_flush_interval",
            "must be more than 0 and at most 300 seconds",
        ));
    }
    let audit_retention = match g.audit_retention_days {
        None => None,
        Some(d) if d.is_finite() && d > 0.0 && d <= 36_500.0 => {
            Some(Duration::from_secs_f64(d * 86_400.0))
        }
        Some(_) => {
            errors.push(problem(
                "general_settings.audit_retention_days",
                "must be a number of days more than 0 and at most 36500",
            ));
            None
        }
    };
    let metrics_auth = match g.metrics_auth.as_deref() {
        None | Some("auto") => None,
        Some(text) => {
            let parsed = MetricsAuth::parse(text);
            if parsed.is_none() {
                errors.push(problem(
                    "general_settings.metrics_auth",
                    format!("unknown value `{text}`; use one of auto, none, master_key, admin"),
                ));
            }
            parsed
        }
    };

    let scim_group_roles = group_roles(g.scim_admin_group, g.scim_group_roles, &mut errors);
    let jwt = super::jwt::settings(
        g.enable_jwt_auth,
        g.litellm_jwtauth,
        env,
        &mut errors,
        &mut warnings,
    );
    let access = super::sso::ui_access_mode(g.ui_access_mode, &mut errors);
    let trusted_proxy = super::proxy::settings(
        g.enable_oauth2_proxy_auth,
        g.trusted_proxy_ranges,
        g.oauth2_config_mappings,
        g.trusted_proxy_mappings,
        env,
        &mut errors,
        &mut warnings,
    );
    let sso = super::sso::settings(
        g.sso,
        access.clone(),
        trusted_proxy.is_some(),
        env,
        &mut errors,
        &mut warnings,
    );

    // Our own access blocks: a misspelled key there would silently change who may sign in and
    // with which role, so it stops the start instead of being ignored.
    let (strict, rest): (Vec<Problem>, Vec<Problem>) = warnings.into_iter().partition(|w| {
        w.message == UNKNOWN_KEY
            && [
                "general_settings.sso.",
                "general_settings.trusted_proxy_mappings.",
            ]
            .iter()
            .any(|p| w.path.starts_with(p))
    });
    warnings = rest;
    errors.extend(strict.into_iter().map(|w| {
        problem(
            w.path,
            "unknown key: this block decides who may sign in, so a misspelling is an error",
        )
    }));
    if !errors.is_empty() {
        // The unknown keys are often the cause (a misspelled key leaves a required one unset).
        errors.extend(
            warnings
                .into_iter()
                .filter(|w| w.message == UNKNOWN_KEY)
                .map(|w| problem(w.path, "unknown key (ignored; is it misspelled?)")),
        );
        return Err(errors);
    }
    Ok((
        Config {
            jwt,
            sso,
            trusted_proxy,
            ui_access_mode: access,
            scim_group_roles,
            scim_managed_objects_editable: g.scim_managed_objects_editable.unwrap_or(true),
            metrics_auth,
            role_permissions,
            spend_flush_interval,
            audit_retention,
            scim_upsert_user: g.scim_upsert_user.unwrap_or(false),
            deployments,
            router,
            master_key: g.master_key.map(Secret::new),
            max_request_bytes: (max_mb * 1024.0 * 1024.0) as usize,
            max_buffered_request_bytes: (buffered_mb * 1024.0 * 1024.0) as usize,
            tls,
            shutdown_timeout,
            idle_timeout,
        },
        warnings,
    ))
}

/// `scim_admin_group` (its members are admins) and `scim_group_roles` (any group → a role), as
/// one table. A group named twice, even in different case, must be named with one role.
fn group_roles(
    admin: Option<String>,
    map: Option<std::collections::BTreeMap<String, String>>,
    errors: &mut Vec<Problem>,
) -> GroupRoles {
    let mut pairs: Vec<(String, GroupRole)> = Vec::new();
    if let Some(name) = admin {
        if name.trim().is_empty() {
            errors.push(problem(
                "general_settings.scim_admin_group",
                "must be the displayName of a SCIM group, not empty",
            ));
        } else {
            pairs.push((name.trim().to_string(), GroupRole::ProxyAdmin));
        }
    }
    for (name, role) in map.unwrap_or_default() {
        let path = format!("general_settings.scim_group_roles.{name}");
        if name.trim().is_empty() {
            errors.push(problem(
                "general_settings.scim_group_roles",
                "a group name must not be empty",
            ));
            continue;
        }
        let Some(role) = GroupRole::parse(&role) else {
            errors.push(problem(
                path,
                format!(
                    "unknown role `{role}`; use one of proxy_admin, proxy_admin_viewer, org_admin"
                ),
            ));
            continue;
        };
        let key = name.trim().to_lowercase();
        match pairs.iter().find(|(n, _)| n.to_lowercase() == key) {
            Some((_, r)) if *r == role => {}
            Some((other, _)) => errors.push(problem(
                path,
                format!(
                    "names the same group as `{other}` (group names are compared \
                     case-insensitively) with another role"
                ),
            )),
            None => pairs.push((name.trim().to_string(), role)),
        }
    }
    GroupRoles::new(pairs)
}

/// The config written on first start when the operator gave none: everything served by the
/// built-in mock provider, so the gateway answers with no credentials and no network.
pub fn default_config_yaml() -> &'static str {
    include_str!("../../assets/default-config.yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([("OPENAI_KEY".to_string(), "sk-up".to_string())])
    }

    #[test]
    fn default_config_is_valid() {
        let (cfg, warnings) =
            load(default_config_yaml(), &env()).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(
            cfg.deployments
                .iter()
                .any(|d| d.provider == ProviderKind::Mock)
        );
    }

    #[test]
    fn metrics_auth_values() {
        let with = |v: &str| format!("general_settings:\n  metrics_auth: {v}\n");
        let parsed = |v: &str| load(&with(v), &env()).map(|(c, _)| c.metrics_auth);
        assert_eq!(load("", &env()).map(|(c, _)| c.metrics_auth), Ok(None));
        assert_eq!(parsed("auto"), Ok(None));
        assert_eq!(parsed("none"), Ok(Some(MetricsAuth::None)));
        assert_eq!(parsed("master_key"), Ok(Some(MetricsAuth::MasterKey)));
        assert_eq!(parsed("admin"), Ok(Some(MetricsAuth::Admin)));
        let errs = parsed("everyone").err().unwrap_or_default();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "general_settings.metrics_auth");
    }

    #[test]
    fn scim_group_roles_and_the_editable_setting() {
        let (cfg, _) = load("", &env()).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(cfg.scim_group_roles.is_empty());
        assert!(cfg.scim_managed_objects_editable, "editable by default");
        let yaml = "general_settings:\n  scim_admin_group: Portcullis Admins\n  scim_group_roles:\n    Auditors: proxy_admin_viewer\n    BU Leads: org_admin\n    portcullis admins: proxy_admin\n  scim_managed_objects_editable: false\n";
        let (cfg, warnings) = load(yaml, &env()).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(warnings.is_empty(), "{warnings:?}");
        let roles = &cfg.scim_group_roles;
        assert_eq!(
            roles.role_of("PORTCULLIS admins"),
            Some(GroupRole::ProxyAdmin)
        );
        assert_eq!(roles.role_of("auditors"), Some(GroupRole::ProxyAdminViewer));
        assert_eq!(roles.role_of("BU Leads"), Some(GroupRole::OrgAdmin));
        assert_eq!(roles.role_of("Engineering"), None);
        assert!(!cfg.scim_managed_objects_editable);

        let yaml = "general_settings:\n  scim_admin_group: '  '\n  scim_group_roles:\n    Auditors: root\n    Admins: proxy_admin\n    ADMINS: org_admin\n";
        let errs = load(yaml, &env()).err().unwrap_or_default();
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "general_settings.scim_admin_group",
                // In name order: `ADMINS` is taken first, `Admins` then disagrees with it.
                "general_settings.scim_group_roles.Admins",
                "general_settings.scim_group_roles.Auditors",
            ],
            "{errs:?}"
        );
        let errs = load("general_settings:\n  scim_group_roles: [Admins]\n", &env())
            .err()
            .unwrap_or_default();
        assert_eq!(
            errs[0].path, "general_settings.scim_group_roles",
            "{errs:?}"
        );
    }

    #[test]
    fn env_indirection_and_provider_parsing() {
        let yaml = "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: os.environ/OPENAI_KEY\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-3-5-sonnet\n";
        let (cfg, _) = load(yaml, &env()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            cfg.deployments[0]
                .api_key
                .as_ref()
                .map(|k| k.expose().as_str()),
            Some("sk-up")
        );
        assert_eq!(cfg.deployments[0].api_base, "https://api.openai.com/v1");
        assert_eq!(cfg.deployments[1].provider, ProviderKind::Anthropic);
        assert_eq!(cfg.deployments[1].upstream_model, "claude-3-5-sonnet");
    }

    #[test]
    fn missing_env_names_the_path() {
        let yaml = "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: os.environ/NOPE\n";
        let errs = load(yaml, &env()).err().unwrap_or_default();
        assert_eq!(errs[0].path, "model_list[0].litellm_params.api_key");
    }

    #[test]
    fn every_type_error_is_reported() {
        let yaml = "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      rpm: lots\n  - model_name: b\n    litellm_params:\n      model: openai/y\n      tpm: [1]\nrouter_settings:\n  num_retries: many\ngeneral_settings:\n  max_request_size_mb: big\n";
        let errs = load(yaml, &env()).err().unwrap_or_default();
        let paths: Vec<_> = errs.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "model_list[0].litellm_params.rpm",
                "model_list[1].litellm_params.tpm",
                "router_settings.num_retries",
                "general_settings.max_request_size_mb"
            ]
        );
    }

    #[test]
    fn type_errors_name_the_path() {
        let yaml = "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      rpm: lots\n";
        let errs = load(yaml, &env()).err().unwrap_or_default();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "model_list[0].litellm_params.rpm");
    }

    #[test]
    fn unknown_keys_warn_with_path() {
        let yaml = "model_list:\n  - model_name: gpt\n    litellm_params:\n      model: openai/gpt-4o\n      colour: blue\nlitellm_settings:\n  drop_params: true\n  success_callback: [x]\nfavourite: 1\n";
        let (_, warnings) = load(yaml, &env()).unwrap_or_else(|e| panic!("{e:?}"));
        let paths: Vec<_> = warnings.iter().map(|w| w.path.as_str()).collect();
        assert!(
            paths.contains(&"model_list[0].litellm_params.colour"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"litellm_settings.success_callback"),
            "{paths:?}"
        );
        assert!(paths.contains(&"favourite"), "{paths:?}");
        assert!(
            !paths.contains(&"litellm_settings.drop_params"),
            "{paths:?}"
        );
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let yaml = "model_list:\n  - model_name: a\n    litellm_params:\n      model: bogus/x\n  - model_name: b\n    litellm_params:\n      model: azure/dep\nrouter_settings:\n  routing_strategy: fastest\n  fallbacks: [{b: [zzz]}]\n";
        let errs = load(yaml, &env()).err().unwrap_or_default();
        let paths: Vec<_> = errs.iter().map(|w| w.path.as_str()).collect();
        assert!(
            paths.contains(&"model_list[0].litellm_params.model"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"model_list[1].litellm_params.api_base"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"router_settings.routing_strategy"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"router_settings.fallbacks[0].b[0]"),
            "{paths:?}"
        );
    }

    #[test]
    fn unset_variables_and_type_errors_come_in_one_run_without_values() {
        let yaml = "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n      api_key: os.environ/NOPE\n      rpm: sk-secret-rpm\ngeneral_settings:\n  max_request_size_mb: sk-secret-size\n";
        let errs = load(yaml, &env()).err().unwrap_or_default();
        let paths: Vec<_> = errs.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "model_list[0].litellm_params.api_key",
                "model_list[0].litellm_params.rpm",
                "general_settings.max_request_size_mb",
            ]
        );
        // The values are not repeated: they may be secrets under the wrong key.
        assert!(
            errs.iter().all(|e| !e.message.contains("sk-secret")),
            "{errs:?}"
        );
        let bad_yaml = "a: {b: sk-secret-in-a-line, c\nd: 1\n";
        let errs = load(bad_yaml, &env()).err().unwrap_or_default();
        assert!(
            !errs.is_empty() && errs.iter().all(|e| !e.message.contains("sk-secret")),
            "{errs:?}"
        );
    }

    #[test]
    fn litellm_settings_feed_the_router() {
        let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/x}\n  - model_name: b\n    litellm_params: {model: openai/y}\nlitellm_settings:\n  num_retries: 5\n  request_timeout: 7\n  fallbacks: [{a: [b]}]\nrouter_settings:\n  num_retries: 1\n";
        let (cfg, _) = load(yaml, &env()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.router.num_retries, 1, "router_settings wins");
        assert_eq!(cfg.router.timeout, Duration::from_secs(7));
        assert_eq!(cfg.router.fallbacks.get("a"), Some(&vec!["b".to_string()]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "[1, 2",
            "- a\n- b",
            "model_list: 5",
            "\u{0}\u{1}",
            "model_list:\n  - 7",
        ] {
            assert!(load(text, &env()).is_err(), "{text:?}");
        }
    }
}
