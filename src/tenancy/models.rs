//! Model rules, compiled once when an object enters the directory so the request path only
//! compares strings: exact names, one-`*` wildcards (`openai/*`), access groups (expanded to
//! their models), and LiteLLM's special names.

/// The special names a model list may hold.
pub const ALL_PROXY_MODELS: &str = "all-proxy-models";
pub const ALL_TEAM_MODELS: &str = "all-team-models";
pub const NO_DEFAULT_MODELS: &str = "no-default-models";

/// What one level of a chain allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSet {
    /// An empty list, `all-proxy-models`, or `all-team-models`: this level does not narrow.
    Any,
    /// `no-default-models` on a user: nothing outside the user's teams.
    OnlyThroughTeams,
    /// These patterns (access groups already expanded).
    Only(Vec<String>),
}

impl ModelSet {
    /// Compiles a stored list; `group_members` expands an access group name to its models.
    pub fn compile<'a, I>(list: &[String], group_members: impl Fn(&str) -> I) -> ModelSet
    where
        I: Iterator<Item = &'a str>,
    {
        if list.is_empty()
            || list
                .iter()
                .any(|m| m == ALL_PROXY_MODELS || m == ALL_TEAM_MODELS)
        {
            return ModelSet::Any;
        }
        if list.iter().any(|m| m == NO_DEFAULT_MODELS) {
            return ModelSet::OnlyThroughTeams;
        }
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for m in list {
            out.push(m.clone());
            out.extend(group_members(m).map(str::to_string));
        }
        out.sort();
        out.dedup();
        ModelSet::Only(out)
    }

    /// Whether `model` passes this level. `through_team` says the key belongs to a team.
    pub fn allows(&self, model: &str, through_team: bool) -> bool {
        match self {
            ModelSet::Any => true,
            ModelSet::OnlyThroughTeams => through_team,
            ModelSet::Only(patterns) => patterns.iter().any(|p| pattern_matches(p, model)),
        }
    }

    /// Whether every model this set allows is also allowed by `outer` (used to refuse granting
    /// models the granter does not have). Conservative: a pattern is covered only when `outer`
    /// allows everything, or holds the same pattern, or a wildcard covering it.
    pub fn within(&self, outer: &ModelSet, through_team: bool) -> bool {
        match (self, outer) {
            (_, ModelSet::Any) => true,
            (ModelSet::Any, _) => false,
            (ModelSet::OnlyThroughTeams, ModelSet::OnlyThroughTeams) => true,
            (ModelSet::OnlyThroughTeams, ModelSet::Only(_)) => false,
            (ModelSet::Only(_), ModelSet::OnlyThroughTeams) => through_team,
            (ModelSet::Only(mine), ModelSet::Only(theirs)) => mine.iter().all(|m| {
                theirs
                    .iter()
                    .any(|t| t == m || (t.contains('*') && pattern_matches(t, m)))
            }),
        }
    }
}

/// Exact match, or one `*` standing for any text.
pub fn pattern_matches(pattern: &str, model: &str) -> bool {
    if pattern == model {
        return true;
    }
    match pattern.split_once('*') {
        Some((prefix, suffix)) => {
            model.len() >= prefix.len() + suffix.len()
                && model.starts_with(prefix)
                && model.ends_with(suffix)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(list: &[&str]) -> ModelSet {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        ModelSet::compile(&list, |g| {
            (g == "beta")
                .then_some(["gpt-4o", "claude-x"])
                .into_iter()
                .flatten()
        })
    }

    #[test]
    fn special_names_and_groups() {
        assert_eq!(set(&[]), ModelSet::Any);
        assert_eq!(set(&["all-proxy-models"]), ModelSet::Any);
        assert_eq!(set(&["all-team-models", "x"]), ModelSet::Any);
        assert!(!set(&["no-default-models"]).allows("gpt-4o", false));
        assert!(set(&["no-default-models"]).allows("gpt-4o", true));
        let beta = set(&["beta"]);
        assert!(beta.allows("gpt-4o", false) && beta.allows("claude-x", false));
        assert!(!beta.allows("gpt-4o-mini", false));
        assert!(set(&["openai/*"]).allows("openai/gpt-4o", false));
        assert!(!set(&["openai/*"]).allows("anthropic/claude", false));
    }

    #[test]
    fn within_is_conservative() {
        assert!(set(&["gpt-4o"]).within(&set(&["openai/*", "gpt-4o"]), false));
        assert!(set(&["openai/gpt-4o"]).within(&set(&["openai/*"]), false));
        assert!(!set(&["openai/*"]).within(&set(&["openai/gpt-4o"]), false));
        assert!(!set(&[]).within(&set(&["gpt-4o"]), false));
        assert!(set(&["gpt-4o"]).within(&set(&[]), false));
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "anything"));
        assert!(!pattern_matches("gpt-4o", "gpt-4o-mini"));
        assert!(!pattern_matches("a*a", "a"));
    }
}
