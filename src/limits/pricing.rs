//! What a call costs: the deployment's configured prices, else a small bundled table of public
//! list prices. Pure functions, no I/O; a model we do not know costs 0 (and so never blocks on
//! a budget), which is why operators of other models should set prices in `litellm_params`.

/// Output tokens reserved for a request that names no `max_tokens`.
pub const DEFAULT_OUTPUT_RESERVATION: u64 = 256;

/// USD per token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelPrice {
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
}

/// Public list prices in USD per million tokens (input, output), as the providers published
/// them. Names are matched as prefixes ending at `-`, `@`, `:` or the end, longest first, so
/// dated and suffixed releases (`gpt-4o-2024-08-06`, `claude-3-5-sonnet-v2@20241022`) find
/// their family, and `gpt-4o-mini` never takes `gpt-4o`'s price.
const PRICES_PER_MILLION: &[(&str, f64, f64)] = &[
    // OpenAI
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-5", 1.25, 10.00),
    ("gpt-5-mini", 0.25, 2.00),
    ("gpt-5-nano", 0.05, 0.40),
    ("o1", 15.00, 60.00),
    ("o1-mini", 1.10, 4.40),
    ("o1-pro", 150.00, 600.00),
    ("o3", 2.00, 8.00),
    ("o3-mini", 1.10, 4.40),
    ("o4-mini", 1.10, 4.40),
    ("gpt-4", 30.00, 60.00),
    ("gpt-4-32k", 60.00, 120.00),
    ("gpt-4-turbo", 10.00, 30.00),
    ("gpt-4-1106-preview", 10.00, 30.00),
    ("gpt-4-0125-preview", 10.00, 30.00),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("gpt-3.5-turbo-instruct", 1.50, 2.00),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
    ("text-embedding-ada-002", 0.10, 0.0),
    // Anthropic
    ("claude-3-haiku", 0.25, 1.25),
    ("claude-3-opus", 15.00, 75.00),
    ("claude-3-5-sonnet", 3.00, 15.00),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("claude-3-7-sonnet", 3.00, 15.00),
    ("claude-sonnet-4", 3.00, 15.00),
    ("claude-opus-4", 15.00, 75.00),
    ("claude-opus-4-1", 15.00, 75.00),
    ("claude-opus-4-5", 5.00, 25.00),
    ("claude-haiku-4-5", 1.00, 5.00),
    // Groq
    ("llama-3.3-70b-versatile", 0.59, 0.79),
    ("llama-3.1-8b-instant", 0.05, 0.08),
    ("llama3-70b-8192", 0.59, 0.79),
    ("llama3-8b-8192", 0.05, 0.08),
    // Together AI
    ("meta-llama/llama-3.3-70b-instruct-turbo", 0.88, 0.88),
    ("meta-llama/meta-llama-3.1-8b-instruct-turbo", 0.18, 0.18),
    ("meta-llama/meta-llama-3.1-70b-instruct-turbo", 0.88, 0.88),
    ("meta-llama/meta-llama-3.1-405b-instruct-turbo", 3.50, 3.50),
];

/// The bundled price of an upstream model name, with or without a provider prefix
/// (`openai/gpt-4o`, `together_ai/meta-llama/...`, Bedrock's `us.anthropic.claude-...`).
pub fn bundled_price(upstream_model: &str) -> Option<ModelPrice> {
    let mut candidate = upstream_model;
    loop {
        if let Some(price) = longest_prefix(candidate) {
            return Some(price);
        }
        match candidate.split_once('/') {
            Some((_, rest)) => candidate = rest,
            None => break,
        }
    }
    // Bedrock names the vendor with a dot, optionally behind a region: `eu.anthropic.claude-…`.
    let lower = upstream_model.to_ascii_lowercase();
    let (_, rest) = lower.split_once("anthropic.")?;
    longest_prefix(rest)
}

fn longest_prefix(name: &str) -> Option<ModelPrice> {
    let bytes = name.as_bytes();
    PRICES_PER_MILLION
        .iter()
        .filter(|(model, ..)| {
            bytes
                .get(..model.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(model.as_bytes()))
                && matches!(bytes.get(model.len()), None | Some(b'-' | b'@' | b':'))
        })
        .max_by_key(|(model, ..)| model.len())
        .map(|&(_, input, output)| ModelPrice {
            input_cost_per_token: input / 1e6,
            output_cost_per_token: output / 1e6,
        })
}

/// Dollars for a finished call. Configured prices win: if the deployment sets either price,
/// its pricing is wholly its own (an unset one is 0), so a custom model never inherits half a
/// list price. Otherwise the bundled table; an unknown model costs 0.
pub fn cost(
    prompt_tokens: u64,
    completion_tokens: u64,
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    upstream_model: &str,
) -> f64 {
    let price = if input_cost_per_token.is_some() || output_cost_per_token.is_some() {
        ModelPrice {
            input_cost_per_token: input_cost_per_token.unwrap_or(0.0),
            output_cost_per_token: output_cost_per_token.unwrap_or(0.0),
        }
    } else {
        match bundled_price(upstream_model) {
            Some(p) => p,
            None => return 0.0,
        }
    };
    let total = prompt_tokens as f64 * price.input_cost_per_token
        + completion_tokens as f64 * price.output_cost_per_token;
    // A negative or NaN configured price must neither mint budget nor poison the sums.
    if total.is_finite() && total > 0.0 {
        total
    } else {
        0.0
    }
}

/// Prompt tokens guessed from the request body's size: about four bytes a token for English
/// and JSON, rounded up, at least one.
pub fn estimate_prompt_tokens(body_bytes: usize) -> u64 {
    (body_bytes as u64).div_ceil(4).max(1)
}

/// The output limit a request names: `max_completion_tokens` (OpenAI's newer field) or
/// `max_tokens` (OpenAI's older field, and Anthropic's).
pub fn requested_output_tokens(body: &serde_json::Value) -> Option<u64> {
    body.get("max_completion_tokens")
        .and_then(serde_json::Value::as_u64)
        .or_else(|| body.get("max_tokens").and_then(serde_json::Value::as_u64))
}

/// The cost to reserve against budgets before the call: the body's estimated prompt tokens
/// plus the requested output limit, or [`DEFAULT_OUTPUT_RESERVATION`] tokens without one.
pub fn estimate_cost(
    body_bytes: usize,
    max_output_tokens: Option<u64>,
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    upstream_model: &str,
) -> f64 {
    cost(
        estimate_prompt_tokens(body_bytes),
        max_output_tokens.unwrap_or(DEFAULT_OUTPUT_RESERVATION),
        input_cost_per_token,
        output_cost_per_token,
        upstream_model,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_million(model: &str) -> Option<(f64, f64)> {
        bundled_price(model).map(|p| {
            let round = |x: f64| (x * 1e6 * 1000.0).round() / 1000.0;
            (
                round(p.input_cost_per_token),
                round(p.output_cost_per_token),
            )
        })
    }

    #[test]
    fn names_match_with_prefixes_and_dated_suffixes() {
        assert_eq!(per_million("gpt-4o"), Some((2.5, 10.0)));
        assert_eq!(per_million("openai/gpt-4o-2024-08-06"), Some((2.5, 10.0)));
        assert_eq!(per_million("gpt-4o-mini-2024-07-18"), Some((0.15, 0.6)));
        assert_eq!(per_million("azure/GPT-4o-Mini"), Some((0.15, 0.6)));
        assert_eq!(per_million("gpt-4.1-nano"), Some((0.1, 0.4)));
        assert_eq!(per_million("o3-mini-2025-01-31"), Some((1.1, 4.4)));
        assert_eq!(per_million("o1"), Some((15.0, 60.0)));
        assert_eq!(per_million("gpt-4-turbo-2024-04-09"), Some((10.0, 30.0)));
        assert_eq!(per_million("text-embedding-3-small"), Some((0.02, 0.0)));
        assert_eq!(
            per_million("anthropic/claude-3-5-sonnet-20241022"),
            Some((3.0, 15.0))
        );
        assert_eq!(
            per_million("claude-3-5-sonnet-v2@20241022"),
            Some((3.0, 15.0))
        );
        assert_eq!(
            per_million("us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            Some((0.8, 4.0))
        );
        assert_eq!(per_million("claude-opus-4-20250514"), Some((15.0, 75.0)));
        assert_eq!(per_million("claude-opus-4-5-20251101"), Some((5.0, 25.0)));
        assert_eq!(per_million("claude-sonnet-4-5"), Some((3.0, 15.0)));
        assert_eq!(
            per_million("groq/llama-3.3-70b-versatile"),
            Some((0.59, 0.79))
        );
        assert_eq!(
            per_million("together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo"),
            Some((0.88, 0.88))
        );
        // A prefix must end at a separator: gpt-4.5 is not gpt-4, o1x is not o1.
        assert_eq!(per_million("gpt-4.5-preview"), None);
        assert_eq!(per_million("o1x"), None);
        assert_eq!(per_million("my-finetune"), None);
        assert_eq!(per_million(""), None);
    }

    #[test]
    fn config_prices_win_and_unknown_models_are_free() {
        let c = cost(1_000_000, 1_000_000, None, None, "gpt-4o-mini");
        assert!((c - 0.75).abs() < 1e-9);
        let c = cost(1000, 10, Some(0.001), None, "gpt-4o");
        assert!((c - 1.0).abs() < 1e-12);
        assert_eq!(cost(1000, 1000, None, None, "local-llama"), 0.0);
        assert_eq!(cost(10, 10, Some(-1.0), Some(f64::NAN), "x"), 0.0);
    }

    #[test]
    fn estimates() {
        assert_eq!(estimate_prompt_tokens(0), 1);
        assert_eq!(estimate_prompt_tokens(9), 3);
        let body = serde_json::json!({"max_tokens": 50, "max_completion_tokens": 20});
        assert_eq!(requested_output_tokens(&body), Some(20));
        assert_eq!(
            requested_output_tokens(&serde_json::json!({"max_tokens": 7})),
            Some(7)
        );
        assert_eq!(requested_output_tokens(&serde_json::json!({})), None);
        let e = estimate_cost(400, None, Some(1e-6), Some(2e-6), "x");
        assert!((e - (100e-6 + 256.0 * 2e-6)).abs() < 1e-12);
        let e = estimate_cost(400, Some(10), Some(1e-6), Some(2e-6), "x");
        assert!((e - (100e-6 + 20e-6)).abs() < 1e-12);
    }
}
