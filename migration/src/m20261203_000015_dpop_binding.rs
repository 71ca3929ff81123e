//! DPoP binding (RFC 9449): what is bound to a client's key, by its RFC 7638 thumbprint.
//!
//! - `sessions.dpop_jkt`: a public client's session whose first tokens came with a
//!   proof; every refresh of it needs a proof by the same key (§5).
//! - `authorization_codes.dpop_jkt`: the `dpop_jkt` of the authorization request (§10);
//!   the code is exchanged only with a proof by that key.
//! - `clients.dpop_bound_access_tokens`: the client's metadata (§5.2): its token
//!   requests without a proof are refused.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    DpopJkt,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    DpopJkt,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    DpopBoundAccessTokens,
}

/// A SHA-256 thumbprint in base64url is 43 characters.
const JKT_LEN: u32 = 43;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut session_jkt = ColumnDef::new(Sessions::DpopJkt).string_len(JKT_LEN).null().to_owned();
        manager.alter_table(Table::alter().table(Sessions::Table).add_column(&mut session_jkt).to_owned()).await?;
        let mut code_jkt = ColumnDef::new(AuthorizationCodes::DpopJkt).string_len(JKT_LEN).null().to_owned();
        manager
            .alter_table(Table::alter().table(AuthorizationCodes::Table).add_column(&mut code_jkt).to_owned())
            .await?;
        let mut required =
            ColumnDef::new(Clients::DpopBoundAccessTokens).boolean().not_null().default(false).to_owned();
        manager.alter_table(Table::alter().table(Clients::Table).add_column(&mut required).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Clients::Table).drop_column(Clients::DpopBoundAccessTokens).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter().table(AuthorizationCodes::Table).drop_column(AuthorizationCodes::DpopJkt).to_owned(),
            )
            .await?;
        manager.alter_table(Table::alter().table(Sessions::Table).drop_column(Sessions::DpopJkt).to_owned()).await
    }
}
