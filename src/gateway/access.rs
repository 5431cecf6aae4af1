//! Which models a caller may use, under the rules a key carries in `models`: exact names,
//! `*`-wildcards (`openai/*`), access groups from `model_info.access_groups`, and
//! `all-proxy-models`. An empty list means every model.

use crate::auth::Principal;
use crate::router::Router;

fn pattern_matches(pattern: &str, model: &str) -> bool {
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

pub fn allowed(models: &[String], model: &str, router: &Router) -> bool {
    if models.is_empty() {
        return true;
    }
    models.iter().any(|m| {
        m == "all-proxy-models"
            || pattern_matches(m, model)
            || router
                .access_group_members(m)
                .any(|name| pattern_matches(name, model))
    })
}

pub fn may_use(principal: &Principal, model: &str, router: &Router) -> bool {
    match principal {
        Principal::Master => true,
        Principal::Key(k) => allowed(&k.models, model, router),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("openai/*", "openai/gpt-4o"));
        assert!(!pattern_matches("openai/*", "anthropic/claude"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("gpt-4o", "gpt-4o"));
        assert!(!pattern_matches("gpt-4o", "gpt-4o-mini"));
    }
}
