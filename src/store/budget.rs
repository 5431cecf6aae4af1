//! The budget and limit fields every governed object carries (key, user, team, team member,
//! organisation, end user), stored as given; `limits` turns them into live meters.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    /// LiteLLM's duration text (`30d`, `1mo`), validated when written.
    pub budget_duration: Option<String>,
    pub tpm_limit: Option<u64>,
    pub rpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u64>,
}
