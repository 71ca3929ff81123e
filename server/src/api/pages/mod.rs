//! The hosted pages and the authorization endpoint: server-rendered HTML that works
//! without JavaScript (askama templates beside this file), for any relying party's
//! sign-in. Handlers read cookies and forms, call one [`crate::domain::signin`] step and
//! answer a redirect (303, so reload and back never resubmit a password) or a page.
//!
//! Every answer carries `Cache-Control: no-store`, a Content-Security-Policy that
//! allows nothing but our own origin (forms may also post to, and redirect to, the
//! origin the sign-in ends at), `frame-ancestors 'none'` with `X-Frame-Options: DENY`
//! against clickjacking, and `Referrer-Policy: no-referrer` so codes and interaction ids
//! never leak in a `Referer`.

mod account;
mod mail;
mod messages;

use askama::Template;
use poem::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use poem::http::{HeaderValue, Method, StatusCode};
use poem::web::cookie::{Cookie, SameSite};
use poem::{Body, Request, Response, Route, handler};

use crate::domain::authorize::{AuthorizeParams, redirect_origin};
use crate::domain::logout::{self as sign_out, LogoutNext, LogoutParams};
use crate::domain::mfa::SecondFactor;
use crate::domain::signin::{self, Browser, FormPost, InteractionView, NewCookie, Next, Outcome, Refused};
use crate::domain::{Error, ErrorCode};
use crate::security::Secret;
use crate::security::rate_limit::Bucket;
use crate::state::AppState;

use super::browser::request_context;
use super::observe::REQUEST_ID_HEADER;
use super::route_facts::{charge_ip, cookie_value};
use messages::{EN, Messages};

/// The cookie binding a sign-in in progress to the browser that started it.
pub const BROWSER_COOKIE: &str = "lk_browser";

/// Every path this module serves, with its methods (for the `Allow` table).
pub const ROUTES: [(&str, &str); 34] = [
    ("/oauth2/authorize", "get"),
    ("/oauth2/authorize", "post"),
    ("/oauth2/logout", "get"),
    ("/oauth2/logout", "post"),
    ("/ui/signin", "get"),
    ("/ui/signin", "post"),
    ("/ui/signin/code", "post"),
    ("/ui/consent", "get"),
    ("/ui/consent", "post"),
    ("/ui/signin/passkey/start", "post"),
    ("/ui/signin/passkey", "post"),
    ("/ui/style.css", "get"),
    ("/ui/passkeys.js", "get"),
    account::ROUTES[0],
    account::ROUTES[1],
    account::ROUTES[2],
    account::ROUTES[3],
    account::ROUTES[4],
    account::ROUTES[5],
    account::ROUTES[6],
    account::ROUTES[7],
    account::ROUTES[8],
    account::ROUTES[9],
    account::ROUTES[10],
    account::ROUTES[11],
    account::ROUTES[12],
    account::ROUTES[13],
    account::ROUTES[14],
    account::ROUTES[15],
    mail::ROUTES[0],
    mail::ROUTES[1],
    mail::ROUTES[2],
    mail::ROUTES[3],
    mail::ROUTES[4],
];

/// Adds the hosted routes to the application's.
pub fn mount(route: Route) -> Route {
    mail::mount(account::mount(route))
        .at("/oauth2/authorize", poem::get(authorize).post(authorize))
        .at("/oauth2/logout", poem::get(logout).post(logout))
        .at("/ui/signin", poem::get(show).post(submit_password))
        .at("/ui/signin/code", poem::post(submit_code))
        .at("/ui/consent", poem::get(show).post(submit_consent))
        .at("/ui/signin/passkey/start", poem::post(start_passkey))
        .at("/ui/signin/passkey", poem::post(submit_passkey))
        .at("/ui/style.css", poem::get(style))
        .at("/ui/passkeys.js", poem::get(script))
}

/// What every page shows of the brand.
struct Chrome {
    product_name: String,
    logo_url: Option<String>,
    extra_css_url: Option<String>,
}

impl Chrome {
    fn of(state: &AppState) -> Self {
        let branding = &state.config.branding;
        Self {
            product_name: branding.product_name.clone(),
            logo_url: branding.logo_url.clone(),
            extra_css_url: branding.extra_css_url.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    client_name: String,
    interaction: String,
    csrf_token: String,
    username: String,
    notice: Option<&'a str>,
    passkeys: bool,
    /// Whether the page links to the password reset (mail is configured).
    reset: bool,
}

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    interaction: String,
    csrf_token: String,
    notice: Option<&'a str>,
    totp: bool,
    passkey: bool,
}

#[derive(Template)]
#[template(path = "enrol.html")]
struct EnrolPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    interaction: String,
    csrf_token: String,
    notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    client_name: String,
    interaction: String,
    csrf_token: String,
    username: Option<String>,
    scopes: Vec<&'a str>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    message: String,
    request_id: String,
}

fn state_of(req: &Request) -> poem::Result<&AppState> {
    req.data::<AppState>().ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))
}

/// The policy of a page whose forms end at `ends_at` (a redirect URI), if any.
fn content_security_policy(state: &AppState, ends_at: Option<&str>) -> String {
    let mut form_action = String::from("'self'");
    if let Some(origin) = ends_at.and_then(redirect_origin) {
        form_action.push(' ');
        form_action.push_str(&origin);
    }
    let origin_of = |url: &Option<String>| url.as_deref().and_then(redirect_origin).unwrap_or_default();
    let branding = &state.config.branding;
    format!(
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' {}; img-src 'self' {}; \
         form-action {form_action}; frame-ancestors 'none'; base-uri 'none'",
        origin_of(&branding.extra_css_url),
        origin_of(&branding.logo_url),
    )
}

/// The headers every hosted answer carries.
fn harden(mut response: Response, csp: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("pragma", HeaderValue::from_static("no-cache"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(csp) {
        headers.insert("content-security-policy", value);
    }
    response
}

fn html(state: &AppState, status: StatusCode, body: String, ends_at: Option<&str>) -> Response {
    let response = Response::builder().status(status).content_type("text/html; charset=utf-8").body(body);
    harden(response, &content_security_policy(state, ends_at))
}

/// The error page for a refusal: the message for the user and the request id to quote,
/// never an internal detail.
fn error_page(req: &Request, state: &AppState, err: &Error) -> Response {
    let (status, message) = match err {
        Error::BadRequest { description, .. } => (StatusCode::BAD_REQUEST, description.clone()),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, EN.not_found.to_string()),
        Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, EN.rate_limited.to_string()),
        Error::InvalidLink => (StatusCode::BAD_REQUEST, err.to_string()),
        Error::Forbidden { description, .. } => (StatusCode::FORBIDDEN, description.clone()),
        Error::Conflict { description, .. } => (StatusCode::CONFLICT, description.clone()),
        Error::Busy { .. } | Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, EN.busy.to_string()),
        Error::Internal(detail) => {
            tracing::error!(%detail, "hosted page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, EN.internal.to_string())
        }
        other => {
            tracing::warn!(error = %other, "hosted page refused");
            (StatusCode::BAD_REQUEST, EN.internal.to_string())
        }
    };
    untrusted_page(req, state, status, message)
}

fn untrusted_page(req: &Request, state: &AppState, status: StatusCode, message: String) -> Response {
    let request_id = req.header(REQUEST_ID_HEADER).unwrap_or("-").to_string();
    let page = ErrorPage { chrome: Chrome::of(state), t: &EN, message, request_id };
    match page.render() {
        Ok(body) => html(state, status, body, None),
        Err(_) => html(state, StatusCode::INTERNAL_SERVER_ERROR, String::new(), None),
    }
}

fn browser_of(req: &Request, state: &AppState) -> Browser {
    Browser { sso: cookie_value(req, &state.config.sso.cookie_name), binding: cookie_value(req, BROWSER_COOKIE) }
}

fn set_cookie(response: &mut Response, state: &AppState, name: &str, cookie: NewCookie) {
    let mut built = Cookie::new_with_str(name, cookie.value.expose());
    built.set_http_only(true);
    built.set_secure(state.config.cookie.secure);
    // Lax: the cookie rides the top-level navigation a relying party starts, never a
    // cross-site POST or subresource.
    built.set_same_site(SameSite::Lax);
    built.set_path("/");
    if let Some(max_age) = cookie.max_age {
        built.set_max_age(std::time::Duration::from_secs(max_age.max(0) as u64));
    }
    if let Ok(value) = HeaderValue::from_str(&built.to_string()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// A step's outcome as a 303 to where the browser goes next, with its cookies.
fn answer(state: &AppState, outcome: Outcome) -> Response {
    let (location, ends_at) = match &outcome.next {
        Next::ToClient(url) => (url.clone(), Some(url.as_str())),
        Next::Interaction(id) => (format!("/ui/signin?interaction={id}"), None),
    };
    let mut response = Response::builder().status(StatusCode::SEE_OTHER).body(Body::empty());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    if let Some(cookie) = outcome.sso_cookie {
        set_cookie(&mut response, state, &state.config.sso.cookie_name, cookie);
    }
    if let Some(cookie) = outcome.binding_cookie {
        set_cookie(&mut response, state, BROWSER_COOKIE, cookie);
    }
    harden(response, &content_security_policy(state, ends_at))
}

/// The request's parameters: the query (GET) or the form body (POST, which must be
/// `application/x-www-form-urlencoded`, OpenID Connect Core §3.1.2.1).
async fn pairs_of(req: &Request, body: Body) -> Result<Vec<(String, String)>, Error> {
    let form = req.method() == Method::POST;
    let bytes = if form {
        let is_form = req
            .header(CONTENT_TYPE)
            .is_some_and(|ct| ct.split(';').next().is_some_and(|t| t.trim() == "application/x-www-form-urlencoded"));
        if !is_form {
            return Err(Error::bad_request(ErrorCode::InvalidRequest, EN.bad_form.to_string()));
        }
        body.into_vec().await.map_err(|_| Error::bad_request(ErrorCode::InvalidRequest, EN.bad_form.to_string()))?
    } else {
        req.uri().query().unwrap_or_default().as_bytes().to_vec()
    };
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    client_name: Option<String>,
    csrf_token: String,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    logout_state: Option<String>,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage<'a> {
    chrome: Chrome,
    t: &'a Messages,
    client_name: Option<String>,
}

/// `end_session_endpoint` (RP-Initiated Logout 1.0): GET or POST; a POST carrying
/// `csrf_token` is the confirmation page's form.
#[handler]
async fn logout(req: &Request, body: Body) -> poem::Result<Response> {
    let state = state_of(req)?;
    let pairs = match charged_pairs(req, state, body).await {
        Ok(pairs) => pairs,
        Err(page) => return Ok(page),
    };
    let confirmation = (req.method() == Method::POST)
        .then(|| pairs.iter().find(|(name, _)| name == "csrf_token").map(|(_, value)| value.clone()))
        .flatten();
    let params = match LogoutParams::from_pairs(pairs) {
        Ok(params) => params,
        Err(err) => return Ok(error_page(req, state, &err)),
    };
    let browser = browser_of(req, state);
    let ctx = request_context(req);
    let outcome = match &confirmation {
        Some(token) => sign_out::confirm(state, &params, &browser, Some(token), &ctx).await,
        None => sign_out::request(state, &params, &browser, &ctx).await,
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(err) => return Ok(error_page(req, state, &err)),
    };
    let mut response = match outcome.next {
        LogoutNext::Redirect(url) => {
            let mut response = Response::builder().status(StatusCode::SEE_OTHER).body(Body::empty());
            if let Ok(value) = HeaderValue::from_str(&url) {
                response.headers_mut().insert(LOCATION, value);
            }
            harden(response, &content_security_policy(state, Some(&url)))
        }
        LogoutNext::SignedOut => {
            let page = SignedOutPage { chrome: Chrome::of(state), t: &EN, client_name: outcome.client_name };
            rendered(req, state, page.render(), None)
        }
        LogoutNext::Confirm { csrf_token, ends_at } => {
            let page = LogoutPage {
                chrome: Chrome::of(state),
                t: &EN,
                client_name: outcome.client_name,
                csrf_token,
                client_id: outcome.client_id,
                post_logout_redirect_uri: ends_at.is_some().then(|| params.post_logout_redirect_uri.clone()).flatten(),
                logout_state: params.state.clone(),
            };
            // The form may end at the relying party's registered URI, and nowhere else.
            rendered(req, state, page.render(), ends_at.as_deref())
        }
    };
    if outcome.clear_cookie {
        clear_cookie(&mut response, state, &state.config.sso.cookie_name);
    }
    Ok(response)
}

/// The parameters of a request to an endpoint anyone may call (authorize, logout),
/// after charging the token bucket (each can write a row), or the error page.
async fn charged_pairs(req: &Request, state: &AppState, body: Body) -> Result<Vec<(String, String)>, Response> {
    if let Err(err) = charge_ip(req, Bucket::Token) {
        return Err(error_page(req, state, &err));
    }
    pairs_of(req, body).await.map_err(|err| error_page(req, state, &err))
}

/// A rendered page, or the error page when rendering failed.
fn rendered(req: &Request, state: &AppState, page: askama::Result<String>, ends_at: Option<&str>) -> Response {
    match page {
        Ok(body) => html(state, StatusCode::OK, body, ends_at),
        Err(err) => error_page(req, state, &Error::Internal(err.to_string())),
    }
}

/// Expires the cookie `name` in the browser.
fn clear_cookie(response: &mut Response, state: &AppState, name: &str) {
    set_cookie(response, state, name, NewCookie { value: Secret::new(String::new()), max_age: Some(0) });
}

#[handler]
async fn authorize(req: &Request, body: Body) -> poem::Result<Response> {
    let state = state_of(req)?;
    let pairs = match charged_pairs(req, state, body).await {
        Ok(pairs) => pairs,
        Err(page) => return Ok(page),
    };
    let params = AuthorizeParams::from_pairs(pairs);
    let browser = browser_of(req, state);
    match signin::authorize(state, params, &browser, &request_context(req)).await {
        Ok(outcome) => Ok(answer(state, outcome)),
        Err(Refused::Untrusted(description)) => Ok(untrusted_page(req, state, StatusCode::BAD_REQUEST, description)),
        Err(Refused::Failed(err)) => Ok(error_page(req, state, &err)),
    }
}

/// `GET /ui/signin?interaction=…`: the page of the interaction's stage.
#[handler]
async fn show(req: &Request) -> poem::Result<Response> {
    let state = state_of(req)?;
    let id = url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "interaction")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let view = match signin::view(state, &id, &browser_of(req, state)).await {
        Ok(view) => view,
        Err(err) => return Ok(error_page(req, state, &err)),
    };
    Ok(render(req, state, view))
}

fn render(req: &Request, state: &AppState, view: InteractionView) -> Response {
    let notice = view.notice.as_deref().map(messages::notice);
    let rendered = match view.stage.as_str() {
        signin::STAGE_SIGN_IN => SignInPage {
            chrome: Chrome::of(state),
            t: &EN,
            client_name: view.client_name,
            interaction: view.id,
            csrf_token: view.csrf_token,
            username: view.login_hint.unwrap_or_default(),
            notice,
            passkeys: view.passkeys,
            reset: state.mailer.is_some(),
        }
        .render(),
        signin::STAGE_SECOND_FACTOR => SecondFactorPage {
            chrome: Chrome::of(state),
            t: &EN,
            interaction: view.id,
            csrf_token: view.csrf_token,
            notice,
            totp: view.factors.totp,
            passkey: view.factors.passkey,
        }
        .render(),
        signin::STAGE_ENROL => {
            EnrolPage { chrome: Chrome::of(state), t: &EN, interaction: view.id, csrf_token: view.csrf_token, notice }
                .render()
        }
        _ => ConsentPage {
            chrome: Chrome::of(state),
            t: &EN,
            client_name: view.client_name,
            interaction: view.id,
            csrf_token: view.csrf_token,
            username: view.username,
            scopes: view.scopes.iter().map(|s| messages::scope(s)).collect(),
        }
        .render(),
    };
    match rendered {
        Ok(body) => html(state, StatusCode::OK, body, Some(&view.redirect_uri)),
        Err(err) => error_page(req, state, &Error::Internal(err.to_string())),
    }
}

/// A hosted form's fields, by name (each taken once; a repeated field is refused).
struct FormFields(Vec<(String, String)>);

impl FormFields {
    fn get(&self, name: &str) -> Option<&str> {
        let mut found = self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() { None } else { first }
    }

    /// The fields every hosted form carries, with the browser that posted it.
    fn post<'a>(&'a self, browser: &'a Browser) -> FormPost<'a> {
        FormPost {
            interaction: self.get("interaction").unwrap_or_default(),
            csrf_token: self.get("csrf_token"),
            browser,
        }
    }
}

/// Runs one POST step: the rate-limit bucket first, then the form, then `step`.
async fn post_step<F, Fut>(req: &Request, body: Body, bucket: Bucket, step: F) -> poem::Result<Response>
where
    F: FnOnce(FormFields, Browser) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, Error>>,
{
    let state = state_of(req)?;
    if let Err(err) = charge_ip(req, bucket) {
        return Ok(error_page(req, state, &err));
    }
    let fields = match pairs_of(req, body).await {
        Ok(pairs) => FormFields(pairs),
        Err(err) => return Ok(error_page(req, state, &err)),
    };
    match step(fields, browser_of(req, state)).await {
        Ok(outcome) => Ok(answer(state, outcome)),
        Err(err) => Ok(error_page(req, state, &err)),
    }
}

#[handler]
async fn submit_password(req: &Request, body: Body) -> poem::Result<Response> {
    let state = state_of(req)?;
    let ctx = request_context(req);
    post_step(req, body, Bucket::Login, |form, browser| async move {
        let password = Secret::new(form.get("password").unwrap_or_default().to_string());
        let username = form.get("username").unwrap_or_default();
        signin::submit_password(state, &form.post(&browser), username, &password, &ctx).await
    })
    .await
}

#[handler]
async fn submit_code(req: &Request, body: Body) -> poem::Result<Response> {
    let state = state_of(req)?;
    let ctx = request_context(req);
    post_step(req, body, Bucket::Totp, |form, browser| async move {
        let factor = match form.get("recovery_code").filter(|c| !c.trim().is_empty()) {
            Some(recovery) => SecondFactor::RecoveryCode(Secret::new(recovery.to_string())),
            None => SecondFactor::Code(form.get("code").unwrap_or_default().to_string()),
        };
        signin::submit_second_factor(state, &form.post(&browser), factor, &ctx).await
    })
    .await
}

#[handler]
async fn submit_consent(req: &Request, body: Body) -> poem::Result<Response> {
    let state = state_of(req)?;
    let ctx = request_context(req);
    post_step(req, body, Bucket::Token, |form, browser| async move {
        let allow = match form.get("decision") {
            Some("allow") => true,
            Some("deny") => false,
            _ => return Err(Error::bad_request(ErrorCode::InvalidRequest, EN.bad_form.to_string())),
        };
        signin::submit_consent(state, &form.post(&browser), allow, &ctx).await
    })
    .await
}

/// `POST /ui/signin/passkey/start`: the page's script asks for the WebAuthn options of
/// the interaction's stage (a form post with the interaction and its CSRF token, so
/// only the browser holding the sign-in can start one). JSON in both directions' sense:
/// the answer is `{ceremony_id, options}`, or our JSON error body.
#[handler]
async fn start_passkey(req: &Request, body: Body) -> poem::Result<Response> {
    let state = state_of(req)?;
    let ctx = request_context(req);
    let started = async {
        charge_ip(req, Bucket::Login)?;
        let fields = FormFields(pairs_of(req, body).await?);
        let browser = browser_of(req, state);
        signin::start_passkey(state, &fields.post(&browser), &ctx).await
    };
    Ok(passkey_options(state, started.await))
}

/// A started ceremony as the pages' script reads it, or the JSON error.
pub(super) fn passkey_options(state: &AppState, started: Result<crate::domain::passkeys::Ceremony, Error>) -> Response {
    let response = match started {
        Ok(ceremony) => {
            let body = serde_json::json!({ "ceremony_id": ceremony.id, "options": ceremony.options });
            Response::builder().content_type("application/json").body(body.to_string())
        }
        Err(err) => poem::IntoResponse::into_response(crate::api::error::ApiError::from(err)),
    };
    harden(response, &content_security_policy(state, None))
}

#[handler]
async fn submit_passkey(req: &Request, body: Body) -> poem::Result<Response> {
    let state = state_of(req)?;
    let ctx = request_context(req);
    post_step(req, body, Bucket::Login, |form, browser| async move {
        let answer = signin::PasskeyAnswer {
            ceremony: form.get("ceremony").unwrap_or_default(),
            credential: form.get("credential").unwrap_or_default(),
            name: form.get("name"),
        };
        signin::submit_passkey(state, &form.post(&browser), answer, &ctx).await
    })
    .await
}

/// The pages' one script: it runs the passkey ceremonies (the pages work without it,
/// passkeys aside).
#[handler]
fn script(req: &Request) -> poem::Result<Response> {
    let state = state_of(req)?;
    let response = Response::builder().content_type("text/javascript; charset=utf-8").body(include_str!("passkeys.js"));
    let mut response = harden(response, &content_security_policy(state, None));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    Ok(response)
}

#[handler]
fn style(req: &Request) -> poem::Result<Response> {
    let state = state_of(req)?;
    let response = Response::builder().content_type("text/css; charset=utf-8").body(include_str!("style.css"));
    let mut response = harden(response, &content_security_policy(state, None));
    // The one hosted answer that may be cached: it holds nothing of anyone's.
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    Ok(response)
}
