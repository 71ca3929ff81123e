//! `latchkey-admin`: the operator's terminal console. It is a client of the admin API
//! only — it never opens the database.
//!
//! - [`api`]: typed admin-API client; tokens in memory only.
//! - [`request`]: the network calls ([`request::Request`], each with its parameters), how
//!   one runs, and what comes back ([`request::Loaded`]).
//! - [`app`]: state and transitions (keys → requests, results → state); never awaits.
//! - [`event_loop`]: the main loop, generic over the terminal backend.
//! - [`command`]: the command tables that both dispatch keys and draw the hints.
//! - [`screens`]: one file per screen (Users, Roles, Sessions, Clients, Keys, Audit).
//! - [`components`]: the table, prompt, confirm, picker, detail and help pieces.
//! - [`popup`]: the popup layer; [`outcome`]: what a handler asks of the app.
//! - [`login`]: the login form; [`time`]: relative and full timestamps.
//! - [`ui`]: the frame layout and key bar; [`qr`]: QR codes in half blocks.

pub mod api;
pub mod app;
pub mod command;
pub mod components;
pub mod event_loop;
pub mod login;
pub mod outcome;
pub mod popup;
pub mod qr;
pub mod request;
pub mod screens;
pub mod time;
pub mod ui;
