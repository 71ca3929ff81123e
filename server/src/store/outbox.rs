//! The outbox: messages the server sends on its own, written in the transaction that
//! makes them necessary and delivered after its commit by any node.
//!
//! Two kinds: the logout tokens of OpenID Connect Back-Channel Logout, queued wherever
//! sessions end ([`queue_logouts`]), and mail ([`super::mail::queue`]), whose sealed
//! payload is emptied once the message is delivered or given up (it may hold a link). A message is due once `next_attempt_at`
//! has passed. A node claims a batch of due messages by counting the attempt and moving
//! `next_attempt_at` past its lease in one statement (on PostgreSQL under
//! `FOR UPDATE SKIP LOCKED`, so two nodes never claim the same row; on SQLite the
//! writer lock orders the claims). Every later write about that attempt names the
//! attempt it claimed, so a node whose lease ran out (it stalled, another node took the
//! message over) changes nothing. A node that dies mid-attempt leaves the message due
//! again when its lease ends: a restart loses nothing.

use std::collections::BTreeSet;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement,
};
use serde::{Deserialize, Serialize};

use super::StoreResult;
use super::audit::{self, NewAuditEvent};
use super::entities::{OutboxKind, OutboxState, clients, outbox};

pub use outbox::Model as OutboxRow;

/// A session that has just ended, as far as its relying party needs to hear of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    pub user_id: String,
    pub client_id: String,
    /// The browser login session (SSO) it was made through: the logout token's `sid`.
    pub sso_session_id: Option<String>,
}

/// The payload of a [`OutboxKind::BackchannelLogout`] message: whom the logout token
/// names. Its `aud` is the message's recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutNotice {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// What ended, and so what a logout token may say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Some sessions of a user. A token with `sid` ends that browser sign-in at the
    /// relying party, and one without ends every session of `sub` there (§2.4): neither
    /// is sent while a session it would end still lives here.
    Sessions,
    /// A browser sign-in (SSO) itself: its `sid` is over, whatever else lives on.
    SignIn,
}

/// Queues a logout token for each relying party among `ended` that registered a
/// `backchannel_logout_uri`, inside the caller's transaction (after the revocation it
/// reports): one per client, user and browser session. A session made without a
/// browser sign-in has no `sid`, so a client that requires one is not told of it (no
/// id_token it holds names such a session). Returns how many messages were queued.
pub async fn queue_logouts(
    db: &impl ConnectionTrait,
    ended: &[EndedSession],
    what: Ended,
    now: i64,
) -> StoreResult<u64> {
    if ended.is_empty() {
        return Ok(0);
    }
    let client_ids: BTreeSet<&str> = ended.iter().map(|s| s.client_id.as_str()).collect();
    let listening: Vec<(String, bool)> = clients::Entity::find()
        .select_only()
        .column(clients::Column::ClientId)
        .column(clients::Column::BackchannelLogoutSessionRequired)
        .filter(clients::Column::ClientId.is_in(client_ids))
        .filter(clients::Column::BackchannelLogoutUri.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    let mut notices = BTreeSet::new();
    for session in ended {
        let Some((_, sid_required)) = listening.iter().find(|(id, _)| *id == session.client_id) else { continue };
        if *sid_required && session.sso_session_id.is_none() {
            continue;
        }
        notices.insert((session.client_id.as_str(), session.user_id.as_str(), session.sso_session_id.as_deref()));
    }
    let mut told = Vec::with_capacity(notices.len());
    for notice in notices {
        if what == Ended::Sessions && still_covered(db, notice, now).await? {
            continue;
        }
        told.push(notice);
    }
    let rows: Vec<outbox::ActiveModel> = told
        .iter()
        .map(|(client_id, sub, sid)| {
            let notice = LogoutNotice { sub: sub.to_string(), sid: sid.map(str::to_string) };
            outbox::ActiveModel {
                id: Set(uuid::Uuid::new_v4().to_string()),
                kind: Set(OutboxKind::BackchannelLogout),
                recipient: Set(client_id.to_string()),
                payload: Set(serde_json::to_string(&notice).unwrap_or_default()),
                state: Set(OutboxState::Pending),
                attempts: Set(0),
                created_at: Set(now),
                next_attempt_at: Set(now),
                lease_owner: Set(None),
                last_error: Set(None),
                finished_at: Set(None),
            }
        })
        .collect();
    let queued = rows.len() as u64;
    // In chunks: a statement's bound parameters are limited (SQLite: 32,766).
    for chunk in rows.chunks(500) {
        outbox::Entity::insert_many(chunk.to_vec()).exec(db).await?;
    }
    Ok(queued)
}

/// Whether a live session remains that a logout token for (client, user, sid) would end
/// at the relying party: one with that `sid`, or, for a token without, any of theirs.
async fn still_covered(
    db: &impl ConnectionTrait,
    (client_id, user_id, sid): (&str, &str, Option<&str>),
    now: i64,
) -> StoreResult<bool> {
    use super::entities::sessions;
    let mut live = sessions::Entity::find()
        .filter(sessions::Column::ClientId.eq(client_id))
        .filter(sessions::Column::UserId.eq(user_id))
        .filter(sessions::Column::RevokedAt.is_null())
        .filter(sessions::Column::IdleExpiresAt.gt(now))
        .filter(sessions::Column::AbsoluteExpiresAt.gt(now));
    if let Some(sid) = sid {
        live = live.filter(sessions::Column::SsoSessionId.eq(sid));
    }
    Ok(live.count(db).await? > 0)
}

/// One claimed attempt: the message and the attempt number this node holds.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub row: OutboxRow,
}

impl Claimed {
    /// The attempt this claim is (1 for the first).
    pub fn attempt(&self) -> i32 {
        self.row.attempts
    }
}

/// Claims up to `limit` due messages of `kind` for `owner` until `now + lease_secs`.
pub async fn claim_due(
    db: &super::Db,
    kind: OutboxKind,
    owner: &str,
    now: i64,
    lease_secs: i64,
    limit: u64,
) -> StoreResult<Vec<Claimed>> {
    // A cheap read first: most ticks find nothing, and on SQLite a read takes no lock.
    let any_due = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Id)
        .filter(outbox::Column::State.eq(OutboxState::Pending))
        .filter(outbox::Column::Kind.eq(kind))
        .filter(outbox::Column::NextAttemptAt.lte(now))
        .into_tuple::<String>()
        .one(db)
        .await?;
    if any_due.is_none() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let sql = match backend {
        // The due rows are picked once, in a CTE (FOR UPDATE is materialised there): as
        // a subquery of `IN`, PostgreSQL may run the SKIP LOCKED pick more than once and
        // claim more than `limit` rows. Rows another node is claiming now are skipped,
        // not waited for.
        DbBackend::Postgres => {
            "WITH due AS (SELECT id FROM outbox WHERE state = $1 AND kind = $2 AND next_attempt_at <= $3 \
             ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $5, lease_owner = $6, last_error = NULL \
             FROM due WHERE outbox.id = due.id RETURNING outbox.*"
        }
        // SQLite has no row locks: the writer lock orders the claims.
        _ => {
            // (`?N`, not `$N`: SQLite numbers `$N` names in the order they appear.)
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?5, lease_owner = ?6, last_error = NULL \
             WHERE id IN (SELECT id FROM outbox WHERE state = ?1 AND kind = ?2 AND next_attempt_at <= ?3 \
             ORDER BY next_attempt_at LIMIT ?4) RETURNING *"
        }
    };
    // (A claim clears the last error: an error on a pending message is its last attempt's.)
    let values: [sea_orm::Value; 6] = [
        OutboxState::Pending.as_str().into(),
        kind.as_str().into(),
        now.into(),
        i64::try_from(limit).unwrap_or(i64::MAX).into(),
        now.saturating_add(lease_secs).into(),
        owner.into(),
    ];
    let rows = OutboxRow::find_by_statement(Statement::from_sql_and_values(backend, sql, values)).all(db).await?;
    Ok(rows.into_iter().map(|row| Claimed { row }).collect())
}

/// The filter naming exactly the attempt `claim` holds.
fn held(claim: &Claimed) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(outbox::Column::Id.eq(claim.row.id.as_str()))
        .add(outbox::Column::State.eq(OutboxState::Pending))
        .add(outbox::Column::Attempts.eq(claim.row.attempts))
        .add(outbox::Column::LeaseOwner.eq(claim.row.lease_owner.as_deref().unwrap_or_default()))
}

/// The update that ends a message: a mail's sealed content is dropped with it, so the
/// database keeps no link past its delivery.
fn finished(claim: &Claimed) -> sea_orm::UpdateMany<outbox::Entity> {
    let update = outbox::Entity::update_many();
    if claim.row.kind == OutboxKind::Mail { update.col_expr(outbox::Column::Payload, Expr::value("")) } else { update }
}

/// The attempt succeeded; whether this claim still held the message.
pub async fn mark_delivered(db: &super::Db, claim: &Claimed, now: i64) -> StoreResult<bool> {
    let updated = finished(claim)
        .col_expr(outbox::Column::State, Expr::value(OutboxState::Delivered))
        .col_expr(outbox::Column::FinishedAt, Expr::value(now))
        .col_expr(outbox::Column::LastError, Expr::value(Option::<String>::None))
        .filter(held(claim))
        .exec(db)
        .await?
        .rows_affected;
    Ok(updated == 1)
}

/// The attempt failed and another is due at `next_attempt_at`; the recipient's other
/// due messages of the same kind wait as long (see [`postpone_recipient`]), in the same
/// transaction. Whether this claim still held the message.
pub async fn mark_retry(
    db: &super::Db,
    claim: &Claimed,
    now: i64,
    next_attempt_at: i64,
    error: &str,
) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?.changes_no_cached_rows();
    let updated = outbox::Entity::update_many()
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(next_attempt_at))
        .col_expr(outbox::Column::LastError, Expr::value(error))
        .filter(held(claim))
        .exec(&*txn)
        .await?
        .rows_affected;
    if updated != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    postpone_recipient(&*txn, claim.row.kind, &claim.row.recipient, now, next_attempt_at).await?;
    txn.commit().await?;
    Ok(true)
}

/// The message is given up (its last attempt failed, or its recipient is gone), with
/// the audit event, in one transaction; whether this claim still held it.
pub async fn mark_dead(
    db: &super::Db,
    claim: &Claimed,
    now: i64,
    error: &str,
    event: NewAuditEvent,
) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?.changes_no_cached_rows();
    let updated = finished(claim)
        .col_expr(outbox::Column::State, Expr::value(OutboxState::Dead))
        .col_expr(outbox::Column::FinishedAt, Expr::value(now))
        .col_expr(outbox::Column::LastError, Expr::value(error))
        .filter(held(claim))
        .exec(&*txn)
        .await?
        .rows_affected;
    if updated != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(true)
}

/// Moves a recipient's due messages of `kind` (not those being attempted now, whose
/// `next_attempt_at` lies past their lease) to `until`, their attempts not counted:
/// one failure of a recipient paces the rest of its messages.
pub async fn postpone_recipient(
    db: &impl ConnectionTrait,
    kind: OutboxKind,
    recipient: &str,
    now: i64,
    until: i64,
) -> StoreResult<u64> {
    Ok(outbox::Entity::update_many()
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(until))
        .filter(outbox::Column::Kind.eq(kind))
        .filter(outbox::Column::Recipient.eq(recipient))
        .filter(outbox::Column::State.eq(OutboxState::Pending))
        .filter(outbox::Column::NextAttemptAt.lte(now))
        .exec(db)
        .await?
        .rows_affected)
}

/// Messages waiting for delivery (all kinds), for the `outbox_pending` gauge.
pub async fn pending_count(db: &impl ConnectionTrait) -> StoreResult<u64> {
    Ok(outbox::Entity::find().filter(outbox::Column::State.eq(OutboxState::Pending)).count(db).await?)
}

/// A recipient's messages, newest first (the admin's view of one client's deliveries).
pub async fn of_recipient(db: &impl ConnectionTrait, recipient: &str, limit: u64) -> StoreResult<Vec<OutboxRow>> {
    Ok(outbox::Entity::find()
        .filter(outbox::Column::Recipient.eq(recipient))
        .order_by_desc(outbox::Column::CreatedAt)
        .order_by_desc(outbox::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// Where a client's back-channel logout tokens go, and whether they must carry `sid`;
/// `None` when the client is gone or takes none.
pub async fn logout_endpoint(db: &impl ConnectionTrait, client_id: &str) -> StoreResult<Option<(String, bool)>> {
    let found: Option<(Option<String>, bool)> = clients::Entity::find_by_id(client_id.to_string())
        .select_only()
        .column(clients::Column::BackchannelLogoutUri)
        .column(clients::Column::BackchannelLogoutSessionRequired)
        .into_tuple()
        .one(db)
        .await?;
    Ok(found.and_then(|(uri, required)| uri.map(|uri| (uri, required))))
}

/// How a recipient's messages stand (those not yet purged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryState {
    pub pending: u64,
    /// Pending after at least one failed attempt.
    pub failing: u64,
    pub delivered: u64,
    pub dead: u64,
    pub last_delivered_at: Option<i64>,
}

pub async fn delivery_state(db: &impl ConnectionTrait, recipient: &str) -> StoreResult<DeliveryState> {
    use sea_orm::sea_query::{Func, SimpleExpr};
    let counts: Vec<(OutboxState, i64, Option<i64>)> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::State)
        .column_as(Expr::col(outbox::Column::Id).count(), "count")
        .column_as(SimpleExpr::from(Func::max(Expr::col(outbox::Column::FinishedAt))), "last")
        .filter(outbox::Column::Recipient.eq(recipient))
        .group_by(outbox::Column::State)
        .into_tuple()
        .all(db)
        .await?;
    let mut state = DeliveryState::default();
    for (kind, count, last) in counts {
        let count = u64::try_from(count).unwrap_or_default();
        match kind {
            OutboxState::Pending => state.pending = count,
            OutboxState::Delivered => {
                state.delivered = count;
                state.last_delivered_at = last;
            }
            OutboxState::Dead => state.dead = count,
        }
    }
    // Failed once at least: its last error is on record, or (being attempted again,
    // which clears it) it has been attempted before.
    let failed =
        sea_orm::Condition::any().add(outbox::Column::LastError.is_not_null()).add(outbox::Column::Attempts.gt(1));
    state.failing = outbox::Entity::find()
        .filter(outbox::Column::Recipient.eq(recipient))
        .filter(outbox::Column::State.eq(OutboxState::Pending))
        .filter(failed)
        .count(db)
        .await?;
    Ok(state)
}

/// Puts a recipient's dead messages back in the queue, due now with their attempts
/// counted afresh, with the audit event, in one transaction; how many.
pub async fn requeue_dead(db: &super::Db, recipient: &str, now: i64, mut event: NewAuditEvent) -> StoreResult<u64> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?.changes_no_cached_rows();
    let requeued = outbox::Entity::update_many()
        .col_expr(outbox::Column::State, Expr::value(OutboxState::Pending))
        .col_expr(outbox::Column::Attempts, Expr::value(0))
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(now))
        .col_expr(outbox::Column::FinishedAt, Expr::value(Option::<i64>::None))
        .filter(outbox::Column::Recipient.eq(recipient))
        .filter(outbox::Column::Kind.eq(OutboxKind::BackchannelLogout))
        .filter(outbox::Column::State.eq(OutboxState::Dead))
        .exec(&*txn)
        .await?
        .rows_affected;
    if requeued > 0 {
        if let Some(details) = event.details.as_object_mut() {
            details.insert("requeued".into(), requeued.into());
        }
        audit::record(&txn, event).await?;
    }
    txn.commit().await?;
    Ok(requeued)
}
