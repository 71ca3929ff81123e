//! Mailed tokens (password reset, address verification) and the mail they travel in.
//!
//! A token is issued in one transaction with the outbox rows that carry it and the
//! audit event, so a link is never mailed for a token that was not stored, nor stored
//! without its mail. It is stored as its SHA-256 only, and taken — deleted — by the one
//! request that uses it (`DELETE … RETURNING`), so two requests with the same link cannot
//! both succeed, on any number of nodes.

use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};

use super::audit::{self, NewAuditEvent};
use super::entities::{EmailTokenPurpose, OutboxKind, OutboxState, email_tokens, outbox, users};
use super::users::UserRow;
use super::{StoreError, StoreResult};

pub use email_tokens::Model as EmailTokenRow;

/// One message ready for the outbox: its id (the seal's context and the Message-ID),
/// the address it goes to, and its sealed content.
#[derive(Clone)]
pub struct QueuedMail {
    pub id: String,
    pub to: String,
    pub sealed: String,
}

impl std::fmt::Debug for QueuedMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueuedMail").field("id", &self.id).field("to", &self.to).finish_non_exhaustive()
    }
}

/// A token to store: everything but its value, of which only the hash is kept.
#[derive(Debug, Clone)]
pub struct NewEmailToken {
    pub user_id: String,
    pub purpose: EmailTokenPurpose,
    pub token_hash: String,
    pub email: String,
    /// For a reset link: how to fingerprint a password hash. The fingerprint is taken
    /// from the user's row as locked by [`issue`], so a password changed at the same
    /// moment either precedes the link (and it holds) or kills it.
    pub fingerprint_of: Option<fn(&str) -> String>,
    pub now: i64,
    pub expires_at: i64,
}

/// Inserts `mails` into the outbox, due now, inside the caller's transaction.
pub async fn queue(db: &impl ConnectionTrait, mails: &[QueuedMail], now: i64) -> StoreResult<()> {
    if mails.is_empty() {
        return Ok(());
    }
    let rows = mails.iter().map(|mail| outbox::ActiveModel {
        id: Set(mail.id.clone()),
        kind: Set(OutboxKind::Mail),
        recipient: Set(mail.to.clone()),
        payload: Set(mail.sealed.clone()),
        state: Set(OutboxState::Pending),
        attempts: Set(0),
        created_at: Set(now),
        next_attempt_at: Set(now),
        lease_owner: Set(None),
        last_error: Set(None),
        finished_at: Set(None),
    });
    outbox::Entity::insert_many(rows).exec(db).await?;
    Ok(())
}

/// Stores `token` — replacing the user's earlier tokens of its purpose, so only the
/// newest link works — with the mail that carries it (and any other, such as the notice
/// to an address being replaced) and the audit event, in one transaction. `false`, and
/// nothing written, when the user is gone.
pub async fn issue(
    db: &super::Db,
    token: NewEmailToken,
    mails: &[QueuedMail],
    event: NewAuditEvent,
) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithRead).await?;
    // The user's row is locked first: a reset issued beside a password change sees the
    // password hash it was issued under, or the newer one.
    let Some(user) = users::Entity::find_by_id(token.user_id.clone()).lock_exclusive().one(&*txn).await? else {
        txn.rollback().await?;
        return Ok(false);
    };
    email_tokens::Entity::delete_many()
        .filter(email_tokens::Column::UserId.eq(user.id.as_str()))
        .filter(email_tokens::Column::Purpose.eq(token.purpose))
        .exec(&*txn)
        .await?;
    let fingerprint = token.fingerprint_of.map(|of| of(&user.password_hash));
    insert_token(&*txn, token, fingerprint, mails).await?;
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(true)
}

/// Inserts `token` and the mail that carries it inside the caller's transaction (an
/// account's creation uses it, so the account and its first link commit together).
pub async fn insert_token(
    db: &impl ConnectionTrait,
    token: NewEmailToken,
    password_fingerprint: Option<String>,
    mails: &[QueuedMail],
) -> StoreResult<()> {
    let now = token.now;
    email_tokens::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        user_id: Set(token.user_id),
        purpose: Set(token.purpose),
        token_hash: Set(token.token_hash),
        email: Set(token.email),
        password_fingerprint: Set(password_fingerprint),
        created_at: Set(token.now),
        expires_at: Set(token.expires_at),
    }
    .insert(db)
    .await?;
    queue(db, mails, now).await
}

/// A live token of `purpose` by its hash, without taking it (the hosted page shows the
/// form only for a link that works).
pub async fn live_token(
    db: &impl ConnectionTrait,
    purpose: EmailTokenPurpose,
    token_hash: &str,
    now: i64,
) -> StoreResult<Option<(EmailTokenRow, UserRow)>> {
    let Some(token) = email_tokens::Entity::find()
        .filter(email_tokens::Column::TokenHash.eq(token_hash))
        .filter(email_tokens::Column::Purpose.eq(purpose))
        .filter(email_tokens::Column::ExpiresAt.gt(now))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let user = users::Entity::find_by_id(token.user_id.clone()).one(db).await?;
    Ok(user.map(|user| (token, user)))
}

/// Takes (deletes) a token of `purpose` by its hash inside `txn`, with its user's row
/// locked first — the order [`issue`] and every user change lock in, so a link used
/// while another is being issued waits instead of deadlocking: the one live token and
/// the locked user, or `None` (unknown, used, or expired — an expired one is deleted too).
async fn take(
    txn: &super::WriteTxn,
    purpose: EmailTokenPurpose,
    token_hash: &str,
    now: i64,
) -> StoreResult<Option<(EmailTokenRow, UserRow)>> {
    let owner: Option<String> = email_tokens::Entity::find()
        .select_only()
        .column(email_tokens::Column::UserId)
        .filter(email_tokens::Column::TokenHash.eq(token_hash))
        .filter(email_tokens::Column::Purpose.eq(purpose))
        .into_tuple()
        .one(&**txn)
        .await?;
    let Some(owner) = owner else { return Ok(None) };
    let user = users::Entity::find_by_id(owner).lock_exclusive().one(&**txn).await?;
    let taken = email_tokens::Entity::delete_many()
        .filter(email_tokens::Column::TokenHash.eq(token_hash))
        .filter(email_tokens::Column::Purpose.eq(purpose))
        .exec_with_returning(&**txn)
        .await?;
    let token = taken.into_iter().next().filter(|token| token.expires_at > now);
    Ok(token.zip(user).filter(|(token, user)| token.user_id == user.id))
}

/// Deletes every mailed link of a user (its address changed: links sent to the old one,
/// or for an address asked for before, must not work), inside the caller's transaction.
pub async fn delete_tokens_of(db: &impl ConnectionTrait, user_id: &str) -> StoreResult<()> {
    email_tokens::Entity::delete_many().filter(email_tokens::Column::UserId.eq(user_id)).exec(db).await?;
    Ok(())
}

/// How a link's use ended.
#[derive(Debug)]
pub enum Completed {
    Done(Box<UserRow>),
    /// Unknown, used, expired, superseded, or no longer matching the account.
    Invalid,
    /// A verification whose address another account has verified since.
    AddressTaken,
}

/// Completes a password reset in one transaction: takes the token; checks that the user
/// is active and its password is still the one the link was issued under
/// (`fingerprint` of the current hash, computed by the caller's `fingerprint_of`); sets
/// the new hash, clears both lockouts, ends every session (their relying parties told
/// through the outbox) and every half-done sign-in, drops the user's other reset links,
/// and audits.
pub async fn complete_reset(
    db: &super::Db,
    token_hash: &str,
    new_password_hash: &str,
    fingerprint_of: impl Fn(&str) -> String,
    now: i64,
    event: impl FnOnce(&UserRow) -> NewAuditEvent,
) -> StoreResult<Completed> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let Some((token, user)) = take(&txn, EmailTokenPurpose::Reset, token_hash, now).await? else {
        txn.commit().await?;
        return Ok(Completed::Invalid);
    };
    let Some(user) = Some(user).filter(|u| {
        u.status == super::entities::UserStatus::Active
            && token.password_fingerprint.as_deref() == Some(fingerprint_of(&u.password_hash).as_str())
    }) else {
        // The link is spent either way: it can never become valid again.
        txn.commit().await?;
        return Ok(Completed::Invalid);
    };
    let updated = users::Entity::update_many()
        .col_expr(users::Column::PasswordHash, Expr::value(new_password_hash))
        .col_expr(users::Column::FailedLogins, Expr::value(0))
        .col_expr(users::Column::LockedUntil, Expr::value(Option::<i64>::None))
        .col_expr(users::Column::TotpFailures, Expr::value(0))
        .col_expr(users::Column::TotpLockedUntil, Expr::value(Option::<i64>::None))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(user.id.as_str()))
        .exec_with_returning(&*txn)
        .await?;
    let Some(user) = updated.into_iter().next() else {
        txn.rollback().await?;
        return Ok(Completed::Invalid);
    };
    super::sessions::revoke_all_in(&*txn, &user.id, Default::default(), "password_reset", now).await?;
    super::authorization::end_sign_ins_in_progress(&*txn, &user.id).await?;
    email_tokens::Entity::delete_many()
        .filter(email_tokens::Column::UserId.eq(user.id.as_str()))
        .filter(email_tokens::Column::Purpose.eq(EmailTokenPurpose::Reset))
        .exec(&*txn)
        .await?;
    audit::record(&txn, event(&user)).await?;
    txn.commit().await?;
    Ok(Completed::Done(Box::new(user)))
}

/// Completes an address verification in one transaction: takes the token, makes its
/// address the user's — verified — and audits. Refused when another account has verified
/// that address since (the partial unique index decides, on any node).
pub async fn complete_verification(
    db: &super::Db,
    token_hash: &str,
    now: i64,
    event: impl FnOnce(&UserRow) -> NewAuditEvent,
) -> StoreResult<Completed> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let Some((token, user)) = take(&txn, EmailTokenPurpose::Verify, token_hash, now).await? else {
        txn.commit().await?;
        return Ok(Completed::Invalid);
    };
    if user.status != super::entities::UserStatus::Active {
        txn.commit().await?;
        return Ok(Completed::Invalid);
    }
    let updated = users::Entity::update_many()
        .col_expr(users::Column::Email, Expr::value(token.email.as_str()))
        .col_expr(users::Column::EmailVerified, Expr::value(true))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(token.user_id.as_str()))
        .exec_with_returning(&*txn)
        .await;
    let user = match updated {
        Err(e) => match StoreError::from(e) {
            StoreError::Conflict => {
                txn.rollback().await?;
                return Ok(Completed::AddressTaken);
            }
            other => return Err(other),
        },
        Ok(rows) => match rows.into_iter().next() {
            Some(user) => user,
            None => {
                txn.commit().await?;
                return Ok(Completed::Invalid);
            }
        },
    };
    // A reset link mailed to an address the account no longer has dies with it.
    email_tokens::Entity::delete_many()
        .filter(email_tokens::Column::UserId.eq(user.id.as_str()))
        .filter(email_tokens::Column::Purpose.eq(EmailTokenPurpose::Reset))
        .filter(email_tokens::Column::Email.ne(token.email.as_str()))
        .exec(&*txn)
        .await?;
    audit::record(&txn, event(&user)).await?;
    txn.commit().await?;
    Ok(Completed::Done(Box::new(user)))
}

/// The account a reset request names: by its verified address (any case) when `login`
/// holds an `@`, else by its normalised username.
pub async fn user_by_verified_email(db: &impl ConnectionTrait, email: &str) -> StoreResult<Option<UserRow>> {
    Ok(users::Entity::find()
        // lower() on both sides: the engine's own folding, as its unique index uses.
        .filter(Expr::expr(Func::lower(Expr::col(users::Column::Email))).eq(Func::lower(Expr::value(email))))
        .filter(users::Column::EmailVerified.eq(true))
        .one(db)
        .await?)
}

/// Whether a user has a verification in progress, and for which address.
pub async fn pending_verification(db: &impl ConnectionTrait, user_id: &str, now: i64) -> StoreResult<Option<String>> {
    Ok(email_tokens::Entity::find()
        .select_only()
        .column(email_tokens::Column::Email)
        .filter(email_tokens::Column::UserId.eq(user_id))
        .filter(email_tokens::Column::Purpose.eq(EmailTokenPurpose::Verify))
        .filter(email_tokens::Column::ExpiresAt.gt(now))
        .into_tuple::<String>()
        .one(db)
        .await?)
}
