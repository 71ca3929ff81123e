//! Deleting what nobody needs any more, in bounded batches so no statement holds locks
//! for long, and job leases so one node at a time does it.

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter};

use super::StoreResult;
use super::entities::{
    audit_events, authorization_codes, authorization_requests, mfa_challenges, refresh_tokens, sessions, sso_sessions,
};

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

pub async fn old_audit_events(db: &impl ConnectionTrait, before: i64, batch: u64) -> StoreResult<u64> {
    let old = Condition::all().add(audit_events::Column::OccurredAt.lt(before));
    delete_batch::<audit_events::Entity>(db, audit_events::Column::Id, old, batch).await
}

pub async fn expired_challenges(db: &impl ConnectionTrait, before: i64, batch: u64) -> StoreResult<u64> {
    let expired = Condition::all().add(mfa_challenges::Column::ExpiresAt.lt(before));
    delete_batch::<mfa_challenges::Entity>(db, mfa_challenges::Column::Id, expired, batch).await
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
