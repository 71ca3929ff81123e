//! The properties the fuzz targets (`fuzz/`, libFuzzer through `cargo fuzz`) check on
//! the parsers that face the network: each function takes the fuzzer's bytes, runs one
//! parser on them and panics when a property fails. `cargo test` replays the committed
//! corpora (`fuzz/corpus/<target>/`) through the same functions, so an input a fuzzer
//! once found stays a regression test.
//!
//! Every target asserts that the parser never panics; most assert more (what may be
//! accepted). Inputs that are not UTF-8 are skipped where the real input is a string
//! the HTTP stack has already checked.

use std::net::IpAddr;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::tokens::access::AccessClaims;
use crate::tokens::keys::{KeyMaterial, KeySet, PublishedKey};

/// A property: panics when the input breaks it.
pub type Property = fn(&[u8]);

/// Each target: its name (the directory of its corpus and its `fuzz_targets` file) and
/// its property.
pub const TARGETS: &[(&str, Property)] = &[
    ("access_token", access_token),
    ("redirect_uri", redirect_uri),
    ("client_ip", client_ip),
    ("cookie_header", cookie_header),
    ("basic_credentials", basic_credentials),
    ("pem_key", pem_key),
    ("second_factor", second_factor),
    ("token_form", token_form),
    ("dpop_proof", dpop_proof),
];

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "latchkey";
const NOW: i64 = 1_800_000_000;

/// A key set with one key and the one token it signed, made once per process.
static SIGNED: LazyLock<(KeySet, String)> = LazyLock::new(|| {
    let key = KeyMaterial::generate(2048).expect("a key");
    let (n, e) = key.public_components();
    let published = PublishedKey { kid: key.kid().into(), n: n.into(), e: e.into() };
    let keys = KeySet::new(Some(key), &[published]).expect("a key set");
    let claims = AccessClaims {
        iss: ISSUER.into(),
        sub: "user-1".into(),
        aud: AUDIENCE.into(),
        exp: NOW + 900,
        iat: NOW,
        nbf: NOW,
        jti: "jti-1".into(),
        client_id: "spa".into(),
        scope: "openid".into(),
        roles: vec!["user".into()],
        sid: Some("session-1".into()),
        auth_time: Some(NOW),
        amr: vec!["pwd".into()],
        cnf: None,
    };
    let token = claims.sign(&keys).expect("a signed token");
    (keys, token)
});

/// The access-token verifier accepts the one token the key signed and nothing else.
/// The first byte chooses how the rest is used: as a whole token, as the claims
/// between the real header and signature, or as the header before the real claims
/// and signature (so the fuzzer gets past the framing without forging a signature).
pub fn access_token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (keys, signed) = &*SIGNED;
    let mut parts = signed.split('.');
    let (header, claims, signature) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let token = match mode % 3 {
        0 => text.to_string(),
        1 => format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(text)),
        _ => format!("{}.{claims}.{signature}", URL_SAFE_NO_PAD.encode(text)),
    };
    if AccessClaims::verify(&token, keys, ISSUER, AUDIENCE, NOW, 0).is_ok() {
        assert_eq!(&token, signed, "a token the key did not sign verified");
    }
}

/// An Ed25519 key (its signatures are not malleable) and the one DPoP proof it signed,
/// for `POST {DPOP_HTU}` at [`NOW`].
static DPOP_SIGNED: LazyLock<String> = LazyLock::new(|| {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let pair = Ed25519KeyPair::from_seed_unchecked(&[42; 32]).expect("an Ed25519 key");
    let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(pair.public_key())});
    let header = serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk});
    let claims = serde_json::json!({"jti": "j-1", "htm": "POST", "htu": DPOP_HTU, "iat": NOW});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()));
    format!("{input}.{signature}")
});

const DPOP_HTU: &str = "https://issuer.example/oauth2/token";

/// The DPoP proof verifier never panics and accepts nothing but the one proof the key
/// signed: the first byte chooses whether the rest is the whole proof, the claims
/// between the real header and signature, or the header before the real claims and
/// signature (so the fuzzer reaches past the framing without forging a signature).
pub fn dpop_proof(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let signed = &*DPOP_SIGNED;
    let mut parts = signed.split('.');
    let (header, claims, signature) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let proof = match mode % 3 {
        0 => text.to_string(),
        1 => format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(text)),
        _ => format!("{}.{claims}.{signature}", URL_SAFE_NO_PAD.encode(text)),
    };
    let expected = crate::security::dpop::Expected { method: "POST", htu: DPOP_HTU, access_token: None };
    if crate::security::dpop::verify(&proof, &expected, NOW).is_ok() {
        assert_eq!(&proof, signed, "a proof the key did not sign verified");
    }
}

/// The redirect-URI matcher accepts a presented URI only when it is one of the
/// registered ones, or differs from a registered loopback IP literal in its port alone.
/// Input: the registered list, a NUL byte, the presented URI.
pub fn redirect_uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((registered, presented)) = text.split_once('\0') else { return };
    if !crate::domain::authorize::redirect_uri_matches(registered, presented) {
        return;
    }
    let listed: Vec<&str> = registered.split_ascii_whitespace().collect();
    if listed.contains(&presented) {
        return;
    }
    let mut url = url::Url::parse(presented).expect("an accepted loopback URI parses");
    let host = url.host_str().map(str::to_string);
    let is_loopback_literal = host.as_deref().is_some_and(|h| {
        h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    });
    assert!(url.scheme() == "http" && is_loopback_literal, "accepted {presented:?} for {registered:?}");
    let same_but_port = listed.iter().any(|uri| {
        url::Url::parse(uri)
            .is_ok_and(|listed| url.set_port(listed.port()).is_ok() && url.as_str() == *uri && listed.as_str() == *uri)
    });
    assert!(same_but_port, "accepted {presented:?}, which differs from {registered:?} in more than its port");
}

/// The client address from forwarding headers: always an address; the peer's own when
/// the peer is not a trusted proxy; and, from a trusted proxy, the peer, a trusted hop
/// or an address written in the header. Input: the first byte picks the header, the
/// rest is its values, one per line.
pub fn client_ip(data: &[u8]) {
    use crate::config::ClientIpHeader;
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let header = match which % 3 {
        0 => ClientIpHeader::XForwardedFor,
        1 => ClientIpHeader::Forwarded,
        _ => ClientIpHeader::XRealIp,
    };
    let values: Vec<&str> = text.split('\n').collect();
    let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().expect("a net"), "10.0.0.0/8".parse().expect("a net")];
    let stranger: IpAddr = "203.0.113.9".parse().expect("an address");
    let from_stranger = crate::api::browser::client_ip_from(stranger, &trusted, header, &values);
    assert_eq!(from_stranger, Some(stranger), "an untrusted peer chose its own address");
    let proxy: IpAddr = "127.0.0.1".parse().expect("an address");
    let found = crate::api::browser::client_ip_from(proxy, &trusted, header, &values).expect("an address");
    assert!(found == proxy || written_in(text, found), "{found} is neither the peer nor written in {text:?}");
}

/// Whether some word of `text` spells `ip` (alone, with a port, or in brackets).
fn written_in(text: &str, ip: IpAddr) -> bool {
    text.split([',', ';', '=', '"', ' ', '\n', '\t']).map(str::trim).any(|word| {
        word.parse::<IpAddr>().ok() == Some(ip)
            || word.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()) == Some(ip)
            || word.strip_prefix('[').and_then(|w| w.split(']').next()).and_then(|w| w.parse().ok()) == Some(ip)
    })
}

/// A cookie's value from `Cookie` headers: present only as a non-empty `name=value`
/// pair that the headers hold, and never runs into the next pair. Input: header values,
/// one per line.
pub fn cookie_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let headers: Vec<&str> = text.split('\n').collect();
    for wanted in ["lk_refresh", "lk_sso", "lk_browser"] {
        let Some(value) = crate::api::route_facts::cookie_in(headers.iter().copied(), wanted) else { continue };
        assert!(!value.is_empty() && !value.contains(';'), "{value:?}");
        assert!(text.contains(&format!("{wanted}={value}")), "{wanted}={value} is not in {text:?}");
    }
}

/// HTTP Basic client credentials (RFC 6749 §2.3.1): whatever decodes, encoded again
/// the standard way, decodes to the same id and secret.
pub fn basic_credentials(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((id, secret)) = crate::api::oauth::basic_credentials(text) else { return };
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let again = STANDARD.encode(format!("{}:{}", encode(&id), encode(&secret)));
    assert_eq!(crate::api::oauth::basic_credentials(&again), Some((id, secret)));
}

/// The form body of `POST /oauth2/token`: what it accepts has each parameter once, every
/// value within the `maxLength` the served document states for it, equal to what a
/// standard form parser reads, and `grant_type` present.
pub fn token_form(data: &[u8]) {
    use poem_openapi::types::ToJSON;
    let Ok(form) = crate::api::form::parse::<crate::api::oauth::TokenForm>(data) else { return };
    let Some(serde_json::Value::Object(fields)) = form.to_json() else { panic!("a form is an object") };
    let limits = &TOKEN_FORM_LIMITS;
    assert!(fields.contains_key("grant_type"));
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(data).into_owned().collect();
    for (name, value) in &fields {
        if value.is_null() {
            continue;
        }
        let value = value.as_str().expect("every parameter is a string");
        let limit = limits.get(name).unwrap_or_else(|| panic!("{name} is not in the document"));
        assert!(value.chars().count() <= *limit, "{name} is longer than {limit}");
        let sent: Vec<&str> =
            pairs.iter().filter(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.as_str()).collect();
        assert_eq!(sent, [value], "{name}");
    }
}

/// Each `TokenForm` property's `maxLength`, from the served document.
static TOKEN_FORM_LIMITS: LazyLock<std::collections::HashMap<String, usize>> = LazyLock::new(|| {
    let spec: serde_json::Value = serde_json::from_str(&crate::api::spec_json()).expect("the document is JSON");
    let properties = spec["components"]["schemas"]["TokenForm"]["properties"].as_object().expect("TokenForm");
    properties
        .iter()
        .map(|(name, schema)| (name.clone(), schema["maxLength"].as_u64().expect("every limit is stated") as usize))
        .collect()
});

/// PEM key import (`latchkey key import`): never panics, and what it accepts is an RSA
/// key of at least 2048 bits.
pub fn pem_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(key) = crate::domain::keys::parse_pem(text) {
        assert!(key.bits() >= 2048);
    }
}

/// The second factor's inputs: a TOTP code matches only as six digits equal to the
/// code of the step it names; a recovery code normalises to lowercase letters and
/// digits, and normalising again changes nothing.
pub fn second_factor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let secret = b"12345678901234567890";
    if let Some(step) = crate::security::totp::matching_step(secret, text, NOW, 1) {
        let code = text.trim();
        assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
        assert_eq!(crate::security::totp::code_at_step(secret, step).as_deref(), Some(code));
    }
    let normal = crate::security::totp::normalise_recovery_code(text);
    assert!(normal.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{normal:?}");
    assert_eq!(crate::security::totp::normalise_recovery_code(&normal), normal);
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    /// Every committed input of every target, through its property.
    #[test]
    fn the_fuzz_corpora_replay_clean() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut replayed = 0;
        for (name, property) in TARGETS {
            let dir = root.join(name);
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let mut inputs = 0;
            for entry in entries {
                let path = entry.unwrap().path();
                property(&std::fs::read(&path).unwrap());
                inputs += 1;
            }
            assert!(inputs > 0, "{name} has no corpus");
            replayed += inputs;
        }
        assert!(replayed >= TARGETS.len());
    }
}
