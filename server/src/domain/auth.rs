//! Password authentication, access-token minting and bearer-token verification.

use crate::security::Secret;
use crate::state::AppState;
use crate::store::TokenStore;
use crate::store::attempts;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::clients::ClientRow;
use crate::store::users::{self, Factor, UserRow};
use crate::tokens::{AccessClaims, Confirmation, TokenError};

use super::{Error, Result, new_id};

/// Where a request came from, for sessions and the audit log, and when: the clock is
/// read once per request, when the context is made, and every rule of the request
/// judges at that instant.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub now: i64,
    /// The thumbprint of the key the request's DPoP proof proved, once the proof has
    /// passed every check (`domain::dpop`); what it issues is bound to that key.
    pub dpop_jkt: Option<String>,
}

impl RequestContext {
    /// A change an operator makes (no client address), at `now`.
    pub fn internal(now: i64) -> Self {
        Self { ip: None, user_agent: None, now, dpop_jkt: None }
    }

    /// The key a session started by `client` in this request is bound to: a public
    /// client's proof key (RFC 9449 §5). A confidential client's refresh token is bound
    /// by its authentication already, and stays unbound.
    pub fn session_binding(&self, client: &ClientRow) -> Option<String> {
        (client.client_type == crate::store::entities::ClientType::Public).then(|| self.dpop_jkt.clone()).flatten()
    }
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
    /// OpenID Connect: issued by the code exchange when `openid` was granted.
    pub id_token: Option<String>,
    /// Whether the access token is bound to a DPoP key (`token_type` is then `DPoP`).
    pub dpop_bound: bool,
}

impl IssuedTokens {
    /// `token_type` of the answer (RFC 9449 §5: `DPoP` for a bound access token).
    pub fn token_type(&self) -> &'static str {
        if self.dpop_bound { "DPoP" } else { "Bearer" }
    }
}

/// Checks a username and password. The attempt is reserved in the database before the
/// hash is checked (see [`users::reserve_attempt`]), so a parallel burst gets no more
/// verifications than the lockout threshold, on any number of nodes. Unknown users,
/// locked accounts and refused reservations are verified against a dummy hash, so they
/// take as long as wrong passwords; disabled and locked accounts get the same generic
/// error (no account-state oracle).
pub async fn check_password(
    state: &AppState,
    username: &str,
    password: &Secret<String>,
    ctx: &RequestContext,
) -> Result<UserRow> {
    let normalized = super::users::login_name(username)?;
    check_username_limit(state, &normalized, ctx.now).await?;
    let row = users::find_by_username(&state.db, &normalized).await?;
    let now = ctx.now;
    let reservation = match &row {
        Some(user) => {
            let schedule = super::lockout::schedule(&state.config.lockout);
            users::reserve_attempt(&state.db, &user.id, Factor::Password, now, &schedule).await?
        }
        None => None,
    };
    // Always pay for one Argon2 verification, whatever the account's state.
    let hash = row.as_ref().filter(|_| reservation.is_some()).map(|r| r.password_hash.as_str());
    let matched = state.passwords.verify(password, hash).await?;
    if let Some(user) = row.as_ref().filter(|_| matched) {
        users::record_success(&state.db, &user.id, Factor::Password).await?;
    }
    let Err(refusal) = super::lockout::judge_password(row.as_ref(), reservation.is_some(), matched) else {
        let user = row.ok_or_else(|| Error::Internal("an accepted login has a user".into()))?;
        // Told only to whoever knows the password: it reveals nothing to anyone else.
        super::verification::check_may_sign_in(state, &user)?;
        return Ok(user);
    };
    if let (Some(user), Some(reserved)) = (&row, reservation)
        && !matched
    {
        audit_lockout(state, &user.id, Factor::Password, reserved, ctx).await?;
    }
    audit::record_alone(
        &state.db,
        NewAuditEvent {
            occurred_at: now,
            actor: row.as_ref().map_or_else(|| "anonymous".to_string(), |u| u.id.clone()),
            action: "login",
            target: Some(normalized),
            ip: ctx.ip.clone(),
            outcome: "failure",
            details: serde_json::json!({ "reason": refusal.as_str() }),
        },
    )
    .await?;
    Err(Error::InvalidCredentials)
}

/// The per-account bucket on password and TOTP attempts (any IP), kept in the database
/// so it holds once across all nodes, not once per node.
pub async fn check_username_limit(state: &AppState, normalized_username: &str, now: i64) -> Result<()> {
    let quota = state.config.rate_limits.username;
    let shape = attempts::Shape::per_minute(quota.per_minute, quota.burst);
    let key = format!("username:{normalized_username}");
    let verdict = attempts::take(&state.db, &key, now.saturating_mul(1000), shape).await?;
    verdict.map_err(|wait| {
        state.metrics.rate_limited.with_label_values(&["username"]).inc();
        Error::RateLimited { retry_after_secs: wait }
    })
}

/// Audits the lockout when a failed attempt's reservation engaged it.
pub async fn audit_lockout(
    state: &AppState,
    user_id: &str,
    factor: Factor,
    reserved: users::Reservation,
    ctx: &RequestContext,
) -> Result<()> {
    let Some(until) = reserved.locked_until else { return Ok(()) };
    let now = ctx.now;
    state.metrics.lockouts.inc();
    tracing::warn!(user_id, failures = reserved.failures, ?factor, "account locked after repeated failures");
    audit::record_alone(
        &state.db,
        NewAuditEvent {
            occurred_at: now,
            actor: "system".into(),
            action: "lockout",
            target: Some(user_id.to_string()),
            ip: ctx.ip.clone(),
            outcome: "locked",
            details: serde_json::json!({
                "factor": format!("{factor:?}").to_lowercase(),
                "failures": reserved.failures,
                "locked_for_secs": until - now,
            }),
        },
    )
    .await?;
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
    /// The DPoP key the token is bound to (`cnf.jkt`), if any.
    pub dpop_jkt: Option<&'a str>,
    /// The request's instant: `iat`, `nbf` and `exp` count from it.
    pub now: i64,
}

/// Signs an access token with the active key. Returns the token and its lifetime.
pub fn mint_access_token(state: &AppState, grant: AccessGrant<'_>) -> Result<(String, u64)> {
    let now = grant.now;
    let ttl = state.config.tokens.access_token_ttl.as_secs();
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
        cnf: grant.dpop_jkt.map(|jkt| Confirmation { jkt: jkt.to_string() }),
    };
    let token = claims.sign(&state.keys.current()).map_err(|e| Error::Internal(e.to_string()))?;
    Ok((token, ttl))
}

/// The audience of tokens issued to a client: its own configured audience, else ours
/// for a first-party client and the client's own id for any other — a third-party
/// client's tokens never carry ours, so they never open our API.
pub fn audience_for<'a>(state: &'a AppState, client: &'a ClientRow) -> &'a str {
    let ours = state.config.audience.as_str();
    match client.audience.as_deref() {
        Some(audience) if client.first_party || audience != ours => audience,
        _ if client.first_party => ours,
        _ => &client.client_id,
    }
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
    authenticate_for(state, token, &state.config.audience).await
}

/// [`authenticate_bearer`] for userinfo, which answers any client we issued a user's
/// token to (third-party tokens carry their client's audience, not ours). Tokens
/// without a session (services) are refused: they name no user.
pub async fn authenticate_userinfo(state: &AppState, token: &str) -> Result<Authenticated> {
    // The audience is read unverified only to be checked below with the signature.
    let audience = jsonwebtoken::dangerous::insecure_decode::<AccessClaims>(token)
        .map_err(|_| Error::InvalidToken("malformed token".into()))?
        .claims
        .aud;
    let authenticated = authenticate_for(state, token, &audience).await?;
    if authenticated.claims.sid.is_none() {
        return Err(Error::InvalidToken("this token does not represent a user".into()));
    }
    Ok(authenticated)
}

async fn authenticate_for(state: &AppState, token: &str, audience: &str) -> Result<Authenticated> {
    let now = state.now();
    let keys = state.keys.current();
    let claims = AccessClaims::verify(
        token,
        &keys,
        &state.config.issuer,
        audience,
        now,
        state.config.tokens.clock_skew.as_secs() as i64,
    )
    .map_err(|e: TokenError| Error::InvalidToken(e.to_string()))?;
    let Some(sid) = &claims.sid else {
        return Ok(Authenticated { claims, user: None });
    };
    let Some((session, user)) = state.tokens.live_session_with_user(sid, now).await? else {
        return Err(Error::InvalidToken("the session of this token has ended".into()));
    };
    if session.user_id != claims.sub {
        return Err(Error::InvalidToken("the token does not match its session".into()));
    }
    Ok(Authenticated { claims, user })
}
