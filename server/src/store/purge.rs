//! Deleting what nobody needs any more, in bounded batches so no statement holds locks
//! for long, and job leases so one node at a time does it.

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::audit::{self, ANCHOR, AuditChain, ChainBreak, ChainPoint, ChainWalk};
use super::entities::{
    OutboxState, audit_events, authorization_codes, authorization_requests, dpop_proofs, email_tokens, mfa_challenges,
    outbox, refresh_tokens, sessions, sso_sessions, webauthn_ceremonies,
};
use super::{Db, Starts, StoreResult, begin_write};

/// Takes (or renews) the named lease until `now + ttl` if it is free, expired or
/// already ours. Exactly one node holds it at a time.
pub async fn try_lease(db: &impl ConnectionTrait, name: &str, holder: &str, now: i64, ttl: i64) -> StoreResult<bool> {
    let stmt = Query::update()
        .table(JobLeases::Table)
        .value(JobLeases::Holder, holder)
        .value(JobLeases::ExpiresAt, now + ttl)
        .and_where(Expr::col(JobLeases::Name).eq(name))
        .cond_where(
            Condition::any().add(Expr::col(JobLeases::ExpiresAt).lt(now)).add(Expr::col(JobLeases::Holder).eq(holder)),
        )
        .to_owned();
    Ok(db.execute(&stmt).await?.rows_affected() == 1)
}

#[derive(sea_orm::DeriveIden)]
enum JobLeases {
    Table,
    Name,
    Holder,
    ExpiresAt,
}

/// Deletes up to `batch` sessions that ended before `before` (revoked, idle-expired or
/// past their lifetime); their refresh tokens go with them. Returns how many.
pub async fn ended_sessions(db: &impl ConnectionTrait, before: i64, batch: u64) -> StoreResult<u64> {
    let ended = Condition::any()
        .add(sessions::Column::RevokedAt.lt(before))
        .add(sessions::Column::IdleExpiresAt.lt(before))
        .add(sessions::Column::AbsoluteExpiresAt.lt(before));
    delete_batch::<sessions::Entity>(db, sessions::Column::Id, ended, batch).await
}

/// What one batch of the audit purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPurge {
    pub deleted: u64,
    /// The purge stopped before this broken link: it deletes only a chain that verifies,
    /// so the evidence of an edit stays for `latchkey audit verify` to name.
    pub stopped_at: Option<ChainBreak>,
}

/// Deletes up to `batch` of the oldest events that occurred before `before`, from the
/// start of the chain (the events deleted are always a prefix of it: an old event placed
/// after a newer one waits for it), and moves the anchor to the last one deleted, so the
/// chain that remains still verifies from its start.
pub async fn old_audit_events(db: &Db, before: i64, batch: u64) -> StoreResult<AuditPurge> {
    let txn = begin_write(db, Starts::WithWrite).await?;
    // A write first: it takes the anchor's row lock (SQLite: the writer lock).
    let touch = Query::update()
        .table(AuditChain::Table)
        .value(AuditChain::Seq, Expr::col(AuditChain::Seq))
        .and_where(Expr::col(AuditChain::Name).eq(ANCHOR))
        .returning(Query::returning().columns([AuditChain::Seq, AuditChain::Hash]))
        .to_owned();
    let anchor =
        txn.query_one(&touch).await?.ok_or_else(|| DbErr::RecordNotFound("the audit chain's anchor".into()))?;
    let anchor = ChainPoint { seq: anchor.try_get("", "seq")?, hash: anchor.try_get("", "hash")? };
    let mut walk = ChainWalk::from(anchor.clone());
    let mut stopped_at = None;
    for row in audit::chain_page(&*txn, anchor.seq, batch).await? {
        if row.occurred_at >= before {
            break;
        }
        if let Err(broken) = walk.step(&row) {
            stopped_at = Some(broken);
            break;
        }
    }
    let last = walk.last().clone();
    if last.seq == anchor.seq {
        txn.rollback().await?;
        return Ok(AuditPurge { deleted: 0, stopped_at });
    }
    let deleted = audit_events::Entity::delete_many()
        .filter(audit_events::Column::ChainSeq.gt(anchor.seq))
        .filter(audit_events::Column::ChainSeq.lte(last.seq))
        .exec(&*txn)
        .await?
        .rows_affected;
    audit::set_point(&txn, ANCHOR, last).await?;
    txn.commit().await?;
    Ok(AuditPurge { deleted, stopped_at })
}

pub async fn expired_challenges(db: &impl ConnectionTrait, before: i64, batch: u64) -> StoreResult<u64> {
    let expired = Condition::all().add(mfa_challenges::Column::ExpiresAt.lt(before));
    delete_batch::<mfa_challenges::Entity>(db, mfa_challenges::Column::Id, expired, batch).await
}

/// Passkey ceremonies nobody finished in time.
pub async fn expired_ceremonies(db: &impl ConnectionTrait, before: i64, batch: u64) -> StoreResult<u64> {
    let expired = Condition::all().add(webauthn_ceremonies::Column::ExpiresAt.lt(before));
    delete_batch::<webauthn_ceremonies::Entity>(db, webauthn_ceremonies::Column::Id, expired, batch).await
}

/// DPoP proofs whose `iat` window has closed (they would be refused anyway).
pub async fn expired_dpop_proofs(db: &impl ConnectionTrait, before: i64, batch: u64) -> StoreResult<u64> {
    let expired = Condition::all().add(dpop_proofs::Column::ExpiresAt.lt(before));
    delete_batch::<dpop_proofs::Entity>(db, dpop_proofs::Column::ProofKey, expired, batch).await
}

/// Mailed links (reset, verification) nobody followed in time.
pub async fn expired_email_tokens(db: &impl ConnectionTrait, before: i64, batch: u64) -> StoreResult<u64> {
    let expired = Condition::all().add(email_tokens::Column::ExpiresAt.lt(before));
    delete_batch::<email_tokens::Entity>(db, email_tokens::Column::Id, expired, batch).await
}

/// Authorization codes past their lifetime, used or not: a used one is kept until then
/// so a second presentation still finds it (and revokes what the first bought).
pub async fn spent_codes(db: &impl ConnectionTrait, now: i64, batch: u64) -> StoreResult<u64> {
    let expired = Condition::all().add(authorization_codes::Column::ExpiresAt.lt(now));
    delete_batch::<authorization_codes::Entity>(db, authorization_codes::Column::CodeHash, expired, batch).await
}

/// Sign-ins at the hosted pages that were never finished.
pub async fn abandoned_sign_ins(db: &impl ConnectionTrait, now: i64, batch: u64) -> StoreResult<u64> {
    let expired = Condition::all().add(authorization_requests::Column::ExpiresAt.lt(now));
    delete_batch::<authorization_requests::Entity>(db, authorization_requests::Column::Id, expired, batch).await
}

/// Browser login sessions that ended (signed out, idle, or past their lifetime) before `before`.
pub async fn ended_sso_sessions(db: &impl ConnectionTrait, before: i64, batch: u64) -> StoreResult<u64> {
    let ended = Condition::any()
        .add(sso_sessions::Column::RevokedAt.lt(before))
        .add(sso_sessions::Column::IdleExpiresAt.lt(before))
        .add(sso_sessions::Column::AbsoluteExpiresAt.lt(before));
    delete_batch::<sso_sessions::Entity>(db, sso_sessions::Column::Id, ended, batch).await
}

/// Outbox messages delivered or given up before `before` (kept until then for the
/// admin's view of a client's deliveries).
pub async fn finished_outbox_messages(db: &impl ConnectionTrait, before: i64, batch: u64) -> StoreResult<u64> {
    let finished =
        Condition::all().add(outbox::Column::State.ne(OutboxState::Pending)).add(outbox::Column::FinishedAt.lt(before));
    delete_batch::<outbox::Entity>(db, outbox::Column::Id, finished, batch).await
}

/// Deletes up to `batch` rows of `E` matching `which`, picked by `id` in a subquery
/// (`DELETE … LIMIT` is not portable), so no statement holds its locks for long.
async fn delete_batch<E: EntityTrait>(
    db: &impl ConnectionTrait,
    id: E::Column,
    which: Condition,
    batch: u64,
) -> StoreResult<u64> {
    let ids = Query::select().column(id).from(E::default()).cond_where(which).limit(batch).to_owned();
    Ok(E::delete_many().filter(id.in_subquery(ids)).exec(db).await?.rows_affected)
}

/// Erases up to `batch` sealed children of tokens rotated before `before` (the end of
/// their grace window): past it nothing may open them, so they are not kept.
pub async fn sealed_children(db: &impl ConnectionTrait, before: i64, batch: u64) -> StoreResult<u64> {
    let ids = Query::select()
        .column(refresh_tokens::Column::Id)
        .from(refresh_tokens::Entity)
        .and_where(refresh_tokens::Column::ChildSealed.is_not_null())
        .and_where(refresh_tokens::Column::UsedAt.lt(before))
        .limit(batch)
        .to_owned();
    Ok(refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::ChildSealed, Expr::value(Option::<String>::None))
        .filter(refresh_tokens::Column::Id.in_subquery(ids))
        .exec(db)
        .await?
        .rows_affected)
}
