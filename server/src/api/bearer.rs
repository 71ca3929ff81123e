//! The bearer security scheme of our own API. Its checker verifies the access token
//! (and that its session is live), so a handler taking [`BearerAuth`] cannot run
//! without a valid token.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use super::error::ApiError;
use crate::domain::auth::Authenticated;
use crate::domain::rbac::{Permission, Principal};
use crate::state::AppState;

/// `Authorization: Bearer <access token>` issued by this server.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Authenticated);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Authenticated> {
    let state =
        req.data::<AppState>().ok_or_else(|| poem::Error::from(ApiError::invalid_token("server misconfigured")))?;
    crate::domain::auth::authenticate_bearer(state, &bearer.token).await.map_err(|e| ApiError::from(e).into())
}

/// `Authorization: Bearer <access token>` of a user, issued by this server to any client
/// (userinfo answers relying parties, whose tokens carry their own audience).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_user_bearer")]
pub struct UserInfoAuth(pub Authenticated);

async fn check_user_bearer(req: &Request, bearer: Bearer) -> poem::Result<Authenticated> {
    let state =
        req.data::<AppState>().ok_or_else(|| poem::Error::from(ApiError::invalid_token("server misconfigured")))?;
    crate::domain::auth::authenticate_userinfo(state, &bearer.token).await.map_err(|e| ApiError::from(e).into())
}

/// A bearer token whose user (or service client) is resolved with its current
/// permissions. Handlers call [`AdminAuth::require`] before doing anything.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_admin")]
pub struct AdminAuth(pub AdminCall);

/// An admin API call as its checker resolved it: the caller, and the server state the
/// call acts on (so a handler needs no second extractor for it).
pub struct AdminCall {
    principal: Principal,
    state: AppState,
}

impl AdminAuth {
    /// The caller, if it holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<&Principal, ApiError> {
        self.0.principal.require(permission)?;
        Ok(&self.0.principal)
    }

    /// The server state the call acts on.
    pub fn state(&self) -> &AppState {
        &self.0.state
    }
}

async fn check_admin(req: &Request, bearer: Bearer) -> poem::Result<AdminCall> {
    let authenticated = check_bearer(req, bearer).await?;
    let state =
        req.data::<AppState>().ok_or_else(|| poem::Error::from(ApiError::invalid_token("server misconfigured")))?;
    let principal = crate::domain::rbac::principal(state, authenticated).await.map_err(ApiError::from)?;
    Ok(AdminCall { principal, state: state.clone() })
}
