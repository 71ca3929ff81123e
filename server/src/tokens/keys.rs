//! RSA key material and the in-memory key ring.
//!
//! Keys are generated and parsed with aws-lc-rs. The private key is parsed once into an
//! `RsaKeyPair` and reused for every signature (aws-lc's RSA is constant-time); nothing
//! re-parses DER per token. The `rsa` crate is deliberately not used for signing
//! (RUSTSEC-2023-0071), and generation also goes through aws-lc: it is several times
//! faster than the `rsa` crate's, which matters for start-up and tests.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported RSA key size {0} (use 2048, 3072 or 4096)")]
    UnsupportedSize(u32),
    #[error("RSA key generation failed")]
    Generation,
    #[error("the private key is not a valid RSA key: {0}")]
    Rejected(String),
}

const TOO_SHORT: &str = "keys shorter than 2048 bits are not accepted";

/// aws-lc refuses short keys itself; say so in our words.
fn rejected(e: aws_lc_rs::error::KeyRejected) -> KeyError {
    if e.to_string() == "TooSmall" { KeyError::Rejected(TOO_SHORT.into()) } else { KeyError::Rejected(e.to_string()) }
}

/// A parsed RSA private key with its public JWK parameters.
pub struct KeyMaterial {
    kid: String,
    bits: u32,
    pair: RsaKeyPair,
    n: String,
    e: String,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial").field("kid", &self.kid).field("bits", &self.bits).finish_non_exhaustive()
    }
}

impl KeyMaterial {
    pub fn generate(bits: u32) -> Result<Self, KeyError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(KeyError::UnsupportedSize(other)),
        };
        let pair = RsaKeyPair::generate(size).map_err(|_| KeyError::Generation)?;
        Ok(Self::from_pair(pair))
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair = RsaKeyPair::from_pkcs8(der).map_err(rejected)?;
        if pair.public_modulus_len() < 256 {
            return Err(KeyError::Rejected(TOO_SHORT.into()));
        }
        Ok(Self::from_pair(pair))
    }

    /// A PKCS#1 `RSAPrivateKey` (the body of a `BEGIN RSA PRIVATE KEY` PEM block).
    pub fn from_pkcs1(der: &[u8]) -> Result<Self, KeyError> {
        let pair = RsaKeyPair::from_der(der).map_err(rejected)?;
        if pair.public_modulus_len() < 256 {
            return Err(KeyError::Rejected(TOO_SHORT.into()));
        }
        Ok(Self::from_pair(pair))
    }

    fn from_pair(pair: RsaKeyPair) -> Self {
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let bits = (pair.public_modulus_len() * 8) as u32;
        let kid = jwk_thumbprint(&n, &e);
        Self { kid, bits, pair, n, e }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    pub fn public_components(&self) -> (&str, &str) {
        (&self.n, &self.e)
    }

    /// The private key as PKCS#8 DER, for encryption at rest.
    pub fn pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let der = self.pair.as_der().map_err(|_| KeyError::Generation)?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) over the required RSA members in
/// lexicographic order.
pub fn jwk_thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// One public key as published in the JWKS (RFC 7517).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: &'static str,
    pub kid: String,
    pub n: String,
    pub e: String,
}

/// A key that verifiers should know about (pending, active or recently retired).
#[derive(Debug, Clone)]
pub struct PublishedKey {
    pub kid: String,
    pub n: String,
    pub e: String,
}

/// What a signed token is, as its JWS header's `typ` says (RFC 8725 §3.11: explicit
/// types, so one kind of token can never be taken for another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// RFC 9068 `at+jwt`.
    Access,
    /// OpenID Connect id_token, `typ: JWT` as Core §2's examples and most libraries expect.
    Id,
    /// Back-Channel Logout 1.0 §2.4 `logout+jwt`.
    Logout,
}

/// The key that signs new tokens. The JWS headers are pre-encoded once per key.
pub struct Signer {
    kid: String,
    access_header_b64: String,
    id_header_b64: String,
    logout_header_b64: String,
    pair: RsaKeyPair,
}

impl Signer {
    fn new(material: KeyMaterial) -> Self {
        let header =
            |typ: &str| URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","typ":"{typ}","kid":"{}"}}"#, material.kid));
        Self {
            access_header_b64: header("at+jwt"),
            id_header_b64: header("JWT"),
            logout_header_b64: header("logout+jwt"),
            kid: material.kid,
            pair: material.pair,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Produces a compact JWS over `claims` (an access token).
    pub fn sign_json(&self, claims_json: &[u8]) -> Result<String, KeyError> {
        self.sign_kind(TokenKind::Access, claims_json)
    }

    /// Produces a compact JWS over `claims`, typed as `kind`.
    pub fn sign_kind(&self, kind: TokenKind, claims_json: &[u8]) -> Result<String, KeyError> {
        let header_b64 = match kind {
            TokenKind::Access => &self.access_header_b64,
            TokenKind::Id => &self.id_header_b64,
            TokenKind::Logout => &self.logout_header_b64,
        };
        let mut token = String::with_capacity(header_b64.len() + claims_json.len() * 4 / 3 + 360);
        token.push_str(header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims_json, &mut token);
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair.sign(&RSA_PKCS1_SHA256, &rng, token.as_bytes(), &mut signature).map_err(|_| KeyError::Generation)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// A consistent snapshot: the signer, every verification key by `kid`, and the JWKS
/// document serialised once.
pub struct KeySet {
    pub signer: Option<Signer>,
    /// Parsed once per key set: a verification reuses the key (and its Montgomery
    /// constants) instead of rebuilding it from `n` and `e` for every token.
    pub verifiers: HashMap<String, ParsedPublicKey>,
    pub jwks: Vec<Jwk>,
    /// `{"keys": jwks}` as served at the JWKS endpoint: serialised when the set is
    /// built, so serving it copies nothing.
    pub jwks_json: bytes::Bytes,
}

impl KeySet {
    /// Identifies a set by its signing kid and published kids, so a reload can tell
    /// whether anything changed without decrypting or parsing keys again.
    pub fn fingerprint<'a>(signing_kid: Option<&str>, published_kids: impl Iterator<Item = &'a str>) -> String {
        let mut out = signing_kid.unwrap_or("-").to_string();
        for kid in published_kids {
            out.push(' ');
            out.push_str(kid);
        }
        out
    }

    pub fn current_fingerprint(&self) -> String {
        Self::fingerprint(self.signer.as_ref().map(Signer::kid), self.jwks.iter().map(|k| k.kid.as_str()))
    }

    pub fn new(active: Option<KeyMaterial>, published: &[PublishedKey]) -> Result<Self, KeyError> {
        let mut verifiers = HashMap::new();
        let mut jwks = Vec::new();
        for key in published {
            verifiers.insert(key.kid.clone(), parse_public_key(&key.n, &key.e)?);
            jwks.push(Jwk {
                kty: "RSA",
                use_: "sig",
                alg: "RS256",
                kid: key.kid.clone(),
                n: key.n.clone(),
                e: key.e.clone(),
            });
        }
        let jwks_json = serde_json::to_vec(&serde_json::json!({ "keys": jwks }))
            .map_err(|e| KeyError::Rejected(format!("serialising the JWKS: {e}")))?;
        Ok(Self { signer: active.map(Signer::new), verifiers, jwks, jwks_json: jwks_json.into() })
    }
}

/// An RSA public key from its JWK components (base64url `n` and `e`), for RS256.
fn parse_public_key(n: &str, e: &str) -> Result<ParsedPublicKey, KeyError> {
    let decode =
        |text: &str| URL_SAFE_NO_PAD.decode(text).map_err(|e| KeyError::Rejected(format!("bad base64url: {e}")));
    let der = rsa_public_key_der(&decode(n)?, &decode(e)?);
    ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der).map_err(|e| KeyError::Rejected(e.to_string()))
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017
/// A.1.1) from big-endian unsigned `n` and `e`.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn push_length(out: &mut Vec<u8>, len: usize) {
        match len {
            0..=0x7f => out.push(len as u8),
            0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
            _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        }
    }
    fn integer(unsigned: &[u8]) -> Vec<u8> {
        let digits = match unsigned.iter().position(|&b| b != 0) {
            Some(first) => &unsigned[first..],
            None => &[0u8][..],
        };
        // A set top bit would read as negative: prefix a zero byte.
        let pad = digits[0] & 0x80 != 0;
        let mut out = vec![0x02];
        push_length(&mut out, digits.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(digits);
        out
    }
    let body = [integer(n), integer(e)].concat();
    let mut der = vec![0x30];
    push_length(&mut der, body.len());
    der.extend_from_slice(&body);
    der
}

/// The current [`KeySet`], swapped atomically when keys change.
pub struct KeyRing {
    current: RwLock<Arc<KeySet>>,
}

impl KeyRing {
    pub fn new(set: KeySet) -> Self {
        Self { current: RwLock::new(Arc::new(set)) }
    }

    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, set: KeySet) {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_der_matches_aws_lc() {
        for bits in [2048, 3072] {
            let key = KeyMaterial::generate(bits).unwrap();
            let (n, e) = key.public_components();
            let decode = |t: &str| URL_SAFE_NO_PAD.decode(t).unwrap();
            assert_eq!(rsa_public_key_der(&decode(n), &decode(e)), key.pair.public_key().as_ref());
            assert!(parse_public_key(n, e).is_ok());
        }
        assert!(matches!(parse_public_key("not base64!", "AQAB"), Err(KeyError::Rejected(_))));
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // The example key of RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(jwk_thumbprint(n, "AQAB"), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn generated_key_round_trips_through_pkcs8() {
        let key = KeyMaterial::generate(2048).unwrap();
        assert_eq!(key.bits(), 2048);
        let again = KeyMaterial::from_pkcs8(&key.pkcs8_der().unwrap()).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(key.public_components().1, "AQAB");
    }
}
