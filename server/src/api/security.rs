//! The bearer security scheme of our own API. Its checker verifies the access token
//! (and that its session is live), so a handler taking [`BearerAuth`] cannot run
//! without a valid token.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use super::error::ApiError;
use crate::state::AppState;
use crate::tokens::AccessClaims;

/// `Authorization: Bearer <access token>` issued by this server.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub AccessClaims);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<AccessClaims> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| poem::Error::from(ApiError::invalid_token("server misconfigured")))?;
    crate::domain::auth::authenticate_bearer(state, &bearer.token)
        .await
        .map_err(|e| ApiError::from(e).into())
}
