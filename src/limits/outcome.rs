//! What admission and settlement report back: refusals, rate-limit headers, budget crossings.

use std::fmt;
use std::time::Duration;

/// The values of the `x-ratelimit-*` response headers: the tightest level for requests and
/// for tokens (its remaining count and its limit), `None` where no level has that limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit_requests: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub remaining_tokens: Option<u64>,
}

impl RateHeaders {
    pub(crate) fn note_requests(&mut self, limit: u64, remaining: u64) {
        if self.remaining_requests.is_none_or(|r| remaining < r) {
            self.remaining_requests = Some(remaining);
            self.limit_requests = Some(limit);
        }
    }

    pub(crate) fn note_tokens(&mut self, limit: u64, remaining: u64) {
        if self.remaining_tokens.is_none_or(|r| remaining < r) {
            self.remaining_tokens = Some(remaining);
            self.limit_tokens = Some(limit);
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum RefusalKind {
    /// `spend` is the period's settled spend, `reserved` what running requests may still add.
    Budget {
        spend: f64,
        reserved: f64,
        max_budget: f64,
        budget_reset_at_ms: Option<i64>,
    },
    Rpm {
        limit: u64,
        retry_after: Duration,
    },
    Tpm {
        limit: u64,
        retry_after: Duration,
    },
    Parallel {
        limit: u64,
    },
}

/// Why a request may not run: the first level (in the caller's order) without headroom.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub level: &'static str,
    pub id: String,
    pub kind: RefusalKind,
    /// Rate headers of the levels checked so far, the refusing one included.
    pub headers: RateHeaders,
}

impl Refusal {
    /// The wait a `Retry-After` header should announce, for rate refusals.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            RefusalKind::Rpm { retry_after, .. } | RefusalKind::Tpm { retry_after, .. } => {
                Some(retry_after)
            }
            RefusalKind::Budget { .. } | RefusalKind::Parallel { .. } => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (level, id) = (self.level, &self.id);
        match &self.kind {
            RefusalKind::Budget {
                spend, max_budget, ..
            } => write!(
                f,
                "Budget has been exceeded! {level} {id}: current cost {spend}, max budget {max_budget}"
            ),
            RefusalKind::Rpm { limit, retry_after } => write!(
                f,
                "Rate limit exceeded for {level} {id}: requests per minute limit {limit}; retry after {:.1}s",
                retry_after.as_secs_f64()
            ),
            RefusalKind::Tpm { limit, retry_after } => write!(
                f,
                "Rate limit exceeded for {level} {id}: tokens per minute limit {limit}; retry after {:.1}s",
                retry_after.as_secs_f64()
            ),
            RefusalKind::Parallel { limit } => write!(
                f,
                "Max parallel request limit reached for {level} {id}: limit {limit}"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    Soft,
    Max,
}

/// A budget threshold that a settle carried a level's spend across (once per period).
#[derive(Clone, Debug, PartialEq)]
pub struct Crossing {
    pub level: &'static str,
    pub id: String,
    pub threshold: Threshold,
    pub spend: f64,
    pub budget: f64,
}
