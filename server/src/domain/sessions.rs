//! Sessions (token families) and refresh-token rotation with reuse detection.
//!
//! - Using a refresh token marks it `rotated` and issues its child in the same session;
//!   the parent row keeps the child sealed under a key only the parent's holder can
//!   derive ([`crate::security::sealed_child`]).
//! - Presenting a `rotated` token again within `refresh_grace` of its rotation, while its
//!   child is unused: the answer to the first request was lost (a dropped connection, a
//!   killed server, a closed tab), so the same child is answered again with a fresh
//!   access token — nothing new is minted on the refresh side, the family stays linear.
//! - Within the window but with the child already used: a benign race (two tabs sharing
//!   a cookie): [`Error::RefreshRaced`], nothing revoked, nothing minted. After the
//!   window it is reuse: the whole session is revoked and audited.
//! - A refresh never extends a session beyond its absolute lifetime.

use crate::security::{Secret, constant_time_eq, generate_token, sealed_child, sha256_hex};
use crate::state::AppState;
use crate::store::audit::NewAuditEvent;
use crate::store::clients::ClientRow;
use crate::store::entities::{TokenState, UserStatus};
use crate::store::sessions::{self as store, NewRefreshToken, NewSession, Notify, RefreshTokenRow, SessionRow};
use crate::store::users::{self, UserRow};
use crate::store::{RefreshAttempt, RefreshRead, RotateOutcome, Rotation, TokenStore};
use crate::tokens::REFRESH_TOKEN_PREFIX;

use super::auth::{AccessGrant, IssuedTokens, RequestContext, audience_for, mint_access_token};
use super::{Error, Result, new_id};

/// Longest user agent kept with a session.
const USER_AGENT_MAX: usize = 256;

pub const REASON_LOGOUT: &str = "logout";
pub const REASON_LOGOUT_ALL: &str = "logout_all";
pub const REASON_REUSE: &str = "refresh_token_reuse";
pub const REASON_USER_REVOKED: &str = "revoked_by_user";
pub const REASON_TOKEN_REVOKED: &str = "token_revoked";
pub const REASON_ADMIN_REVOKED: &str = "revoked_by_admin";
pub const REASON_CODE_REUSE: &str = "authorization_code_reuse";

/// The public first-party client behind the `/auth` cookie endpoints.
pub const SPA_CLIENT_ID: &str = "spa";

/// Loads a client the server itself relies on (seeded by the migrations).
pub async fn first_party_client(state: &AppState, client_id: &str) -> Result<ClientRow> {
    state
        .tokens
        .client(client_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("first-party client {client_id:?} is missing")))
}

/// Username + password login for the browser app: a new session of the `spa` client,
/// or a challenge when the account has TOTP.
pub async fn login(
    state: &AppState,
    username: &str,
    password: &Secret<String>,
    ctx: &RequestContext,
) -> Result<super::mfa::LoginOutcome> {
    let client = first_party_client(state, SPA_CLIENT_ID).await?;
    let user = super::auth::check_password(state, username, password, ctx).await?;
    let scope = super::oauth::resolve_scope(&client, None)?;
    super::mfa::after_password(state, &user, &client, &scope, ctx).await
}

/// Starts a session for an authenticated user and issues its first tokens.
pub async fn start(
    state: &AppState,
    user: &UserRow,
    client: &ClientRow,
    scope: &str,
    amr: &[&str],
    ctx: &RequestContext,
) -> Result<IssuedTokens> {
    super::dpop::check_client_demand(client, ctx)?;
    let now = ctx.now;
    let config = &state.config;
    let absolute_expires_at = now + config.tokens.session_absolute_lifetime.as_secs() as i64;
    let idle_expires_at = (now + config.tokens.session_idle_timeout.as_secs() as i64).min(absolute_expires_at);
    let session_id = new_id();
    let refresh_token = generate_token(REFRESH_TOKEN_PREFIX);
    let amr_text = amr.join(" ");
    store::create(
        &state.db,
        NewSession {
            id: session_id.clone(),
            user_id: user.id.clone(),
            client_id: client.client_id.clone(),
            now,
            idle_expires_at,
            absolute_expires_at,
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.as_ref().map(|ua| ua.chars().take(USER_AGENT_MAX).collect()),
            amr: amr_text.clone(),
            auth_time: now,
            scope: scope.to_string(),
            sso_session_id: None,
            dpop_jkt: ctx.session_binding(client),
        },
        NewRefreshToken {
            id: new_id(),
            parent_id: None,
            token_hash: sha256_hex(refresh_token.expose()),
            expires_at: idle_expires_at,
        },
        NewAuditEvent {
            occurred_at: now,
            actor: user.id.clone(),
            action: "login",
            target: Some(session_id.clone()),
            ip: ctx.ip.clone(),
            outcome: "success",
            details: serde_json::json!({ "client_id": client.client_id, "amr": amr }),
        },
    )
    .await?;
    let roles = state.tokens.user_role_names(&user.id).await?;
    state.metrics.tokens_issued.with_label_values(&["login"]).inc();
    let grant = SessionGrant {
        user_id: &user.id,
        session_id: &session_id,
        scope,
        auth_time: now,
        amr: amr.iter().map(|s| s.to_string()).collect(),
        roles,
        dpop_jkt: ctx.dpop_jkt.as_deref(),
    };
    answer_for_session(state, client, grant, Some((refresh_token, idle_expires_at)), now)
}

/// What to do with a presented refresh token, judged from what was read and `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Active, unexpired, its session live and its user active: rotate it.
    Rotate,
    /// Rotated less than the grace window ago and its child not used yet: answer the
    /// same child again (the first answer was lost), with a fresh access token.
    Replay,
    /// Rotated less than the grace window ago and its child already used (two tabs
    /// racing on one cookie): answer 409, mint nothing, revoke nothing.
    Raced,
    /// Rotated longer ago: a stolen or replayed token. Revoke the whole session.
    Reuse,
    /// Another client's, revoked, expired, or its session or user is no more.
    Refuse,
}

impl SessionRow {
    /// Not revoked, and before both its idle and its absolute deadline.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.idle_expires_at > now && self.absolute_expires_at > now
    }
}

impl crate::store::authorization::SsoSessionRow {
    /// A browser login session: the same rule as a token session's.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.idle_expires_at > now && self.absolute_expires_at > now
    }
}

/// The refresh rule: `client_id` presented the token `read` found, at `now`; `child`
/// is the token it was rotated into, if it was.
pub fn judge_refresh(
    read: &RefreshRead,
    child: Option<&RefreshTokenRow>,
    client_id: &str,
    now: i64,
    grace_secs: i64,
) -> Verdict {
    if read.session.client_id != client_id {
        return Verdict::Refuse;
    }
    let user_active = read.user.as_ref().is_some_and(|u| u.status == UserStatus::Active);
    if read.token.state != TokenState::Active {
        return judge_presented_again(&read.token, &read.session, child, user_active, now, grace_secs);
    }
    if read.session.is_live(now) && read.token.expires_at > now && user_active {
        Verdict::Rotate
    } else {
        Verdict::Refuse
    }
}

/// A token that is no longer active came back (read again after losing the
/// compare-and-swap, or presented after its rotation), with `child` what it was
/// rotated into.
pub fn judge_presented_again(
    token: &RefreshTokenRow,
    session: &SessionRow,
    child: Option<&RefreshTokenRow>,
    user_active: bool,
    now: i64,
    grace_secs: i64,
) -> Verdict {
    if token.state != TokenState::Rotated || session.revoked_at.is_some() {
        return Verdict::Refuse;
    }
    let rotated_at = token.used_at.unwrap_or(token.created_at);
    if now - rotated_at >= grace_secs {
        return Verdict::Reuse;
    }
    let child_unused = child.is_some_and(|c| c.state == TokenState::Active && c.expires_at > now);
    if child_unused && token.child_sealed.is_some() && session.is_live(now) && user_active {
        Verdict::Replay
    } else {
        Verdict::Raced
    }
}

/// Exchanges a refresh token for a new access token and a rotated refresh token.
pub async fn refresh(
    state: &AppState,
    client: &ClientRow,
    presented: &Secret<String>,
    ctx: &RequestContext,
) -> Result<IssuedTokens> {
    super::dpop::check_client_demand(client, ctx)?;
    let now = ctx.now;
    let grace_secs = state.config.tokens.refresh_grace.as_secs() as i64;
    // The child is made up front, so an engine that can (PostgreSQL) reads and rotates
    // in one round trip when the read passes the rule below; otherwise nothing of it
    // was stored, and the refresh is judged (and rotated) as before.
    let child_token = generate_token(REFRESH_TOKEN_PREFIX);
    let attempt = RefreshAttempt {
        client_id: client.client_id.clone(),
        now,
        idle_timeout_secs: state.config.tokens.session_idle_timeout.as_secs() as i64,
        child_id: new_id(),
        child_hash: sha256_hex(child_token.expose()),
        child_sealed: sealed_child::seal(presented, &child_token),
        proof_jkt: ctx.dpop_jkt.clone(),
        binds_dpop_jkt: ctx.session_binding(client),
        mfa_roles: state.config.mfa.require_for_roles.clone(),
        strong_amr: super::passkeys::SATISFIES_POLICY.iter().map(|amr| amr.to_string()).collect(),
    };
    let Some((read, rotated)) = state.tokens.read_and_rotate(&sha256_hex(presented.expose()), &attempt).await? else {
        return Err(Error::invalid_refresh_token());
    };
    if rotated {
        let idle_expires_at = (now + attempt.idle_timeout_secs).min(read.session.absolute_expires_at);
        state.metrics.tokens_issued.with_label_values(&["refresh_token"]).inc();
        return issue(state, client, &read, child_token, idle_expires_at, ctx);
    }
    // Only a rotated token has a child; the hot path (an active token) skips the read.
    let child = match read.token.state {
        TokenState::Rotated => state.tokens.child_of(&read.token.id).await?,
        _ => None,
    };
    let verdict = judge_refresh(&read, child.as_ref(), &client.client_id, now, grace_secs);
    // A bound session answers only its key's holder; reuse is judged (and revokes)
    // whoever presents the token.
    if matches!(verdict, Verdict::Rotate | Verdict::Replay) {
        check_binding(&read.session, ctx)?;
    }
    match verdict {
        Verdict::Rotate => rotate(state, client, presented, read, now, ctx).await,
        Verdict::Replay => replay(state, client, presented, &read, child, now, ctx).await,
        verdict => Err(answer_refusal(state, verdict, &read.token, &read.session, now, ctx).await?),
    }
}

/// A session bound to a DPoP key (RFC 9449 §5) is refreshed only with a proof by that
/// key; nothing is rotated or revoked when it is missing or another key's.
pub fn check_binding(session: &SessionRow, ctx: &RequestContext) -> Result<()> {
    let Some(bound) = session.dpop_jkt.as_deref() else { return Ok(()) };
    match ctx.dpop_jkt.as_deref() {
        Some(proved) if constant_time_eq(proved.as_bytes(), bound.as_bytes()) => Ok(()),
        Some(_) => Err(Error::oauth(
            super::ErrorCode::InvalidGrant,
            "the refresh token is bound to another DPoP key than the proof's",
        )),
        None => Err(Error::oauth(
            super::ErrorCode::InvalidGrant,
            "the refresh token is bound to a DPoP key: send a DPoP proof by that key",
        )),
    }
}

async fn rotate(
    state: &AppState,
    client: &ClientRow,
    presented: &Secret<String>,
    read: RefreshRead,
    now: i64,
    ctx: &RequestContext,
) -> Result<IssuedTokens> {
    if read.user.is_none() {
        return Err(Error::invalid_refresh_token());
    }
    let (token, session) = (&read.token, &read.session);
    // A session signed in with the password alone, before `mfa.require_for_roles` (or
    // the role) applied to its user, does not live on: the user signs in again.
    if !super::passkeys::amr_meets_policy(&session.amr)
        && super::passkeys::roles_require_second_factor(state, &read.roles)
    {
        return Err(Error::oauth(
            super::ErrorCode::InvalidGrant,
            "this account's roles now require a second factor: sign in again",
        ));
    }
    let idle_expires_at =
        (now + state.config.tokens.session_idle_timeout.as_secs() as i64).min(session.absolute_expires_at);
    let child_token = generate_token(REFRESH_TOKEN_PREFIX);
    let rotation = Rotation {
        token_id: token.id.clone(),
        session_id: session.id.clone(),
        now,
        idle_expires_at,
        child_id: new_id(),
        child_hash: sha256_hex(child_token.expose()),
        child_expires_at: idle_expires_at,
        child_sealed: sealed_child::seal(presented, &child_token),
        // RFC 9449 §5: a public client's refresh token is bound once it comes with a
        // proof (a session begun before the client used DPoP becomes bound here).
        binds_dpop_jkt: session.dpop_jkt.is_none().then(|| ctx.session_binding(client)).flatten(),
    };
    match state.tokens.rotate(&rotation).await? {
        RotateOutcome::Rotated => {}
        RotateOutcome::SessionNotActive => return Err(Error::invalid_refresh_token()),
        RotateOutcome::TokenNotActive => {
            // A concurrent request won the compare-and-swap. Re-read the token and judge
            // it as the loser would have seen it (normally: within the grace window).
            let Some((token, session)) = state.tokens.token_with_session(&token.token_hash).await? else {
                return Err(Error::invalid_refresh_token());
            };
            let child = state.tokens.child_of(&token.id).await?;
            let grace_secs = state.config.tokens.refresh_grace.as_secs() as i64;
            // The user was active when this request read it (the verdict was Rotate).
            let verdict = judge_presented_again(&token, &session, child.as_ref(), true, now, grace_secs);
            if verdict == Verdict::Replay {
                let read = RefreshRead { token, session, ..read };
                return replay(state, client, presented, &read, child, now, ctx).await;
            }
            return Err(answer_refusal(state, verdict, &token, &session, now, ctx).await?);
        }
    }
    state.metrics.tokens_issued.with_label_values(&["refresh_token"]).inc();
    issue(state, client, &read, child_token, idle_expires_at, ctx)
}

/// The answer to a refresh: a fresh access token beside `refresh_token`.
fn issue(
    state: &AppState,
    client: &ClientRow,
    RefreshRead { session, user, roles, .. }: &RefreshRead,
    refresh_token: Secret<String>,
    refresh_expires_at: i64,
    ctx: &RequestContext,
) -> Result<IssuedTokens> {
    let Some(user) = user else { return Err(Error::invalid_refresh_token()) };
    let grant = SessionGrant {
        user_id: &user.id,
        session_id: &session.id,
        scope: &session.scope,
        auth_time: session.auth_time,
        amr: session.amr.split_ascii_whitespace().map(str::to_string).collect(),
        roles: roles.clone(),
        dpop_jkt: ctx.dpop_jkt.as_deref(),
    };
    answer_for_session(state, client, grant, Some((refresh_token, refresh_expires_at)), ctx.now)
}

/// What an access token minted for a user's session says about it.
pub(super) struct SessionGrant<'a> {
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub scope: &'a str,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub roles: Vec<String>,
    /// The DPoP key the access token is bound to: the request's proof key.
    pub dpop_jkt: Option<&'a str>,
}

/// The answer for a user's session at `now`: a fresh access token beside its
/// `refresh_token` (the first one at login, the child after a rotation; none for a
/// code-flow session that may not refresh). The roles are those the client may see.
pub(super) fn answer_for_session(
    state: &AppState,
    client: &ClientRow,
    grant: SessionGrant<'_>,
    refresh: Option<(Secret<String>, i64)>,
    now: i64,
) -> Result<IssuedTokens> {
    let (access_token, expires_in) = mint_access_token(
        state,
        AccessGrant {
            subject: grant.user_id,
            client_id: &client.client_id,
            audience: audience_for(state, client),
            scope: grant.scope,
            roles: super::signin::visible_roles(client, grant.roles),
            session_id: Some(grant.session_id),
            auth_time: Some(grant.auth_time),
            amr: grant.amr,
            dpop_jkt: grant.dpop_jkt,
            now,
        },
    )?;
    Ok(IssuedTokens {
        access_token,
        expires_in,
        scope: grant.scope.to_string(),
        refresh_expires_at: refresh.as_ref().map(|(_, at)| *at),
        refresh_token: refresh.map(|(token, _)| token),
        session_id: Some(grant.session_id.to_string()),
        id_token: None,
        dpop_bound: grant.dpop_jkt.is_some(),
    })
}

/// [`Verdict::Replay`]: the child the parent `presented` was rotated into, opened with
/// the parent, answered again. A child that does not open (or does not hash to the
/// stored child) is answered as a race: nothing is minted either way.
async fn replay(
    state: &AppState,
    client: &ClientRow,
    presented: &Secret<String>,
    read: &RefreshRead,
    child: Option<RefreshTokenRow>,
    now: i64,
    ctx: &RequestContext,
) -> Result<IssuedTokens> {
    let opened = child.as_ref().zip(read.token.child_sealed.as_deref()).and_then(|(child, sealed)| {
        let token = sealed_child::open(presented, sealed)?;
        constant_time_eq(sha256_hex(token.expose()).as_bytes(), child.token_hash.as_bytes()).then_some(token)
    });
    let (Some(child), Some(child_token)) = (child, opened) else {
        return Err(answer_refusal(state, Verdict::Raced, &read.token, &read.session, now, ctx).await?);
    };
    state.metrics.tokens_issued.with_label_values(&["refresh_token"]).inc();
    state.metrics.refresh_replayed.inc();
    tracing::info!(session_id = %read.session.id, "refresh answered again with the same child (lost answer)");
    issue(state, client, read, child_token, child.expires_at, ctx)
}

/// The error for a verdict other than [`Verdict::Rotate`]; on [`Verdict::Reuse`] it
/// first revokes the session (once, audited, however many requests found the reuse).
async fn answer_refusal(
    state: &AppState,
    verdict: Verdict,
    token: &RefreshTokenRow,
    session: &SessionRow,
    now: i64,
    ctx: &RequestContext,
) -> Result<Error> {
    match verdict {
        Verdict::Raced => return Ok(Error::RefreshRaced),
        Verdict::Reuse => {}
        Verdict::Rotate | Verdict::Replay | Verdict::Refuse => return Ok(Error::invalid_refresh_token()),
    }
    // Reuse ends this token family only, and tells its relying party.
    let revoked_now = store::revoke(
        &state.db,
        &session.id,
        REASON_REUSE,
        now,
        Notify::RelyingParty,
        Some(NewAuditEvent {
            occurred_at: now,
            actor: session.user_id.clone(),
            action: "refresh_token.reuse",
            target: Some(session.id.clone()),
            ip: ctx.ip.clone(),
            outcome: "session_revoked",
            details: serde_json::json!({ "token_id": token.id, "client_id": session.client_id }),
        }),
    )
    .await?;
    if revoked_now {
        state.metrics.refresh_reuse.inc();
        tracing::warn!(session_id = %session.id, user_id = %session.user_id, "refresh token reuse: session revoked");
    }
    Ok(Error::invalid_refresh_token())
}

/// Revokes the session a refresh token belongs to, whatever the token's state, at its
/// client's own request (so the client is not sent a logout token about it).
/// Unknown tokens, and tokens of another client than `client_id`, are ignored (logout
/// is idempotent and tells nothing about other clients' tokens).
pub async fn revoke_by_refresh_token(
    state: &AppState,
    presented: &Secret<String>,
    client_id: Option<&str>,
    reason: &str,
    ctx: &RequestContext,
) -> Result<()> {
    let hash = sha256_hex(presented.expose());
    let Some((_, session)) = state.tokens.token_with_session(&hash).await? else {
        return Ok(());
    };
    if client_id.is_some_and(|c| c != session.client_id) {
        return Ok(());
    }
    revoke_session(state, &session, reason, Notify::Nobody, ctx).await
}

/// Revokes a session, audited; `notify` says whether its relying party is sent a
/// logout token (not when it asked for the revocation itself).
pub async fn revoke_session(
    state: &AppState,
    session: &SessionRow,
    reason: &str,
    notify: Notify,
    ctx: &RequestContext,
) -> Result<()> {
    let now = ctx.now;
    store::revoke(
        &state.db,
        &session.id,
        reason,
        now,
        notify,
        Some(NewAuditEvent {
            occurred_at: now,
            actor: session.user_id.clone(),
            action: "session.revoke",
            target: Some(session.id.clone()),
            ip: ctx.ip.clone(),
            outcome: "success",
            details: serde_json::json!({ "reason": reason }),
        }),
    )
    .await?;
    Ok(())
}

/// Revokes a session by id on behalf of `user_id`, who must own it.
pub async fn revoke_own(state: &AppState, user_id: &str, session_id: &str, ctx: &RequestContext) -> Result<()> {
    let session = store::find_session(&state.db, session_id)
        .await?
        .filter(|s| s.user_id == user_id && s.is_live(ctx.now))
        .ok_or(Error::NotFound("session"))?;
    revoke_session(state, &session, REASON_USER_REVOKED, Notify::RelyingParty, ctx).await
}

pub async fn revoke_all(state: &AppState, user_id: &str, reason: &str, ctx: &RequestContext) -> Result<u64> {
    let now = ctx.now;
    Ok(store::revoke_all_for_user(
        &state.db,
        user_id,
        reason,
        now,
        Some(NewAuditEvent {
            occurred_at: now,
            actor: user_id.to_string(),
            action: "session.revoke_all",
            target: Some(user_id.to_string()),
            ip: ctx.ip.clone(),
            outcome: "success",
            details: serde_json::json!({ "reason": reason }),
        }),
    )
    .await?)
}

pub async fn list_live(state: &AppState, user_id: &str) -> Result<Vec<SessionRow>> {
    Ok(store::list_live_for_user(&state.db, user_id, state.now()).await?)
}

/// A live session with its user's name, for the admin list.
#[derive(Debug, Clone)]
pub struct SessionWithUser {
    pub row: SessionRow,
    pub username: String,
}

pub async fn admin_list(
    state: &AppState,
    filter: &store::SessionFilter,
    page: crate::store::Page,
) -> Result<(Vec<SessionWithUser>, u64)> {
    if let Some(user_id) = &filter.user_id {
        super::users::check_id(user_id)?;
    }
    let (rows, total) = store::list_live(&state.db, filter, state.now(), page).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.user_id.clone()).collect();
    let names = users::usernames_of(&state.db, &ids).await?;
    let items = rows
        .into_iter()
        .map(|row| {
            let username = names.get(&row.user_id).cloned().unwrap_or_default();
            SessionWithUser { row, username }
        })
        .collect();
    Ok((items, total))
}

/// An admin revokes any live session.
pub async fn admin_revoke(state: &AppState, session_id: &str, actor: &str) -> Result<()> {
    super::users::check_id(session_id)?;
    let now = state.now();
    let session = store::find_session(&state.db, session_id)
        .await?
        .filter(|s| s.is_live(now))
        .ok_or(Error::NotFound("session"))?;
    store::revoke(
        &state.db,
        &session.id,
        REASON_ADMIN_REVOKED,
        now,
        Notify::RelyingParty,
        Some(NewAuditEvent {
            occurred_at: now,
            actor: actor.to_string(),
            action: "session.revoke",
            target: Some(session.id.clone()),
            ip: None,
            outcome: "success",
            details: serde_json::json!({ "reason": REASON_ADMIN_REVOKED, "user_id": session.user_id }),
        }),
    )
    .await?;
    Ok(())
}

/// An admin revokes every session of a user.
pub async fn admin_revoke_all(state: &AppState, user_id: &str, actor: &str) -> Result<u64> {
    super::users::check_id(user_id)?;
    if users::find_by_id(&state.db, user_id).await?.is_none() {
        return Err(Error::NotFound("user"));
    }
    let now = state.now();
    Ok(store::revoke_all_for_user(
        &state.db,
        user_id,
        REASON_ADMIN_REVOKED,
        now,
        Some(NewAuditEvent {
            occurred_at: now,
            actor: actor.to_string(),
            action: "session.revoke_all",
            target: Some(user_id.to_string()),
            ip: None,
            outcome: "success",
            details: serde_json::json!({ "reason": REASON_ADMIN_REVOKED }),
        }),
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const GRACE: i64 = 10;

    fn session() -> SessionRow {
        SessionRow {
            id: "s1".into(),
            user_id: "u1".into(),
            client_id: "spa".into(),
            created_at: NOW - 3600,
            last_used_at: NOW - 60,
            idle_expires_at: NOW + 600,
            absolute_expires_at: NOW + 3600,
            revoked_at: None,
            revoked_reason: None,
            ip: None,
            user_agent: None,
            amr: "pwd".into(),
            auth_time: NOW - 3600,
            scope: "openid".into(),
            sso_session_id: None,
            dpop_jkt: None,
        }
    }

    fn token(state: TokenState, used_at: Option<i64>) -> RefreshTokenRow {
        RefreshTokenRow {
            id: "t1".into(),
            session_id: "s1".into(),
            parent_id: None,
            token_hash: "h".into(),
            state,
            created_at: NOW - 60,
            used_at,
            expires_at: NOW + 600,
            child_sealed: None,
        }
    }

    /// A rotated parent (its child sealed on it) and its child in `child_state`.
    fn rotated_with_child(used_at: i64, child_state: TokenState) -> (RefreshTokenRow, RefreshTokenRow) {
        let mut parent = token(TokenState::Rotated, Some(used_at));
        parent.child_sealed = Some("sealed".into());
        let mut child = token(child_state, None);
        child.id = "t2".into();
        child.parent_id = Some("t1".into());
        (parent, child)
    }

    fn user(status: UserStatus) -> UserRow {
        crate::store::entities::users::test_user(status)
    }

    fn read(token: RefreshTokenRow, session: SessionRow, user: Option<UserRow>) -> RefreshRead {
        RefreshRead { token, session, user, roles: vec![] }
    }

    fn judge(read: &RefreshRead) -> Verdict {
        judge_refresh(read, None, "spa", NOW, GRACE)
    }

    #[test]
    fn an_active_token_of_a_live_session_rotates() {
        assert_eq!(
            judge(&read(token(TokenState::Active, None), session(), Some(user(UserStatus::Active)))),
            Verdict::Rotate
        );
    }

    #[test]
    fn another_clients_token_is_refused_whatever_its_state() {
        for state in [TokenState::Active, TokenState::Rotated] {
            let read = read(token(state, Some(NOW - 100)), session(), Some(user(UserStatus::Active)));
            assert_eq!(judge_refresh(&read, None, "other", NOW, GRACE), Verdict::Refuse, "{state:?}");
        }
    }

    #[test]
    fn an_active_token_is_refused_when_anything_around_it_ended() {
        let mut idle = session();
        idle.idle_expires_at = NOW;
        let mut absolute = session();
        absolute.absolute_expires_at = NOW;
        let mut revoked = session();
        revoked.revoked_at = Some(NOW - 1);
        for (what, session) in [("idle", idle), ("absolute", absolute), ("revoked", revoked)] {
            let read = read(token(TokenState::Active, None), session, Some(user(UserStatus::Active)));
            assert_eq!(judge(&read), Verdict::Refuse, "{what}");
        }
        let mut expired = token(TokenState::Active, None);
        expired.expires_at = NOW;
        assert_eq!(judge(&read(expired, session(), Some(user(UserStatus::Active)))), Verdict::Refuse, "token expired");
        assert_eq!(judge(&read(token(TokenState::Active, None), session(), None)), Verdict::Refuse, "user deleted");
        let disabled = Some(user(UserStatus::Disabled));
        assert_eq!(
            judge(&read(token(TokenState::Active, None), session(), disabled)),
            Verdict::Refuse,
            "user disabled"
        );
    }

    #[test]
    fn a_rotated_token_is_a_race_inside_the_grace_window_and_reuse_after_it() {
        let active = Some(user(UserStatus::Active));
        let at = |used_at| judge(&read(token(TokenState::Rotated, Some(used_at)), session(), active.clone()));
        assert_eq!(at(NOW), Verdict::Raced);
        assert_eq!(at(NOW - GRACE + 1), Verdict::Raced);
        assert_eq!(at(NOW - GRACE), Verdict::Reuse);
        // Reuse is judged even when the session has expired meanwhile (revoking it then
        // costs nothing and records the theft), but not once it was revoked.
        let mut expired = session();
        expired.absolute_expires_at = NOW - 1;
        assert_eq!(judge(&read(token(TokenState::Rotated, Some(NOW - 100)), expired, None)), Verdict::Reuse);
        let mut revoked = session();
        revoked.revoked_at = Some(NOW - 1);
        assert_eq!(judge(&read(token(TokenState::Rotated, Some(NOW)), revoked, None)), Verdict::Refuse);
    }

    #[test]
    fn a_rotated_token_whose_child_is_unused_is_answered_again_inside_the_window() {
        let active = Some(user(UserStatus::Active));
        let judge_with = |parent: RefreshTokenRow, child: &RefreshTokenRow, session: SessionRow, user| {
            judge_refresh(&read(parent, session, user), Some(child), "spa", NOW, GRACE)
        };
        let (parent, child) = rotated_with_child(NOW - 1, TokenState::Active);
        assert_eq!(judge_with(parent.clone(), &child, session(), active.clone()), Verdict::Replay);
        // Not once the child was used (a race), nor past the window (reuse).
        let (used_parent, used_child) = rotated_with_child(NOW - 1, TokenState::Rotated);
        assert_eq!(judge_with(used_parent, &used_child, session(), active.clone()), Verdict::Raced);
        let (late, late_child) = rotated_with_child(NOW - GRACE, TokenState::Active);
        assert_eq!(judge_with(late, &late_child, session(), active.clone()), Verdict::Reuse);
        // Nothing to open, an expired child, a session that ended, a disabled user:
        // nothing is answered again.
        let mut unsealed = parent.clone();
        unsealed.child_sealed = None;
        assert_eq!(judge_with(unsealed, &child, session(), active.clone()), Verdict::Raced);
        let mut expired_child = child.clone();
        expired_child.expires_at = NOW;
        assert_eq!(judge_with(parent.clone(), &expired_child, session(), active.clone()), Verdict::Raced);
        let mut idle = session();
        idle.idle_expires_at = NOW;
        assert_eq!(judge_with(parent.clone(), &child, idle, active.clone()), Verdict::Raced);
        let disabled = Some(user(UserStatus::Disabled));
        assert_eq!(judge_with(parent.clone(), &child, session(), disabled), Verdict::Raced);
        assert_eq!(judge_refresh(&read(parent, session(), active), Some(&child), "other", NOW, GRACE), Verdict::Refuse);
    }

    #[test]
    fn a_revoked_token_is_refused() {
        let read = read(token(TokenState::Revoked, Some(NOW)), session(), Some(user(UserStatus::Active)));
        assert_eq!(judge(&read), Verdict::Refuse);
    }

    #[test]
    fn a_session_is_live_strictly_before_both_deadlines() {
        let session = session();
        assert!(session.is_live(NOW));
        assert!(!session.is_live(session.idle_expires_at));
        let mut short_absolute = session.clone();
        short_absolute.absolute_expires_at = NOW + 1;
        assert!(!short_absolute.is_live(NOW + 1));
    }
}
