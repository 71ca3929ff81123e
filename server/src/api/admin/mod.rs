//! `/admin/*`: the admin API the console drives. Every handler takes [`AdminAuth`]
//! and calls `require(Permission::…)` first. Lists are paged (`page` from 1,
//! `page_size` 1–200, default 50) and report the total.

pub mod audit;
pub mod clients;
pub mod keys;
pub mod models;
pub mod roles;
pub mod sessions;
pub mod users;

use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;

use crate::store::Page;

pub use super::bearer::AdminAuth;

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 200;
/// The schema's bound on `page` (the validators refuse more with 400).
pub const MAX_PAGE: u64 = 1_000_000;

/// Validated by the query-parameter validators before it gets here; clamped again so
/// no value can reach the query builder out of range.
pub fn page(number: Option<u64>, size: Option<u64>) -> Page {
    Page {
        number: number.unwrap_or(1).clamp(1, MAX_PAGE),
        size: size.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE),
    }
}

/// `201 Created` with the new resource.
#[derive(ApiResponse)]
pub enum Created<T: ToJSON> {
    #[oai(status = 201)]
    New(Json<T>),
}

/// `204 No Content`: done, nothing to return.
#[derive(ApiResponse)]
pub enum NoContent {
    #[oai(status = 204)]
    Done,
}
