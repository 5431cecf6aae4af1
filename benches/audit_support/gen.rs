//! Deterministic audit-log data and query set for `benches/audit.rs`.
//!
//! Everything here is a pure function of `(n, seed)`: the same arguments give byte-identical
//! entries on every machine, so both sides of the benchmark (Portcullis and PostgreSQL) load the
//! same data and answer the same queries. The random source is SplitMix64 (a 64-bit counter
//! through a mixing function): tiny, fast and good enough for test data; no `rand` crate.
//!
//! Shape of the data (LiteLLM admin traffic as it shows in `LiteLLM_AuditLog`):
//! - tables: key 50 %, user 20 %, team 15 %, organization 5 %, customer 5 %, model 4.9 %,
//!   audit 0.1 % (retention purges);
//! - actions per table weighted like real admin traffic (`updated` most, then `created`,
//!   `deleted`; `rotated` only on keys; `blocked`/`unblocked` on keys, teams and customers);
//! - 2,000 actors (`user-0042` or `first.last@company.example`, a few very busy, most rare) plus
//!   the master key's `default_user_id` (8 %); 30 % of entries carry the actor's 64-hex key hash;
//! - 200 organisations in a tree up to 4 deep: `scope` is the path root→leaf of the changed
//!   object's organisation (empty for global objects: models and the audit log itself);
//! - `before_value` / `updated_values` are JSON texts shaped like LiteLLM's key, team, user,
//!   organisation, end-user and model records (full record before a change, the changed fields
//!   after, `""` where LiteLLM stores NULL). Free text (aliases, tags, descriptions) is drawn from
//!   a fixed vocabulary of 5,000 made-up six-letter words with Zipf (s = 1) frequencies, so a
//!   query can pick a common, a mid-frequency or a rare word by rank ([`vocabulary`]).
//!
//! Vocabulary words are lowercase ASCII `CVCVCV` strings that never occur elsewhere in the data
//! (checked against every fixed string used here), and they only ever appear between spaces,
//! quotes or hyphens. So "entry matches word w" means the same thing for any tokenizer that splits
//! on non-alphanumerics (tantivy's default, PostgreSQL's `simple` text search configuration):
//! [`expected_totals`] counts matches that way.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

/// 2026-12-01T00:00:00Z: the entries cover the 90 days before it.
pub const END_MS: i64 = 1_796_083_200_000;
pub const DAY_MS: i64 = 86_400_000;
pub const SPAN_MS: i64 = 90 * DAY_MS;
pub const START_MS: i64 = END_MS - SPAN_MS;
pub const DEFAULT_SEED: u64 = 42;
/// Timed runs of each query kind (parameters rotate across iterations).
pub const ITERATIONS: usize = 200;
/// Untimed runs of each kind before the timed ones (the first `WARMUP` queries of that kind).
pub const WARMUP: usize = 20;
pub const PAGE_SIZE: usize = 50;
pub const VOCABULARY: usize = 5_000;

pub const FILTER_ONLY: &str = "filter_only";
pub const FREE_TEXT: &str = "free_text";
pub const TEXT_FILTER_TIME: &str = "text_filter_time";
pub const DEEP_PAGE: &str = "deep_page";
/// The query kinds, in report order.
pub const QUERY_NAMES: [&str; 4] = [FILTER_ONLY, FREE_TEXT, TEXT_FILTER_TIME, DEEP_PAGE];

/// One audit-log entry. Strings that LiteLLM stores as NULL are `""` (JSON values) or `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct GenEntry {
    /// 1..=n, in timestamp order.
    pub seq: u64,
    /// Unix ms, strictly increasing with `seq`.
    pub timestamp_ms: i64,
    pub changed_by: String,
    /// SHA-256-like 64-hex hash of the key the change was made with (30 % of entries).
    pub changed_by_api_key: Option<String>,
    pub actor_role: Option<String>,
    /// created / updated / deleted / blocked / unblocked / rotated
    pub action: String,
    /// key / user / team / organization / customer / model / audit
    pub table_name: String,
    pub object_id: String,
    /// JSON text, or "" (created entries, purges).
    pub before_value: String,
    /// JSON text, or "" (deleted entries).
    pub updated_values: String,
    /// Organisation ids root→leaf of the changed object; empty for global objects.
    pub scope: Vec<String>,
    pub request_id: String,
    pub source_ip: String,
    pub user_agent: String,
}

/// One run of one query. `name` is one of [`QUERY_NAMES`]; `None` fields do not filter.
/// Results are ordered newest first (`timestamp_ms` descending; timestamps are unique).
#[derive(Clone, Debug, PartialEq)]
pub struct BenchQuery {
    pub name: &'static str,
    /// A single word that must occur in `before_value` or `updated_values` (as a token).
    pub text: Option<String>,
    pub table_name: Option<String>,
    pub action: Option<String>,
    /// Inclusive lower bound on `timestamp_ms`.
    pub start_ms: Option<i64>,
    /// Exclusive upper bound on `timestamp_ms`.
    pub end_ms: Option<i64>,
    /// 1-based.
    pub page: usize,
    pub page_size: usize,
    /// Also compute the total number of matches (LiteLLM's `GET /audit` returns `total`): timed
    /// together with the page, as one query.
    pub with_total: bool,
}

impl BenchQuery {
    pub fn offset(&self) -> usize {
        self.page.saturating_sub(1) * self.page_size
    }

    /// Rows on the requested page when `total` entries match.
    pub fn page_rows(&self, total: u64) -> u64 {
        total
            .saturating_sub(self.offset() as u64)
            .min(self.page_size as u64)
    }

    /// Does `e` match this query's filter (ignoring paging)?
    pub fn matches(&self, e: &GenEntry) -> bool {
        self.table_name.as_deref().is_none_or(|t| e.table_name == t)
            && self.action.as_deref().is_none_or(|a| e.action == a)
            && self.start_ms.is_none_or(|s| e.timestamp_ms >= s)
            && self.end_ms.is_none_or(|x| e.timestamp_ms < x)
            && self
                .text
                .as_deref()
                .is_none_or(|w| has_token(&e.before_value, w) || has_token(&e.updated_values, w))
    }
}

/// What each query kind asks, for the report.
pub fn describe(name: &str) -> &'static str {
    match name {
        FILTER_ONLY => {
            "table_name=key AND action=<updated|created|deleted|rotated|blocked>, newest first, page 1 of 50, with total count"
        }
        FREE_TEXT => {
            "one mid-frequency word (rank 140..520 of 5,000) anywhere in the values, newest 50"
        }
        TEXT_FILTER_TIME => {
            "a common word (rank 1..5) AND action=<updated|created|deleted> AND a 7-day window, newest 50"
        }
        DEEP_PAGE => {
            "table_name=key AND action=<updated|created>, page 1000 of 50 (offset 49,950; page n/800 below 800,000 entries), with total count"
        }
        _ => "",
    }
}

// ---------------------------------------------------------------------------------------------
// Random source.

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of (seed, tag, index): the stable per-object randomness.
fn h(seed: u64, tag: u64, i: u64) -> u64 {
    mix(mix(seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ i)
}

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed ^ 0x5DEE_CE66_D1CE_4E5B))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in lo..=hi.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Index in 0..n, skewed towards 0 (a few hot objects, a long tail).
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * n as f64) as usize).min(n - 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }

    fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut r = self.below(total as usize) as u32;
        for (item, w) in items {
            if r < *w {
                return item;
            }
            r -= w;
        }
        &items[items.len() - 1].0
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed vocabularies. Every string here is also fed to `reserved()`, so no generated word equals
// one of their tokens.

const FIRST_NAMES: [&str; 50] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "xavier", "yara",
    "zoe", "amir", "bea", "chen", "diego", "emma", "farah", "gita", "hiro", "ines", "jonas",
    "kofi", "lena", "mateo", "nadia", "oscar", "priya", "quinn", "rosa", "sami", "tomas", "uma",
    "vera", "wen", "yusuf", "zara", "noor", "liam", "ana",
];
const LAST_NAMES: [&str; 50] = [
    "smith",
    "jones",
    "garcia",
    "mueller",
    "rossi",
    "tanaka",
    "kim",
    "nguyen",
    "patel",
    "okafor",
    "silva",
    "novak",
    "haddad",
    "larsen",
    "dubois",
    "kowalski",
    "ivanova",
    "cohen",
    "murphy",
    "schmidt",
    "moreau",
    "costa",
    "berg",
    "lindqvist",
    "horvat",
    "yilmaz",
    "fischer",
    "romero",
    "santos",
    "ito",
    "park",
    "khan",
    "ali",
    "hughes",
    "walsh",
    "byrne",
    "meyer",
    "weber",
    "wagner",
    "becker",
    "hoffmann",
    "koch",
    "richter",
    "klein",
    "wolf",
    "neumann",
    "braun",
    "zimmer",
    "lange",
    "moore",
];
const COMPANIES: [&str; 4] = ["acme-corp", "globex", "initech", "umbrella-labs"];
const MODELS: [&str; 12] = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "o3-mini",
    "claude-3-5-sonnet",
    "claude-3-7-sonnet",
    "claude-3-5-haiku",
    "gemini-1.5-pro",
    "gemini-2.0-flash",
    "mistral-large",
    "llama-3.1-70b",
    "text-embedding-3-small",
];
const PROVIDERS: [&str; 5] = ["openai", "azure", "anthropic", "vertex_ai", "bedrock"];
const API_BASES: [&str; 4] = [
    "https://api.openai.com/v1",
    "https://eastus-prod.openai.azure.com",
    "https://api.anthropic.com",
    "https://bedrock-runtime.eu-west-1.amazonaws.com",
];
const ENVIRONMENTS: [&str; 4] = ["prod", "staging", "dev", "sandbox"];
const KEY_SUFFIXES: [&str; 5] = ["svc", "bot", "app", "ci", "batch"];
const USER_ROLES: [&str; 5] = [
    "proxy_admin",
    "proxy_admin_viewer",
    "org_admin",
    "internal_user",
    "internal_user_viewer",
];
const BUDGET_DURATIONS: [&str; 4] = ["1d", "7d", "30d", "1mo"];
const USER_AGENTS: [(&str, u32); 7] = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        30,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        15,
    ),
    ("python-requests/2.32.3", 20),
    ("curl/8.5.0", 10),
    ("terraform-provider-litellm/0.3.2", 12),
    ("OpenAI/Python 1.58.1", 5),
    ("litellm-admin-cli/1.4.0", 8),
];
/// JSON field names and other fixed text used in the records.
const FIXED_TEXT: &str = "token key_name key_alias spend max_budget budget_duration models tpm_limit \
    rpm_limit max_parallel_requests user_id team_id organization_id blocked expires allowed_routes \
    llm_api_routes info_routes metadata tags description environment cost_center updated_at created_by \
    updated_by team_alias admins members_with_roles role user admin user_email user_role teams \
    sso_user_id department organization_alias parent_id budget_id alias allowed_model_region eu us \
    default_model model_id model_name litellm_params model api_base api_version model_info id \
    db_model base_model purged_entries older_than reason retention policy null true false sk cc \
    default_user_id team org cust budget 2024-10-21 2025-01-01 2027-03-01T00:00:00Z example";

fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
}

fn has_token(text: &str, word: &str) -> bool {
    tokens(text).any(|t| t.eq_ignore_ascii_case(word))
}

fn reserved() -> HashSet<String> {
    let mut all: Vec<&str> = vec![FIXED_TEXT];
    all.extend(FIRST_NAMES);
    all.extend(LAST_NAMES);
    all.extend(COMPANIES);
    all.extend(MODELS);
    all.extend(PROVIDERS);
    all.extend(API_BASES);
    all.extend(ENVIRONMENTS);
    all.extend(KEY_SUFFIXES);
    all.extend(USER_ROLES);
    all.extend(BUDGET_DURATIONS);
    all.iter()
        .flat_map(|s| tokens(s))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The fixed vocabulary: `VOCABULARY` distinct made-up words; index 0 is rank 1 (most common).
/// Independent of the seed, so [`queries`] can name words without the data.
pub fn vocabulary() -> Vec<String> {
    const CONSONANTS: &[u8] = b"bdfgklmnprstvz";
    const VOWELS: &[u8] = b"aeiou";
    let syllables = CONSONANTS.len() * VOWELS.len();
    let reserved = reserved();
    let mut seen = HashSet::new();
    let mut words = Vec::with_capacity(VOCABULARY);
    let mut j = 0u64;
    while words.len() < VOCABULARY {
        let mut x = mix(j ^ 0x000A_0D17_u64.wrapping_mul(0x1000_0001));
        j += 1;
        let mut w = String::with_capacity(6);
        for _ in 0..3 {
            let s = (x % syllables as u64) as usize;
            x /= syllables as u64;
            w.push(char::from(CONSONANTS[s / VOWELS.len()]));
            w.push(char::from(VOWELS[s % VOWELS.len()]));
        }
        if !reserved.contains(&w) && seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

// ---------------------------------------------------------------------------------------------
// The world the entries talk about.

const ACTORS: usize = 2_000;
const USERS: usize = 8_000;
const KEYS: usize = 60_000;
const TEAMS: usize = 600;
const ORGS: usize = 200;
const ORG_ROOTS: usize = 10;
const ORG_DEPTH: usize = 4;
const CUSTOMERS: usize = 4_000;
const MODEL_DEPLOYMENTS: usize = 300;

// Tags for per-object hashes.
const T_KEY: u64 = 1;
const T_TEAM: u64 = 2;
const T_USER: u64 = 3;
const T_ORG: u64 = 4;
const T_CUSTOMER: u64 = 5;
const T_MODEL: u64 = 6;
const T_ADMIN_KEY: u64 = 7;
const T_ACTOR: u64 = 8;
const T_ENTRY_ID: u64 = 9;

struct World {
    seed: u64,
    vocab: Vec<String>,
    /// Cumulative Zipf probabilities of the vocabulary ranks.
    cdf: Vec<f64>,
    org_parent: Vec<Option<usize>>,
    org_path: Vec<Vec<String>>,
    master_key: String,
}

impl World {
    fn new(seed: u64) -> World {
        let vocab = vocabulary();
        let mut cdf = Vec::with_capacity(vocab.len());
        let mut acc = 0.0;
        for r in 1..=vocab.len() {
            acc += 1.0 / r as f64;
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        let mut rng = Rng::new(h(seed, T_ORG, u64::MAX));
        let mut org_parent = Vec::with_capacity(ORGS);
        let mut depth: Vec<usize> = Vec::with_capacity(ORGS);
        let mut org_path: Vec<Vec<String>> = Vec::with_capacity(ORGS);
        for i in 0..ORGS {
            let parent = if i < ORG_ROOTS {
                None
            } else {
                // Any earlier organisation that still has room below it (roots always do).
                let mut p = rng.below(i);
                while depth[p] >= ORG_DEPTH {
                    p = rng.below(i);
                }
                Some(p)
            };
            let mut path = parent.map(|p| org_path[p].clone()).unwrap_or_default();
            path.push(org_id(i));
            depth.push(parent.map_or(1, |p| depth[p] + 1));
            org_parent.push(parent);
            org_path.push(path);
        }
        let master_key = hex64(seed, T_ADMIN_KEY, u64::MAX);
        World {
            seed,
            vocab,
            cdf,
            org_parent,
            org_path,
            master_key,
        }
    }

    fn obj(&self, tag: u64, i: usize) -> Rng {
        Rng::new(h(self.seed, tag, i as u64))
    }

    fn zipf<'a>(&'a self, rng: &mut Rng) -> &'a str {
        let u = rng.unit();
        let i = self.cdf.partition_point(|&c| c < u);
        &self.vocab[i.min(self.vocab.len() - 1)]
    }

    fn words(&self, rng: &mut Rng, n: usize, sep: &str) -> String {
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push_str(sep);
            }
            s.push_str(self.zipf(rng));
        }
        s
    }

    fn words_between(&self, rng: &mut Rng, lo: usize, hi: usize) -> String {
        let n = rng.range(lo, hi);
        self.words(rng, n, " ")
    }

    fn tags(&self, rng: &mut Rng, lo: usize, hi: usize) -> Vec<String> {
        let n = rng.range(lo, hi);
        (0..n).map(|_| self.zipf(rng).to_string()).collect()
    }

    fn team_org(&self, t: usize) -> usize {
        (h(self.seed, T_TEAM, t as u64) % ORGS as u64) as usize
    }
    fn user_org(&self, u: usize) -> usize {
        (h(self.seed, T_USER, u as u64) % ORGS as u64) as usize
    }
    fn customer_org(&self, c: usize) -> usize {
        (h(self.seed, T_CUSTOMER, c as u64) % ORGS as u64) as usize
    }
    fn key_team(&self, k: usize) -> usize {
        (h(self.seed, T_KEY, k as u64) % TEAMS as u64) as usize
    }
    fn key_user(&self, k: usize) -> usize {
        (h(self.seed, T_KEY ^ 0x100, k as u64) % USERS as u64) as usize
    }
    fn key_token(&self, k: usize, generation: u64) -> String {
        hex64(self.seed, T_KEY ^ 0x200 ^ (generation << 16), k as u64)
    }

    // --- records (full JSON objects, as LiteLLM's tables return them) ---

    fn key_record(&self, k: usize, token: &str, blocked: bool, ts: i64, rng: &mut Rng) -> String {
        let mut o = self.obj(T_KEY, k);
        let team = self.key_team(k);
        let alias = if o.chance(0.9) {
            Some(format!(
                "{}-{}",
                self.words(&mut o, 2, "-"),
                o.pick_str(&KEY_SUFFIXES)
            ))
        } else {
            None
        };
        let models = pick_models(&mut o, 1, 3);
        let max_budget = budget(&mut o);
        let duration = o.pick_str(&BUDGET_DURATIONS).to_string();
        let (tpm, rpm) = limits(&mut o);
        let tags = self.tags(&mut o, 0, 3);
        let description = self.words_between(&mut o, 2, 8);
        let env = o.pick_str(&ENVIRONMENTS).to_string();
        let created_by = user_id(o.below(ACTORS));
        Json::new()
            .s("token", token)
            .s("key_name", &format!("sk-...{}", &token[60..]))
            .opt_s("key_alias", alias.as_deref())
            .f("spend", rng.unit() * max_budget.unwrap_or(500.0))
            .opt_f("max_budget", max_budget)
            .s("budget_duration", &duration)
            .strs("models", &models)
            .opt_i("tpm_limit", tpm)
            .opt_i("rpm_limit", rpm)
            .null("max_parallel_requests")
            .s("user_id", &user_id(self.key_user(k)))
            .s("team_id", &team_id(team))
            .s("organization_id", &org_id(self.team_org(team)))
            .b("blocked", blocked)
            .null("expires")
            .strs("allowed_routes", &["llm_api_routes"])
            .raw(
                "metadata",
                &Json::new()
                    .strs("tags", &tags)
                    .s("description", &description)
                    .s("environment", &env)
                    .s("cost_center", &format!("cc-{}", 1000 + k % 97))
                    .done(),
            )
            .s("created_by", &created_by)
            .s("updated_at", &iso_utc(ts))
            .done()
    }

    fn key_update(&self, k: usize, rng: &mut Rng) -> String {
        let token = self.key_token(k, 0);
        let j = Json::new().s("token", &token);
        let j = match rng.below(100) {
            0..35 => j.raw(
                "metadata",
                &Json::new()
                    .strs("tags", &self.tags(rng, 1, 3))
                    .s("description", &self.words_between(rng, 2, 8))
                    .done(),
            ),
            35..55 => j
                .opt_f("max_budget", budget(rng))
                .s("budget_duration", rng.pick_str(&BUDGET_DURATIONS)),
            55..70 => j.strs("models", &pick_models(rng, 1, 4)),
            70..85 => {
                let (tpm, rpm) = limits(rng);
                j.opt_i("tpm_limit", tpm).opt_i("rpm_limit", rpm)
            }
            _ => j.s(
                "key_alias",
                &format!(
                    "{}-{}",
                    self.words(rng, 2, "-"),
                    rng.pick_str(&KEY_SUFFIXES)
                ),
            ),
        };
        j.done()
    }

    fn team_record(&self, t: usize, blocked: bool, ts: i64, rng: &mut Rng) -> String {
        let mut o = self.obj(T_TEAM, t);
        let alias = self.words(&mut o, 2, " ");
        let members: Vec<String> = (0..o.range(1, 6))
            .map(|_| {
                Json::new()
                    .s("user_id", &user_id(o.below(USERS)))
                    .s("role", if o.chance(0.2) { "admin" } else { "user" })
                    .done()
            })
            .collect();
        let admins = vec![user_id(o.below(ACTORS))];
        let models = pick_models(&mut o, 1, 5);
        let max_budget = budget(&mut o);
        let (tpm, rpm) = limits(&mut o);
        let tags = self.tags(&mut o, 0, 3);
        let description = self.words_between(&mut o, 3, 10);
        Json::new()
            .s("team_id", &team_id(t))
            .s("team_alias", &alias)
            .s("organization_id", &org_id(self.team_org(t)))
            .strs("admins", &admins)
            .raw_arr("members_with_roles", &members)
            .strs("models", &models)
            .opt_f("max_budget", max_budget)
            .f("spend", rng.unit() * max_budget.unwrap_or(5000.0))
            .opt_i("tpm_limit", tpm)
            .opt_i("rpm_limit", rpm)
            .s("budget_duration", o.pick_str(&BUDGET_DURATIONS))
            .b("blocked", blocked)
            .raw(
                "metadata",
                &Json::new()
                    .strs("tags", &tags)
                    .s("description", &description)
                    .done(),
            )
            .s("updated_at", &iso_utc(ts))
            .done()
    }

    fn team_update(&self, t: usize, rng: &mut Rng) -> String {
        let j = Json::new().s("team_id", &team_id(t));
        let j = match rng.below(100) {
            0..35 => j.raw(
                "metadata",
                &Json::new()
                    .strs("tags", &self.tags(rng, 1, 3))
                    .s("description", &self.words_between(rng, 3, 10))
                    .done(),
            ),
            35..55 => j.opt_f("max_budget", budget(rng)),
            55..70 => j.strs("models", &pick_models(rng, 1, 5)),
            70..90 => j.raw_arr(
                "members_with_roles",
                &[Json::new()
                    .s("user_id", &user_id(rng.below(USERS)))
                    .s("role", "user")
                    .done()],
            ),
            _ => j.s("team_alias", &self.words(rng, 2, " ")),
        };
        j.done()
    }

    fn user_record(&self, u: usize, ts: i64, rng: &mut Rng) -> String {
        let mut o = self.obj(T_USER, u);
        let teams: Vec<String> = (0..o.range(0, 3))
            .map(|_| team_id(o.below(TEAMS)))
            .collect();
        let role = if u < ACTORS {
            actor_role(self.seed, u)
        } else {
            "internal_user"
        };
        let max_budget = budget(&mut o);
        let tags = self.tags(&mut o, 0, 2);
        let department = self.zipf(&mut o).to_string();
        Json::new()
            .s("user_id", &user_id(u))
            .s("user_email", &email(u))
            .s("user_role", role)
            .strs("teams", &teams)
            .strs("models", &[] as &[&str])
            .opt_f("max_budget", max_budget)
            .f("spend", rng.unit() * max_budget.unwrap_or(100.0))
            .s("budget_duration", o.pick_str(&BUDGET_DURATIONS))
            .s("organization_id", &org_id(self.user_org(u)))
            .null("sso_user_id")
            .raw(
                "metadata",
                &Json::new()
                    .strs("tags", &tags)
                    .s("department", &department)
                    .done(),
            )
            .s("updated_at", &iso_utc(ts))
            .done()
    }

    fn user_update(&self, u: usize, rng: &mut Rng) -> String {
        let j = Json::new().s("user_id", &user_id(u));
        let j = match rng.below(100) {
            0..30 => j.s("user_role", rng.pick_str(&USER_ROLES)),
            30..55 => j.opt_f("max_budget", budget(rng)),
            55..75 => j.strs("teams", &[team_id(rng.below(TEAMS))]),
            _ => j.raw(
                "metadata",
                &Json::new()
                    .strs("tags", &self.tags(rng, 1, 2))
                    .s("department", self.zipf(rng))
                    .done(),
            ),
        };
        j.done()
    }

    fn org_record(&self, g: usize, ts: i64, rng: &mut Rng) -> String {
        let mut o = self.obj(T_ORG, g);
        let alias = self.words(&mut o, 2, " ");
        let models = pick_models(&mut o, 2, 6);
        let max_budget = budget(&mut o);
        let tags = self.tags(&mut o, 0, 3);
        let description = self.words_between(&mut o, 3, 10);
        Json::new()
            .s("organization_id", &org_id(g))
            .s("organization_alias", &alias)
            .opt_s("parent_id", self.org_parent[g].map(org_id).as_deref())
            .strs("models", &models)
            .s("budget_id", &format!("budget-{g:03}"))
            .opt_f("max_budget", max_budget)
            .f("spend", rng.unit() * max_budget.unwrap_or(50_000.0))
            .raw(
                "metadata",
                &Json::new()
                    .strs("tags", &tags)
                    .s("description", &description)
                    .done(),
            )
            .s("created_by", &user_id(o.below(ACTORS)))
            .s("updated_at", &iso_utc(ts))
            .done()
    }

    fn org_update(&self, g: usize, rng: &mut Rng) -> String {
        let j = Json::new().s("organization_id", &org_id(g));
        let j = match rng.below(100) {
            0..40 => j.raw(
                "metadata",
                &Json::new()
                    .strs("tags", &self.tags(rng, 1, 3))
                    .s("description", &self.words_between(rng, 3, 10))
                    .done(),
            ),
            40..70 => j.opt_f("max_budget", budget(rng)),
            70..90 => j.strs("models", &pick_models(rng, 2, 6)),
            _ => j.s("organization_alias", &self.words(rng, 2, " ")),
        };
        j.done()
    }

    fn customer_record(&self, c: usize, blocked: bool, rng: &mut Rng) -> String {
        let mut o = self.obj(T_CUSTOMER, c);
        let alias = self.words(&mut o, 2, "-");
        let max_budget = budget(&mut o);
        let region = match o.below(3) {
            0 => Some("eu"),
            1 => Some("us"),
            _ => None,
        };
        Json::new()
            .s("user_id", &customer_id(c))
            .s("alias", &alias)
            .b("blocked", blocked)
            .f("spend", rng.unit() * max_budget.unwrap_or(20.0))
            .opt_f("max_budget", max_budget)
            .s("budget_id", &format!("budget-cust-{c:05}"))
            .opt_s("allowed_model_region", region)
            .s("default_model", o.pick_str(&MODELS))
            .done()
    }

    fn customer_update(&self, c: usize, rng: &mut Rng) -> String {
        let j = Json::new().s("user_id", &customer_id(c));
        let j = match rng.below(100) {
            0..45 => j.opt_f("max_budget", budget(rng)),
            45..70 => j.s(
                "allowed_model_region",
                if rng.chance(0.5) { "eu" } else { "us" },
            ),
            70..85 => j.s("default_model", rng.pick_str(&MODELS)),
            _ => j.s("alias", &self.words(rng, 2, "-")),
        };
        j.done()
    }

    fn model_record(&self, m: usize, rng: &mut Rng) -> String {
        let mut o = self.obj(T_MODEL, m);
        let name = o.pick_str(&MODELS).to_string();
        let provider = o.pick_str(&PROVIDERS).to_string();
        let description = self.words_between(&mut o, 2, 6);
        let (tpm, rpm) = limits(rng);
        Json::new()
            .s("model_id", &model_id(self.seed, m))
            .s("model_name", &name)
            .raw(
                "litellm_params",
                &Json::new()
                    .s("model", &format!("{provider}/{name}"))
                    .s("api_base", o.pick_str(&API_BASES))
                    .s("api_version", "2024-10-21")
                    .opt_i("tpm", tpm)
                    .opt_i("rpm", rpm)
                    .done(),
            )
            .raw(
                "model_info",
                &Json::new()
                    .s("id", &model_id(self.seed, m))
                    .b("db_model", true)
                    .s("base_model", &name)
                    .s("description", &description)
                    .done(),
            )
            .done()
    }

    fn model_update(&self, m: usize, rng: &mut Rng) -> String {
        let (tpm, rpm) = limits(rng);
        let j = Json::new().s("model_id", &model_id(self.seed, m));
        if rng.chance(0.6) {
            j.raw(
                "litellm_params",
                &Json::new().opt_i("tpm", tpm).opt_i("rpm", rpm).done(),
            )
            .done()
        } else {
            j.raw(
                "model_info",
                &Json::new()
                    .s("description", &self.words_between(rng, 2, 6))
                    .done(),
            )
            .done()
        }
    }
}

fn hex64(seed: u64, tag: u64, i: u64) -> String {
    let mut s = String::with_capacity(64);
    let mut x = h(seed, tag, i);
    for _ in 0..4 {
        x = mix(x.wrapping_add(0x9E37_79B9_7F4A_7C15));
        let _ = write!(s, "{x:016x}");
    }
    s
}

fn uuid_from(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// LiteLLM's `id` column (a UUID) for entry `seq`: deterministic, unique per seq.
pub fn entry_id(seq: u64) -> String {
    uuid_from(h(0, T_ENTRY_ID, seq), mix(seq))
}

fn user_id(u: usize) -> String {
    format!("user-{u:04}")
}
fn team_id(t: usize) -> String {
    format!("team-{t:04}")
}
fn org_id(g: usize) -> String {
    format!("org-{g:03}")
}
fn customer_id(c: usize) -> String {
    format!("cust-{c:05}")
}
fn model_id(seed: u64, m: usize) -> String {
    let x = h(seed, T_MODEL, m as u64);
    uuid_from(x, mix(x))
}
fn email(u: usize) -> String {
    format!(
        "{}.{}@{}.example",
        FIRST_NAMES[u % FIRST_NAMES.len()],
        LAST_NAMES[(u / FIRST_NAMES.len()) % LAST_NAMES.len()],
        COMPANIES[(u / 7) % COMPANIES.len()]
    )
}
fn actor_role(seed: u64, a: usize) -> &'static str {
    match h(seed, T_ACTOR, a as u64) % 100 {
        0..8 => "proxy_admin",
        8..12 => "proxy_admin_viewer",
        12..40 => "org_admin",
        40..90 => "internal_user",
        _ => "internal_user_viewer",
    }
}
fn budget(rng: &mut Rng) -> Option<f64> {
    *rng.pick(&[
        None,
        Some(10.0),
        Some(50.0),
        Some(100.0),
        Some(250.0),
        Some(500.0),
        Some(1000.0),
        Some(5000.0),
    ])
}
fn limits(rng: &mut Rng) -> (Option<i64>, Option<i64>) {
    if rng.chance(0.4) {
        (None, None)
    } else {
        let tpm = *rng.pick(&[10_000i64, 50_000, 100_000, 500_000, 2_000_000]);
        (Some(tpm), Some(tpm / 100))
    }
}
fn pick_models(rng: &mut Rng, lo: usize, hi: usize) -> Vec<String> {
    let n = rng.range(lo, hi);
    let start = rng.below(MODELS.len());
    (0..n)
        .map(|i| MODELS[(start + i * 5) % MODELS.len()].to_string())
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix ms (UTC, proleptic Gregorian; PostgreSQL accepts it for
/// `timestamp` columns too, ignoring the zone).
pub fn iso_utc(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// A minimal JSON object writer (field order as written, like LiteLLM's records).
struct Json {
    buf: String,
    empty: bool,
}

impl Json {
    fn new() -> Json {
        let mut buf = String::with_capacity(256);
        buf.push('{');
        Json { buf, empty: true }
    }
    fn key(&mut self, k: &str) {
        if !self.empty {
            self.buf.push_str(", ");
        }
        self.empty = false;
        push_json_str(&mut self.buf, k);
        self.buf.push_str(": ");
    }
    fn s(mut self, k: &str, v: &str) -> Json {
        self.key(k);
        push_json_str(&mut self.buf, v);
        self
    }
    fn opt_s(self, k: &str, v: Option<&str>) -> Json {
        match v {
            Some(v) => self.s(k, v),
            None => self.null(k),
        }
    }
    fn f(mut self, k: &str, v: f64) -> Json {
        self.key(k);
        let _ = write!(self.buf, "{v:.2}");
        self
    }
    fn opt_f(self, k: &str, v: Option<f64>) -> Json {
        match v {
            Some(v) => self.f(k, v),
            None => self.null(k),
        }
    }
    fn opt_i(mut self, k: &str, v: Option<i64>) -> Json {
        match v {
            Some(v) => {
                self.key(k);
                let _ = write!(self.buf, "{v}");
                self
            }
            None => self.null(k),
        }
    }
    fn b(mut self, k: &str, v: bool) -> Json {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }
    fn null(mut self, k: &str) -> Json {
        self.key(k);
        self.buf.push_str("null");
        self
    }
    fn raw(mut self, k: &str, json: &str) -> Json {
        self.key(k);
        self.buf.push_str(json);
        self
    }
    fn strs<S: AsRef<str>>(mut self, k: &str, items: &[S]) -> Json {
        self.key(k);
        self.buf.push('[');
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                self.buf.push_str(", ");
            }
            push_json_str(&mut self.buf, s.as_ref());
        }
        self.buf.push(']');
        self
    }
    fn raw_arr(mut self, k: &str, items: &[String]) -> Json {
        self.key(k);
        self.buf.push('[');
        self.buf.push_str(&items.join(", "));
        self.buf.push(']');
        self
    }
    fn done(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

fn push_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}

// ---------------------------------------------------------------------------------------------
// The entry stream.

const TABLES: [(&str, u32); 7] = [
    ("key", 5000),
    ("user", 2000),
    ("team", 1500),
    ("organization", 500),
    ("customer", 500),
    ("model", 490),
    ("audit", 10),
];
const KEY_ACTIONS: [(&str, u32); 6] = [
    ("updated", 40),
    ("created", 25),
    ("deleted", 12),
    ("rotated", 10),
    ("blocked", 8),
    ("unblocked", 5),
];
const USER_ACTIONS: [(&str, u32); 3] = [("updated", 55), ("created", 30), ("deleted", 15)];
const TEAM_ACTIONS: [(&str, u32); 5] = [
    ("updated", 50),
    ("created", 22),
    ("deleted", 10),
    ("blocked", 10),
    ("unblocked", 8),
];
const ORG_ACTIONS: [(&str, u32); 3] = [("updated", 60), ("created", 25), ("deleted", 15)];
const CUSTOMER_ACTIONS: [(&str, u32); 5] = [
    ("updated", 40),
    ("created", 30),
    ("deleted", 10),
    ("blocked", 12),
    ("unblocked", 8),
];
const MODEL_ACTIONS: [(&str, u32); 3] = [("updated", 60), ("created", 25), ("deleted", 15)];

struct Generator {
    world: World,
    rng: Rng,
    next: u64,
    n: u64,
    gap: i64,
}

/// `n` entries, `seq` 1..=n, timestamps strictly increasing across the 90 days before
/// 2026-12-01 (evenly spread, each jittered within its slot). Deterministic in `(n, seed)`.
pub fn generate(n: usize, seed: u64) -> impl Iterator<Item = GenEntry> {
    let gap = (SPAN_MS / (n.max(1) as i64)).max(1);
    Generator {
        world: World::new(seed),
        rng: Rng::new(seed),
        next: 1,
        n: n as u64,
        gap,
    }
}

impl Iterator for Generator {
    type Item = GenEntry;

    fn next(&mut self) -> Option<GenEntry> {
        if self.next > self.n {
            return None;
        }
        let seq = self.next;
        self.next += 1;
        let w = &self.world;
        let rng = &mut self.rng;
        let ts = START_MS + (seq as i64 - 1) * self.gap + rng.below(self.gap as usize) as i64;

        // Who.
        let master = rng.chance(0.08);
        let actor = rng.skewed(ACTORS);
        let changed_by = if master {
            "default_user_id".to_string()
        } else if actor.is_multiple_of(3) {
            email(actor)
        } else {
            user_id(actor)
        };
        let changed_by_api_key = if rng.chance(0.30) {
            Some(if master {
                w.master_key.clone()
            } else {
                hex64(w.seed, T_ADMIN_KEY, (actor * 2 + rng.below(2)) as u64)
            })
        } else {
            None
        };
        let actor_role = if master {
            Some("proxy_admin".to_string())
        } else if rng.chance(0.05) {
            None
        } else {
            Some(actor_role(w.seed, actor).to_string())
        };
        let ah = h(w.seed, T_ACTOR, actor as u64);
        let source_ip = if rng.chance(0.05) {
            format!("203.0.113.{}", 1 + rng.below(254))
        } else {
            let slot = (ah >> 8) + rng.below(3) as u64;
            format!(
                "10.{}.{}.{}",
                (slot >> 8) % 64,
                (slot >> 16) % 256,
                1 + slot % 254
            )
        };
        let user_agent = if rng.chance(0.7) {
            USER_AGENTS[(ah >> 32) as usize % USER_AGENTS.len()].0
        } else {
            *rng.weighted(&USER_AGENTS)
        }
        .to_string();
        let request_id = uuid_from(rng.next_u64(), rng.next_u64());

        // What.
        let table = *rng.weighted(&TABLES);
        let (action, object_id, scope, before, after) = match table {
            "key" => {
                let action = *rng.weighted(&KEY_ACTIONS);
                let k = rng.skewed(KEYS);
                let token = w.key_token(k, 0);
                let scope = w.org_path[w.team_org(w.key_team(k))].clone();
                let (b, a) = match action {
                    "created" => (String::new(), w.key_record(k, &token, false, ts, rng)),
                    "deleted" => (w.key_record(k, &token, false, ts, rng), String::new()),
                    "blocked" | "unblocked" => {
                        let blocked = action == "blocked";
                        (
                            w.key_record(k, &token, !blocked, ts, rng),
                            Json::new().s("token", &token).b("blocked", blocked).done(),
                        )
                    }
                    "rotated" => {
                        let new_token = w.key_token(k, 1 + rng.below(1 << 20) as u64);
                        (
                            w.key_record(k, &token, false, ts, rng),
                            w.key_record(k, &new_token, false, ts, rng),
                        )
                    }
                    _ => (
                        w.key_record(k, &token, false, ts, rng),
                        w.key_update(k, rng),
                    ),
                };
                (action, token, scope, b, a)
            }
            "user" => {
                let action = *rng.weighted(&USER_ACTIONS);
                let u = rng.skewed(USERS);
                let scope = w.org_path[w.user_org(u)].clone();
                let (b, a) = match action {
                    "created" => (String::new(), w.user_record(u, ts, rng)),
                    "deleted" => (w.user_record(u, ts, rng), String::new()),
                    _ => (w.user_record(u, ts, rng), w.user_update(u, rng)),
                };
                (action, user_id(u), scope, b, a)
            }
            "team" => {
                let action = *rng.weighted(&TEAM_ACTIONS);
                let t = rng.skewed(TEAMS);
                let scope = w.org_path[w.team_org(t)].clone();
                let (b, a) = match action {
                    "created" => (String::new(), w.team_record(t, false, ts, rng)),
                    "deleted" => (w.team_record(t, false, ts, rng), String::new()),
                    "blocked" | "unblocked" => {
                        let blocked = action == "blocked";
                        (
                            w.team_record(t, !blocked, ts, rng),
                            Json::new()
                                .s("team_id", &team_id(t))
                                .b("blocked", blocked)
                                .done(),
                        )
                    }
                    _ => (w.team_record(t, false, ts, rng), w.team_update(t, rng)),
                };
                (action, team_id(t), scope, b, a)
            }
            "organization" => {
                let action = *rng.weighted(&ORG_ACTIONS);
                let g = rng.skewed(ORGS);
                let scope = w.org_path[g].clone();
                let (b, a) = match action {
                    "created" => (String::new(), w.org_record(g, ts, rng)),
                    "deleted" => (w.org_record(g, ts, rng), String::new()),
                    _ => (w.org_record(g, ts, rng), w.org_update(g, rng)),
                };
                (action, org_id(g), scope, b, a)
            }
            "customer" => {
                let action = *rng.weighted(&CUSTOMER_ACTIONS);
                let c = rng.skewed(CUSTOMERS);
                let scope = w.org_path[w.customer_org(c)].clone();
                let (b, a) = match action {
                    "created" => (String::new(), w.customer_record(c, false, rng)),
                    "deleted" => (w.customer_record(c, false, rng), String::new()),
                    "blocked" | "unblocked" => {
                        let blocked = action == "blocked";
                        (
                            w.customer_record(c, !blocked, rng),
                            Json::new()
                                .s("user_id", &customer_id(c))
                                .b("blocked", blocked)
                                .done(),
                        )
                    }
                    _ => (w.customer_record(c, false, rng), w.customer_update(c, rng)),
                };
                (action, customer_id(c), scope, b, a)
            }
            "model" => {
                let action = *rng.weighted(&MODEL_ACTIONS);
                let m = rng.skewed(MODEL_DEPLOYMENTS);
                let (b, a) = match action {
                    "created" => (String::new(), w.model_record(m, rng)),
                    "deleted" => (w.model_record(m, rng), String::new()),
                    _ => (w.model_record(m, rng), w.model_update(m, rng)),
                };
                (action, model_id(w.seed, m), Vec::new(), b, a)
            }
            _ => {
                // The retention job purging old audit entries.
                let purged = 1_000 + rng.below(50_000);
                let a = Json::new()
                    .i("purged_entries", purged as i64)
                    .s("older_than", &iso_utc(ts - 365 * DAY_MS))
                    .s("reason", "retention policy")
                    .done();
                (
                    "deleted",
                    "retention".to_string(),
                    Vec::new(),
                    String::new(),
                    a,
                )
            }
        };

        Some(GenEntry {
            seq,
            timestamp_ms: ts,
            changed_by,
            changed_by_api_key,
            actor_role,
            action: action.to_string(),
            table_name: table.to_string(),
            object_id,
            before_value: before,
            updated_values: after,
            scope,
            request_id,
            source_ip,
            user_agent,
        })
    }
}

impl Json {
    fn i(self, k: &str, v: i64) -> Json {
        self.opt_i(k, Some(v))
    }
}

// ---------------------------------------------------------------------------------------------
// Queries.

/// Vocabulary ranks of the `free_text` words: with this generator each occurs in 0.1 %..1 % of
/// entries (measured at 1M entries, seed 42: 0.12 %..0.6 %; the bench prints the mean).
const FREE_TEXT_RANKS: [usize; 20] = [
    140, 160, 180, 200, 220, 240, 260, 280, 300, 320, 340, 360, 380, 400, 420, 440, 460, 480, 500,
    520,
];
/// Vocabulary ranks of the common words of `text_filter_time`.
const COMMON_RANKS: [usize; 5] = [1, 2, 3, 4, 5];
const FILTER_ACTIONS: [&str; 5] = ["updated", "created", "deleted", "rotated", "blocked"];
const TEXT_ACTIONS: [&str; 3] = ["updated", "created", "deleted"];
const DEEP_ACTIONS: [&str; 2] = ["updated", "created"];
/// 7-day windows start every 8 days from the first day: 11 windows inside the 90 days.
const WINDOWS: usize = 11;

/// The benchmark's query runs: `ITERATIONS` of each kind, grouped by kind in [`QUERY_NAMES`]
/// order; within a kind the parameters rotate (actions, words, windows with coprime periods),
/// so consecutive runs rarely repeat. A side runs, per kind, the first [`WARMUP`] queries of
/// that kind untimed, then all of them timed.
///
/// `deep_page` asks for page 1000 (offset 49,950) when `n` >= 800,000; below that the page is
/// `n / 800` (at least 1), so the page still exists (key+created, the rarer of its two filters,
/// matches ~12.5 % of entries).
pub fn queries(n: usize) -> Vec<BenchQuery> {
    let vocab = vocabulary();
    let w = |rank: usize| vocab[rank - 1].clone();
    let deep_page = (n / 800).clamp(1, 1000);
    let base = BenchQuery {
        name: FILTER_ONLY,
        text: None,
        table_name: None,
        action: None,
        start_ms: None,
        end_ms: None,
        page: 1,
        page_size: PAGE_SIZE,
        with_total: false,
    };
    let mut out = Vec::with_capacity(QUERY_NAMES.len() * ITERATIONS);
    for i in 0..ITERATIONS {
        out.push(BenchQuery {
            name: FILTER_ONLY,
            table_name: Some("key".into()),
            action: Some(FILTER_ACTIONS[i % FILTER_ACTIONS.len()].into()),
            with_total: true,
            ..base.clone()
        });
    }
    for i in 0..ITERATIONS {
        out.push(BenchQuery {
            name: FREE_TEXT,
            text: Some(w(FREE_TEXT_RANKS[i % FREE_TEXT_RANKS.len()])),
            ..base.clone()
        });
    }
    for i in 0..ITERATIONS {
        let start = START_MS + (i % WINDOWS) as i64 * 8 * DAY_MS;
        out.push(BenchQuery {
            name: TEXT_FILTER_TIME,
            text: Some(w(COMMON_RANKS[i % COMMON_RANKS.len()])),
            action: Some(TEXT_ACTIONS[i % TEXT_ACTIONS.len()].into()),
            start_ms: Some(start),
            end_ms: Some(start + 7 * DAY_MS),
            ..base.clone()
        });
    }
    for i in 0..ITERATIONS {
        out.push(BenchQuery {
            name: DEEP_PAGE,
            table_name: Some("key".into()),
            action: Some(DEEP_ACTIONS[i % DEEP_ACTIONS.len()].into()),
            page: deep_page,
            with_total: true,
            ..base.clone()
        });
    }
    out
}

/// (text, table_name, action, start_ms, end_ms)
type FilterKey<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<i64>,
    Option<i64>,
);

/// The exact number of entries matching each query's filter (ignoring paging), by brute force:
/// the ground truth both sides are checked against. One pass over the entries.
pub fn expected_totals(entries: &[GenEntry], queries: &[BenchQuery]) -> Vec<u64> {
    // Distinct filters (many runs share one), and the words they use as bit positions.
    let mut words: HashMap<String, u32> = HashMap::new();
    let mut filters: Vec<&BenchQuery> = Vec::new();
    let mut filter_of: Vec<usize> = Vec::with_capacity(queries.len());
    let mut index: HashMap<FilterKey, usize> = HashMap::new();
    for q in queries {
        if let Some(t) = &q.text {
            let next = words.len() as u32;
            words.entry(t.to_ascii_lowercase()).or_insert(next);
        }
        let key = (
            q.text.as_deref(),
            q.table_name.as_deref(),
            q.action.as_deref(),
            q.start_ms,
            q.end_ms,
        );
        let f = *index.entry(key).or_insert_with(|| {
            filters.push(q);
            filters.len() - 1
        });
        filter_of.push(f);
    }
    // Up to 128 words get a bit in a per-entry mask; filters on any further word (none with
    // the standard query set) fall back to scanning the entry's text.
    let word_bit: Vec<Option<u128>> = filters
        .iter()
        .map(|q| {
            q.text
                .as_ref()
                .and_then(|t| words.get(&t.to_ascii_lowercase()))
                .filter(|&&b| b < 128)
                .map(|&b| 1u128 << b)
        })
        .collect();
    let word_len: HashSet<usize> = words.keys().map(String::len).collect();
    let mut counts = vec![0u64; filters.len()];
    let mut lower = String::new();
    for e in entries {
        let mut present = 0u128;
        if !words.is_empty() {
            for t in tokens(&e.before_value).chain(tokens(&e.updated_values)) {
                if word_len.contains(&t.len()) {
                    lower.clear();
                    lower.push_str(t);
                    lower.make_ascii_lowercase();
                    if let Some(&b) = words.get(lower.as_str()).filter(|&&b| b < 128) {
                        present |= 1u128 << b;
                    }
                }
            }
        }
        for (f, q) in filters.iter().enumerate() {
            // Filters without a text term (or with a word past the mask) take `matches`.
            let hit = match word_bit[f] {
                Some(bit) => {
                    present & bit != 0
                        && q.table_name.as_deref().is_none_or(|t| e.table_name == t)
                        && q.action.as_deref().is_none_or(|a| e.action == a)
                        && q.start_ms.is_none_or(|s| e.timestamp_ms >= s)
                        && q.end_ms.is_none_or(|x| e.timestamp_ms < x)
                }
                None => q.matches(e),
            };
            if hit {
                counts[f] += 1;
            }
        }
    }
    filter_of.iter().map(|&f| counts[f]).collect()
}
