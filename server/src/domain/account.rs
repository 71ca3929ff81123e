//! The hosted account page's rules (`/account`): who is signed in (the browser's login
//! session, the `lk_sso` cookie), what they see of their account, and what they may end
//! or change there. Each change goes through the same domain function the JSON API and
//! the admin API use, so it is checked, audited and tells relying parties (back-channel
//! logout) the same way. Every form carries a CSRF token that only the browser holding
//! the session cookie can compute.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::security::{Secret, constant_time_eq, generate_token, sha256_hex};
use crate::state::AppState;
use crate::store::TokenStore;
use crate::store::authorization::SsoSessionRow;
use crate::store::sessions::{self as session_store, SessionRow};
use crate::store::users::UserRow;
use crate::tokens::SSO_TOKEN_PREFIX;

use super::auth::RequestContext;
use super::grants::{self, ConsentView};
use super::mfa::{SecondFactor, TotpEnrolment};
use super::signin::{Browser, NewCookie};
use super::{Error, ErrorCode, Result};

/// The built-in client the account page signs in through (the code flow, first-party,
/// its one redirect URI `{issuer}/account`, set at start-up).
pub const ACCOUNT_CLIENT_ID: &str = "latchkey-account";

/// The path the account page lives at, and its client's redirect URI under the issuer.
pub const ACCOUNT_PATH: &str = "/account";

/// Whoever the browser is signed in as, and the CSRF token of their forms.
pub struct Account {
    pub sso: SsoSessionRow,
    pub user: UserRow,
    pub csrf_token: String,
}

/// The signed-in account of `browser`, or `None` (no cookie, an ended session, a
/// disabled user).
pub async fn signed_in(state: &AppState, browser: &Browser, now: i64) -> Result<Option<Account>> {
    let Some(cookie) = &browser.sso else { return Ok(None) };
    let Some((sso, user)) = super::signin::live_sso_session(state, browser, now).await? else { return Ok(None) };
    let csrf_token = csrf_token(cookie, &sso.id);
    Ok(Some(Account { sso, user, csrf_token }))
}

fn csrf_token(cookie: &Secret<String>, session_id: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, cookie.expose().as_bytes());
    URL_SAFE_NO_PAD.encode(hmac::sign(&key, format!("account:{session_id}").as_bytes()).as_ref())
}

impl Account {
    /// A form of the page, posted: its token must be this browser's.
    pub fn check_csrf(&self, presented: Option<&str>) -> Result<()> {
        match presented {
            Some(token) if constant_time_eq(token.as_bytes(), self.csrf_token.as_bytes()) => Ok(()),
            _ => Err(Error::bad_request(
                ErrorCode::CsrfCheckFailed,
                "The form was missing its security token. Reload the page and try again.",
            )),
        }
    }
}

/// A browser the user is signed in on.
pub struct BrowserEntry {
    pub row: SsoSessionRow,
    pub device: String,
    pub this_device: bool,
}

/// A relying party's session of the user.
pub struct AppSession {
    pub row: SessionRow,
    pub client_name: String,
    pub device: String,
}

/// What the account page shows.
pub struct Overview {
    pub browsers: Vec<BrowserEntry>,
    pub sessions: Vec<AppSession>,
    pub consents: Vec<ConsentView>,
}

pub async fn overview(state: &AppState, account: &Account, now: i64) -> Result<Overview> {
    let user_id = &account.user.id;
    let browsers = grants::browser_sessions(state, user_id)
        .await?
        .into_iter()
        .map(|row| BrowserEntry {
            device: device_of(row.user_agent.as_deref()),
            this_device: row.id == account.sso.id,
            row,
        })
        .collect();
    let mut sessions = Vec::new();
    // Each client is read once, however many of the user's sessions it holds.
    let mut names = std::collections::HashMap::new();
    for row in session_store::list_live_for_user(&state.db, user_id, now).await? {
        if !names.contains_key(&row.client_id) {
            let name = state.tokens.client(&row.client_id).await?.map(|c| c.name);
            names.insert(row.client_id.clone(), name);
        }
        let client_name = names[&row.client_id].clone().unwrap_or_else(|| row.client_id.clone());
        sessions.push(AppSession { device: device_of(row.user_agent.as_deref()), client_name, row });
    }
    Ok(Overview { browsers, sessions, consents: grants::consents(state, user_id).await? })
}

/// Signs out one browser of the user's (this one too, when it is named).
pub async fn end_browser(state: &AppState, account: &Account, id: &str, ctx: &RequestContext) -> Result<()> {
    grants::end_browser_session(state, &account.user.id, id, &account.user.id, ctx).await
}

/// Ends one of the user's relying-party sessions (its relying party is told).
pub async fn end_session(state: &AppState, account: &Account, id: &str, ctx: &RequestContext) -> Result<()> {
    super::sessions::revoke_own(state, &account.user.id, id, ctx).await
}

/// Forgets a consent and ends that application's sessions.
pub async fn revoke_consent(state: &AppState, account: &Account, client_id: &str, ctx: &RequestContext) -> Result<()> {
    let client_id_shaped = (1..=64).contains(&client_id.len())
        && client_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !client_id_shaped {
        return Err(Error::NotFound("consent"));
    }
    grants::revoke_consent(state, &account.user.id, client_id, &account.user.id, ctx).await
}

/// Changes the password (the current one re-checked): every other session ends and its
/// relying party is told; this browser stays signed in, with a new cookie (so one that
/// leaked before the change stops working), which is returned.
pub async fn change_password(
    state: &AppState,
    account: &Account,
    current: &Secret<String>,
    new: &Secret<String>,
    ctx: &RequestContext,
) -> Result<Option<NewCookie>> {
    super::users::change_password_keeping_browser(state, &account.user.id, &account.sso.id, current, new, ctx).await?;
    let token = generate_token(SSO_TOKEN_PREFIX);
    let rotated = crate::store::authorization::rotate_sso_cookie(
        &state.db,
        &account.sso.id,
        &account.sso.token_hash,
        &sha256_hex(token.expose()),
    )
    .await?;
    Ok(rotated.then(|| NewCookie { value: token, max_age: Some(account.sso.absolute_expires_at - ctx.now) }))
}

/// Signs the user out everywhere: every browser (this one too) and every session.
pub async fn sign_out_everywhere(state: &AppState, account: &Account, ctx: &RequestContext) -> Result<u64> {
    super::sessions::revoke_all(state, &account.user.id, super::sessions::REASON_LOGOUT_ALL, ctx).await
}

pub async fn totp_setup(
    state: &AppState,
    account: &Account,
    password: &Secret<String>,
    ctx: &RequestContext,
) -> Result<TotpEnrolment> {
    super::mfa::setup(state, &account.user.id, password, ctx).await
}

pub async fn totp_confirm(
    state: &AppState,
    account: &Account,
    code: &str,
    ctx: &RequestContext,
) -> Result<Vec<Secret<String>>> {
    super::mfa::confirm(state, &account.user.id, code, ctx).await
}

/// The set-up in progress, shown again after a mistyped code.
pub async fn totp_pending(state: &AppState, account: &Account) -> Result<Option<TotpEnrolment>> {
    super::mfa::pending_enrolment(state, &account.user.id).await
}

pub async fn totp_disable(
    state: &AppState,
    account: &Account,
    password: &Secret<String>,
    code: &str,
    ctx: &RequestContext,
) -> Result<()> {
    super::mfa::disable(state, &account.user.id, password, &SecondFactor::Code(code.to_string()), ctx).await
}

pub async fn new_recovery_codes(
    state: &AppState,
    account: &Account,
    password: &Secret<String>,
    ctx: &RequestContext,
) -> Result<Vec<Secret<String>>> {
    super::mfa::regenerate_recovery_codes(state, &account.user.id, password, ctx).await
}

/// A name for the device a user agent describes ("Firefox on Linux"), for people, not
/// for decisions: the header is whatever the client sent.
pub fn device_of(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|ua| !ua.trim().is_empty()) else { return "Unknown device".into() };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    let system = [
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Android", "Android"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_string(),
        (None, Some(s)) => s.to_string(),
        (None, None) => ua.chars().take(40).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_from_the_user_agent() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on Windows"),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                 Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 \
                 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            ("curl/8.5.0", "curl"),
            ("something-else/1", "something-else/1"),
        ];
        for (ua, device) in cases {
            assert_eq!(device_of(Some(ua)), device, "{ua}");
        }
        assert_eq!(device_of(None), "Unknown device");
        assert_eq!(device_of(Some("  ")), "Unknown device");
        assert_eq!(device_of(Some(&"x".repeat(500))).len(), 40, "a long header is cut");
    }
}
