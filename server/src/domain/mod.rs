//! The rules of the product: who may log in, how sessions and refresh tokens behave,
//! which OAuth grants are allowed. No HTTP here (nothing imports poem): functions take
//! plain inputs, the shared [`AppState`](crate::state::AppState) and the current time
//! from its clock, and return [`Error`], which `api::error` maps to responses in one place.

pub mod account;
pub mod audit;
pub mod auth;
pub mod authorize;
pub mod backchannel;
pub mod clients;
pub mod code_grant;
pub mod dpop;
pub mod grants;
pub mod keys;
pub mod lockout;
pub mod logout;
pub mod mail;
pub mod maintenance;
pub mod mfa;
pub mod oauth;
pub mod passkeys;
pub mod rbac;
pub mod reset;
pub mod sessions;
pub mod signin;
pub mod users;
pub mod verification;

use crate::security::password::HashError;
use crate::store::StoreError;
pub use latchkey_codes::ErrorCode;

/// The one application error type. Every variant has a stable machine code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that fails validation (400).
    #[error("{description}")]
    BadRequest { code: ErrorCode, description: String },
    /// Wrong username or password, or a locked or disabled account: one generic answer.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// A wrong, expired or already used TOTP or recovery code (401).
    #[error("invalid or already used code")]
    InvalidSecondFactor,
    /// A passkey's answer was refused (401; registration answers 400).
    #[error("{0}")]
    InvalidPasskey(String),
    /// A mailed link (reset, verification) that cannot be used: unknown, used, expired,
    /// replaced or no longer matching its account (401 `invalid_email_token`, like any
    /// other refused credential).
    #[error("this link is invalid, used or expired; ask for a new one")]
    InvalidLink,
    /// A missing, malformed, expired or revoked bearer token (401).
    #[error("{0}")]
    InvalidToken(String),
    /// Authenticated but not allowed (403).
    #[error("{description}")]
    Forbidden { code: ErrorCode, description: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{description}")]
    Conflict { code: ErrorCode, description: String },
    /// An OAuth protocol error, answered in RFC 6749 §5.2 form.
    #[error("{code}: {description}")]
    OAuth { code: ErrorCode, description: String },
    /// A DPoP proof that does not pass (`invalid_dpop_proof`: 400 at the authorization
    /// server's endpoints, a 401 DPoP challenge at a protected resource).
    #[error("{0}")]
    InvalidDpopProof(String),
    /// A DPoP proof without a nonce we issued lately (`use_dpop_nonce`, RFC 9449 §8);
    /// the answer carries a fresh one in `DPoP-Nonce`.
    #[error("send the DPoP proof again with the nonce in the DPoP-Nonce header")]
    UseDpopNonce,
    /// The refresh token was rotated moments ago by a concurrent request (grace window).
    #[error("refresh token already rotated; retry with the newest refresh token")]
    RefreshRaced,
    /// Too many attempts; retry after the given number of seconds (429).
    #[error("too many requests, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Too much work queued (the password hashing pool is full); retry shortly.
    #[error("server busy, retry shortly")]
    Busy { retry_after_secs: u64 },
    /// The database is unreachable (503).
    #[error("service temporarily unavailable")]
    Unavailable(String),
    /// A bug or an unexpected failure; details go to the log, never to the client.
    #[error("internal error")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad_request(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::BadRequest { code, description: description.into() }
    }

    pub fn oauth(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::OAuth { code, description: description.into() }
    }

    /// The single answer for any refresh token that cannot be used: revoked, expired,
    /// unknown or issued to another client are indistinguishable to the caller.
    pub fn invalid_refresh_token() -> Self {
        Self::oauth(ErrorCode::InvalidGrant, "refresh token is invalid, expired or revoked")
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict => Error::Conflict { code: ErrorCode::Conflict, description: err.to_string() },
            StoreError::Missing(what) => Error::bad_request(ErrorCode::UnknownReference, format!("unknown {what}")),
            StoreError::LastAdmin => Error::Conflict { code: ErrorCode::LastAdmin, description: err.to_string() },
            StoreError::Unavailable(e) => Error::Unavailable(e.to_string()),
            StoreError::Db(e) => Error::Internal(e.to_string()),
        }
    }
}

impl From<HashError> for Error {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => Error::Busy { retry_after_secs: 1 },
            HashError::Internal(e) => Error::Internal(e),
        }
    }
}

/// A fresh random identifier (UUIDv7: time-ordered, so index-friendly).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
