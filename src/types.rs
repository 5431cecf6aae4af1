//! Small shared value types: secrets that never print, and time helpers.
//! Nothing here may depend on another module of the crate.

use std::fmt;

/// A value that must never appear in logs or `Debug` output (API keys, master key, upstream keys).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    /// Access the secret. Call sites are easy to grep for.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Milliseconds since the Unix epoch, the one time representation stored on disk.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 rendering of a stored timestamp, as LiteLLM's JSON shows datetimes.
pub fn ms_to_rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

/// Parses LiteLLM's duration strings: `30s`, `30m`, `30h`, `30d`, `2w`, `1mo` (30 days).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        "w" => n.checked_mul(7 * 86_400)?,
        "mo" => n.checked_mul(30 * 86_400)?,
        _ => return None,
    };
    // Beyond a century is a typo, and would overflow the millisecond timestamps it feeds.
    if secs > MAX_DURATION_SECS {
        return None;
    }
    Some(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_litellm_units() {
        assert_eq!(parse_duration("30s").map(|d| d.as_secs()), Some(30));
        assert_eq!(parse_duration("2h").map(|d| d.as_secs()), Some(7200));
        assert_eq!(parse_duration("1mo").map(|d| d.as_secs()), Some(2_592_000));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("9999999999999d"), None);
        assert!(parse_duration("36500d").is_some());
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn secret_debug_is_masked() {
        assert_eq!(format!("{:?}", Secret::new("sk-123")), "Secret(***)");
    }

    #[test]
    fn rfc3339_renders() {
        assert_eq!(ms_to_rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
