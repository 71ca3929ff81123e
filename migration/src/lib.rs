//! Latchkey's database schema, as sea-orm migrations that run on SQLite and PostgreSQL.
//!
//! Each migration owns the tables of one capability. Timestamps are stored as
//! `BIGINT` Unix seconds (UTC) so that comparisons against the server's injected
//! clock are plain integer comparisons on both engines.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261123_000002_sessions;
mod m20261123_000003_defences;
mod m20261123_000004_operations;
mod m20261201_000005_hardening;
mod m20261201_000006_refresh_replay;

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
        ]
    }
}

/// Column helpers shared by the migrations so every table spells types the same way.
pub(crate) mod cols {
    use sea_orm_migration::prelude::*;

    /// A UUID primary key kept as text: portable across engines and readable in `psql`.
    pub fn id_pk<T: IntoIden>(name: T) -> ColumnDef {
        ColumnDef::new(name).string_len(36).not_null().primary_key().to_owned()
    }

    pub fn uuid_ref<T: IntoIden>(name: T) -> ColumnDef {
        ColumnDef::new(name).string_len(36).not_null().to_owned()
    }

    pub fn text<T: IntoIden>(name: T) -> ColumnDef {
        ColumnDef::new(name).text().not_null().to_owned()
    }

    pub fn text_null<T: IntoIden>(name: T) -> ColumnDef {
        ColumnDef::new(name).text().null().to_owned()
    }

    pub fn unix_time<T: IntoIden>(name: T) -> ColumnDef {
        ColumnDef::new(name).big_integer().not_null().to_owned()
    }

    pub fn unix_time_null<T: IntoIden>(name: T) -> ColumnDef {
        ColumnDef::new(name).big_integer().null().to_owned()
    }
}
