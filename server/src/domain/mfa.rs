//! The optional second factor: TOTP enrolment, login challenges and their completion,
//! recovery codes, and admin reset.
//!
//! After a correct password, an account with TOTP gets a short-lived single-use
//! `mfa_token` instead of tokens; `complete_login` exchanges it plus a code (or a
//! recovery code) for a session with `amr = ["pwd", "otp"]`. A TOTP step, once
//! accepted, is never accepted again for that user (compare-and-swap in the database),
//! and failures count towards a lockout separate from the password's.

use crate::security::totp;
use crate::security::{Secret, generate_token, sha256_hex};
use crate::state::AppState;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::clients::ClientRow;
use crate::store::entities::UserStatus;
use crate::store::mfa::{self as store, ChallengeRow, Claimed, FactorClaim};
use crate::store::users::{self, Factor, UserRow};
use latchkey_codes::ErrorCode;

use super::auth::{IssuedTokens, RequestContext, audit_lockout, check_password};
use super::passkeys::{self, AfterPassword, Factors};
use super::{Error, Result, new_id, sessions};

pub const MFA_TOKEN_PREFIX: &str = "lk_mfa_";
/// Steps either side of now that a code may come from (RFC 6238 §5.2's network delay).
pub const TOTP_SKEW_STEPS: i64 = 1;
pub const AMR_PASSWORD_AND_OTP: &[&str] = &["pwd", "otp"];

/// What a password login leads to.
// No Debug: it carries tokens.
pub enum LoginOutcome {
    Tokens(IssuedTokens),
    /// A second factor is needed: one of `factors`, with the `mfa_token`.
    MfaRequired {
        mfa_token: Secret<String>,
        expires_in: u64,
        factors: Factors,
    },
}

pub enum SecondFactor {
    Code(String),
    RecoveryCode(Secret<String>),
}

fn totp_context(user_id: &str) -> String {
    format!("latchkey:totp:{user_id}")
}

fn decrypt_secret(state: &AppState, user_id: &str, encrypted: Option<&str>) -> Result<Secret<Vec<u8>>> {
    let encrypted = encrypted.ok_or(Error::InvalidSecondFactor)?;
    let plain = state
        .master_key
        .decrypt(&totp_context(user_id), encrypted)
        .map_err(|_| Error::Internal(format!("cannot decrypt the TOTP secret of user {user_id}")))?;
    Ok(Secret::new(plain.to_vec()))
}

fn event(now: i64, actor: &str, action: &'static str, user_id: &str, ctx: &RequestContext) -> NewAuditEvent {
    NewAuditEvent::success(now, actor, action, user_id).ip(ctx.ip.clone())
}

/// Password checked: a session, or (see [`passkeys::after_password`]) a challenge to
/// complete with TOTP or a passkey, or a refusal when the account must enrol a second
/// factor first.
pub async fn after_password(
    state: &AppState,
    user: &UserRow,
    client: &ClientRow,
    scope: &str,
    ctx: &RequestContext,
) -> Result<LoginOutcome> {
    let factors = match passkeys::after_password(state, user).await? {
        AfterPassword::Done => {
            return Ok(LoginOutcome::Tokens(sessions::start(state, user, client, scope, &["pwd"], ctx).await?));
        }
        AfterPassword::MustEnrol => return Err(passkeys::enrolment_required()),
        AfterPassword::SecondFactor(factors) => factors,
    };
    let now = ctx.now;
    let ttl = state.config.mfa.challenge_ttl.as_secs();
    let token = generate_token(MFA_TOKEN_PREFIX);
    store::create_challenge(
        &state.db,
        ChallengeRow {
            id: new_id(),
            token_hash: sha256_hex(token.expose()),
            user_id: user.id.clone(),
            client_id: client.client_id.clone(),
            created_at: now,
            expires_at: now + ttl as i64,
            used_at: None,
        },
    )
    .await?;
    Ok(LoginOutcome::MfaRequired { mfa_token: token, expires_in: ttl, factors })
}

/// Checks a TOTP or recovery code for `user`. The attempt is reserved against the TOTP
/// lockout before the code is looked at (as passwords are), so a parallel burst of codes
/// gets no more checks than the threshold. With a login challenge, the challenge is
/// consumed in the same transaction as the code ([`store::claim_factor`]): of two
/// completions racing on one `mfa_token`, the loser spends nothing.
pub async fn verify_second_factor(
    state: &AppState,
    user: &UserRow,
    factor: &SecondFactor,
    ctx: &RequestContext,
    challenge_id: Option<&str>,
) -> Result<()> {
    super::auth::check_username_limit(state, &user.username_normalized, ctx.now).await?;
    let now = ctx.now;
    if !user.totp_enabled {
        return Err(Error::InvalidSecondFactor);
    }
    let schedule = super::lockout::schedule(&state.config.lockout);
    let Some(reserved) = users::reserve_attempt(&state.db, &user.id, Factor::Totp, now, &schedule).await? else {
        return Err(second_factor_failure(state, user, ctx, "locked").await?);
    };
    let recovery_hash;
    let claim = match factor {
        SecondFactor::Code(code) => {
            let secret = decrypt_secret(state, &user.id, user.totp_secret_encrypted.as_deref())?;
            totp::matching_step(secret.expose(), code, now, TOTP_SKEW_STEPS).map(FactorClaim::TotpStep)
        }
        SecondFactor::RecoveryCode(code) => {
            recovery_hash = sha256_hex(&totp::normalise_recovery_code(code.expose()));
            Some(FactorClaim::RecoveryCode(&recovery_hash))
        }
    };
    let claimed = match claim {
        Some(claim) => store::claim_factor(&state.db, &user.id, claim, challenge_id, now).await?,
        None => Claimed::Rejected,
    };
    match claimed {
        Claimed::Accepted => {
            users::record_success(&state.db, &user.id, Factor::Totp).await?;
            if matches!(factor, SecondFactor::RecoveryCode(_)) {
                audit::record_alone(&state.db, event(now, &user.id, "mfa.recovery_code_used", &user.id, ctx)).await?;
            }
            Ok(())
        }
        Claimed::ChallengeSpent => Err(Error::InvalidToken("the mfa_token was already used; log in again".into())),
        Claimed::Rejected => {
            audit_lockout(state, &user.id, Factor::Totp, reserved, ctx).await?;
            Err(second_factor_failure(state, user, ctx, "invalid_code").await?)
        }
    }
}

/// Audits a refused second factor and returns the generic error for it.
async fn second_factor_failure(
    state: &AppState,
    user: &UserRow,
    ctx: &RequestContext,
    reason: &'static str,
) -> Result<Error> {
    let now = ctx.now;
    let failure =
        event(now, &user.id, "mfa", &user.id, ctx).outcome("failure").details(serde_json::json!({ "reason": reason }));
    audit::record_alone(&state.db, failure).await?;
    Ok(Error::InvalidSecondFactor)
}

/// `POST /auth/login/mfa`: the challenge plus a code → a session.
pub async fn complete_login(
    state: &AppState,
    mfa_token: &Secret<String>,
    factor: SecondFactor,
    ctx: &RequestContext,
) -> Result<IssuedTokens> {
    let (challenge, user) = live_challenge(state, mfa_token, ctx.now).await?;
    // Single use: the challenge is consumed with the code, so only one completion wins.
    verify_second_factor(state, &user, &factor, ctx, Some(&challenge.id)).await?;
    let client = sessions::first_party_client(state, &challenge.client_id).await?;
    let scope = super::oauth::resolve_scope(&client, None)?;
    sessions::start(state, &user, &client, &scope, AMR_PASSWORD_AND_OTP, ctx).await
}

/// What a user needs to add the account to an authenticator app.
pub struct TotpEnrolment {
    pub secret_base32: Secret<String>,
    pub otpauth_uri: Secret<String>,
    pub qr_svg: Secret<String>,
}

async fn user(state: &AppState, user_id: &str) -> Result<UserRow> {
    users::find_by_id(&state.db, user_id).await?.ok_or(Error::NotFound("user"))
}

/// Starts enrolment (password re-checked): a new secret, pending until confirmed.
pub async fn setup(
    state: &AppState,
    user_id: &str,
    password: &Secret<String>,
    ctx: &RequestContext,
) -> Result<TotpEnrolment> {
    let user = user(state, user_id).await?;
    check_password(state, &user.username, password, ctx).await?;
    if user.totp_enabled {
        return Err(Error::Conflict {
            code: ErrorCode::TotpEnabled,
            description: "TOTP is already enabled; disable it first".into(),
        });
    }
    let secret = totp::generate_secret();
    let encrypted = state.master_key.encrypt(&totp_context(&user.id), secret.expose());
    users::set_pending_totp(&state.db, &user.id, &encrypted).await?;
    enrolment(state, &user, secret.expose())
}

/// The enrolment started and not yet confirmed, shown again (after a mistyped code, so
/// the entry already scanned keeps working); `None` when there is none.
pub async fn pending_enrolment(state: &AppState, user_id: &str) -> Result<Option<TotpEnrolment>> {
    let user = user(state, user_id).await?;
    let Some(pending) = user.totp_pending_encrypted.as_deref().filter(|_| !user.totp_enabled) else {
        return Ok(None);
    };
    let secret = decrypt_secret(state, &user.id, Some(pending))?;
    enrolment(state, &user, secret.expose()).map(Some)
}

/// What an authenticator app is shown of `secret`: the key, the otpauth URI, its QR code.
fn enrolment(state: &AppState, user: &UserRow, secret: &[u8]) -> Result<TotpEnrolment> {
    let uri = totp::otpauth_uri(secret, &state.config.mfa.totp_issuer, &user.username)
        .ok_or_else(|| Error::Internal("cannot build the otpauth URI".into()))?;
    let svg = totp::qr_svg(&uri).ok_or_else(|| Error::Internal("cannot draw the QR code".into()))?;
    Ok(TotpEnrolment {
        secret_base32: Secret::new(totp::secret_base32(secret)),
        otpauth_uri: Secret::new(uri),
        qr_svg: Secret::new(svg),
    })
}

fn hash_codes(codes: &[Secret<String>]) -> Vec<String> {
    codes.iter().map(|c| sha256_hex(&totp::normalise_recovery_code(c.expose()))).collect()
}

/// Confirms enrolment with a current code: TOTP is on, and ten recovery codes are
/// returned (once; only their hashes are kept).
pub async fn confirm(state: &AppState, user_id: &str, code: &str, ctx: &RequestContext) -> Result<Vec<Secret<String>>> {
    let now = ctx.now;
    let user = user(state, user_id).await?;
    if user.totp_enabled {
        return Err(Error::Conflict { code: ErrorCode::TotpEnabled, description: "TOTP is already enabled".into() });
    }
    let pending = user.totp_pending_encrypted.as_deref().ok_or_else(|| Error::Conflict {
        // A state the account is not in, not a malformed request: 409.
        code: ErrorCode::NoPendingTotp,
        description: "start with POST /auth/totp/setup".into(),
    })?;
    let secret = decrypt_secret(state, &user.id, Some(pending))?;
    let step = totp::matching_step(secret.expose(), code, now, TOTP_SKEW_STEPS).ok_or_else(|| {
        Error::bad_request(ErrorCode::InvalidCode, "that code does not match; check the device's clock")
    })?;
    let codes = totp::generate_recovery_codes();
    users::set_totp(
        &state.db,
        &user.id,
        Some((pending.to_string(), step)),
        &hash_codes(&codes),
        now,
        event(now, &user.id, "totp.enable", &user.id, ctx),
    )
    .await?;
    Ok(codes)
}

/// Turns TOTP off; needs the password and a current code (or a recovery code).
pub async fn disable(
    state: &AppState,
    user_id: &str,
    password: &Secret<String>,
    factor: &SecondFactor,
    ctx: &RequestContext,
) -> Result<()> {
    let now = ctx.now;
    let user = user(state, user_id).await?;
    check_password(state, &user.username, password, ctx).await?;
    if !user.totp_enabled {
        return Err(Error::Conflict { code: ErrorCode::TotpDisabled, description: "TOTP is not enabled".into() });
    }
    // An account whose roles require a second factor keeps TOTP unless it has a passkey
    // (checked again under the user's lock, below).
    let keep_a_factor = passkeys::requires_second_factor(state, &user.id).await?;
    if keep_a_factor && !passkeys::available(state) {
        return Err(passkeys::last_factor());
    }
    verify_second_factor(state, &user, factor, ctx, None).await?;
    let audit = event(now, &user.id, "totp.disable", &user.id, ctx);
    if !users::disable_totp(&state.db, &user.id, keep_a_factor, now, audit).await? {
        return Err(passkeys::last_factor());
    }
    Ok(())
}

/// New recovery codes (the old ones stop working); needs the password.
pub async fn regenerate_recovery_codes(
    state: &AppState,
    user_id: &str,
    password: &Secret<String>,
    ctx: &RequestContext,
) -> Result<Vec<Secret<String>>> {
    let now = ctx.now;
    let user = user(state, user_id).await?;
    check_password(state, &user.username, password, ctx).await?;
    if !user.totp_enabled {
        return Err(Error::Conflict { code: ErrorCode::TotpDisabled, description: "TOTP is not enabled".into() });
    }
    let codes = totp::generate_recovery_codes();
    let txn_event = event(now, &user.id, "totp.recovery_codes", &user.id, ctx);
    let step = user.totp_last_step.unwrap_or(0);
    let secret = user.totp_secret_encrypted.clone().ok_or(Error::InvalidSecondFactor)?;
    users::set_totp(&state.db, &user.id, Some((secret, step)), &hash_codes(&codes), now, txn_event).await?;
    Ok(codes)
}

/// An admin removes a user's TOTP (lost device); audited with the admin as actor.
pub async fn admin_reset(state: &AppState, user_id: &str, by: &super::rbac::Grantor<'_>) -> Result<()> {
    let now = state.now();
    super::users::check_id(user_id)?;
    user(state, user_id).await?;
    super::users::check_may_manage(state, by, user_id, "totp.reset").await?;
    let ctx = RequestContext::internal(now);
    let audit = event(now, by.actor(), "totp.reset", user_id, &ctx);
    users::set_totp(&state.db, user_id, None, &[], now, audit).await?;
    Ok(())
}

/// The live login challenge an `mfa_token` names, with its (active) user.
async fn live_challenge(state: &AppState, mfa_token: &Secret<String>, now: i64) -> Result<(ChallengeRow, UserRow)> {
    let challenge = store::find_live_challenge(&state.db, &sha256_hex(mfa_token.expose()), now)
        .await?
        .ok_or_else(|| Error::InvalidToken("the mfa_token is invalid, expired or used; log in again".into()))?;
    let user = users::find_by_id(&state.db, &challenge.user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or(Error::InvalidCredentials)?;
    Ok((challenge, user))
}

/// `POST /auth/webauthn/login/start`: a usernameless passkey sign-in, or with an
/// `mfa_token` the passkey second factor of that password login.
pub async fn start_passkey_login(
    state: &AppState,
    mfa_token: Option<&Secret<String>>,
    ctx: &RequestContext,
) -> Result<passkeys::Ceremony> {
    match mfa_token {
        Some(token) => {
            let (_, user) = live_challenge(state, token, ctx.now).await?;
            passkeys::start_sign_in(state, Some(&user)).await
        }
        None => passkeys::start_sign_in(state, None).await,
    }
}

/// `POST /auth/webauthn/login/finish`: a session of the browser app, `amr` `swk user`
/// for a passkey alone, `pwd swk mfa` after a password (the `mfa_token` is spent, once).
pub async fn finish_passkey_login(
    state: &AppState,
    ceremony_id: &str,
    credential: serde_json::Value,
    mfa_token: Option<&Secret<String>>,
    ctx: &RequestContext,
) -> Result<IssuedTokens> {
    let Some(token) = mfa_token else {
        let done = passkeys::finish_sign_in(state, ceremony_id, None, credential, ctx).await?;
        let client = sessions::first_party_client(state, sessions::SPA_CLIENT_ID).await?;
        let scope = super::oauth::resolve_scope(&client, None)?;
        return sessions::start(state, &done.user, &client, &scope, passkeys::AMR_PASSKEY, ctx).await;
    };
    let (challenge, user) = live_challenge(state, token, ctx.now).await?;
    passkeys::finish_sign_in(state, ceremony_id, Some(&user.id), credential, ctx).await?;
    if !store::consume_challenge(&state.db, &challenge.id, ctx.now).await? {
        return Err(Error::InvalidToken("the mfa_token was already used; log in again".into()));
    }
    let client = sessions::first_party_client(state, &challenge.client_id).await?;
    let scope = super::oauth::resolve_scope(&client, None)?;
    sessions::start(state, &user, &client, &scope, passkeys::AMR_PASSWORD_AND_PASSKEY, ctx).await
}
