//! Errors become responses here and nowhere else.
//!
//! Handlers return `Result<_, ApiError>`; [`ApiError`] is a typed response (so every
//! error status appears in the OpenAPI document) built from the domain's error.
//! [`render_error`] catches everything else poem produces (malformed JSON, wrong content
//! type, oversize bodies, unknown routes, missing credentials) and gives it the same
//! `{error, error_description}` shape, so clients never see a plain-text error.

use latchkey_codes::ErrorCode;
use poem::Response;
use poem::http::StatusCode;
use poem::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use crate::domain::Error;

/// The error body of every endpoint. For OAuth endpoints it is exactly RFC 6749 §5.2.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_grant`, `username_taken`.
    pub error: String,
    /// Human-readable explanation.
    pub error_description: String,
}

impl ErrorBody {
    pub fn new(error: ErrorCode, description: impl Into<String>) -> Json<Self> {
        Json(Self { error: error.to_string(), error_description: description.into() })
    }
}

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed or fails validation.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>, #[oai(header = "Cache-Control")] Option<String>),
    /// Missing, invalid or expired credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// Authenticated, but not allowed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] Option<String>),
    /// No such resource.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with the current state (duplicate name, concurrent refresh).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The request body is missing its `Content-Type`, or is not in the media type the
    /// operation takes.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Rate limited; retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// Unexpected server error; details are in the server log only.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// Temporarily unable to serve (database down, hashing pool full).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

const BEARER_CHALLENGE: &str = r#"Bearer realm="latchkey""#;
/// A protected resource's challenge without an error: either scheme will do.
const RESOURCE_CHALLENGE: &str = r#"Bearer realm="latchkey", DPoP algs="ES256 EdDSA Ed25519 RS256 PS256""#;
/// The DPoP challenge a protected resource adds (RFC 9449 §7.1): the proof algorithms.
const DPOP_ALGS: &str = r#"algs="ES256 EdDSA Ed25519 RS256 PS256""#;

/// A challenge's `error_description`, quoted safely.
fn quoted(description: &str) -> String {
    description.replace(['"', '\\'], "'")
}

impl ApiError {
    pub fn bad_request(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::BadRequest(ErrorBody::new(code, description), None)
    }

    pub fn forbidden(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::forbidden_for(code, description, false)
    }

    /// [`Self::forbidden`] for a token sent with the DPoP scheme (`dpop`) or as Bearer:
    /// RFC 6750 §3.1 and RFC 9449 §7.1 — a token lacking the needed permission gets a
    /// challenge of the scheme it came with.
    pub fn forbidden_for(code: ErrorCode, description: impl Into<String>, dpop: bool) -> Self {
        let description = description.into();
        let challenge = (code == ErrorCode::InsufficientScope).then(|| {
            let (scheme, algs) = if dpop {
                ("DPoP ".to_string(), format!(", {DPOP_ALGS}"))
            } else {
                (format!("{BEARER_CHALLENGE}, "), String::new())
            };
            format!(r#"{scheme}error="insufficient_scope", error_description="{}"{algs}"#, quoted(&description))
        });
        Self::Forbidden(ErrorBody::new(code, description), challenge)
    }

    /// 401 for our own bearer-protected API (RFC 6750 §3), naming the DPoP scheme too.
    pub fn invalid_token(description: impl Into<String>) -> Self {
        let description = description.into();
        let challenge = format!(
            r#"{BEARER_CHALLENGE}, error="invalid_token", error_description="{}", DPoP {DPOP_ALGS}"#,
            quoted(&description)
        );
        Self::Unauthorized(ErrorBody::new(ErrorCode::InvalidToken, description), challenge)
    }

    /// 401 for a protected resource called with the DPoP scheme (RFC 9449 §7.1):
    /// `invalid_token`, `invalid_dpop_proof` or `use_dpop_nonce`, as a DPoP challenge.
    pub fn dpop_challenge(code: ErrorCode, description: impl Into<String>) -> Self {
        let description = description.into();
        let challenge = format!(r#"DPoP error="{code}", error_description="{}", {DPOP_ALGS}"#, quoted(&description));
        Self::Unauthorized(ErrorBody::new(code, description), challenge)
    }

    /// A domain error met at a protected resource called with the DPoP scheme: refused
    /// credentials become DPoP challenges, anything else answers as usual.
    pub fn at_dpop_resource(err: Error) -> Self {
        let description = err.to_string();
        match err {
            Error::InvalidToken(_) => Self::dpop_challenge(ErrorCode::InvalidToken, description),
            Error::InvalidDpopProof(_) => Self::dpop_challenge(ErrorCode::InvalidDpopProof, description),
            Error::UseDpopNonce => Self::dpop_challenge(ErrorCode::UseDpopNonce, description),
            other => other.into(),
        }
    }

    /// RFC 6749 §5.2: `invalid_client` is 401 with a challenge, everything else 400,
    /// and token responses are never cached.
    pub fn oauth(code: ErrorCode, description: impl Into<String>) -> Self {
        let body = ErrorBody::new(code, description);
        match code {
            ErrorCode::InvalidClient => Self::Unauthorized(body, r#"Basic realm="latchkey""#.into()),
            _ => Self::BadRequest(body, Some("no-store".into())),
        }
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let description = err.to_string();
        match err {
            Error::BadRequest { code, .. } => ApiError::bad_request(code, description),
            Error::InvalidCredentials => Self::Unauthorized(
                ErrorBody::new(ErrorCode::InvalidCredentials, description),
                BEARER_CHALLENGE.to_string(),
            ),
            Error::InvalidToken(_) => ApiError::invalid_token(description),
            Error::InvalidSecondFactor => {
                Self::Unauthorized(ErrorBody::new(ErrorCode::InvalidCode, description), BEARER_CHALLENGE.to_string())
            }
            Error::InvalidLink => Self::Unauthorized(
                ErrorBody::new(ErrorCode::InvalidEmailToken, description),
                BEARER_CHALLENGE.to_string(),
            ),
            Error::InvalidPasskey(_) => {
                Self::Unauthorized(ErrorBody::new(ErrorCode::InvalidPasskey, description), BEARER_CHALLENGE.to_string())
            }
            Error::Forbidden { code, .. } => ApiError::forbidden(code, description),
            Error::NotFound(_) => ApiError::NotFound(ErrorBody::new(ErrorCode::NotFound, description)),
            Error::Conflict { code, .. } => ApiError::Conflict(ErrorBody::new(code, description)),
            Error::OAuth { code, description } => ApiError::oauth(code, description),
            Error::RefreshRaced => ApiError::oauth(ErrorCode::InvalidGrant, description),
            // At the authorization server's endpoints (RFC 9449 §5, §8): 400.
            Error::InvalidDpopProof(_) => ApiError::oauth(ErrorCode::InvalidDpopProof, description),
            Error::UseDpopNonce => ApiError::oauth(ErrorCode::UseDpopNonce, description),
            Error::RateLimited { retry_after_secs } => {
                ApiError::TooManyRequests(ErrorBody::new(ErrorCode::RateLimited, description), retry_after_secs)
            }
            Error::Busy { retry_after_secs } => {
                ApiError::Unavailable(ErrorBody::new(ErrorCode::ServerBusy, description), retry_after_secs)
            }
            Error::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                ApiError::Unavailable(ErrorBody::new(ErrorCode::Unavailable, description), 1)
            }
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ApiError::Internal(ErrorBody::new(ErrorCode::InternalError, description))
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Gives every error response the JSON shape; typed [`ApiError`]s pass through as built.
/// Answers a panicking handler with our 500 body instead of a closed connection; the
/// panic's message goes to the log only.
#[derive(Clone, Copy)]
pub struct PanicAnswer;

impl poem::middleware::PanicHandler for PanicAnswer {
    type Response = Response;

    fn get_response(&self, err: Box<dyn std::any::Any + Send + 'static>) -> Response {
        let message = err
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        tracing::error!(panic = %message, "request handler panicked");
        poem::IntoResponse::into_response(ApiError::from(Error::Internal(message)))
    }
}

pub async fn render_error(err: poem::Error) -> Response {
    let message = err.to_string();
    let response = err.into_response();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return response;
    }
    let status = response.status();
    let (code, description) = match status {
        StatusCode::BAD_REQUEST => (ErrorCode::InvalidRequest, message),
        StatusCode::UNAUTHORIZED => (ErrorCode::InvalidToken, "missing or malformed bearer token".to_string()),
        StatusCode::FORBIDDEN => (ErrorCode::Forbidden, message),
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such resource".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => {
            (ErrorCode::MethodNotAllowed, "method not allowed on this resource".to_string())
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            let body = ErrorBody::new(ErrorCode::PayloadTooLarge, "request body is too large");
            return poem::IntoResponse::into_response(ApiError::PayloadTooLarge(body));
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            let body = ErrorBody::new(ErrorCode::UnsupportedMediaType, message);
            return poem::IntoResponse::into_response(ApiError::UnsupportedMediaType(body));
        }
        StatusCode::TOO_MANY_REQUESTS => (ErrorCode::RateLimited, message),
        s if s.is_server_error() => {
            tracing::error!(status = %s, %message, "unhandled server error");
            (ErrorCode::InternalError, "internal error".to_string())
        }
        _ => (ErrorCode::RequestFailed, message),
    };
    let retry_after = response.headers().get(RETRY_AFTER).cloned();
    let mut out = Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::json!({ "error": code.as_str(), "error_description": description }).to_string());
    if status == StatusCode::UNAUTHORIZED {
        out.headers_mut().insert(WWW_AUTHENTICATE, poem::http::HeaderValue::from_static(RESOURCE_CHALLENGE));
    }
    if let Some(value) = retry_after {
        out.headers_mut().insert(RETRY_AFTER, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use poem::listener::TcpAcceptor;
    use poem::{EndpointExt, Route, handler};

    use super::*;

    #[test]
    fn the_dpop_challenges_name_every_algorithm_a_proof_may_use() {
        let algs = crate::security::dpop::ALGORITHMS.join(" ");
        assert_eq!(DPOP_ALGS, format!(r#"algs="{algs}""#));
        assert!(RESOURCE_CHALLENGE.ends_with(DPOP_ALGS));
    }

    #[handler]
    fn explode() -> &'static str {
        panic!("a bug with a secret in its message")
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_a_json_500_not_a_closed_connection() {
        let app = Route::new().at("/", explode).with(poem::middleware::CatchPanic::new().with_handler(PanicAnswer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
        let resp = reqwest::get(format!("http://{addr}/")).await.unwrap();
        assert_eq!(resp.status(), 500);
        let body = resp.text().await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"], "internal_error");
        assert!(!body.contains("secret"), "the panic's message stays in the log: {body}");
    }
}
