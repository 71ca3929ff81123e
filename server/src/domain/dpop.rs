//! DPoP (RFC 9449) at our endpoints: a request's proof is checked against the request
//! ([`crate::security::dpop::verify`], pure), then against what holds across requests
//! and nodes — a nonce this server issued lately, when nonces are required, and a
//! `jti` no node has seen from that key — in that order. What a proof then binds (the
//! access token's `cnf`, a public client's session, a code's `dpop_jkt`) is the
//! caller's, through [`RequestContext::dpop_jkt`](super::auth::RequestContext).

use crate::security::dpop::{self, Expected, MAX_AGE_SECS, MAX_FUTURE_SECS, VerifiedProof};
use crate::security::{constant_time_eq, sha256_hex};
use crate::state::AppState;
use crate::store::TokenStore;
use crate::store::clients::ClientRow;
use crate::tokens::Confirmation;

use super::auth::RequestContext;

use super::{Error, Result};

/// A request as a proof must match it.
pub struct ProofRequest<'a> {
    /// Every `DPoP` header the request carried (more than one is refused, §4.3).
    pub proofs: &'a [&'a str],
    pub method: &'a str,
    /// The request's path, as routed (the proof's `htu` is our issuer URL plus it).
    pub path: &'a str,
    /// The access token presented with the proof, at a protected resource.
    pub access_token: Option<&'a str>,
}

/// The request's proof, checked: `None` when the request carried none.
pub async fn check(state: &AppState, request: &ProofRequest<'_>, now: i64) -> Result<Option<VerifiedProof>> {
    let proof = match request.proofs {
        [] => return Ok(None),
        [one] => *one,
        _ => return Err(Error::InvalidDpopProof("send one DPoP header, not several".into())),
    };
    let htu = dpop::normalise_htu(&format!("{}{}", state.config.issuer, request.path))
        .ok_or_else(|| Error::Internal("the issuer is not an http(s) URL".into()))?;
    let expected = Expected { method: request.method, htu: &htu, access_token: request.access_token };
    let refused = |reason: &str| state.metrics.dpop_refused.with_label_values(&[reason]).inc();
    let verified = dpop::verify(proof, &expected, now).map_err(|e| {
        refused("invalid");
        Error::InvalidDpopProof(e.to_string())
    })?;
    if state.config.dpop.require_nonce
        && !verified.nonce.as_deref().is_some_and(|nonce| state.dpop_nonces.is_fresh(nonce, now))
    {
        refused("nonce");
        return Err(Error::UseDpopNonce);
    }
    // Kept while the proof's iat could still pass; then the purge takes it.
    let kept_until = verified.iat.max(now) + MAX_AGE_SECS + MAX_FUTURE_SECS;
    if !state.tokens.first_use_of_proof(&replay_key(&verified), kept_until).await? {
        refused("replay");
        return Err(Error::InvalidDpopProof("this DPoP proof was used before".into()));
    }
    Ok(Some(verified))
}

/// RFC 9449 §5.2: a client registered with `dpop_bound_access_tokens` is given tokens
/// only for a proof — at the token endpoint and on the cookie endpoints alike.
pub fn check_client_demand(client: &ClientRow, ctx: &RequestContext) -> Result<()> {
    if client.dpop_bound_access_tokens && ctx.dpop_jkt.is_none() {
        return Err(Error::InvalidDpopProof("this client must send a DPoP proof with every token request".into()));
    }
    Ok(())
}

/// How an access token came to a protected resource.
pub enum Presentation<'a> {
    /// `Authorization: Bearer`.
    Bearer,
    /// `Authorization: DPoP` with this proof, already checked (with `ath`).
    Dpop(&'a VerifiedProof),
}

/// RFC 9449 §7: a bound token only with a proof by its key, and the DPoP scheme only
/// for a bound token — so a stolen bound token is refused as a bearer token.
pub fn judge_presentation(cnf: Option<&Confirmation>, presented: Presentation<'_>) -> Result<()> {
    match (cnf, presented) {
        (None, Presentation::Bearer) => Ok(()),
        (Some(_), Presentation::Bearer) => Err(Error::InvalidToken(
            "this token is bound to a DPoP key: send it as `Authorization: DPoP` with a proof".into(),
        )),
        (Some(cnf), Presentation::Dpop(proof)) if constant_time_eq(cnf.jkt.as_bytes(), proof.jkt.as_bytes()) => Ok(()),
        // RFC 9449 §7.1: the token does not hold for this key (a valid proof, another key).
        (Some(_), Presentation::Dpop(_)) => {
            Err(Error::InvalidToken("invalid DPoP key binding: the token is bound to another key".into()))
        }
        (None, Presentation::Dpop(_)) => {
            Err(Error::InvalidToken("this token is not bound to a DPoP key: send it as a Bearer token".into()))
        }
    }
}

/// The replay table's key for a proof: its key and `jti` together (two clients may pick
/// the same `jti`), hashed to one size.
fn replay_key(proof: &VerifiedProof) -> String {
    // A thumbprint is base64url: it holds no NUL, so the seam is unambiguous.
    sha256_hex(&format!("{}\0{}", proof.jkt, proof.jti))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof(jkt: &str, jti: &str) -> VerifiedProof {
        VerifiedProof { jkt: jkt.into(), jti: jti.into(), iat: 0, nonce: None }
    }

    #[test]
    fn a_bound_token_needs_its_own_key_and_dpop_needs_a_bound_token() {
        let cnf = Confirmation { jkt: "key-a".into() };
        let (mine, theirs) = (proof("key-a", "1"), proof("key-b", "1"));
        assert!(judge_presentation(None, Presentation::Bearer).is_ok());
        assert!(judge_presentation(Some(&cnf), Presentation::Dpop(&mine)).is_ok());
        assert!(matches!(judge_presentation(Some(&cnf), Presentation::Bearer), Err(Error::InvalidToken(_))));
        assert!(matches!(judge_presentation(Some(&cnf), Presentation::Dpop(&theirs)), Err(Error::InvalidToken(_))));
        assert!(matches!(judge_presentation(None, Presentation::Dpop(&mine)), Err(Error::InvalidToken(_))));
    }

    #[test]
    fn the_replay_key_names_key_and_jti_together() {
        assert_eq!(replay_key(&proof("a", "b")), replay_key(&proof("a", "b")));
        assert_ne!(replay_key(&proof("a", "b")), replay_key(&proof("c", "b")), "another key's jti is its own");
        assert_ne!(replay_key(&proof("ab", "c")), replay_key(&proof("a", "bc")), "the seam is not ambiguous");
        assert_eq!(replay_key(&proof("a", "b")).len(), 64);
    }
}
