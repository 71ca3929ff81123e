//! The append-only audit log, kept as a hash chain so that an edit, a deletion or an
//! insertion made behind the server's back shows (`latchkey audit verify`).
//!
//! Each event has a place (`chain_seq`: 1, 2, … without gaps) and a link (`chain_hash`,
//! SHA-256 over the previous link and its own content; the format is
//! [`latchkey_migration::audit_chain`]). `audit_chain` holds the head (the newest place
//! and link, advanced by every writer) and the anchor (the last event the retention
//! purge deleted, where a walk starts). The hash is no signature: someone who can write
//! the database can rebuild the chain after an edit, which is why the head is exposed
//! for an operator to record elsewhere and check against later.

use latchkey_migration::audit_chain::Content;
pub use latchkey_migration::audit_chain::GENESIS;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbErr, Set};

use super::entities::audit_events;
use super::{Db, Starts, StoreResult, begin_write};

/// One event to append. `details` is a small JSON object and never holds secrets.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub occurred_at: i64,
    pub actor: String,
    pub action: &'static str,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub outcome: &'static str,
    pub details: serde_json::Value,
}

impl NewAuditEvent {
    /// A successful action by `actor` on `target`, with no details yet.
    pub fn success(occurred_at: i64, actor: &str, action: &'static str, target: &str) -> Self {
        Self {
            occurred_at,
            actor: actor.to_string(),
            action,
            target: Some(target.to_string()),
            ip: None,
            outcome: "success",
            details: serde_json::json!({}),
        }
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }

    pub fn outcome(mut self, outcome: &'static str) -> Self {
        self.outcome = outcome;
        self
    }
}

/// Longest actor, target or IP kept in an event (characters): events are written for
/// unauthenticated requests too, so nothing they carry may grow the table at will.
pub const FIELD_MAX_CHARS: usize = 256;
/// Longest serialised `details` kept (bytes); longer ones are replaced by a marker.
pub const DETAILS_MAX_BYTES: usize = 4096;

fn bounded(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(FIELD_MAX_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn bounded_details(details: &serde_json::Value) -> String {
    let text = details.to_string();
    if text.len() <= DETAILS_MAX_BYTES {
        text
    } else {
        serde_json::json!({ "truncated": true, "bytes": text.len() }).to_string()
    }
}

/// An event as it is stored: every field bounded, the details serialised. The engines'
/// inline writers ([`super::sqlite`]) insert this; [`record`] inserts it through sea-orm.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub occurred_at: i64,
    pub actor: String,
    pub action: &'static str,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub outcome: &'static str,
    pub details: String,
}

impl From<NewAuditEvent> for StoredEvent {
    fn from(event: NewAuditEvent) -> Self {
        Self {
            occurred_at: event.occurred_at,
            actor: bounded(event.actor),
            action: event.action,
            target: event.target.map(bounded),
            ip: event.ip.map(bounded),
            outcome: event.outcome,
            details: bounded_details(&event.details),
        }
    }
}

impl StoredEvent {
    /// What its link covers, at place `seq`.
    pub fn content(&self, seq: i64) -> Content<'_> {
        Content {
            seq,
            occurred_at: self.occurred_at,
            actor: &self.actor,
            action: self.action,
            target: self.target.as_deref(),
            ip: self.ip.as_deref(),
            outcome: self.outcome,
            details: &self.details,
        }
    }
}

/// Appends `event` to the log inside `txn`, and on SQLite to its hash chain at once.
///
/// SQLite has one writer at a time, so linking the event in its own transaction costs
/// nothing measurable (the code flow, two events per sign-in, ran 55% of its ceiling
/// either way). On PostgreSQL linking there would serialise every audited transaction of
/// every node on the chain's head for the length of its commit (the code flow fell from
/// 29–32% to 16–20% of its ceiling), so there the event is written unlinked and
/// [`link_pending`] links the new events in batches, in the order it finds them
/// committed, about once a second.
pub async fn record(txn: &DatabaseTransaction, event: NewAuditEvent) -> StoreResult<()> {
    let event = StoredEvent::from(event);
    let link = match txn.get_database_backend() {
        sea_orm::DbBackend::Postgres => None,
        _ => Some(advance_head(txn, &event).await?),
    };
    let (seq, hash) = link.clone().map(|point| (point.seq, point.hash)).unzip();
    audit_events::ActiveModel {
        occurred_at: Set(event.occurred_at),
        actor: Set(event.actor),
        action: Set(event.action.to_string()),
        target: Set(event.target),
        ip: Set(event.ip),
        outcome: Set(event.outcome.to_string()),
        details: Set(event.details),
        chain_seq: Set(seq),
        chain_hash: Set(hash),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    if let Some(link) = link {
        set_point(txn, HEAD, link).await?;
    }
    Ok(())
}

/// Takes the next place after the head (and the head's row lock until `txn` ends) and
/// computes `event`'s link there; [`set_point`] then records it as the head.
async fn advance_head(txn: &DatabaseTransaction, event: &StoredEvent) -> StoreResult<ChainPoint> {
    let head = lock_head(txn, 1).await?;
    let seq = head.seq;
    Ok(ChainPoint { seq, hash: event.content(seq).link(&head.hash) })
}

/// Moves the head's place on by `by` under its row lock, which is held until `txn`
/// ends; returns the new place and the link of the old one.
async fn lock_head(txn: &DatabaseTransaction, by: i64) -> StoreResult<ChainPoint> {
    let advance = Query::update()
        .table(AuditChain::Table)
        .value(AuditChain::Seq, Expr::col(AuditChain::Seq).add(by))
        .and_where(Expr::col(AuditChain::Name).eq(HEAD))
        .returning(Query::returning().columns([AuditChain::Seq, AuditChain::Hash]))
        .to_owned();
    let head = txn.query_one(&advance).await?.ok_or_else(|| DbErr::RecordNotFound("the audit chain's head".into()))?;
    Ok(ChainPoint { seq: head.try_get("", "seq")?, hash: head.try_get("", "hash")? })
}

/// Sets the `audit_chain` row `name` (the head or the anchor) to `point`.
pub(super) async fn set_point(txn: &DatabaseTransaction, name: &str, point: ChainPoint) -> StoreResult<()> {
    let set = Query::update()
        .table(AuditChain::Table)
        .value(AuditChain::Seq, point.seq)
        .value(AuditChain::Hash, point.hash)
        .and_where(Expr::col(AuditChain::Name).eq(name))
        .to_owned();
    txn.execute(&set).await?;
    Ok(())
}

/// Links up to `limit` events written without a link (on PostgreSQL, every event
/// [`record`] wrote), oldest id first, after the head, in one transaction; returns how
/// many. Two nodes linking at once queue on the head's row lock, and the second finds
/// the first's work done.
pub async fn link_pending(db: &Db, limit: u64) -> StoreResult<u64> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let txn = begin_write(db, Starts::WithWrite).await?.changes_no_cached_rows();
    let head = lock_head(&txn, 0).await?;
    let pending = audit_events::Entity::find()
        .filter(audit_events::Column::ChainSeq.is_null())
        .order_by_asc(audit_events::Column::Id)
        .limit(limit)
        .all(&*txn)
        .await?;
    if pending.is_empty() {
        txn.rollback().await?;
        return Ok(0);
    }
    let mut last = head;
    for row in &pending {
        let seq = last.seq + 1;
        let hash = row_content(row, seq).link(&last.hash);
        audit_events::Entity::update_many()
            .col_expr(audit_events::Column::ChainSeq, Expr::value(seq))
            .col_expr(audit_events::Column::ChainHash, Expr::value(hash.clone()))
            .filter(audit_events::Column::Id.eq(row.id))
            .exec(&*txn)
            .await?;
        last = ChainPoint { seq, hash };
    }
    set_point(&txn, HEAD, last).await?;
    txn.commit().await?;
    Ok(pending.len() as u64)
}

/// What a stored event's link covers, at place `seq`.
pub fn row_content(row: &AuditRow, seq: i64) -> Content<'_> {
    Content {
        seq,
        occurred_at: row.occurred_at,
        actor: &row.actor,
        action: &row.action,
        target: row.target.as_deref(),
        ip: row.ip.as_deref(),
        outcome: &row.outcome,
        details: &row.details,
    }
}

/// [`record`] in a transaction of its own, for an event no other change goes with.
pub async fn record_alone(db: &Db, event: NewAuditEvent) -> StoreResult<()> {
    let txn = begin_write(db, Starts::WithWrite).await?.changes_no_cached_rows();
    record(&txn, event).await?;
    txn.commit().await?;
    Ok(())
}

/// The rows of `audit_chain`.
#[derive(sea_orm::DeriveIden)]
pub(super) enum AuditChain {
    Table,
    Name,
    Seq,
    Hash,
}

/// The row of `audit_chain` at the newest event, advanced by each writer.
pub(super) const HEAD: &str = "head";
/// The row at the last event the retention purge deleted; verification starts there.
pub(super) const ANCHOR: &str = "anchor";

/// A place in the chain and its link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPoint {
    pub seq: i64,
    pub hash: String,
}

/// Where the chain starts (the anchor: nothing purged yet is place 0, [`GENESIS`]) and
/// where it ends (the head).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEnds {
    pub anchor: ChainPoint,
    pub head: ChainPoint,
}

pub async fn chain_ends(db: &impl ConnectionTrait) -> StoreResult<ChainEnds> {
    let select = Query::select()
        .columns([AuditChain::Name, AuditChain::Seq, AuditChain::Hash])
        .from(AuditChain::Table)
        .to_owned();
    let (mut anchor, mut head) = (None, None);
    for row in db.query_all(&select).await? {
        let name: String = row.try_get("", "name")?;
        let point = ChainPoint { seq: row.try_get("", "seq")?, hash: row.try_get("", "hash")? };
        match name.as_str() {
            HEAD => head = Some(point),
            ANCHOR => anchor = Some(point),
            _ => {}
        }
    }
    match (anchor, head) {
        (Some(anchor), Some(head)) => Ok(ChainEnds { anchor, head }),
        _ => Err(DbErr::RecordNotFound("the audit chain's anchor and head".into()).into()),
    }
}

/// A read-only transaction that sees one snapshot of the database (repeatable read on
/// PostgreSQL; a SQLite transaction reads one snapshot of the WAL), so a walk of the
/// chain sees no purge or append half-done while the server keeps running.
pub async fn snapshot(db: &Db) -> StoreResult<DatabaseTransaction> {
    use sea_orm::{AccessMode, IsolationLevel, TransactionTrait};
    let (isolation, access) = match db.backend() {
        sea_orm::DbBackend::Postgres => (Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)),
        _ => (None, None),
    };
    Ok(db.connection().begin_with_config(isolation, access).await?)
}

/// Up to `limit` chained events after place `after`, in chain order.
pub async fn chain_page(db: &impl ConnectionTrait, after: i64, limit: u64) -> StoreResult<Vec<AuditRow>> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    Ok(audit_events::Entity::find()
        .filter(audit_events::Column::ChainSeq.gt(after))
        .order_by_asc(audit_events::Column::ChainSeq)
        .limit(limit)
        .all(db)
        .await?)
}

/// Whether events on this database are linked after their commit, by [`link_pending`]
/// (PostgreSQL), rather than in it (SQLite).
pub fn links_after_commit(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == sea_orm::DbBackend::Postgres
}

/// The first event (by id) that is not in the chain where it should be: without a place
/// or link (unless events are linked after commit and it awaits both), or at a place
/// outside anchor..=head. `ends` must be read in the same [`snapshot`].
pub async fn first_outside_chain(db: &impl ConnectionTrait, ends: &ChainEnds) -> StoreResult<Option<AuditRow>> {
    use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};
    let unplaced = if links_after_commit(db) {
        Condition::any()
            .add(audit_events::Column::ChainSeq.is_null().and(audit_events::Column::ChainHash.is_not_null()))
            .add(audit_events::Column::ChainHash.is_null().and(audit_events::Column::ChainSeq.is_not_null()))
    } else {
        Condition::any().add(audit_events::Column::ChainSeq.is_null()).add(audit_events::Column::ChainHash.is_null())
    };
    let outside = unplaced
        .add(audit_events::Column::ChainSeq.lte(ends.anchor.seq))
        .add(audit_events::Column::ChainSeq.gt(ends.head.seq));
    Ok(audit_events::Entity::find().filter(outside).order_by_asc(audit_events::Column::Id).one(db).await?)
}

/// How many events await their link (written, not yet linked by [`link_pending`]).
pub async fn awaiting_link(db: &impl ConnectionTrait) -> StoreResult<u64> {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    Ok(audit_events::Entity::find()
        .filter(audit_events::Column::ChainSeq.is_null())
        .filter(audit_events::Column::ChainHash.is_null())
        .count(db)
        .await?)
}

/// Why a chain does not verify from some point on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The event at `seq` is not there: deleted, or its place changed.
    Missing { seq: i64, next_id: Option<i64> },
    /// The event's content or link is not what was chained at its place.
    Altered { id: i64, seq: i64 },
}

/// Walks a chain forward from a known point, one stored event at a time.
#[derive(Debug, Clone)]
pub struct ChainWalk {
    last: ChainPoint,
}

impl ChainWalk {
    pub fn from(start: ChainPoint) -> Self {
        Self { last: start }
    }

    /// The last place and link checked.
    pub fn last(&self) -> &ChainPoint {
        &self.last
    }

    /// Checks that `row` is the next link; moves past it when it is.
    pub fn step(&mut self, row: &AuditRow) -> Result<(), ChainBreak> {
        let seq = self.last.seq + 1;
        if row.chain_seq != Some(seq) {
            return Err(ChainBreak::Missing { seq, next_id: Some(row.id) });
        }
        let link = row_content(row, seq).link(&self.last.hash);
        if row.chain_hash.as_deref() != Some(link.as_str()) {
            return Err(ChainBreak::Altered { id: row.id, seq });
        }
        self.last = ChainPoint { seq, hash: link };
        Ok(())
    }
}

/// Newest first; used by tests now and by the admin API.
pub async fn list_recent(db: &impl ConnectionTrait, limit: u64) -> StoreResult<Vec<audit_events::Model>> {
    use sea_orm::{EntityTrait, QueryOrder, QuerySelect};
    Ok(audit_events::Entity::find().order_by_desc(audit_events::Column::Id).limit(limit).all(db).await?)
}

pub use audit_events::Model as AuditRow;

/// Filters of the audit list; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    /// Only events newer than this id (for following the log).
    pub after_id: Option<i64>,
}

/// Newest first, one page, with the total.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &AuditFilter,
    page: super::Page,
) -> StoreResult<(Vec<AuditRow>, u64)> {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
    let mut query = audit_events::Entity::find();
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_events::Column::Actor.eq(actor.as_str()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_events::Column::Action.eq(action.as_str()));
    }
    if let Some(target) = &filter.target {
        query = query.filter(audit_events::Column::Target.eq(target.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::Column::OccurredAt.gte(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::Column::OccurredAt.lt(until));
    }
    if let Some(after) = filter.after_id {
        query = query.filter(audit_events::Column::Id.gt(after));
    }
    let total = query.clone().count(db).await?;
    let rows = query.order_by_desc(audit_events::Column::Id).offset(page.offset()).limit(page.size).all(db).await?;
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded_whatever_a_request_carried() {
        let long = "é".repeat(60_000);
        let kept = bounded(long);
        assert_eq!(kept.chars().count(), FIELD_MAX_CHARS + 1, "cut at a character boundary, marked");
        assert!(kept.ends_with('…'));
        assert_eq!(bounded("short".into()), "short");
        let details = serde_json::json!({ "username": "x".repeat(10_000) });
        let text = bounded_details(&details);
        assert!(text.len() < 100, "{text}");
        assert!(text.contains("\"truncated\":true"));
    }
}
