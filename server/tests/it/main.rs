//! The server's integration tests: one binary, real HTTP against the real server.
//! Every test runs on SQLite, or on PostgreSQL when `TEST_DATABASE_URL` is set.

// Helpers outside #[test] functions panic on failure by design: they are test code.
#![allow(clippy::unwrap_used)]

mod account;
mod admin;
mod audit_chain;
mod backchannel;
mod caches;
mod claims;
mod cli;
mod code_flow;
mod cookie_flow;
mod defences;
mod dpop;
mod e2e;
mod forged_tokens;
mod hardening;
mod harness;
mod logout;
mod mail;
mod migrations;
mod oauth;
mod oidc_rp;
mod openapi;
mod operations;
mod passkeys;
mod refresh;
mod route_facts;
mod store_contract;
