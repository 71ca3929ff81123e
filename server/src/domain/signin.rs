//! Signing a user in for a relying party: `/oauth2/authorize`, the hosted sign-in and
//! consent steps, the browser login session (SSO) they leave behind, and the code at
//! the end. The rules are [`super::authorize`]'s; this module stores and sequences.
//!
//! A sign-in in progress is an *interaction* row. It is bound to the browser that
//! started it by a random cookie (`lk_browser`, stored hashed on the row), and its forms
//! carry a CSRF token derived from that cookie and the interaction's id, so neither a
//! cross-site form post nor an interaction started by someone else in another browser
//! (login CSRF) can move it. Each step moves it from the stage it was read in, once.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::security::{Secret, constant_time_eq, generate_token, sha256_hex};
use crate::state::AppState;
use crate::store::TokenStore;
use crate::store::audit::NewAuditEvent;
use crate::store::authorization::{
    self as store, CodeIssue, CodeRow, ConsentRow, InteractionRow, InteractionStep, SsoSessionRow, SsoTouch,
};
use crate::store::clients::ClientRow;
use crate::store::entities::UserStatus;
use crate::store::users::{self as user_store, UserRow};
use crate::tokens::{AUTHORIZATION_CODE_PREFIX, SSO_TOKEN_PREFIX};

use super::auth::{RequestContext, check_password};
use super::authorize::{
    self, AuthorizationRequest, AuthorizeParams, CODE_TTL_SECS, RedirectError, Rejection, SignedIn,
};
use super::mfa::{self, SecondFactor};
use super::passkeys::{self, AfterPassword, Factors};
use super::{Error, ErrorCode, Result, new_id};

/// Prefix of the browser-binding cookie's value.
pub const BROWSER_TOKEN_PREFIX: &str = "lk_bb_";
/// Longest user agent kept with a login session.
const USER_AGENT_MAX: usize = 256;
/// A login session's `last_seen_at` (and so its idle deadline) moves at most once a
/// minute (or each half idle timeout, if that is shorter): each sign-in at a relying
/// party would otherwise write it, and on SQLite every write queues behind the one
/// writer. An idle deadline is then up to a minute early, never late.
const SSO_TOUCH_INTERVAL_SECS: i64 = 60;

/// The stages of an interaction, as stored.
pub const STAGE_SIGN_IN: &str = "sign_in";
pub const STAGE_SECOND_FACTOR: &str = "second_factor";
pub const STAGE_CONSENT: &str = "consent";
/// After the password, when the account's roles require a second factor it lacks: a
/// passkey is registered before the sign-in goes on.
pub const STAGE_ENROL: &str = "enrol";

/// The cookies the browser presented.
#[derive(Default)]
pub struct Browser {
    pub sso: Option<Secret<String>>,
    pub binding: Option<Secret<String>>,
}

/// A cookie value to set, with its lifetime in seconds (`None`: a session cookie).
pub struct NewCookie {
    pub value: Secret<String>,
    pub max_age: Option<i64>,
}

/// Where the browser goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Back to the relying party (a code or an error), at this URL.
    ToClient(String),
    /// To the hosted page of this interaction.
    Interaction(String),
}

/// A step's result: where to go, and cookies to set on the way.
pub struct Outcome {
    pub next: Next,
    pub sso_cookie: Option<NewCookie>,
    pub binding_cookie: Option<NewCookie>,
}

impl Outcome {
    fn to(next: Next) -> Self {
        Self { next, sso_cookie: None, binding_cookie: None }
    }
}

/// Why the authorization endpoint answers with an error page instead of a redirect.
#[derive(Debug)]
pub enum Refused {
    /// The client or redirect URI cannot be trusted (400 page).
    Untrusted(String),
    /// Anything else that went wrong on our side.
    Failed(Error),
}

impl From<Error> for Refused {
    fn from(err: Error) -> Self {
        Refused::Failed(err)
    }
}

/// The URL an error goes back to the client at (RFC 6749 §4.1.2.1, with RFC 9207 `iss`).
pub fn error_redirect(state: &AppState, error: &RedirectError) -> String {
    let mut pairs = vec![("error", error.error), ("error_description", error.description.as_str())];
    if let Some(value) = &error.state {
        pairs.push(("state", value));
    }
    pairs.push(("iss", &state.config.issuer));
    authorize::with_query(&error.redirect_uri, &pairs)
}

/// `GET|POST /oauth2/authorize`.
pub async fn authorize(
    state: &AppState,
    params: AuthorizeParams,
    browser: &Browser,
    ctx: &RequestContext,
) -> Result<Outcome, Refused> {
    let client = match params.client_id.as_deref() {
        Some(id) if id.len() <= 64 => state.tokens.client(id).await.map_err(Error::from)?,
        _ => None,
    };
    let request = match authorize::check_request(client.as_ref(), &params) {
        Ok(request) => request,
        Err(Rejection::Page { description }) => return Err(Refused::Untrusted(description)),
        Err(Rejection::Redirect(error)) => return Ok(Outcome::to(Next::ToClient(error_redirect(state, &error)))),
    };
    let Some(client) = client else { return Err(Error::Internal("a checked request has a client".into()).into()) };
    let now = ctx.now;
    let session = live_sso_session(state, browser, now).await?;
    let signed_in = session.as_ref().map(|(s, _)| SignedIn { user_id: &s.user_id, auth_time: s.auth_time });
    let hint_mismatch = match (&request.id_token_hint, &session) {
        (Some(hint), Some((sso, _))) => !hint_names(state, hint, &sso.user_id),
        _ => false,
    };
    let refuse = |error, description: &str| {
        let error = RedirectError::new(&request, error, description);
        Ok(Outcome::to(Next::ToClient(error_redirect(state, &error))))
    };
    let lacks_required_factor = match &session {
        Some((sso, _)) => lacks_required_factor(state, &sso.user_id, &sso.amr).await?,
        None => false,
    };
    if authorize::needs_sign_in(&request, signed_in, now) || hint_mismatch || lacks_required_factor {
        // Not audited: a silent check from a page nobody signed in to is not an event.
        if request.prompt.none {
            return refuse("login_required", "the user is not signed in");
        }
        return Ok(start_interaction(state, &request, browser, None, ctx).await?);
    }
    let Some((sso, user)) = session else { return Err(Error::Internal("a session was needed".into()).into()) };
    let consent = remembered_consent(state, &client, &user.id).await?;
    if authorize::needs_consent(&client, &request, consent.as_ref().map(|c| c.scope.as_str())) {
        if request.prompt.none {
            return refuse("consent_required", "the user has not consented to this application");
        }
        return Ok(start_interaction(state, &request, browser, Some(&sso), ctx).await?);
    }
    let signed = SignedInAs {
        user_id: &user.id,
        sso_session_id: Some(&sso.id),
        touch: touch_due(state, &sso, now),
        auth_time: sso.auth_time,
        amr: &sso.amr,
    };
    Ok(issue_code(state, &request, signed, None, ctx).await?)
}

/// Whether a login session of `user_id` signed in with `amr` falls short of
/// `mfa.require_for_roles` (it began before the policy or the role): the user signs in
/// again, with the second factor, or enrols one.
async fn lacks_required_factor(state: &AppState, user_id: &str, amr: &str) -> Result<bool> {
    if passkeys::amr_meets_policy(amr) {
        return Ok(false);
    }
    passkeys::requires_second_factor(state, user_id).await
}

/// A user's remembered consent to a third-party client; first-party clients never ask,
/// so nothing is read for them.
async fn remembered_consent(state: &AppState, client: &ClientRow, user_id: &str) -> Result<Option<ConsentRow>> {
    if client.first_party {
        return Ok(None);
    }
    Ok(store::consent(&state.db, user_id, &client.client_id).await?)
}

/// The live login session the browser's cookie names, with its active user.
pub(crate) async fn live_sso_session(
    state: &AppState,
    browser: &Browser,
    now: i64,
) -> Result<Option<(SsoSessionRow, UserRow)>> {
    let Some(token) = &browser.sso else { return Ok(None) };
    let Some((session, Some(user))) = state.tokens.sso_session(&sha256_hex(token.expose())).await? else {
        return Ok(None);
    };
    if !session.is_live(now) || user.status != UserStatus::Active {
        return Ok(None);
    }
    Ok(Some((session, user)))
}

/// The touch a use of `session` at `now` records with the code it issues, when one is
/// due (see [`SSO_TOUCH_INTERVAL_SECS`]).
fn touch_due(state: &AppState, session: &SsoSessionRow, now: i64) -> Option<SsoTouch> {
    let idle = state.config.sso.idle_timeout.as_secs() as i64;
    (now - session.last_seen_at >= SSO_TOUCH_INTERVAL_SECS.min(idle / 2)).then(|| SsoTouch {
        id: session.id.clone(),
        now,
        idle_expires_at: (now + idle).min(session.absolute_expires_at),
    })
}

/// Whether an `id_token_hint` we signed names `user_id` (its expiry does not matter,
/// Core §3.1.2.1; an unverifiable hint names nobody).
fn hint_names(state: &AppState, hint: &str, user_id: &str) -> bool {
    crate::tokens::id_token::verified_subject(hint, &state.keys.current(), &state.config.issuer)
        .is_some_and(|sub| sub == user_id)
}

/// The user refused the application at the consent page.
async fn audit_denied(
    state: &AppState,
    request: &AuthorizationRequest,
    user_id: &str,
    ctx: &RequestContext,
) -> Result<()> {
    let event = NewAuditEvent::success(ctx.now, user_id, "authorization.denied", &request.client_id)
        .outcome("access_denied")
        .ip(ctx.ip.clone());
    crate::store::audit::record_alone(&state.db, event).await?;
    Ok(())
}

/// Stores a new interaction and sends the browser to its page; `signed_in` is the login
/// session that already authenticates the user (the interaction then only asks consent).
async fn start_interaction(
    state: &AppState,
    request: &AuthorizationRequest,
    browser: &Browser,
    signed_in: Option<&SsoSessionRow>,
    ctx: &RequestContext,
) -> Result<Outcome> {
    let now = ctx.now;
    let (binding, binding_cookie) = binding_of(browser);
    let id = new_id();
    let params = serde_json::to_string(request).map_err(|e| Error::Internal(e.to_string()))?;
    let row = InteractionRow {
        id: id.clone(),
        browser_hash: sha256_hex(binding.expose()),
        client_id: request.client_id.clone(),
        params,
        user_id: signed_in.map(|s| s.user_id.clone()),
        amr: signed_in.map(|s| s.amr.clone()),
        auth_time: signed_in.map(|s| s.auth_time),
        stage: if signed_in.is_some() { STAGE_CONSENT } else { STAGE_SIGN_IN }.to_string(),
        notice: None,
        created_at: now,
        expires_at: now + state.config.sso.sign_in_timeout.as_secs() as i64,
    };
    store::create_interaction(&state.db, row).await?;
    Ok(Outcome { next: Next::Interaction(id), sso_cookie: None, binding_cookie })
}

/// The browser's binding value, and the cookie that sets a new one when it has none.
pub fn binding_of(browser: &Browser) -> (Secret<String>, Option<NewCookie>) {
    match &browser.binding {
        Some(value) if value.expose().starts_with(BROWSER_TOKEN_PREFIX) => (Secret::new(value.expose().clone()), None),
        _ => {
            let value = generate_token(BROWSER_TOKEN_PREFIX);
            (Secret::new(value.expose().clone()), Some(NewCookie { value, max_age: None }))
        }
    }
}

/// The CSRF token of an interaction's forms in the browser holding `binding`.
pub fn csrf_token(binding: &Secret<String>, interaction_id: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, binding.expose().as_bytes());
    URL_SAFE_NO_PAD.encode(hmac::sign(&key, interaction_id.as_bytes()).as_ref())
}

/// An interaction as its page shows it.
pub struct InteractionView {
    pub id: String,
    pub stage: String,
    pub client_name: String,
    /// The scopes the client asks for (consent page).
    pub scopes: Vec<String>,
    pub login_hint: Option<String>,
    pub notice: Option<String>,
    pub csrf_token: String,
    /// Where the sign-in ends (the pages' `form-action` allows its origin).
    pub redirect_uri: String,
    pub username: Option<String>,
    /// The second factors the user can use (second-factor stage).
    pub factors: Factors,
    /// Whether passkeys work here (the sign-in page offers one).
    pub passkeys: bool,
}

/// An interaction, if this browser started it and it is still running.
async fn held_interaction(
    state: &AppState,
    id: &str,
    browser: &Browser,
    now: i64,
) -> Result<(InteractionRow, AuthorizationRequest, Secret<String>)> {
    let expired = || {
        Error::bad_request(
            ErrorCode::InvalidRequest,
            "This sign-in has expired or is already finished. Go back to the application and start again.",
        )
    };
    if id.len() > 64 {
        return Err(expired());
    }
    let row = state.tokens.interaction(id).await?.ok_or_else(expired)?;
    if row.expires_at <= now {
        return Err(expired());
    }
    let Some(binding) = &browser.binding else {
        return Err(Error::bad_request(
            ErrorCode::CsrfCheckFailed,
            "This sign-in was started in another browser, or cookies are blocked.",
        ));
    };
    if !constant_time_eq(sha256_hex(binding.expose()).as_bytes(), row.browser_hash.as_bytes()) {
        return Err(Error::bad_request(ErrorCode::CsrfCheckFailed, "This sign-in was started in another browser."));
    }
    let request: AuthorizationRequest =
        serde_json::from_str(&row.params).map_err(|e| Error::Internal(format!("stored request: {e}")))?;
    Ok((row, request, Secret::new(binding.expose().clone())))
}

/// Checks the form's CSRF token against the interaction (or page) and the browser.
pub fn check_csrf(binding: &Secret<String>, id: &str, presented: Option<&str>) -> Result<()> {
    let expected = csrf_token(binding, id);
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(Error::bad_request(
            ErrorCode::CsrfCheckFailed,
            "The form was missing its security token. Reload the page and try again.",
        )),
    }
}

/// A form a hosted page posted: the sign-in it moves, the CSRF token it carried, and the
/// browser it came from.
pub struct FormPost<'a> {
    pub interaction: &'a str,
    pub csrf_token: Option<&'a str>,
    pub browser: &'a Browser,
}

impl FormPost<'_> {
    /// The interaction, if this browser holds it and the form's token is its own.
    async fn open(&self, state: &AppState, now: i64) -> Result<(InteractionRow, AuthorizationRequest)> {
        let (row, request, binding) = held_interaction(state, self.interaction, self.browser, now).await?;
        check_csrf(&binding, &row.id, self.csrf_token)?;
        Ok((row, request))
    }
}

/// `GET` of an interaction's page.
pub async fn view(state: &AppState, id: &str, browser: &Browser) -> Result<InteractionView> {
    let (row, request, binding) = held_interaction(state, id, browser, state.now()).await?;
    let client = state.tokens.client(&row.client_id).await?.ok_or(Error::NotFound("client"))?;
    let user = match &row.user_id {
        Some(user_id) => user_store::find_by_id(&state.db, user_id).await?,
        None => None,
    };
    let factors = match &user {
        Some(user) if row.stage == STAGE_SECOND_FACTOR => Factors::of(state, user).await?,
        _ => Factors::default(),
    };
    Ok(InteractionView {
        csrf_token: csrf_token(&binding, &row.id),
        id: row.id,
        stage: row.stage,
        client_name: client.name,
        scopes: request.scope.split_ascii_whitespace().map(str::to_string).collect(),
        login_hint: request.login_hint,
        notice: row.notice,
        redirect_uri: request.redirect_uri,
        username: user.map(|u| u.username),
        factors,
        passkeys: passkeys::available(state),
    })
}

/// Leaves a message for the next render of the page and sends the browser back to it;
/// `typed` (the username of a refused password) fills the field again.
async fn back_with_notice(
    state: &AppState,
    row: &InteractionRow,
    request: &AuthorizationRequest,
    notice: &str,
    typed: Option<&str>,
) -> Result<Outcome> {
    let params = match typed {
        Some(username) => {
            let request =
                AuthorizationRequest { login_hint: Some(username.chars().take(256).collect()), ..request.clone() };
            Some(serde_json::to_string(&request).map_err(|e| Error::Internal(e.to_string()))?)
        }
        None => None,
    };
    let step = InteractionStep { notice: Some(Some(notice.to_string())), params, ..Default::default() };
    store::advance_interaction(&state.db, &row.id, &row.stage, step).await?;
    Ok(Outcome::to(Next::Interaction(row.id.clone())))
}

/// What the page says after a refused password or code: a key the pages' messages
/// spell out. Lockouts and disabled accounts read like a wrong password (no
/// account-state oracle).
fn notice_for(err: &Error) -> Option<&'static str> {
    match err {
        Error::InvalidCredentials => Some(NOTICE_INVALID_CREDENTIALS),
        Error::InvalidSecondFactor => Some(NOTICE_INVALID_CODE),
        Error::RateLimited { .. } => Some(NOTICE_RATE_LIMITED),
        Error::Busy { .. } => Some(NOTICE_BUSY),
        Error::BadRequest { .. } => Some(NOTICE_INVALID_CREDENTIALS),
        Error::Forbidden { code: ErrorCode::EmailNotVerified, .. } => Some(NOTICE_EMAIL_NOT_VERIFIED),
        _ => None,
    }
}

pub const NOTICE_INVALID_CREDENTIALS: &str = "invalid_credentials";
pub const NOTICE_INVALID_CODE: &str = "invalid_code";
pub const NOTICE_RATE_LIMITED: &str = "rate_limited";
pub const NOTICE_BUSY: &str = "busy";
pub const NOTICE_EMAIL_NOT_VERIFIED: &str = "email_not_verified";

/// `POST` of the password form.
pub async fn submit_password(
    state: &AppState,
    post: &FormPost<'_>,
    username: &str,
    password: &Secret<String>,
    ctx: &RequestContext,
) -> Result<Outcome> {
    let (row, request) = post.open(state, ctx.now).await?;
    if row.stage != STAGE_SIGN_IN {
        return Ok(Outcome::to(Next::Interaction(row.id)));
    }
    let user = match check_password(state, username, password, ctx).await {
        Ok(user) => user,
        Err(err) => match notice_for(&err) {
            Some(notice) => return back_with_notice(state, &row, &request, notice, Some(username)).await,
            None => return Err(err),
        },
    };
    let next_stage = match passkeys::after_password(state, &user).await? {
        AfterPassword::Done => return signed_in(state, &row, &request, &user, &["pwd"], post.browser, ctx).await,
        AfterPassword::SecondFactor(_) => STAGE_SECOND_FACTOR,
        // Enrolment needs WebAuthn, so a server without passkeys refuses the sign-in.
        AfterPassword::MustEnrol if !passkeys::available(state) => return Err(passkeys::enrolment_required()),
        AfterPassword::MustEnrol => STAGE_ENROL,
    };
    let step = InteractionStep {
        stage: Some(next_stage),
        user_id: Some(user.id.clone()),
        amr: Some("pwd".into()),
        notice: Some(None),
        ..Default::default()
    };
    store::advance_interaction(&state.db, &row.id, STAGE_SIGN_IN, step).await?;
    Ok(Outcome::to(Next::Interaction(row.id)))
}

/// `POST` of the second-factor form: a TOTP code or a recovery code.
pub async fn submit_second_factor(
    state: &AppState,
    post: &FormPost<'_>,
    factor: SecondFactor,
    ctx: &RequestContext,
) -> Result<Outcome> {
    let (row, request) = post.open(state, ctx.now).await?;
    let user_id = row.user_id.as_deref().filter(|_| row.stage == STAGE_SECOND_FACTOR);
    let Some(user_id) = user_id else { return Ok(Outcome::to(Next::Interaction(row.id))) };
    let user = user_store::find_by_id(&state.db, user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or_else(|| Error::bad_request(ErrorCode::InvalidRequest, "This account cannot sign in."))?;
    if let Err(err) = mfa::verify_second_factor(state, &user, &factor, ctx, None).await {
        return match notice_for(&err) {
            Some(notice) => back_with_notice(state, &row, &request, notice, None).await,
            None => Err(err),
        };
    }
    signed_in(state, &row, &request, &user, mfa::AMR_PASSWORD_AND_OTP, post.browser, ctx).await
}

/// The interaction's user, when it is at `stage` (and still active).
async fn user_at(state: &AppState, row: &InteractionRow, stage: &str) -> Result<Option<UserRow>> {
    let Some(user_id) = row.user_id.as_deref().filter(|_| row.stage == stage) else { return Ok(None) };
    let user = user_store::find_by_id(&state.db, user_id).await?.filter(|u| u.status == UserStatus::Active);
    user.map(Some).ok_or_else(|| Error::bad_request(ErrorCode::InvalidRequest, "This account cannot sign in."))
}

/// `POST /ui/signin/passkey/start` (the page's script): the WebAuthn options for the
/// interaction's stage — a usernameless sign-in, the second factor of the user whose
/// password was checked, or the registration the account must make first.
pub async fn start_passkey(state: &AppState, post: &FormPost<'_>, ctx: &RequestContext) -> Result<passkeys::Ceremony> {
    let (row, _) = post.open(state, ctx.now).await?;
    let not_waiting = || Error::bad_request(ErrorCode::InvalidRequest, "This sign-in is not waiting for a passkey.");
    match row.stage.as_str() {
        STAGE_SIGN_IN => passkeys::start_sign_in(state, None).await,
        STAGE_SECOND_FACTOR => match user_at(state, &row, STAGE_SECOND_FACTOR).await? {
            Some(user) => passkeys::start_sign_in(state, Some(&user)).await,
            None => Err(not_waiting()),
        },
        STAGE_ENROL => match user_at(state, &row, STAGE_ENROL).await? {
            Some(user) => passkeys::start_registration(state, &user).await,
            None => Err(not_waiting()),
        },
        _ => Err(not_waiting()),
    }
}

/// What the browser answered a passkey ceremony of the sign-in with.
pub struct PasskeyAnswer<'a> {
    pub ceremony: &'a str,
    /// `PublicKeyCredential.toJSON()`, as the form carried it.
    pub credential: &'a str,
    /// The name of a passkey being registered.
    pub name: Option<&'a str>,
}

pub const NOTICE_PASSKEY_FAILED: &str = "passkey_failed";
pub const NOTICE_PASSKEY_ADDED: &str = "passkey_added";

/// `POST /ui/signin/passkey`: the passkey answered; by the interaction's stage, the user
/// is signed in with it alone, or with password and passkey, or (enrolment) has
/// registered one and is asked to use it as the second factor.
pub async fn submit_passkey(
    state: &AppState,
    post: &FormPost<'_>,
    answer: PasskeyAnswer<'_>,
    ctx: &RequestContext,
) -> Result<Outcome> {
    let (row, request) = post.open(state, ctx.now).await?;
    let result = passkey_step(state, &row, &answer, ctx).await;
    let (user, amr) = match result {
        Ok(Some(done)) => done,
        Ok(None) => return Ok(Outcome::to(Next::Interaction(row.id))),
        Err(Error::InvalidPasskey(_) | Error::BadRequest { .. } | Error::Conflict { .. }) => {
            return back_with_notice(state, &row, &request, NOTICE_PASSKEY_FAILED, None).await;
        }
        Err(err) => return Err(err),
    };
    signed_in(state, &row, &request, &user, amr, post.browser, ctx).await
}

/// The passkey step of `row`'s stage: who signed in and how, or `None` when the stage
/// takes no passkey.
async fn passkey_step(
    state: &AppState,
    row: &InteractionRow,
    answer: &PasskeyAnswer<'_>,
    ctx: &RequestContext,
) -> Result<Option<(UserRow, &'static [&'static str])>> {
    let credential: serde_json::Value = serde_json::from_str(answer.credential)
        .map_err(|_| Error::bad_request(ErrorCode::InvalidRequest, "The passkey's answer is missing."))?;
    match row.stage.as_str() {
        STAGE_SIGN_IN => {
            let done = passkeys::finish_sign_in(state, answer.ceremony, None, credential, ctx).await?;
            Ok(Some((done.user, passkeys::AMR_PASSKEY)))
        }
        STAGE_SECOND_FACTOR => {
            let Some(user) = user_at(state, row, STAGE_SECOND_FACTOR).await? else { return Ok(None) };
            passkeys::finish_sign_in(state, answer.ceremony, Some(&user.id), credential, ctx).await?;
            Ok(Some((user, passkeys::AMR_PASSWORD_AND_PASSKEY)))
        }
        STAGE_ENROL => {
            let Some(user) = user_at(state, row, STAGE_ENROL).await? else { return Ok(None) };
            let name = answer.name.filter(|n| !n.trim().is_empty()).unwrap_or("Passkey");
            passkeys::finish_registration(state, &user, answer.ceremony, name, credential, ctx).await?;
            // Making a passkey is not signing in with it: the new passkey now answers as
            // the second factor, so the session's amr says what was proved.
            let step = InteractionStep {
                stage: Some(STAGE_SECOND_FACTOR),
                notice: Some(Some(NOTICE_PASSKEY_ADDED.into())),
                ..Default::default()
            };
            store::advance_interaction(&state.db, &row.id, STAGE_ENROL, step).await?;
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// The user proved who they are: a new login session for this browser (ending the one it
/// had), then consent or the code.
async fn signed_in(
    state: &AppState,
    row: &InteractionRow,
    request: &AuthorizationRequest,
    user: &UserRow,
    amr: &[&str],
    browser: &Browser,
    ctx: &RequestContext,
) -> Result<Outcome> {
    let now = ctx.now;
    let token = generate_token(SSO_TOKEN_PREFIX);
    let sso = &state.config.sso;
    let amr_text = amr.join(" ");
    let old_token_hash = browser.sso.as_ref().map(|old| sha256_hex(old.expose()));
    let previous = match &old_token_hash {
        Some(hash) => state.tokens.sso_session(hash).await?.map(|(s, _)| s),
        None => None,
    };
    let idle = sso.idle_timeout.as_secs() as i64;
    let details = serde_json::json!({ "client_id": request.client_id, "amr": amr, "via": "sign_in_page" });
    // The same user signing in again (prompt=login, max_age) keeps the browser's login
    // session, with a new cookie: its sid, and the relying parties signed in through
    // it, go on, so a later sign-out still reaches every one of them.
    let again = previous.as_ref().filter(|p| p.is_live(now) && p.user_id == user.id);
    let reauthenticated = match again {
        Some(previous) => {
            let event = NewAuditEvent::success(now, &user.id, "login", &previous.id)
                .ip(ctx.ip.clone())
                .details(details.clone());
            let hash = sha256_hex(token.expose());
            let again = store::Reauthentication {
                id: &previous.id,
                old_token_hash: old_token_hash.as_deref().unwrap_or_default(),
                token_hash: &hash,
                amr: &amr_text,
                idle_expires_at: (now + idle).min(previous.absolute_expires_at),
                ip: ctx.ip.clone(),
                user_agent: ctx.user_agent.as_ref().map(|ua| ua.chars().take(USER_AGENT_MAX).collect()),
                now,
            };
            if !store::reauthenticate_sso_session(&state.db, again, event).await? {
                // Another sign-in of this browser renewed it first (a double submit):
                // that one carries on; this one is over.
                return Err(Error::bad_request(
                    ErrorCode::InvalidRequest,
                    "This sign-in can no longer be completed. Go back to the application and try again.",
                ));
            }
            Some((previous.id.clone(), previous.absolute_expires_at))
        }
        None => None,
    };
    let (sso_id, absolute_expires_at) = match reauthenticated {
        Some(kept) => kept,
        None => {
            let absolute_expires_at = now + sso.absolute_lifetime.as_secs() as i64;
            let session = SsoSessionRow {
                id: new_id(),
                token_hash: sha256_hex(token.expose()),
                user_id: user.id.clone(),
                created_at: now,
                last_seen_at: now,
                idle_expires_at: (now + idle).min(absolute_expires_at),
                absolute_expires_at,
                auth_time: now,
                amr: amr_text.clone(),
                ip: ctx.ip.clone(),
                user_agent: ctx.user_agent.as_ref().map(|ua| ua.chars().take(USER_AGENT_MAX).collect()),
                revoked_at: None,
                revoked_reason: None,
            };
            let sso_id = session.id.clone();
            let event = NewAuditEvent::success(now, &user.id, "login", &sso_id).ip(ctx.ip.clone()).details(details);
            // Another user's session on this browser ends as at a sign-out: the relying
            // parties it signed in to are signed out and told.
            let replaces = previous.as_ref().map(|p| store::Replaced {
                id: &p.id,
                ends_its_sessions: p.user_id != user.id,
                keep_offline: sso.offline_sessions_outlive_browser,
            });
            store::create_sso_session(&state.db, session, replaces, event).await?;
            (sso_id, absolute_expires_at)
        }
    };
    state.metrics.tokens_issued.with_label_values(&["sign_in_page"]).inc();
    let cookie = NewCookie { value: token, max_age: Some(absolute_expires_at - now) };
    let client = state.tokens.client(&request.client_id).await?.ok_or(Error::NotFound("client"))?;
    let consent = remembered_consent(state, &client, &user.id).await?;
    let mut outcome = if authorize::needs_consent(&client, request, consent.as_ref().map(|c| c.scope.as_str())) {
        let step = InteractionStep {
            stage: Some(STAGE_CONSENT),
            user_id: Some(user.id.clone()),
            amr: Some(amr_text),
            auth_time: Some(now),
            notice: Some(None),
            params: None,
        };
        store::advance_interaction(&state.db, &row.id, &row.stage, step).await?;
        Outcome::to(Next::Interaction(row.id.clone()))
    } else {
        let signed = SignedInAs {
            user_id: &user.id,
            sso_session_id: Some(&sso_id),
            touch: None,
            auth_time: now,
            amr: &amr_text,
        };
        issue_code(state, request, signed, Some(&row.id), ctx).await?
    };
    outcome.sso_cookie = Some(cookie);
    Ok(outcome)
}

/// `POST` of the consent form.
pub async fn submit_consent(
    state: &AppState,
    post: &FormPost<'_>,
    allow: bool,
    ctx: &RequestContext,
) -> Result<Outcome> {
    let (row, request) = post.open(state, ctx.now).await?;
    let (Some(user_id), Some(auth_time), Some(amr)) = (&row.user_id, row.auth_time, &row.amr) else {
        return Ok(Outcome::to(Next::Interaction(row.id)));
    };
    if row.stage != STAGE_CONSENT {
        return Ok(Outcome::to(Next::Interaction(row.id)));
    }
    let now = ctx.now;
    if !allow {
        store::delete_interaction(&state.db, &row.id).await?;
        audit_denied(state, &request, user_id, ctx).await?;
        let error = RedirectError::new(&request, "access_denied", "the user denied the request");
        return Ok(Outcome::to(Next::ToClient(error_redirect(state, &error))));
    }
    let remembered = store::consent(&state.db, user_id, &request.client_id).await?;
    let mut scopes: Vec<&str> =
        remembered.as_ref().map(|c| c.scope.split_ascii_whitespace().collect()).unwrap_or_default();
    for scope in request.scope.split_ascii_whitespace() {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let consent = ConsentRow {
        user_id: user_id.clone(),
        client_id: request.client_id.clone(),
        scope: scopes.join(" "),
        granted_at: now,
    };
    let event = NewAuditEvent::success(now, user_id, "consent.granted", &request.client_id)
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "scope": consent.scope }));
    store::save_consent(&state.db, consent, event).await?;
    // The login session the consent was given in (the newest of this user's live ones in
    // this browser); without one, the code names none.
    let sso = live_sso_session(state, post.browser, now).await?.filter(|(s, _)| &s.user_id == user_id).map(|(s, _)| s);
    let signed = SignedInAs {
        user_id,
        sso_session_id: sso.as_ref().map(|s| s.id.as_str()),
        touch: sso.as_ref().and_then(|s| touch_due(state, s, now)),
        auth_time,
        amr,
    };
    issue_code(state, &request, signed, Some(&row.id), ctx).await
}

/// Who the code is for, and how they signed in.
struct SignedInAs<'a> {
    user_id: &'a str,
    /// `None` when no login session backs it.
    sso_session_id: Option<&'a str>,
    /// The login session's touch, when one is due.
    touch: Option<SsoTouch>,
    auth_time: i64,
    amr: &'a str,
}

/// Issues the code and sends the browser back to the client with it; `finishes` is the
/// interaction that ends here (a second finish of it is refused).
async fn issue_code(
    state: &AppState,
    request: &AuthorizationRequest,
    signed: SignedInAs<'_>,
    finishes: Option<&str>,
    ctx: &RequestContext,
) -> Result<Outcome> {
    let now = ctx.now;
    let code = generate_token(AUTHORIZATION_CODE_PREFIX);
    let row = CodeRow {
        code_hash: sha256_hex(code.expose()),
        client_id: request.client_id.clone(),
        user_id: signed.user_id.to_string(),
        sso_session_id: signed.sso_session_id.map(str::to_string),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        scope: request.scope.clone(),
        nonce: request.nonce.clone(),
        auth_time: signed.auth_time,
        amr: signed.amr.to_string(),
        created_at: now,
        expires_at: now + CODE_TTL_SECS,
        used_at: None,
        session_id: None,
        dpop_jkt: request.dpop_jkt.clone(),
    };
    let event = NewAuditEvent::success(now, signed.user_id, "authorization.granted", &request.client_id)
        .ip(ctx.ip.clone())
        .details(serde_json::json!({ "scope": request.scope }));
    let issue = CodeIssue { code: row, finishes: finishes.map(str::to_string), touch: signed.touch, event };
    if !state.tokens.issue_code(issue).await? {
        return Err(Error::bad_request(
            ErrorCode::InvalidRequest,
            "This sign-in is already finished. Go back to the application.",
        ));
    }
    let mut pairs = vec![("code", code.expose().as_str())];
    if let Some(value) = &request.state {
        pairs.push(("state", value));
    }
    pairs.push(("iss", &state.config.issuer));
    Ok(Outcome::to(Next::ToClient(authorize::with_query(&request.redirect_uri, &pairs))))
}

/// The roles a client's user tokens may carry: all of them for first-party clients;
/// for others the client's filter, or by default every role but the built-in `admin`
/// (so an app the user signs in to never learns who administers Latchkey, and its
/// tokens, which never carry our audience, could not use the role anyway).
pub fn visible_roles(client: &ClientRow, roles: Vec<String>) -> Vec<String> {
    if client.first_party {
        return roles;
    }
    match &client.role_filter {
        Some(filter) => {
            let allowed: Vec<&str> = filter.split_ascii_whitespace().collect();
            roles.into_iter().filter(|r| allowed.contains(&r.as_str())).collect()
        }
        None => roles.into_iter().filter(|r| r != user_store::ADMIN_ROLE).collect(),
    }
}
