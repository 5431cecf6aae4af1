//! Deployment groups and the choice of which deployment serves a call: weighted shuffle,
//! least-busy or lowest-latency selection, retries with backoff (honouring `retry-after`),
//! fallbacks to other groups, and cooldown of failing deployments.
//!
//! All health state is atomics on each deployment: choosing takes no lock and does no I/O.

mod health;

use crate::config::{Config, Deployment, RouterSettings, RoutingStrategy};
use crate::providers::{self, Call, Dialect, HttpClient, Operation, Reply, UpstreamError};
use health::Health;
use http::HeaderMap;
use rand::Rng;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `retry-after` longer than this is not waited for: the next deployment or fallback is tried.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

pub struct Member {
    pub deployment: Deployment,
    /// The response headers naming this deployment, built once rather than per request.
    pub headers: DeploymentHeaders,
    health: Health,
}

pub struct DeploymentHeaders {
    pub model_id: Option<http::HeaderValue>,
    pub model_group: Option<http::HeaderValue>,
    pub api_base: Option<http::HeaderValue>,
}

impl DeploymentHeaders {
    fn of(d: &Deployment) -> Self {
        let value = |s: &str| http::HeaderValue::from_str(s).ok();
        DeploymentHeaders {
            model_id: value(&d.id),
            model_group: value(&d.model_name),
            api_base: value(&d.api_base),
        }
    }
}

pub struct Group {
    pub name: String,
    pub members: Vec<Arc<Member>>,
}

pub struct Router {
    settings: RouterSettings,
    /// Exact model names, and the names in config order (for `/v1/models`).
    groups: HashMap<String, Arc<Group>>,
    order: Vec<Arc<Group>>,
    /// Groups whose name holds a `*`, longest literal prefix first.
    wildcards: Vec<Arc<Group>>,
    /// Where upstream failures and cooldowns are counted (absent outside the server).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// A resolved model: its group and, for a wildcard group, the text the `*` matched.
pub struct Target {
    pub group: Arc<Group>,
    pub captured: Option<String>,
}

/// One call to route: what to send, in which dialect, and which models the caller may use
/// (fallback groups it may not use are skipped).
pub struct RouteCall<'a> {
    /// The upstream pool of the thread serving this call.
    pub client: &'a HttpClient,
    pub target: &'a Target,
    pub op: Operation,
    pub dialect: Dialect,
    pub body: &'a Map<String, Value>,
    pub headers: &'a HeaderMap,
    pub stream: bool,
    pub may_use: &'a (dyn Fn(&str) -> bool + Sync),
}

pub struct Routed {
    pub reply: Reply,
    pub deployment: Arc<Member>,
    pub attempted_fallbacks: u32,
    pub attempted_retries: u32,
    /// Time spent in upstream calls and backoff, to separate the gateway's own overhead.
    pub upstream_time: Duration,
}

#[derive(Debug)]
pub enum RouteError {
    /// Every deployment of every candidate group is cooling down.
    NoDeployments {
        model: String,
        retry_after: Duration,
    },
    Upstream {
        error: UpstreamError,
        deployment_id: String,
        attempted_fallbacks: u32,
    },
}

fn wildcard_match(pattern: &str, model: &str) -> Option<String> {
    let (prefix, suffix) = pattern.split_once('*')?;
    if model.len() >= prefix.len() + suffix.len()
        && model.starts_with(prefix)
        && model.ends_with(suffix)
    {
        Some(model[prefix.len()..model.len() - suffix.len()].to_string())
    } else {
        None
    }
}

impl Router {
    pub fn new(config: &Config) -> Router {
        Router::build(config, None)
    }

    /// A new routing table for a reloaded config that keeps the live state (calls in flight,
    /// latency, cooldown) of every deployment whose configuration did not change.
    pub fn rebuilt(config: &Config, previous: &Router) -> Router {
        Router::build(config, Some(previous))
    }

    fn build(config: &Config, previous: Option<&Router>) -> Router {
        let same = |a: &Deployment, b: &Deployment| {
            format!("{a:?}") == format!("{b:?}")
                && a.api_key.as_ref().map(|k| k.expose()) == b.api_key.as_ref().map(|k| k.expose())
        };
        let kept = |d: &Deployment| -> Option<Arc<Member>> {
            previous?
                .order
                .iter()
                .flat_map(|g| g.members.iter())
                .find(|m| same(&m.deployment, d))
                .cloned()
        };
        let mut groups: HashMap<String, Arc<Group>> = HashMap::new();
        let mut names: Vec<String> = Vec::new();
        let mut members: HashMap<String, Vec<Arc<Member>>> = HashMap::new();
        for d in &config.deployments {
            if !members.contains_key(&d.model_name) {
                names.push(d.model_name.clone());
            }
            let member = kept(d).unwrap_or_else(|| {
                Arc::new(Member {
                    deployment: d.clone(),
                    headers: DeploymentHeaders::of(d),
                    health: Health::default(),
                })
            });
            members
                .entry(d.model_name.clone())
                .or_default()
                .push(member);
        }
        let mut order = Vec::new();
        let mut wildcards = Vec::new();
        for name in names {
            let group = Arc::new(Group {
                members: members.remove(&name).unwrap_or_default(),
                name: name.clone(),
            });
            if name.contains('*') {
                wildcards.push(group.clone());
            } else {
                groups.insert(name, group.clone());
            }
            order.push(group);
        }
        wildcards.sort_by_key(|g| std::cmp::Reverse(g.name.find('*').unwrap_or(0)));
        Router {
            settings: config.router.clone(),
            groups,
            order,
            wildcards,
            metrics: None,
        }
    }

    pub fn set_metrics(&mut self, metrics: Arc<crate::metrics::Metrics>) {
        self.metrics = Some(metrics);
    }

    /// Every deployment's id, whether it is cooling down, and its calls in flight: read by
    /// the metrics scrape.
    pub fn deployment_states(&self) -> impl Iterator<Item = (&str, bool, u32)> {
        let now = crate::types::now_ms();
        self.order.iter().flat_map(move |g| {
            g.members.iter().map(move |m| {
                (
                    m.deployment.id.as_str(),
                    m.health.cooling(now),
                    m.health.in_flight(),
                )
            })
        })
    }

    pub fn resolve(&self, model: &str) -> Option<Target> {
        if let Some(g) = self.groups.get(model) {
            return Some(Target {
                group: g.clone(),
                captured: None,
            });
        }
        self.wildcards.iter().find_map(|g| {
            wildcard_match(&g.name, model).map(|captured| Target {
                group: g.clone(),
                captured: Some(captured),
            })
        })
    }

    /// Every group in config order.
    pub fn groups(&self) -> &[Arc<Group>] {
        &self.order
    }

    /// Every access group and the model names in it.
    pub fn access_groups(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for g in &self.order {
            let mut names: Vec<&String> = g
                .members
                .iter()
                .flat_map(|m| m.deployment.access_groups.iter())
                .collect();
            names.sort();
            names.dedup();
            for a in names {
                out.entry(a.clone()).or_default().push(g.name.clone());
            }
        }
        out
    }

    /// Model names in the given access group (`model_info.access_groups`).
    pub fn access_group_members(&self, access_group: &str) -> impl Iterator<Item = &str> {
        self.order.iter().filter_map(move |g| {
            g.members
                .iter()
                .any(|m| m.deployment.access_groups.iter().any(|a| a == access_group))
                .then_some(g.name.as_str())
        })
    }

    fn pick(&self, group: &Group, tried: &[usize]) -> Option<usize> {
        let now = crate::types::now_ms();
        let healthy: Vec<usize> = (0..group.members.len())
            .filter(|i| !group.members[*i].health.cooling(now))
            .collect();
        let fresh: Vec<usize> = healthy
            .iter()
            .copied()
            .filter(|i| !tried.contains(i))
            .collect();
        let pool = if fresh.is_empty() { healthy } else { fresh };
        if pool.len() <= 1 {
            return pool.first().copied();
        }
        let mut rng = rand::rng();
        match self.settings.strategy {
            RoutingStrategy::SimpleShuffle => {
                let total: f64 = pool
                    .iter()
                    .map(|i| group.members[*i].deployment.weight)
                    .sum();
                let mut roll = rng.random::<f64>() * total;
                for i in &pool {
                    roll -= group.members[*i].deployment.weight;
                    if roll <= 0.0 {
                        return Some(*i);
                    }
                }
                pool.last().copied()
            }
            RoutingStrategy::LeastBusy => {
                let min = pool
                    .iter()
                    .map(|i| group.members[*i].health.in_flight())
                    .min()?;
                let busiest: Vec<usize> = pool
                    .into_iter()
                    .filter(|i| group.members[*i].health.in_flight() == min)
                    .collect();
                busiest.get(rng.random_range(0..busiest.len())).copied()
            }
            RoutingStrategy::LatencyBased => {
                // Unmeasured deployments go first so every one gets measured.
                let unmeasured: Vec<usize> = pool
                    .iter()
                    .copied()
                    .filter(|i| group.members[*i].health.latency_us() == 0)
                    .collect();
                if !unmeasured.is_empty() {
                    return unmeasured
                        .get(rng.random_range(0..unmeasured.len()))
                        .copied();
                }
                pool.into_iter()
                    .min_by_key(|i| group.members[*i].health.latency_us())
            }
        }
    }

    fn backoff(attempt: u32) -> Duration {
        let base = 100u64.saturating_mul(1 << attempt.min(6));
        let jitter = rand::rng().random_range(0..=base / 2);
        Duration::from_millis((base + jitter).min(5_000))
    }

    /// Runs a call against its target group, then the group's fallbacks, until one succeeds
    /// or a failure is not worth retrying.
    pub async fn execute(&self, call: RouteCall<'_>) -> Result<Routed, RouteError> {
        let RouteCall {
            client,
            target,
            op,
            dialect,
            body,
            headers,
            stream,
            may_use,
        } = call;
        let started = Instant::now();
        let mut chain: Vec<(Arc<Group>, Option<String>)> =
            vec![(target.group.clone(), target.captured.clone())];
        for name in self
            .settings
            .fallbacks
            .get(&target.group.name)
            .into_iter()
            .flatten()
        {
            // A fallback is still a model: the caller must be allowed to use it.
            if let Some(t) = self.resolve(name).filter(|_| may_use(name)) {
                chain.push((t.group, None));
            }
        }
        let mut last: Option<RouteError> = None;
        let mut retries = 0u32;
        let mut min_cooldown = self.settings.cooldown;
        for (fallback_no, (group, captured)) in chain.iter().enumerate() {
            let mut tried: Vec<usize> = Vec::new();
            // A deployment's own `max_retries` overrides the router's `num_retries` for its group.
            let retries_here = group
                .members
                .iter()
                .filter_map(|m| m.deployment.max_retries)
                .max()
                .unwrap_or(self.settings.num_retries);
            let attempts = 1 + retries_here;
            for attempt in 0..attempts {
                let Some(i) = self.pick(group, &tried) else {
                    let now = crate::types::now_ms();
                    if let Some(wait) = group
                        .members
                        .iter()
                        .map(|m| m.health.cooldown_left(now))
                        .min()
                    {
                        min_cooldown = min_cooldown.min(wait);
                    }
                    break;
                };
                let member = group.members[i].clone();
                tried.push(i);
                if attempt > 0 {
                    retries += 1;
                }
                let d = &member.deployment;
                let upstream_model: std::borrow::Cow<'_, str> =
                    match (captured, d.upstream_model.contains('*')) {
                        (Some(c), true) => d.upstream_model.replacen('*', c, 1).into(),
                        _ => d.upstream_model.as_str().into(),
                    };
                let timeout = match stream {
                    true => d.stream_timeout.or(d.timeout),
                    false => d.timeout,
                }
                .unwrap_or(self.settings.timeout);
                let call = Call {
                    client,
                    deployment: d,
                    upstream_model: &upstream_model,
                    timeout,
                    headers,
                };
                let in_flight = member.health.begin();
                let t0 = Instant::now();
                match providers::call(&call, op, dialect, body).await {
                    Ok(reply) => {
                        member.health.succeeded(t0.elapsed());
                        let reply = match reply {
                            Reply::Stream { stream, usage } => Reply::Stream {
                                stream: providers::with_guard(stream, in_flight),
                                usage,
                            },
                            json => json,
                        };
                        return Ok(Routed {
                            reply,
                            deployment: member.clone(),
                            attempted_fallbacks: fallback_no as u32,
                            attempted_retries: retries,
                            upstream_time: started.elapsed(),
                        });
                    }
                    Err(error) => {
                        drop(in_flight);
                        let retryable = error.retryable();
                        let was_cooling = member.health.cooling(crate::types::now_ms());
                        if retryable {
                            member.health.failed(
                                self.settings.allowed_fails,
                                self.settings.cooldown,
                                group.members.len() > 1,
                            );
                        }
                        if let Some(m) = &self.metrics {
                            m.upstream_error(&d.id, error_class(&error));
                            if !was_cooling && member.health.cooling(crate::types::now_ms()) {
                                m.cooldown_started(&d.id);
                            }
                        }
                        tracing::warn!(deployment = %d.id, model = %group.name, attempt, error = ?error, "upstream call failed");
                        let wait = error.retry_after();
                        last = Some(RouteError::Upstream {
                            error,
                            deployment_id: d.id.clone(),
                            attempted_fallbacks: fallback_no as u32,
                        });
                        if !retryable {
                            return Err(last.unwrap_or(RouteError::NoDeployments {
                                model: target.group.name.clone(),
                                retry_after: min_cooldown,
                            }));
                        }
                        if attempt + 1 == attempts {
                            break;
                        }
                        if wait.is_some_and(|w| w > MAX_RETRY_WAIT) {
                            break;
                        }
                        // Another untried deployment is tried at once; the same one after a pause.
                        let untried = (0..group.members.len()).any(|j| {
                            !tried.contains(&j)
                                && !group.members[j].health.cooling(crate::types::now_ms())
                        });
                        if !untried {
                            tokio::time::sleep(wait.unwrap_or_else(|| Self::backoff(attempt)))
                                .await;
                        }
                    }
                }
            }
        }
        Err(last.unwrap_or(RouteError::NoDeployments {
            model: target.group.name.clone(),
            retry_after: min_cooldown,
        }))
    }
}

/// The `class` label of a failed upstream attempt.
fn error_class(error: &UpstreamError) -> &'static str {
    match error {
        UpstreamError::Status { status, .. } if status.is_client_error() => "4xx",
        UpstreamError::Status { .. } => "5xx",
        UpstreamError::Timeout => "timeout",
        UpstreamError::Connect(_) => "connect",
        UpstreamError::Protocol(_) => "protocol",
        UpstreamError::Unsupported(_) => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuilt_table_keeps_the_live_state_of_unchanged_deployments() {
        let yaml = |b_key: &str| {
            format!(
                "model_list:\n  - model_name: a\n    litellm_params:\n      model: mock/a\n  - model_name: b\n    litellm_params:\n      model: openai/b\n      api_key: {b_key}\n"
            )
        };
        let load = |text: String| {
            Config::from_yaml(&text, &HashMap::new())
                .map(|(c, _)| c)
                .unwrap_or_else(|e| panic!("{e:?}"))
        };
        let old = Router::new(&load(yaml("sk-one")));
        let member = |r: &Router, name: &str| r.resolve(name).map(|t| t.group.members[0].clone());
        let busy = member(&old, "a").unwrap_or_else(|| panic!("a"));
        let _in_flight = busy.health.begin();
        let new = Router::rebuilt(&load(yaml("sk-two")), &old);
        let a = member(&new, "a").unwrap_or_else(|| panic!("a"));
        assert!(
            Arc::ptr_eq(&a, &busy),
            "unchanged deployment keeps its state"
        );
        assert_eq!(a.health.in_flight(), 1);
        let b_old = member(&old, "b").unwrap_or_else(|| panic!("b"));
        let b_new = member(&new, "b").unwrap_or_else(|| panic!("b"));
        assert!(
            !Arc::ptr_eq(&b_old, &b_new),
            "a rotated key is a new deployment"
        );
    }

    #[test]
    fn wildcards_capture_the_middle() {
        assert_eq!(wildcard_match("mock/*", "mock/gpt-4"), Some("gpt-4".into()));
        assert_eq!(wildcard_match("mock/*", "mock/"), Some(String::new()));
        assert_eq!(wildcard_match("mock/*", "openai/x"), None);
        assert_eq!(wildcard_match("*-fast", "gpt-fast"), Some("gpt".into()));
        assert_eq!(wildcard_match("a*a", "a"), None);
    }
}
