//! Latchkey's database schema, as sea-orm migrations that run on SQLite and PostgreSQL.
//!
//! Each migration owns the tables of one capability. Timestamps are stored as
//! `BIGINT` Unix seconds (UTC) so that comparisons against the server's injected
//! clock are plain integer comparisons on both engines.

pub use sea_orm_migration::prelude::*;

pub mod audit_chain;
mod ddl;
mod m20261123_000001_foundation;
mod m20261123_000002_sessions;
mod m20261123_000003_defences;
mod m20261123_000004_operations;
mod m20261201_000005_hardening;
mod m20261201_000006_refresh_replay;
mod m20261201_000007_code_flow;
mod m20261202_000008_audit_chain;
mod m20261202_000009_session_origin;
mod m20261202_000010_backchannel_logout;
mod m20261202_000011_account_client;
mod m20261202_000012_passkeys;
mod m20261203_000013_mail;
mod m20261203_000014_dpop;
mod m20261203_000015_dpop_binding;
mod m20261203_000016_change_notifications;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261123_000002_sessions::Migration),
            Box::new(m20261123_000003_defences::Migration),
            Box::new(m20261123_000004_operations::Migration),
            Box::new(m20261201_000005_hardening::Migration),
            Box::new(m20261201_000006_refresh_replay::Migration),
            Box::new(m20261201_000007_code_flow::Migration),
            Box::new(m20261202_000008_audit_chain::Migration),
            Box::new(m20261202_000009_session_origin::Migration),
            Box::new(m20261202_000010_backchannel_logout::Migration),
            Box::new(m20261202_000011_account_client::Migration),
            Box::new(m20261202_000012_passkeys::Migration),
            Box::new(m20261203_000013_mail::Migration),
            Box::new(m20261203_000014_dpop::Migration),
            Box::new(m20261203_000015_dpop_binding::Migration),
            Box::new(m20261203_000016_change_notifications::Migration),
        ]
    }
}
