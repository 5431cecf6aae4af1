//! End-to-end tests against a fake upstream LLM provider.

mod upstream;
mod upstream_selftest;
