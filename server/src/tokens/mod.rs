//! Token cryptography: RSA signing keys and their JWKs, RS256 access tokens (RFC 9068)
//! and opaque refresh tokens. No database access here; see `domain::keys` for the
//! lifecycle and `store::keys` for persistence.

pub mod access;
pub mod id_token;
pub mod keys;
pub mod logout_token;

pub use access::{AccessClaims, Confirmation, TokenError};
pub use id_token::IdClaims;
pub use keys::{KeyMaterial, KeyRing, KeySet, PublishedKey};

/// Prefix of refresh tokens, so secret scanners can recognise a leaked one.
pub const REFRESH_TOKEN_PREFIX: &str = "lk_rt_";
/// Prefix of authorization codes.
pub const AUTHORIZATION_CODE_PREFIX: &str = "lk_ac_";
/// Prefix of the browser login session cookie's value.
pub const SSO_TOKEN_PREFIX: &str = "lk_sso_";
/// Prefix of generated client secrets.
pub const CLIENT_SECRET_PREFIX: &str = "lk_cs_";
