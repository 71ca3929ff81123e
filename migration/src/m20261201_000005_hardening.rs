//! Hardening from the security audit: the confusable-username guard (one row per UTS #39
//! skeleton, so two look-alike names cannot both exist) and the per-username attempt
//! buckets shared by every node (one GCRA arrival time per key).

use sea_orm_migration::prelude::*;

use crate::ddl::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsernameSkeletons {
    Table,
    Skeleton,
    UserId,
}

#[derive(DeriveIden)]
enum AttemptBuckets {
    Table,
    Key,
    /// The bucket's theoretical arrival time (GCRA), Unix milliseconds.
    Tat,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsernameSkeletons::Table)
                    .col(ColumnDef::new(UsernameSkeletons::Skeleton).string_len(512).not_null().primary_key())
                    .col(ColumnDef::new(UsernameSkeletons::UserId).string_len(36).not_null().unique_key())
                    .foreign_key(&mut cascade(
                        UsernameSkeletons::Table,
                        UsernameSkeletons::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AttemptBuckets::Table)
                    .col(ColumnDef::new(AttemptBuckets::Key).string_len(512).not_null().primary_key())
                    .col(ColumnDef::new(AttemptBuckets::Tat).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("idx_attempt_buckets_tat", AttemptBuckets::Table, AttemptBuckets::Tat)).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, [AttemptBuckets::Table.into_iden(), UsernameSkeletons::Table.into_iden()]).await
    }
}
