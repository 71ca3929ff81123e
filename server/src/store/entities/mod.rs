//! sea-orm entities, one per table. They are storage types only: the API never
//! serialises them (see `api::models`), and only `store` touches them.

pub mod audit_events;
pub mod client_roles;
pub mod clients;
pub mod mfa_challenges;
pub mod recovery_codes;
pub mod refresh_tokens;
pub mod role_permissions;
pub mod roles;
pub mod sessions;
pub mod signing_keys;
pub mod user_roles;
pub mod username_skeletons;
pub mod users;
