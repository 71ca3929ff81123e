//! register → login → me, and a third party verifying the token through discovery and
//! the JWKS alone, with a stock JWT library.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::harness::{Fetch, TestServer, assert_error, backend};

#[tokio::test]
async fn register_login_me_and_verify_via_jwks() {
    let server = TestServer::start().await;
    let user = server.register("  Alice ").await;
    assert_eq!(user["username"], "Alice");
    assert_eq!(user["roles"], serde_json::json!(["user"]));
    assert!(user.get("password_hash").is_none() && !user.to_string().contains("argon2"));

    // Usernames are case-insensitive and unique.
    let dup = server.try_register("ALICE", "another password").await;
    assert_error(dup, 409, "username_taken").await;

    let (access, _cookie) = server.login("alice").await;
    let me = server.me(&access).await;
    assert_eq!(me.status(), 200, "{}", backend());
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["id"], user["id"]);

    // A resource server: discovery → jwks_uri → verify with only the JWKS.
    let discovery: Value =
        reqwest::get(server.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], server.base);
    let jwks_resp = reqwest::get(discovery["jwks_uri"].as_str().unwrap()).await.unwrap();
    let cache = jwks_resp.headers()["cache-control"].to_str().unwrap().to_string();
    assert!(cache.starts_with("public, max-age="), "{cache}");
    let jwks: JwkSet = jwks_resp.json().await.unwrap();
    assert!(!jwks.keys.is_empty());

    let header = jsonwebtoken::decode_header(&access).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("the token's kid is published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[discovery["issuer"].as_str().unwrap()]);
    validation.set_audience(&["latchkey"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(&access, &DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap();
    let claims = data.claims;
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["client_id"], "spa");
    assert_eq!(claims["roles"], serde_json::json!(["user"]));
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    for claim in
        ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "roles", "sid", "auth_time", "amr"]
    {
        assert!(claims.get(claim).is_some(), "claim {claim} missing");
    }
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);

    // The RFC 7638 thumbprint is the kid.
    let thumb = jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256);
    assert_eq!(thumb.unwrap(), kid);
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let server = TestServer::start().await;
    server.register("bob").await;
    let before = server.state.passwords.dummy_verifications();
    let mut bodies = Vec::new();
    for (username, password) in [("bob", "wrong password!"), ("nobody", "wrong password!")] {
        let resp = server
            .spa_post("/auth/login")
            .json(&serde_json::json!({"username": username, "password": password}))
            .sent()
            .await;
        assert_eq!(resp.status(), 401);
        bodies.push(resp.text().await.unwrap());
    }
    assert_eq!(bodies[0], bodies[1], "no account-existence oracle");
    // The unknown user went through the dummy Argon2 verification (same cost).
    assert_eq!(server.state.passwords.dummy_verifications(), before + 1);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_json_errors_never_500() {
    let server = TestServer::start().await;
    let post = |path: &str, ct: &str, body: String| {
        server.post(path).header("content-type", ct).header("x-requested-with", "latchkey").body(body).send()
    };
    let cases = [
        ("/auth/register", "application/json", "{not json".to_string(), 400, "invalid_request"),
        (
            "/auth/register",
            "application/json",
            r#"{"username": ["a"], "password": "x"}"#.to_string(),
            400,
            "invalid_request",
        ),
        ("/auth/register", "text/plain", "hello".to_string(), 415, "unsupported_media_type"),
        (
            "/auth/register",
            "application/json",
            format!(r#"{{"username":"{}","password":"x"}}"#, "a".repeat(70_000)),
            413,
            "payload_too_large",
        ),
        (
            "/auth/register",
            "application/json",
            r#"{"username":"carol","password":"short"}"#.to_string(),
            400,
            "invalid_password",
        ),
        (
            "/auth/register",
            "application/json",
            r#"{"username":"   ","password":"long enough pw"}"#.to_string(),
            400,
            "invalid_username",
        ),
        ("/auth/login", "application/json", r#"{"username":"x"}"#.to_string(), 400, "invalid_request"),
        ("/oauth2/token", "application/json", "{}".to_string(), 415, "unsupported_media_type"),
    ];
    for (path, ct, body, status, code) in cases {
        let resp = post(path, ct, body).await.unwrap();
        assert_eq!(resp.status(), status, "{path} {ct}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], code, "{path}: {body}");
        assert!(body["error_description"].is_string());
    }
    let missing = server.get("/no/such/route").sent().await;
    assert_error(missing, 404, "not_found").await;
    let chunked = server
        .post("/auth/register")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_stream(vec![
            b"{\"username\":\"".to_vec(),
            vec![b'a'; 70_000],
            b"\"}".to_vec(),
        ])))
        .sent()
        .await;
    assert_eq!(chunked.status(), 413, "chunked bodies are limited too");
    server.stop().await;
}

fn futures_stream(chunks: Vec<Vec<u8>>) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let health: Value = reqwest::get(server.url("/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let spec = reqwest::get(server.url("/openapi.json")).await.unwrap();
    assert_eq!(spec.status(), 200);
    let docs = reqwest::get(server.url("/docs")).await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    server.stop().await;
}
