//! `/auth/me` must reject every kind of forged or stale token with 401 invalid_token.

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_server::tokens::AccessClaims;
use serde_json::{Value, json};

use crate::harness::{TestServer, backend};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn sign_with(pair: &RsaKeyPair, header: &Value, claims: &Value) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(claims));
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), signing_input.as_bytes(), &mut sig).unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

async fn assert_rejected(server: &TestServer, token: &str, what: &str) {
    let resp = server.me(token).await;
    assert_eq!(resp.status(), 401, "{what} must be rejected on {}", backend());
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#), "{what}: {challenge}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token", "{what}");
}

#[tokio::test]
async fn forged_and_stale_tokens_are_rejected() {
    let server = TestServer::start().await;
    let (good, _) = server.signed_in("mallory").await;
    assert_eq!(server.me(&good).await.status(), 200);

    let parts: Vec<&str> = good.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_string();

    // alg: none, no signature.
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})), parts[1]);
    assert_rejected(&server, &none, "alg none").await;

    // HS256 "signed" with the public key (the classic algorithm-confusion attack).
    let jwks: Value = reqwest::get(server.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    let n = jwks["keys"][0]["n"].as_str().unwrap().to_string();
    let hs_header = jsonwebtoken::Header {
        alg: jsonwebtoken::Algorithm::HS256,
        typ: Some("at+jwt".into()),
        kid: Some(kid.clone()),
        ..Default::default()
    };
    let hs256 =
        jsonwebtoken::encode(&hs_header, &claims, &jsonwebtoken::EncodingKey::from_secret(n.as_bytes())).unwrap();
    assert_rejected(&server, &hs256, "HS256 with the public key").await;

    // Another RSA key claiming our kid, and one with a kid nobody published.
    let other = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let wrong_key = sign_with(&other, &header, &claims);
    assert_rejected(&server, &wrong_key, "wrong key with a known kid").await;
    let unknown_kid = sign_with(&other, &json!({"alg": "RS256", "typ": "at+jwt", "kid": "nope"}), &claims);
    assert_rejected(&server, &unknown_kid, "unknown kid").await;

    // Tampered payload with the original signature.
    let mut elevated = claims.clone();
    elevated["roles"] = json!(["admin"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(&elevated), parts[2]);
    assert_rejected(&server, &tampered, "tampered payload").await;

    // Correctly signed with the real key, but wrong issuer / audience / typ.
    let real: AccessClaims = serde_json::from_value(claims.clone()).unwrap();
    let keys = server.state.keys.current();
    let wrong_iss = AccessClaims { iss: "https://evil.example".into(), ..real.clone() }.sign(&keys).unwrap();
    assert_rejected(&server, &wrong_iss, "wrong iss").await;
    let wrong_aud = AccessClaims { aud: "another-api".into(), ..real.clone() }.sign(&keys).unwrap();
    assert_rejected(&server, &wrong_aud, "wrong aud").await;

    // Garbage.
    assert_rejected(&server, "not-a-jwt", "garbage").await;

    // Expired: move the clock past exp + leeway (no sleeping).
    server.clock.advance(900 + 31);
    assert_rejected(&server, &good, "expired").await;
    server.stop().await;
}
