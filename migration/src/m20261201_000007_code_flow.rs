//! OpenID Connect sign-in for any relying party: clients gain redirect URIs and a
//! first-party flag; the browser's login session (`sso_sessions`), the sign-in
//! interactions of the hosted pages (`authorization_requests`), authorization codes and
//! remembered consents get tables of their own.
//!
//! Clients that exist when this runs were all made by an operator under the old model,
//! where every client's tokens were trusted like our own: they become first-party, so
//! their tokens keep the audience and roles they had. New clients are third-party unless
//! a full admin says otherwise.

use sea_orm_migration::prelude::*;

use crate::ddl::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    Scopes,
    /// Space-separated, exact strings (a URI with a raw space is not a valid one).
    RedirectUris,
    PostLogoutRedirectUris,
    FirstParty,
    /// Browser origins that may call the token, userinfo and revoke endpoints (CORS).
    AllowedOrigins,
    /// The user roles this client's tokens may carry; NULL is the default filter.
    RoleFilter,
    /// `none`, `client_secret_basic` or `client_secret_post`; empty: either of the
    /// secret methods (how every confidential client authenticated before this).
    TokenEndpointAuthMethod,
    ClientType,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum SsoSessions {
    Table,
    Id,
    TokenHash,
    UserId,
    CreatedAt,
    LastSeenAt,
    IdleExpiresAt,
    AbsoluteExpiresAt,
    AuthTime,
    Amr,
    Ip,
    UserAgent,
    RevokedAt,
    RevokedReason,
}

#[derive(DeriveIden)]
enum AuthorizationRequests {
    Table,
    Id,
    /// SHA-256 of the browser-binding cookie the request was started with.
    BrowserHash,
    ClientId,
    /// The validated request (redirect URI, scope, state, nonce, PKCE, prompt) as JSON.
    Params,
    /// Set once the password is checked (and the second factor, when `stage` says so).
    UserId,
    Amr,
    AuthTime,
    Stage,
    /// A message for the next render of the page (post-redirect-get).
    Notice,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    CodeHash,
    ClientId,
    UserId,
    SsoSessionId,
    RedirectUri,
    CodeChallenge,
    Scope,
    Nonce,
    AuthTime,
    Amr,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    /// The session the redemption created, revoked if the code comes back.
    SessionId,
}

#[derive(DeriveIden)]
enum Consents {
    Table,
    UserId,
    ClientId,
    Scope,
    GrantedAt,
}

async fn add_column(manager: &SchemaManager<'_>, column: ColumnDef) -> Result<(), DbErr> {
    // One column per statement: SQLite's ALTER TABLE takes one change at a time.
    manager.alter_table(Table::alter().table(Clients::Table).add_column(column).to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for list in [Clients::RedirectUris, Clients::PostLogoutRedirectUris, Clients::AllowedOrigins] {
            add_column(manager, ColumnDef::new(list).text().not_null().default("").to_owned()).await?;
        }
        add_column(manager, ColumnDef::new(Clients::FirstParty).boolean().not_null().default(false).to_owned()).await?;
        add_column(manager, text_null(Clients::RoleFilter)).await?;
        add_column(manager, ColumnDef::new(Clients::TokenEndpointAuthMethod).text().not_null().default("").to_owned())
            .await?;
        let public = Query::update()
            .table(Clients::Table)
            .value(Clients::TokenEndpointAuthMethod, "none")
            .and_where(Expr::col(Clients::ClientType).eq("public"))
            .to_owned();
        manager.get_connection().execute(&public).await?;
        let existing = Query::update().table(Clients::Table).value(Clients::FirstParty, true).to_owned();
        manager.get_connection().execute(&existing).await?;
        // What `/auth/me` and userinfo return to the seeded apps stays: email and roles.
        let seeded = Query::update()
            .table(Clients::Table)
            .value(Clients::Scopes, "openid profile email roles")
            .and_where(Expr::col(Clients::ClientId).is_in(["spa", "latchkey-admin"]))
            .and_where(Expr::col(Clients::Scopes).eq("openid profile"))
            .to_owned();
        manager.get_connection().execute(&seeded).await?;

        manager
            .create_table(
                Table::create()
                    .table(SsoSessions::Table)
                    .col(id_pk(SsoSessions::Id))
                    .col(ColumnDef::new(SsoSessions::TokenHash).string_len(64).not_null().unique_key())
                    .col(uuid_ref(SsoSessions::UserId))
                    .col(unix_time(SsoSessions::CreatedAt))
                    .col(unix_time(SsoSessions::LastSeenAt))
                    .col(unix_time(SsoSessions::IdleExpiresAt))
                    .col(unix_time(SsoSessions::AbsoluteExpiresAt))
                    .col(unix_time(SsoSessions::AuthTime))
                    .col(text(SsoSessions::Amr))
                    .col(text_null(SsoSessions::Ip))
                    .col(text_null(SsoSessions::UserAgent))
                    .col(unix_time_null(SsoSessions::RevokedAt))
                    .col(text_null(SsoSessions::RevokedReason))
                    .foreign_key(&mut cascade(SsoSessions::Table, SsoSessions::UserId, Users::Table, Users::Id))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("idx_sso_sessions_user", SsoSessions::Table, SsoSessions::UserId)).await?;
        manager
            .create_index(index("idx_sso_sessions_expiry", SsoSessions::Table, SsoSessions::AbsoluteExpiresAt))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthorizationRequests::Table)
                    .col(id_pk(AuthorizationRequests::Id))
                    .col(ColumnDef::new(AuthorizationRequests::BrowserHash).string_len(64).not_null())
                    .col(ColumnDef::new(AuthorizationRequests::ClientId).string_len(64).not_null())
                    .col(text(AuthorizationRequests::Params))
                    .col(ColumnDef::new(AuthorizationRequests::UserId).string_len(36).null())
                    .col(text_null(AuthorizationRequests::Amr))
                    .col(unix_time_null(AuthorizationRequests::AuthTime))
                    .col(ColumnDef::new(AuthorizationRequests::Stage).string_len(16).not_null())
                    .col(text_null(AuthorizationRequests::Notice))
                    .col(unix_time(AuthorizationRequests::CreatedAt))
                    .col(unix_time(AuthorizationRequests::ExpiresAt))
                    .foreign_key(&mut cascade(
                        AuthorizationRequests::Table,
                        AuthorizationRequests::ClientId,
                        Clients::Table,
                        Clients::ClientId,
                    ))
                    .foreign_key(&mut cascade(
                        AuthorizationRequests::Table,
                        AuthorizationRequests::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_authorization_requests_expiry",
                AuthorizationRequests::Table,
                AuthorizationRequests::ExpiresAt,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthorizationCodes::Table)
                    .col(ColumnDef::new(AuthorizationCodes::CodeHash).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(AuthorizationCodes::ClientId).string_len(64).not_null())
                    .col(uuid_ref(AuthorizationCodes::UserId))
                    .col(ColumnDef::new(AuthorizationCodes::SsoSessionId).string_len(36).null())
                    .col(text(AuthorizationCodes::RedirectUri))
                    .col(text(AuthorizationCodes::CodeChallenge))
                    .col(text(AuthorizationCodes::Scope))
                    .col(text_null(AuthorizationCodes::Nonce))
                    .col(unix_time(AuthorizationCodes::AuthTime))
                    .col(text(AuthorizationCodes::Amr))
                    .col(unix_time(AuthorizationCodes::CreatedAt))
                    .col(unix_time(AuthorizationCodes::ExpiresAt))
                    .col(unix_time_null(AuthorizationCodes::UsedAt))
                    .col(ColumnDef::new(AuthorizationCodes::SessionId).string_len(36).null())
                    .foreign_key(&mut cascade(
                        AuthorizationCodes::Table,
                        AuthorizationCodes::ClientId,
                        Clients::Table,
                        Clients::ClientId,
                    ))
                    .foreign_key(&mut cascade(
                        AuthorizationCodes::Table,
                        AuthorizationCodes::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_authorization_codes_expiry",
                AuthorizationCodes::Table,
                AuthorizationCodes::ExpiresAt,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Consents::Table)
                    .col(uuid_ref(Consents::UserId))
                    .col(ColumnDef::new(Consents::ClientId).string_len(64).not_null())
                    .col(text(Consents::Scope))
                    .col(unix_time(Consents::GrantedAt))
                    .primary_key(Index::create().col(Consents::UserId).col(Consents::ClientId))
                    .foreign_key(&mut cascade(Consents::Table, Consents::UserId, Users::Table, Users::Id))
                    .foreign_key(&mut cascade(Consents::Table, Consents::ClientId, Clients::Table, Clients::ClientId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            manager,
            [
                Consents::Table.into_iden(),
                AuthorizationCodes::Table.into_iden(),
                AuthorizationRequests::Table.into_iden(),
                SsoSessions::Table.into_iden(),
            ],
        )
        .await?;
        for column in [
            Clients::TokenEndpointAuthMethod,
            Clients::RoleFilter,
            Clients::FirstParty,
            Clients::AllowedOrigins,
            Clients::PostLogoutRedirectUris,
            Clients::RedirectUris,
        ] {
            manager.alter_table(Table::alter().table(Clients::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
