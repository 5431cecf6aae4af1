//! Identity headers from a trusted authenticating proxy (oauth2-proxy and the like):
//! LiteLLM's `general_settings.enable_oauth2_proxy_auth` and `oauth2_config_mappings` (which
//! header holds what), and ours: `trusted_proxy_ranges` (the only peers whose headers count)
//! and `trusted_proxy_mappings` (what the proxy's groups give). Checked here, so a typo in a
//! range stops the start with its YAML path instead of trusting the wrong network.

use super::Problem;
use super::sso::{GroupMapping, RawGroupMapping, group_mapping};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// One CIDR range (`10.0.0.0/8`, `::1/128`, or a bare address meaning just it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("`/{p}` is not a prefix length from 0 to {max}")),
            },
        };
        let cidr = Cidr { net, prefix };
        if cidr.masked(net) != net {
            // `10.1.2.3/8` is almost always a typo for a host or a different network: say so
            // rather than silently trusting all of 10/8.
            return Err(format!(
                "`{text}` has bits set after the prefix (did you mean {}/{prefix}?)",
                cidr.masked(net)
            ));
        }
        Ok(cidr)
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.net.is_ipv4() && self.masked(ip) == self.net
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// An IPv4 peer on a dual-stack socket arrives as `::ffff:a.b.c.d`; ranges are written in
/// IPv4, so compare it as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The header names a trusted proxy uses (LiteLLM's `oauth2_config_mappings` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeaders {
    pub user_id: http::HeaderName,
    pub user_email: http::HeaderName,
    pub groups: http::HeaderName,
}

impl Default for ProxyHeaders {
    fn default() -> Self {
        ProxyHeaders {
            user_id: http::HeaderName::from_static("x-forwarded-user"),
            user_email: http::HeaderName::from_static("x-forwarded-email"),
            groups: http::HeaderName::from_static("x-forwarded-groups"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    pub ranges: Vec<Cidr>,
    pub headers: ProxyHeaders,
    pub mapping: GroupMapping,
}

fn problem(path: &str, message: impl Into<String>) -> Problem {
    Problem {
        path: path.to_string(),
        message: message.into(),
    }
}

/// `None` unless `enable_oauth2_proxy_auth` is true.
pub(super) fn settings(
    enable: Option<bool>,
    ranges: Option<Value>,
    mappings: Option<BTreeMap<String, String>>,
    mapping: Option<RawGroupMapping>,
    env: &HashMap<String, String>,
    errors: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<ProxySettings> {
    const G: &str = "general_settings";
    if enable != Some(true) {
        for (set, key) in [
            (ranges.is_some(), "trusted_proxy_ranges"),
            (mappings.is_some(), "oauth2_config_mappings"),
            (mapping.is_some(), "trusted_proxy_mappings"),
        ] {
            if set {
                warnings.push(problem(
                    &format!("{G}.{key}"),
                    "has no effect unless general_settings.enable_oauth2_proxy_auth is true",
                ));
            }
        }
        return None;
    }
    let mut list = Vec::new();
    let before = errors.len();
    match ranges {
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let at = format!("{G}.trusted_proxy_ranges[{i}]");
                match item.as_str().map(Cidr::parse) {
                    Some(Ok(c)) => list.push(c),
                    Some(Err(e)) => errors.push(problem(&at, e)),
                    None => errors.push(problem(&at, "must be a CIDR range such as 10.0.0.0/8")),
                }
            }
        }
        Some(Value::String(s)) => {
            for part in s.split(',').filter(|p| !p.trim().is_empty()) {
                match Cidr::parse(part) {
                    Ok(c) => list.push(c),
                    Err(e) => errors.push(problem(&format!("{G}.trusted_proxy_ranges"), e)),
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => errors.push(problem(
            &format!("{G}.trusted_proxy_ranges"),
            "must be a list of CIDR ranges",
        )),
    }
    if list.is_empty() && errors.len() == before {
        // LiteLLM takes these headers from anyone who sends them; here an empty list would
        // mean the same, so it is refused.
        errors.push(problem(
            &format!("{G}.trusted_proxy_ranges"),
            "required with enable_oauth2_proxy_auth: the addresses of the proxy (identity \
             headers from any other peer are ignored)",
        ));
    }
    let mut headers = ProxyHeaders::default();
    for (key, header) in mappings.unwrap_or_default() {
        let at = format!("{G}.oauth2_config_mappings.{key}");
        let Ok(name) = http::HeaderName::from_bytes(header.trim().as_bytes()) else {
            errors.push(problem(&at, format!("`{header}` is not a header name")));
            continue;
        };
        match key.as_str() {
            "user_id" => headers.user_id = name,
            "user_email" => headers.user_email = name,
            "groups" | "user_groups" => headers.groups = name,
            // LiteLLM also maps headers onto budgets, models, roles and teams: a header must
            // not grant those here; roles and teams come from the groups.
            _ => errors.push(problem(
                &at,
                "unknown key: use user_id, user_email or groups (LiteLLM's max_budget, models, \
                 user_role and team_id are not read from headers here: roles and teams come \
                 from the groups, general_settings.trusted_proxy_mappings)",
            )),
        }
    }
    let mapping = group_mapping(
        mapping.unwrap_or_default(),
        &format!("{G}.trusted_proxy_mappings"),
        env,
        errors,
    );
    Some(ProxySettings {
        ranges: list,
        headers,
        mapping,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn cidr_ranges_match_what_they_say() {
        let r = Cidr::parse("10.0.0.0/8").unwrap_or_else(|_| unreachable!());
        assert!(r.contains(ip("10.255.1.2")));
        assert!(!r.contains(ip("11.0.0.1")));
        // An IPv4 peer on a dual-stack socket.
        assert!(r.contains(ip("::ffff:10.1.2.3")));
        assert!(!r.contains(ip("::1")));
        let host = Cidr::parse("127.0.0.1").unwrap_or_else(|_| unreachable!());
        assert!(host.contains(ip("127.0.0.1")) && !host.contains(ip("127.0.0.2")));
        let all = Cidr::parse("0.0.0.0/0").unwrap_or_else(|_| unreachable!());
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("fd00::/8").unwrap_or_else(|_| unreachable!());
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert_eq!(
            Cidr::parse("::1").map(|c| c.to_string()),
            Ok("::1/128".to_string())
        );
    }

    #[test]
    fn bad_ranges_say_why() {
        let err = |s: &str| Cidr::parse(s).err().unwrap_or_default();
        assert!(err("10.0.0.0/33").contains("prefix length"));
        assert!(err("nope/8").contains("not an IP"));
        assert!(err("10.1.2.3/8").contains("did you mean 10.0.0.0/8"));
        assert!(Cidr::parse("").is_err());
    }

    fn run(yaml: &str) -> Result<Option<ProxySettings>, Vec<Problem>> {
        crate::config::Config::from_yaml(yaml, &Default::default()).map(|(c, _)| c.trusted_proxy)
    }

    #[test]
    fn settings_read_and_refuse_with_paths() {
        let s = run("general_settings:\n  enable_oauth2_proxy_auth: true\n  \
                     trusted_proxy_ranges: [10.0.0.0/8, '::1']\n  \
                     oauth2_config_mappings: {user_email: X-Auth-Request-Email}\n  \
                     trusted_proxy_mappings: {role_mappings: {admins: proxy_admin}}\n")
        .ok()
        .flatten()
        .unwrap_or_else(|| unreachable!());
        assert_eq!(s.ranges.len(), 2);
        assert_eq!(s.headers.user_email.as_str(), "x-auth-request-email");
        assert_eq!(s.headers.user_id.as_str(), "x-forwarded-user");
        assert_eq!(s.mapping.role_mappings.len(), 1);

        let paths = |yaml: &str| -> Vec<String> {
            run(yaml)
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.path)
                .collect()
        };
        assert_eq!(
            paths("general_settings:\n  enable_oauth2_proxy_auth: true\n"),
            ["general_settings.trusted_proxy_ranges"]
        );
        assert_eq!(
            paths(
                "general_settings:\n  enable_oauth2_proxy_auth: true\n  \
                   trusted_proxy_ranges: [10.1.0.0/8]\n  \
                   oauth2_config_mappings: {max_budget: X-Budget}\n"
            ),
            [
                "general_settings.trusted_proxy_ranges[0]",
                "general_settings.oauth2_config_mappings.max_budget"
            ]
        );
        assert_eq!(
            run("general_settings:\n  trusted_proxy_ranges: [10.0.0.0/8]\n").ok(),
            Some(None)
        );
    }

    #[test]
    fn misspelled_keys_are_named_when_they_matter() {
        let problems = |yaml: &str| -> Vec<(String, String)> {
            run(yaml)
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.path, p.message))
                .collect()
        };
        // The misspelling leaves a required key unset: both are reported, the cause too.
        let found = problems(
            "general_settings:\n  enable_oauth2_proxy_auth: true\n  \
             trusted_proxy_range: [127.0.0.1/32]\n",
        );
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "general_settings.trusted_proxy_ranges",
                "general_settings.trusted_proxy_range"
            ]
        );
        assert!(found[1].1.contains("misspelled"), "{found:?}");
        // Inside the mapping block a misspelling is an error of its own: it would drop a role.
        let found = problems(
            "general_settings:\n  enable_oauth2_proxy_auth: true\n  \
             trusted_proxy_ranges: [127.0.0.1/32]\n  \
             trusted_proxy_mappings: {role_mapings: {admins: proxy_admin}}\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].0,
            "general_settings.trusted_proxy_mappings.role_mapings"
        );
        // An unknown header mapping says which keys there are.
        let found = problems(
            "general_settings:\n  enable_oauth2_proxy_auth: true\n  \
             trusted_proxy_ranges: [127.0.0.1/32]\n  \
             oauth2_config_mappings: {user_emial: X-Email}\n",
        );
        assert!(
            found[0].1.contains("use user_id, user_email or groups"),
            "{found:?}"
        );
    }
}
