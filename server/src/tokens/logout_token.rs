//! Logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.4): RS256 with the active
//! key, header `typ: logout+jwt`, the back-channel logout event, and never a `nonce`
//! (§2.4: its presence is how a relying party tells a logout token from an id_token).

use serde::{Deserialize, Serialize};

use super::keys::{KeyError, KeySet, TokenKind};
use crate::clock::UnixTime;

/// The one event member a logout token carries (§2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How long a logout token is valid: long enough for a relying party's clock to lag,
/// short enough that a captured one is soon worthless (§2.6 recommends a short `exp`).
pub const LOGOUT_TOKEN_LIFETIME_SECS: i64 = 120;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogoutClaims {
    pub iss: String,
    /// The relying party told.
    pub aud: String,
    pub iat: UnixTime,
    pub exp: UnixTime,
    /// The outbox message's id: the same in every attempt, so a relying party that
    /// keeps the `jti`s it has seen (§2.6) can drop the retry of a token it already
    /// acted on (delivery is at least once).
    pub jti: String,
    pub sub: String,
    /// The browser sign-in that ended; absent for sessions made without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub events: serde_json::Value,
}

impl LogoutClaims {
    pub fn new(jti: &str, iss: &str, aud: &str, sub: &str, sid: Option<&str>, now: UnixTime) -> Self {
        Self {
            iss: iss.to_string(),
            aud: aud.to_string(),
            iat: now,
            exp: now + LOGOUT_TOKEN_LIFETIME_SECS,
            jti: jti.to_string(),
            sub: sub.to_string(),
            sid: sid.map(str::to_string),
            events: serde_json::json!({ BACKCHANNEL_LOGOUT_EVENT: {} }),
        }
    }

    pub fn sign(&self, keys: &KeySet) -> Result<String, KeyError> {
        let signer = keys.signer.as_ref().ok_or(KeyError::Generation)?;
        let json = serde_json::to_vec(self).map_err(|_| KeyError::Generation)?;
        signer.sign_kind(TokenKind::Logout, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logout_token_names_the_event_and_never_a_nonce() {
        let claims = LogoutClaims::new("m-1", "https://id.example", "rp", "user-1", Some("sid-1"), 1_000);
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["events"], serde_json::json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
        assert_eq!(json["exp"], 1_000 + LOGOUT_TOKEN_LIFETIME_SECS);
        assert!(json.get("nonce").is_none());
        let without_sid = serde_json::to_value(LogoutClaims::new("m-2", "i", "rp", "u", None, 0)).unwrap();
        assert!(without_sid.get("sid").is_none(), "no sid is absent, not null");
        assert_eq!(json["jti"], "m-1");
    }
}
