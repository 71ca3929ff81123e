//! Password reset by mail: a request names an account by username or verified address;
//! if one matches, a single-use link valid for 30 minutes is mailed to its verified
//! address. The answer to the request is the same — status, body and timing — whether
//! or not anything matched: the lookup and the queueing run after the answer, on a task
//! of their own, so no part of the response depends on them.
//!
//! The token is 256 bits, stored as its SHA-256 beside a fingerprint of the password
//! hash it was issued under: a password changed since (by the user, an admin or another
//! reset) kills it, and a newer reset replaces it. Completing one sets the password
//! (policy checked), ends every session and half-done sign-in of the user, clears both
//! lockouts and audits, in one transaction.

use crate::security::{Secret, generate_token, sha256_hex};
use crate::state::AppState;
use crate::store::audit::NewAuditEvent;
use crate::store::entities::{EmailTokenPurpose, UserStatus};
use crate::store::mail::{self as store, Completed, NewEmailToken};
use crate::store::users::{self, UserRow};

use super::{Error, ErrorCode, Result};

/// How long a reset link works.
pub const RESET_TTL_SECS: i64 = 30 * 60;
/// What a reset token starts with, so secret scanners recognise a leaked one.
pub const TOKEN_PREFIX: &str = "lk_pr_";
/// The hosted page a reset link opens.
pub const PAGE: &str = "/ui/password-reset";

/// The one answer for a link that cannot be used.
pub use super::mail::invalid_link as invalid_token;

/// How long the lookup waits after the answer (see [`request`]).
const ANSWER_FIRST: std::time::Duration = std::time::Duration::from_millis(20);

/// Reset requests being looked up at once on a node, at most; beyond, a request is
/// dropped (its answer, given already, is the same either way).
pub const LOOKUPS_AT_ONCE: usize = 64;

/// A password hash's fingerprint: a link records the one it was issued under.
fn fingerprint(password_hash: &str) -> String {
    sha256_hex(password_hash)
}

/// Takes a reset request for `login` (a username or an email address). Only its shape
/// is checked here; whether it names an account is decided after the answer, so the
/// answer cannot tell.
pub fn request(state: &AppState, login: &str, ip: Option<String>) -> Result<()> {
    super::mail::configured(state)?;
    let login = login.trim();
    if login.is_empty() || login.chars().count() > 254 || login.chars().any(char::is_control) {
        return Err(Error::bad_request(ErrorCode::InvalidRequest, "give a username or an email address"));
    }
    let Ok(slot) = state.reset_lookups.clone().try_acquire_owned() else {
        tracing::warn!("password reset requests arrive faster than they are looked up; one is dropped");
        return Ok(());
    };
    let (state, login) = (state.clone(), login.to_string());
    tokio::spawn(async move {
        let _slot = slot;
        // Begin once the answer is on its way: a task spawned now would run next on this
        // worker, beside the answer, and lend it the time of whatever it finds.
        tokio::time::sleep(ANSWER_FIRST).await;
        if let Err(e) = request_in_background(&state, &login, ip).await {
            tracing::warn!(error = %e, "a password reset request could not be handled");
        }
    });
    Ok(())
}

async fn request_in_background(state: &AppState, login: &str, ip: Option<String>) -> Result<()> {
    let mut user = None;
    if login.contains('@') {
        user = store::user_by_verified_email(&state.db, login).await?;
    }
    // A username may hold an `@` too.
    if user.is_none()
        && let Ok(normalized) = super::users::login_name(login)
    {
        user = users::find_by_username(&state.db, &normalized).await?;
    }
    let Some(user) = user.filter(|u| u.status == UserStatus::Active && u.email_verified && u.email.is_some()) else {
        // The same write as a known account's first step (a token of an address
        // bucket), so what follows the answer costs the database alike either way.
        super::mail::take_address_token(state, login, EmailTokenPurpose::Reset).await?.ok();
        tracing::debug!("a password reset request named no account with a verified address");
        return Ok(());
    };
    if send(state, &user, &user.id.clone(), ip).await?.is_err() {
        tracing::info!(user_id = %user.id, "password reset mail not sent: the address's hourly limit is reached");
    }
    Ok(())
}

/// Mails `user` a reset link (replacing any earlier one) to its address, audited with
/// `actor`. `Ok(Err(secs))` when the address's hourly limit is reached.
pub async fn send(state: &AppState, user: &UserRow, actor: &str, ip: Option<String>) -> Result<Result<(), u64>> {
    super::mail::configured(state)?;
    // A reset link is a password: it goes only to an address proved to be the user's.
    let Some(address) = user.email.clone().filter(|_| user.email_verified) else {
        return Err(Error::bad_request(ErrorCode::NoEmail, "the account has no verified email address"));
    };
    if let Err(wait) = super::mail::take_address_token(state, &address, EmailTokenPurpose::Reset).await? {
        return Ok(Err(wait));
    }
    let now = state.now();
    let token = generate_token(TOKEN_PREFIX);
    let link = super::mail::link(state, PAGE, token.expose());
    let composed = crate::mail::password_reset(
        &super::mail::brand(state),
        &address,
        &user.username,
        &link,
        (RESET_TTL_SECS / 60) as u64,
    );
    let mail = super::mail::seal(state, &composed);
    let mut event = NewAuditEvent::success(now, actor, "password_reset.mailed", &user.id)
        .details(serde_json::json!({ "message_id": mail.id }));
    event.ip = ip;
    let issued = store::issue(
        &state.db,
        NewEmailToken {
            user_id: user.id.clone(),
            purpose: EmailTokenPurpose::Reset,
            token_hash: sha256_hex(token.expose()),
            email: address,
            fingerprint_of: Some(fingerprint),
            now,
            expires_at: now + RESET_TTL_SECS,
        },
        std::slice::from_ref(&mail),
        event,
    )
    .await?;
    if !issued {
        return Err(Error::NotFound("user"));
    }
    super::mail::count_queued(state, 1);
    Ok(Ok(()))
}

/// The account a reset link is for, if it still works: the hosted page shows its form
/// only then.
pub async fn check(state: &AppState, token: &str) -> Result<UserRow> {
    if !super::mail::plausible(token, TOKEN_PREFIX) {
        return Err(invalid_token());
    }
    let found = store::live_token(&state.db, EmailTokenPurpose::Reset, &sha256_hex(token), state.now()).await?;
    match found {
        Some((token, user))
            if user.status == UserStatus::Active
                && token.password_fingerprint.as_deref() == Some(fingerprint(&user.password_hash).as_str()) =>
        {
            Ok(user)
        }
        _ => Err(invalid_token()),
    }
}

/// Completes a reset: the new password is checked against the policy, the link is
/// taken, and the password set, every session ended, lockouts cleared, in one
/// transaction. The user it was for.
pub async fn complete(
    state: &AppState,
    token: &Secret<String>,
    new_password: &Secret<String>,
    ip: Option<String>,
) -> Result<UserRow> {
    super::mail::configured(state)?;
    super::users::validate_password(new_password.expose(), state.config.passwords.min_length)?;
    // A dead link is refused before the (slow) hash; the transaction below re-checks it.
    check(state, token.expose()).await?;
    let hash = state.passwords.hash(new_password).await?;
    let now = state.now();
    let completed = store::complete_reset(&state.db, &sha256_hex(token.expose()), &hash, fingerprint, now, |user| {
        let mut event = NewAuditEvent::success(now, &user.id, "password_reset.completed", &user.id);
        event.ip = ip.clone();
        event
    })
    .await?;
    match completed {
        Completed::Done(user) => {
            tracing::info!(user_id = %user.id, "password reset: every session of the user ended");
            Ok(*user)
        }
        Completed::Invalid | Completed::AddressTaken => Err(invalid_token()),
    }
}
