//! Sessions (token families) and their refresh tokens.
//!
//! Rotation and revocation are compare-and-swap updates inside one transaction
//! (`UPDATE … WHERE id = ? AND state = 'active'`, then check the rows affected), so
//! exactly one of any number of concurrent callers wins, on SQLite and on PostgreSQL,
//! across any number of server processes. Each transaction starts with its write, so
//! SQLite takes the write lock first (waiting on `busy_timeout`) rather than upgrading
//! a read snapshot and failing with `SQLITE_BUSY`.

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::StoreResult;
use super::audit::{self, NewAuditEvent};
use super::entities::{refresh_tokens, sessions};

pub use refresh_tokens::Model as RefreshTokenRow;
pub use sessions::Model as SessionRow;

pub const TOKEN_ACTIVE: &str = "active";
pub const TOKEN_ROTATED: &str = "rotated";
pub const TOKEN_REVOKED: &str = "revoked";

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub now: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub amr: String,
    pub auth_time: i64,
    pub scope: String,
}

#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: String,
    pub parent_id: Option<String>,
    /// SHA-256 of the token; the token itself is never stored.
    pub token_hash: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated,
    /// Another request rotated (or something revoked) the token first.
    TokenNotActive,
    /// The session was revoked or expired meanwhile.
    SessionNotActive,
}

/// Creates a session with its first refresh token, and the audit event, atomically.
pub async fn create(
    db: &super::Db,
    session: NewSession,
    token: NewRefreshToken,
    event: NewAuditEvent,
) -> StoreResult<SessionRow> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let row = sessions::ActiveModel {
        id: Set(session.id.clone()),
        user_id: Set(session.user_id),
        client_id: Set(session.client_id),
        created_at: Set(session.now),
        last_used_at: Set(session.now),
        idle_expires_at: Set(session.idle_expires_at),
        absolute_expires_at: Set(session.absolute_expires_at),
        revoked_at: Set(None),
        revoked_reason: Set(None),
        ip: Set(session.ip),
        user_agent: Set(session.user_agent),
        amr: Set(session.amr),
        auth_time: Set(session.auth_time),
        scope: Set(session.scope),
    }
    .insert(&*txn)
    .await?;
    insert_token(&*txn, &session.id, session.now, token).await?;
    audit::record(&*txn, event).await?;
    txn.commit().await?;
    Ok(row)
}

async fn insert_token(
    db: &impl ConnectionTrait,
    session_id: &str,
    now: i64,
    token: NewRefreshToken,
) -> StoreResult<()> {
    refresh_tokens::ActiveModel {
        id: Set(token.id),
        session_id: Set(session_id.to_string()),
        parent_id: Set(token.parent_id),
        token_hash: Set(token.token_hash),
        state: Set(TOKEN_ACTIVE.into()),
        created_at: Set(now),
        used_at: Set(None),
        expires_at: Set(token.expires_at),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The token with this hash and its session, in one query (the hot path of refresh).
pub async fn find_token(
    db: &impl ConnectionTrait,
    token_hash: &str,
) -> StoreResult<Option<(RefreshTokenRow, SessionRow)>> {
    let found = refresh_tokens::Entity::find()
        .find_also_related(sessions::Entity)
        .filter(refresh_tokens::Column::TokenHash.eq(token_hash))
        .one(db)
        .await?;
    Ok(found.and_then(|(token, session)| session.map(|s| (token, s))))
}

/// A session and its user in one query (the bearer-token check of every request).
pub async fn find_session_with_user(
    db: &impl ConnectionTrait,
    id: &str,
) -> StoreResult<Option<(SessionRow, Option<super::users::UserRow>)>> {
    Ok(sessions::Entity::find_by_id(id.to_string()).find_also_related(super::entities::users::Entity).one(db).await?)
}

pub async fn find_session(db: &impl ConnectionTrait, id: &str) -> StoreResult<Option<SessionRow>> {
    Ok(sessions::Entity::find_by_id(id.to_string()).one(db).await?)
}

/// Rotates `token_id` into `child` and touches the session, all or nothing.
pub async fn rotate(
    db: &super::Db,
    token_id: &str,
    session_id: &str,
    now: i64,
    idle_expires_at: i64,
    child: NewRefreshToken,
) -> StoreResult<RotateOutcome> {
    if super::is_postgres(db) {
        return rotate_in_one_statement(db, token_id, session_id, now, idle_expires_at, child).await;
    }
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let swapped = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::State, Expr::value(TOKEN_ROTATED))
        .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
        .filter(refresh_tokens::Column::Id.eq(token_id))
        .filter(refresh_tokens::Column::State.eq(TOKEN_ACTIVE))
        .exec(&*txn)
        .await?
        .rows_affected;
    if swapped != 1 {
        txn.rollback().await?;
        return Ok(RotateOutcome::TokenNotActive);
    }
    let touched = sessions::Entity::update_many()
        .col_expr(sessions::Column::LastUsedAt, Expr::value(now))
        .col_expr(sessions::Column::IdleExpiresAt, Expr::value(idle_expires_at))
        .filter(sessions::Column::Id.eq(session_id))
        .filter(live_session(now))
        .exec(&*txn)
        .await?
        .rows_affected;
    if touched != 1 {
        txn.rollback().await?;
        return Ok(RotateOutcome::SessionNotActive);
    }
    insert_token(&*txn, session_id, now, child).await?;
    txn.commit().await?;
    Ok(RotateOutcome::Rotated)
}

/// [`rotate`] on PostgreSQL: one statement (so one round trip, and atomic on its own)
/// instead of five. It locks the session row first, in the same order as [`revoke`],
/// so a rotation and a revocation of one session queue instead of deadlocking; under
/// READ COMMITTED a row changed by a concurrent transaction is re-checked against its
/// newest version, so exactly one of two concurrent rotations swaps the token.
async fn rotate_in_one_statement(
    db: &super::Db,
    token_id: &str,
    session_id: &str,
    now: i64,
    idle_expires_at: i64,
    child: NewRefreshToken,
) -> StoreResult<RotateOutcome> {
    const SQL: &str = "WITH live AS ( \
            SELECT id FROM sessions WHERE id = $1 AND revoked_at IS NULL \
            AND idle_expires_at > $2 AND absolute_expires_at > $2 FOR UPDATE), \
        swapped AS ( \
            UPDATE refresh_tokens SET state = $4, used_at = $2 \
            WHERE id = $3 AND state = $5 AND EXISTS (SELECT 1 FROM live) RETURNING id), \
        touched AS ( \
            UPDATE sessions SET last_used_at = $2, idle_expires_at = $6 \
            WHERE id IN (SELECT id FROM live) AND EXISTS (SELECT 1 FROM swapped) RETURNING id), \
        inserted AS ( \
            INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, state, created_at, used_at, expires_at) \
            SELECT $7, $1, $8, $9, $5, $2, NULL, $10 WHERE EXISTS (SELECT 1 FROM touched) RETURNING id) \
        SELECT (SELECT count(*) FROM live) AS live, (SELECT count(*) FROM inserted) AS inserted";
    let statement = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        SQL,
        [
            session_id.into(),
            now.into(),
            token_id.into(),
            TOKEN_ROTATED.into(),
            TOKEN_ACTIVE.into(),
            idle_expires_at.into(),
            child.id.into(),
            child.parent_id.into(),
            child.token_hash.into(),
            child.expires_at.into(),
        ],
    );
    let row = db.query_one_raw(statement).await?.ok_or_else(|| sea_orm::DbErr::RecordNotFound("rotation".into()))?;
    let live: i64 = row.try_get("", "live")?;
    let inserted: i64 = row.try_get("", "inserted")?;
    Ok(match (live, inserted) {
        (0, _) => RotateOutcome::SessionNotActive,
        (_, 0) => RotateOutcome::TokenNotActive,
        _ => RotateOutcome::Rotated,
    })
}

/// Sessions that are neither revoked nor expired at `now`.
fn live_session(now: i64) -> Condition {
    Condition::all()
        .add(sessions::Column::RevokedAt.is_null())
        .add(sessions::Column::IdleExpiresAt.gt(now))
        .add(sessions::Column::AbsoluteExpiresAt.gt(now))
}

/// Revokes one session and kills every token in it. Returns whether this call did it
/// (false if it was already revoked or does not exist). The audit event is written in
/// the same transaction, only when something was revoked.
pub async fn revoke(
    db: &super::Db,
    session_id: &str,
    reason: &str,
    now: i64,
    event: Option<NewAuditEvent>,
) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let revoked = sessions::Entity::update_many()
        .col_expr(sessions::Column::RevokedAt, Expr::value(now))
        .col_expr(sessions::Column::RevokedReason, Expr::value(reason))
        .filter(sessions::Column::Id.eq(session_id))
        .filter(sessions::Column::RevokedAt.is_null())
        .exec(&*txn)
        .await?
        .rows_affected;
    if revoked == 1 {
        refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::State, Expr::value(TOKEN_REVOKED))
            .filter(refresh_tokens::Column::SessionId.eq(session_id))
            .filter(refresh_tokens::Column::State.ne(TOKEN_REVOKED))
            .exec(&*txn)
            .await?;
        if let Some(event) = event {
            audit::record(&*txn, event).await?;
        }
    }
    txn.commit().await?;
    Ok(revoked == 1)
}

/// Revokes every live session of a user; returns how many.
pub async fn revoke_all_for_user(
    db: &super::Db,
    user_id: &str,
    reason: &str,
    now: i64,
    event: Option<NewAuditEvent>,
) -> StoreResult<u64> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let revoked = revoke_all_in(&*txn, user_id, None, reason, now).await?;
    if let Some(event) = event {
        audit::record(&*txn, event).await?;
    }
    txn.commit().await?;
    Ok(revoked)
}

/// The body of [`revoke_all_for_user`], for callers that already hold a transaction.
/// `except` keeps one session alive (the caller's own, after a password change).
pub async fn revoke_all_in(
    db: &impl ConnectionTrait,
    user_id: &str,
    except: Option<&str>,
    reason: &str,
    now: i64,
) -> StoreResult<u64> {
    let keep = except.unwrap_or("");
    let revoked = sessions::Entity::update_many()
        .col_expr(sessions::Column::RevokedAt, Expr::value(now))
        .col_expr(sessions::Column::RevokedReason, Expr::value(reason))
        .filter(sessions::Column::UserId.eq(user_id))
        .filter(sessions::Column::Id.ne(keep))
        .filter(sessions::Column::RevokedAt.is_null())
        .exec(db)
        .await?
        .rows_affected;
    let of_user = Query::select()
        .column(sessions::Column::Id)
        .from(sessions::Entity)
        .and_where(sessions::Column::UserId.eq(user_id))
        .and_where(sessions::Column::Id.ne(keep))
        .to_owned();
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::State, Expr::value(TOKEN_REVOKED))
        .filter(refresh_tokens::Column::SessionId.in_subquery(of_user))
        .filter(refresh_tokens::Column::State.ne(TOKEN_REVOKED))
        .exec(db)
        .await?;
    Ok(revoked)
}

/// Filters of the admin session list.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub user_id: Option<String>,
    pub client_id: Option<String>,
}

/// Live sessions, most recently used first, one page, with the total.
pub async fn list_live(
    db: &impl ConnectionTrait,
    filter: &SessionFilter,
    now: i64,
    page: super::Page,
) -> StoreResult<(Vec<SessionRow>, u64)> {
    use sea_orm::{PaginatorTrait, QuerySelect};
    let mut query = sessions::Entity::find().filter(live_session(now));
    if let Some(user_id) = &filter.user_id {
        query = query.filter(sessions::Column::UserId.eq(user_id.as_str()));
    }
    if let Some(client_id) = &filter.client_id {
        query = query.filter(sessions::Column::ClientId.eq(client_id.as_str()));
    }
    let total = query.clone().count(db).await?;
    let rows = query
        .order_by_desc(sessions::Column::LastUsedAt)
        .order_by_desc(sessions::Column::Id)
        .offset(page.offset())
        .limit(page.size)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// A user's live sessions, most recently used first.
pub async fn list_live_for_user(db: &impl ConnectionTrait, user_id: &str, now: i64) -> StoreResult<Vec<SessionRow>> {
    Ok(sessions::Entity::find()
        .filter(sessions::Column::UserId.eq(user_id))
        .filter(live_session(now))
        .order_by_desc(sessions::Column::LastUsedAt)
        .all(db)
        .await?)
}
