//! Sessions (token families) and refresh-token rotation with reuse detection.
//!
//! - Using a refresh token marks it `rotated` and issues its child in the same session.
//! - Presenting a `rotated` token again within `refresh_grace` of its rotation is a
//!   benign race (two tabs sharing a cookie): [`Error::RefreshRaced`], nothing revoked,
//!   nothing minted. Later, it is reuse: the whole session is revoked and audited.
//! - A refresh never extends a session beyond its absolute lifetime.

use crate::security::{Secret, generate_token, sha256_hex};
use crate::state::AppState;
use crate::store::audit::NewAuditEvent;
use crate::store::clients::ClientRow;
use crate::store::hot::RefreshRead;
use crate::store::sessions::{
    self as store, NewRefreshToken, NewSession, RefreshTokenRow, RotateOutcome, SessionRow, TOKEN_ACTIVE, TOKEN_ROTATED,
};
use crate::store::users::{self, STATUS_ACTIVE, UserRow};
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

/// The public first-party client behind the `/auth` cookie endpoints.
pub const SPA_CLIENT_ID: &str = "spa";

/// Loads a client the server itself relies on (seeded by the migrations).
pub async fn first_party_client(state: &AppState, client_id: &str) -> Result<ClientRow> {
    state
        .hot()
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
    let now = state.now();
    let config = &state.config;
    let absolute_expires_at = now + config.session_absolute_lifetime.as_secs() as i64;
    let idle_expires_at = (now + config.session_idle_timeout.as_secs() as i64).min(absolute_expires_at);
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
    let roles = state.hot().user_role_names(&user.id).await?;
    state.metrics.tokens_issued.with_label_values(&["login"]).inc();
    let (access_token, expires_in) = mint_access_token(
        state,
        AccessGrant {
            subject: &user.id,
            client_id: &client.client_id,
            audience: audience_for(state, client),
            scope,
            roles,
            session_id: Some(&session_id),
            auth_time: Some(now),
            amr: amr.iter().map(|s| s.to_string()).collect(),
        },
    )?;
    Ok(IssuedTokens {
        access_token,
        expires_in,
        scope: scope.to_string(),
        refresh_token: Some(refresh_token),
        refresh_expires_at: Some(idle_expires_at),
        session_id: Some(session_id),
    })
}

/// Exchanges a refresh token for a new access token and a rotated refresh token.
pub async fn refresh(
    state: &AppState,
    client: &ClientRow,
    presented: &Secret<String>,
    ctx: &RequestContext,
) -> Result<IssuedTokens> {
    let hash = sha256_hex(presented.expose());
    let Some(read) = state.hot().token_for_refresh(&hash).await? else {
        return Err(Error::invalid_refresh_token());
    };
    if read.session.client_id != client.client_id {
        return Err(Error::invalid_refresh_token());
    }
    match read.token.state.as_str() {
        TOKEN_ACTIVE => rotate(state, client, read, ctx).await,
        TOKEN_ROTATED => Err(rotated_token_presented(state, &read.token, &read.session, ctx).await?),
        _ => Err(Error::invalid_refresh_token()),
    }
}

async fn rotate(
    state: &AppState,
    client: &ClientRow,
    RefreshRead { token, session, user, roles }: RefreshRead,
    ctx: &RequestContext,
) -> Result<IssuedTokens> {
    let now = state.now();
    if !session_is_live(&session, now) || token.expires_at <= now {
        return Err(Error::invalid_refresh_token());
    }
    let Some(user) = user.filter(|u| u.status == STATUS_ACTIVE) else {
        return Err(Error::invalid_refresh_token());
    };

    let idle_expires_at = (now + state.config.session_idle_timeout.as_secs() as i64).min(session.absolute_expires_at);
    let child_token = generate_token(REFRESH_TOKEN_PREFIX);
    let child = NewRefreshToken {
        id: new_id(),
        parent_id: Some(token.id.clone()),
        token_hash: sha256_hex(child_token.expose()),
        expires_at: idle_expires_at,
    };
    match state.hot().rotate(&token.id, &session.id, now, idle_expires_at, child).await? {
        RotateOutcome::Rotated => {}
        RotateOutcome::SessionNotActive => return Err(Error::invalid_refresh_token()),
        RotateOutcome::TokenNotActive => {
            // A concurrent request won the compare-and-swap. Re-read the token and judge
            // it as the loser would have seen it (normally: within the grace window).
            let Some((token, session)) = state.hot().token_with_session(&token.token_hash).await? else {
                return Err(Error::invalid_refresh_token());
            };
            if token.state == TOKEN_ROTATED {
                return Err(rotated_token_presented(state, &token, &session, ctx).await?);
            }
            return Err(Error::invalid_refresh_token());
        }
    }

    state.metrics.tokens_issued.with_label_values(&["refresh_token"]).inc();
    let amr: Vec<String> = session.amr.split_ascii_whitespace().map(str::to_string).collect();
    let (access_token, expires_in) = mint_access_token(
        state,
        AccessGrant {
            subject: &user.id,
            client_id: &client.client_id,
            audience: audience_for(state, client),
            scope: &session.scope,
            roles,
            session_id: Some(&session.id),
            auth_time: Some(session.auth_time),
            amr,
        },
    )?;
    Ok(IssuedTokens {
        access_token,
        expires_in,
        scope: session.scope,
        refresh_token: Some(child_token),
        refresh_expires_at: Some(idle_expires_at),
        session_id: Some(session.id),
    })
}

/// A token that was already rotated came back: a race inside the grace window, or
/// reuse (a stolen or replayed token) that ends the whole session. Returns the error
/// to answer with.
async fn rotated_token_presented(
    state: &AppState,
    token: &RefreshTokenRow,
    session: &SessionRow,
    ctx: &RequestContext,
) -> Result<Error> {
    let now = state.now();
    if session.revoked_at.is_some() {
        return Ok(Error::invalid_refresh_token());
    }
    let grace = state.config.refresh_grace.as_secs() as i64;
    let rotated_at = token.used_at.unwrap_or(token.created_at);
    if now - rotated_at < grace {
        return Ok(Error::RefreshRaced);
    }
    let revoked_now = store::revoke(
        &state.db,
        &session.id,
        REASON_REUSE,
        now,
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

fn session_is_live(session: &SessionRow, now: i64) -> bool {
    session.revoked_at.is_none() && session.idle_expires_at > now && session.absolute_expires_at > now
}

/// Revokes the session a refresh token belongs to, whatever the token's state.
/// Unknown tokens are ignored (logout is idempotent). Returns the user id when a
/// session was found and the caller's client owns it.
pub async fn revoke_by_refresh_token(
    state: &AppState,
    presented: &Secret<String>,
    client_id: Option<&str>,
    reason: &str,
    ctx: &RequestContext,
) -> Result<()> {
    let hash = sha256_hex(presented.expose());
    let Some((_, session)) = state.hot().token_with_session(&hash).await? else {
        return Ok(());
    };
    if client_id.is_some_and(|c| c != session.client_id) {
        return Ok(());
    }
    revoke_session(state, &session, reason, ctx).await
}

pub async fn revoke_session(state: &AppState, session: &SessionRow, reason: &str, ctx: &RequestContext) -> Result<()> {
    let now = state.now();
    store::revoke(
        &state.db,
        &session.id,
        reason,
        now,
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

/// Revokes a session by id on behalf of `actor_user_id`, who must own it.
pub async fn revoke_own(state: &AppState, user_id: &str, session_id: &str, ctx: &RequestContext) -> Result<()> {
    let session = store::find_session(&state.db, session_id)
        .await?
        .filter(|s| s.user_id == user_id && session_is_live(s, state.now()))
        .ok_or(Error::NotFound("session"))?;
    revoke_session(state, &session, REASON_USER_REVOKED, ctx).await
}

pub async fn revoke_all(state: &AppState, user_id: &str, reason: &str, ctx: &RequestContext) -> Result<u64> {
    let now = state.now();
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
    let session = store::find_session(&state.db, session_id)
        .await?
        .filter(|s| session_is_live(s, state.now()))
        .ok_or(Error::NotFound("session"))?;
    let now = state.now();
    store::revoke(
        &state.db,
        &session.id,
        REASON_ADMIN_REVOKED,
        now,
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
