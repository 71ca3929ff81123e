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

/// The one answer for a link that cannot be used: unknown, used, expired, replaced by a
/// newer one, or issued under a password that has changed since.
pub fn invalid_token() -> Error {
    Error::bad_request(ErrorCode::InvalidEmailToken, "this link is invalid, used or expired; ask for a new one")
}

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
    let (state, login) = (state.clone(), login.to_string());
    tokio::spawn(async move {
        if let Err(e) = request_in_background(&state, &login, ip).await {
            tracing::warn!(error = %e, "a password reset request could not be handled");
        }
    });
    Ok(())
}

async fn request_in_background(state: &AppState, login: &str, ip: Option<String>) -> Result<()> {
    let user = if login.contains('@') {
        store::user_by_verified_email(&state.db, login).await?
    } else {
        match super::users::login_name(login) {
            Ok(normalized) => users::find_by_username(&state.db, &normalized).await?,
            Err(_) => None,
        }
    };
    let Some(user) = user.filter(|u| u.status == UserStatus::Active && u.email_verified) else {
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
    let Some(address) = user.email.clone() else {
        return Err(Error::bad_request(ErrorCode::NoEmail, "the account has no email address"));
    };
    if let Err(wait) = super::mail::take_address_token(state, &address).await? {
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
            password_fingerprint: Some(fingerprint(&user.password_hash)),
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
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
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
