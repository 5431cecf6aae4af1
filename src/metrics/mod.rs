//! Prometheus metrics: the registry `GET /metrics` encodes, and the handles the request path
//! records into.
//!
//! Every label value comes from a finite set — model group names and deployment ids from the
//! config, route templates, status codes, the fixed level/kind vocabularies — never from what a
//! client wrote: a model the config does not know is counted as `unknown`.
//!
//! Recording takes no lock. prometheus-client's `Family` finds a series behind an `RwLock`, so
//! the request path never asks it: the handles for every model group and deployment are built
//! once at start-up into read-only maps (`Counter` and [`AtomicHistogram`] clones share their
//! atomics with the registered series). Series that would mostly stay zero (a status code, an
//! error class) sit in a `OnceLock` slot that asks the family once, the first time it is used;
//! after that a request costs a map lookup and atomic adds. Histograms are our own
//! [`AtomicHistogram`] because the library's keeps a mutex per series. Values that only matter
//! when scraped (database size, rows dropped, deployments cooling) are read at scrape time.
//! This module does no I/O.

mod histogram;

pub use histogram::AtomicHistogram;

use crate::config::MetricsAuth;
use histogram::{OVERHEAD_BUCKETS, first_token_histogram, request_histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The `model` label of a call that named no configured model group (or was refused before
/// its body was read).
pub const UNKNOWN_MODEL: &str = "unknown";

/// Status codes counted under their own value; any other is counted under its class (`4xx`).
const STATUSES: [u16; 14] = [
    200, 400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504, 529,
];
const STATUS_LABELS: [&str; 19] = [
    "200", "400", "401", "403", "404", "408", "413", "422", "429", "500", "502", "503", "504",
    "529", "1xx", "2xx", "3xx", "4xx", "5xx",
];

fn status_slot(code: u16) -> usize {
    match STATUSES.iter().position(|s| *s == code) {
        Some(i) => i,
        None => STATUSES.len() + usize::from(code / 100).clamp(1, 5) - 1,
    }
}

/// Upstream failure classes (`upstream_errors_total{class}`).
pub const ERROR_CLASSES: [&str; 6] = ["4xx", "5xx", "timeout", "connect", "protocol", "other"];

/// Levels and kinds that refusals and denials name today; others still count, through the
/// family's (locking) lookup.
const LIMIT_LEVELS: [&str; 6] = [
    "key",
    "user",
    "team",
    "team_member",
    "organization",
    "end_user",
];
const LIMIT_KINDS: [&str; 4] = ["budget", "rpm", "tpm", "parallel"];
const DENIAL_LEVELS: [&str; 7] = [
    "key",
    "user",
    "team",
    "team_member",
    "organization",
    "end_user",
    "role",
];
const DENIAL_KINDS: [&str; 3] = ["blocked", "model", "route"];
const AUTH_CODES: [&str; 6] = [
    "missing_api_key",
    "invalid_api_key",
    "expired_api_key",
    "blocked_api_key",
    "invalid_jwt",
    "jwt_not_allowed",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    model: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    model: String,
    deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    model: String,
    deployment: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelKindLabels {
    level: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type FloatCounter = Counter<f64, std::sync::atomic::AtomicU64>;
type Histograms = Family<ModelLabels, AtomicHistogram, fn() -> AtomicHistogram>;

/// A series created the first time it is used; from then on reading it is one atomic load.
struct Lazy<M>(OnceLock<M>);

impl<M: Clone> Lazy<M> {
    fn new() -> Self {
        Lazy(OnceLock::new())
    }

    fn get<S, C>(&self, family: &Family<S, M, C>, labels: impl FnOnce() -> S) -> &M
    where
        S: Clone + Hash + Eq,
        C: MetricConstructor<M>,
    {
        self.0.get_or_init(|| family.get_or_create_owned(&labels()))
    }
}

/// The registered families the per-model slots create their series in.
struct Families {
    requests: Family<RequestLabels, Counter>,
    duration: Histograms,
    first_token: Histograms,
    tokens: Family<TokenLabels, Counter>,
    spend: Family<ModelLabels, FloatCounter>,
}

/// Everything recorded per model group.
pub struct ModelMetrics {
    name: String,
    routes: Arc<[&'static str]>,
    families: Arc<Families>,
    /// `routes.len() * STATUS_LABELS.len()` slots, route-major.
    requests: Box<[Lazy<Counter>]>,
    duration: Lazy<AtomicHistogram>,
    first_token: Lazy<AtomicHistogram>,
    prompt_tokens: Lazy<Counter>,
    completion_tokens: Lazy<Counter>,
    spend: Lazy<FloatCounter>,
}

impl ModelMetrics {
    fn new(name: &str, routes: Arc<[&'static str]>, families: Arc<Families>) -> Self {
        ModelMetrics {
            name: name.to_string(),
            requests: (0..routes.len() * STATUS_LABELS.len())
                .map(|_| Lazy::new())
                .collect(),
            routes,
            families,
            duration: Lazy::new(),
            first_token: Lazy::new(),
            prompt_tokens: Lazy::new(),
            completion_tokens: Lazy::new(),
            spend: Lazy::new(),
        }
    }

    fn labels(&self) -> ModelLabels {
        ModelLabels {
            model: self.name.clone(),
        }
    }

    /// One finished request on route number `route` (see [`Metrics::new`]).
    pub fn request(&self, route: usize, status: u16) {
        let slot = status_slot(status);
        let Some(lazy) = self.requests.get(route * STATUS_LABELS.len() + slot) else {
            return;
        };
        lazy.get(&self.families.requests, || RequestLabels {
            route: self.routes.get(route).copied().unwrap_or("other"),
            model: self.name.clone(),
            status: STATUS_LABELS[slot],
        })
        .inc();
    }

    /// The whole call, until its last byte (a stream's end) or its error.
    pub fn duration(&self, took: Duration) {
        self.duration
            .get(&self.families.duration, || self.labels())
            .observe(took.as_secs_f64());
    }

    /// From the request's arrival to a stream's first chunk.
    pub fn first_token(&self, took: Duration) {
        self.first_token
            .get(&self.families.first_token, || self.labels())
            .observe(took.as_secs_f64());
    }

    /// What a call was charged: tokens and dollars.
    pub fn usage(&self, prompt: u64, completion: u64, spend: f64) {
        let f = &self.families;
        let tokens = |kind: &'static str| TokenLabels {
            model: self.name.clone(),
            r#type: kind,
        };
        self.prompt_tokens
            .get(&f.tokens, || tokens("prompt"))
            .inc_by(prompt);
        self.completion_tokens
            .get(&f.tokens, || tokens("completion"))
            .inc_by(completion);
        if spend.is_finite() && spend > 0.0 {
            self.spend.get(&f.spend, || self.labels()).inc_by(spend);
        }
    }
}

/// Everything recorded per deployment.
struct DeploymentMetrics {
    model: String,
    id: String,
    errors: [Lazy<Counter>; ERROR_CLASSES.len()],
    cooldowns: Counter,
    cooling: Gauge,
    in_flight: Gauge,
}

pub struct Metrics {
    registry: Registry,
    /// Who may scrape.
    pub auth: MetricsAuth,
    data_file: PathBuf,
    models: HashMap<String, Arc<ModelMetrics>>,
    unknown: Arc<ModelMetrics>,
    overhead: AtomicHistogram,
    deployments: HashMap<String, DeploymentMetrics>,
    upstream_errors: Family<ErrorLabels, Counter>,
    limits: HashMap<(&'static str, &'static str), Counter>,
    limit_family: Family<LevelKindLabels, Counter>,
    denials: HashMap<(&'static str, &'static str), Counter>,
    denial_family: Family<LevelKindLabels, Counter>,
    auth_failures: HashMap<&'static str, Counter>,
    auth_family: Family<CodeLabels, Counter>,
    spend_rows_dropped: Counter,
    database_bytes: Gauge,
}

/// One deployment as configured: its group and id.
pub struct DeploymentName<'a> {
    pub model: &'a str,
    pub id: &'a str,
}

impl Metrics {
    /// `routes` are the templates of the LLM routes; a route is later named by its index.
    /// `data_file` is the database, whose size is read at scrape time.
    pub fn new<'a>(
        routes: &[&'static str],
        models: impl IntoIterator<Item = &'a str>,
        deployments: impl IntoIterator<Item = DeploymentName<'a>>,
        data_file: &Path,
        auth: MetricsAuth,
    ) -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let families = Arc::new(Families {
            requests: Family::default(),
            duration: Family::new_with_constructor(request_histogram as fn() -> AtomicHistogram),
            first_token: Family::new_with_constructor(
                first_token_histogram as fn() -> AtomicHistogram,
            ),
            tokens: Family::default(),
            spend: Family::default(),
        });
        let f = &families;
        registry.register(
            "requests",
            "LLM requests by route template, model group and response status",
            f.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Duration of LLM requests, until the last byte of the response",
            f.duration.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first chunk",
            f.first_token.clone(),
        );
        let overhead = AtomicHistogram::new(OVERHEAD_BUCKETS);
        registry.register(
            "overhead_duration_seconds",
            "Time a successful LLM request spent in the gateway itself, upstream calls excluded",
            overhead.clone(),
        );
        registry.register(
            "tokens",
            "Tokens charged, by model group and type (prompt or completion)",
            f.tokens.clone(),
        );
        registry.register(
            "spend_usd",
            "Dollars charged, by model group",
            f.spend.clone(),
        );

        let routes: Arc<[&'static str]> = routes.into();
        let model_metrics =
            |name: &str| Arc::new(ModelMetrics::new(name, routes.clone(), families.clone()));
        let models: HashMap<String, Arc<ModelMetrics>> = models
            .into_iter()
            .map(|name| (name.to_string(), model_metrics(name)))
            .collect();
        let unknown = model_metrics(UNKNOWN_MODEL);

        let upstream_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed upstream attempts (retries included), by model group, deployment and class",
            upstream_errors.clone(),
        );
        let cooldowns = Family::<DeploymentLabels, Counter>::default();
        registry.register(
            "deployment_cooldowns",
            "Cooldowns started, by model group and deployment",
            cooldowns.clone(),
        );
        let cooling = Family::<DeploymentLabels, Gauge>::default();
        registry.register(
            "deployment_cooling",
            "1 while a deployment is cooling down after failures, else 0",
            cooling.clone(),
        );
        let in_flight = Family::<DeploymentLabels, Gauge>::default();
        registry.register(
            "upstream_in_flight",
            "Upstream calls (and streams) in progress, by model group and deployment",
            in_flight.clone(),
        );
        let mut by_id = HashMap::new();
        for d in deployments {
            let labels = DeploymentLabels {
                model: d.model.to_string(),
                deployment: d.id.to_string(),
            };
            by_id
                .entry(d.id.to_string())
                .or_insert_with(|| DeploymentMetrics {
                    model: d.model.to_string(),
                    id: d.id.to_string(),
                    errors: std::array::from_fn(|_| Lazy::new()),
                    cooldowns: cooldowns.get_or_create_owned(&labels),
                    cooling: cooling.get_or_create_owned(&labels),
                    in_flight: in_flight.get_or_create_owned(&labels),
                });
        }

        let level_kinds = |levels: &[&'static str],
                           kinds: &[&'static str],
                           family: &Family<LevelKindLabels, Counter>| {
            let mut out = HashMap::new();
            for level in levels {
                for kind in kinds {
                    let labels = LevelKindLabels { level, kind };
                    out.insert((*level, *kind), family.get_or_create_owned(&labels));
                }
            }
            out
        };
        let limit_family = Family::<LevelKindLabels, Counter>::default();
        registry.register(
            "limit_rejections",
            "Requests refused by a budget or rate limit, by level and kind",
            limit_family.clone(),
        );
        let limits = level_kinds(&LIMIT_LEVELS, &LIMIT_KINDS, &limit_family);
        let denial_family = Family::<LevelKindLabels, Counter>::default();
        registry.register(
            "access_denials",
            "Requests refused by access rules (blocked, model, route), by level and kind",
            denial_family.clone(),
        );
        let denials = level_kinds(&DENIAL_LEVELS, &DENIAL_KINDS, &denial_family);
        let auth_family = Family::<CodeLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "LLM requests refused for their credential, by error code",
            auth_family.clone(),
        );
        let auth_failures = AUTH_CODES
            .iter()
            .map(|code| (*code, auth_family.get_or_create_owned(&CodeLabels { code })))
            .collect();

        let spend_rows_dropped = Counter::default();
        registry.register(
            "spend_log_rows_dropped",
            "Spend log rows dropped because the writer fell behind",
            spend_rows_dropped.clone(),
        );
        let database_bytes = Gauge::default();
        registry.register(
            "database_size_bytes",
            "Size of the database file, read at scrape time",
            database_bytes.clone(),
        );
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running version", build);

        Metrics {
            registry,
            auth,
            data_file: data_file.to_path_buf(),
            models,
            unknown,
            overhead,
            deployments: by_id,
            upstream_errors,
            limits,
            limit_family,
            denials,
            denial_family,
            auth_failures,
            auth_family,
            spend_rows_dropped,
            database_bytes,
        }
    }

    /// The handles of a model group; anything not configured is `unknown`.
    pub fn model(&self, group: &str) -> &Arc<ModelMetrics> {
        self.models.get(group).unwrap_or(&self.unknown)
    }

    pub fn unknown(&self) -> &Arc<ModelMetrics> {
        &self.unknown
    }

    pub fn overhead(&self, took: Duration) {
        self.overhead.observe(took.as_secs_f64());
    }

    pub fn limit_rejected(&self, level: &'static str, kind: &'static str) {
        match self.limits.get(&(level, kind)) {
            Some(c) => c.inc(),
            None => self
                .limit_family
                .get_or_create(&LevelKindLabels { level, kind })
                .inc(),
        };
    }

    pub fn access_denied(&self, level: &'static str, kind: &'static str) {
        match self.denials.get(&(level, kind)) {
            Some(c) => c.inc(),
            None => self
                .denial_family
                .get_or_create(&LevelKindLabels { level, kind })
                .inc(),
        };
    }

    pub fn auth_failed(&self, code: &'static str) {
        match self.auth_failures.get(code) {
            Some(c) => c.inc(),
            None => self.auth_family.get_or_create(&CodeLabels { code }).inc(),
        };
    }

    /// A failed upstream attempt; `class` is one of [`ERROR_CLASSES`].
    pub fn upstream_error(&self, deployment: &str, class: &'static str) {
        let Some(d) = self.deployments.get(deployment) else {
            return;
        };
        let i = ERROR_CLASSES
            .iter()
            .position(|c| *c == class)
            .unwrap_or(ERROR_CLASSES.len() - 1);
        d.errors[i]
            .get(&self.upstream_errors, || ErrorLabels {
                model: d.model.clone(),
                deployment: d.id.clone(),
                class: ERROR_CLASSES[i],
            })
            .inc();
    }

    pub fn cooldown_started(&self, deployment: &str) {
        if let Some(d) = self.deployments.get(deployment) {
            d.cooldowns.inc();
        }
    }

    /// The database file, whose size the scrape handler reads.
    pub fn data_file(&self) -> &Path {
        &self.data_file
    }

    /// Scrape-time state of one deployment.
    pub fn set_deployment(&self, deployment: &str, cooling: bool, in_flight: u32) {
        if let Some(d) = self.deployments.get(deployment) {
            d.cooling.set(i64::from(cooling));
            d.in_flight.set(i64::from(in_flight));
        }
    }

    /// The Prometheus text exposition (format 0.0.4), with the values only known at scrape
    /// time filled in first.
    pub fn encode(
        &self,
        spend_rows_dropped: u64,
        database_bytes: Option<u64>,
    ) -> Result<String, std::fmt::Error> {
        self.spend_rows_dropped
            .inner()
            .store(spend_rows_dropped, Ordering::Relaxed);
        if let Some(bytes) = database_bytes {
            self.database_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(
            &["/v1/chat/completions", "/v1/embeddings"],
            ["gpt", "mock/*"],
            [DeploymentName {
                model: "gpt",
                id: "d1",
            }],
            Path::new("/nonexistent"),
            MetricsAuth::None,
        )
    }

    #[test]
    fn statuses_map_to_bounded_slots() {
        assert_eq!(STATUS_LABELS[status_slot(200)], "200");
        assert_eq!(STATUS_LABELS[status_slot(429)], "429");
        assert_eq!(STATUS_LABELS[status_slot(418)], "4xx");
        assert_eq!(STATUS_LABELS[status_slot(599)], "5xx");
        assert_eq!(STATUS_LABELS[status_slot(999)], "5xx");
        assert_eq!(STATUS_LABELS[status_slot(0)], "1xx");
    }

    #[test]
    fn records_into_the_exposition() {
        let m = metrics();
        let gpt = m.model("gpt").clone();
        gpt.request(0, 200);
        gpt.request(0, 200);
        gpt.request(1, 418);
        m.model("not-configured").request(0, 404);
        gpt.duration(Duration::from_millis(300));
        gpt.usage(10, 5, 0.25);
        m.limit_rejected("key", "budget");
        m.upstream_error("d1", "5xx");
        m.upstream_error("nope", "5xx");
        m.set_deployment("d1", true, 3);
        let text = m.encode(7, Some(4096)).unwrap();
        for line in [
            r#"portcullis_requests_total{route="/v1/chat/completions",model="gpt",status="200"} 2"#,
            r#"portcullis_requests_total{route="/v1/embeddings",model="gpt",status="4xx"} 1"#,
            r#"portcullis_requests_total{route="/v1/chat/completions",model="unknown",status="404"} 1"#,
            r#"portcullis_request_duration_seconds_bucket{model="gpt",le="0.5"} 1"#,
            r#"portcullis_request_duration_seconds_count{model="gpt"} 1"#,
            r#"portcullis_tokens_total{model="gpt",type="prompt"} 10"#,
            r#"portcullis_spend_usd_total{model="gpt"} 0.25"#,
            r#"portcullis_limit_rejections_total{level="key",kind="budget"} 1"#,
            r#"portcullis_limit_rejections_total{level="team",kind="rpm"} 0"#,
            r#"portcullis_upstream_errors_total{model="gpt",deployment="d1",class="5xx"} 1"#,
            r#"portcullis_deployment_cooling{model="gpt",deployment="d1"} 1"#,
            r#"portcullis_upstream_in_flight{model="gpt",deployment="d1"} 3"#,
            "portcullis_spend_log_rows_dropped_total 7",
            "portcullis_database_size_bytes 4096",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        // Nothing was recorded for `mock/*`: no series of its own yet.
        assert!(!text.contains("mock/*"), "{text}");
    }
}
