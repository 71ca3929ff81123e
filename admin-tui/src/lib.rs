//! `latchkey-admin`: the operator's terminal console. It is a client of the admin API
//! only — it never opens the database.
//!
//! - [`api`]: typed admin-API client; tokens in memory only.
//! - [`app`]: state and transitions (keys → requests, results → state); never awaits.
//! - [`runner`]: runs a [`app::Request`] against the API and turns the result into an
//!   [`app::Action`].
//! - [`ui`]: drawing, [`qr`]: QR codes in half blocks.

pub mod api;
pub mod app;
pub mod qr;
pub mod runner;
pub mod ui;
