//! DPoP (RFC 9449) on the HTTP side: reading a request's proofs, the request context
//! of an authorization-server endpoint that takes one (token, cookie login and refresh),
//! and the `DPoP-Nonce` every answer to a DPoP request carries. Protected resources
//! check theirs in [`super::bearer`].

use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};

use super::browser::request_context;
use super::error::ApiError;
use crate::domain::auth::RequestContext;
use crate::domain::dpop::{self, ProofRequest};
use crate::state::AppState;

/// The request header that carries a proof, and the response header with our nonce.
pub const DPOP_HEADER: &str = "dpop";
pub const NONCE_HEADER: &str = "dpop-nonce";

/// Every `DPoP` header of the request (a value that is not text counts, so that two
/// headers are refused even when one is garbage).
pub fn proof_headers(req: &Request) -> Vec<&str> {
    req.headers().get_all(DPOP_HEADER).iter().map(|v| v.to_str().unwrap_or("")).collect()
}

/// The context of a request to an endpoint that issues tokens: when it carries a proof
/// for this method and URL that passes, what it issues is bound to the proof's key.
pub async fn proved_context(req: &Request) -> Result<RequestContext, ApiError> {
    let mut ctx = request_context(req);
    let proofs = proof_headers(req);
    if proofs.is_empty() {
        return Ok(ctx);
    }
    let state =
        req.data::<AppState>().ok_or_else(|| ApiError::from(crate::domain::Error::Internal("no state".into())))?;
    let request =
        ProofRequest { proofs: &proofs, method: req.method().as_str(), path: req.uri().path(), access_token: None };
    ctx.dpop_jkt = dpop::check(state, &request, ctx.now).await?.map(|proof| proof.jkt);
    Ok(ctx)
}

/// Middleware: the answer to a request with a DPoP proof (or the DPoP scheme) carries
/// the current nonce when nonces are required, so a client always holds a fresh one
/// (RFC 9449 §8.2) — on errors too, which is how `use_dpop_nonce` hands it out.
pub async fn nonce_header<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let uses_dpop = req.headers().contains_key(DPOP_HEADER)
        || req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.get(..5).is_some_and(|scheme| scheme.eq_ignore_ascii_case("dpop ")));
    // Only a DPoP request holds on to the state (most requests are not).
    let state = uses_dpop.then(|| req.data::<AppState>().filter(|s| s.config.dpop.require_nonce).cloned()).flatten();
    let mut response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(err) => super::error::render_error(err).await,
    };
    if let Some(state) = state
        && let Ok(nonce) = HeaderValue::from_str(&state.dpop_nonces.current(state.now()))
    {
        response.headers_mut().insert(NONCE_HEADER, nonce);
    }
    Ok(response)
}
