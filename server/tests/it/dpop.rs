//! DPoP (RFC 9449) over real HTTP: proofs at the token endpoint and the cookie
//! endpoints bind what they issue to the client's key; protected resources take a bound
//! token only with a proof by that key; nonces and the replay table hold across nodes.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use latchkey_server::store::TokenStore;

use super::harness::{Fetch, PASSWORD, TestServer, assert_error, backend, refresh_cookie, user_with_roles};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A client's P-256 key pair, as a DPoP client holds it.
struct ClientKey {
    pair: EcdsaKeyPair,
    jwk: Value,
}

/// What a proof says beside the request it is for.
#[derive(Default)]
struct Extra<'a> {
    nonce: Option<&'a str>,
    access_token: Option<&'a str>,
}

impl ClientKey {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        Self { pair, jwk }
    }

    /// The RFC 7638 thumbprint, as the JOSE library computes it.
    fn jkt(&self) -> String {
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(self.jwk.clone()).unwrap();
        parsed.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256).unwrap()
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk})
    }

    /// The claims of a good proof of `method` `url` at `iat`.
    fn claims(method: &str, url: &str, iat: i64, extra: &Extra<'_>) -> Value {
        let mut claims = json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": method, "htu": url, "iat": iat});
        if let Some(nonce) = extra.nonce {
            claims["nonce"] = json!(nonce);
        }
        if let Some(token) = extra.access_token {
            claims["ath"] = json!(b64(&Sha256::digest(token.as_bytes())));
        }
        claims
    }

    /// A good proof of `method` on `path` of `server`'s issuer, now.
    fn proof(&self, server: &TestServer, method: &str, path: &str, extra: &Extra<'_>) -> String {
        let url = format!("{}{path}", server.state.config.issuer);
        self.sign(&self.header(), &Self::claims(method, &url, server.clock.now_secs(), extra))
    }
}

/// The current nonce, as a client learns it: from the `use_dpop_nonce` refusal of its
/// first proof.
async fn nonce_from_refusal(server: &TestServer, key: &ClientKey) -> String {
    let resp = server
        .post("/oauth2/token")
        .header("dpop", key.proof(server, "POST", "/oauth2/token", &Extra::default()))
        .form(&[("grant_type", "client_credentials")])
        .basic_auth("nobody", Some("nothing"))
        .sent()
        .await;
    let nonce = resp.headers().get("dpop-nonce").expect("a DPoP-Nonce").to_str().unwrap().to_string();
    assert_error(resp, 400, "use_dpop_nonce").await;
    nonce
}

/// `req` with `proof` as its `DPoP` header, when there is one.
fn with_proof(req: reqwest::RequestBuilder, proof: Option<String>) -> reqwest::RequestBuilder {
    match proof {
        Some(proof) => req.header("dpop", proof),
        None => req,
    }
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn client_credentials(server: &TestServer, secret: &str, proof: Option<String>) -> reqwest::Response {
    let req = with_proof(
        server.post("/oauth2/token").basic_auth("svc", Some(secret)).form(&[("grant_type", "client_credentials")]),
        proof,
    );
    req.sent().await
}

#[tokio::test]
async fn client_credentials_with_a_proof_is_bound_after_the_nonce_dance() {
    let server = TestServer::start().await;
    let secret = server.create_client("svc", true, &["client_credentials"], &[]).await.unwrap();
    let key = ClientKey::new();
    // No nonce yet: refused with one to use.
    let first =
        client_credentials(&server, &secret, Some(key.proof(&server, "POST", "/oauth2/token", &Extra::default())))
            .await;
    let nonce = first.headers().get("dpop-nonce").expect("DPoP-Nonce").to_str().unwrap().to_string();
    assert_error(first, 400, "use_dpop_nonce").await;
    let extra = Extra { nonce: Some(&nonce), ..Default::default() };
    let resp = client_credentials(&server, &secret, Some(key.proof(&server, "POST", "/oauth2/token", &extra))).await;
    assert_eq!(resp.status(), 200, "on {}", backend());
    assert!(resp.headers().contains_key("dpop-nonce"), "a fresh nonce comes with every answer to a proof");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(payload(token)["cnf"]["jkt"], key.jkt(), "cnf.jkt is the proof key's RFC 7638 thumbprint");
    // Introspection tells the binding.
    let introspected: Value =
        server.post("/oauth2/introspect").basic_auth("svc", Some(&secret)).form(&[("token", token)]).fetch_json().await;
    assert_eq!((introspected["active"].clone(), introspected["token_type"].clone()), (json!(true), json!("DPoP")));
    assert_eq!(introspected["cnf"]["jkt"], key.jkt());
    // Without a proof, the same client still gets a bearer token, with no cnf.
    let bearer: Value = client_credentials(&server, &secret, None).await.json().await.unwrap();
    assert_eq!(bearer["token_type"], "Bearer");
    assert!(payload(bearer["access_token"].as_str().unwrap()).get("cnf").is_none());
}

#[tokio::test]
async fn each_bad_proof_at_the_token_endpoint_is_refused() {
    let server = TestServer::start().await;
    let secret = server.create_client("svc", true, &["client_credentials"], &[]).await.unwrap();
    let key = ClientKey::new();
    let other = ClientKey::new();
    let nonce = nonce_from_refusal(&server, &key).await;
    let extra = Extra { nonce: Some(&nonce), ..Default::default() };
    let now = server.clock.now_secs();
    let issuer = server.state.config.issuer.clone();
    let token_url = format!("{issuer}/oauth2/token");
    let claims = |method: &str, url: &str, iat: i64| ClientKey::claims(method, url, iat, &extra);
    let good = claims("POST", &token_url, now);
    let mut private_jwk = key.jwk.clone();
    private_jwk["d"] = json!(b64(&[7; 32]));
    let unsigned = |alg: &str| {
        let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": key.jwk});
        format!("{}.{}.", b64(header.to_string().as_bytes()), b64(good.to_string().as_bytes()))
    };
    let hs256 = {
        let header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk});
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(good.to_string().as_bytes()));
        let tag =
            aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"k"), input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    };
    // Signed by `other`, naming `key`'s jwk.
    let foreign = other.sign(&key.header(), &good);
    // Each with the reason it must be refused for (its error_description).
    let cases: Vec<(&str, String, &str)> = vec![
        ("wrong htm", key.sign(&key.header(), &claims("GET", &token_url, now)), "htm"),
        ("another path", key.sign(&key.header(), &claims("POST", &format!("{issuer}/oauth2/revoke"), now)), "htu"),
        ("another host", key.sign(&key.header(), &claims("POST", "http://evil.example/oauth2/token", now)), "htu"),
        ("iat too old", key.sign(&key.header(), &claims("POST", &token_url, now - 301)), "too old"),
        ("iat in the future", key.sign(&key.header(), &claims("POST", &token_url, now + 31)), "in the future"),
        (
            "a private key in jwk",
            key.sign(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private_jwk}), &good),
            "private key",
        ),
        ("alg none", unsigned("none"), "alg is not allowed"),
        ("HS256", hs256, "alg is not allowed"),
        ("signed by another key", foreign, "signature"),
        ("typ JWT", key.sign(&json!({"typ": "JWT", "alg": "ES256", "jwk": key.jwk}), &good), "typ"),
        ("not a JWS", "garbage".into(), "compact JWS"),
    ];
    for (what, proof, reason) in cases {
        let resp = client_credentials(&server, &secret, Some(proof)).await;
        let status = resp.status();
        let body = resp.text().await.unwrap();
        let error: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(status, 400, "{what} on {}: {body}", backend());
        assert_eq!(error["error"], "invalid_dpop_proof", "{what} on {}: {body}", backend());
        assert!(error["error_description"].as_str().unwrap_or_default().contains(reason), "{what}: {body}");
    }
    // A query on htu is ignored (RFC 9449 §4.3: compared without query and fragment).
    let with_query = key.sign(&key.header(), &claims("POST", &format!("{token_url}?x=1#f"), now));
    assert_eq!(client_credentials(&server, &secret, Some(with_query)).await.status(), 200);
    // Two DPoP headers are refused.
    let twice = server
        .post("/oauth2/token")
        .basic_auth("svc", Some(&secret))
        .header("dpop", key.proof(&server, "POST", "/oauth2/token", &extra))
        .header("dpop", key.proof(&server, "POST", "/oauth2/token", &extra))
        .form(&[("grant_type", "client_credentials")])
        .sent()
        .await;
    assert_error(twice, 400, "invalid_dpop_proof").await;
}

#[tokio::test]
async fn a_proof_is_accepted_once_on_any_node_and_a_nonce_from_one_node_works_on_another() {
    let first = TestServer::start().await;
    let second = first.second_node().await;
    let secret = first.create_client("svc", true, &["client_credentials"], &[]).await.unwrap();
    let key = ClientKey::new();
    let nonce = nonce_from_refusal(&first, &key).await;
    let proof = key.proof(&first, "POST", "/oauth2/token", &Extra { nonce: Some(&nonce), ..Default::default() });
    // The second node takes the first's nonce (one key, derived from the master key),
    // and checks htu against the issuer, not its own address.
    assert_eq!(client_credentials(&second, &secret, Some(proof.clone())).await.status(), 200, "on {}", backend());
    assert_error(client_credentials(&second, &secret, Some(proof.clone())).await, 400, "invalid_dpop_proof").await;
    assert_error(client_credentials(&first, &secret, Some(proof)).await, 400, "invalid_dpop_proof").await;
    // A nonce outlives its window by one more, then it is stale.
    let window = first.state.config.dpop.nonce_window_secs;
    for node in [&first, &second] {
        node.clock.advance(2 * window);
    }
    let stale = key.proof(&first, "POST", "/oauth2/token", &Extra { nonce: Some(&nonce), ..Default::default() });
    assert_error(client_credentials(&first, &secret, Some(stale)).await, 400, "use_dpop_nonce").await;
}

#[tokio::test]
async fn without_required_nonces_a_first_proof_is_enough() {
    let server = TestServer::start_with(|raw| raw.dpop.require_nonce = false).await;
    let secret = server.create_client("svc", true, &["client_credentials"], &[]).await.unwrap();
    let key = ClientKey::new();
    let resp =
        client_credentials(&server, &secret, Some(key.proof(&server, "POST", "/oauth2/token", &Extra::default())))
            .await;
    assert!(!resp.headers().contains_key("dpop-nonce"), "no nonce is handed out when none is asked for");
    assert_eq!(resp.json::<Value>().await.unwrap()["token_type"], "DPoP");
}

#[tokio::test]
async fn a_client_that_requires_dpop_is_refused_without_a_proof() {
    let server = TestServer::start().await;
    let secret = server.create_client("svc", true, &["client_credentials"], &[]).await.unwrap();
    let update =
        latchkey_server::domain::clients::ClientUpdate { dpop_bound_access_tokens: Some(true), ..Default::default() };
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    latchkey_server::domain::clients::update(&server.state, "svc", update, &operator).await.unwrap();
    assert_error(client_credentials(&server, &secret, None).await, 400, "invalid_dpop_proof").await;
    let key = ClientKey::new();
    let nonce = nonce_from_refusal(&server, &key).await;
    let proof = key.proof(&server, "POST", "/oauth2/token", &Extra { nonce: Some(&nonce), ..Default::default() });
    assert_eq!(client_credentials(&server, &secret, Some(proof)).await.status(), 200);
    // The SPA's client, so required, takes no cookie login or refresh without a proof.
    let (_, cookie) = server.signed_in("gus").await;
    let update =
        latchkey_server::domain::clients::ClientUpdate { dpop_bound_access_tokens: Some(true), ..Default::default() };
    latchkey_server::domain::clients::update(&server.state, "spa", update, &operator).await.unwrap();
    let login = server.spa_post("/auth/login").json(&json!({"username": "gus", "password": PASSWORD})).sent().await;
    assert_error(login, 400, "invalid_dpop_proof").await;
    assert_error(refresh_with(&server, &cookie, None).await, 400, "invalid_dpop_proof").await;
    dpop_login(&server, &key, "gus").await;
}

/// A DPoP login through the cookie flow: (access token, refresh cookie, nonce).
async fn dpop_login(server: &TestServer, key: &ClientKey, username: &str) -> (String, String, String) {
    let login = |proof: String| {
        server
            .spa_post("/auth/login")
            .header("dpop", proof)
            .json(&json!({"username": username, "password": PASSWORD}))
            .sent()
    };
    let first = login(key.proof(server, "POST", "/auth/login", &Extra::default())).await;
    let nonce = first.headers().get("dpop-nonce").expect("a nonce").to_str().unwrap().to_string();
    assert_error(first, 400, "use_dpop_nonce").await;
    let resp =
        login(key.proof(server, "POST", "/auth/login", &Extra { nonce: Some(&nonce), ..Default::default() })).await;
    assert_eq!(resp.status(), 200, "DPoP login on {}", backend());
    let cookie = refresh_cookie(resp.headers()).expect("a refresh cookie");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    (body["access_token"].as_str().unwrap().to_string(), cookie, nonce)
}

#[tokio::test]
async fn logins_refused_for_their_nonce_are_no_password_attempts() {
    let server = TestServer::start().await;
    server.register("hal").await;
    let key = ClientKey::new();
    // Far more wrong passwords than the lockout allows, each refused for its nonce first.
    for _ in 0..3 * server.state.config.lockout.threshold {
        let resp = server
            .spa_post("/auth/login")
            .header("dpop", key.proof(&server, "POST", "/auth/login", &Extra::default()))
            .json(&json!({"username": "hal", "password": "not the password"}))
            .sent()
            .await;
        assert_error(resp, 400, "use_dpop_nonce").await;
    }
    dpop_login(&server, &key, "hal").await;
}

async fn refresh_with(server: &TestServer, cookie: &str, proof: Option<String>) -> reqwest::Response {
    let req = with_proof(server.cookie_post("/auth/refresh", cookie), proof);
    req.sent().await
}

#[tokio::test]
async fn the_spa_refresh_cookie_is_bound_to_its_key_and_reuse_still_revokes() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let key = ClientKey::new();
    let (access, cookie, nonce) = dpop_login(&server, &key, "alice").await;
    assert_eq!(payload(&access)["cnf"]["jkt"], key.jkt());
    let with_nonce = Extra { nonce: Some(&nonce), ..Default::default() };
    // A stolen cookie: without the key it is worth nothing, and nothing is revoked.
    assert_error(refresh_with(&server, &cookie, None).await, 401, "invalid_grant").await;
    let thief = ClientKey::new();
    let stolen = refresh_with(&server, &cookie, Some(thief.proof(&server, "POST", "/auth/refresh", &with_nonce))).await;
    assert_error(stolen, 401, "invalid_grant").await;
    // The key's holder refreshes as ever, and gets a bound token again.
    let resp = refresh_with(&server, &cookie, Some(key.proof(&server, "POST", "/auth/refresh", &with_nonce))).await;
    assert_eq!(resp.status(), 200, "the owner's refresh on {}", backend());
    let rotated = refresh_cookie(resp.headers()).unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(payload(body["access_token"].as_str().unwrap())["cnf"]["jkt"], key.jkt());
    // The old cookie after the grace window, even without a proof, is reuse: the
    // session ends, so the rotated cookie is dead too.
    server.clock.advance(server.state.config.tokens.refresh_grace.as_secs() as i64 + 1);
    let asked =
        refresh_with(&server, &rotated, Some(key.proof(&server, "POST", "/auth/refresh", &Extra::default()))).await;
    assert_eq!(asked.status(), 400, "a proof without the nonce spends nothing");
    let nonce = asked.headers().get("dpop-nonce").unwrap().to_str().unwrap().to_string();
    let with_nonce = Extra { nonce: Some(&nonce), ..Default::default() };
    assert_error(refresh_with(&server, &cookie, None).await, 401, "invalid_grant").await;
    let after = refresh_with(&server, &rotated, Some(key.proof(&server, "POST", "/auth/refresh", &with_nonce))).await;
    assert_error(after, 401, "invalid_grant").await;
    assert!(server.audit_actions().await.iter().any(|(action, _)| action == "refresh_token.reuse"));
}

#[tokio::test]
async fn a_session_begun_without_a_proof_is_bound_by_its_first_refresh_with_one() {
    let server = TestServer::start().await;
    let (_, cookie) = server.signed_in("bob").await;
    let resp = refresh_with(&server, &cookie, None).await;
    assert_eq!(resp.status(), 200);
    let cookie = refresh_cookie(resp.headers()).unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["token_type"],
        "Bearer",
        "without a proof it stays a bearer session"
    );
    // The app turns DPoP on: its next refresh binds the session (RFC 9449 §5).
    let key = ClientKey::new();
    let asked =
        refresh_with(&server, &cookie, Some(key.proof(&server, "POST", "/auth/refresh", &Extra::default()))).await;
    let nonce = asked.headers().get("dpop-nonce").unwrap().to_str().unwrap().to_string();
    assert_error(asked, 400, "use_dpop_nonce").await;
    let with_nonce = Extra { nonce: Some(&nonce), ..Default::default() };
    let bound = refresh_with(&server, &cookie, Some(key.proof(&server, "POST", "/auth/refresh", &with_nonce))).await;
    assert_eq!(bound.status(), 200, "the same cookie, now with a proof, on {}", backend());
    let cookie = refresh_cookie(bound.headers()).unwrap();
    assert_eq!(bound.json::<Value>().await.unwrap()["token_type"], "DPoP");
    assert_error(refresh_with(&server, &cookie, None).await, 401, "invalid_grant").await;
    let again = refresh_with(&server, &cookie, Some(key.proof(&server, "POST", "/auth/refresh", &with_nonce))).await;
    assert_eq!(again.status(), 200, "its key's holder goes on");
}

async fn me_with(server: &TestServer, scheme: &str, token: &str, proof: Option<String>) -> reqwest::Response {
    let req = with_proof(server.get("/auth/me").header("authorization", format!("{scheme} {token}")), proof);
    req.sent().await
}

fn challenge(resp: &reqwest::Response) -> String {
    resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn protected_resources_take_a_bound_token_only_with_a_proof_by_its_key() {
    let server = TestServer::start().await;
    server.register("carol").await;
    let key = ClientKey::new();
    let (access, _, _) = dpop_login(&server, &key, "carol").await;
    let at = |extra: &Extra<'_>| key.proof(&server, "GET", "/auth/me", extra);
    // The nonce dance at a resource: a 401 DPoP challenge with the nonce.
    let first = me_with(&server, "DPoP", &access, Some(at(&Extra { access_token: Some(&access), nonce: None }))).await;
    assert_eq!(first.status(), 401);
    assert!(challenge(&first).starts_with(r#"DPoP error="use_dpop_nonce""#), "{}", challenge(&first));
    let nonce = first.headers().get("dpop-nonce").unwrap().to_str().unwrap().to_string();
    let good = Extra { access_token: Some(&access), nonce: Some(&nonce) };
    let proof = at(&good);
    let resp = me_with(&server, "DPoP", &access, Some(proof.clone())).await;
    assert_eq!(resp.status(), 200, "on {}", backend());
    assert_eq!(resp.json::<Value>().await.unwrap()["username"], "carol");
    // The same proof again.
    let replayed = me_with(&server, "DPoP", &access, Some(proof)).await;
    assert!(challenge(&replayed).starts_with(r#"DPoP error="invalid_dpop_proof""#));
    assert_error(replayed, 401, "invalid_dpop_proof").await;
    // Sent as a bearer token, the bound token is refused.
    let as_bearer = me_with(&server, "Bearer", &access, None).await;
    assert!(challenge(&as_bearer).contains(r#"DPoP algs=""#), "{}", challenge(&as_bearer));
    assert_error(as_bearer, 401, "invalid_token").await;
    // No proof, a proof without ath, with another token's ath, for another path or
    // method: bad proofs; a good proof by another key: the token does not hold for it.
    let other = ClientKey::new();
    let cases = vec![
        ("no proof", None, "invalid_dpop_proof"),
        ("no ath", Some(at(&Extra { nonce: Some(&nonce), access_token: None })), "invalid_dpop_proof"),
        (
            "another token's ath",
            Some(at(&Extra { nonce: Some(&nonce), access_token: Some("another") })),
            "invalid_dpop_proof",
        ),
        ("another path", Some(key.proof(&server, "GET", "/auth/sessions", &good)), "invalid_dpop_proof"),
        ("another method", Some(key.proof(&server, "POST", "/auth/me", &good)), "invalid_dpop_proof"),
        ("another key", Some(other.proof(&server, "GET", "/auth/me", &good)), "invalid_token"),
    ];
    for (what, proof, code) in cases {
        let resp = me_with(&server, "DPoP", &access, proof).await;
        assert_eq!(resp.status(), 401, "{what}");
        assert!(challenge(&resp).starts_with(&format!(r#"DPoP error="{code}""#)), "{what}: {}", challenge(&resp));
        assert_error(resp, 401, code).await;
    }
    // An unbound token does not take the DPoP scheme.
    let (plain, _) = server.signed_in("dave").await;
    let extra = Extra { access_token: Some(&plain), nonce: Some(&nonce) };
    assert_error(me_with(&server, "DPoP", &plain, Some(at(&extra))).await, 401, "invalid_token").await;
    assert_eq!(me_with(&server, "Bearer", &plain, None).await.status(), 200, "and keeps working as Bearer");
}

#[tokio::test]
async fn userinfo_and_the_admin_api_take_dpop_bound_tokens() {
    let server = TestServer::start().await;
    user_with_roles(&server, "root", &["admin"]).await;
    let key = ClientKey::new();
    let (access, _, nonce) = dpop_login(&server, &key, "root").await;
    let extra = Extra { access_token: Some(&access), nonce: Some(&nonce) };
    let admin = server
        .get("/admin/users")
        .header("authorization", format!("DPoP {access}"))
        .header("dpop", key.proof(&server, "GET", "/admin/users", &extra))
        .sent()
        .await;
    assert_eq!(admin.status(), 200, "admin API with DPoP on {}", backend());
    let userinfo = server
        .post("/oauth2/userinfo")
        .header("authorization", format!("DPoP {access}"))
        .header("dpop", key.proof(&server, "POST", "/oauth2/userinfo", &extra))
        .sent()
        .await;
    assert_eq!(userinfo.status(), 200, "userinfo with DPoP");
    let as_bearer = server.get("/admin/users").bearer_auth(&access).sent().await;
    assert_error(as_bearer, 401, "invalid_token").await;
    let userinfo_bearer = server.get("/oauth2/userinfo").bearer_auth(&access).sent().await;
    assert_error(userinfo_bearer, 401, "invalid_token").await;
    // A bound token without the permission: 403 with a challenge in its own scheme.
    server.register("ivy").await;
    let (plain_user, _, nonce) = dpop_login(&server, &key, "ivy").await;
    let extra = Extra { access_token: Some(&plain_user), nonce: Some(&nonce) };
    let refused = server
        .get("/admin/users")
        .header("authorization", format!("DPoP {plain_user}"))
        .header("dpop", key.proof(&server, "GET", "/admin/users", &extra))
        .sent()
        .await;
    assert!(challenge(&refused).starts_with(r#"DPoP error="insufficient_scope""#), "{}", challenge(&refused));
    assert_error(refused, 403, "insufficient_scope").await;
    let (bearer, _) = server.login("ivy").await;
    let refused = server.get("/admin/users").bearer_auth(&bearer).sent().await;
    assert!(challenge(&refused).starts_with(r#"Bearer realm="latchkey", error="insufficient_scope""#));
    assert_error(refused, 403, "insufficient_scope").await;
}

#[tokio::test]
async fn discovery_and_cors_tell_browsers_and_clients_about_dpop() {
    let server = TestServer::start().await;
    let metadata: Value = server.get("/.well-known/openid-configuration").fetch_json().await;
    assert_eq!(metadata["dpop_signing_alg_values_supported"], json!(["ES256", "EdDSA", "Ed25519", "RS256", "PS256"]));
    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/auth/refresh"))
        .header("origin", super::harness::SPA_ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "dpop, x-requested-with")
        .sent()
        .await;
    let allowed = preflight.headers().get("access-control-allow-headers").unwrap().to_str().unwrap().to_lowercase();
    assert!(allowed.contains("dpop"), "{allowed}");
    let key = ClientKey::new();
    let refused = server
        .spa_post("/auth/login")
        .header("origin", super::harness::SPA_ORIGIN)
        .header("dpop", key.proof(&server, "POST", "/auth/login", &Extra::default()))
        .json(&json!({"username": "nobody", "password": PASSWORD}))
        .sent()
        .await;
    let exposed = refused.headers().get("access-control-expose-headers").unwrap().to_str().unwrap().to_lowercase();
    assert!(exposed.contains("dpop-nonce"), "the nonce is readable by the page: {exposed}");
    assert!(refused.headers().contains_key("dpop-nonce"));
    // A client's own registered origin, at the token endpoint.
    server.create_client("svc", true, &["client_credentials"], &[]).await;
    let update = latchkey_server::domain::clients::ClientUpdate {
        allowed_origins: Some(vec!["https://rp.example".into()]),
        ..Default::default()
    };
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    latchkey_server::domain::clients::update(&server.state, "svc", update, &operator).await.unwrap();
    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/oauth2/token"))
        .header("origin", "https://rp.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "dpop")
        .sent()
        .await;
    let allowed = preflight.headers().get("access-control-allow-headers").unwrap().to_str().unwrap().to_lowercase();
    assert!(allowed.contains("dpop"), "a client's origin may send the DPoP header: {allowed}");
    let answered = server
        .post("/oauth2/token")
        .header("origin", "https://rp.example")
        .header("dpop", key.proof(&server, "POST", "/oauth2/token", &Extra::default()))
        .form(&[("grant_type", "client_credentials")])
        .sent()
        .await;
    assert_eq!(answered.headers().get("access-control-allow-origin").unwrap(), "https://rp.example");
    let exposed = answered.headers().get("access-control-expose-headers").unwrap().to_str().unwrap().to_lowercase();
    assert!(exposed.contains("dpop-nonce"), "{exposed}");
}

/// Multi-threaded: on SQLite the two nodes are two writers of one file, and a node
/// waiting in SQLite's busy handler must not hold up the thread the other node needs to
/// finish its transaction (two processes would not share one either).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proof_is_seen_once_across_nodes_and_purged_after_its_window() {
    let first = TestServer::start().await;
    let second = first.second_node().await;
    let key = latchkey_server::security::sha256_hex("jkt.jti-1");
    let now = first.clock.now_secs();
    let seen = |server: &TestServer| {
        let (state, key) = (server.state.clone(), key.clone());
        async move { state.tokens.first_use_of_proof(&key, now + 300).await.unwrap() }
    };
    assert!(seen(&first).await, "first use on {}", backend());
    assert!(!seen(&first).await, "the same proof again on the same node");
    assert!(!seen(&second).await, "the same proof on the other node");
    // Both at once on two nodes: exactly one wins.
    let other = latchkey_server::security::sha256_hex("jkt.jti-2");
    let (a, b) = tokio::join!(
        first.state.tokens.first_use_of_proof(&other, now + 300),
        second.state.tokens.first_use_of_proof(&other, now + 300),
    );
    assert_eq!(u8::from(a.unwrap()) + u8::from(b.unwrap()), 1);
    // Many at once on both nodes, each proof four times: the proofs share batches
    // (one commit for many), and each is still a first use exactly once.
    let keys: Vec<String> = (0..16).map(|i| latchkey_server::security::sha256_hex(&format!("jkt.many-{i}"))).collect();
    let attempts = keys.iter().cycle().take(64).enumerate().map(|(i, key)| {
        // The first round of keys on one node, the next on the other: each key on both.
        let state = if (i / 16) % 2 == 0 { first.state.clone() } else { second.state.clone() };
        let key = key.clone();
        tokio::spawn(async move { (key.clone(), state.tokens.first_use_of_proof(&key, now + 300).await.unwrap()) })
    });
    let mut firsts = std::collections::HashMap::<String, u32>::new();
    for attempt in attempts.collect::<Vec<_>>() {
        let (key, first_use) = attempt.await.unwrap();
        *firsts.entry(key).or_default() += u32::from(first_use);
    }
    assert_eq!(firsts.len(), 16);
    assert!(firsts.values().all(|&n| n == 1), "each proof is a first use once: {firsts:?}");
    first.clock.advance(301);
    let purged =
        latchkey_server::store::purge::expired_dpop_proofs(&first.state.db, first.clock.now_secs(), 100).await.unwrap();
    assert_eq!(purged, 18, "a proof past its window is no longer kept");
    assert!(seen(&first).await, "(and a row gone is a first use again — its iat check refuses it anyway)");
}

/// A code for `rp` whose authorization request named `jkt` (RFC 9449 §10).
async fn code_bound_to(
    server: &TestServer,
    browser: &mut super::code_flow::Browser,
    rp: &super::code_flow::Rp,
    jkt: &str,
    username: &str,
) -> String {
    use super::code_flow::{Landed, at_client, authorize, sign_in};
    let landed = match authorize(server, browser, rp, &[("dpop_jkt", jkt)]).await {
        Landed::AtPage(_, page) if page.contains("current-password") => sign_in(server, browser, &page, username).await,
        other => other,
    };
    at_client(landed)["code"].clone()
}

async fn exchange_with(
    server: &TestServer,
    rp: &super::code_flow::Rp,
    code: &str,
    proof: Option<String>,
) -> reqwest::Response {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", rp.redirect_uri.as_str()),
        ("code_verifier", rp.verifier.as_str()),
        ("client_id", rp.client_id.as_str()),
    ];
    let req = with_proof(server.post("/oauth2/token").form(&form), proof);
    req.sent().await
}

#[tokio::test]
async fn a_code_asked_for_one_key_is_exchanged_only_with_its_proof_and_binds_the_refresh_token() {
    let server = TestServer::start().await;
    user_with_roles(&server, "erin", &["user"]).await;
    // A public, first-party relying party (no consent to click through).
    let rp = super::code_flow::register_rp(&server, "notes", true, false).await;
    let mut browser = super::code_flow::Browser::new();
    let key = ClientKey::new();
    let nonce = nonce_from_refusal(&server, &key).await;
    let extra = Extra { nonce: Some(&nonce), ..Default::default() };
    let code = code_bound_to(&server, &mut browser, &rp, &key.jkt(), "erin").await;
    assert_error(exchange_with(&server, &rp, &code, None).await, 400, "invalid_grant").await;
    let code = code_bound_to(&server, &mut browser, &rp, &key.jkt(), "erin").await;
    let thief = ClientKey::new();
    let stolen = exchange_with(&server, &rp, &code, Some(thief.proof(&server, "POST", "/oauth2/token", &extra))).await;
    assert_error(stolen, 400, "invalid_grant").await;
    let code = code_bound_to(&server, &mut browser, &rp, &key.jkt(), "erin").await;
    // Refused proofs spend nothing: neither a stale nonce nor a proof for another URL
    // uses the code up.
    let stale = Extra { nonce: Some("not-ours"), ..Default::default() };
    let asked = exchange_with(&server, &rp, &code, Some(key.proof(&server, "POST", "/oauth2/token", &stale))).await;
    assert_error(asked, 400, "use_dpop_nonce").await;
    let elsewhere =
        exchange_with(&server, &rp, &code, Some(key.proof(&server, "POST", "/oauth2/revoke", &extra))).await;
    assert_error(elsewhere, 400, "invalid_dpop_proof").await;
    let resp = exchange_with(&server, &rp, &code, Some(key.proof(&server, "POST", "/oauth2/token", &extra))).await;
    assert_eq!(resp.status(), 200, "the key's holder exchanges the code on {}", backend());
    let tokens: Value = resp.json().await.unwrap();
    assert_eq!(tokens["token_type"], "DPoP");
    assert_eq!(payload(tokens["access_token"].as_str().unwrap())["cnf"]["jkt"], key.jkt());
    // A public client's refresh token is bound to the key too.
    let refresh = |proof: Option<String>| {
        let req = with_proof(
            server.post("/oauth2/token").form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ("client_id", "notes"),
            ]),
            proof,
        );
        req.sent()
    };
    assert_error(refresh(None).await, 400, "invalid_grant").await;
    assert_error(refresh(Some(thief.proof(&server, "POST", "/oauth2/token", &extra))).await, 400, "invalid_grant")
        .await;
    let refreshed = refresh(Some(key.proof(&server, "POST", "/oauth2/token", &extra))).await;
    assert_eq!(refreshed.status(), 200);
    assert_eq!(refreshed.json::<Value>().await.unwrap()["token_type"], "DPoP");
    // A malformed dpop_jkt goes back to the client as invalid_request.
    let landed = super::code_flow::authorize(&server, &mut browser, &rp, &[("dpop_jkt", "short")]).await;
    assert_eq!(super::code_flow::at_client(landed)["error"], "invalid_request");
}

#[tokio::test]
async fn the_password_grant_of_a_public_client_binds_its_refresh_token() {
    let server = TestServer::start().await;
    server.register("jo").await;
    let key = ClientKey::new();
    let nonce = nonce_from_refusal(&server, &key).await;
    let extra = Extra { nonce: Some(&nonce), ..Default::default() };
    // The console's client: public, with the password and refresh_token grants.
    let form =
        [("grant_type", "password"), ("client_id", "latchkey-admin"), ("username", "jo"), ("password", PASSWORD)];
    let resp = server
        .post("/oauth2/token")
        .header("dpop", key.proof(&server, "POST", "/oauth2/token", &extra))
        .form(&form)
        .sent()
        .await;
    assert_eq!(resp.status(), 200, "on {}", backend());
    let tokens: Value = resp.json().await.unwrap();
    assert_eq!(tokens["token_type"], "DPoP");
    assert_eq!(payload(tokens["access_token"].as_str().unwrap())["cnf"]["jkt"], key.jkt());
    let refresh = |proof: Option<String>| {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", "latchkey-admin"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ];
        let req = with_proof(server.post("/oauth2/token").form(&form), proof);
        req.sent()
    };
    assert_error(refresh(None).await, 400, "invalid_grant").await;
    assert_eq!(refresh(Some(key.proof(&server, "POST", "/oauth2/token", &extra))).await.status(), 200);
}
