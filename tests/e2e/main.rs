//! End-to-end tests: the real binary, real TCP, a fake upstream LLM provider. One test binary
//! (modules per area) so linking stays cheap.

mod harness;
mod smoke;
mod upstream;
mod upstream_selftest;
