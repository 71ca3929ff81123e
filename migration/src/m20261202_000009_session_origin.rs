//! A relying party's session remembers the browser login session (SSO) it was made
//! through, so that signing out of the browser ends it too (RP-Initiated Logout).

use sea_orm_migration::prelude::*;

use crate::ddl::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    /// The `sso_sessions` row whose code made it; NULL for sessions from a password
    /// grant or the first-party login. No foreign key: ended login sessions are purged
    /// before the sessions they made.
    SsoSessionId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let column = ColumnDef::new(Sessions::SsoSessionId).string_len(36).null().to_owned();
        manager.alter_table(Table::alter().table(Sessions::Table).add_column(column).to_owned()).await?;
        manager.create_index(index("idx_sessions_sso_session_id", Sessions::Table, Sessions::SsoSessionId)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_index(manager, "idx_sessions_sso_session_id", Sessions::Table).await?;
        manager.alter_table(Table::alter().table(Sessions::Table).drop_column(Sessions::SsoSessionId).to_owned()).await
    }
}
