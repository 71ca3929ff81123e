//! Production operation: at most one pending signing key, leases that let exactly one
//! node run a periodic job, and indexes for the purge job's range scans.

use sea_orm_migration::prelude::*;

use crate::ddl::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum JobLeases {
    Table,
    Name,
    Holder,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    AbsoluteExpiresAt,
}

#[derive(DeriveIden)]
enum MfaChallenges {
    Table,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_signing_keys_one_pending ON signing_keys (state) WHERE state = 'pending'",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobLeases::Table)
                    .col(ColumnDef::new(JobLeases::Name).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(JobLeases::Holder).string_len(64).not_null().default(""))
                    .col(ColumnDef::new(JobLeases::ExpiresAt).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        let seed = Query::insert()
            .into_table(JobLeases::Table)
            .columns([JobLeases::Name])
            .values_panic(["purge".into()])
            .values_panic(["key_rotation".into()])
            .to_owned();
        manager.get_connection().execute(&seed).await?;
        manager
            .create_index(index("idx_sessions_absolute_expires_at", Sessions::Table, Sessions::AbsoluteExpiresAt))
            .await?;
        manager
            .create_index(index("idx_mfa_challenges_expires_at", MfaChallenges::Table, MfaChallenges::ExpiresAt))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_index(manager, "idx_mfa_challenges_expires_at", MfaChallenges::Table).await?;
        drop_index(manager, "idx_sessions_absolute_expires_at", Sessions::Table).await?;
        manager.drop_table(Table::drop().table(JobLeases::Table).to_owned()).await?;
        manager.get_connection().execute_unprepared("DROP INDEX idx_signing_keys_one_pending").await?;
        Ok(())
    }
}
