//! The pages mailed links open: `/ui/password-reset` (ask for a link, then choose a new
//! password) and `/ui/verify-email` (confirm an address). A link's token sits in the
//! query; the pages carry `Referrer-Policy: no-referrer` like every hosted page, so it
//! never leaves in a `Referer`. Opening a link changes nothing (mail scanners open
//! links): each page shows a form, and only its POST — CSRF-checked against the
//! browser's binding cookie — acts.

use askama::Template;
use poem::http::StatusCode;
use poem::{Body, Request, Response, handler};

use crate::domain::signin::{self, NewCookie};
use crate::domain::{Error, ErrorCode, reset, verification};
use crate::security::Secret;
use crate::security::rate_limit::Bucket;
use crate::state::AppState;

use super::messages::{EN, Messages};
use super::{BROWSER_COOKIE, Chrome, FormFields, browser_of, error_page, html, pairs_of, set_cookie, state_of};
use crate::api::browser::request_context;
use crate::api::route_facts::charge_ip;

pub(super) fn mount(route: poem::Route) -> poem::Route {
    route
        .at(reset::PAGE, poem::get(reset_page).post(reset_request))
        .at("/ui/password-reset/new", poem::post(reset_complete))
        .at(verification::PAGE, poem::get(verify_page).post(verify_submit))
}

/// Every path this module serves, with its methods.
pub(super) const ROUTES: [(&str, &str); 5] = [
    (reset::PAGE, "get"),
    (reset::PAGE, "post"),
    ("/ui/password-reset/new", "post"),
    (verification::PAGE, "get"),
    (verification::PAGE, "post"),
];

/// What the CSRF tokens of these pages are bound to, beside the browser.
const RESET_FORM: &str = "password-reset";
const VERIFY_FORM: &str = "verify-email";

#[derive(Template)]
#[template(path = "reset_request.html")]
struct ResetRequestPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    csrf_token: String,
}

#[derive(Template)]
#[template(path = "reset_new.html")]
struct ResetNewPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    csrf_token: String,
    token: String,
    username: String,
    notice: Option<String>,
    min_password: usize,
}

#[derive(Template)]
#[template(path = "verify_email.html")]
struct VerifyPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    csrf_token: String,
    token: String,
    username: String,
    address: String,
}

#[derive(Template)]
#[template(path = "mail_done.html")]
struct DonePage<'a> {
    chrome: Chrome,
    title: &'a str,
    message: &'a str,
}

fn query_token(req: &Request) -> Option<String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
}

/// A page rendered for this browser, setting its binding cookie when it had none.
fn page(req: &Request, state: &AppState, rendered: askama::Result<String>, cookie: Option<NewCookie>) -> Response {
    let mut response = match rendered {
        Ok(body) => html(state, StatusCode::OK, body, None),
        Err(err) => return error_page(req, state, &Error::Internal(err.to_string())),
    };
    if let Some(cookie) = cookie {
        set_cookie(&mut response, state, BROWSER_COOKIE, cookie);
    }
    response
}

/// The posted form, after the bucket and the CSRF check of `form`.
async fn checked_form(
    req: &Request,
    state: &AppState,
    body: Body,
    bucket: Bucket,
    form: &str,
) -> Result<FormFields, Error> {
    charge_ip(req, bucket)?;
    let fields = FormFields(pairs_of(req, body).await?);
    let Some(binding) = browser_of(req, state).binding else {
        return Err(Error::bad_request(
            ErrorCode::CsrfCheckFailed,
            "Cookies are blocked in this browser, or the page is old. Open the link again.",
        ));
    };
    signin::check_csrf(&binding, form, fields.get("csrf_token"))?;
    Ok(fields)
}

/// `GET /ui/password-reset`: the request form, or with `?token=` the new-password form
/// of a link that still works.
#[handler]
async fn reset_page(req: &Request) -> poem::Result<Response> {
    let state = state_of(req)?;
    if let Err(err) = crate::domain::mail::configured(state) {
        return Ok(error_page(req, state, &err));
    }
    let (binding, cookie) = signin::binding_of(&browser_of(req, state));
    let csrf_token = signin::csrf_token(&binding, RESET_FORM);
    let Some(token) = query_token(req) else {
        let rendered = ResetRequestPage { chrome: Chrome::of(state), t: &EN, csrf_token }.render();
        return Ok(page(req, state, rendered, cookie));
    };
    match reset::check(state, &token).await {
        Ok(user) => Ok(page(req, state, new_password_form(state, csrf_token, token, user.username, None), cookie)),
        Err(err) => Ok(error_page(req, state, &err)),
    }
}

fn new_password_form(
    state: &AppState,
    csrf_token: String,
    token: String,
    username: String,
    notice: Option<String>,
) -> askama::Result<String> {
    let min_password = state.config.passwords.min_length;
    ResetNewPage { chrome: Chrome::of(state), t: &EN, csrf_token, token, username, notice, min_password }.render()
}

/// `POST /ui/password-reset`: the same page whatever the form named.
#[handler]
async fn reset_request(req: &Request, body: Body) -> poem::Result<Response> {
    let state = state_of(req)?;
    let done = async {
        let form = checked_form(req, state, body, Bucket::Mail, RESET_FORM).await?;
        reset::request(state, form.get("login").unwrap_or_default(), request_context(req).ip)
    };
    if let Err(err) = done.await {
        return Ok(error_page(req, state, &err));
    }
    let rendered = DonePage { chrome: Chrome::of(state), title: EN.reset_sent_title, message: EN.reset_sent }.render();
    Ok(page(req, state, rendered, None))
}

/// `POST /ui/password-reset/new`: sets the password, or shows the form again with what
/// was wrong with it.
#[handler]
async fn reset_complete(req: &Request, body: Body) -> poem::Result<Response> {
    let state = state_of(req)?;
    let form = match checked_form(req, state, body, Bucket::PasswordChange, RESET_FORM).await {
        Ok(form) => form,
        Err(err) => return Ok(error_page(req, state, &err)),
    };
    let token = form.get("token").unwrap_or_default().to_string();
    let password = Secret::new(form.get("password").unwrap_or_default().to_string());
    let again = |notice: String, username: String| {
        let csrf_token = form.get("csrf_token").unwrap_or_default().to_string();
        page(req, state, new_password_form(state, csrf_token, token.clone(), username, Some(notice)), None)
    };
    let user = match reset::check(state, &token).await {
        Ok(user) => user,
        Err(err) => return Ok(error_page(req, state, &err)),
    };
    if form.get("confirm") != Some(password.expose().as_str()) {
        return Ok(again(EN.reset_mismatch.to_string(), user.username));
    }
    match reset::complete(state, &Secret::new(token.clone()), &password, request_context(req).ip).await {
        Ok(_) => {
            let rendered =
                DonePage { chrome: Chrome::of(state), title: EN.reset_done_title, message: EN.reset_done }.render();
            Ok(page(req, state, rendered, None))
        }
        Err(Error::BadRequest { code: ErrorCode::InvalidPassword, description }) => {
            Ok(again(description, user.username))
        }
        Err(err) => Ok(error_page(req, state, &err)),
    }
}

/// `GET /ui/verify-email?token=…`: the address and a button to confirm it.
#[handler]
async fn verify_page(req: &Request) -> poem::Result<Response> {
    let state = state_of(req)?;
    let token = query_token(req).unwrap_or_default();
    let (row, user) = match verification::check(state, &token).await {
        Ok(found) => found,
        Err(err) => return Ok(error_page(req, state, &err)),
    };
    let (binding, cookie) = signin::binding_of(&browser_of(req, state));
    let csrf_token = signin::csrf_token(&binding, VERIFY_FORM);
    let rendered = VerifyPage {
        chrome: Chrome::of(state),
        t: &EN,
        csrf_token,
        token,
        username: user.username,
        address: row.email,
    }
    .render();
    Ok(page(req, state, rendered, cookie))
}

/// `POST /ui/verify-email`: the address becomes the account's, verified.
#[handler]
async fn verify_submit(req: &Request, body: Body) -> poem::Result<Response> {
    let state = state_of(req)?;
    let done = async {
        let form = checked_form(req, state, body, Bucket::Mail, VERIFY_FORM).await?;
        let token = Secret::new(form.get("token").unwrap_or_default().to_string());
        verification::complete(state, &token, request_context(req).ip).await
    };
    match done.await {
        Ok(_) => {
            let rendered =
                DonePage { chrome: Chrome::of(state), title: EN.verify_done_title, message: EN.verify_done }.render();
            Ok(page(req, state, rendered, None))
        }
        Err(err) => Ok(error_page(req, state, &err)),
    }
}
