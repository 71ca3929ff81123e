//! OpenID Connect id_tokens (Core §2): RS256 with the active key, `typ: JWT`, and the
//! `at_hash` of the access token issued beside it (Core §3.1.3.6).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys::{KeyError, KeySet, TokenKind};
use crate::clock::UnixTime;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    /// The client the token is for; one audience, so a plain string.
    pub aud: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub auth_time: UnixTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub acr: String,
    pub amr: Vec<String>,
    /// The browser login session (SSO), the one logout acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub azp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// The claims the granted scopes release (`profile`, `email`, `roles`).
    #[serde(flatten)]
    pub released: serde_json::Map<String, serde_json::Value>,
}

impl IdClaims {
    pub fn sign(&self, keys: &KeySet) -> Result<String, KeyError> {
        let signer = keys.signer.as_ref().ok_or(KeyError::Generation)?;
        let json = serde_json::to_vec(self).map_err(|_| KeyError::Generation)?;
        signer.sign_kind(TokenKind::Id, &json)
    }
}

/// What an `id_token_hint` we signed for `issuer` says, its signature checked and its
/// expiry ignored (Core §3.1.2.1, RP-Initiated Logout §2), or `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintClaims {
    pub sub: String,
    pub aud: String,
    /// The browser login session it was issued in.
    pub sid: Option<String>,
}

pub fn verified_hint(token: &str, keys: &KeySet, issuer: &str) -> Option<HintClaims> {
    #[derive(Deserialize)]
    struct Named {
        iss: String,
        sub: String,
        aud: String,
        #[serde(default)]
        sid: Option<String>,
    }
    let claims_b64 = super::access::verify_signed(token, keys, |typ| typ.eq_ignore_ascii_case("JWT")).ok()?;
    let named: Named = super::access::decode_part(claims_b64)?;
    (named.iss == issuer).then_some(HintClaims { sub: named.sub, aud: named.aud, sid: named.sid })
}

/// The subject of an id_token we signed for `issuer` (see [`verified_hint`]).
pub fn verified_subject(token: &str, keys: &KeySet, issuer: &str) -> Option<String> {
    verified_hint(token, keys, issuer).map(|hint| hint.sub)
}

/// `at_hash` for RS256: the base64url of the left half of SHA-256 of the token's ASCII.
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// The Authentication Context Class we report for `amr`: "2" when two factors were
/// used, else "1" (the levels of assurance Keycloak reports, so RPs need no mapping).
pub fn acr_for(amr: &[String]) -> &'static str {
    if amr.iter().any(|m| m == "mfa" || m == "otp" || m == "hwk") { "2" } else { "1" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_core_example() {
        // OpenID Connect Core, Appendix A.3 (RS256): the access token and its at_hash.
        assert_eq!(at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
    }
}
