//! `/auth/*`: the first-party browser flow. JSON in, JSON out; the refresh token lives
//! only in an HttpOnly cookie scoped to this prefix and never appears in a body.

use crate::store::TokenStore;
use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::bearer::BearerAuth;
use super::browser::{clear_refresh_cookie, request_context};
use super::documented::{ClientIdWord, IdWord};
use super::dpop::proved_context;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::models::{
    AccessTokenResponse, ChangePasswordRequest, LoginRequest, LoginResponse, MfaLoginRequest, PasswordRequest,
    RecoveryCodesResponse, RegisterRequest, SessionResponse, TotpCodeRequest, TotpDisableRequest, TotpSetupResponse,
    UserResponse,
};
use super::models::{BrowserSessionResponse, ConsentResponse};
use super::models::{
    EmailChangeRequest, EmailVerifyRequest, MailAccepted, PasswordResetCompleteRequest, PasswordResetRequest,
};
use super::models::{
    PasskeyCeremonyResponse, PasskeyLoginFinishRequest, PasskeyLoginStartRequest, PasskeyRegisterFinishRequest,
    PasskeyRenameRequest, PasskeyResponse,
};
use super::route_facts::{Charged, CookieEndpoint, buckets};
use crate::domain::auth::IssuedTokens;
use crate::domain::grants;
use crate::domain::mfa::{self, LoginOutcome, SecondFactor};
use crate::domain::passkeys;
use crate::domain::rbac::Grantor;
use crate::domain::sessions::{self, REASON_LOGOUT, REASON_LOGOUT_ALL, SPA_CLIENT_ID};
use crate::domain::users::{self, NewAccount};
use crate::domain::{Error, ErrorCode};
use crate::security::Secret;
use crate::state::AppState;

#[derive(Default)]
pub struct AuthApi;

#[derive(ApiResponse)]
enum RegisterResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<UserResponse>),
}

#[derive(ApiResponse)]
enum TokenIssued {
    /// An access token; the rotated refresh token is in the `Set-Cookie` header.
    #[oai(status = 200)]
    Ok(Json<AccessTokenResponse>, #[oai(header = "Set-Cookie")] String, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
enum LoginResult {
    /// Tokens (refresh token in `Set-Cookie`), or `mfa_required` with an `mfa_token`.
    #[oai(status = 200)]
    Ok(Json<LoginResponse>, #[oai(header = "Set-Cookie")] Option<String>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
enum Ceremony {
    /// The ceremony's id and the options for the browser's WebAuthn call.
    #[oai(status = 200)]
    Ok(Json<PasskeyCeremonyResponse>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
enum PasskeyCreated {
    /// The passkey is registered.
    #[oai(status = 201)]
    Created(Json<PasskeyResponse>),
}

#[derive(ApiResponse)]
enum TotpSetup {
    #[oai(status = 200)]
    Ok(Json<TotpSetupResponse>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
enum RecoveryCodes {
    #[oai(status = 200)]
    Ok(Json<RecoveryCodesResponse>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
enum LoggedOut {
    /// Done; the refresh cookie is cleared.
    #[oai(status = 204)]
    NoContent(#[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
enum MeResponse {
    #[oai(status = 200)]
    Ok(Json<UserResponse>),
}

#[derive(ApiResponse)]
enum SessionListResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<SessionResponse>>),
}

#[derive(ApiResponse)]
enum Accepted {
    /// Taken; any mail it needs is queued.
    #[oai(status = 202)]
    Accepted(Json<MailAccepted>, #[oai(header = "Cache-Control")] String),
}

fn accepted(description: &str) -> Accepted {
    Accepted::Accepted(
        Json(MailAccepted { status: "accepted".into(), description: description.into() }),
        "no-store".into(),
    )
}

/// A change that answers nothing but success (TOTP off, password changed, a session
/// revoked).
#[derive(ApiResponse)]
enum Done {
    #[oai(status = 204)]
    NoContent,
}

/// The answer to a cookie login or refresh made at `now` (the request's instant).
fn issued(state: &AppState, endpoint: &CookieEndpoint, tokens: IssuedTokens, now: i64) -> TokenIssued {
    let cookie = match (&tokens.refresh_token, tokens.refresh_expires_at) {
        (Some(token), Some(expires_at)) => endpoint.set_refresh_cookie(&state.config, token, expires_at - now),
        _ => clear_refresh_cookie(&state.config),
    };
    TokenIssued::Ok(
        Json(AccessTokenResponse {
            token_type: tokens.token_type().into(),
            access_token: tokens.access_token,
            expires_in: tokens.expires_in,
            scope: tokens.scope,
        }),
        cookie,
        "no-store".into(),
    )
}

/// On the cookie endpoints a dead refresh token means "log in again": 401, not 400.
/// A token rotated moments ago by a concurrent tab is 409: retry with the new cookie.
fn cookie_flow_error(err: Error) -> ApiError {
    match err {
        Error::OAuth { code: ErrorCode::InvalidGrant, description } => ApiError::Unauthorized(
            ErrorBody::new(ErrorCode::InvalidGrant, description),
            r#"Bearer realm="latchkey""#.into(),
        ),
        Error::RefreshRaced => {
            ApiError::Conflict(ErrorBody::new(ErrorCode::InvalidGrant, Error::RefreshRaced.to_string()))
        }
        other => other.into(),
    }
}

#[OpenApi(prefix_path = "/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account (when registration is enabled).
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        _charged: Charged<buckets::Register>,
        state: Data<&AppState>,
        req: &Request,
        body: Json<RegisterRequest>,
    ) -> ApiResult<RegisterResponse> {
        if !state.config.registration_enabled {
            return Err(ApiError::forbidden(ErrorCode::RegistrationDisabled, "self-registration is disabled"));
        }
        let body = body.0;
        let account = NewAccount {
            username: body.username.0,
            password: Secret::new(body.password.0),
            email: body.email,
            roles: Vec::new(),
        };
        let user =
            users::create(&state, account, &Grantor::nobody(users::SELF_REGISTRATION), request_context(req).ip).await?;
        Ok(RegisterResponse::Created(Json(user.into())))
    }

    /// Log in with username and password. Returns an access token and sets the
    /// refresh cookie. Like every cookie endpoint, requires `X-Requested-With: latchkey`
    /// and, from a browser, an allowed `Origin` (else 403 `csrf_check_failed`). With a
    /// `DPoP` proof (RFC 9449) the session is bound to its key: every refresh must then
    /// carry a proof by that key.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        _charged: Charged<buckets::Login>,
        endpoint: CookieEndpoint,
        state: Data<&AppState>,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> ApiResult<LoginResult> {
        let password = Secret::new(body.0.password);
        let ctx = proved_context(req).await?;
        match sessions::login(&state, &body.0.username, &password, &ctx).await? {
            LoginOutcome::Tokens(tokens) => {
                let TokenIssued::Ok(Json(access), cookie, cache) = issued(&state, &endpoint, tokens, ctx.now);
                Ok(LoginResult::Ok(
                    Json(LoginResponse {
                        mfa_required: false,
                        mfa_token: None,
                        access_token: Some(access.access_token),
                        token_type: Some(access.token_type),
                        expires_in: access.expires_in,
                        scope: Some(access.scope),
                        mfa_methods: None,
                    }),
                    Some(cookie),
                    cache,
                ))
            }
            LoginOutcome::MfaRequired { mfa_token, expires_in, factors } => Ok(LoginResult::Ok(
                Json(LoginResponse {
                    mfa_required: true,
                    mfa_token: Some(mfa_token.expose().clone()),
                    access_token: None,
                    token_type: None,
                    expires_in,
                    scope: None,
                    mfa_methods: Some(
                        [(factors.totp, "totp"), (factors.passkey, "passkey")]
                            .into_iter()
                            .filter(|(has, _)| *has)
                            .map(|(_, name)| name.to_string())
                            .collect(),
                    ),
                }),
                None,
                "no-store".into(),
            )),
        }
    }

    /// Second step of a login on an account with TOTP: the `mfa_token` plus a current
    /// code (or a recovery code) → tokens and the refresh cookie, `amr = ["pwd","otp"]`.
    #[oai(path = "/login/mfa", method = "post", operation_id = "loginMfa")]
    async fn login_mfa(
        &self,
        _charged: Charged<buckets::Login>,
        endpoint: CookieEndpoint,
        state: Data<&AppState>,
        req: &Request,
        body: Json<MfaLoginRequest>,
    ) -> ApiResult<TokenIssued> {
        let body = body.0;
        let factor = second_factor(body.code, body.recovery_code)?;
        let ctx = proved_context(req).await?;
        let tokens = mfa::complete_login(&state, &Secret::new(body.mfa_token), factor, &ctx).await?;
        Ok(issued(&state, &endpoint, tokens, ctx.now))
    }

    /// Start a passkey sign-in: usernameless, or with the `mfa_token` of a password
    /// login as its second factor. A cookie endpoint (`X-Requested-With: latchkey`).
    #[oai(path = "/webauthn/login/start", method = "post", operation_id = "passkeyLoginStart")]
    async fn passkey_login_start(
        &self,
        _charged: Charged<buckets::Login>,
        _endpoint: CookieEndpoint,
        state: Data<&AppState>,
        req: &Request,
        body: Json<PasskeyLoginStartRequest>,
    ) -> ApiResult<Ceremony> {
        let token = body.0.mfa_token.map(Secret::new);
        let ceremony = mfa::start_passkey_login(&state, token.as_ref(), &request_context(req)).await?;
        Ok(Ceremony::Ok(Json(ceremony.into()), "no-store".into()))
    }

    /// Finish a passkey sign-in: tokens and the refresh cookie, exactly as a password
    /// login gives them; `amr` is `["swk","user"]`, or `["pwd","swk","mfa"]` after a
    /// password. 401 `invalid_passkey` when the answer is refused.
    #[oai(path = "/webauthn/login/finish", method = "post", operation_id = "passkeyLoginFinish")]
    async fn passkey_login_finish(
        &self,
        _charged: Charged<buckets::Login>,
        endpoint: CookieEndpoint,
        state: Data<&AppState>,
        req: &Request,
        body: Json<PasskeyLoginFinishRequest>,
    ) -> ApiResult<TokenIssued> {
        let body = body.0;
        let ctx = proved_context(req).await?;
        let token = body.mfa_token.map(Secret::new);
        let tokens =
            mfa::finish_passkey_login(&state, &body.ceremony_id, body.credential, token.as_ref(), &ctx).await?;
        Ok(issued(&state, &endpoint, tokens, ctx.now))
    }

    /// Start registering a passkey for the signed-in user (password re-checked; a
    /// discoverable credential, user verification required). 409 `too_many_passkeys`
    /// when the account holds 25.
    #[oai(path = "/webauthn/register/start", method = "post", operation_id = "passkeyRegisterStart")]
    async fn passkey_register_start(
        &self,
        _charged: Charged<buckets::Totp>,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<PasswordRequest>,
    ) -> ApiResult<Ceremony> {
        let user = user_row(&state, &auth).await?;
        let password = Secret::new(body.0.password);
        let ceremony = passkeys::start_registration_rechecked(&state, &user, &password, &request_context(req)).await?;
        Ok(Ceremony::Ok(Json(ceremony.into()), "no-store".into()))
    }

    /// Finish registering a passkey: it is the user's from now on.
    #[oai(path = "/webauthn/register/finish", method = "post", operation_id = "passkeyRegisterFinish")]
    async fn passkey_register_finish(
        &self,
        _charged: Charged<buckets::Totp>,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<PasskeyRegisterFinishRequest>,
    ) -> ApiResult<PasskeyCreated> {
        let user = user_row(&state, &auth).await?;
        let body = body.0;
        let view = passkeys::finish_registration(
            &state,
            &user,
            &body.ceremony_id,
            &body.name,
            body.credential,
            &request_context(req),
        )
        .await?;
        Ok(PasskeyCreated::Created(Json(view.into())))
    }

    /// The signed-in user's passkeys.
    #[oai(path = "/passkeys", method = "get", operation_id = "listMyPasskeys")]
    async fn passkeys(&self, state: Data<&AppState>, auth: BearerAuth) -> ApiResult<Json<Vec<PasskeyResponse>>> {
        let user = user_of_token(&state, &auth).await?;
        let views = passkeys::list(&state, &user.id).await?;
        Ok(Json(views.into_iter().map(Into::into).collect()))
    }

    /// Rename one of the signed-in user's passkeys.
    #[oai(path = "/passkeys/:id", method = "patch", operation_id = "renameMyPasskey")]
    async fn rename_passkey(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<IdWord>,
        body: Json<PasskeyRenameRequest>,
    ) -> ApiResult<Done> {
        let user = user_of_token(&state, &auth).await?;
        passkeys::rename(&state, &user.id, &id.0.0, &body.0.name, &request_context(req)).await?;
        Ok(Done::NoContent)
    }

    /// Delete one of the signed-in user's passkeys; 409 `last_factor` when the account's
    /// roles require a second factor and this is its last.
    #[oai(path = "/passkeys/:id", method = "delete", operation_id = "deleteMyPasskey")]
    async fn delete_passkey(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<IdWord>,
    ) -> ApiResult<Done> {
        let user = user_of_token(&state, &auth).await?;
        passkeys::delete(&state, &user.id, &id.0.0, &request_context(req)).await?;
        Ok(Done::NoContent)
    }

    /// Start TOTP enrolment (password re-checked): a secret, its otpauth URI and QR code.
    #[oai(path = "/totp/setup", method = "post", operation_id = "totpSetup")]
    async fn totp_setup(
        &self,
        _charged: Charged<buckets::Totp>,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<PasswordRequest>,
    ) -> ApiResult<TotpSetup> {
        let user = user_of_token(&state, &auth).await?;
        let enrolment = mfa::setup(&state, &user.id, &Secret::new(body.0.password), &request_context(req)).await?;
        Ok(TotpSetup::Ok(
            Json(TotpSetupResponse {
                secret: enrolment.secret_base32.expose().clone(),
                otpauth_uri: enrolment.otpauth_uri.expose().clone(),
                qr_svg: enrolment.qr_svg.expose().clone(),
            }),
            "no-store".into(),
        ))
    }

    /// Confirm enrolment with a current code; returns ten recovery codes, once.
    #[oai(path = "/totp/confirm", method = "post", operation_id = "totpConfirm")]
    async fn totp_confirm(
        &self,
        _charged: Charged<buckets::Totp>,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<TotpCodeRequest>,
    ) -> ApiResult<RecoveryCodes> {
        let user = user_of_token(&state, &auth).await?;
        let codes = mfa::confirm(&state, &user.id, &body.0.code, &request_context(req)).await?;
        Ok(recovery_codes(codes))
    }

    /// Turn TOTP off: needs the password and a current code or a recovery code.
    #[oai(path = "/totp", method = "delete", operation_id = "totpDisable")]
    async fn totp_disable(
        &self,
        _charged: Charged<buckets::Totp>,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<TotpDisableRequest>,
    ) -> ApiResult<Done> {
        let user = user_of_token(&state, &auth).await?;
        let body = body.0;
        let factor = second_factor(body.code, body.recovery_code)?;
        mfa::disable(&state, &user.id, &Secret::new(body.password), &factor, &request_context(req)).await?;
        Ok(Done::NoContent)
    }

    /// Replace the recovery codes (password re-checked); the old ones stop working.
    #[oai(path = "/totp/recovery-codes", method = "post", operation_id = "totpRecoveryCodes")]
    async fn totp_recovery_codes(
        &self,
        _charged: Charged<buckets::Totp>,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<PasswordRequest>,
    ) -> ApiResult<RecoveryCodes> {
        let user = user_of_token(&state, &auth).await?;
        let codes =
            mfa::regenerate_recovery_codes(&state, &user.id, &Secret::new(body.0.password), &request_context(req))
                .await?;
        Ok(recovery_codes(codes))
    }

    /// Change the password (the current one is re-checked); every other session ends.
    #[oai(path = "/password", method = "post", operation_id = "changePassword")]
    async fn change_password(
        &self,
        _charged: Charged<buckets::PasswordChange>,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<ChangePasswordRequest>,
    ) -> ApiResult<Done> {
        let user = user_of_token(&state, &auth).await?;
        let body = body.0;
        users::change_password(
            &state,
            &user.id,
            auth.0.sid.as_deref(),
            &Secret::new(body.current_password),
            &Secret::new(body.new_password.0),
            &request_context(req),
        )
        .await?;
        Ok(Done::NoContent)
    }

    /// Ask for a password reset link. The answer is the same — 202, body and timing —
    /// whether or not the username or address names an account: a link is mailed, to
    /// the account's verified address, only when one does. 403 `mail_not_configured`
    /// without mail.
    #[oai(path = "/password-reset", method = "post", operation_id = "requestPasswordReset")]
    async fn request_password_reset(
        &self,
        _charged: Charged<buckets::Mail>,
        state: Data<&AppState>,
        req: &Request,
        body: Json<PasswordResetRequest>,
    ) -> ApiResult<Accepted> {
        crate::domain::reset::request(&state, &body.0.login, request_context(req).ip)?;
        Ok(accepted("if the account exists and has a verified email address, a reset link is on its way"))
    }

    /// Set a new password with a reset link's token (policy checked). Every session of
    /// the user ends, and lockouts are cleared. 401 `invalid_email_token` for a link
    /// that is unknown, used, expired, replaced or issued before a password change.
    #[oai(path = "/password-reset/complete", method = "post", operation_id = "completePasswordReset")]
    async fn complete_password_reset(
        &self,
        _charged: Charged<buckets::PasswordChange>,
        state: Data<&AppState>,
        req: &Request,
        body: Json<PasswordResetCompleteRequest>,
    ) -> ApiResult<Done> {
        let body = body.0;
        let token = Secret::new(body.token);
        let password = Secret::new(body.password.0);
        crate::domain::reset::complete(&state, &token, &password, request_context(req).ip).await?;
        Ok(Done::NoContent)
    }

    /// Confirm an email address with a verification link's token: it becomes the
    /// account's, verified. 401 `invalid_email_token` for a dead link; 409 `email_taken`
    /// when another account verified the address first.
    #[oai(path = "/email/verify", method = "post", operation_id = "verifyEmail")]
    async fn verify_email(
        &self,
        _charged: Charged<buckets::Mail>,
        state: Data<&AppState>,
        req: &Request,
        body: Json<EmailVerifyRequest>,
    ) -> ApiResult<Done> {
        let token = Secret::new(body.0.token);
        crate::domain::verification::complete(&state, &token, request_context(req).ip).await?;
        Ok(Done::NoContent)
    }

    /// Change the signed-in user's address (the password re-checked): a link goes to the
    /// new address and a notice to the old verified one; the new address replaces the
    /// old only once its link is followed.
    #[oai(path = "/email", method = "post", operation_id = "changeMyEmail")]
    async fn change_email(
        &self,
        _charged: Charged<buckets::Mail>,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<EmailChangeRequest>,
    ) -> ApiResult<Accepted> {
        let user = user_of_token(&state, &auth).await?;
        let body = body.0;
        let ctx = request_context(req);
        crate::domain::verification::request_change(&state, &user.id, &body.email, &Secret::new(body.password), &ctx)
            .await?;
        Ok(accepted("a confirmation link is on its way to the new address"))
    }

    /// Mail the signed-in user a new link that verifies its current address.
    #[oai(path = "/email/verification", method = "post", operation_id = "resendMyEmailVerification")]
    async fn resend_verification(
        &self,
        _charged: Charged<buckets::Mail>,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
    ) -> ApiResult<Accepted> {
        let user = user_row(&state, &auth).await?;
        if user.email_verified {
            return Err(
                crate::domain::Error::bad_request(ErrorCode::InvalidEmail, "the address is verified already").into()
            );
        }
        let sent = crate::domain::verification::send(&state, &user, None, &user.id, request_context(req).ip).await?;
        crate::domain::verification::limited(sent)?;
        Ok(accepted("a confirmation link is on its way"))
    }

    /// Exchange the refresh cookie for a new access token; the cookie is rotated.
    /// 401 means the session is over (or, for a session bound to a DPoP key, that the
    /// `DPoP` proof is missing or by another key); 409 means another tab refreshed at
    /// the same moment (retry once with the new cookie).
    #[oai(path = "/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(
        &self,
        _charged: Charged<buckets::Refresh>,
        endpoint: CookieEndpoint,
        state: Data<&AppState>,
        req: &Request,
    ) -> ApiResult<TokenIssued> {
        let Some(token) = endpoint.refresh_token() else {
            return Err(cookie_flow_error(Error::invalid_refresh_token()));
        };
        let client = sessions::first_party_client(&state, SPA_CLIENT_ID).await?;
        let ctx = proved_context(req).await?;
        let tokens = sessions::refresh(&state, &client, token, &ctx).await.map_err(cookie_flow_error)?;
        Ok(issued(&state, &endpoint, tokens, ctx.now))
    }

    /// End the session of the refresh cookie and clear the cookie.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, endpoint: CookieEndpoint, state: Data<&AppState>, req: &Request) -> ApiResult<LoggedOut> {
        if let Some(token) = endpoint.refresh_token() {
            sessions::revoke_by_refresh_token(&state, token, Some(SPA_CLIENT_ID), REASON_LOGOUT, &request_context(req))
                .await?;
        }
        Ok(LoggedOut::NoContent(clear_refresh_cookie(&state.config)))
    }

    /// End every session of the signed-in user, on every device.
    #[oai(path = "/logout-all", method = "post", operation_id = "logoutAll")]
    async fn logout_all(&self, state: Data<&AppState>, req: &Request, auth: BearerAuth) -> ApiResult<LoggedOut> {
        // A user's token only: a service token's subject is a client id, not a user.
        let user = user_of_token(&state, &auth).await?;
        sessions::revoke_all(&state, &user.id, REASON_LOGOUT_ALL, &request_context(req)).await?;
        Ok(LoggedOut::NoContent(clear_refresh_cookie(&state.config)))
    }

    /// The signed-in user.
    #[oai(path = "/me", method = "get", operation_id = "getMe")]
    async fn me(&self, state: Data<&AppState>, auth: BearerAuth) -> ApiResult<MeResponse> {
        let user = user_of_token(&state, &auth).await?;
        Ok(MeResponse::Ok(Json(user.into())))
    }

    /// The signed-in user's live sessions; the one of this token is marked `current`.
    #[oai(path = "/sessions", method = "get", operation_id = "listMySessions")]
    async fn sessions(&self, state: Data<&AppState>, auth: BearerAuth) -> ApiResult<SessionListResponse> {
        let user = user_of_token(&state, &auth).await?;
        let rows = sessions::list_live(&state, &user.id).await?;
        let current = auth.0.sid.as_deref();
        Ok(SessionListResponse::Ok(Json(rows.into_iter().map(|r| SessionResponse::new(r, current)).collect())))
    }

    /// The signed-in user's live browser sessions at the hosted sign-in pages (SSO).
    #[oai(path = "/browser-sessions", method = "get", operation_id = "listMyBrowserSessions")]
    async fn browser_sessions(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> ApiResult<Json<Vec<BrowserSessionResponse>>> {
        let user = user_of_token(&state, &auth).await?;
        let rows = grants::browser_sessions(&state, &user.id).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// End one of the signed-in user's browser sessions: that browser signs in again.
    #[oai(path = "/browser-sessions/:id", method = "delete", operation_id = "endMyBrowserSession")]
    async fn end_browser_session(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<IdWord>,
    ) -> ApiResult<Done> {
        let user = user_of_token(&state, &auth).await?;
        grants::end_browser_session(&state, &user.id, &id.0.0, &user.id, &request_context(req)).await?;
        Ok(Done::NoContent)
    }

    /// The applications the signed-in user consented to, with the scopes.
    #[oai(path = "/consents", method = "get", operation_id = "listMyConsents")]
    async fn consents(&self, state: Data<&AppState>, auth: BearerAuth) -> ApiResult<Json<Vec<ConsentResponse>>> {
        let user = user_of_token(&state, &auth).await?;
        let views = grants::consents(&state, &user.id).await?;
        Ok(Json(views.into_iter().map(Into::into).collect()))
    }

    /// Withdraw a consent: the application asks again at the next sign-in.
    #[oai(path = "/consents/:client_id", method = "delete", operation_id = "revokeMyConsent")]
    async fn revoke_consent(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        client_id: Path<ClientIdWord>,
    ) -> ApiResult<Done> {
        let user = user_of_token(&state, &auth).await?;
        grants::revoke_consent(&state, &user.id, &client_id.0.0, &user.id, &request_context(req)).await?;
        Ok(Done::NoContent)
    }

    /// Revoke one of the signed-in user's sessions.
    #[oai(path = "/sessions/:id", method = "delete", operation_id = "revokeMySession")]
    async fn revoke_session(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<Done> {
        let user = user_of_token(&state, &auth).await?;
        sessions::revoke_own(&state, &user.id, &id.0, &request_context(req)).await?;
        Ok(Done::NoContent)
    }
}

fn second_factor(code: Option<String>, recovery_code: Option<String>) -> Result<SecondFactor, ApiError> {
    match (code, recovery_code) {
        (Some(code), None) => Ok(SecondFactor::Code(code)),
        (None, Some(recovery)) => Ok(SecondFactor::RecoveryCode(Secret::new(recovery))),
        _ => Err(ApiError::bad_request(ErrorCode::InvalidRequest, "send exactly one of code and recovery_code")),
    }
}

fn recovery_codes(codes: Vec<Secret<String>>) -> RecoveryCodes {
    RecoveryCodes::Ok(
        Json(RecoveryCodesResponse { recovery_codes: codes.into_iter().map(|c| c.expose().clone()).collect() }),
        "no-store".into(),
    )
}

/// The user a bearer token speaks for, with its roles; service tokens
/// (client_credentials) have none.
pub async fn user_of_token(state: &AppState, auth: &BearerAuth) -> Result<users::UserView, ApiError> {
    let row = user_row(state, auth).await?;
    let roles = state.tokens.user_role_names(&row.id).await.map_err(crate::domain::Error::from)?;
    Ok(users::UserView::new(row, roles))
}

/// The user row a bearer token speaks for: read with the session by the bearer check, or
/// (a token without one) by its subject.
async fn user_row(state: &AppState, auth: &BearerAuth) -> Result<crate::store::users::UserRow, ApiError> {
    if auth.0.sid.is_none() {
        return Err(ApiError::invalid_token("this token does not represent a user"));
    }
    if let Some(row) = auth.0.user.clone() {
        return Ok(row);
    }
    let found = crate::store::users::find_by_id(&state.db, &auth.0.sub).await.map_err(Error::from)?;
    found.ok_or_else(|| ApiError::invalid_token("the user of this token no longer exists"))
}
