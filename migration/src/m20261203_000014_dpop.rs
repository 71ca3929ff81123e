//! DPoP (RFC 9449): the proofs seen lately, so a proof is accepted once across every
//! node. A row lives as long as its proof could still pass the `iat` window, then the
//! purge deletes it; the key is a hash of the proof's key thumbprint and `jti`, so the
//! table's rows have one bounded size.

use sea_orm_migration::prelude::*;

use crate::ddl::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DpopProofs {
    Table,
    /// SHA-256 (hex) of `jkt` and `jti`.
    ProofKey,
    /// When the proof's `iat` window has closed: after this, it would be refused anyway.
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DpopProofs::Table)
                    .col(ColumnDef::new(DpopProofs::ProofKey).string_len(64).not_null().primary_key())
                    .col(unix_time(DpopProofs::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("idx_dpop_proofs_expiry", DpopProofs::Table, DpopProofs::ExpiresAt).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, [DpopProofs::Table.into_iden()]).await
    }
}
