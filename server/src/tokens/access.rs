//! RS256 JWT access tokens in the RFC 9068 profile: header `typ: at+jwt` with the
//! signing key's `kid`, and the claims listed in DESIGN.md.

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{KeyError, KeySet};
use crate::clock::UnixTime;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    /// The user id, or the client id for `client_credentials` tokens.
    pub sub: String,
    pub aud: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub nbf: UnixTime,
    pub jti: String,
    pub client_id: String,
    /// Space-separated granted scopes (RFC 9068 §2.2.3).
    pub scope: String,
    pub roles: Vec<String>,
    /// Session (token family) id; absent on `client_credentials` tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

/// Why a presented access token was not accepted. Callers answer all of these with the
/// same `invalid_token`; the variants exist for logs and tests.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unexpected header (alg must be RS256 and typ at+jwt)")]
    Header,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid signature or claims: {0}")]
    Invalid(String),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
}

impl AccessClaims {
    pub fn sign(&self, keys: &KeySet) -> Result<String, KeyError> {
        let signer = keys.signer.as_ref().ok_or(KeyError::Generation)?;
        let json = serde_json::to_vec(self).map_err(|_| KeyError::Generation)?;
        signer.sign_json(&json)
    }

    /// Verifies signature, header, issuer and audience, then time against `now` (our
    /// clock, not the system's, so expiry is testable) with `leeway` seconds of skew.
    pub fn verify(
        token: &str,
        keys: &KeySet,
        issuer: &str,
        audience: &str,
        now: UnixTime,
        leeway: i64,
    ) -> Result<Self, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let typ_ok = header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt"));
        if header.alg != Algorithm::RS256 || !typ_ok {
            return Err(TokenError::Header);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = keys.verifiers.get(&kid).ok_or(TokenError::UnknownKey)?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?
            .claims;
        if now > claims.exp + leeway {
            return Err(TokenError::Expired);
        }
        if now + leeway < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::keys::{KeyMaterial, PublishedKey};

    fn keyset() -> KeySet {
        let key = KeyMaterial::generate(2048).unwrap();
        let (n, e) = key.public_components();
        let published = PublishedKey { kid: key.kid().into(), n: n.into(), e: e.into() };
        KeySet::new(Some(key), &[published]).unwrap()
    }

    fn claims(now: UnixTime) -> AccessClaims {
        AccessClaims {
            iss: "https://issuer".into(),
            sub: "user-1".into(),
            aud: "latchkey".into(),
            exp: now + 900,
            iat: now,
            nbf: now,
            jti: "j".into(),
            client_id: "spa".into(),
            scope: "openid".into(),
            roles: vec!["user".into()],
            sid: Some("s".into()),
            auth_time: Some(now),
            amr: vec!["pwd".into()],
        }
    }

    #[test]
    fn sign_and_verify_with_time_checks() {
        let keys = keyset();
        let now = 1_800_000_000;
        let token = claims(now).sign(&keys).unwrap();
        let verified = AccessClaims::verify(&token, &keys, "https://issuer", "latchkey", now, 0).unwrap();
        assert_eq!(verified, claims(now));
        assert_eq!(
            AccessClaims::verify(&token, &keys, "https://issuer", "latchkey", now + 901, 0),
            Err(TokenError::Expired)
        );
        assert_eq!(
            AccessClaims::verify(&token, &keys, "https://issuer", "latchkey", now - 10, 0),
            Err(TokenError::NotYetValid)
        );
        assert!(AccessClaims::verify(&token, &keys, "https://other", "latchkey", now, 0).is_err());
        assert!(AccessClaims::verify(&token, &keys, "https://issuer", "other", now, 0).is_err());
        assert_eq!(
            AccessClaims::verify(&token, &keyset(), "https://issuer", "latchkey", now, 0),
            Err(TokenError::UnknownKey)
        );
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::tokens::keys::{KeyMaterial, PublishedKey};

    /// Tokens travel in every request header: keep one with 20 roles well under the
    /// common 8 KiB header limits (the README quotes this size).
    #[test]
    fn a_token_with_twenty_roles_stays_small() {
        let key = KeyMaterial::generate(2048).unwrap();
        let (n, e) = key.public_components();
        let published = PublishedKey { kid: key.kid().into(), n: n.into(), e: e.into() };
        let keys = KeySet::new(Some(key), &[published]).unwrap();
        let claims = AccessClaims {
            iss: "https://auth.example.com".into(),
            sub: "01a2086d-3590-73fa-b1f0-83e71616629a".into(),
            aud: "latchkey".into(),
            exp: 1_800_000_900,
            iat: 1_800_000_000,
            nbf: 1_800_000_000,
            jti: "01a2086d-3590-73fa-b1f0-83e71616629b".into(),
            client_id: "spa".into(),
            scope: "openid profile".into(),
            roles: (0..20).map(|i| format!("department-role-{i:02}")).collect(),
            sid: Some("01a2086d-3590-73fa-b1f0-83e71616629c".into()),
            auth_time: Some(1_800_000_000),
            amr: vec!["pwd".into()],
        };
        let token = claims.sign(&keys).unwrap();
        assert!(token.len() < 1600, "token with 20 roles is {} bytes", token.len());
    }
}
