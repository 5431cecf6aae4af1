//! End-to-end tests: the real binary, real TCP, a fake upstream LLM provider. One test binary
//! (modules per area) so linking stays cheap.

mod attacks_jwt;
mod attacks_scim;
mod attacks_sso;
mod audit;
mod audit_crash;
mod audit_search;
mod budgets;
mod customers;
mod gateway_anthropic;
mod gateway_openai;
mod governance;
mod hardening;
mod harness;
mod jwt;
mod keys;
mod lifecycle;
mod llm_support;
mod metrics;
mod operations;
mod orgs;
mod routing;
mod scim;
mod scim_bulk;
mod scim_managed;
mod scim_roles;
mod smoke;
mod spend_explain;
mod sso;
mod sso_browser;
mod sso_proxy;
mod teams;
mod upstream;
mod upstream_selftest;
