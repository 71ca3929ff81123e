//! DPoP proofs (RFC 9449): checking one is a pure function of the proof, what the
//! request was (method, URL, access token) and `now`. What holds across requests — that
//! a `jti` is not seen twice, that a nonce is one we issued — is the caller's (the
//! replay cache in the store, [`Nonces`] here), given the [`VerifiedProof`] this returns.
//!
//! A proof is refused unless, in this order: it is a compact JWS whose header says
//! `typ: dpop+jwt`; its `alg` is one we allow (ES256, EdDSA, RS256, PS256 — never `none`
//! nor HMAC); its `jwk` is a public key only (any private member refuses it), of a type
//! and size that fits `alg`, in canonical base64url; the signature verifies under that
//! key; `htm` is the request's method and `htu` its URL (both normalised: scheme and
//! host lower-cased, default port dropped, no query or fragment — built from our
//! `public_url`, never the `Host` header); `iat` lies within the window; and, when an
//! access token is presented with it, `ath` is that token's hash. The key's identity is
//! its RFC 7638 thumbprint, computed from the required members only, in lexicographic
//! order, with no whitespace.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The signature algorithms a proof may use, as `dpop_signing_alg_values_supported`
/// says them. `Ed25519` is EdDSA's fully specified name (RFC 9864), which current
/// clients (oauth4webapi) put in their proofs.
pub const ALGORITHMS: [&str; 5] = ["ES256", "EdDSA", "Ed25519", "RS256", "PS256"];

/// Members that only a private (or symmetric) key has: a proof carrying any is refused.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What the nonce key is derived for (see [`crate::security::master_key::MasterKey::hmac_key`]).
pub const NONCE_KEY_PURPOSE: &str = "dpop-nonce";

/// How far `iat` may lie in the past, and in the future (clock skew).
pub const MAX_AGE_SECS: i64 = 300;
pub const MAX_FUTURE_SECS: i64 = 30;
/// The smallest RSA modulus accepted.
const MIN_RSA_BITS: usize = 2048;
/// The longest `jti` kept (the replay cache stores it).
const MAX_JTI_LEN: usize = 256;
/// A proof longer than this is not looked at (an RSA-4096 proof is well under it).
const MAX_PROOF_LEN: usize = 8192;

/// Why a proof was refused; each is an `invalid_dpop_proof` with this description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the DPoP proof is not a compact JWS")]
    Malformed,
    #[error("the DPoP proof's typ is not dpop+jwt")]
    WrongType,
    #[error("the DPoP proof's alg is not allowed")]
    UnsupportedAlgorithm,
    #[error("the DPoP proof's jwk is missing or not a public key that fits its alg")]
    BadKey,
    #[error("the DPoP proof's jwk holds a private key")]
    PrivateKey,
    #[error("the DPoP proof's signature does not verify under its jwk")]
    BadSignature,
    #[error("the DPoP proof lacks a claim it must carry (jti, htm, htu, iat)")]
    MissingClaim,
    #[error("the DPoP proof's htm is not this request's method")]
    WrongMethod,
    #[error("the DPoP proof's htu is not this request's URL")]
    WrongUri,
    #[error("the DPoP proof's iat is too old")]
    TooOld,
    #[error("the DPoP proof's iat is in the future")]
    FromTheFuture,
    #[error("the DPoP proof's ath is missing or not the access token's hash")]
    WrongAccessTokenHash,
}

/// What the proof must match: the request as this server received it.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub method: &'a str,
    /// The request's URL under our `public_url`, normalised with [`normalise_htu`].
    pub htu: &'a str,
    /// The access token presented with the proof (a protected resource), if any.
    pub access_token: Option<&'a str>,
}

/// A proof that passed: the key it binds to, and what the caller checks across requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key (base64url): `cnf.jkt`.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<i64>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// Checks `proof` against the request `expected` at `now`.
pub fn verify(proof: &str, expected: &Expected<'_>, now: i64) -> Result<VerifiedProof, ProofError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::Malformed);
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::Malformed);
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(ProofError::Malformed)?;
    if !header["typ"].as_str().is_some_and(|typ| typ.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(ProofError::WrongType);
    }
    // Extensions a verifier must understand (RFC 7515 §4.1.11): we understand none.
    if header.get("crit").is_some() {
        return Err(ProofError::Malformed);
    }
    let alg = header["alg"].as_str().filter(|alg| ALGORITHMS.contains(alg)).ok_or(ProofError::UnsupportedAlgorithm)?;
    let jwk = header.get("jwk").and_then(Value::as_object).ok_or(ProofError::BadKey)?;
    if PRIVATE_MEMBERS.iter().any(|member| jwk.contains_key(*member)) {
        return Err(ProofError::PrivateKey);
    }
    let required = required_members(jwk, alg)?;
    let jkt = URL_SAFE_NO_PAD.encode(Sha256::digest(required.as_bytes()));
    // The key is made of the members the thumbprint hashes and nothing else, so an
    // optional member (`alg`, `key_ops`, `kid`) can neither refuse nor change it.
    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_str(&required).map_err(|_| ProofError::BadKey)?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&parsed).map_err(|_| ProofError::BadKey)?;
    let algorithm = match alg {
        "Ed25519" => jsonwebtoken::Algorithm::EdDSA,
        other => other.parse().map_err(|_| ProofError::UnsupportedAlgorithm)?,
    };
    // The signature over the first two parts, checked before the claims are read.
    let signed = &proof[..header_b64.len() + 1 + claims_b64.len()];
    if !jsonwebtoken::crypto::verify(signature_b64, signed.as_bytes(), &key, algorithm).unwrap_or(false) {
        return Err(ProofError::BadSignature);
    }
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(ProofError::MissingClaim)?;
    let (Some(jti), Some(htm), Some(htu), Some(iat)) = (claims.jti, claims.htm, claims.htu, claims.iat) else {
        return Err(ProofError::MissingClaim);
    };
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(ProofError::MissingClaim);
    }
    if htm != expected.method {
        return Err(ProofError::WrongMethod);
    }
    if normalise_htu(&htu).as_deref() != Some(expected.htu) {
        return Err(ProofError::WrongUri);
    }
    if iat < now - MAX_AGE_SECS {
        return Err(ProofError::TooOld);
    }
    if iat > now + MAX_FUTURE_SECS {
        return Err(ProofError::FromTheFuture);
    }
    if let Some(token) = expected.access_token {
        let presented = claims.ath.ok_or(ProofError::WrongAccessTokenHash)?;
        if !super::constant_time_eq(presented.as_bytes(), access_token_hash(token).as_bytes()) {
            return Err(ProofError::WrongAccessTokenHash);
        }
    }
    Ok(VerifiedProof { jkt, jti, iat, nonce: claims.nonce })
}

/// `ath`: base64url(SHA-256(access token)).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// A URL as `htu` compares it (RFC 9449 §4.3): scheme and host lower-cased, the default
/// port dropped, no query, no fragment. `None` for anything that is not an absolute
/// http(s) URL.
pub fn normalise_htu(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let host = parsed.host_str()?;
    // `url` lower-cases the scheme and a domain host, and forgets a default port.
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{}://{}{port}{}", parsed.scheme(), host.to_ascii_lowercase(), parsed.path()))
}

/// A base64url member that must decode and be in canonical form (no padding, no stray
/// bits): the thumbprint hashes the text, so two spellings of one key must not pass.
fn canonical<'a>(jwk: &'a serde_json::Map<String, Value>, member: &str) -> Result<(&'a str, Vec<u8>), ProofError> {
    let text = jwk.get(member).and_then(Value::as_str).ok_or(ProofError::BadKey)?;
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| ProofError::BadKey)?;
    if URL_SAFE_NO_PAD.encode(&bytes) != text {
        return Err(ProofError::BadKey);
    }
    Ok((text, bytes))
}

/// The required members of a public `jwk` that fits `alg`, as RFC 7638 hashes them for
/// the thumbprint (lexicographic order, no whitespace), checking the key's shape.
fn required_members(jwk: &serde_json::Map<String, Value>, alg: &str) -> Result<String, ProofError> {
    let kty = jwk.get("kty").and_then(Value::as_str).ok_or(ProofError::BadKey)?;
    let crv = jwk.get("crv").and_then(Value::as_str);
    // Members in lexicographic order, as §3.3 requires; the values are JSON strings of
    // base64url or fixed names, which need no escaping.
    let input = match (alg, kty, crv) {
        ("ES256", "EC", Some("P-256")) => {
            let (x, xb) = canonical(jwk, "x")?;
            let (y, yb) = canonical(jwk, "y")?;
            if xb.len() != 32 || yb.len() != 32 {
                return Err(ProofError::BadKey);
            }
            format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
        }
        ("EdDSA" | "Ed25519", "OKP", Some("Ed25519")) => {
            let (x, xb) = canonical(jwk, "x")?;
            if xb.len() != 32 {
                return Err(ProofError::BadKey);
            }
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#)
        }
        ("RS256" | "PS256", "RSA", _) => {
            let (e, _) = canonical(jwk, "e")?;
            let (n, nb) = canonical(jwk, "n")?;
            // Unsigned big-endian without a leading zero (RFC 7518 §6.3.1.1).
            if nb.first() == Some(&0) || nb.len() * 8 < MIN_RSA_BITS {
                return Err(ProofError::BadKey);
            }
            format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#)
        }
        _ => return Err(ProofError::BadKey),
    };
    Ok(input)
}

/// Server nonces (`DPoP-Nonce`, RFC 9449 §8), stateless: the HMAC of a time window's
/// number under a key every node derives from the master key, so any node accepts
/// another's. The current window's nonce is handed out; it and the previous window's are
/// accepted, so a nonce lives between one and two windows — and the next window's, so a
/// node whose clock runs a little behind another's takes the nonces that one hands out.
pub struct Nonces {
    key: hmac::Key,
    window_secs: i64,
}

impl Nonces {
    pub fn new(key: hmac::Key, window_secs: i64) -> Self {
        Self { key, window_secs: window_secs.max(1) }
    }

    fn for_window(&self, window: i64) -> String {
        let tag = hmac::sign(&self.key, &window.to_be_bytes());
        URL_SAFE_NO_PAD.encode(&tag.as_ref()[..18])
    }

    /// The nonce to hand out at `now`.
    pub fn current(&self, now: i64) -> String {
        self.for_window(now.div_euclid(self.window_secs))
    }

    /// Whether `nonce` is one this server handed out within the last one or two windows
    /// (or the next window's, handed out by a node whose clock is ahead).
    pub fn is_fresh(&self, nonce: &str, now: i64) -> bool {
        let window = now.div_euclid(self.window_secs);
        [window, window - 1, window + 1]
            .iter()
            .any(|w| super::constant_time_eq(nonce.as_bytes(), self.for_window(*w).as_bytes()))
    }
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces").field("window_secs", &self.window_secs).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    const HTU: &str = "https://id.example.com/oauth2/token";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A P-256 key pair and its public JWK.
    fn es256() -> (EcdsaKeyPair, Value) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref(); // 0x04 ‖ x ‖ y
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        (pair, jwk)
    }

    fn sign_es256(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn claims(now: i64) -> Value {
        json!({"jti": "a1", "htm": "POST", "htu": HTU, "iat": now})
    }

    fn expected() -> Expected<'static> {
        Expected { method: "POST", htu: HTU, access_token: None }
    }

    #[test]
    fn a_good_es256_proof_passes_and_names_its_key_by_thumbprint() {
        let (pair, jwk) = es256();
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let proof = sign_es256(&pair, &header, &claims(1000));
        let verified = verify(&proof, &expected(), 1000).unwrap();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(verified.jkt, b64(&Sha256::digest(canonical.as_bytes())));
        assert_eq!((verified.jti.as_str(), verified.iat), ("a1", 1000));
        // The same thumbprint as the JOSE library's own (jsonwebtoken's RFC 7638 code).
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
        assert_eq!(verified.jkt, parsed.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256).unwrap());
    }

    #[test]
    fn optional_jwk_members_change_nothing() {
        let (pair, jwk) = es256();
        let plain = verify(
            &sign_es256(&pair, &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}), &claims(7)),
            &expected(),
            7,
        )
        .unwrap();
        let mut dressed = jwk.clone();
        dressed["alg"] = json!("ES256");
        dressed["key_ops"] = json!(["verify", "something-new"]);
        dressed["kid"] = json!("mine");
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": dressed});
        let verified = verify(&sign_es256(&pair, &header, &claims(7)), &expected(), 7).unwrap();
        assert_eq!(verified.jkt, plain.jkt, "the thumbprint hashes the required members only");
    }

    #[test]
    fn the_rfc_7638_example_key_has_the_rfc_thumbprint() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = json!({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
        assert_eq!(
            URL_SAFE_NO_PAD.encode(Sha256::digest(required_members(jwk.as_object().unwrap(), "RS256").unwrap())),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn an_ed25519_proof_passes() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
        // Under its polymorphic name and its fully specified one (RFC 9864).
        for alg in ["EdDSA", "Ed25519"] {
            let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
            let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims(5).to_string().as_bytes()));
            let proof = format!("{input}.{}", b64(pair.sign(input.as_bytes()).as_ref()));
            assert!(verify(&proof, &expected(), 5).is_ok(), "{alg}");
        }
    }

    #[test]
    fn each_bad_proof_is_refused_for_its_own_reason() {
        let (pair, jwk) = es256();
        let (other, _) = es256();
        let now = 10_000;
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let with = |header: &Value, claims: &Value| sign_es256(&pair, header, claims);
        let mut private = jwk.clone();
        private["d"] = json!(b64(&[7; 32]));
        let mut padded = jwk.clone();
        padded["x"] = json!(format!("{}=", jwk["x"].as_str().unwrap()));
        let cases: Vec<(String, ProofError)> = vec![
            ("not.a-jws".into(), ProofError::Malformed),
            (with(&json!({"typ": "jwt", "alg": "ES256", "jwk": jwk}), &claims(now)), ProofError::WrongType),
            (
                with(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk}), &claims(now)),
                ProofError::UnsupportedAlgorithm,
            ),
            (
                with(&json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}), &claims(now)),
                ProofError::UnsupportedAlgorithm,
            ),
            (with(&json!({"typ": "dpop+jwt", "alg": "ES256"}), &claims(now)), ProofError::BadKey),
            (with(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}), &claims(now)), ProofError::PrivateKey),
            (with(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": padded}), &claims(now)), ProofError::BadKey),
            (with(&json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk}), &claims(now)), ProofError::BadKey),
            (
                with(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk, "crit": ["exp"]}), &claims(now)),
                ProofError::Malformed,
            ),
            (sign_es256(&other, &header, &claims(now)), ProofError::BadSignature),
            (with(&header, &json!({"htm": "POST", "htu": HTU, "iat": now})), ProofError::MissingClaim),
            (with(&header, &json!({"jti": "a", "htm": "GET", "htu": HTU, "iat": now})), ProofError::WrongMethod),
            (
                with(
                    &header,
                    &json!({"jti": "a", "htm": "POST", "htu": "https://id.example.com/oauth2/revoke", "iat": now}),
                ),
                ProofError::WrongUri,
            ),
            (
                with(
                    &header,
                    &json!({"jti": "a", "htm": "POST", "htu": "https://evil.example/oauth2/token", "iat": now}),
                ),
                ProofError::WrongUri,
            ),
            (with(&header, &json!({"jti": "a", "htm": "POST", "htu": HTU, "iat": now - 301})), ProofError::TooOld),
            (
                with(&header, &json!({"jti": "a", "htm": "POST", "htu": HTU, "iat": now + 31})),
                ProofError::FromTheFuture,
            ),
        ];
        for (proof, reason) in cases {
            assert_eq!(verify(&proof, &expected(), now), Err(reason), "{reason}");
        }
        // A tampered payload breaks the signature.
        let good = with(&header, &claims(now));
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        parts[1] = b64(json!({"jti": "b", "htm": "POST", "htu": HTU, "iat": now}).to_string().as_bytes());
        assert_eq!(verify(&parts.join("."), &expected(), now), Err(ProofError::BadSignature));
    }

    #[test]
    fn htu_is_compared_normalised_and_without_query_or_fragment() {
        let (pair, jwk) = es256();
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        for htu in ["HTTPS://ID.Example.COM:443/oauth2/token", "https://id.example.com/oauth2/token?x=1#f"] {
            let proof = sign_es256(&pair, &header, &json!({"jti": "a", "htm": "POST", "htu": htu, "iat": 1}));
            assert!(verify(&proof, &expected(), 1).is_ok(), "{htu}");
        }
        assert_eq!(normalise_htu("http://localhost:8080/a/b?c").as_deref(), Some("http://localhost:8080/a/b"));
        assert_eq!(normalise_htu("http://localhost:80/"), Some("http://localhost/".into()));
        assert_eq!(normalise_htu("ftp://x/"), None);
        let proof = sign_es256(
            &pair,
            &header,
            &json!({"jti": "a", "htm": "POST", "htu": "https://id.example.com:8443/oauth2/token", "iat": 1}),
        );
        assert_eq!(verify(&proof, &expected(), 1), Err(ProofError::WrongUri), "another port is another URL");
    }

    #[test]
    fn ath_binds_the_proof_to_the_access_token_presented() {
        let (pair, jwk) = es256();
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let me = Expected { method: "GET", htu: "https://id.example.com/auth/me", access_token: Some("at-1") };
        let signed = |ath: Option<String>| {
            let mut c = json!({"jti": "a", "htm": "GET", "htu": me.htu, "iat": 1});
            if let Some(ath) = ath {
                c["ath"] = json!(ath);
            }
            sign_es256(&pair, &header, &c)
        };
        assert!(verify(&signed(Some(access_token_hash("at-1"))), &me, 1).is_ok());
        assert_eq!(verify(&signed(Some(access_token_hash("at-2"))), &me, 1), Err(ProofError::WrongAccessTokenHash));
        assert_eq!(verify(&signed(None), &me, 1), Err(ProofError::WrongAccessTokenHash));
    }

    #[test]
    fn nonces_live_one_to_two_windows_and_come_from_the_key() {
        let nonces = Nonces::new(hmac::Key::new(hmac::HMAC_SHA256, b"k1"), 300);
        let issued = nonces.current(1000);
        assert!(nonces.is_fresh(&issued, 1000));
        assert!(nonces.is_fresh(&issued, 1199), "the next window still takes it");
        assert!(!nonces.is_fresh(&issued, 1500), "two windows on, it is stale");
        // 1000 is in window 3 (900..1200): a node at 850, in window 2, takes it too.
        assert!(nonces.is_fresh(&issued, 850), "a node a little behind takes the next window's");
        assert!(!nonces.is_fresh(&issued, 550), "but not one two windows behind");
        let other = Nonces::new(hmac::Key::new(hmac::HMAC_SHA256, b"k2"), 300);
        assert!(!other.is_fresh(&issued, 1000), "another key's nonce is not ours");
        assert!(!nonces.is_fresh("made-up", 1000));
    }
}
