//! Brute-force defences and the second factor: lockout counters and TOTP state on
//! users, hashed recovery codes, and single-use MFA challenges (kept in the database so
//! every node sees them).

use crate::ddl::*;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    FailedLogins,
    LockedUntil,
    TotpFailures,
    TotpLockedUntil,
    TotpSecretEncrypted,
    TotpPendingEncrypted,
    TotpEnabled,
    TotpLastStep,
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    Id,
    UserId,
    CodeHash,
    CreatedAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum MfaChallenges {
    Table,
    Id,
    TokenHash,
    UserId,
    ClientId,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

fn user_columns() -> Vec<ColumnDef> {
    vec![
        ColumnDef::new(Users::FailedLogins).integer().not_null().default(0).to_owned(),
        unix_time_null(Users::LockedUntil),
        ColumnDef::new(Users::TotpFailures).integer().not_null().default(0).to_owned(),
        unix_time_null(Users::TotpLockedUntil),
        text_null(Users::TotpSecretEncrypted),
        text_null(Users::TotpPendingEncrypted),
        ColumnDef::new(Users::TotpEnabled).boolean().not_null().default(false).to_owned(),
        unix_time_null(Users::TotpLastStep),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for mut column in user_columns() {
            manager.alter_table(Table::alter().table(Users::Table).add_column(&mut column).to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(RecoveryCodes::Table)
                    .col(id_pk(RecoveryCodes::Id))
                    .col(uuid_ref(RecoveryCodes::UserId))
                    .col(ColumnDef::new(RecoveryCodes::CodeHash).string_len(64).not_null())
                    .col(unix_time(RecoveryCodes::CreatedAt))
                    .col(unix_time_null(RecoveryCodes::UsedAt))
                    .foreign_key(&mut cascade(RecoveryCodes::Table, RecoveryCodes::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("idx_recovery_codes_user_hash", RecoveryCodes::Table, RecoveryCodes::UserId)
                    .col(RecoveryCodes::CodeHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaChallenges::Table)
                    .col(id_pk(MfaChallenges::Id))
                    .col(ColumnDef::new(MfaChallenges::TokenHash).string_len(64).not_null().unique_key())
                    .col(uuid_ref(MfaChallenges::UserId))
                    .col(ColumnDef::new(MfaChallenges::ClientId).string_len(64).not_null())
                    .col(unix_time(MfaChallenges::CreatedAt))
                    .col(unix_time(MfaChallenges::ExpiresAt))
                    .col(unix_time_null(MfaChallenges::UsedAt))
                    .foreign_key(&mut cascade(MfaChallenges::Table, MfaChallenges::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, [MfaChallenges::Table.into_iden(), RecoveryCodes::Table.into_iden()]).await?;
        for column in [
            Users::TotpLastStep,
            Users::TotpEnabled,
            Users::TotpPendingEncrypted,
            Users::TotpSecretEncrypted,
            Users::TotpLockedUntil,
            Users::TotpFailures,
            Users::LockedUntil,
            Users::FailedLogins,
        ] {
            manager.alter_table(Table::alter().table(Users::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
