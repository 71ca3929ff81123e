//! OAuth clients, login sessions (token families) and their rotating refresh tokens.

use crate::cols::*;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    Name,
    ClientType,
    SecretHash,
    GrantTypes,
    Scopes,
    Audience,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ClientRoles {
    Table,
    ClientId,
    RoleName,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Name,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    ClientId,
    CreatedAt,
    LastUsedAt,
    IdleExpiresAt,
    AbsoluteExpiresAt,
    RevokedAt,
    RevokedReason,
    Ip,
    UserAgent,
    Amr,
    AuthTime,
    Scope,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    SessionId,
    ParentId,
    TokenHash,
    State,
    CreatedAt,
    UsedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Clients::Table)
                    .col(ColumnDef::new(Clients::ClientId).string_len(64).not_null().primary_key())
                    .col(text(Clients::Name))
                    .col(ColumnDef::new(Clients::ClientType).string_len(16).not_null())
                    .col(text_null(Clients::SecretHash))
                    // Space-separated lists, the way OAuth itself spells scopes.
                    .col(ColumnDef::new(Clients::GrantTypes).text().not_null().default(""))
                    .col(ColumnDef::new(Clients::Scopes).text().not_null().default(""))
                    .col(text_null(Clients::Audience))
                    .col(unix_time(Clients::CreatedAt))
                    .col(unix_time(Clients::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // Roles carried by a client's client_credentials tokens.
        manager
            .create_table(
                Table::create()
                    .table(ClientRoles::Table)
                    .col(ColumnDef::new(ClientRoles::ClientId).string_len(64).not_null())
                    .col(ColumnDef::new(ClientRoles::RoleName).string_len(64).not_null())
                    .primary_key(Index::create().col(ClientRoles::ClientId).col(ClientRoles::RoleName))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ClientRoles::Table, ClientRoles::ClientId)
                            .to(Clients::Table, Clients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ClientRoles::Table, ClientRoles::RoleName)
                            .to(Roles::Table, Roles::Name)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(id_pk(Sessions::Id))
                    .col(uuid_ref(Sessions::UserId))
                    .col(ColumnDef::new(Sessions::ClientId).string_len(64).not_null())
                    .col(unix_time(Sessions::CreatedAt))
                    .col(unix_time(Sessions::LastUsedAt))
                    .col(unix_time(Sessions::IdleExpiresAt))
                    .col(unix_time(Sessions::AbsoluteExpiresAt))
                    .col(unix_time_null(Sessions::RevokedAt))
                    .col(ColumnDef::new(Sessions::RevokedReason).string_len(64).null())
                    .col(text_null(Sessions::Ip))
                    .col(text_null(Sessions::UserAgent))
                    .col(ColumnDef::new(Sessions::Amr).string_len(64).not_null())
                    .col(unix_time(Sessions::AuthTime))
                    .col(ColumnDef::new(Sessions::Scope).text().not_null().default(""))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sessions::Table, Sessions::ClientId)
                            .to(Clients::Table, Clients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_sessions_user").table(Sessions::Table).col(Sessions::UserId).to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_sessions_client").table(Sessions::Table).col(Sessions::ClientId).to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(id_pk(RefreshTokens::Id))
                    .col(uuid_ref(RefreshTokens::SessionId))
                    .col(ColumnDef::new(RefreshTokens::ParentId).string_len(36).null())
                    .col(ColumnDef::new(RefreshTokens::TokenHash).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(RefreshTokens::State).string_len(16).not_null())
                    .col(unix_time(RefreshTokens::CreatedAt))
                    .col(unix_time_null(RefreshTokens::UsedAt))
                    .col(unix_time(RefreshTokens::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefreshTokens::Table, RefreshTokens::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_tokens_session")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::SessionId)
                    .to_owned(),
            )
            .await?;

        seed_first_party_clients(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RefreshTokens::Table.into_iden(),
            Sessions::Table.into_iden(),
            ClientRoles::Table.into_iden(),
            Clients::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

/// The two public first-party clients every installation needs: the browser SPA
/// (cookie flow under `/auth`) and the operator console (password grant).
async fn seed_first_party_clients(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let insert = Query::insert()
        .into_table(Clients::Table)
        .columns([
            Clients::ClientId,
            Clients::Name,
            Clients::ClientType,
            Clients::GrantTypes,
            Clients::Scopes,
            Clients::CreatedAt,
            Clients::UpdatedAt,
        ])
        .values_panic([
            "spa".into(),
            "First-party single-page app".into(),
            "public".into(),
            "refresh_token".into(),
            "openid profile".into(),
            0i64.into(),
            0i64.into(),
        ])
        .values_panic([
            "latchkey-admin".into(),
            "Latchkey admin console".into(),
            "public".into(),
            "password refresh_token".into(),
            "openid profile".into(),
            0i64.into(),
            0i64.into(),
        ])
        .to_owned();
    manager.get_connection().execute(&insert).await?;
    Ok(())
}
