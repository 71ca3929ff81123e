//! Sessions (token families) and their refresh tokens, beyond the hot paths of
//! [`super::TokenStore`] (which reads them and rotates tokens).
//!
//! Revocation is a compare-and-swap update inside one transaction
//! (`UPDATE … WHERE id = ? AND revoked_at IS NULL`, then check the rows affected), so
//! exactly one of any number of concurrent callers wins, on SQLite and on PostgreSQL,
//! across any number of server processes. Each transaction starts with its write, so
//! SQLite takes the write lock first (waiting on `busy_timeout`) rather than upgrading
//! a read snapshot and failing with `SQLITE_BUSY`.

use crate::store::entities::TokenState;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::StoreResult;
use super::audit::{self, NewAuditEvent};
use super::entities::{authorization_codes, refresh_tokens, sessions, sso_sessions};

pub use refresh_tokens::Model as RefreshTokenRow;
pub use sessions::Model as SessionRow;

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
    /// The browser login session (SSO) whose code made it, if any.
    pub sso_session_id: Option<String>,
    /// The DPoP key its refreshes must prove (a public client's proof at the start).
    pub dpop_jkt: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: String,
    pub parent_id: Option<String>,
    /// SHA-256 of the token; the token itself is never stored.
    pub token_hash: String,
    pub expires_at: i64,
}

/// Creates a session with its first refresh token, and the audit event, atomically.
pub async fn create(
    db: &super::Db,
    session: NewSession,
    token: NewRefreshToken,
    event: NewAuditEvent,
) -> StoreResult<SessionRow> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let row = insert(&*txn, session, Some(token)).await?;
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(row)
}

/// Inserts a session and, when it may be refreshed, its first refresh token; the
/// caller's transaction holds them together.
pub async fn insert(
    db: &impl ConnectionTrait,
    session: NewSession,
    token: Option<NewRefreshToken>,
) -> StoreResult<SessionRow> {
    let now = session.now;
    let id = session.id.clone();
    let row = sessions::ActiveModel {
        id: Set(session.id),
        user_id: Set(session.user_id),
        client_id: Set(session.client_id),
        created_at: Set(now),
        last_used_at: Set(now),
        idle_expires_at: Set(session.idle_expires_at),
        absolute_expires_at: Set(session.absolute_expires_at),
        revoked_at: Set(None),
        revoked_reason: Set(None),
        ip: Set(session.ip),
        user_agent: Set(session.user_agent),
        amr: Set(session.amr),
        auth_time: Set(session.auth_time),
        scope: Set(session.scope),
        sso_session_id: Set(session.sso_session_id),
        dpop_jkt: Set(session.dpop_jkt),
    }
    .insert(db)
    .await?;
    if let Some(token) = token {
        insert_token(db, &id, now, token).await?;
    }
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
        state: Set(TokenState::Active),
        created_at: Set(now),
        used_at: Set(None),
        expires_at: Set(token.expires_at),
        child_sealed: Set(None),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub async fn find_session(db: &impl ConnectionTrait, id: &str) -> StoreResult<Option<SessionRow>> {
    Ok(sessions::Entity::find_by_id(id.to_string()).one(db).await?)
}

/// Sessions that are neither revoked nor expired at `now`.
fn live_session(now: i64) -> Condition {
    Condition::all()
        .add(sessions::Column::RevokedAt.is_null())
        .add(sessions::Column::IdleExpiresAt.gt(now))
        .add(sessions::Column::AbsoluteExpiresAt.gt(now))
}

/// Whether the relying party of a session that ends is told (a back-channel logout
/// token, when it registered a URI for them; see [`super::outbox::queue_logouts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    RelyingParty,
    /// The relying party asked for it itself (RFC 7009), or its caller tells it.
    Nobody,
}

/// Revokes one session and kills every token in it. Returns whether this call did it
/// (false if it was already revoked or does not exist). The audit event, and the logout
/// token for its relying party when `notify` asks, are written in the same transaction,
/// only when something was revoked.
pub async fn revoke(
    db: &super::Db,
    session_id: &str,
    reason: &str,
    now: i64,
    notify: Notify,
    event: Option<NewAuditEvent>,
) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let revoked = revoke_ids_in(&*txn, &[session_id.to_string()], reason, now, notify).await?.len();
    if revoked == 1
        && let Some(event) = event
    {
        audit::record(&txn, event).await?;
    }
    txn.commit().await?;
    Ok(revoked == 1)
}

/// Revokes every live session of a user, telling their relying parties; returns how many.
pub async fn revoke_all_for_user(
    db: &super::Db,
    user_id: &str,
    reason: &str,
    now: i64,
    event: Option<NewAuditEvent>,
) -> StoreResult<u64> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let revoked = revoke_all_in(&*txn, user_id, Keep::default(), reason, now).await?;
    if let Some(event) = event {
        audit::record(&txn, event).await?;
    }
    txn.commit().await?;
    Ok(revoked)
}

/// Revokes the live sessions among `ids` and their refresh tokens, inside the caller's
/// transaction, and queues the logout tokens `notify` asks for; returns the sessions
/// this call ended.
pub async fn revoke_ids_in(
    db: &impl ConnectionTrait,
    ids: &[String],
    reason: &str,
    now: i64,
    notify: Notify,
) -> StoreResult<Vec<SessionRow>> {
    let mut revoked = Vec::new();
    // In chunks: a statement's bound parameters are limited (SQLite: 32,766).
    for chunk in ids.chunks(500) {
        let chunk = || chunk.iter().map(String::as_str);
        // RETURNING: exactly the sessions this call ended, not one a concurrent
        // revocation ended first (its relying party hears of it from that one).
        let ended = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(now))
            .col_expr(sessions::Column::RevokedReason, Expr::value(reason))
            .filter(sessions::Column::Id.is_in(chunk()))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec_with_returning(db)
            .await?;
        revoked.extend(ended);
        refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::State, Expr::value(TokenState::Revoked))
            // A revoked session's sealed children can never be answered again.
            .col_expr(refresh_tokens::Column::ChildSealed, Expr::value(Option::<String>::None))
            .filter(refresh_tokens::Column::SessionId.is_in(chunk()))
            .filter(refresh_tokens::Column::State.ne(TokenState::Revoked))
            .exec(db)
            .await?;
    }
    if notify == Notify::RelyingParty {
        super::outbox::queue_logouts(db, &ended_sessions(&revoked), super::outbox::Ended::Sessions, now).await?;
    }
    Ok(revoked)
}

/// What a relying party is told of sessions that ended.
pub fn ended_sessions(rows: &[SessionRow]) -> Vec<super::outbox::EndedSession> {
    rows.iter()
        .map(|s| super::outbox::EndedSession {
            user_id: s.user_id.clone(),
            client_id: s.client_id.clone(),
            sso_session_id: s.sso_session_id.clone(),
        })
        .collect()
}

/// What [`revoke_all_in`] leaves alive: the caller's own session, after a password change
/// (its refresh-token session from the JSON API, or its browser's login session from
/// the account page).
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep<'a> {
    pub session: Option<&'a str>,
    pub sso_session: Option<&'a str>,
}

/// The body of [`revoke_all_for_user`], for callers that already hold a transaction.
/// `keep` keeps the caller's own session alive (see [`Keep`]). The
/// user's browser login sessions (SSO) end too: whatever ends every session of a user
/// (logout everywhere, a password change, disabling, an admin's revoke-all) must not
/// leave a browser that signs them in to the next relying party. Every relying party
/// of a session that ended is told (back-channel logout).
pub async fn revoke_all_in(
    db: &impl ConnectionTrait,
    user_id: &str,
    keep_alive: Keep<'_>,
    reason: &str,
    now: i64,
) -> StoreResult<u64> {
    let keep = keep_alive.session.unwrap_or("");
    let ended = sessions::Entity::update_many()
        .col_expr(sessions::Column::RevokedAt, Expr::value(now))
        .col_expr(sessions::Column::RevokedReason, Expr::value(reason))
        .filter(sessions::Column::UserId.eq(user_id))
        .filter(sessions::Column::Id.ne(keep))
        .filter(sessions::Column::RevokedAt.is_null())
        .exec_with_returning(db)
        .await?;
    let revoked = ended.len() as u64;
    let of_user = Query::select()
        .column(sessions::Column::Id)
        .from(sessions::Entity)
        .and_where(sessions::Column::UserId.eq(user_id))
        .and_where(sessions::Column::Id.ne(keep))
        .to_owned();
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::State, Expr::value(TokenState::Revoked))
        // A revoked session's sealed children can never be answered again.
        .col_expr(refresh_tokens::Column::ChildSealed, Expr::value(Option::<String>::None))
        .filter(refresh_tokens::Column::SessionId.in_subquery(of_user))
        .filter(refresh_tokens::Column::State.ne(TokenState::Revoked))
        .exec(db)
        .await?;
    sso_sessions::Entity::update_many()
        .col_expr(sso_sessions::Column::RevokedAt, Expr::value(now))
        .col_expr(sso_sessions::Column::RevokedReason, Expr::value(reason))
        .filter(sso_sessions::Column::UserId.eq(user_id))
        .filter(sso_sessions::Column::Id.ne(keep_alive.sso_session.unwrap_or("")))
        .filter(sso_sessions::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    // Codes issued and not yet redeemed are spent too, so none buys a session after
    // this (a stolen browser cookie's last code included); the kept browser's stay.
    let mut codes = authorization_codes::Entity::update_many()
        .col_expr(authorization_codes::Column::UsedAt, Expr::value(now))
        .filter(authorization_codes::Column::UserId.eq(user_id))
        .filter(authorization_codes::Column::UsedAt.is_null());
    if let Some(kept) = keep_alive.sso_session {
        codes = codes.filter(
            Condition::any()
                .add(authorization_codes::Column::SsoSessionId.ne(kept))
                .add(authorization_codes::Column::SsoSessionId.is_null()),
        );
    }
    codes.exec(db).await?;
    super::outbox::queue_logouts(db, &ended_sessions(&ended), super::outbox::Ended::Sessions, now).await?;
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

/// A user's sessions not revoked (expired ones included: their relying parties may
/// still hold a sign-in to end).
pub async fn unrevoked_of_user(db: &impl ConnectionTrait, user_id: &str) -> StoreResult<Vec<SessionRow>> {
    Ok(sessions::Entity::find()
        .filter(sessions::Column::UserId.eq(user_id))
        .filter(sessions::Column::RevokedAt.is_null())
        .all(db)
        .await?)
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
