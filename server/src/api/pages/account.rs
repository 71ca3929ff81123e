//! `/account`: the hosted account page, signed in by the browser's login session. A
//! browser without one is sent through the hosted sign-in (the code flow of the built-in
//! `latchkey-account` client, which lands back here) first. Every form posts, checks the
//! page's CSRF token, acts through [`crate::domain::account`] and redirects back with a
//! notice (post-redirect-get); only the pages that show a secret once (the TOTP set-up
//! and new recovery codes) answer the post itself.

use askama::Template;
use poem::http::StatusCode;
use poem::http::header::LOCATION;
use poem::{Body, Request, Response, handler};

use crate::clock::to_datetime;
use crate::domain::account::{self, ACCOUNT_CLIENT_ID, ACCOUNT_PATH, Account};
use crate::domain::{Error, ErrorCode};
use crate::security::rate_limit::Bucket;
use crate::security::{Secret, generate_token};
use crate::state::AppState;

use super::messages::{EN, Messages};
use super::{Chrome, FormFields, browser_of, error_page, harden, pairs_of, rendered, state_of};
use crate::api::browser::request_context;
use crate::api::route_facts::charge_ip;

pub(super) fn mount(route: poem::Route) -> poem::Route {
    route
        .at(ACCOUNT_PATH, poem::get(show))
        .at("/account/browser-sessions/end", poem::post(end_browser))
        .at("/account/sessions/end", poem::post(end_session))
        .at("/account/consents/revoke", poem::post(revoke_consent))
        .at("/account/password", poem::post(change_password))
        .at("/account/email", poem::post(change_email))
        .at("/account/email/verification", poem::post(resend_verification))
        .at("/account/sign-out-everywhere", poem::post(sign_out_everywhere))
        .at("/account/totp/setup", poem::post(totp_setup))
        .at("/account/totp/confirm", poem::post(totp_confirm))
        .at("/account/totp/disable", poem::post(totp_disable))
        .at("/account/totp/recovery-codes", poem::post(recovery_codes))
        .at("/account/passkeys/start", poem::post(passkey_start))
        .at("/account/passkeys", poem::post(passkey_add))
        .at("/account/passkeys/rename", poem::post(passkey_rename))
        .at("/account/passkeys/delete", poem::post(passkey_delete))
}

/// Every path this module serves, with its methods.
pub(super) const ROUTES: [(&str, &str); 16] = [
    (ACCOUNT_PATH, "get"),
    ("/account/browser-sessions/end", "post"),
    ("/account/sessions/end", "post"),
    ("/account/consents/revoke", "post"),
    ("/account/password", "post"),
    ("/account/email", "post"),
    ("/account/email/verification", "post"),
    ("/account/sign-out-everywhere", "post"),
    ("/account/totp/setup", "post"),
    ("/account/totp/confirm", "post"),
    ("/account/totp/disable", "post"),
    ("/account/totp/recovery-codes", "post"),
    ("/account/passkeys/start", "post"),
    ("/account/passkeys", "post"),
    ("/account/passkeys/rename", "post"),
    ("/account/passkeys/delete", "post"),
];

struct BrowserLine {
    id: String,
    device: String,
    ip: String,
    created: String,
    last_used: String,
    this_device: bool,
}

struct SessionLine {
    id: String,
    client: String,
    device: String,
    ip: String,
    last_used: String,
}

struct PasskeyLine {
    id: String,
    name: String,
    created: String,
    last_used: Option<String>,
    synced: bool,
}

/// The address's standing, when this server sends mail.
struct MailLine {
    verified: bool,
    /// The address a verification link was last sent to and not yet followed.
    pending: Option<String>,
}

struct ConsentLine {
    client_id: String,
    client: String,
    scopes: String,
    granted: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    username: String,
    email: Option<String>,
    notice: Option<&'a str>,
    notice_is_error: bool,
    csrf_token: String,
    browsers: Vec<BrowserLine>,
    sessions: Vec<SessionLine>,
    consents: Vec<ConsentLine>,
    totp_enabled: bool,
    min_password: usize,
    /// `None` when passkeys are off on this server.
    passkeys: Option<Vec<PasskeyLine>>,
    /// `None` when this server sends no mail.
    mail: Option<MailLine>,
}

#[derive(Template)]
#[template(path = "totp_setup.html")]
struct TotpSetupPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    notice: Option<&'a str>,
    csrf_token: String,
    qr_svg: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryCodesPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    codes: Vec<String>,
}

fn when(t: i64) -> String {
    to_datetime(t).format("%Y-%m-%d %H:%M UTC").to_string()
}

/// What a `?notice=` key says, and whether it reports a failure; unknown keys say nothing
/// (the page never echoes its query).
fn notice_of(key: &str) -> Option<(&'static str, bool)> {
    Some(match key {
        "password_changed" => (EN.account_done_password, false),
        "browser_ended" => (EN.account_done_browser, false),
        "session_ended" => (EN.account_done_session, false),
        "consent_revoked" => (EN.account_done_consent, false),
        "totp_disabled" => (EN.account_done_totp_off, false),
        "totp_enabled" => (EN.account_done_totp_on, false),
        "wrong_password" => (EN.account_wrong_password, true),
        "weak_password" => (EN.account_weak_password, true),
        "wrong_code" => (EN.account_wrong_code, true),
        "rate_limited" => (EN.rate_limited, true),
        "gone" => (EN.account_gone, true),
        "passkey_added" => (EN.account_done_passkey_added, false),
        "passkey_renamed" => (EN.account_done_passkey_renamed, false),
        "passkey_deleted" => (EN.account_done_passkey_deleted, false),
        "last_factor" => (EN.account_passkey_last_factor, true),
        "passkey_refused" => (EN.account_passkey_refused, true),
        "bad_name" => (EN.account_bad_name, true),
        "email_sent" => (EN.account_done_email_sent, false),
        "verification_sent" => (EN.account_done_verification_sent, false),
        "bad_email" => (EN.account_bad_email, true),
        _ => return None,
    })
}

/// A 303 to `location`.
fn see_other(state: &AppState, location: &str) -> Response {
    let mut response = Response::builder().status(StatusCode::SEE_OTHER).body(Body::empty());
    if let Ok(value) = poem::http::HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    harden(response, &super::content_security_policy(state, None))
}

/// The hosted sign-in, for the account page's own client; it lands back at `/account`.
/// The code it ends with is never redeemed (the page needs only the login session the
/// sign-in leaves in the browser), and without its PKCE verifier, which nobody keeps,
/// it buys nothing.
fn sign_in_first(state: &AppState) -> Response {
    let verifier = generate_token("");
    let challenge = crate::domain::authorize::s256_challenge(verifier.expose());
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", ACCOUNT_CLIENT_ID)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("redirect_uri", &format!("{}{ACCOUNT_PATH}", state.config.issuer))
        .append_pair("state", generate_token("").expose())
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    see_other(state, &format!("/oauth2/authorize?{query}"))
}

#[handler]
async fn show(req: &Request) -> poem::Result<Response> {
    let state = state_of(req)?;
    if let Err(err) = charge_ip(req, Bucket::Token) {
        return Ok(error_page(req, state, &err));
    }
    let now = state.now();
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let account = match account::signed_in(state, &browser_of(req, state), now).await {
        Ok(Some(account)) => account,
        Ok(None) if param("error").is_some() => {
            // The sign-in came back refused (the account is disabled, say): say so, do
            // not loop into another.
            let err = Error::bad_request(ErrorCode::Forbidden, EN.account_not_signed_in.to_string());
            return Ok(error_page(req, state, &err));
        }
        Ok(None) => return Ok(sign_in_first(state)),
        Err(err) => return Ok(error_page(req, state, &err)),
    };
    if param("code").is_some() || param("error").is_some() {
        // Back from the sign-in: drop the code from the address bar and the history.
        return Ok(see_other(state, ACCOUNT_PATH));
    }
    let overview = match account::overview(state, &account, now).await {
        Ok(overview) => overview,
        Err(err) => return Ok(error_page(req, state, &err)),
    };
    let passkeys = if crate::domain::passkeys::available(state) {
        match crate::domain::passkeys::list(state, &account.user.id).await {
            Ok(views) => Some(
                views
                    .into_iter()
                    .map(|p| PasskeyLine {
                        created: when(p.created_at),
                        last_used: p.last_used_at.map(when),
                        synced: p.backup_state,
                        name: p.name,
                        id: p.id,
                    })
                    .collect(),
            ),
            Err(err) => return Ok(error_page(req, state, &err)),
        }
    } else {
        None
    };
    let mail = if state.mailer.is_some() {
        match crate::store::mail::pending_verification(&state.db, &account.user.id, state.now()).await {
            Ok(pending) => Some(MailLine { verified: account.user.email_verified, pending }),
            Err(err) => return Ok(error_page(req, state, &err.into())),
        }
    } else {
        None
    };
    let notice = param("notice").and_then(notice_of);
    let page = AccountPage {
        mail,
        chrome: Chrome::of(state),
        t: &EN,
        username: account.user.username.clone(),
        email: account.user.email.clone(),
        notice: notice.map(|(text, _)| text),
        notice_is_error: notice.is_some_and(|(_, bad)| bad),
        csrf_token: account.csrf_token.clone(),
        browsers: overview
            .browsers
            .into_iter()
            .map(|b| BrowserLine {
                ip: b.row.ip.clone().unwrap_or_else(|| "-".into()),
                created: when(b.row.created_at),
                last_used: when(b.row.last_seen_at),
                this_device: b.this_device,
                device: b.device,
                id: b.row.id,
            })
            .collect(),
        sessions: overview
            .sessions
            .into_iter()
            .map(|s| SessionLine {
                ip: s.row.ip.clone().unwrap_or_else(|| "-".into()),
                last_used: when(s.row.last_used_at),
                client: s.client_name,
                device: s.device,
                id: s.row.id,
            })
            .collect(),
        consents: overview
            .consents
            .into_iter()
            .map(|c| ConsentLine {
                scopes: c.row.scope.clone(),
                granted: when(c.row.granted_at),
                client: c.client_name,
                client_id: c.row.client_id,
            })
            .collect(),
        totp_enabled: account.user.totp_enabled,
        min_password: state.config.passwords.min_length,
        passkeys,
    };
    Ok(rendered(req, state, page.render(), None))
}

/// Where a failed action sends the browser back to: the page with its notice, or, for
/// anything that is no user's mistake, the error page.
fn refused(req: &Request, state: &AppState, err: &Error) -> Response {
    let key = match err {
        Error::InvalidCredentials => "wrong_password",
        Error::InvalidSecondFactor => "wrong_code",
        Error::BadRequest { code: ErrorCode::InvalidPassword, .. } => "weak_password",
        Error::BadRequest { code: ErrorCode::InvalidCode, .. } => "wrong_code",
        Error::RateLimited { .. } => "rate_limited",
        Error::NotFound(_) => "gone",
        Error::Conflict { code: ErrorCode::LastFactor, .. } => "last_factor",
        Error::BadRequest { code: ErrorCode::InvalidName, .. } => "bad_name",
        Error::BadRequest { code: ErrorCode::InvalidEmail | ErrorCode::NoEmail, .. } => "bad_email",
        Error::BadRequest { code: ErrorCode::InvalidPasskey | ErrorCode::InvalidRequest, .. }
        | Error::InvalidPasskey(_)
        | Error::Conflict { code: ErrorCode::PasskeyExists, .. } => "passkey_refused",
        _ => return error_page(req, state, err),
    };
    see_other(state, &format!("{ACCOUNT_PATH}?notice={key}"))
}

/// A posted form of the account page, its CSRF token checked, for a signed-in browser;
/// or the answer to give instead (the sign-in for a signed-out browser, the error page).
async fn posted(req: &Request, body: Body, bucket: Bucket) -> Result<(&AppState, Account, FormFields), Response> {
    let state = state_of(req).map_err(|_| Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).finish())?;
    if let Err(err) = charge_ip(req, bucket) {
        return Err(refused(req, state, &err));
    }
    let fields = pairs_of(req, body).await.map(FormFields).map_err(|err| error_page(req, state, &err))?;
    let account = match account::signed_in(state, &browser_of(req, state), state.now()).await {
        Ok(Some(account)) => account,
        Ok(None) => return Err(sign_in_first(state)),
        Err(err) => return Err(error_page(req, state, &err)),
    };
    account.check_csrf(fields.get("csrf_token")).map_err(|err| error_page(req, state, &err))?;
    Ok((state, account, fields))
}

/// Runs a posted action that answers with a redirect back to the page and `done`.
async fn act<F, Fut>(req: &Request, body: Body, bucket: Bucket, done: &str, action: F) -> poem::Result<Response>
where
    F: FnOnce(AppState, Account, FormFields) -> Fut,
    Fut: std::future::Future<Output = crate::domain::Result<()>>,
{
    let (state, account, fields) = match posted(req, body, bucket).await {
        Ok(posted) => posted,
        Err(answer) => return Ok(answer),
    };
    Ok(match action(state.clone(), account, fields).await {
        Ok(()) => see_other(state, &format!("{ACCOUNT_PATH}?notice={done}")),
        Err(err) => refused(req, state, &err),
    })
}

#[handler]
async fn end_browser(req: &Request, body: Body) -> poem::Result<Response> {
    let ctx = request_context(req);
    act(req, body, Bucket::Token, "browser_ended", |state, account, form| async move {
        account::end_browser(&state, &account, form.get("id").unwrap_or_default(), &ctx).await
    })
    .await
}

#[handler]
async fn end_session(req: &Request, body: Body) -> poem::Result<Response> {
    let ctx = request_context(req);
    act(req, body, Bucket::Token, "session_ended", |state, account, form| async move {
        let id = form.get("id").unwrap_or_default();
        crate::domain::users::check_id(id).map_err(|_| Error::NotFound("session"))?;
        account::end_session(&state, &account, id, &ctx).await
    })
    .await
}

#[handler]
async fn revoke_consent(req: &Request, body: Body) -> poem::Result<Response> {
    let ctx = request_context(req);
    act(req, body, Bucket::Token, "consent_revoked", |state, account, form| async move {
        account::revoke_consent(&state, &account, form.get("client_id").unwrap_or_default(), &ctx).await
    })
    .await
}

#[handler]
async fn change_password(req: &Request, body: Body) -> poem::Result<Response> {
    let (state, account, form) = match posted(req, body, Bucket::PasswordChange).await {
        Ok(posted) => posted,
        Err(answer) => return Ok(answer),
    };
    let current = Secret::new(form.get("current_password").unwrap_or_default().to_string());
    let new = Secret::new(form.get("new_password").unwrap_or_default().to_string());
    match account::change_password(state, &account, &current, &new, &request_context(req)).await {
        Ok(cookie) => {
            let mut response = see_other(state, &format!("{ACCOUNT_PATH}?notice=password_changed"));
            if let Some(cookie) = cookie {
                super::set_cookie(&mut response, state, &state.config.sso.cookie_name, cookie);
            }
            Ok(response)
        }
        Err(err) => Ok(refused(req, state, &err)),
    }
}

#[handler]
async fn change_email(req: &Request, body: Body) -> poem::Result<Response> {
    let ctx = request_context(req);
    act(req, body, Bucket::Mail, "email_sent", |state, account, form| async move {
        let password = Secret::new(form.get("password").unwrap_or_default().to_string());
        let address = form.get("email").unwrap_or_default();
        crate::domain::verification::request_change(&state, &account.user.id, address, &password, &ctx).await
    })
    .await
}

#[handler]
async fn resend_verification(req: &Request, body: Body) -> poem::Result<Response> {
    let ip = request_context(req).ip;
    act(req, body, Bucket::Mail, "verification_sent", |state, account, _| async move {
        if account.user.email_verified {
            return Ok(());
        }
        let sent = crate::domain::verification::send(&state, &account.user, None, &account.user.id, ip).await?;
        crate::domain::verification::limited(sent)
    })
    .await
}

#[handler]
async fn sign_out_everywhere(req: &Request, body: Body) -> poem::Result<Response> {
    let (state, account, _) = match posted(req, body, Bucket::Token).await {
        Ok(posted) => posted,
        Err(answer) => return Ok(answer),
    };
    if let Err(err) = account::sign_out_everywhere(state, &account, &request_context(req)).await {
        return Ok(error_page(req, state, &err));
    }
    let page = super::SignedOutPage { chrome: Chrome::of(state), t: &EN, client_name: None };
    let mut response = rendered(req, state, page.render(), None);
    super::clear_cookie(&mut response, state, &state.config.sso.cookie_name);
    Ok(response)
}

#[handler]
async fn totp_setup(req: &Request, body: Body) -> poem::Result<Response> {
    let (state, account, form) = match posted(req, body, Bucket::Login).await {
        Ok(posted) => posted,
        Err(answer) => return Ok(answer),
    };
    let password = Secret::new(form.get("password").unwrap_or_default().to_string());
    match account::totp_setup(state, &account, &password, &request_context(req)).await {
        Ok(enrolment) => Ok(setup_page(req, state, &account, &enrolment, None)),
        Err(err) => Ok(refused(req, state, &err)),
    }
}

/// The set-up page: the QR code and key of `enrolment`, and the code field.
fn setup_page(
    req: &Request,
    state: &AppState,
    account: &Account,
    enrolment: &crate::domain::mfa::TotpEnrolment,
    notice: Option<&str>,
) -> Response {
    let page = TotpSetupPage {
        chrome: Chrome::of(state),
        t: &EN,
        notice,
        csrf_token: account.csrf_token.clone(),
        qr_svg: enrolment.qr_svg.expose().clone(),
        secret: enrolment.secret_base32.expose().clone(),
    };
    rendered(req, state, page.render(), None)
}

#[handler]
async fn totp_confirm(req: &Request, body: Body) -> poem::Result<Response> {
    let (state, account, form) = match posted(req, body, Bucket::Totp).await {
        Ok(posted) => posted,
        Err(answer) => return Ok(answer),
    };
    let code = form.get("code").unwrap_or_default().trim().to_string();
    let err = match account::totp_confirm(state, &account, &code, &request_context(req)).await {
        Ok(codes) => return Ok(codes_page(req, state, codes)),
        Err(err) => err,
    };
    // A mistyped code: the same set-up again, so the entry already scanned still works.
    if let Error::BadRequest { code: ErrorCode::InvalidCode, .. } = err
        && let Ok(Some(enrolment)) = account::totp_pending(state, &account).await
    {
        return Ok(setup_page(req, state, &account, &enrolment, Some(EN.account_wrong_code)));
    }
    Ok(refused(req, state, &err))
}

#[handler]
async fn totp_disable(req: &Request, body: Body) -> poem::Result<Response> {
    let ctx = request_context(req);
    act(req, body, Bucket::Totp, "totp_disabled", |state, account, form| async move {
        let password = Secret::new(form.get("password").unwrap_or_default().to_string());
        account::totp_disable(&state, &account, &password, form.get("code").unwrap_or_default().trim(), &ctx).await
    })
    .await
}

#[handler]
async fn recovery_codes(req: &Request, body: Body) -> poem::Result<Response> {
    let (state, account, form) = match posted(req, body, Bucket::Login).await {
        Ok(posted) => posted,
        Err(answer) => return Ok(answer),
    };
    let password = Secret::new(form.get("password").unwrap_or_default().to_string());
    match account::new_recovery_codes(state, &account, &password, &request_context(req)).await {
        Ok(codes) => Ok(codes_page(req, state, codes)),
        Err(err) => Ok(refused(req, state, &err)),
    }
}

/// The recovery codes, shown this once.
fn codes_page(req: &Request, state: &AppState, codes: Vec<Secret<String>>) -> Response {
    let page = RecoveryCodesPage {
        chrome: Chrome::of(state),
        t: &EN,
        codes: codes.iter().map(|c| c.expose().clone()).collect(),
    };
    rendered(req, state, page.render(), None)
}

/// `POST /account/passkeys/start` (the page's script): the options to create a passkey.
#[handler]
async fn passkey_start(req: &Request, body: Body) -> poem::Result<Response> {
    let (state, account, form) = match posted(req, body, Bucket::Totp).await {
        Ok(posted) => posted,
        // Not signed in, or a bad token: the script gets a JSON refusal, not a page.
        Err(_) => {
            let state = state_of(req)?;
            let err = Error::bad_request(ErrorCode::CsrfCheckFailed, "sign in again and reload the page");
            return Ok(super::passkey_options(state, Err(err)));
        }
    };
    let password = Secret::new(form.get("password").unwrap_or_default().to_string());
    let started =
        crate::domain::passkeys::start_registration_rechecked(state, &account.user, &password, &request_context(req))
            .await;
    Ok(super::passkey_options(state, started))
}

#[handler]
async fn passkey_add(req: &Request, body: Body) -> poem::Result<Response> {
    let ctx = request_context(req);
    act(req, body, Bucket::Totp, "passkey_added", |state, account, form| async move {
        let credential = serde_json::from_str(form.get("credential").unwrap_or_default())
            .map_err(|_| Error::bad_request(ErrorCode::InvalidRequest, "the passkey's answer is missing"))?;
        let ceremony = form.get("ceremony").unwrap_or_default();
        let name = form.get("name").unwrap_or_default();
        crate::domain::passkeys::finish_registration(&state, &account.user, ceremony, name, credential, &ctx)
            .await
            .map(|_| ())
    })
    .await
}

#[handler]
async fn passkey_rename(req: &Request, body: Body) -> poem::Result<Response> {
    let ctx = request_context(req);
    act(req, body, Bucket::Token, "passkey_renamed", |state, account, form| async move {
        let id = form.get("id").unwrap_or_default();
        crate::domain::users::check_id(id).map_err(|_| Error::NotFound("passkey"))?;
        crate::domain::passkeys::rename(&state, &account.user.id, id, form.get("name").unwrap_or_default(), &ctx).await
    })
    .await
}

#[handler]
async fn passkey_delete(req: &Request, body: Body) -> poem::Result<Response> {
    let ctx = request_context(req);
    act(req, body, Bucket::Token, "passkey_deleted", |state, account, form| async move {
        let id = form.get("id").unwrap_or_default();
        crate::domain::users::check_id(id).map_err(|_| Error::NotFound("passkey"))?;
        crate::domain::passkeys::delete(&state, &account.user.id, id, &ctx).await
    })
    .await
}
