//! Budgets, rate limits and spend, in memory on the request path; flushed to the store in
//! batches.
//!
//! This module owns one live [`Meter`] per governed object (key, user, team, team member,
//! organisation, end user), the admission decision that consults every level of a request,
//! the spend-log queue and the flusher that persists counters and logs. It must not touch the
//! store on the request path, take a lock wider than one meter, or hold two meters' locks at
//! once: admission visits the levels one after another.
//!
//! # How a budget is enforced (the arithmetic, in plain words)
//!
//! A request's cost is only known after the upstream answers, so a budget cannot be checked
//! against the cost of the request itself. Instead:
//!
//! * A level with `max_budget` admits a request while there is *any* headroom left, that is
//!   while `spend + reserved < max_budget`. "Reserved" is the estimated cost of the requests
//!   of that level that are still running.
//! * On admission the request's estimate is added to `reserved`. When it finishes, the
//!   estimate is taken off again and the real cost is added to `spend`.
//!
//! So the running total never passes `max_budget` by more than one estimate: a budget of $1.00
//! with requests estimated at $0.10 that really cost $0.10 admits exactly ten of them, however
//! many arrive at once, and ends at exactly $1.00. A budget of $1.00 with $0.95 already spent
//! still admits one more $0.10 request (there is headroom) and ends at $1.05 — overspent by at
//! most one request. If requests cost more than their estimate, each running request can
//! overshoot by its own difference, which is why estimates lean high (the prompt size plus the
//! requested `max_tokens`, or [`pricing::DEFAULT_OUTPUT_RESERVATION`] output tokens).
//!
//! With a `budget_duration` the spend belongs to a period that starts when the level is first
//! charged and is renewed in whole durations (a 30-day budget stays on its 30-day grid even if
//! no request arrives for months); the reset happens lazily on the next request, and a restart
//! never resets it (the period start is persisted with the spend).
//!
//! Rate limits are per minute and refill continuously: `rpm_limit: 60` is one request per
//! second with a burst of 60. Tokens are counted after the call, so `tpm_limit` admits a
//! request while the minute's tokens are not used up and lets the last one run into debt,
//! which the following requests wait out. An admitted request counts against `rpm_limit` even
//! if its upstream call fails: a client retrying against a failing upstream is still limited.
//! Rate-limit state is not persisted; a restart begins with full buckets.

mod ledger;
mod meter;
mod outcome;
pub mod pricing;
mod queue;
mod subject;

pub use ledger::{Admission, Ledger, Level};
pub use meter::{Meter, MeterSnapshot};
pub use outcome::{Crossing, RateHeaders, Refusal, RefusalKind, Threshold};
pub use queue::{DEFAULT_FLUSH_INTERVAL, QUEUE_CAPACITY, SpendQueue, SpendReceiver, run_flusher};
pub use subject::Subject;

use std::time::Duration;

/// The limits one level of a request may carry (LiteLLM's names). `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// Dollars the level may spend per budget period (or ever, without a duration).
    pub max_budget: Option<f64>,
    /// Dollars after which an alert is raised once per period; never refuses anything.
    pub soft_budget: Option<f64>,
    /// Length of a budget period; spend returns to zero when it ends.
    pub budget_duration: Option<Duration>,
    /// Requests per minute.
    pub rpm_limit: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    pub tpm_limit: Option<u64>,
    /// Requests running at the same time.
    pub max_parallel_requests: Option<u64>,
}

/// Money is kept as whole nano-dollars (`i64`) inside the meters: integer sums are exact and
/// independent of the order in which concurrent requests settle, so "ten requests of $0.10 fit
/// a $1.00 budget" holds exactly (in `f64`, ten additions of 0.1 fall short of 1.0), and the
/// range (±9.2 billion dollars) and resolution (a billionth of a dollar, below one token of
/// the cheapest model) are both ample. The API and the store speak `f64` dollars.
pub(crate) const NANOS_PER_DOLLAR: f64 = 1e9;

/// Dollars to nano-dollars; negative, NaN and infinite amounts count as nothing (a cost can
/// never be negative, and a bad price must not mint headroom).
pub(crate) fn to_nanos(dollars: f64) -> i64 {
    if dollars.is_finite() && dollars > 0.0 {
        // `as` saturates for out-of-range floats, which is the behaviour wanted here.
        (dollars * NANOS_PER_DOLLAR).round() as i64
    } else {
        0
    }
}

pub(crate) fn to_dollars(nanos: i64) -> f64 {
    nanos as f64 / NANOS_PER_DOLLAR
}

#[cfg(test)]
mod tests;
