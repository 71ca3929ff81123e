//! Email address verification: a single-use link, valid for a day, mailed to the
//! address to be proved. Following it makes that address the account's, verified — the
//! only way an address becomes verified besides an admin saying so. A verified address
//! belongs to one account (the database's unique index decides, on any node).
//!
//! Links are mailed when an account is created with an address (self-registration or
//! an admin), when the user asks to change theirs (the new address replaces the old
//! only once verified, and the old address gets a notice), and when the user or an admin
//! asks for one again. With `registration.require_verified_email`, a self-registered
//! account cannot sign in until it has followed its link.

use crate::security::{Secret, generate_token, sha256_hex};
use crate::state::AppState;
use crate::store::audit::NewAuditEvent;
use crate::store::entities::EmailTokenPurpose;
use crate::store::mail::{self as store, Completed, EmailTokenRow, NewEmailToken, QueuedMail};
use crate::store::users::UserRow;

use super::{Error, ErrorCode, Result};

/// How long a verification link works.
pub const VERIFY_TTL_SECS: i64 = 24 * 3600;
/// What a verification token starts with, so secret scanners recognise a leaked one.
pub const TOKEN_PREFIX: &str = "lk_ev_";
/// The hosted page a verification link opens.
pub const PAGE: &str = "/ui/verify-email";

pub use super::mail::invalid_link as invalid_token;

pub fn email_taken() -> Error {
    Error::Conflict {
        code: ErrorCode::EmailTaken,
        description: "another account has verified this email address".into(),
    }
}

/// Refuses a sign-in of a self-registered account that has not verified its address,
/// while `registration.require_verified_email` asks for it.
pub fn check_may_sign_in(state: &AppState, user: &UserRow) -> Result<()> {
    if state.config.require_verified_email && user.self_registered && !user.email_verified {
        // Whoever proved the password gets a fresh link (within the address's share):
        // an expired or lost one must not leave the account locked out for good.
        let (state, user) = (state.clone(), user.clone());
        tokio::spawn(async move {
            if let Err(e) = send(&state, &user, None, &user.id.clone(), None).await {
                tracing::warn!(user_id = %user.id, error = %e, "a new verification link was not queued");
            }
        });
        return Err(Error::Forbidden {
            code: ErrorCode::EmailNotVerified,
            description: "confirm your email address first: follow the link mailed to you".into(),
        });
    }
    Ok(())
}

/// A verification link for `address` and the mail that carries it (with a notice to
/// `old_address` when the account's verified address is being replaced): what
/// [`store::issue`] stores in one transaction.
pub fn prepare(
    state: &AppState,
    user_id: &str,
    username: &str,
    address: &str,
    old_address: Option<&str>,
    now: i64,
) -> (NewEmailToken, Vec<QueuedMail>) {
    let token = generate_token(TOKEN_PREFIX);
    let brand = super::mail::brand(state);
    let link = super::mail::link(state, PAGE, token.expose());
    let mut mails = vec![super::mail::seal(state, &crate::mail::verify_address(&brand, address, username, &link, 24))];
    if let Some(old) = old_address.filter(|old| !old.eq_ignore_ascii_case(address)) {
        mails.push(super::mail::seal(state, &crate::mail::address_change_notice(&brand, old, username, address)));
    }
    let new_token = NewEmailToken {
        user_id: user_id.to_string(),
        purpose: EmailTokenPurpose::Verify,
        token_hash: sha256_hex(token.expose()),
        email: address.to_string(),
        fingerprint_of: None,
        now,
        expires_at: now + VERIFY_TTL_SECS,
    };
    (new_token, mails)
}

/// Mails `user` a link proving `address` (its current address when `None`), replacing
/// any earlier verification link; audited with `actor`. `Ok(Err(secs))` when the
/// address's hourly limit is reached.
pub async fn send(
    state: &AppState,
    user: &UserRow,
    address: Option<&str>,
    actor: &str,
    ip: Option<String>,
) -> Result<Result<(), u64>> {
    super::mail::configured(state)?;
    let changing = address.is_some_and(|a| !user.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(a)));
    let Some(address) = address.or(user.email.as_deref()) else {
        return Err(Error::bad_request(ErrorCode::NoEmail, "the account has no email address"));
    };
    if let Err(wait) = super::mail::take_address_token(state, address, EmailTokenPurpose::Verify).await? {
        return Ok(Err(wait));
    }
    let now = state.now();
    // The old address hears of a change only when it was proved theirs.
    let old = user.email.as_deref().filter(|_| changing && user.email_verified);
    let (token, mails) = prepare(state, &user.id, &user.username, address, old, now);
    let action = if changing { "email.change_requested" } else { "email.verification_mailed" };
    let mut event = NewAuditEvent::success(now, actor, action, &user.id)
        .details(serde_json::json!({ "notice_to_old_address": old.is_some() }));
    event.ip = ip;
    if !store::issue(&state.db, token, &mails, event).await? {
        return Err(Error::NotFound("user"));
    }
    super::mail::count_queued(state, mails.len());
    Ok(Ok(()))
}

/// The user asks to change their address (their password re-checked): a link goes to
/// the new address, a notice to the old; nothing changes until the link is followed.
pub async fn request_change(
    state: &AppState,
    user_id: &str,
    address: &str,
    password: &Secret<String>,
    ctx: &super::auth::RequestContext,
) -> Result<()> {
    super::mail::configured(state)?;
    let user = crate::store::users::find_by_id(&state.db, user_id).await?.ok_or(Error::NotFound("user"))?;
    super::auth::check_password(state, &user.username, password, ctx).await?;
    let Some(address) = super::users::validate_email(Some(address.to_string()))? else {
        return Err(Error::bad_request(ErrorCode::InvalidEmail, "give the new email address"));
    };
    if user.email_verified && user.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(&address)) {
        return Err(Error::bad_request(ErrorCode::InvalidEmail, "that is already your verified address"));
    }
    limited(send(state, &user, Some(&address), user_id, ctx.ip.clone()).await?)
}

/// After an admin changed `before`'s address (set at once, on the admin's authority):
/// unless they marked it verified, the new address gets a link to prove it and the old
/// verified one a notice. The change has committed; a mail that cannot be queued is
/// logged, and the admin can send the link again.
pub async fn after_admin_change(state: &AppState, before: &UserRow, after: &super::users::UserView, actor: &str) {
    if state.config.mail.is_none() {
        return;
    }
    let changed = !matches!((&before.email, &after.email), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b));
    let Some(address) = after.email.as_deref().filter(|_| changed && !after.email_verified) else { return };
    let queued = async {
        if super::mail::take_address_token(state, address, EmailTokenPurpose::Verify).await?.is_err() {
            return Ok::<usize, Error>(0);
        }
        let now = state.now();
        let old = before.email.as_deref().filter(|_| before.email_verified);
        let (token, mails) = prepare(state, &after.id, &after.username, address, old, now);
        let event = NewAuditEvent::success(now, actor, "email.verification_mailed", &after.id)
            .details(serde_json::json!({ "notice_to_old_address": old.is_some() }));
        store::issue(&state.db, token, &mails, event).await?;
        Ok(mails.len())
    };
    match queued.await {
        Ok(count) => super::mail::count_queued(state, count),
        Err(e) => tracing::warn!(user_id = %after.id, error = %e, "the new address's verification link was not queued"),
    }
}

/// A limit reached, as the 429 the caller sees.
pub fn limited(verdict: Result<(), u64>) -> Result<()> {
    verdict.map_err(|wait| Error::RateLimited { retry_after_secs: wait })
}

/// The link's token and account, if it still works (the hosted page asks before it
/// shows its button: a mail scanner's GET must not verify anything).
pub async fn check(state: &AppState, token: &str) -> Result<(EmailTokenRow, UserRow)> {
    if !super::mail::plausible(token, TOKEN_PREFIX) {
        return Err(invalid_token());
    }
    store::live_token(&state.db, EmailTokenPurpose::Verify, &sha256_hex(token), state.now())
        .await?
        .ok_or_else(invalid_token)
}

/// Follows a verification link: its address becomes the account's, verified.
pub async fn complete(state: &AppState, token: &Secret<String>, ip: Option<String>) -> Result<UserRow> {
    if !super::mail::plausible(token.expose(), TOKEN_PREFIX) {
        return Err(invalid_token());
    }
    let now = state.now();
    let completed = store::complete_verification(&state.db, &sha256_hex(token.expose()), now, |user| {
        let mut event = NewAuditEvent::success(now, &user.id, "email.verified", &user.id);
        event.ip = ip.clone();
        event
    })
    .await?;
    match completed {
        Completed::Done(user) => Ok(*user),
        Completed::Invalid => Err(invalid_token()),
        Completed::AddressTaken => Err(email_taken()),
    }
}
