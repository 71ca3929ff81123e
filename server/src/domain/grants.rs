//! What a user has left behind at the hosted pages and may take back: browser login
//! sessions (SSO) and remembered consents. The user manages their own; an admin with
//! `sessions:*` / `users:*` manages anyone's. Each removal is audited.

use crate::state::AppState;
use crate::store::TokenStore;
use crate::store::audit::NewAuditEvent;
use crate::store::authorization::{self as store, ConsentRow, SsoSessionRow};

use super::auth::RequestContext;
use super::{Error, Result};

pub const REASON_SIGNED_OUT: &str = "signed_out";

/// A remembered consent with the client's display name.
pub struct ConsentView {
    pub row: ConsentRow,
    pub client_name: String,
}

/// A user's live browser sessions, newest first.
pub async fn browser_sessions(state: &AppState, user_id: &str) -> Result<Vec<SsoSessionRow>> {
    let now = state.now();
    Ok(store::sso_sessions_of(&state.db, user_id).await?.into_iter().filter(|s| s.is_live(now)).collect())
}

/// Ends a live browser session of `user_id` (`actor` is who asks: the user or an admin),
/// and the relying parties' sessions made through it (see
/// [`store::end_sso_session_with_its_sessions`]).
pub async fn end_browser_session(
    state: &AppState,
    user_id: &str,
    session_id: &str,
    actor: &str,
    ctx: &RequestContext,
) -> Result<()> {
    let owned = browser_sessions(state, user_id).await?.into_iter().any(|s| s.id == session_id);
    if !owned {
        return Err(Error::NotFound("browser session"));
    }
    let event = NewAuditEvent::success(ctx.now, actor, "sso_session.end", session_id)
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "user_id": user_id }));
    let keep_offline = state.config.sso.offline_sessions_outlive_browser;
    store::end_sso_session_with_its_sessions(&state.db, session_id, keep_offline, REASON_SIGNED_OUT, ctx.now, event)
        .await?
        .ok_or(Error::NotFound("browser session"))?;
    Ok(())
}

pub async fn consents(state: &AppState, user_id: &str) -> Result<Vec<ConsentView>> {
    let mut views = Vec::new();
    for row in store::consents_of(&state.db, user_id).await? {
        let client_name = state.tokens.client(&row.client_id).await?.map(|c| c.name).unwrap_or_default();
        views.push(ConsentView { row, client_name });
    }
    Ok(views)
}

/// Forgets a consent: the client asks again next time, and the user's sessions there end
/// (its relying party is told).
pub async fn revoke_consent(
    state: &AppState,
    user_id: &str,
    client_id: &str,
    actor: &str,
    ctx: &RequestContext,
) -> Result<()> {
    let event = NewAuditEvent::success(ctx.now, actor, "consent.revoked", client_id)
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "user_id": user_id }));
    if store::revoke_consent(&state.db, user_id, client_id, ctx.now, event).await? {
        Ok(())
    } else {
        Err(Error::NotFound("consent"))
    }
}
