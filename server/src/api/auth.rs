//! `/auth/*`: the first-party browser flow. JSON in, JSON out; the refresh token lives
//! only in an HttpOnly cookie scoped to this prefix and never appears in a body.

use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::browser::{clear_refresh_cookie, refresh_cookie, request_context, set_refresh_cookie};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::models::{AccessTokenResponse, LoginRequest, RegisterRequest, SessionResponse, UserResponse};
use super::security::BearerAuth;
use crate::domain::auth::IssuedTokens;
use crate::domain::sessions::{self, REASON_LOGOUT, REASON_LOGOUT_ALL, SPA_CLIENT_ID};
use crate::domain::users::{self, NewAccount};
use crate::domain::{Error, OAuthErrorCode};
use crate::security::Secret;
use crate::state::AppState;

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
enum SessionRevoked {
    #[oai(status = 204)]
    NoContent,
}

fn issued(state: &AppState, tokens: IssuedTokens) -> TokenIssued {
    let cookie = match (&tokens.refresh_token, tokens.refresh_expires_at) {
        (Some(token), Some(expires_at)) => set_refresh_cookie(&state.config, token, expires_at - state.now()),
        _ => clear_refresh_cookie(&state.config),
    };
    TokenIssued::Ok(
        Json(AccessTokenResponse {
            access_token: tokens.access_token,
            token_type: "Bearer".into(),
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
        Error::OAuth { code: OAuthErrorCode::InvalidGrant, description } => {
            ApiError::Unauthorized(ErrorBody::new("invalid_grant", description), r#"Bearer realm="latchkey""#.into())
        }
        Error::RefreshRaced => ApiError::Conflict(ErrorBody::new("invalid_grant", Error::RefreshRaced.to_string())),
        other => other.into(),
    }
}

#[OpenApi(prefix_path = "/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account (when registration is enabled).
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: Json<RegisterRequest>,
    ) -> ApiResult<RegisterResponse> {
        if !state.config.registration_enabled {
            return Err(ApiError::forbidden("registration_disabled", "self-registration is disabled"));
        }
        let body = body.0;
        let account = NewAccount {
            username: body.username,
            password: Secret::new(body.password),
            email: body.email,
            roles: Vec::new(),
        };
        let user = users::create(&state, account, "self-registration", request_context(req).ip).await?;
        Ok(RegisterResponse::Created(Json(user.into())))
    }

    /// Log in with username and password. Returns an access token and sets the
    /// refresh cookie. Like every cookie endpoint, requires `X-Requested-With: latchkey`
    /// and, from a browser, an allowed `Origin` (else 403 `csrf_check_failed`).
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(&self, state: Data<&AppState>, req: &Request, body: Json<LoginRequest>) -> ApiResult<TokenIssued> {
        let password = Secret::new(body.0.password);
        let tokens = sessions::login(&state, &body.0.username, &password, &request_context(req)).await?;
        Ok(issued(&state, tokens))
    }

    /// Exchange the refresh cookie for a new access token; the cookie is rotated.
    /// 401 means the session is over; 409 means another tab refreshed at the same
    /// moment (retry once with the new cookie).
    #[oai(path = "/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(&self, state: Data<&AppState>, req: &Request) -> ApiResult<TokenIssued> {
        let Some(token) = refresh_cookie(&state.config, req) else {
            return Err(cookie_flow_error(Error::invalid_refresh_token()));
        };
        let client = sessions::first_party_client(&state, SPA_CLIENT_ID).await?;
        let tokens =
            sessions::refresh(&state, &client, &token, &request_context(req)).await.map_err(cookie_flow_error)?;
        Ok(issued(&state, tokens))
    }

    /// End the session of the refresh cookie and clear the cookie.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, state: Data<&AppState>, req: &Request) -> ApiResult<LoggedOut> {
        if let Some(token) = refresh_cookie(&state.config, req) {
            sessions::revoke_by_refresh_token(
                &state,
                &token,
                Some(SPA_CLIENT_ID),
                REASON_LOGOUT,
                &request_context(req),
            )
            .await?;
        }
        Ok(LoggedOut::NoContent(clear_refresh_cookie(&state.config)))
    }

    /// End every session of the signed-in user, on every device.
    #[oai(path = "/logout-all", method = "post", operation_id = "logoutAll")]
    async fn logout_all(&self, state: Data<&AppState>, req: &Request, auth: BearerAuth) -> ApiResult<LoggedOut> {
        sessions::revoke_all(&state, &auth.0.sub, REASON_LOGOUT_ALL, &request_context(req)).await?;
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

    /// Revoke one of the signed-in user's sessions.
    #[oai(path = "/sessions/:id", method = "delete", operation_id = "revokeMySession")]
    async fn revoke_session(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<SessionRevoked> {
        let user = user_of_token(&state, &auth).await?;
        sessions::revoke_own(&state, &user.id, &id.0, &request_context(req)).await?;
        Ok(SessionRevoked::NoContent)
    }
}

/// The user a bearer token speaks for; service tokens (client_credentials) have none.
pub async fn user_of_token(state: &AppState, auth: &BearerAuth) -> Result<users::UserView, ApiError> {
    if auth.0.sid.is_none() {
        return Err(ApiError::invalid_token("this token does not represent a user"));
    }
    match users::get(state, &auth.0.sub).await {
        Err(Error::NotFound(_)) => Err(ApiError::invalid_token("the user of this token no longer exists")),
        other => Ok(other?),
    }
}
