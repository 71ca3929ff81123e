//! Mail: whether a user's address is verified, and the single-use tokens that mail
//! carries (password reset, address verification).
//!
//! A token is stored as the SHA-256 of its value only: the database never holds what a
//! link grants. A verified address belongs to one account: a partial unique index over
//! the lower-cased address of verified rows (unverified rows may share an address, as
//! they could before).

use sea_orm_migration::prelude::*;

use crate::ddl::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    /// Whether the user followed a link mailed to `email` (or an admin said so).
    EmailVerified,
    /// Whether the account was made by `POST /auth/register`, whose accounts
    /// `registration.require_verified_email` keeps from signing in until verified.
    SelfRegistered,
}

#[derive(DeriveIden)]
enum EmailTokens {
    Table,
    Id,
    UserId,
    /// `reset` or `verify`.
    Purpose,
    /// SHA-256 (hex) of the token.
    TokenHash,
    /// The address it was sent to: for `verify`, the address that becomes the user's
    /// (verified) when the link is followed.
    Email,
    /// For `reset`: SHA-256 of the password hash when it was issued, so a password
    /// changed since kills the link.
    PasswordFingerprint,
    CreatedAt,
    ExpiresAt,
}

const VERIFIED_EMAIL_INDEX: &str = "CREATE UNIQUE INDEX idx_users_verified_email ON users (lower(email)) \
     WHERE email_verified AND email IS NOT NULL";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Users::EmailVerified, Users::SelfRegistered] {
            let mut column = ColumnDef::new(column).boolean().not_null().default(false).to_owned();
            manager.alter_table(Table::alter().table(Users::Table).add_column(&mut column).to_owned()).await?;
        }
        // An expression index with a predicate: both engines take this one statement.
        manager.get_connection().execute_unprepared(VERIFIED_EMAIL_INDEX).await?;
        manager
            .create_table(
                Table::create()
                    .table(EmailTokens::Table)
                    .col(id_pk(EmailTokens::Id))
                    .col(uuid_ref(EmailTokens::UserId))
                    .col(ColumnDef::new(EmailTokens::Purpose).string_len(16).not_null())
                    .col(ColumnDef::new(EmailTokens::TokenHash).string_len(64).not_null().unique_key())
                    .col(text(EmailTokens::Email))
                    .col(text_null(EmailTokens::PasswordFingerprint))
                    .col(unix_time(EmailTokens::CreatedAt))
                    .col(unix_time(EmailTokens::ExpiresAt))
                    .foreign_key(&mut cascade(EmailTokens::Table, EmailTokens::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_email_tokens_user", EmailTokens::Table, EmailTokens::UserId).to_owned())
            .await?;
        manager
            .create_index(index("idx_email_tokens_expiry", EmailTokens::Table, EmailTokens::ExpiresAt).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, [EmailTokens::Table.into_iden()]).await?;
        manager.get_connection().execute_unprepared("DROP INDEX idx_users_verified_email").await?;
        for column in [Users::SelfRegistered, Users::EmailVerified] {
            manager.alter_table(Table::alter().table(Users::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
