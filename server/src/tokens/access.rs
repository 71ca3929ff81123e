//! RS256 JWT access tokens in the RFC 9068 profile: header `typ: at+jwt` with the
//! signing key's `kid`, and the claims listed in DESIGN.md.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
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
    /// The key the token is bound to (RFC 9449 §6.1): presented only with a DPoP proof
    /// by that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// `cnf` of a DPoP-bound token: the RFC 7638 thumbprint of the client's key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    pub jkt: String,
}

/// The JOSE header fields we look at (RFC 7515 §4.1).
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    /// Extensions a verifier must understand; we define none, so any is refused.
    crit: Option<serde_json::Value>,
}

/// A base64url (unpadded) JSON part of a compact JWS.
pub(crate) fn decode_part<T: DeserializeOwned>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// Checks a compact JWS we signed: three parts, `alg` exactly RS256 (never `none` or an
/// HMAC), a `typ` that `typ_ok` accepts, no `crit`, a `kid` we publish, and the
/// signature — before anything reads the claims. Returns the claims' base64url part.
pub(crate) fn verify_signed<'t>(
    token: &'t str,
    keys: &KeySet,
    typ_ok: impl Fn(&str) -> bool,
) -> Result<&'t str, TokenError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: JoseHeader = decode_part(header_b64).ok_or(TokenError::Malformed)?;
    if header.alg != "RS256" || !header.typ.as_deref().is_some_and(typ_ok) || header.crit.is_some() {
        return Err(TokenError::Header);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let key = keys.verifiers.get(&kid).ok_or(TokenError::UnknownKey)?;
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| TokenError::Malformed)?;
    let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
    key.verify_sig(signed.as_bytes(), &signature).map_err(|_| TokenError::Invalid("bad signature".into()))?;
    Ok(claims_b64)
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

    /// Verifies header, signature, issuer and audience, then time against `now` (our
    /// clock, not the system's, so expiry is testable) with `leeway` seconds of skew.
    ///
    /// Written out rather than through `jsonwebtoken::decode`, which rebuilt the RSA key
    /// from `n` and `e` and parsed the claims twice for every token (about 40% of the
    /// cost of a bearer check). Only our own tokens are accepted: compact JWS, `alg`
    /// exactly RS256 (never `none` or an HMAC), `typ` at+jwt, no `crit`, a `kid` we
    /// publish, and the signature checked before the claims are read. The integration
    /// tests cross-check with `jsonwebtoken` and forge tokens against this function.
    pub fn verify(
        token: &str,
        keys: &KeySet,
        issuer: &str,
        audience: &str,
        now: UnixTime,
        leeway: i64,
    ) -> Result<Self, TokenError> {
        let is_access_token =
            |typ: &str| typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt");
        let claims_b64 = verify_signed(token, keys, is_access_token)?;
        let claims: AccessClaims =
            decode_part(claims_b64).ok_or_else(|| TokenError::Invalid("claims are not an access token".into()))?;
        if claims.iss != issuer {
            return Err(TokenError::Invalid("wrong issuer".into()));
        }
        if claims.aud != audience {
            return Err(TokenError::Invalid("wrong audience".into()));
        }
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
            cnf: None,
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

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let keys = keyset();
        let now = 1_800_000_000;
        let token = claims(now).sign(&keys).unwrap();
        let verify = |t: &str| AccessClaims::verify(t, &keys, "https://issuer", "latchkey", now, 0);
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = |json: &str| URL_SAFE_NO_PAD.encode(json);

        // Claims changed after signing.
        let mut forged = claims(now);
        forged.roles = vec!["admin".into()];
        let forged_claims = b64(&serde_json::to_string(&forged).unwrap());
        assert!(matches!(verify(&format!("{}.{forged_claims}.{}", parts[0], parts[2])), Err(TokenError::Invalid(_))));
        // Headers we do not accept, each with the original signature.
        let kid = keys.signer.as_ref().unwrap().kid();
        for header in [
            format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"RS256","typ":"JWT","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}","crit":["exp"]}}"#),
        ] {
            assert_eq!(verify(&format!("{}.{}.{}", b64(&header), parts[1], parts[2])), Err(TokenError::Header));
        }
        // Not a compact JWS.
        for bad in [String::new(), format!("{}.{}", parts[0], parts[1]), format!("{token}.x"), format!("{token}=")] {
            assert!(verify(&bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            verify(&format!("{}.{}.{}", parts[0], parts[1], &parts[2][4..])),
            Err(TokenError::Invalid("bad signature".into()))
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
            cnf: None,
        };
        let token = claims.sign(&keys).unwrap();
        assert!(token.len() < 1600, "token with 20 roles is {} bytes", token.len());
    }
}
