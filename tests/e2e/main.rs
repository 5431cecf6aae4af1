//! End-to-end tests: the real binary, real TCP, a fake upstream LLM provider. One test binary
//! (modules per area) so linking stays cheap.

mod gateway_anthropic;
mod gateway_openai;
mod hardening;
mod harness;
mod keys;
mod lifecycle;
mod llm_support;
mod routing;
mod smoke;
mod upstream;
mod upstream_selftest;
