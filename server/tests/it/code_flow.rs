//! OpenID Connect sign-in for relying parties: the authorization endpoint, the hosted
//! sign-in and consent pages, the browser login session, the code exchange and the
//! id_token — the OpenID Foundation Basic OP plan's cases, over real HTTP with a
//! cookie-keeping, non-following browser of our own.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use latchkey_server::store::TokenStore;

use crate::harness::{Fetch, PASSWORD, TestServer, backend, call, enable_totp, user_with_roles};

pub const REDIRECT: &str = "https://rp.example/callback";
/// Where the relying parties registered here may be sent back after signing out.
pub const SIGNED_OUT: &str = "https://rp.example/signed-out";

/// A relying party registered with the server, and its PKCE pair for one sign-in.
pub struct Rp {
    pub client_id: String,
    pub secret: Option<String>,
    pub redirect_uri: String,
    pub verifier: String,
}

impl Rp {
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }

    /// The query of an authorization request: a good one, plus `extra`.
    pub fn authorize_query(&self, extra: &[(&str, &str)]) -> String {
        let challenge = self.challenge();
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("scope", "openid profile email roles"),
            ("state", "st-1"),
            ("nonce", "n-1"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (name, value) in extra {
            pairs.retain(|(n, _)| n != name);
            if !value.is_empty() {
                pairs.push((name, value));
            }
        }
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs {
            serializer.append_pair(name, value);
        }
        serializer.finish()
    }
}

/// Registers a relying party through the domain, as an operator would.
pub async fn register_rp(server: &TestServer, client_id: &str, first_party: bool, confidential: bool) -> Rp {
    let new = latchkey_server::domain::clients::NewClient {
        client_id: client_id.into(),
        name: format!("{client_id} app"),
        confidential,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scopes: ["openid", "profile", "email", "roles", "offline_access"].iter().map(|s| s.to_string()).collect(),
        audience: None,
        roles: Vec::new(),
        redirect_uris: vec![REDIRECT.into(), "http://127.0.0.1/native".into()],
        post_logout_redirect_uris: vec![SIGNED_OUT.into()],
        first_party,
        allowed_origins: Vec::new(),
        visible_roles: None,
        token_endpoint_auth_method: None,
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        dpop_bound_access_tokens: false,
    };
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    let (_, secret) = latchkey_server::domain::clients::create(&server.state, new, &operator).await.unwrap();
    Rp {
        client_id: client_id.into(),
        secret: secret.map(|s| s.expose().clone()),
        redirect_uri: REDIRECT.into(),
        verifier: format!("verifier-{client_id}-{}", "x".repeat(40)),
    }
}

/// A browser: keeps cookies per name, never follows redirects.
pub struct Browser {
    http: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http, cookies: HashMap::new() }
    }

    fn keep_cookies(&mut self, resp: &reqwest::Response) {
        for value in resp.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.insert(name.to_string(), value.to_string());
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let resp = self.http.get(url).header(COOKIE, self.cookie_header()).sent().await;
        self.keep_cookies(&resp);
        resp
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let resp = self.http.post(url).header(COOKIE, self.cookie_header()).form(form).sent().await;
        self.keep_cookies(&resp);
        resp
    }

    /// Posts `fields` to the hosted form at `path` of `page`, with the interaction and
    /// CSRF token the page carries.
    pub async fn submit(
        &mut self,
        server: &TestServer,
        path: &str,
        page: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let (interaction, csrf) = (hidden(page, "interaction"), hidden(page, "csrf_token"));
        let mut form = vec![("interaction", interaction.as_str()), ("csrf_token", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post_form(&server.url(path), &form).await
    }
}

pub fn location(resp: &reqwest::Response) -> String {
    assert_eq!(resp.status(), 303, "expected a redirect on {}", backend());
    resp.headers()[LOCATION].to_str().unwrap().to_string()
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// A hidden field's value in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} in {page}")) + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_string()
}

/// Where the browser lands after following redirects within the server: the first
/// `Location` outside it (the relying party), or the page it stopped at.
pub enum Landed {
    AtClient(HashMap<String, String>),
    AtPage(String, String),
}

pub async fn follow(server: &TestServer, browser: &mut Browser, mut resp: reqwest::Response) -> Landed {
    loop {
        if resp.status() != 303 {
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert_eq!(status, 200, "page on {}: {body}", backend());
            return Landed::AtPage(String::new(), body);
        }
        let to = location(&resp);
        if to.starts_with(REDIRECT) || to.starts_with("http://127.0.0.1:") && !to.starts_with(&server.base) {
            let params = query_of(&to);
            assert_eq!(params["iss"], server.base, "every redirect to the client carries iss (RFC 9207)");
            return Landed::AtClient(params);
        }
        let url = if to.starts_with('/') { server.url(&to) } else { to };
        resp = browser.get(&url).await;
        if resp.status() == 200 {
            let body = resp.text().await.unwrap();
            return Landed::AtPage(url, body);
        }
    }
}

/// Starts an authorization request a library built (a full URL): the sign-in page.
pub async fn authorize_url(server: &TestServer, browser: &mut Browser, url: &str) -> String {
    let resp = browser.get(url).await;
    at_page(follow(server, browser, resp).await)
}

/// Signs in on `page`, and consents when `consent_if_asked`.
pub async fn sign_in_at(
    server: &TestServer,
    browser: &mut Browser,
    page: &str,
    username: &str,
    consent_if_asked: bool,
) -> Landed {
    let landed = sign_in(server, browser, page, username).await;
    if consent_if_asked { landed.pipe_consent(server, browser).await } else { landed }
}

/// Starts an authorization request in `browser`.
pub async fn authorize(server: &TestServer, browser: &mut Browser, rp: &Rp, extra: &[(&str, &str)]) -> Landed {
    let resp = browser.get(&server.url(&format!("/oauth2/authorize?{}", rp.authorize_query(extra)))).await;
    follow(server, browser, resp).await
}

/// Submits the sign-in page with a password, then consent if asked: the client's params.
pub async fn sign_in(server: &TestServer, browser: &mut Browser, page: &str, username: &str) -> Landed {
    let resp = browser.submit(server, "/ui/signin", page, &[("username", username), ("password", PASSWORD)]).await;
    follow(server, browser, resp).await
}

pub async fn consent(server: &TestServer, browser: &mut Browser, page: &str, decision: &str) -> Landed {
    let resp = browser.submit(server, "/ui/consent", page, &[("decision", decision)]).await;
    follow(server, browser, resp).await
}

pub fn at_client(landed: Landed) -> HashMap<String, String> {
    match landed {
        Landed::AtClient(params) => params,
        Landed::AtPage(url, body) => panic!("stopped at {url} on {}: {body}", backend()),
    }
}

pub fn at_page(landed: Landed) -> String {
    match landed {
        Landed::AtPage(_, body) => body,
        Landed::AtClient(params) => panic!("went back to the client: {params:?}"),
    }
}

/// The whole sign-in of `username` at a relying party, consenting when asked: the code.
pub async fn code_for(server: &TestServer, browser: &mut Browser, rp: &Rp, username: &str) -> String {
    let mut landed = match authorize(server, browser, rp, &[]).await {
        Landed::AtPage(_, page) if page.contains("current-password") => sign_in(server, browser, &page, username).await,
        other => other,
    };
    if let Landed::AtPage(_, page) = &landed {
        assert!(page.contains("Allow access?"), "{page}");
        landed = consent(server, browser, &page.clone(), "allow").await;
    }
    let params = at_client(landed);
    assert_eq!(params["state"], "st-1");
    params["code"].clone()
}

pub async fn exchange(server: &TestServer, rp: &Rp, code: &str, verifier: &str) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", rp.redirect_uri.as_str()),
        ("code_verifier", verifier),
        ("client_id", rp.client_id.as_str()),
    ];
    if let Some(secret) = &rp.secret {
        form.push(("client_secret", secret));
    }
    server.post("/oauth2/token").form(&form).sent().await
}

/// Verifies an id_token with the published JWKS, as a relying party would.
pub async fn verify_id_token(server: &TestServer, id_token: &str, audience: &str) -> Value {
    let jwks: JwkSet = server.get("/.well-known/jwks.json").fetch_json().await;
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&server.base]);
    validation.set_audience(&[audience]);
    let key = DecodingKey::from_jwk(jwks.find(&header.kid.unwrap()).unwrap()).unwrap();
    jsonwebtoken::decode::<Value>(id_token, &key, &validation).unwrap().claims
}

fn decode_claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn a_third_party_signs_a_user_in_with_consent_and_gets_a_verified_id_token() {
    let server = TestServer::start().await;
    let (ada_id, _) = user_with_roles(&server, "ada", &["user", "admin"]).await;
    let rp = register_rp(&server, "grafana", false, true).await;
    let mut browser = Browser::new();

    let page = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    assert!(page.contains("autocomplete=\"username\"") && page.contains("autocomplete=\"current-password\""));
    assert!(page.contains("grafana app"), "the sign-in page names the application");
    let page = at_page(sign_in(&server, &mut browser, &page, "ada").await);
    assert!(page.contains("Allow access?") && page.contains("See your email address"), "{page}");
    let params = at_client(consent(&server, &mut browser, &page, "allow").await);
    assert_eq!(params["state"], "st-1");
    let code = &params["code"];
    assert!(code.starts_with("lk_ac_") && code.len() >= 6 + 43, "≥ 256 random bits: {code}");

    let resp = exchange(&server, &rp, code, &rp.verifier).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let tokens: Value = resp.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "openid profile email roles");
    assert!(tokens["refresh_token"].as_str().unwrap().starts_with("lk_rt_"));
    let access = tokens["access_token"].as_str().unwrap();
    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap(), "grafana").await;
    assert_eq!(id["sub"], ada_id.as_str());
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["azp"], "grafana");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert_eq!(id["acr"], "1");
    assert_eq!(id["preferred_username"], "ada");
    assert_eq!(id["roles"], json!(["user"]), "a third party never learns of the admin role");
    let expected_at_hash = URL_SAFE_NO_PAD.encode(&Sha256::digest(access.as_bytes())[..16]);
    assert_eq!(id["at_hash"], expected_at_hash.as_str());
    assert_eq!(id["exp"].as_i64().unwrap() - id["iat"].as_i64().unwrap(), 300);
    assert!(id["auth_time"].as_i64().is_some() && id["sid"].as_str().is_some());

    // The access token is the client's, not ours: it cannot open our API.
    let claims = decode_claims(access);
    assert_eq!(claims["aud"], "grafana");
    assert_ne!(claims["sid"], id["sid"], "the access token's sid is its token session, the id_token's the SSO one");
    assert_eq!(server.get("/auth/me").bearer_auth(access).sent().await.status(), 401);
    // Userinfo answers it, with the granted scopes' claims.
    let info: Value = server.get("/oauth2/userinfo").bearer_auth(access).fetch_json().await;
    assert_eq!(info["sub"], ada_id.as_str());
    assert_eq!(info["preferred_username"], "ada");
    assert_eq!(info["roles"], json!(["user"]));

    // It refreshes like any session, with rotation.
    let refreshed = server
        .post("/oauth2/token")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", "grafana"),
            ("client_secret", rp.secret.as_deref().unwrap()),
        ])
        .sent()
        .await;
    assert_eq!(refreshed.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_second_relying_party_signs_in_by_the_browser_session_and_first_party_skips_consent() {
    let server = TestServer::start().await;
    user_with_roles(&server, "bo", &["user"]).await;
    let first = register_rp(&server, "wiki", true, false).await;
    let second = register_rp(&server, "tracker", true, false).await;
    let mut browser = Browser::new();
    let page = at_page(authorize(&server, &mut browser, &first, &[]).await);
    let params = at_client(sign_in(&server, &mut browser, &page, "bo").await);
    assert!(params.contains_key("code"), "first-party: no consent page");
    let sso = browser.cookies.get("lk_sso").cloned().expect("a browser login session");

    // The second relying party: no password prompt, straight back with a code.
    let params = at_client(authorize(&server, &mut browser, &second, &[]).await);
    let tokens: Value = exchange(&server, &second, &params["code"], &second.verifier).await.json().await.unwrap();
    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap(), "tracker").await;
    assert_eq!(id["preferred_username"], "bo");

    // prompt=none works with the session, and fails without it.
    let params = at_client(authorize(&server, &mut browser, &second, &[("prompt", "none")]).await);
    assert!(params.contains_key("code"));
    let mut stranger = Browser::new();
    let params = at_client(authorize(&server, &mut stranger, &second, &[("prompt", "none")]).await);
    assert_eq!(params["error"], "login_required");
    assert_eq!(params["state"], "st-1");

    // prompt=login asks again even with a live session.
    let page = at_page(authorize(&server, &mut browser, &second, &[("prompt", "login")]).await);
    assert!(page.contains("current-password"));
    assert!(sso.starts_with("lk_sso_"));
    server.stop().await;
}

#[tokio::test]
async fn max_age_forces_a_new_sign_in_and_moves_auth_time() {
    let server = TestServer::start().await;
    user_with_roles(&server, "cy", &["user"]).await;
    let rp = register_rp(&server, "dash", true, false).await;
    let mut browser = Browser::new();
    let code = code_for(&server, &mut browser, &rp, "cy").await;
    let tokens: Value = exchange(&server, &rp, &code, &rp.verifier).await.json().await.unwrap();
    let first = verify_id_token(&server, tokens["id_token"].as_str().unwrap(), "dash").await;

    server.clock.advance(120);
    // Within max_age: the session answers.
    let params = at_client(authorize(&server, &mut browser, &rp, &[("max_age", "300")]).await);
    assert!(params.contains_key("code"));
    // Past it: the sign-in page again, and auth_time moves.
    let page = at_page(authorize(&server, &mut browser, &rp, &[("max_age", "60")]).await);
    let params = at_client(sign_in(&server, &mut browser, &page, "cy").await);
    let tokens: Value = exchange(&server, &rp, &params["code"], &rp.verifier).await.json().await.unwrap();
    let second = verify_id_token(&server, tokens["id_token"].as_str().unwrap(), "dash").await;
    assert_eq!(second["auth_time"].as_i64().unwrap(), first["auth_time"].as_i64().unwrap() + 120);
    // prompt=none with max_age past: login_required rather than a page.
    server.clock.advance(120);
    let params = at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none"), ("max_age", "10")]).await);
    assert_eq!(params["error"], "login_required");
    server.stop().await;
}

#[tokio::test]
async fn a_code_is_single_use_and_its_reuse_revokes_what_it_bought() {
    let server = TestServer::start().await;
    user_with_roles(&server, "di", &["user"]).await;
    let rp = register_rp(&server, "notes", true, false).await;
    let mut browser = Browser::new();
    let code = code_for(&server, &mut browser, &rp, "di").await;
    let tokens: Value = exchange(&server, &rp, &code, &rp.verifier).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(server.get("/oauth2/userinfo").bearer_auth(&access).sent().await.status(), 200);

    let again = exchange(&server, &rp, &code, &rp.verifier).await;
    crate::harness::assert_error(again, 400, "invalid_grant").await;
    assert_eq!(server.get("/oauth2/userinfo").bearer_auth(&access).sent().await.status(), 401, "revoked at once");
    let refresh = server
        .post("/oauth2/token")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", "notes"),
        ])
        .sent()
        .await;
    crate::harness::assert_error(refresh, 400, "invalid_grant").await;
    let actions = server.audit_actions().await;
    assert!(actions.iter().any(|(action, _)| action == "authorization_code.reuse"), "{actions:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_redemptions_of_one_code_exactly_one_wins() {
    let server = TestServer::start().await;
    user_with_roles(&server, "ed", &["user"]).await;
    let rp = register_rp(&server, "race", true, false).await;
    let mut browser = Browser::new();
    for _ in 0..3 {
        let code = code_for(&server, &mut browser, &rp, "ed").await;
        let attempts = (0..6).map(|_| exchange(&server, &rp, &code, &rp.verifier));
        let statuses: Vec<u16> =
            futures_util::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?} on {}", backend());
        assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
        browser = Browser::new();
    }
    server.stop().await;
}

#[tokio::test]
async fn the_exchange_holds_the_code_to_its_client_redirect_uri_and_verifier() {
    let server = TestServer::start().await;
    user_with_roles(&server, "fa", &["user"]).await;
    let rp = register_rp(&server, "one", true, false).await;
    let other = register_rp(&server, "two", true, false).await;
    let mut browser = Browser::new();

    // (case, client_id, redirect_uri, code_verifier)
    let cases = [
        ("another client", "two", REDIRECT, rp.verifier.as_str()),
        ("another redirect_uri", "one", "http://127.0.0.1/native", &rp.verifier),
        ("a wrong verifier", "one", REDIRECT, &other.verifier),
        ("a short verifier", "one", REDIRECT, "abc"),
    ];
    for (case, client_id, redirect_uri, verifier) in cases {
        let code = code_for(&server, &mut browser, &rp, "fa").await;
        let resp = server.post("/oauth2/token").form(&form(&code, client_id, redirect_uri, verifier)).sent().await;
        assert_eq!(resp.status(), 400, "{case}");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], "invalid_grant", "{case}");
        // The code is spent either way: the right request now fails too.
        let resp = exchange(&server, &rp, &code, &rp.verifier).await;
        assert_eq!(resp.status(), 400, "{case}: a refused code stays spent");
    }
    // Missing parameters are invalid_request.
    let code = code_for(&server, &mut browser, &rp, "fa").await;
    let without_verifier = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", "one"),
    ];
    crate::harness::assert_error(
        server.post("/oauth2/token").form(&without_verifier).sent().await,
        400,
        "invalid_request",
    )
    .await;
    // An expired code (60 s) is refused.
    let code = code_for(&server, &mut browser, &rp, "fa").await;
    server.clock.advance(61);
    crate::harness::assert_error(exchange(&server, &rp, &code, &rp.verifier).await, 400, "invalid_grant").await;
    server.stop().await;
}

fn form(code: &str, client_id: &str, redirect_uri: &str, verifier: &str) -> Vec<(String, String)> {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test]
async fn requests_that_cannot_be_trusted_get_a_page_and_never_a_redirect() {
    let server = TestServer::start().await;
    let rp = register_rp(&server, "safe", false, false).await;
    let mut browser = Browser::new();
    let attacks = [
        "https://rp.example/callback/extra",
        "https://RP.example/callback",
        "https://rp.example/Callback",
        "https://rp.example./callback",
        "https://rp.example/%63allback",
        "https://rp.example@evil.example/callback",
        "https://evil.example/callback",
        "javascript:alert(1)",
        "http://127.0.0.1:4000/native/../evil",
    ];
    for attack in attacks {
        let query = rp.authorize_query(&[("redirect_uri", attack)]);
        let resp = browser.get(&server.url(&format!("/oauth2/authorize?{query}"))).await;
        assert_eq!(resp.status(), 400, "{attack}");
        assert!(resp.headers().get(LOCATION).is_none(), "{attack}: no redirect");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let body = resp.text().await.unwrap();
        assert!(body.contains("not one registered"), "{attack}: {body}");
    }
    for query in [rp.authorize_query(&[("client_id", "nobody")]), rp.authorize_query(&[("redirect_uri", "")])] {
        let resp = browser.get(&server.url(&format!("/oauth2/authorize?{query}"))).await;
        assert_eq!(resp.status(), 400, "{query}");
        assert!(resp.headers().get(LOCATION).is_none());
    }
    // A loopback IP redirect URI takes any port (RFC 8252 §7.3).
    let native =
        Rp { redirect_uri: "http://127.0.0.1:53121/native".into(), ..register_rp(&server, "cli", false, false).await };
    let page = at_page(authorize(&server, &mut browser, &native, &[]).await);
    assert!(page.contains("current-password"));
    server.stop().await;
}

#[tokio::test]
async fn other_errors_go_back_to_the_client_with_state_and_iss() {
    let server = TestServer::start().await;
    let rp = register_rp(&server, "errs", false, false).await;
    let mut browser = Browser::new();
    let cases = [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", ""), ("code_challenge_method", "")], "invalid_request"),
        (vec![("response_type", "token")], "unsupported_response_type"),
        (vec![("response_type", "")], "invalid_request"),
        (vec![("request", "eyJhbGciOiJub25lIn0.e30.")], "request_not_supported"),
        (vec![("request_uri", "https://rp.example/req")], "request_uri_not_supported"),
        (vec![("prompt", "none login")], "invalid_request"),
        (vec![("max_age", "soon")], "invalid_request"),
        (vec![("response_mode", "fragment")], "invalid_request"),
    ];
    for (extra, error) in cases {
        let params = at_client(authorize(&server, &mut browser, &rp, &extra).await);
        assert_eq!(params["error"], error, "{extra:?}");
        assert_eq!(params["state"], "st-1", "{extra:?}");
        assert!(params.contains_key("error_description"));
    }
    // A client without the grant is refused by redirect too.
    let changes = latchkey_server::domain::clients::ClientUpdate {
        grant_types: Some(vec!["refresh_token".into()]),
        ..Default::default()
    };
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    latchkey_server::domain::clients::update(&server.state, "errs", changes, &operator).await.unwrap();
    let params = at_client(authorize(&server, &mut browser, &rp, &[]).await);
    assert_eq!(params["error"], "unauthorized_client");
    server.stop().await;
}

#[tokio::test]
async fn consent_denied_is_access_denied_and_consent_given_is_remembered() {
    let server = TestServer::start().await;
    user_with_roles(&server, "gu", &["user"]).await;
    let rp = register_rp(&server, "shop", false, false).await;
    let mut browser = Browser::new();
    let page = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    let page = at_page(sign_in(&server, &mut browser, &page, "gu").await);
    let params = at_client(consent(&server, &mut browser, &page, "deny").await);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "st-1");

    // prompt=none without consent: consent_required.
    let params = at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none")]).await);
    assert_eq!(params["error"], "consent_required");
    // Consent once; the next request for the same scopes skips the page.
    let page = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    assert!(page.contains("Allow access?"), "signed in already: only consent is asked");
    assert!(at_client(consent(&server, &mut browser, &page, "allow").await).contains_key("code"));
    assert!(at_client(authorize(&server, &mut browser, &rp, &[]).await).contains_key("code"));
    // A wider request asks again; prompt=consent always asks.
    let page = at_page(authorize(&server, &mut browser, &rp, &[("scope", "openid offline_access")]).await);
    assert!(page.contains("Keep access while you are away"));
    let page = at_page(authorize(&server, &mut browser, &rp, &[("prompt", "consent")]).await);
    assert!(page.contains("Allow access?"));
    let actions = server.audit_actions().await;
    assert!(
        actions.iter().any(|(a, _)| a == "consent.granted") && actions.iter().any(|(a, _)| a == "authorization.denied")
    );
    server.stop().await;
}

#[tokio::test]
async fn scopes_decide_what_userinfo_and_the_id_token_release() {
    let server = TestServer::start().await;
    user_with_roles(&server, "hy", &["user"]).await;
    let rp = register_rp(&server, "narrow", true, false).await;
    let mut browser = Browser::new();
    let page = at_page(authorize(&server, &mut browser, &rp, &[("scope", "openid unknown-scope")]).await);
    let params = at_client(sign_in(&server, &mut browser, &page, "hy").await);
    let tokens: Value = exchange(&server, &rp, &params["code"], &rp.verifier).await.json().await.unwrap();
    assert_eq!(tokens["scope"], "openid", "unknown scopes are dropped, the granted set returned");
    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap(), "narrow").await;
    assert!(id.get("preferred_username").is_none() && id.get("roles").is_none(), "{id}");
    let info: Value =
        server.get("/oauth2/userinfo").bearer_auth(tokens["access_token"].as_str().unwrap()).fetch_json().await;
    assert_eq!(info.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["sub"]);

    // Without openid: a plain OAuth code flow, no id_token.
    let params = at_client(authorize(&server, &mut browser, &rp, &[("scope", "profile")]).await);
    let tokens: Value = exchange(&server, &rp, &params["code"], &rp.verifier).await.json().await.unwrap();
    assert!(tokens.get("id_token").is_none(), "{tokens}");
    server.stop().await;
}

#[tokio::test]
async fn the_hosted_forms_are_bound_to_their_browser_and_carry_a_csrf_token() {
    let server = TestServer::start().await;
    user_with_roles(&server, "io", &["user"]).await;
    let rp = register_rp(&server, "bound", false, false).await;
    let mut browser = Browser::new();
    let page = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    let interaction = hidden(&page, "interaction");

    // Without the CSRF token: 400, an HTML page.
    let form = [("interaction", interaction.as_str()), ("username", "io"), ("password", PASSWORD)];
    let resp = browser.post_form(&server.url("/ui/signin"), &form).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(resp.text().await.unwrap().contains("security token"));

    // Another browser (an attacker's interaction submitted by a victim, or the other
    // way round) cannot use this interaction even with its token.
    let mut other = Browser::new();
    let credentials = [("username", "io"), ("password", PASSWORD)];
    assert_eq!(other.submit(&server, "/ui/signin", &page, &credentials).await.status(), 400);
    let resp = other.get(&server.url(&format!("/ui/signin?interaction={interaction}"))).await;
    assert_eq!(resp.status(), 400);

    // A wrong password comes back to the page (post-redirect-get) with a generic notice.
    let resp =
        browser.submit(&server, "/ui/signin", &page, &[("username", "io"), ("password", "wrong-password")]).await;
    let back = location(&resp);
    assert_eq!(back, format!("/ui/signin?interaction={interaction}"));
    let body = browser.get(&server.url(&back)).await.text().await.unwrap();
    assert!(body.contains("Invalid username or password."));
    // The finished sign-in cannot be finished twice.
    let params = at_client(sign_in(&server, &mut browser, &page, "io").await.pipe_consent(&server, &mut browser).await);
    assert!(params.contains_key("code"));
    assert_eq!(browser.submit(&server, "/ui/signin", &page, &credentials).await.status(), 400);
    // An interaction left too long expires.
    let page = at_page(authorize(&server, &mut browser, &rp, &[("prompt", "login")]).await);
    server.clock.advance(601);
    let resp = browser.submit(&server, "/ui/signin", &page, &credentials).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("expired"));
    server.stop().await;
}

trait PipeConsent {
    async fn pipe_consent(self, server: &TestServer, browser: &mut Browser) -> Landed;
}

impl PipeConsent for Landed {
    /// Allows consent if the sign-in stopped at the consent page.
    async fn pipe_consent(self, server: &TestServer, browser: &mut Browser) -> Landed {
        match self {
            Landed::AtPage(_, page) if page.contains("Allow access?") => consent(server, browser, &page, "allow").await,
            other => other,
        }
    }
}

#[tokio::test]
async fn an_account_with_totp_signs_in_with_its_second_factor() {
    let server = TestServer::start().await;
    user_with_roles(&server, "jo", &["user"]).await;
    let (uri, recovery) = enable_totp(&server, "jo").await;
    let rp = register_rp(&server, "mfa-app", true, false).await;
    let mut browser = Browser::new();
    let page = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    let page = at_page(sign_in(&server, &mut browser, &page, "jo").await);
    assert!(page.contains("autocomplete=\"one-time-code\""), "{page}");
    let back = location(&browser.submit(&server, "/ui/signin/code", &page, &[("code", "000000")]).await);
    assert!(browser.get(&server.url(&back)).await.text().await.unwrap().contains("not valid"));
    let code = totp_rs::Totp::from_url(&uri).unwrap().generate(server.clock.now_secs() as u64 + 30).to_string();
    server.clock.advance(30);
    let resp = browser.submit(&server, "/ui/signin/code", &page, &[("code", code.as_str())]).await;
    let params = at_client(follow(&server, &mut browser, resp).await);
    let tokens: Value = exchange(&server, &rp, &params["code"], &rp.verifier).await.json().await.unwrap();
    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap(), "mfa-app").await;
    assert_eq!(id["amr"], json!(["pwd", "otp"]));
    assert_eq!(id["acr"], "2");

    // A recovery code works in place of the TOTP code.
    let mut second = Browser::new();
    let page = at_page(authorize(&server, &mut second, &rp, &[]).await);
    let page = at_page(sign_in(&server, &mut second, &page, "jo").await);
    let resp = second.submit(&server, "/ui/signin/code", &page, &[("recovery_code", recovery[0].as_str())]).await;
    assert!(at_client(follow(&server, &mut second, resp).await).contains_key("code"));
    server.stop().await;
}

#[tokio::test]
async fn hosted_pages_carry_their_security_headers() {
    let server = TestServer::start().await;
    let rp = register_rp(&server, "headers", false, false).await;
    let mut browser = Browser::new();
    let resp = browser.get(&server.url(&format!("/oauth2/authorize?{}", rp.authorize_query(&[])))).await;
    let to = location(&resp);
    for resp in [resp, browser.get(&server.url(&to)).await] {
        let headers = resp.headers();
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    }
    let page = browser.get(&server.url(&to)).await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("form-action 'self' https://rp.example"), "{csp}");
    let binding = browser.cookies.get("lk_browser").expect("the browser-binding cookie");
    assert!(binding.starts_with("lk_bb_"));
    // The error page for an unknown interaction is HTML with a request id.
    let resp = browser.get(&server.url("/ui/signin?interaction=nope")).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("Request id"));
    server.stop().await;
}

#[tokio::test]
async fn the_sso_cookie_is_httponly_secure_lax_and_site_wide() {
    let server = TestServer::start().await;
    user_with_roles(&server, "ky", &["user"]).await;
    let rp = register_rp(&server, "cookie", true, false).await;
    let mut browser = Browser::new();
    let page = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    let resp = browser.submit(&server, "/ui/signin", &page, &[("username", "ky"), ("password", PASSWORD)]).await;
    let set: Vec<String> = resp.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let sso = set.iter().find(|c| c.starts_with("lk_sso=")).expect("the SSO cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=604800"] {
        assert!(sso.contains(attribute), "{attribute} in {sso}");
    }
    server.stop().await;
}

#[tokio::test]
async fn discovery_describes_the_code_flow() {
    let server = TestServer::start().await;
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let doc: Value = server.get(path).fetch_json().await;
        assert_eq!(doc["authorization_endpoint"], format!("{}/oauth2/authorize", server.base));
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["RS256"]));
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(doc["request_parameter_supported"], false);
        assert!(doc["grant_types_supported"].as_array().unwrap().contains(&json!("authorization_code")));
        assert!(doc["scopes_supported"].as_array().unwrap().contains(&json!("email")));
    }
    server.stop().await;
}

#[tokio::test]
async fn clients_register_redirect_uris_through_the_admin_api() {
    let server = TestServer::start().await;
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let create = |body: Value| call(&server, &admin, Method::POST, "/admin/clients", Some(body));
    let base = json!({
        "client_id": "rp-one", "name": "RP one", "confidential": false,
        "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid", "profile"],
    });
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    for bad in [
        json!(["http://rp.example/cb"]),
        json!(["https://rp.example/cb#x"]),
        json!(["https://*.example/cb"]),
        json!(["javascript:alert(1)"]),
    ] {
        let (status, body) = create(with("redirect_uris", bad.clone())).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_redirect_uri")), "{bad}");
    }
    let (status, body) = create(base.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_redirect_uri")),
        "the code flow needs a redirect URI"
    );
    let (status, body) = create(with("redirect_uris", json!(["https://rp.example/cb", "com.example.app:/cb"]))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["client"]["redirect_uris"], json!(["https://rp.example/cb", "com.example.app:/cb"]));
    assert_eq!(body["client"]["first_party"], false);
    // A third-party client may not carry our audience.
    let mut ours = with("redirect_uris", json!(["https://rp.example/cb"]));
    ours["client_id"] = json!("rp-two");
    ours["audience"] = json!("latchkey");
    let (status, body) = create(ours).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_audience")));
    // Editing the list.
    let (status, body) = call(
        &server,
        &admin,
        Method::PATCH,
        "/admin/clients/rp-one",
        Some(json!({"redirect_uris": ["https://rp.example/new"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redirect_uris"], json!(["https://rp.example/new"]));
    server.stop().await;
}

#[tokio::test]
async fn the_purge_removes_spent_codes_abandoned_sign_ins_and_ended_browser_sessions() {
    let server = TestServer::start_with(|raw| {
        raw.operations.ended_session_retention_days = 1;
        raw.sso.idle_timeout_secs = 3600;
        raw.sso.absolute_lifetime_secs = 3600;
    })
    .await;
    user_with_roles(&server, "lu", &["user"]).await;
    let rp = register_rp(&server, "purged", true, false).await;
    let mut browser = Browser::new();
    let code = code_for(&server, &mut browser, &rp, "lu").await;
    assert_eq!(exchange(&server, &rp, &code, &rp.verifier).await.status(), 200);
    let unused = code_for(&server, &mut browser, &rp, "lu").await;
    at_page(authorize(&server, &mut Browser::new(), &rp, &[]).await);

    // Within their lifetime nothing goes: a spent code must still be recognised.
    let purged = latchkey_server::domain::maintenance::purge(&server.state).await.unwrap().expect("lease");
    assert_eq!((purged.authorization_codes, purged.sign_ins, purged.sso_sessions), (0, 0, 0));
    server.clock.advance(24 * 3600 + 3601);
    let purged = latchkey_server::domain::maintenance::purge(&server.state).await.unwrap().expect("lease");
    assert_eq!(purged.authorization_codes, 2, "the spent code and the unused one, on {}", backend());
    assert_eq!(purged.sign_ins, 1, "the abandoned sign-in");
    assert_eq!(purged.sso_sessions, 1, "the browser session that ended");
    crate::harness::assert_error(exchange(&server, &rp, &unused, &rp.verifier).await, 400, "invalid_grant").await;
    server.stop().await;
}

#[tokio::test]
async fn a_clients_registered_browser_origin_may_call_the_token_endpoint() {
    let server = TestServer::start().await;
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let body = json!({
        "client_id": "browser-app", "name": "Browser app", "confidential": false,
        "grant_types": ["authorization_code", "refresh_token"], "scopes": ["openid"],
        "redirect_uris": ["https://spa.example/callback"], "allowed_origins": ["https://SPA.example/"],
    });
    let (status, created) = call(&server, &admin, Method::POST, "/admin/clients", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["client"]["allowed_origins"], json!(["https://spa.example"]), "stored normalised");

    let preflight = server
        .http
        .request(Method::OPTIONS, server.url("/oauth2/token"))
        .header("origin", "https://spa.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .sent()
        .await;
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://spa.example");
    assert!(preflight.headers().get("access-control-allow-credentials").is_none(), "no cookies here");

    let token = server
        .post("/oauth2/token")
        .header("origin", "https://spa.example")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "lk_rt_nope"), ("client_id", "browser-app")])
        .sent()
        .await;
    assert_eq!(token.headers()["access-control-allow-origin"], "https://spa.example");
    assert_eq!(token.json::<Value>().await.unwrap()["error"], "invalid_grant", "the request itself was answered");

    let stranger = server
        .post("/oauth2/token")
        .header("origin", "https://evil.example")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "lk_rt_nope"), ("client_id", "browser-app")])
        .sent()
        .await;
    assert!(stranger.headers().get("access-control-allow-origin").is_none());
    // Discovery and the JWKS are public to every origin.
    for path in ["/.well-known/openid-configuration", "/.well-known/jwks.json"] {
        let resp = server.get(path).header("origin", "https://any.example").sent().await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["access-control-allow-origin"], "*", "{path}");
    }
    // Not for the admin API or the cookie endpoints.
    let admin_call =
        server.get("/admin/users").header("origin", "https://spa.example").bearer_auth(&admin).sent().await;
    assert!(admin_call.headers().get("access-control-allow-origin").is_none());
    server.stop().await;
}

#[tokio::test]
async fn nodes_share_sign_ins_codes_and_browser_sessions() {
    let a = TestServer::start().await;
    let b = a.second_node().await;
    user_with_roles(&a, "mo", &["user"]).await;
    let rp = register_rp(&a, "spread", true, false).await;
    let other = register_rp(&a, "spread-two", true, false).await;
    let mut browser = Browser::new();

    // Authorize and sign in on node A, redeem on node B.
    let code = code_for(&a, &mut browser, &rp, "mo").await;
    let resp = exchange(&b, &rp, &code, &rp.verifier).await;
    assert_eq!(resp.status(), 200, "on {}", backend());
    let tokens: Value = resp.json().await.unwrap();
    let id = verify_id_token(&a, tokens["id_token"].as_str().unwrap(), "spread").await;
    assert_eq!(id["preferred_username"], "mo");
    // The code is spent for node A too.
    crate::harness::assert_error(exchange(&a, &rp, &code, &rp.verifier).await, 400, "invalid_grant").await;

    // The browser session made on A signs the user in to another app through B.
    let resp = browser.get(&b.url(&format!("/oauth2/authorize?{}", other.authorize_query(&[])))).await;
    let to = location(&resp);
    assert!(to.starts_with(REDIRECT), "no sign-in page on node B: {to}");
    let params = query_of(&to);
    assert_eq!(params["iss"], a.base, "one issuer for every node");
    assert_eq!(exchange(&a, &other, &params["code"], &other.verifier).await.status(), 200);

    // A sign-in started on B is finished on A.
    let mut fresh = Browser::new();
    let resp = fresh.get(&b.url(&format!("/oauth2/authorize?{}", rp.authorize_query(&[])))).await;
    let page = fresh.get(&a.url(&location(&resp))).await.text().await.unwrap();
    let params = at_client(sign_in(&a, &mut fresh, &page, "mo").await);
    assert_eq!(exchange(&b, &rp, &params["code"], &rp.verifier).await.status(), 200);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn users_and_admins_list_and_end_browser_sessions_and_consents() {
    let server = TestServer::start().await;
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let (user_id, _) = user_with_roles(&server, "ny", &["user"]).await;
    let rp = register_rp(&server, "granted", false, false).await;
    let mut browser = Browser::new();
    code_for(&server, &mut browser, &rp, "ny").await;
    let (access, _) = server.login("ny").await;

    let sessions: Value = server.get("/auth/browser-sessions").bearer_auth(&access).fetch_json().await;
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!(sessions[0]["amr"], json!(["pwd"]));
    let consents: Value = server.get("/auth/consents").bearer_auth(&access).fetch_json().await;
    assert_eq!(consents[0]["client_id"], "granted");
    assert_eq!(consents[0]["client_name"], "granted app");
    assert_eq!(consents[0]["scopes"], json!(["openid", "profile", "email", "roles"]));

    // The user withdraws the consent: the app asks again.
    let resp = server.delete("/auth/consents/granted").bearer_auth(&access).sent().await;
    assert_eq!(resp.status(), 204);
    crate::harness::assert_error(
        server.delete("/auth/consents/granted").bearer_auth(&access).sent().await,
        404,
        "not_found",
    )
    .await;
    let page = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    assert!(page.contains("Allow access?"));
    at_client(consent(&server, &mut browser, &page, "allow").await);

    // The admin sees and ends them.
    let path = format!("/admin/users/{user_id}/browser-sessions");
    let (status, listed) = call(&server, &admin, Method::GET, &path, None).await;
    assert_eq!(status, 200);
    let sid = listed[0]["id"].as_str().unwrap().to_string();
    let (status, _) = call(&server, &admin, Method::DELETE, &format!("{path}/{sid}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&server, &admin, Method::DELETE, &format!("{path}/{sid}"), None).await;
    assert_eq!(status, 404, "ended once");
    let page = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    assert!(page.contains("current-password"), "the browser must sign in again");
    let (status, _) =
        call(&server, &admin, Method::DELETE, &format!("/admin/users/{user_id}/consents/granted"), None).await;
    assert_eq!(status, 204);
    let (_, consents) = call(&server, &admin, Method::GET, &format!("/admin/users/{user_id}/consents"), None).await;
    assert_eq!(consents, json!([]));
    let actions = server.audit_actions().await;
    assert!(actions.iter().any(|(a, _)| a == "sso_session.end") && actions.iter().any(|(a, _)| a == "consent.revoked"));
    server.stop().await;
}

#[tokio::test]
async fn signing_out_everywhere_ends_the_browser_sessions_too() {
    let server = TestServer::start().await;
    user_with_roles(&server, "oz", &["user"]).await;
    let rp = register_rp(&server, "everywhere", true, false).await;
    let mut browser = Browser::new();
    code_for(&server, &mut browser, &rp, "oz").await;
    assert!(matches!(authorize(&server, &mut browser, &rp, &[]).await, Landed::AtClient(_)));
    let (access, _) = server.login("oz").await;
    let resp = server.spa_post("/auth/logout-all").bearer_auth(&access).sent().await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let params = at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none")]).await);
    assert_eq!(params["error"], "login_required");

    // A password change ends them as well (the browser held the old password's sign-in).
    user_with_roles(&server, "pa", &["user"]).await;
    let mut browser = Browser::new();
    code_for(&server, &mut browser, &rp, "pa").await;
    let (access, _) = server.login("pa").await;
    let body = json!({"current_password": PASSWORD, "new_password": "another long password"});
    let resp = server.spa_post("/auth/password").bearer_auth(&access).json(&body).sent().await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let params = at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none")]).await);
    assert_eq!(params["error"], "login_required", "after a password change on {}", backend());
    server.stop().await;
}

#[tokio::test]
async fn userinfo_answers_post_and_a_refused_password_keeps_the_username() {
    let server = TestServer::start().await;
    user_with_roles(&server, "pi", &["user"]).await;
    let rp = register_rp(&server, "posting", true, false).await;
    let mut browser = Browser::new();
    let page = at_page(authorize(&server, &mut browser, &rp, &[]).await);
    let wrong = [("username", "pi"), ("password", "not the password")];
    let back = location(&browser.submit(&server, "/ui/signin", &page, &wrong).await);
    let page = browser.get(&server.url(&back)).await.text().await.unwrap();
    assert!(page.contains("value=\"pi\""), "the username is filled again");
    let params = at_client(sign_in(&server, &mut browser, &page, "pi").await);
    let tokens: Value = exchange(&server, &rp, &params["code"], &rp.verifier).await.json().await.unwrap();
    let info: Value =
        server.post("/oauth2/userinfo").bearer_auth(tokens["access_token"].as_str().unwrap()).fetch_json().await;
    assert_eq!(info["preferred_username"], "pi");
    // max_age=0 is prompt=login, even within the second of the sign-in.
    let page = at_page(authorize(&server, &mut browser, &rp, &[("max_age", "0")]).await);
    assert!(page.contains("current-password"));
    server.stop().await;
}

#[tokio::test]
async fn an_id_token_hint_for_another_user_is_login_required_and_branding_shows() {
    let server = TestServer::start_with(|raw| {
        raw.branding.product_name = "Example ID".into();
        raw.branding.logo_url = Some("https://static.example.com/logo.svg".into());
    })
    .await;
    user_with_roles(&server, "qi", &["user"]).await;
    user_with_roles(&server, "ra", &["user"]).await;
    let rp = register_rp(&server, "hinted", true, false).await;
    let mut other = Browser::new();
    let code = code_for(&server, &mut other, &rp, "ra").await;
    let tokens: Value = exchange(&server, &rp, &code, &rp.verifier).await.json().await.unwrap();
    let ras_hint = tokens["id_token"].as_str().unwrap().to_string();

    let mut browser = Browser::new();
    let code = code_for(&server, &mut browser, &rp, "qi").await;
    let tokens: Value = exchange(&server, &rp, &code, &rp.verifier).await.json().await.unwrap();
    let own_hint = tokens["id_token"].as_str().unwrap().to_string();
    let ok =
        at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none"), ("id_token_hint", &own_hint)]).await);
    assert!(ok.contains_key("code"), "the session's own subject: {ok:?}");
    let refused =
        at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none"), ("id_token_hint", &ras_hint)]).await);
    assert_eq!(refused["error"], "login_required", "another subject than the session's");

    let resp = Browser::new().get(&server.url(&format!("/oauth2/authorize?{}", rp.authorize_query(&[])))).await;
    let mut fresh = Browser::new();
    let page = fresh.get(&server.url(&location(&resp))).await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("img-src 'self' https://static.example.com"), "{csp}");
    let resp = fresh.get(&server.url("/ui/signin?interaction=gone")).await;
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = resp.text().await.unwrap();
    assert!(body.contains("Example ID") && body.contains("https://static.example.com/logo.svg"));
    assert!(body.contains(&request_id), "the error page shows the request id the response carries");
    server.stop().await;
}

#[tokio::test]
async fn the_authorization_endpoint_spends_the_token_bucket() {
    let server = TestServer::start_with(|raw| raw.rate_limits.token = latchkey_server::config::Quota::new(60, 2)).await;
    let rp = register_rp(&server, "limited", false, false).await;
    let mut browser = Browser::new();
    let url = server.url(&format!("/oauth2/authorize?{}", rp.authorize_query(&[])));
    for _ in 0..2 {
        assert_eq!(browser.get(&url).await.status(), 303);
    }
    let resp = browser.get(&url).await;
    assert_eq!(resp.status(), 429, "a burst past the bucket on {}", backend());
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    server.stop().await;
}

#[tokio::test]
async fn a_registered_token_endpoint_auth_method_is_the_only_one_accepted() {
    let server = TestServer::start().await;
    let (_, admin) = user_with_roles(&server, "root", &["admin"]).await;
    let create = |id: &str, confidential: bool, method: &str| {
        json!({"client_id": id, "name": id, "confidential": confidential, "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": method})
    };
    let (status, created) =
        call(&server, &admin, Method::POST, "/admin/clients", Some(create("posting-svc", true, "client_secret_post")))
            .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["client"]["token_endpoint_auth_method"], "client_secret_post");
    let secret = created["client_secret"].as_str().unwrap();
    let by_basic = server
        .post("/oauth2/token")
        .basic_auth("posting-svc", Some(secret))
        .form(&[("grant_type", "client_credentials")]);
    crate::harness::assert_error(by_basic.sent().await, 401, "invalid_client").await;
    let by_post = server.post("/oauth2/token").form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "posting-svc"),
        ("client_secret", secret),
    ]);
    assert_eq!(by_post.sent().await.status(), 200);
    let mut public = create("odd", false, "client_secret_basic");
    public["grant_types"] = json!(["refresh_token"]);
    let (status, body) = call(&server, &admin, Method::POST, "/admin/clients", Some(public)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "a public client has no secret: {body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn each_use_restarts_the_browser_sessions_idle_timer_recorded_at_most_once_a_minute() {
    let server = TestServer::start_with(|raw| raw.sso.idle_timeout_secs = 600).await;
    user_with_roles(&server, "ida", &["user"]).await;
    let rp = register_rp(&server, "idle-app", true, false).await;
    let mut browser = Browser::new();
    code_for(&server, &mut browser, &rp, "ida").await;

    // Used 9 minutes after sign-in: the idle timer restarts, so the session outlives
    // its first ten minutes.
    let cookie = browser.cookies.get("lk_sso").cloned().expect("a browser session");
    let last_seen = || async {
        let hash = latchkey_server::security::sha256_hex(&cookie);
        let (row, _) = server.state.tokens.sso_session(&hash).await.unwrap().expect("the session");
        row.last_seen_at
    };
    let signed_in_at = last_seen().await;
    server.clock.advance(540);
    assert!(at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none")]).await).contains_key("code"));
    assert_eq!(last_seen().await, signed_in_at + 540, "recorded");
    // A use 30 s later is not recorded (within the minute), and 9.5 minutes after the
    // recorded use the session still lives: the deadline moved with the first use.
    server.clock.advance(30);
    assert!(at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none")]).await).contains_key("code"));
    assert_eq!(last_seen().await, signed_in_at + 540, "not recorded within the minute");
    server.clock.advance(540);
    assert!(at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none")]).await).contains_key("code"));
    // Idle for ten minutes and a second: over, whatever was used before.
    server.clock.advance(601);
    let params = at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none")]).await);
    assert_eq!(params["error"], "login_required", "on {}", backend());
    server.stop().await;
}

#[tokio::test]
async fn a_short_idle_timeout_is_still_restarted_by_each_use() {
    // Shorter than the minute the touch waits for: half the timeout is the interval.
    let server = TestServer::start_with(|raw| raw.sso.idle_timeout_secs = 30).await;
    user_with_roles(&server, "ivo", &["user"]).await;
    let rp = register_rp(&server, "brisk-app", true, false).await;
    let mut browser = Browser::new();
    code_for(&server, &mut browser, &rp, "ivo").await;
    for _ in 0..4 {
        server.clock.advance(20);
        let params = at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none")]).await);
        assert!(params.contains_key("code"), "used every 20 s, a 30 s idle timeout never passes: {params:?}");
    }
    server.clock.advance(31);
    let params = at_client(authorize(&server, &mut browser, &rp, &[("prompt", "none")]).await);
    assert_eq!(params["error"], "login_required", "on {}", backend());
    server.stop().await;
}
