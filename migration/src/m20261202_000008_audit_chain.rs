//! The audit log becomes a hash chain: each event gets its place (`chain_seq`, 1, 2, …
//! without gaps) and its link (`chain_hash`, [`crate::audit_chain`]), and `audit_chain`
//! holds two rows: `head`, the last event's place and link, which writers advance under
//! its row lock, and `anchor`, the place and link of the last event the retention purge
//! deleted, where verification starts. Events that exist when this runs are chained here,
//! in the order of their ids.

use sea_orm_migration::SchemaManagerConnection;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, QueryResult};

use crate::audit_chain::{Content, GENESIS};
use crate::ddl::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    ChainSeq,
    ChainHash,
}

#[derive(DeriveIden)]
enum AuditChain {
    Table,
    /// `head` or `anchor`.
    Name,
    Seq,
    Hash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on SQLite too (sea-orm-migration uses one only on PostgreSQL by
    /// default): a crash during the backfill leaves the schema as it was, so the next
    /// start runs this again, and the backfill's updates commit once.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE takes one change at a time.
        for column in [
            ColumnDef::new(AuditEvents::ChainSeq).big_integer().null().to_owned(),
            ColumnDef::new(AuditEvents::ChainHash).string_len(64).null().to_owned(),
        ] {
            manager.alter_table(Table::alter().table(AuditEvents::Table).add_column(column).to_owned()).await?;
        }
        manager
            .create_index(
                index("idx_audit_events_chain_seq", AuditEvents::Table, AuditEvents::ChainSeq).unique().to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditChain::Table)
                    .col(ColumnDef::new(AuditChain::Name).string_len(16).not_null().primary_key())
                    .col(ColumnDef::new(AuditChain::Seq).big_integer().not_null())
                    .col(ColumnDef::new(AuditChain::Hash).string_len(64).not_null())
                    .to_owned(),
            )
            .await?;
        let head = chain_existing(manager).await?;
        let seed = Query::insert()
            .into_table(AuditChain::Table)
            .columns([AuditChain::Name, AuditChain::Seq, AuditChain::Hash])
            .values_panic(["head".into(), head.0.into(), head.1.into()])
            .values_panic(["anchor".into(), 0i64.into(), GENESIS.into()])
            .to_owned();
        manager.get_connection().execute(&seed).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditChain::Table).to_owned()).await?;
        drop_index(manager, "idx_audit_events_chain_seq", AuditEvents::Table).await?;
        for column in [AuditEvents::ChainHash, AuditEvents::ChainSeq] {
            manager.alter_table(Table::alter().table(AuditEvents::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}

/// Links every event already stored, oldest id first, a page at a time (a long log is
/// never held in memory whole); returns the head (place, link).
async fn chain_existing(manager: &SchemaManager<'_>) -> Result<(i64, String), DbErr> {
    let db = manager.get_connection();
    let mut head = (0i64, GENESIS.to_string());
    let mut after_id = i64::MIN;
    loop {
        let page = Query::select()
            .columns(["id", "occurred_at", "actor", "action", "target", "ip", "outcome", "details"].map(Alias::new))
            .from(AuditEvents::Table)
            .and_where(Expr::col(Alias::new("id")).gt(after_id))
            .order_by(Alias::new("id"), Order::Asc)
            .limit(1000)
            .to_owned();
        let rows = db.query_all(&page).await?;
        let Some(last) = rows.last() else { return Ok(head) };
        after_id = last.try_get("", "id")?;
        for row in rows {
            head = chain_one(db, &row, head).await?;
        }
    }
}

async fn chain_one(
    db: &SchemaManagerConnection<'_>,
    row: &QueryResult,
    head: (i64, String),
) -> Result<(i64, String), DbErr> {
    let id: i64 = row.try_get("", "id")?;
    let (actor, action, outcome, details): (String, String, String, String) = (
        row.try_get("", "actor")?,
        row.try_get("", "action")?,
        row.try_get("", "outcome")?,
        row.try_get("", "details")?,
    );
    let (target, ip): (Option<String>, Option<String>) = (row.try_get("", "target")?, row.try_get("", "ip")?);
    let content = Content {
        seq: head.0 + 1,
        occurred_at: row.try_get("", "occurred_at")?,
        actor: &actor,
        action: &action,
        target: target.as_deref(),
        ip: ip.as_deref(),
        outcome: &outcome,
        details: &details,
    };
    let link = content.link(&head.1);
    let update = Query::update()
        .table(AuditEvents::Table)
        .value(AuditEvents::ChainSeq, content.seq)
        .value(AuditEvents::ChainHash, link.as_str())
        .and_where(Expr::col(Alias::new("id")).eq(id))
        .to_owned();
    db.execute(&update).await?;
    Ok((content.seq, link))
}
