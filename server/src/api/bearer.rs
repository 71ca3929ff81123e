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

/// A bearer token whose user (or service client) is resolved with its current
/// permissions. Handlers call [`AdminAuth::require`] before doing anything.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_admin")]
pub struct AdminAuth(pub Principal);

impl AdminAuth {
    pub fn require(&self, permission: Permission) -> Result<&Principal, ApiError> {
        self.0.require(permission)?;
        Ok(&self.0)
    }
}

async fn check_admin(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let authenticated = check_bearer(req, bearer).await?;
    let state =
        req.data::<AppState>().ok_or_else(|| poem::Error::from(ApiError::invalid_token("server misconfigured")))?;
    crate::domain::rbac::principal(state, authenticated).await.map_err(|e| ApiError::from(e).into())
}
