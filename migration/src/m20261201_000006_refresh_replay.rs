//! A refresh whose answer was lost: the rotated parent keeps its child sealed under a
//! key only the parent's holder can derive (`child_sealed`, erased once the grace
//! window is over), and children are found by their parent (one each).

use sea_orm_migration::prelude::*;

use crate::ddl::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    ParentId,
    ChildSealed,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(RefreshTokens::Table).add_column(text_null(RefreshTokens::ChildSealed)).to_owned(),
            )
            .await?;
        manager
            .create_index(
                // Unique: one child per parent, held by the database as well as by the
                // rotation's compare-and-swap (NULL parents, first tokens, do not collide).
                index("idx_refresh_tokens_parent", RefreshTokens::Table, RefreshTokens::ParentId).unique().to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_index(manager, "idx_refresh_tokens_parent", RefreshTokens::Table).await?;
        manager
            .alter_table(Table::alter().table(RefreshTokens::Table).drop_column(RefreshTokens::ChildSealed).to_owned())
            .await
    }
}
