//! CORS for the browser origins clients register (`allowed_origins`): a single-page
//! app signing users in with the code flow (oidc-client-ts and the like) calls the
//! token, userinfo and revocation endpoints from its own origin. Those three answer
//! such an origin without credentials (no cookies: the code flow's tokens travel in
//! the body and the `Authorization` header). Origins in `cors_allowed_origins` are left
//! to the server-wide CORS layer, which also serves the cookie endpoints.
//!
//! The origin is checked against every client's list, not the calling client's: a
//! preflight names no client, and what the origin may do is still decided by client
//! authentication and PKCE, never by CORS.
//!
//! The discovery documents and the JWKS are public: any origin may read them
//! (`Access-Control-Allow-Origin: *`), since a browser library finds the provider
//! through them (oidc-client-ts's `authority`) before it knows anything else.

use poem::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use poem::http::{HeaderValue, Method, StatusCode};
use poem::{Body, Endpoint, IntoResponse, Request, Response};

use crate::state::AppState;

/// The endpoints a registered browser origin may call.
const PATHS: [&str; 3] = ["/oauth2/token", "/oauth2/userinfo", "/oauth2/revoke"];
/// The documents every origin may read.
const PUBLIC_PATHS: [&str; 3] =
    ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/.well-known/jwks.json"];

pub async fn client_cors<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let public = PUBLIC_PATHS.contains(&req.uri().path()) && req.headers().contains_key(ORIGIN);
    let allowed = match public {
        true => Some(HeaderValue::from_static("*")),
        false => registered_origin(&req).await,
    };
    let Some(origin) = allowed else {
        return next.call(req).await.map(IntoResponse::into_response);
    };
    let mut response = if req.method() == Method::OPTIONS && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
        let mut preflight = Response::builder().status(StatusCode::NO_CONTENT).body(Body::empty());
        let headers = preflight.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type, dpop"));
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        preflight
    } else {
        // Answered here: the server-wide layer, which does not know this origin, must not
        // refuse it.
        req.headers_mut().remove(ORIGIN);
        // Errors become their answer here, so they carry the CORS headers too.
        let mut response = match next.call(req).await {
            Ok(response) => response.into_response(),
            Err(err) => super::error::render_error(err).await,
        };
        response
            .headers_mut()
            .insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("www-authenticate, dpop-nonce"));
        response
    };
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if !public {
        headers.append(VARY, HeaderValue::from_static("origin"));
    }
    Ok(response)
}

/// The request's `Origin`, if it calls one of [`PATHS`] from an origin some client
/// registered and the server-wide list does not hold.
async fn registered_origin(req: &Request) -> Option<HeaderValue> {
    if !PATHS.contains(&req.uri().path()) {
        return None;
    }
    let value = req.headers().get(ORIGIN)?.clone();
    let origin = value.to_str().ok()?;
    let state = req.data::<AppState>()?;
    if state.config.allowed_origins.iter().any(|o| o == origin) {
        return None;
    }
    match crate::store::clients::origin_allowed(&state.db, origin).await {
        Ok(true) => Some(value),
        Ok(false) => None,
        Err(err) => {
            tracing::warn!(%err, "could not read the clients' allowed origins");
            None
        }
    }
}
