//! The console's tests: state transitions, the command tables against the key handlers,
//! screen snapshots (80×24 `TestBackend`), the main loop, the API types against the
//! committed OpenAPI document, and the API client against the real server started
//! in-process.

#![allow(clippy::unwrap_used)]

mod client;
mod commands;
mod event_loop;
mod fixtures;
mod snapshots;
mod spec;
mod state;
