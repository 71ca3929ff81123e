//! The security schemes of our own API. Each extractor verifies the access token (and
//! that its session is live), so a handler taking one cannot run without a valid token.
//!
//! A token comes as `Authorization: Bearer <token>`, or — when it is bound to a DPoP key
//! (RFC 9449 §7) — as `Authorization: DPoP <token>` with a `DPoP` proof of this request
//! by that key. A bound token sent as Bearer is refused, so stealing it is not enough.
//!
//! The extractors are written out rather than derived: poem-openapi's derived bearer
//! scheme reads the `Bearer` scheme only. The document still names each as an HTTP
//! bearer scheme (`DPoP` is described there, not a scheme generators know).

use poem::http::header::AUTHORIZATION;
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use super::dpop::proof_headers;
use super::error::ApiError;
use crate::domain::auth::Authenticated;
use crate::domain::dpop::{self, Presentation, ProofRequest};
use crate::domain::rbac::{Permission, Principal};
use crate::domain::{Error, ErrorCode};
use crate::state::AppState;

/// Which tokens a scheme takes.
#[derive(Clone, Copy)]
enum Accepts {
    /// Tokens for our own API (our audience).
    OurApi,
    /// A user's token issued to any client (userinfo).
    AnyUserToken,
}

/// The scheme and token of the `Authorization` header.
fn presented(req: &Request) -> Result<(bool, &str), ApiError> {
    let missing = || ApiError::invalid_token("missing or malformed bearer token");
    let header = req.header(AUTHORIZATION).ok_or_else(missing)?;
    let (scheme, token) = header.split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if token.is_empty() {
        return Err(missing());
    }
    match scheme {
        s if s.eq_ignore_ascii_case("bearer") => Ok((false, token)),
        s if s.eq_ignore_ascii_case("dpop") => Ok((true, token)),
        _ => Err(missing()),
    }
}

async fn verify(state: &AppState, token: &str, accepts: Accepts) -> crate::domain::Result<Authenticated> {
    match accepts {
        Accepts::OurApi => crate::domain::auth::authenticate_bearer(state, token).await,
        Accepts::AnyUserToken => crate::domain::auth::authenticate_userinfo(state, token).await,
    }
}

fn app_state(req: &Request) -> Result<&AppState, ApiError> {
    req.data::<AppState>().ok_or_else(|| ApiError::from(Error::Internal("no server state".into())))
}

/// The request's token, verified, and — for the DPoP scheme — its proof.
async fn authenticate(req: &Request, accepts: Accepts) -> Result<Authenticated, ApiError> {
    let state = app_state(req)?;
    let (is_dpop, token) = presented(req)?;
    if !is_dpop {
        let authenticated = verify(state, token, accepts).await?;
        dpop::judge_presentation(authenticated.claims.cnf.as_ref(), Presentation::Bearer)?;
        return Ok(authenticated);
    }
    let authenticated = verify(state, token, accepts).await.map_err(ApiError::at_dpop_resource)?;
    let proofs = proof_headers(req);
    let request = ProofRequest {
        proofs: &proofs,
        method: req.method().as_str(),
        path: req.uri().path(),
        access_token: Some(token),
    };
    let proof = dpop::check(state, &request, state.now())
        .await
        .map_err(ApiError::at_dpop_resource)?
        .ok_or_else(|| ApiError::dpop_challenge(ErrorCode::InvalidDpopProof, "the DPoP scheme needs a DPoP proof"))?;
    dpop::judge_presentation(authenticated.claims.cnf.as_ref(), Presentation::Dpop(&proof))
        .map_err(ApiError::at_dpop_resource)?;
    Ok(authenticated)
}

/// Implements [`ApiExtractor`] for a scheme: it registers as an HTTP bearer scheme
/// named like the type and extracts with `$extract(req)`.
macro_rules! token_scheme {
    ($ty:ident, $description:literal, $extract:path) => {
        impl<'a> ApiExtractor<'a> for $ty {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                registry.create_security_scheme(
                    stringify!($ty),
                    MetaSecurityScheme {
                        ty: "http",
                        description: Some($description),
                        name: None,
                        key_in: None,
                        scheme: Some("bearer"),
                        bearer_format: Some("JWT"),
                        flows: None,
                        openid_connect_url: None,
                    },
                );
            }

            fn security_schemes() -> Vec<&'static str> {
                vec![stringify!($ty)]
            }

            async fn from_request(
                req: &'a Request,
                _body: &mut RequestBody,
                _param_opts: ExtractParamOptions<Self::ParamType>,
            ) -> poem::Result<Self> {
                Ok(Self($extract(req).await?))
            }
        }
    };
}

/// An access token issued by this server for its own API.
pub struct BearerAuth(pub Authenticated);

token_scheme!(
    BearerAuth,
    "`Authorization: Bearer <access token>` issued by this server; a DPoP-bound token as \
     `Authorization: DPoP <access token>` with a `DPoP` proof (RFC 9449).",
    check_bearer
);

async fn check_bearer(req: &Request) -> Result<Authenticated, ApiError> {
    authenticate(req, Accepts::OurApi).await
}

/// A user's access token issued by this server to any client (userinfo answers
/// relying parties, whose tokens carry their own audience).
pub struct UserInfoAuth(pub Authenticated);

token_scheme!(
    UserInfoAuth,
    "`Authorization: Bearer <access token>` of a user, issued by this server to any client (userinfo answers \
     relying parties, whose tokens carry their own audience); a DPoP-bound token as `Authorization: DPoP` with \
     a `DPoP` proof (RFC 9449).",
    check_user_token
);

async fn check_user_token(req: &Request) -> Result<Authenticated, ApiError> {
    authenticate(req, Accepts::AnyUserToken).await
}

/// An access token whose user (or service client) is resolved with its current
/// permissions. Handlers call [`AdminAuth::require`] before doing anything.
pub struct AdminAuth(pub AdminCall);

token_scheme!(
    AdminAuth,
    "An access token for this server's API (`Bearer`, or `DPoP` with a proof when it is DPoP-bound) whose user \
     (or service client) is resolved with its current permissions.",
    check_admin
);

/// An admin API call as its checker resolved it: the caller, the server state the call
/// acts on (so a handler needs no second extractor for it), and whether its token is
/// DPoP-bound (so it came with the DPoP scheme, in which a refusal then challenges).
pub struct AdminCall {
    principal: Principal,
    state: AppState,
    dpop: bool,
}

impl AdminAuth {
    /// The caller, if it holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<&Principal, ApiError> {
        match self.0.principal.require(permission) {
            Ok(()) => Ok(&self.0.principal),
            Err(Error::Forbidden { code, description }) => Err(ApiError::forbidden_for(code, description, self.0.dpop)),
            Err(other) => Err(other.into()),
        }
    }

    /// The server state the call acts on.
    pub fn state(&self) -> &AppState {
        &self.0.state
    }
}

async fn check_admin(req: &Request) -> Result<AdminCall, ApiError> {
    let authenticated = authenticate(req, Accepts::OurApi).await?;
    let state = app_state(req)?;
    // A bound token passes only with the DPoP scheme (see `authenticate`).
    let dpop = authenticated.claims.cnf.is_some();
    let principal = crate::domain::rbac::principal(state, authenticated).await.map_err(ApiError::from)?;
    Ok(AdminCall { principal, state: state.clone(), dpop })
}
