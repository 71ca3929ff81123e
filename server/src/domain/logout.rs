//! Signing out at a relying party's request (OpenID Connect RP-Initiated Logout 1.0):
//! which browser session ends, whether the user must confirm, and where the browser goes
//! after. The endpoint is [`crate::api::pages`]' `/oauth2/logout`.
//!
//! - An `id_token_hint` we signed (its signature checked, its expiry tolerated, §2)
//!   that was issued in this browser's session (`sid`) to its user (`sub`) signs it out
//!   without a question, as the relying party holding that id_token asked.
//! - Otherwise (no hint, one we did not sign, or one from another session or user), a
//!   request never signs anyone out: the page asks, and only its form, carrying a CSRF
//!   token derived from the browser's session cookie, does. A cross-site link cannot
//!   sign a user out silently. Only the browser's own session ever ends here.
//! - `post_logout_redirect_uri` is followed only when it is one the client registered,
//!   exactly (the client is the hint's audience or `client_id`, which must agree); any
//!   other value gets the signed-out page, never a redirect (no open redirect).

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::security::{Secret, constant_time_eq, sha256_hex};
use crate::state::AppState;
use crate::store::TokenStore;
use crate::store::audit::NewAuditEvent;
use crate::store::authorization as store;
use crate::store::clients::ClientRow;
use crate::tokens::id_token::{HintClaims, verified_hint};

use super::auth::RequestContext;
use super::grants::REASON_SIGNED_OUT;
use super::signin::Browser;
use super::{Error, ErrorCode, Result};

/// The request's parameters (§2), as sent.
// No Debug: the hint is a signed statement about the user, kept out of logs.
#[derive(Default, Clone)]
pub struct LogoutParams {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub ui_locales: Option<String>,
}

/// Longest value of any parameter kept; longer ones are refused.
const PARAM_MAX: usize = 8192;

impl LogoutParams {
    /// From the query or form pairs; a repeated or oversized parameter is refused.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self> {
        let mut params = Self::default();
        for (name, value) in pairs {
            let slot = match name.as_str() {
                "id_token_hint" => &mut params.id_token_hint,
                "client_id" => &mut params.client_id,
                "post_logout_redirect_uri" => &mut params.post_logout_redirect_uri,
                "state" => &mut params.state,
                "ui_locales" => &mut params.ui_locales,
                _ => continue,
            };
            if value.is_empty() {
                continue;
            }
            if slot.is_some() || value.len() > PARAM_MAX {
                return Err(Error::bad_request(ErrorCode::InvalidRequest, "This sign-out request is not valid."));
            }
            *slot = Some(value);
        }
        Ok(params)
    }
}

/// What the browser sees next.
// No Debug: the confirmation carries its CSRF token.
#[derive(Clone, PartialEq, Eq)]
pub enum LogoutNext {
    /// Back to the relying party (its registered URI, with `state`).
    Redirect(String),
    /// The signed-out page (no redirect was asked for, or it was not registered).
    SignedOut,
    /// The page that asks; its form carries this CSRF token and the request, and may
    /// end at `ends_at` (the checked redirect, for the page's `form-action`).
    Confirm { csrf_token: String, ends_at: Option<String> },
}

pub struct LogoutOutcome {
    pub next: LogoutNext,
    /// Whether the browser's session cookie is to be cleared (its session ended, or it
    /// names none that lives).
    pub clear_cookie: bool,
    /// The client's name, for the page.
    pub client_name: Option<String>,
    /// The client the request names (the hint's audience or `client_id`), which the
    /// confirmation form carries on.
    pub client_id: Option<String>,
}

/// The request, its client and where it may end, checked.
struct Checked {
    hint: Option<HintClaims>,
    client: Option<ClientRow>,
    redirect: Option<String>,
}

async fn check(state: &AppState, params: &LogoutParams) -> Result<Checked> {
    let hint = params
        .id_token_hint
        .as_deref()
        .and_then(|token| verified_hint(token, &state.keys.current(), &state.config.issuer));
    let invalid = |message: &str| Error::bad_request(ErrorCode::InvalidRequest, message.to_string());
    let client_id = match (&hint, &params.client_id) {
        (Some(hint), Some(client_id)) if &hint.aud != client_id => {
            return Err(invalid("The sign-out request names another application than its id_token_hint."));
        }
        (Some(hint), _) => Some(hint.aud.clone()),
        (None, client_id) => client_id.clone(),
    };
    let client = match client_id {
        Some(id) if id.len() <= 128 => state.tokens.client(&id).await?,
        _ => None,
    };
    let redirect = match (&client, &params.post_logout_redirect_uri) {
        (Some(client), Some(uri))
            if client.post_logout_redirect_uris.split(' ').any(|registered| registered == uri) =>
        {
            Some(with_state(uri, params.state.as_deref()))
        }
        _ => None,
    };
    Ok(Checked { hint, client, redirect })
}

/// `uri` with `state` added to its query (§3), when given.
fn with_state(uri: &str, state: Option<&str>) -> String {
    let Some(state) = state else { return uri.to_string() };
    match url::Url::parse(uri) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("state", state);
            url.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

/// A logout request arriving (GET, or a POST that is not the confirmation).
pub async fn request(
    state: &AppState,
    params: &LogoutParams,
    browser: &Browser,
    ctx: &RequestContext,
) -> Result<LogoutOutcome> {
    let checked = check(state, params).await?;
    let client_name = checked.client.as_ref().map(|c| c.name.clone());
    let client_id = checked.client.as_ref().map(|c| c.client_id.clone());
    let browser_session = browser_session(state, browser, ctx.now).await?;
    let (Some(session), Some(cookie)) = (&browser_session, &browser.sso) else {
        // Nobody is signed in here: nothing to end or confirm.
        let next = checked.redirect.map_or(LogoutNext::SignedOut, LogoutNext::Redirect);
        return Ok(LogoutOutcome { next, clear_cookie: browser.sso.is_some(), client_name, client_id });
    };
    // §2: without asking, only when the hint was issued in this very browser session to
    // its user. A hint from another session (an old one, another device's, another
    // user's) asks, like no hint at all.
    let issued_here = checked
        .hint
        .as_ref()
        .is_some_and(|hint| hint.sub == session.user_id && hint.sid.as_deref() == Some(session.id.as_str()));
    if issued_here {
        end(state, session, checked.client.as_ref(), "id_token_hint", ctx).await?;
        let next = checked.redirect.map_or(LogoutNext::SignedOut, LogoutNext::Redirect);
        return Ok(LogoutOutcome { next, clear_cookie: true, client_name, client_id });
    }
    Ok(LogoutOutcome {
        next: LogoutNext::Confirm { csrf_token: csrf_token(cookie, &session.id), ends_at: checked.redirect },
        clear_cookie: false,
        client_name,
        client_id,
    })
}

/// The confirmation form, posted: ends the browser's session if its token is right.
pub async fn confirm(
    state: &AppState,
    params: &LogoutParams,
    browser: &Browser,
    presented: Option<&str>,
    ctx: &RequestContext,
) -> Result<LogoutOutcome> {
    let checked = check(state, params).await?;
    let client_name = checked.client.as_ref().map(|c| c.name.clone());
    let client_id = checked.client.as_ref().map(|c| c.client_id.clone());
    if let (Some(session), Some(cookie)) = (browser_session(state, browser, ctx.now).await?, &browser.sso) {
        let expected = csrf_token(cookie, &session.id);
        if !presented.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes())) {
            return Err(Error::bad_request(
                ErrorCode::CsrfCheckFailed,
                "The form was missing its security token. Reload the page and try again.",
            ));
        }
        end(state, &session, checked.client.as_ref(), "confirmation", ctx).await?;
    }
    let next = checked.redirect.map_or(LogoutNext::SignedOut, LogoutNext::Redirect);
    Ok(LogoutOutcome { next, clear_cookie: browser.sso.is_some(), client_name, client_id })
}

/// The live login session the browser's cookie names.
async fn browser_session(state: &AppState, browser: &Browser, now: i64) -> Result<Option<store::SsoSessionRow>> {
    let Some(token) = &browser.sso else { return Ok(None) };
    Ok(state.tokens.sso_session(&sha256_hex(token.expose())).await?.map(|(s, _)| s).filter(|s| s.is_live(now)))
}

/// The confirmation form's CSRF token: only the browser holding the session cookie can
/// know it.
fn csrf_token(cookie: &Secret<String>, session_id: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, cookie.expose().as_bytes());
    URL_SAFE_NO_PAD.encode(hmac::sign(&key, format!("logout:{session_id}").as_bytes()).as_ref())
}

/// Ends `session` and the sessions relying parties got through it (those granted
/// `offline_access` stay, unless configured otherwise), audited, in one transaction.
async fn end(
    state: &AppState,
    session: &store::SsoSessionRow,
    client: Option<&ClientRow>,
    via: &str,
    ctx: &RequestContext,
) -> Result<()> {
    let event = NewAuditEvent::success(ctx.now, &session.user_id, "sso_session.logout", &session.id)
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "client_id": client.map(|c| c.client_id.as_str()), "via": via }));
    let keep_offline = state.config.sso.offline_sessions_outlive_browser;
    store::end_sso_session_with_its_sessions(&state.db, &session.id, keep_offline, REASON_SIGNED_OUT, ctx.now, event)
        .await?;
    Ok(())
}
