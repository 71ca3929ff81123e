//! Passkeys (WebAuthn): each user's registered credentials, and the ceremonies in
//! progress.
//!
//! A ceremony's state (the challenge and what the answer is checked against) is kept
//! here, not in the node's memory, so a ceremony started on one node finishes on any
//! other; it is taken (deleted) by the finish that uses it, so each challenge is answered
//! once.

use sea_orm_migration::prelude::*;

use crate::ddl::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Passkeys {
    Table,
    Id,
    UserId,
    /// The authenticator's credential id, base64url: unique across all users.
    CredentialId,
    /// What the user calls it.
    Name,
    /// The public key and its registration facts, as the WebAuthn library serialises them
    /// (JSON; no secret: the private key never leaves the authenticator).
    Credential,
    /// The highest signature counter seen; a lower one hints at a cloned authenticator.
    SignCount,
    /// Whether the authenticator may back the key up (synced passkeys), and whether it has.
    BackupEligible,
    BackupState,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum WebauthnCeremonies {
    Table,
    Id,
    /// `register`, `sign_in` or `second_factor`.
    Purpose,
    /// The user it is for: the one registering, or the one whose password was checked;
    /// NULL for a usernameless sign-in.
    UserId,
    /// The library's state (JSON): the challenge and the policy the answer must meet.
    State,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Passkeys::Table)
                    .col(id_pk(Passkeys::Id))
                    .col(uuid_ref(Passkeys::UserId))
                    .col(text(Passkeys::CredentialId))
                    .col(text(Passkeys::Name))
                    .col(text(Passkeys::Credential))
                    .col(ColumnDef::new(Passkeys::SignCount).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Passkeys::BackupEligible).boolean().not_null().default(false))
                    .col(ColumnDef::new(Passkeys::BackupState).boolean().not_null().default(false))
                    .col(unix_time(Passkeys::CreatedAt))
                    .col(unix_time_null(Passkeys::LastUsedAt))
                    .foreign_key(&mut cascade(Passkeys::Table, Passkeys::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_passkeys_credential", Passkeys::Table, Passkeys::CredentialId).unique().to_owned())
            .await?;
        manager.create_index(index("idx_passkeys_user", Passkeys::Table, Passkeys::UserId).to_owned()).await?;
        manager
            .create_table(
                Table::create()
                    .table(WebauthnCeremonies::Table)
                    .col(id_pk(WebauthnCeremonies::Id))
                    .col(text(WebauthnCeremonies::Purpose))
                    .col(ColumnDef::new(WebauthnCeremonies::UserId).string_len(36).null())
                    .col(text(WebauthnCeremonies::State))
                    .col(unix_time(WebauthnCeremonies::CreatedAt))
                    .col(unix_time(WebauthnCeremonies::ExpiresAt))
                    .foreign_key(&mut cascade(
                        WebauthnCeremonies::Table,
                        WebauthnCeremonies::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("idx_webauthn_ceremonies_expiry", WebauthnCeremonies::Table, WebauthnCeremonies::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, [WebauthnCeremonies::Table.into_iden(), Passkeys::Table.into_iden()]).await
    }
}
