//! The console's tests: state transitions, screen snapshots (80×24 `TestBackend`), the
//! API types against the committed OpenAPI document, and the API client against the
//! real server started in-process.

#![allow(clippy::unwrap_used)]

mod client;
mod fixtures;
mod snapshots;
mod spec;
mod state;
