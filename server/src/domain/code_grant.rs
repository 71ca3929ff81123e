//! The token endpoint's `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.6,
//! OpenID Connect Core §3.1.3): the code is spent once, by the client it was issued
//! to, with the redirect URI and PKCE verifier of its request. It starts a session of
//! its own (the access token's `sid`), refreshable when the client may refresh, and an
//! id_token when `openid` was granted. A code that comes back a second time revokes
//! everything the first redemption issued (RFC 6749 §4.1.2).

use crate::security::{Secret, constant_time_eq, generate_token, sha256_hex};
use crate::state::AppState;
use crate::store::TokenStore;
use crate::store::audit::NewAuditEvent;
use crate::store::authorization::{CodeRow, Grant, Redemption};
use crate::store::clients::ClientRow;
use crate::store::entities::UserStatus;
use crate::store::sessions::{self as session_store, NewRefreshToken, NewSession, Notify};
use crate::store::users::{self as user_store, UserRow};
use crate::tokens::REFRESH_TOKEN_PREFIX;
use crate::tokens::id_token::{IdClaims, acr_for, at_hash};

use super::auth::{IssuedTokens, RequestContext};
use super::authorize::{is_pkce_string, pkce_matches};
use super::oauth::GrantType;
use super::sessions::{REASON_CODE_REUSE, SessionGrant, answer_for_session};
use super::{Error, ErrorCode, Result, new_id};

/// What the client sent beside the code.
pub struct Presented<'a> {
    pub code: &'a Secret<String>,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a Secret<String>>,
}

fn invalid_grant(description: &str) -> Error {
    Error::oauth(ErrorCode::InvalidGrant, description)
}

/// Why a spent code does not grant anything; `None` when it does.
fn refusal(row: &CodeRow, client: &ClientRow, presented: &Presented<'_>, ctx: &RequestContext) -> Option<&'static str> {
    let now = ctx.now;
    if row.client_id != client.client_id {
        return Some("the code was issued to another client");
    }
    // RFC 9449 §10: the authorization request named the key the code is for.
    if let Some(bound) = row.dpop_jkt.as_deref()
        && !ctx.dpop_jkt.as_deref().is_some_and(|proved| constant_time_eq(proved.as_bytes(), bound.as_bytes()))
    {
        return Some("the code is bound to a DPoP key (dpop_jkt): send a DPoP proof by that key");
    }
    if row.expires_at <= now {
        return Some("the code has expired");
    }
    if presented.redirect_uri != Some(row.redirect_uri.as_str()) {
        return Some("redirect_uri does not match the authorization request");
    }
    let Some(verifier) = presented.code_verifier else {
        return Some("code_verifier is required");
    };
    if !is_pkce_string(verifier.expose()) || !pkce_matches(verifier.expose(), &row.code_challenge) {
        return Some("code_verifier does not match the code_challenge");
    }
    None
}

/// `grant_type=authorization_code`.
pub async fn exchange(
    state: &AppState,
    client: &ClientRow,
    presented: Presented<'_>,
    ctx: &RequestContext,
) -> Result<IssuedTokens> {
    let now = ctx.now;
    if presented.redirect_uri.is_none() {
        return Err(Error::oauth(ErrorCode::InvalidRequest, "redirect_uri is required"));
    }
    if presented.code_verifier.is_none() {
        return Err(Error::oauth(ErrorCode::InvalidRequest, "code_verifier is required"));
    }
    let code_hash = sha256_hex(presented.code.expose());
    let config = &state.config.tokens;
    let absolute_expires_at = now + config.session_absolute_lifetime.as_secs() as i64;
    let idle_expires_at = (now + config.session_idle_timeout.as_secs() as i64).min(absolute_expires_at);
    let refreshable = client.grant_types.split_ascii_whitespace().any(|g| g == GrantType::RefreshToken.as_str());
    let refresh_token = refreshable.then(|| generate_token(REFRESH_TOKEN_PREFIX));
    let session_id = new_id();
    let mut refused = None;
    let judge = |row: &CodeRow| {
        if let Some(reason) = refusal(row, client, &presented, ctx) {
            refused = Some(reason);
            return None;
        }
        Some(Grant {
            session: NewSession {
                id: session_id.clone(),
                user_id: row.user_id.clone(),
                client_id: client.client_id.clone(),
                now,
                idle_expires_at,
                absolute_expires_at,
                ip: ctx.ip.clone(),
                user_agent: ctx.user_agent.as_ref().map(|ua| ua.chars().take(256).collect()),
                amr: row.amr.clone(),
                auth_time: row.auth_time,
                scope: row.scope.clone(),
                sso_session_id: row.sso_session_id.clone(),
                dpop_jkt: ctx.session_binding(client),
            },
            refresh_token: refresh_token.as_ref().map(|token| NewRefreshToken {
                id: new_id(),
                parent_id: None,
                token_hash: sha256_hex(token.expose()),
                expires_at: idle_expires_at,
            }),
            event: NewAuditEvent::success(now, &row.user_id, "token.code_exchange", &session_id)
                .ip(ctx.ip.clone())
                .details(serde_json::json!({ "client_id": client.client_id, "scope": row.scope })),
        })
    };
    let redemption = state.tokens.redeem_code(&code_hash, now, &session_id, judge).await?;
    let row = match redemption {
        Redemption::Unknown => return Err(invalid_grant("the code is invalid, expired or already used")),
        Redemption::Reused(row) => {
            revoke_first_redemption(state, &row, ctx).await?;
            return Err(invalid_grant("the code is invalid, expired or already used"));
        }
        Redemption::Refused(_) => {
            return Err(invalid_grant(refused.unwrap_or("the code is invalid, expired or already used")));
        }
        Redemption::Redeemed(row) => row,
    };
    let Some((user, roles)) =
        state.tokens.user_with_roles(&row.user_id).await?.filter(|(u, _)| u.status == UserStatus::Active)
    else {
        session_store::revoke(&state.db, &session_id, super::sessions::REASON_USER_REVOKED, now, Notify::Nobody, None)
            .await?;
        return Err(invalid_grant("the user can no longer sign in"));
    };
    state.metrics.tokens_issued.with_label_values(&["authorization_code"]).inc();
    let amr: Vec<String> = row.amr.split_ascii_whitespace().map(str::to_string).collect();
    let grant = SessionGrant {
        user_id: &user.id,
        session_id: &session_id,
        scope: &row.scope,
        auth_time: row.auth_time,
        amr: amr.clone(),
        roles: roles.clone(),
        dpop_jkt: ctx.dpop_jkt.as_deref(),
    };
    let mut tokens = answer_for_session(state, client, grant, refresh_token.map(|t| (t, idle_expires_at)), now)?;
    if row.scope.split_ascii_whitespace().any(|s| s == "openid") {
        let claims = IdClaims {
            iss: state.config.issuer.clone(),
            sub: user.id.clone(),
            aud: client.client_id.clone(),
            exp: now + state.config.tokens.id_token_ttl.as_secs() as i64,
            iat: now,
            auth_time: row.auth_time,
            nonce: row.nonce.clone(),
            acr: acr_for(&amr).to_string(),
            amr,
            sid: row.sso_session_id.clone(),
            azp: client.client_id.clone(),
            at_hash: Some(at_hash(&tokens.access_token)),
            released: released_claims(&user, &super::signin::visible_roles(client, roles), &row.scope),
        };
        tokens.id_token = Some(claims.sign(&state.keys.current()).map_err(|e| Error::Internal(e.to_string()))?);
    }
    Ok(tokens)
}

/// A code presented again: the session its first redemption created is revoked (once,
/// audited), so the tokens an intercepted code bought stop working on our API.
async fn revoke_first_redemption(state: &AppState, row: &CodeRow, ctx: &RequestContext) -> Result<()> {
    let now = ctx.now;
    let event = NewAuditEvent::success(now, &row.user_id, "authorization_code.reuse", &row.client_id)
        .outcome("session_revoked")
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "session_id": row.session_id }));
    let revoked = match &row.session_id {
        Some(session_id) => {
            session_store::revoke(&state.db, session_id, REASON_CODE_REUSE, now, Notify::RelyingParty, Some(event))
                .await?
        }
        None => false,
    };
    state.metrics.refresh_reuse.inc();
    tracing::warn!(client_id = %row.client_id, user_id = %row.user_id, revoked, "authorization code presented again");
    Ok(())
}

/// The claims the granted scopes release about a user (Core §5.4), for the id_token
/// and userinfo alike: `profile` the name and when it changed, `email` the address,
/// `roles` the flat roles (already filtered for the client).
pub fn released_claims(user: &UserRow, roles: &[String], scope: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut claims = serde_json::Map::new();
    for scope in scope.split_ascii_whitespace() {
        match scope {
            "profile" => {
                claims.insert("preferred_username".into(), user.username.clone().into());
                claims.insert("name".into(), user.username.clone().into());
                claims.insert("updated_at".into(), user.updated_at.into());
            }
            "email" => {
                if let Some(email) = &user.email {
                    claims.insert("email".into(), email.clone().into());
                    // True only once a mailed link was followed (or an admin said so).
                    claims.insert("email_verified".into(), user.email_verified.into());
                }
            }
            "roles" => {
                claims.insert("roles".into(), roles.to_vec().into());
            }
            _ => {}
        }
    }
    claims
}

/// `/oauth2/userinfo`: the claims the token's scopes release, for the user its live
/// session belongs to (read with the session by the bearer check), roles filtered for
/// the client the token was issued to.
pub async fn userinfo(
    state: &AppState,
    auth: &super::auth::Authenticated,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let user = match &auth.user {
        Some(user) => user.clone(),
        None => user_store::find_by_id(&state.db, &auth.claims.sub)
            .await?
            .ok_or_else(|| Error::InvalidToken("the user of this token no longer exists".into()))?,
    };
    let client = state.tokens.client(&auth.claims.client_id).await?.ok_or(Error::NotFound("client"))?;
    let roles = super::signin::visible_roles(&client, state.tokens.user_role_names(&user.id).await?);
    Ok(released_claims(&user, &roles, &auth.claims.scope))
}
