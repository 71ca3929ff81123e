//! Password authentication, access-token minting and bearer-token verification.

use crate::security::Secret;
use crate::state::AppState;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::clients::ClientRow;
use crate::store::users::{self, Factor, STATUS_ACTIVE, UserRow};
use crate::tokens::{AccessClaims, TokenError};

use super::{Error, Result, new_id};

/// Where a request came from, for sessions and the audit log.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Tokens handed to a client. The refresh token is wrapped so it cannot be logged.
// No Debug: it carries tokens.
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    pub refresh_token: Option<Secret<String>>,
    /// When the refresh token stops working if unused (for the cookie's Max-Age).
    pub refresh_expires_at: Option<i64>,
    pub session_id: Option<String>,
}

/// Checks a username and password. Unknown users are verified against a dummy hash so
/// they take as long as wrong passwords; disabled and locked accounts get the same
/// generic error (no account-state oracle). Failures count towards the account's
/// lockout in the database, so it holds across nodes.
pub async fn check_password(
    state: &AppState,
    username: &str,
    password: &Secret<String>,
    ctx: &RequestContext,
) -> Result<UserRow> {
    let normalized = username.trim().to_lowercase();
    check_username_limit(state, &normalized)?;
    let row = users::find_by_username(&state.db, &normalized).await?;
    let now = state.now();
    let locked = row.as_ref().is_some_and(|u| u.locked_until.is_some_and(|until| until > now));
    // Always pay for one Argon2 verification, whatever the account's state.
    let matched = state.passwords.verify(password, row.as_ref().map(|r| r.password_hash.as_str())).await?;
    match row {
        Some(user) if matched && !locked && user.status == STATUS_ACTIVE => {
            if user.failed_logins != 0 || user.locked_until.is_some() {
                users::record_success(&state.db, &user.id, Factor::Password).await?;
            }
            Ok(user)
        }
        row => {
            let reason = match &row {
                None => "unknown_user",
                Some(_) if locked => "locked",
                Some(user) if user.status != STATUS_ACTIVE => "account_disabled",
                Some(_) if matched => "account_disabled",
                Some(_) => "wrong_password",
            };
            if let Some(user) = row.as_ref().filter(|_| !locked && !matched) {
                record_failure(state, user, Factor::Password, ctx).await?;
            }
            audit::record(
                &state.db,
                NewAuditEvent {
                    occurred_at: now,
                    actor: row.as_ref().map_or_else(|| "anonymous".to_string(), |u| u.id.clone()),
                    action: "login",
                    target: Some(normalized),
                    ip: ctx.ip.clone(),
                    outcome: "failure",
                    details: serde_json::json!({ "reason": reason }),
                },
            )
            .await?;
            Err(Error::InvalidCredentials)
        }
    }
}

/// The per-account bucket on password and TOTP attempts (any IP).
pub fn check_username_limit(state: &AppState, normalized_username: &str) -> Result<()> {
    state.limits.check_username(normalized_username).map_err(|wait| {
        state.metrics.rate_limited.with_label_values(&["username"]).inc();
        Error::RateLimited { retry_after_secs: wait }
    })
}

/// Counts a failed attempt and audits the lockout when it engages.
pub async fn record_failure(state: &AppState, user: &UserRow, factor: Factor, ctx: &RequestContext) -> Result<()> {
    let now = state.now();
    let (failures, locked_until) =
        users::record_failure(&state.db, &user.id, factor, now, state.config.lockout).await?;
    if let Some(until) = locked_until {
        state.metrics.lockouts.inc();
        tracing::warn!(user_id = %user.id, failures, ?factor, "account locked after repeated failures");
        audit::record(
            &state.db,
            NewAuditEvent {
                occurred_at: now,
                actor: "system".into(),
                action: "lockout",
                target: Some(user.id.clone()),
                ip: ctx.ip.clone(),
                outcome: "locked",
                details: serde_json::json!({
                    "factor": format!("{factor:?}").to_lowercase(), "failures": failures, "locked_for_secs": until - now,
                }),
            },
        )
        .await?;
    }
    Ok(())
}

/// What goes into an access token besides the fixed claims.
pub struct AccessGrant<'a> {
    pub subject: &'a str,
    pub client_id: &'a str,
    pub audience: &'a str,
    pub scope: &'a str,
    pub roles: Vec<String>,
    pub session_id: Option<&'a str>,
    pub auth_time: Option<i64>,
    pub amr: Vec<String>,
}

/// Signs an access token with the active key. Returns the token and its lifetime.
pub fn mint_access_token(state: &AppState, grant: AccessGrant<'_>) -> Result<(String, u64)> {
    let now = state.now();
    let ttl = state.config.access_token_ttl.as_secs();
    let claims = AccessClaims {
        iss: state.config.issuer.clone(),
        sub: grant.subject.to_string(),
        aud: grant.audience.to_string(),
        exp: now + ttl as i64,
        iat: now,
        nbf: now,
        jti: new_id(),
        client_id: grant.client_id.to_string(),
        scope: grant.scope.to_string(),
        roles: grant.roles,
        sid: grant.session_id.map(str::to_string),
        auth_time: grant.auth_time,
        amr: grant.amr,
    };
    let token = claims.sign(&state.keys.current()).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((token, ttl))
}

/// The audience of tokens issued to a client: its own configured audience, or ours.
pub fn audience_for<'a>(state: &'a AppState, client: &'a ClientRow) -> &'a str {
    client.audience.as_deref().unwrap_or(&state.config.audience)
}

/// A verified bearer token and, for user tokens, the user as read with the session.
pub struct Authenticated {
    pub claims: AccessClaims,
    pub user: Option<UserRow>,
}

impl std::ops::Deref for Authenticated {
    type Target = AccessClaims;

    fn deref(&self) -> &AccessClaims {
        &self.claims
    }
}

/// Verifies a bearer token presented to our own API: signature, `typ`, issuer, our
/// audience and time, and then that its session is still live — one primary-key read
/// that also brings the user along, so handlers need not read it again. Logout and
/// revocation therefore take effect at once here; resource servers verifying offline
/// accept the token until `exp`.
pub async fn authenticate_bearer(state: &AppState, token: &str) -> Result<Authenticated> {
    let keys = state.keys.current();
    let claims = AccessClaims::verify(
        token,
        &keys,
        &state.config.issuer,
        &state.config.audience,
        state.now(),
        state.config.clock_skew.as_secs() as i64,
    )
    .map_err(|e: TokenError| Error::InvalidToken(e.to_string()))?;
    let Some(sid) = &claims.sid else {
        return Ok(Authenticated { claims, user: None });
    };
    let found = state.hot().session_with_user(sid).await?;
    let Some((session, user)) = found.filter(|(s, _)| s.revoked_at.is_none() && s.absolute_expires_at > state.now())
    else {
        return Err(Error::InvalidToken("the session of this token has ended".into()));
    };
    if session.user_id != claims.sub {
        return Err(Error::InvalidToken("the token does not match its session".into()));
    }
    Ok(Authenticated { claims, user })
}
