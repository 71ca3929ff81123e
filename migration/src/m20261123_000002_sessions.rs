//! OAuth clients, login sessions (token families) and their rotating refresh tokens.

use crate::ddl::*;
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
                    .foreign_key(&mut cascade(
                        ClientRoles::Table,
                        ClientRoles::ClientId,
                        Clients::Table,
                        Clients::ClientId,
                    ))
                    .foreign_key(&mut role_cascade(
                        ClientRoles::Table,
                        ClientRoles::RoleName,
                        Roles::Table,
                        Roles::Name,
                    ))
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
                    .foreign_key(&mut cascade(Sessions::Table, Sessions::UserId, Users::Table, Users::Id))
                    .foreign_key(&mut cascade(Sessions::Table, Sessions::ClientId, Clients::Table, Clients::ClientId))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("idx_sessions_user", Sessions::Table, Sessions::UserId)).await?;
        manager.create_index(index("idx_sessions_client", Sessions::Table, Sessions::ClientId)).await?;

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
                    .foreign_key(&mut cascade(
                        RefreshTokens::Table,
                        RefreshTokens::SessionId,
                        Sessions::Table,
                        Sessions::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("idx_refresh_tokens_session", RefreshTokens::Table, RefreshTokens::SessionId))
            .await?;

        seed_first_party_clients(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            manager,
            [
                RefreshTokens::Table.into_iden(),
                Sessions::Table.into_iden(),
                ClientRoles::Table.into_iden(),
                Clients::Table.into_iden(),
            ],
        )
        .await
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
