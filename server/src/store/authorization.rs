//! The code flow's storage: browser login sessions (SSO), sign-in interactions of the
//! hosted pages, authorization codes and remembered consents.
//!
//! The authorization endpoint's and the code exchange's own reads and writes are the
//! hot path of every sign-in at a relying party, so they are [`super::TokenStore`]
//! methods (inline on SQLite); the sea-orm versions here are the PostgreSQL engine's.
//!
//! A code is redeemed by a compare-and-swap (`UPDATE … SET used_at, session_id WHERE
//! used_at IS NULL`) in the transaction that creates the session its tokens belong to,
//! so of two redemptions racing on one code exactly one wins, and the loser finds the
//! winner's session to revoke (on PostgreSQL its update waits on the winner's row lock
//! and then reads the committed row; on SQLite the writer lock orders them).

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use super::StoreResult;
use super::audit::{self, NewAuditEvent};
use super::entities::{authorization_codes, authorization_requests, consents, sessions, sso_sessions, users};
use super::sessions::{NewRefreshToken, NewSession, Notify};

pub use authorization_codes::Model as CodeRow;
pub use authorization_requests::Model as InteractionRow;
pub use consents::Model as ConsentRow;
pub use sso_sessions::Model as SsoSessionRow;

use super::users::UserRow;

/// Starts a browser login session. `replaces` is the browser's previous one: it ends,
/// and when `ends_its_sessions` (another user signs in on this browser), the relying
/// parties' sessions made through it end with it, and are told, as at a sign-out.
pub async fn create_sso_session(
    db: &super::Db,
    row: SsoSessionRow,
    replaces: Option<Replaced<'_>>,
    event: NewAuditEvent,
) -> StoreResult<()> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let now = row.created_at;
    sso_sessions::ActiveModel::from(row).insert(&*txn).await?;
    match replaces {
        Some(Replaced { id, ends_its_sessions: true, keep_offline }) => {
            end_sso_session_and_sessions_in(&*txn, id, keep_offline, "replaced", now).await?;
        }
        Some(Replaced { id, .. }) => {
            end_sso_session(&*txn, id, "replaced", now).await?;
        }
        None => {}
    }
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(())
}

/// A re-authentication of a browser login session (see [`reauthenticate_sso_session`]).
pub struct Reauthentication<'a> {
    pub id: &'a str,
    /// The hash of the cookie the browser came with.
    pub old_token_hash: &'a str,
    pub token_hash: &'a str,
    pub amr: &'a str,
    pub idle_expires_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub now: i64,
}

/// Gives a browser login session a new cookie (after a password change on the account
/// page: a cookie that leaked before it stops working); whether it was still live with
/// the old one.
pub async fn rotate_sso_cookie(db: &super::Db, id: &str, old_token_hash: &str, token_hash: &str) -> StoreResult<bool> {
    let updated = sso_sessions::Entity::update_many()
        .col_expr(sso_sessions::Column::TokenHash, Expr::value(token_hash))
        .filter(sso_sessions::Column::Id.eq(id))
        .filter(sso_sessions::Column::TokenHash.eq(old_token_hash))
        .filter(sso_sessions::Column::RevokedAt.is_null())
        .exec(db)
        .await?
        .rows_affected;
    Ok(updated == 1)
}

/// The browser login session a new one replaces.
#[derive(Debug, Clone, Copy)]
pub struct Replaced<'a> {
    pub id: &'a str,
    /// Whether the relying parties' sessions made through it end too (another user's).
    pub ends_its_sessions: bool,
    pub keep_offline: bool,
}

/// The same user signed in again on this browser (`prompt=login`, `max_age`): its login
/// session stays (so its `sid`, and the relying parties signed in through it, go on)
/// with the new cookie, authentication time and methods. Whether it was still live.
pub async fn reauthenticate_sso_session(
    db: &super::Db,
    again: Reauthentication<'_>,
    event: NewAuditEvent,
) -> StoreResult<bool> {
    let Reauthentication { id, old_token_hash, token_hash, amr, idle_expires_at, ip, user_agent, now } = again;
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let updated = sso_sessions::Entity::update_many()
        .col_expr(sso_sessions::Column::TokenHash, Expr::value(token_hash))
        .col_expr(sso_sessions::Column::Ip, Expr::value(ip))
        .col_expr(sso_sessions::Column::UserAgent, Expr::value(user_agent))
        .col_expr(sso_sessions::Column::AuthTime, Expr::value(now))
        .col_expr(sso_sessions::Column::Amr, Expr::value(amr))
        .col_expr(sso_sessions::Column::LastSeenAt, Expr::value(now))
        .col_expr(sso_sessions::Column::IdleExpiresAt, Expr::value(idle_expires_at))
        .filter(sso_sessions::Column::Id.eq(id))
        // Still the cookie this sign-in came with: of two sign-ins racing on one
        // browser, one renews it and the other finds it renewed.
        .filter(sso_sessions::Column::TokenHash.eq(old_token_hash))
        .filter(sso_sessions::Column::RevokedAt.is_null())
        .filter(sso_sessions::Column::AbsoluteExpiresAt.gt(now))
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

/// Ends one browser login session; whether this call did.
pub async fn end_sso_session(db: &impl ConnectionTrait, id: &str, reason: &str, now: i64) -> StoreResult<bool> {
    let ended = sso_sessions::Entity::update_many()
        .col_expr(sso_sessions::Column::RevokedAt, Expr::value(now))
        .col_expr(sso_sessions::Column::RevokedReason, Expr::value(reason))
        .filter(sso_sessions::Column::Id.eq(id))
        .filter(sso_sessions::Column::RevokedAt.is_null())
        .exec(db)
        .await?
        .rows_affected;
    Ok(ended == 1)
}

/// One browser login session by its id.
pub async fn sso_session_by_id(db: &impl ConnectionTrait, id: &str) -> StoreResult<Option<SsoSessionRow>> {
    Ok(sso_sessions::Entity::find_by_id(id.to_string()).one(db).await?)
}

/// Ends a browser login session and the sessions relying parties got through it (their
/// refresh tokens die with them), except, when `keep_offline`, those granted
/// `offline_access`, which outlive the browser by design; with the audit event (which
/// gains `sessions_ended`), in one transaction. Returns how many relying-party sessions
/// ended, or `None` when the login session had ended already (nothing is written then).
pub async fn end_sso_session_with_its_sessions(
    db: &super::Db,
    id: &str,
    keep_offline: bool,
    reason: &str,
    now: i64,
    mut event: NewAuditEvent,
) -> StoreResult<Option<u64>> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let Some(ended) = end_sso_session_and_sessions_in(&*txn, id, keep_offline, reason, now).await? else {
        txn.rollback().await?;
        return Ok(None);
    };
    if let Some(details) = event.details.as_object_mut() {
        details.insert("sessions_ended".into(), ended.into());
    }
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(Some(ended))
}

/// The body of [`end_sso_session_with_its_sessions`], inside the caller's transaction.
async fn end_sso_session_and_sessions_in(
    txn: &impl ConnectionTrait,
    id: &str,
    keep_offline: bool,
    reason: &str,
    now: i64,
) -> StoreResult<Option<u64>> {
    if !end_sso_session(txn, id, reason, now).await? {
        return Ok(None);
    }
    // Its codes not yet redeemed are spent first, so none buys a session after it ended.
    // On PostgreSQL this waits for a redemption in flight (it holds the code's row),
    // whose session the read below then sees.
    authorization_codes::Entity::update_many()
        .col_expr(authorization_codes::Column::UsedAt, Expr::value(now))
        .filter(authorization_codes::Column::SsoSessionId.eq(id))
        .filter(authorization_codes::Column::UsedAt.is_null())
        .exec(txn)
        .await?;
    let made_through_it = sessions::Entity::find()
        .filter(sessions::Column::SsoSessionId.eq(id))
        .filter(sessions::Column::RevokedAt.is_null())
        .all(txn)
        .await?;
    let (kept, ending): (Vec<_>, Vec<_>) = made_through_it
        .into_iter()
        .partition(|s| keep_offline && s.scope.split(' ').any(|scope| scope == "offline_access"));
    let ending: Vec<String> = ending.into_iter().map(|s| s.id).collect();
    // Told from what the revocation itself ended (RETURNING), not from the read above,
    // so a session a concurrent revocation ended first is told of once, by that one.
    let mut told = super::sessions::revoke_ids_in(txn, &ending, reason, now, Notify::Nobody).await?;
    let ended = told.len() as u64;
    // Every relying party signed in through it is told, those whose offline session
    // lives on too: the sign-in it knows as `sid` has ended (Back-Channel Logout §2.7).
    told.extend(kept);
    let told = super::sessions::ended_sessions(&told);
    super::outbox::queue_logouts(txn, &told, super::outbox::Ended::SignIn, now).await?;
    Ok(Some(ended))
}

/// [`super::TokenStore::sso_session`] through sea-orm (the PostgreSQL engine's).
pub(super) async fn sso_session_by_hash(
    db: &impl ConnectionTrait,
    token_hash: &str,
) -> StoreResult<Option<(SsoSessionRow, Option<UserRow>)>> {
    Ok(sso_sessions::Entity::find()
        .filter(sso_sessions::Column::TokenHash.eq(token_hash))
        .find_also_related(users::Entity)
        .one(db)
        .await?)
}

async fn touch_sso_session(db: &impl ConnectionTrait, touch: &SsoTouch) -> StoreResult<()> {
    sso_sessions::Entity::update_many()
        .col_expr(sso_sessions::Column::LastSeenAt, Expr::value(touch.now))
        .col_expr(sso_sessions::Column::IdleExpiresAt, Expr::value(touch.idle_expires_at))
        .filter(sso_sessions::Column::Id.eq(touch.id.as_str()))
        .filter(sso_sessions::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// A user's login sessions, newest first, ended ones included (the caller filters).
/// Ends every sign-in of `user_id` still in progress — hosted sign-ins past their
/// password, second-factor challenges, passkey ceremonies — inside the caller's
/// transaction: a password just replaced (or an account disabled) must not let a sign-in
/// begun before it finish.
pub async fn end_sign_ins_in_progress(db: &impl ConnectionTrait, user_id: &str) -> StoreResult<()> {
    use super::entities::webauthn_ceremonies;
    authorization_requests::Entity::delete_many()
        .filter(authorization_requests::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    webauthn_ceremonies::Entity::delete_many().filter(webauthn_ceremonies::Column::UserId.eq(user_id)).exec(db).await?;
    super::mfa::delete_challenges_of(db, user_id).await?;
    Ok(())
}

pub async fn sso_sessions_of(db: &impl ConnectionTrait, user_id: &str) -> StoreResult<Vec<SsoSessionRow>> {
    Ok(sso_sessions::Entity::find()
        .filter(sso_sessions::Column::UserId.eq(user_id))
        .order_by_desc(sso_sessions::Column::CreatedAt)
        .all(db)
        .await?)
}

pub async fn create_interaction(db: &impl ConnectionTrait, row: InteractionRow) -> StoreResult<()> {
    authorization_requests::ActiveModel::from(row).insert(db).await?;
    Ok(())
}

/// [`super::TokenStore::interaction`] through sea-orm (the PostgreSQL engine's).
pub(super) async fn find_interaction(db: &impl ConnectionTrait, id: &str) -> StoreResult<Option<InteractionRow>> {
    Ok(authorization_requests::Entity::find_by_id(id.to_string()).one(db).await?)
}

/// What a step of the sign-in changes on its interaction.
#[derive(Debug, Clone, Default)]
pub struct InteractionStep {
    pub stage: Option<&'static str>,
    pub user_id: Option<String>,
    pub amr: Option<String>,
    pub auth_time: Option<i64>,
    /// Replaces the notice (`Some(None)` clears it).
    pub notice: Option<Option<String>>,
    /// Replaces the stored request (the username typed becomes its `login_hint`).
    pub params: Option<String>,
}

/// Moves an interaction on, only from the stage it was read in (two tabs submitting
/// the same form cannot both move it); whether it moved.
pub async fn advance_interaction(
    db: &impl ConnectionTrait,
    id: &str,
    from_stage: &str,
    step: InteractionStep,
) -> StoreResult<bool> {
    let mut update = authorization_requests::Entity::update_many()
        .filter(authorization_requests::Column::Id.eq(id))
        .filter(authorization_requests::Column::Stage.eq(from_stage));
    if let Some(stage) = step.stage {
        update = update.col_expr(authorization_requests::Column::Stage, Expr::value(stage));
    }
    if let Some(user_id) = step.user_id {
        update = update.col_expr(authorization_requests::Column::UserId, Expr::value(user_id));
    }
    if let Some(amr) = step.amr {
        update = update.col_expr(authorization_requests::Column::Amr, Expr::value(amr));
    }
    if let Some(auth_time) = step.auth_time {
        update = update.col_expr(authorization_requests::Column::AuthTime, Expr::value(auth_time));
    }
    if let Some(notice) = step.notice {
        update = update.col_expr(authorization_requests::Column::Notice, Expr::value(notice));
    }
    if let Some(params) = step.params {
        update = update.col_expr(authorization_requests::Column::Params, Expr::value(params));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// A use of a live login session to record with the code it issues: `last_seen_at` and
/// the new idle deadline.
#[derive(Debug, Clone)]
pub struct SsoTouch {
    pub id: String,
    pub now: i64,
    pub idle_expires_at: i64,
}

/// A code to issue, in one transaction: the code, the end of the interaction that led
/// to it (if any), the login session's touch (when one is due) and the audit event.
#[derive(Debug, Clone)]
pub struct CodeIssue {
    pub code: CodeRow,
    /// The interaction this finishes; a second finish of it issues nothing.
    pub finishes: Option<String>,
    pub touch: Option<SsoTouch>,
    pub event: NewAuditEvent,
}

/// [`super::TokenStore::issue_code`] through sea-orm (the PostgreSQL engine's).
pub(super) async fn issue_code(db: &super::Db, issue: CodeIssue) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    if let Some(interaction) = issue.finishes {
        let deleted = authorization_requests::Entity::delete_by_id(interaction).exec(&*txn).await?;
        if deleted.rows_affected != 1 {
            return Ok(false);
        }
    }
    authorization_codes::ActiveModel::from(issue.code).insert(&*txn).await?;
    if let Some(touch) = issue.touch {
        touch_sso_session(&*txn, &touch).await?;
    }
    audit::record(&txn, issue.event).await?;
    txn.commit().await?;
    Ok(true)
}

pub async fn delete_interaction(db: &impl ConnectionTrait, id: &str) -> StoreResult<()> {
    authorization_requests::Entity::delete_by_id(id.to_string()).exec(db).await?;
    Ok(())
}

/// What a redemption found.
#[derive(Debug)]
pub enum Redemption {
    /// No such code.
    Unknown,
    /// Redeemed before: the row, with the session that redemption created.
    Reused(CodeRow),
    /// This call spent the code but the rules refused it (another client, another
    /// redirect URI, a wrong verifier, expired).
    Refused(CodeRow),
    /// This call spent the code and created the session.
    Redeemed(CodeRow),
}

/// The session (and refresh token, when it may refresh) a redeemed code starts; the
/// session's id is the one the redemption was given (the code records it as it is spent).
pub struct Grant {
    pub session: NewSession,
    pub refresh_token: Option<NewRefreshToken>,
    pub event: NewAuditEvent,
}

/// [`super::TokenStore::redeem_code`] through sea-orm (the PostgreSQL engine's).
pub(super) async fn redeem_code(
    db: &super::Db,
    code_hash: &str,
    now: i64,
    session_id: &str,
    judge: impl FnOnce(&CodeRow) -> Option<Grant>,
) -> StoreResult<Redemption> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let spent = authorization_codes::Entity::update_many()
        .col_expr(authorization_codes::Column::UsedAt, Expr::value(now))
        .col_expr(authorization_codes::Column::SessionId, Expr::value(session_id))
        .filter(authorization_codes::Column::CodeHash.eq(code_hash))
        .filter(authorization_codes::Column::UsedAt.is_null())
        .exec(&*txn)
        .await?
        .rows_affected
        == 1;
    let Some(row) = authorization_codes::Entity::find_by_id(code_hash.to_string()).one(&*txn).await? else {
        return Ok(Redemption::Unknown);
    };
    if !spent {
        return Ok(Redemption::Reused(row));
    }
    let Some(grant) = judge(&row) else {
        forget_session(&*txn, code_hash).await?;
        txn.commit().await?;
        return Ok(Redemption::Refused(CodeRow { session_id: None, ..row }));
    };
    let session = NewSession { id: session_id.to_string(), ..grant.session };
    super::sessions::insert(&*txn, session, grant.refresh_token).await?;
    audit::record(&txn, grant.event).await?;
    txn.commit().await?;
    Ok(Redemption::Redeemed(row))
}

/// A refused code created no session: it keeps none.
async fn forget_session(db: &impl ConnectionTrait, code_hash: &str) -> StoreResult<()> {
    authorization_codes::Entity::update_many()
        .col_expr(authorization_codes::Column::SessionId, Expr::value(Option::<String>::None))
        .filter(authorization_codes::Column::CodeHash.eq(code_hash))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn consent(db: &impl ConnectionTrait, user_id: &str, client_id: &str) -> StoreResult<Option<ConsentRow>> {
    Ok(consents::Entity::find_by_id((user_id.to_string(), client_id.to_string())).one(db).await?)
}

/// Remembers (or widens) a user's consent to a client, with its audit event.
pub async fn save_consent(db: &super::Db, row: ConsentRow, event: NewAuditEvent) -> StoreResult<()> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    consents::Entity::delete_by_id((row.user_id.clone(), row.client_id.clone())).exec(&*txn).await?;
    consents::ActiveModel::from(row).insert(&*txn).await?;
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(())
}

/// Forgets a consent; whether there was one.
/// Forgets a consent and ends the user's sessions at that client (which is told), with
/// the audit event (which gains `sessions_ended`), in one transaction; whether there was one.
pub async fn revoke_consent(
    db: &super::Db,
    user_id: &str,
    client_id: &str,
    now: i64,
    mut event: NewAuditEvent,
) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let deleted = consents::Entity::delete_by_id((user_id.to_string(), client_id.to_string())).exec(&*txn).await?;
    if deleted.rows_affected == 1 {
        // Its codes not yet redeemed buy nothing either.
        authorization_codes::Entity::update_many()
            .col_expr(authorization_codes::Column::UsedAt, Expr::value(now))
            .filter(authorization_codes::Column::UserId.eq(user_id))
            .filter(authorization_codes::Column::ClientId.eq(client_id))
            .filter(authorization_codes::Column::UsedAt.is_null())
            .exec(&*txn)
            .await?;
        let at_client: Vec<String> = sessions::Entity::find()
            .filter(sessions::Column::UserId.eq(user_id))
            .filter(sessions::Column::ClientId.eq(client_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .all(&*txn)
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        let ended =
            super::sessions::revoke_ids_in(&*txn, &at_client, "consent_revoked", now, Notify::RelyingParty).await?;
        if let Some(details) = event.details.as_object_mut() {
            details.insert("sessions_ended".into(), ended.len().into());
        }
        audit::record(&txn, event).await?;
    }
    txn.commit().await?;
    Ok(deleted.rows_affected == 1)
}

pub async fn consents_of(db: &impl ConnectionTrait, user_id: &str) -> StoreResult<Vec<ConsentRow>> {
    Ok(consents::Entity::find()
        .filter(consents::Column::UserId.eq(user_id))
        .order_by_asc(consents::Column::ClientId)
        .all(db)
        .await?)
}
