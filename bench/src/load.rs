//! Scenarios and the load driver: N keep-alive connections, each a task looping one
//! request after another, latencies in an HDR histogram, server CPU and RSS from /proc.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::ceilings::Bound;
use crate::peer::{Endpoints, RefreshClient};
use crate::server;

const PASSWORD: &str = "bench password 123";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Login,
    Refresh,
    ClientCredentials,
    Me,
    Jwks,
    Mixed,
    /// A relying party's sign-in with a live browser session: authorize (the SSO
    /// cookie answers, no password) → code → token exchange (access + id token).
    CodeFlow,
    /// The hosted sign-in page of a sign-in in progress, rendered.
    SignInPage,
    /// A usernameless passkey sign-in through the JSON API: start, the authenticator's
    /// ES256 assertion (a software one, in the load generator), finish → tokens.
    Passkey,
    /// `client-credentials` with a DPoP proof (RFC 9449) on every request, each signed
    /// by the load generator with the connection's P-256 key: a bound token.
    DpopClientCredentials,
    /// `refresh` of a DPoP-bound cookie session, a fresh proof with each.
    DpopRefresh,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::Jwks,
        Scenario::Me,
        Scenario::ClientCredentials,
        Scenario::DpopClientCredentials,
        Scenario::Refresh,
        Scenario::DpopRefresh,
        Scenario::Login,
        Scenario::Passkey,
        Scenario::Mixed,
        Scenario::CodeFlow,
        Scenario::SignInPage,
    ];
}

/// One virtual client: its own user, refresh token (our session cookie) and access token.
struct Account {
    username: String,
    refresh_token: String,
    access_token: String,
    /// The browser it signs in to relying parties from (code-flow scenarios).
    browser: Option<BrowserState>,
    /// Its passkey, registered at seeding (the bench's own server only).
    passkey: Option<latchkey_softpasskey::SoftPasskey>,
    /// Its DPoP key and a second session bound to it (Latchkey only).
    dpop: Option<DpopSession>,
}

/// A DPoP client's P-256 key and the latest nonce the server handed it.
struct DpopKey {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
    /// The proof header, base64url: the same for every proof of this key.
    header: String,
    nonce: Option<String>,
}

impl DpopKey {
    fn new() -> anyhow::Result<Self> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("P-256 key generation failed"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("P-256 key parsing failed"))?;
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        let header = b64(serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}).to_string().as_bytes());
        Ok(Self { pair, header, nonce: None })
    }

    /// A proof of `method` `url` (the issuer's URL, not the address the load goes to).
    fn proof(&self, method: &str, url: &str) -> String {
        let iat = chrono::Utc::now().timestamp();
        let mut claims = serde_json::json!({"jti": uuid::Uuid::new_v4().simple().to_string(), "htm": method, "htu": url, "iat": iat});
        if let Some(nonce) = &self.nonce {
            claims["nonce"] = serde_json::json!(nonce);
        }
        let input = format!("{}.{}", self.header, b64(claims.to_string().as_bytes()));
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self.pair.sign(&rng, input.as_bytes()) {
            Ok(signature) => format!("{input}.{}", b64(signature.as_ref())),
            Err(_) => input,
        }
    }

    /// Keeps the nonce an answer carries; true when the answer asks for the request
    /// again with it (`use_dpop_nonce`, whose body need not be read to know: a 400
    /// bringing a new nonce to a proof that had none or an old one).
    fn keep_nonce(&mut self, resp: &reqwest::Response) -> bool {
        let Some(nonce) = resp.headers().get("dpop-nonce").and_then(|v| v.to_str().ok()) else { return false };
        let changed = self.nonce.as_deref() != Some(nonce);
        self.nonce = Some(nonce.to_string());
        changed && resp.status() == 400
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An account's DPoP key and the refresh cookie of its session bound to that key.
struct DpopSession {
    key: DpopKey,
    refresh_token: String,
}

/// A DPoP request with the nonce dance: sent once, and once more when the answer hands
/// a new nonce back with `use_dpop_nonce`.
async fn with_proof(
    key: &mut DpopKey,
    url: &str,
    send: impl Fn(String) -> reqwest::RequestBuilder,
) -> Option<reqwest::Response> {
    let resp = send(key.proof("POST", url)).send().await.ok()?;
    if !key.keep_nonce(&resp) {
        return Some(resp);
    }
    let again = send(key.proof("POST", url)).send().await.ok()?;
    key.keep_nonce(&again);
    Some(again)
}

/// A DPoP login of `username`: its key and the bound session's refresh cookie.
async fn dpop_login(http: &reqwest::Client, base: &str, issuer: &str, username: &str) -> anyhow::Result<DpopSession> {
    let mut key = DpopKey::new()?;
    let url = format!("{issuer}/auth/login");
    let body = serde_json::json!({"username": username, "password": PASSWORD});
    let resp = with_proof(&mut key, &url, |proof| {
        http.post(format!("{base}/auth/login")).header("x-requested-with", "latchkey").header("dpop", proof).json(&body)
    })
    .await
    .context("seeding: DPoP login did not answer")?;
    if resp.status() != 200 {
        bail!("seeding: DPoP login returned {}", resp.status());
    }
    let refresh_token = cookie_of(resp.headers()).context("seeding: DPoP login set no cookie")?;
    Ok(DpopSession { key, refresh_token })
}

/// A browser signed in at the hosted pages: its cookies, and a sign-in it left open.
struct BrowserState {
    cookies: String,
    open_sign_in: String,
}

/// The relying party the code-flow scenarios sign in to (first-party: no consent page).
pub const BENCH_RP: &str = "bench-rp";
pub const BENCH_RP_REDIRECT: &str = "https://bench.example/callback";
const VERIFIER: &str = "bench-code-verifier-0123456789-0123456789-abcdef";

/// Whose HTTP API the load speaks.
#[derive(Clone)]
pub enum Flavor {
    Latchkey,
    /// A peer's OAuth endpoints (`--peer`).
    Peer(Arc<Endpoints>),
}

#[derive(Clone)]
pub struct Fixture {
    base: String,
    http: reqwest::Client,
    accounts: Vec<Arc<Mutex<Account>>>,
    client: Option<(String, String)>,
    flavor: Flavor,
    /// The authorization request every code-flow sign-in sends (its query).
    authorize_query: String,
    /// The origin of the server's pages, as a browser's WebAuthn answers name it.
    origin: String,
    /// The issuer URL: DPoP proofs name URLs under it.
    issuer: String,
}

impl Fixture {
    /// Registers and logs in one user per connection (through the API, like real users).
    pub async fn seed(base: &str, concurrency: usize, client: Option<(String, String)>) -> anyhow::Result<Self> {
        Self::seed_with(base, concurrency, client, false).await
    }

    /// [`Self::seed`]; with `code_flow` (the bench's own server), each account also signs
    /// in once at the hosted pages (the [`BENCH_RP`] client must exist), leaves a second
    /// sign-in open, and registers a passkey.
    pub async fn seed_with(
        base: &str,
        concurrency: usize,
        client: Option<(String, String)>,
        code_flow: bool,
    ) -> anyhow::Result<Self> {
        let http = load_client(concurrency)?;
        let authorize_query = authorize_query();
        let issuer = issuer_of(&http, base).await?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut accounts = Vec::new();
        for i in 0..concurrency {
            let username = format!("bench-{}-{i}", &run[..8]);
            let resp = http
                .post(format!("{base}/auth/register"))
                .json(&serde_json::json!({"username": username, "password": PASSWORD}))
                .send()
                .await?;
            if resp.status() != 201 {
                bail!("seeding: register returned {} (is registration enabled?)", resp.status());
            }
            let (refresh_token, access_token) =
                login(&http, base, &username).await?.context("seeding: login failed")?;
            let (browser, passkey) = match code_flow {
                true => (
                    Some(sign_in_browser(&http, base, &authorize_query, &username).await?),
                    Some(register_passkey(&http, base, &access_token).await?),
                ),
                false => (None, None),
            };
            let dpop = Some(dpop_login(&http, base, &issuer, &username).await?);
            accounts.push(Arc::new(Mutex::new(Account {
                username,
                refresh_token,
                access_token,
                browser,
                passkey,
                dpop,
            })));
        }
        let origin = url::Url::parse(&issuer)?.origin().ascii_serialization();
        Ok(Self {
            base: base.to_string(),
            http,
            accounts,
            client,
            flavor: Flavor::Latchkey,
            authorize_query,
            origin,
            issuer,
        })
    }

    /// The peer's fixture: its service client and the refresh tokens it minted.
    pub fn peer(peer: &crate::peer::Peer, concurrency: usize) -> anyhow::Result<Self> {
        let http = load_client(concurrency)?;
        let accounts = peer
            .refresh_tokens
            .iter()
            .map(|token| {
                Arc::new(Mutex::new(Account {
                    username: String::new(),
                    refresh_token: token.clone(),
                    access_token: String::new(),
                    browser: None,
                    passkey: None,
                    dpop: None,
                }))
            })
            .collect();
        Ok(Self {
            base: String::new(),
            http,
            accounts,
            client: Some(peer.endpoints.service.clone()),
            flavor: Flavor::Peer(Arc::new(peer.endpoints.clone())),
            origin: String::new(),
            authorize_query: String::new(),
            issuer: String::new(),
        })
    }
}

/// The load generator's HTTP client. A request that takes longer than the time-out counts
/// as an error, so a server that stops answering fails the run instead of hanging it.
/// Redirects are the scenarios' to follow (the code flow reads them).
fn load_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The code-flow scenarios' authorization request: PKCE S256 over [`VERIFIER`].
fn authorize_query() -> String {
    use base64::Engine;
    use sha2::Digest;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER));
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.extend_pairs([
        ("response_type", "code"),
        ("client_id", BENCH_RP),
        ("redirect_uri", BENCH_RP_REDIRECT),
        ("scope", "openid profile"),
        ("state", "bench"),
        ("nonce", "bench"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    query.finish()
}

/// `name=value` of each cookie a response sets, appended to `jar` (a `Cookie` header).
fn keep_cookies(jar: &mut String, headers: &reqwest::header::HeaderMap) {
    for value in headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
        let pair = value.split(';').next().unwrap_or_default();
        if !jar.is_empty() {
            jar.push_str("; ");
        }
        jar.push_str(pair);
    }
}

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers().get("location")?.to_str().ok().map(str::to_string)
}

/// A hidden form field's value in a page.
fn hidden(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    Some(page[start..start + page[start..].find('"')?].to_string())
}

/// Signs `username` in at the hosted pages like a browser (its SSO cookie kept), then
/// starts a second sign-in without the SSO cookie and leaves it open on its page.
async fn sign_in_browser(
    http: &reqwest::Client,
    base: &str,
    authorize_query: &str,
    username: &str,
) -> anyhow::Result<BrowserState> {
    let mut cookies = String::new();
    let resp = http.get(format!("{base}/oauth2/authorize?{authorize_query}")).send().await?;
    keep_cookies(&mut cookies, resp.headers());
    let page_path = location(&resp).context("seeding: authorize did not redirect to the sign-in page")?;
    let page = http.get(format!("{base}{page_path}")).header("cookie", &cookies).send().await?.text().await?;
    let (interaction, csrf) = hidden(&page, "interaction").zip(hidden(&page, "csrf_token")).context("sign-in page")?;
    let form =
        [("interaction", interaction.as_str()), ("csrf_token", &csrf), ("username", username), ("password", PASSWORD)];
    let resp = http.post(format!("{base}/ui/signin")).header("cookie", &cookies).form(&form).send().await?;
    keep_cookies(&mut cookies, resp.headers());
    if !location(&resp).is_some_and(|to| to.starts_with(BENCH_RP_REDIRECT)) {
        bail!("seeding: the sign-in did not end at the relying party ({})", resp.status());
    }
    // The open sign-in: prompt=login asks for the password again, in this browser.
    let resp = http
        .get(format!("{base}/oauth2/authorize?{authorize_query}&prompt=login"))
        .header("cookie", &cookies)
        .send()
        .await?;
    let open_sign_in = format!("{base}{}", location(&resp).context("seeding: no second sign-in")?);
    Ok(BrowserState { cookies, open_sign_in })
}

/// One sign-in at the relying party with the browser's session: authorize → code →
/// exchange; true when the answer has an id_token.
async fn code_flow(fixture: &Fixture, account: &Mutex<Account>) -> bool {
    let (base, http) = (&fixture.base, &fixture.http);
    let cookies = match &account.lock().await.browser {
        Some(browser) => browser.cookies.clone(),
        None => return false,
    };
    let url = format!("{base}/oauth2/authorize?{}", fixture.authorize_query);
    let Ok(resp) = http.get(url).header("cookie", cookies).send().await else { return false };
    let Some(code) = location(&resp).and_then(|to| {
        url::Url::parse(&to).ok()?.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned())
    }) else {
        return false;
    };
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", BENCH_RP_REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", BENCH_RP),
    ];
    let Ok(resp) = http.post(format!("{base}/oauth2/token")).form(&form).send().await else { return false };
    resp.status() == 200 && resp.json::<serde_json::Value>().await.is_ok_and(|b| b["id_token"].is_string())
}

async fn login(http: &reqwest::Client, base: &str, username: &str) -> anyhow::Result<Option<(String, String)>> {
    let resp = http
        .post(format!("{base}/auth/login"))
        .header("x-requested-with", "latchkey")
        .json(&serde_json::json!({"username": username, "password": PASSWORD}))
        .send()
        .await?;
    if resp.status() != 200 {
        return Ok(None);
    }
    let cookie = cookie_of(resp.headers());
    let body: serde_json::Value = resp.json().await?;
    Ok(cookie.zip(body["access_token"].as_str().map(str::to_string)))
}

fn cookie_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers.get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let value = v.strip_prefix("lk_refresh=")?.split(';').next()?;
        (!value.is_empty()).then(|| value.to_string())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Login,
    Refresh,
    ClientCredentials,
    Me,
    Jwks,
    CodeFlow,
    SignInPage,
    Passkey,
    DpopClientCredentials,
    DpopRefresh,
}

/// One refresh at a peer's token endpoint. A reply carrying an id_token counts as an
/// error: it would compare unequal work (Latchkey signs one token per refresh).
async fn peer_refresh(http: &reqwest::Client, peer: &Endpoints, account: &Mutex<Account>) -> bool {
    let mut account = account.lock().await;
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", account.refresh_token.as_str())];
    if let Some(scope) = &peer.refresh_scope {
        form.push(("scope", scope));
    }
    let request = match &peer.refresh_client {
        RefreshClient::Confidential { id, secret } => http.post(&peer.token_url).basic_auth(id, Some(secret)),
        RefreshClient::Public { id } => {
            form.push(("client_id", id));
            http.post(&peer.token_url)
        }
    };
    let Ok(resp) = request.form(&form).send().await else { return false };
    if resp.status() != 200 {
        return false;
    }
    let Ok(body) = resp.json::<serde_json::Value>().await else { return false };
    if body.get("id_token").is_some() {
        return false;
    }
    match (body["refresh_token"].as_str(), body["access_token"].as_str()) {
        (Some(refresh), Some(access)) => {
            account.refresh_token = refresh.to_string();
            account.access_token = access.to_string();
            true
        }
        _ => false,
    }
}

/// One request; true on the expected success status.
async fn step(fixture: &Fixture, account: &Mutex<Account>, op: Op) -> bool {
    let base = &fixture.base;
    let http = &fixture.http;
    let peer = match &fixture.flavor {
        Flavor::Latchkey => None,
        Flavor::Peer(endpoints) => Some(endpoints.as_ref()),
    };
    if let Some(peer) = peer
        && op == Op::Refresh
    {
        return peer_refresh(http, peer, account).await;
    }
    match op {
        // The peer runs only the scenarios both servers have.
        Op::Me
        | Op::Login
        | Op::CodeFlow
        | Op::SignInPage
        | Op::Passkey
        | Op::DpopClientCredentials
        | Op::DpopRefresh
            if peer.is_some() =>
        {
            false
        }
        Op::DpopClientCredentials => {
            let Some((id, secret)) = &fixture.client else { return false };
            let mut account = account.lock().await;
            let Some(session) = account.dpop.as_mut() else { return false };
            let url = format!("{}/oauth2/token", fixture.issuer);
            let resp = with_proof(&mut session.key, &url, |proof| {
                http.post(format!("{base}/oauth2/token"))
                    .basic_auth(id, Some(secret))
                    .header("dpop", proof)
                    .form(&[("grant_type", "client_credentials")])
            })
            .await;
            match resp {
                Some(resp) if resp.status() == 200 => {
                    resp.json::<serde_json::Value>().await.is_ok_and(|body| body["token_type"] == "DPoP")
                }
                _ => false,
            }
        }
        Op::DpopRefresh => {
            let mut account = account.lock().await;
            let Some(session) = account.dpop.as_mut() else { return false };
            let url = format!("{}/auth/refresh", fixture.issuer);
            let cookie = format!("lk_refresh={}", session.refresh_token);
            let resp = with_proof(&mut session.key, &url, |proof| {
                http.post(format!("{base}/auth/refresh"))
                    .header("x-requested-with", "latchkey")
                    .header("cookie", &cookie)
                    .header("dpop", proof)
            })
            .await;
            let Some(resp) = resp.filter(|r| r.status() == 200) else { return false };
            match cookie_of(resp.headers()) {
                Some(rotated) => session.refresh_token = rotated,
                None => return false,
            }
            resp.json::<serde_json::Value>().await.is_ok_and(|body| body["token_type"] == "DPoP")
        }
        Op::Passkey => passkey_sign_in(fixture, account).await.is_ok_and(|signed_in| signed_in),
        Op::CodeFlow => code_flow(fixture, account).await,
        Op::SignInPage => {
            let (url, cookies) = match &account.lock().await.browser {
                Some(browser) => (browser.open_sign_in.clone(), browser.cookies.clone()),
                None => return false,
            };
            http.get(url).header("cookie", cookies).send().await.is_ok_and(|r| r.status() == 200)
        }
        Op::Jwks => {
            let resp = match peer {
                Some(peer) => http.get(&peer.jwks_url),
                None => http.get(format!("{base}/.well-known/jwks.json")),
            };
            resp.send().await.is_ok_and(|r| r.status() == 200)
        }
        Op::Me => {
            let token = account.lock().await.access_token.clone();
            http.get(format!("{base}/auth/me")).bearer_auth(token).send().await.is_ok_and(|r| r.status() == 200)
        }
        Op::ClientCredentials => {
            let Some((id, secret)) = &fixture.client else { return false };
            let request = match peer {
                Some(peer) => http.post(&peer.token_url),
                None => http.post(format!("{base}/oauth2/token")),
            };
            request
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
        Op::Refresh => {
            let mut account = account.lock().await;
            let resp = http
                .post(format!("{base}/auth/refresh"))
                .header("x-requested-with", "latchkey")
                .header("cookie", format!("lk_refresh={}", account.refresh_token))
                .send()
                .await;
            let Ok(resp) = resp else { return false };
            if resp.status() != 200 {
                return false;
            }
            match cookie_of(resp.headers()) {
                Some(cookie) => account.refresh_token = cookie,
                None => return false,
            }
            match resp.json::<serde_json::Value>().await {
                Ok(body) => {
                    if let Some(token) = body["access_token"].as_str() {
                        account.access_token = token.to_string();
                    }
                    true
                }
                Err(_) => false,
            }
        }
        Op::Login => {
            let username = account.lock().await.username.clone();
            login(http, base, &username).await.is_ok_and(|r| r.is_some())
        }
    }
}

/// Registers a software passkey for the user of `access_token`.
async fn register_passkey(
    http: &reqwest::Client,
    base: &str,
    access_token: &str,
) -> anyhow::Result<latchkey_softpasskey::SoftPasskey> {
    let origin = issuer_origin(http, base).await?;
    let started: serde_json::Value = http
        .post(format!("{base}/auth/webauthn/register/start"))
        .bearer_auth(access_token)
        .json(&serde_json::json!({ "password": PASSWORD }))
        .send()
        .await?
        .error_for_status()
        .context("seeding: passkey registration start (is public_url on a domain?)")?
        .json()
        .await?;
    let answer = latchkey_softpasskey::Answer::at(&origin);
    let (passkey, credential) = latchkey_softpasskey::SoftPasskey::register(&started["options"], &answer, false)?;
    let body = serde_json::json!({ "ceremony_id": started["ceremony_id"], "name": "bench", "credential": credential });
    let resp =
        http.post(format!("{base}/auth/webauthn/register/finish")).bearer_auth(access_token).json(&body).send().await?;
    if resp.status() != 201 {
        bail!("seeding: passkey registration returned {}", resp.status());
    }
    Ok(passkey)
}

/// The origin of the issuer the discovery document names.
async fn issuer_origin(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    Ok(url::Url::parse(&issuer_of(http, base).await?)?.origin().ascii_serialization())
}

/// The issuer the discovery document names.
async fn issuer_of(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let discovery: serde_json::Value =
        http.get(format!("{base}/.well-known/openid-configuration")).send().await?.json().await?;
    Ok(discovery["issuer"].as_str().context("no issuer in the discovery document")?.to_string())
}

/// One usernameless passkey sign-in: start, sign, finish; true when tokens came back.
async fn passkey_sign_in(fixture: &Fixture, account: &Mutex<Account>) -> anyhow::Result<bool> {
    let base = &fixture.base;
    let started: serde_json::Value = fixture
        .http
        .post(format!("{base}/auth/webauthn/login/start"))
        .header("x-requested-with", "latchkey")
        .json(&serde_json::json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let credential = {
        let mut account = account.lock().await;
        let Some(passkey) = account.passkey.as_mut() else { return Ok(false) };
        passkey.sign_in(&started["options"], &latchkey_softpasskey::Answer::at(&fixture.origin))?
    };
    let body = serde_json::json!({ "ceremony_id": started["ceremony_id"], "credential": credential });
    let resp = fixture
        .http
        .post(format!("{base}/auth/webauthn/login/finish"))
        .header("x-requested-with", "latchkey")
        .json(&body)
        .send()
        .await?;
    Ok(resp.status() == 200)
}

/// Chooses the operation for a connection's n-th request.
type Picker = Arc<dyn Fn(u64) -> Op + Send + Sync>;
/// A connection: which account it uses and what it sends.
type Worker = (usize, Picker);

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub requests: u64,
    pub errors: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Server CPU over the window, in % of one core.
    pub server_cpu_pct: Option<f64>,
    pub server_peak_rss_mib: Option<f64>,
    /// The ceiling that bounds this scenario (measured just before it ran), and our
    /// rate as a fraction of it.
    pub bound: Option<String>,
    pub bound_per_sec: Option<f64>,
    pub ratio_to_bound: Option<f64>,
}

struct Tally {
    hist: Histogram<u64>,
    errors: u64,
}

impl Tally {
    fn new() -> Self {
        Self { hist: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!()), errors: 0 }
    }
}

/// Per-op tallies from one worker: index 0 is all ops, then one per op kind of interest.
type Tallies = Vec<(Op, Tally)>;

/// Runs workers for `warmup + window`; only requests started after the warm-up count.
async fn drive(
    fixture: &Arc<Fixture>,
    workers: Vec<Worker>,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<(Tallies, Duration)> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let deadline = measure_from + window;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|(account_index, pick)| {
            let fixture = fixture.clone();
            tokio::spawn(async move {
                let account = fixture.accounts[account_index % fixture.accounts.len()].clone();
                let mut tallies: Tallies = Vec::new();
                let mut n = 0u64;
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let op = pick(n);
                    n += 1;
                    let ok = step(&fixture, &account, op).await;
                    let finished = Instant::now();
                    // Every error counts, warm-up included; a success counts towards the
                    // rate only when it started and finished inside the window.
                    let in_window = now >= measure_from && finished <= deadline;
                    if !ok || in_window {
                        let tally = match tallies.iter_mut().find(|(o, _)| *o == op) {
                            Some((_, t)) => t,
                            None => {
                                tallies.push((op, Tally::new()));
                                &mut tallies.last_mut().unwrap_or_else(|| unreachable!()).1
                            }
                        };
                        if ok {
                            let micros = (finished - now).as_micros() as u64;
                            let _ = tally.hist.record(micros.max(1));
                        } else {
                            tally.errors += 1;
                        }
                    }
                }
                tallies
            })
        })
        .collect();
    let mut merged: Tallies = Vec::new();
    for task in tasks {
        // A worker that panicked lost its tallies: the run cannot be reported as measured.
        let tallies = task.await.map_err(|e| anyhow::anyhow!("a load worker failed: {e}"))?;
        for (op, tally) in tallies {
            match merged.iter_mut().find(|(o, _)| *o == op) {
                Some((_, m)) => {
                    let _ = m.hist.add(&tally.hist);
                    m.errors += tally.errors;
                }
                None => merged.push((op, tally)),
            }
        }
    }
    Ok((merged, window))
}

fn outcome(name: &str, tallies: &[&Tally], window: Duration, cpu: Option<f64>, rss: Option<f64>) -> Outcome {
    let mut hist = Tally::new().hist;
    let mut errors = 0;
    for t in tallies {
        let _ = hist.add(&t.hist);
        errors += t.errors;
    }
    let requests = hist.len() + errors;
    Outcome {
        scenario: name.to_string(),
        requests,
        errors,
        per_sec: hist.len() as f64 / window.as_secs_f64(),
        p50_ms: hist.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        server_cpu_pct: cpu,
        server_peak_rss_mib: rss,
        bound: None,
        bound_per_sec: None,
        ratio_to_bound: None,
    }
}

fn constant(op: Op) -> Picker {
    Arc::new(move |_| op)
}

pub async fn run_scenario(
    scenario: Scenario,
    fixture: &Fixture,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
    pid: Option<u32>,
) -> anyhow::Result<Vec<Outcome>> {
    // Shared by the workers; the accounts inside are shared with the caller's fixture.
    let fixture = Arc::new(fixture.clone());
    let signed_in = fixture.accounts.first().is_some_and(|a| a.try_lock().is_ok_and(|a| a.browser.is_some()));
    if matches!(scenario, Scenario::CodeFlow | Scenario::SignInPage | Scenario::Passkey) && !signed_in {
        println!("  skipped: no relying party to sign in to (the bench starts its own server for it)");
        return Err(Skipped("the code-flow scenarios need the bench's own server").into());
    }
    let has_dpop = fixture.accounts.first().is_some_and(|a| a.try_lock().is_ok_and(|a| a.dpop.is_some()));
    if matches!(scenario, Scenario::DpopClientCredentials | Scenario::DpopRefresh) && !has_dpop {
        println!("  skipped: DPoP scenarios run against Latchkey only");
        return Err(Skipped("the DPoP scenarios need a Latchkey").into());
    }
    if matches!(scenario, Scenario::ClientCredentials | Scenario::DpopClientCredentials) && fixture.client.is_none() {
        println!("  skipped: no confidential client (pass --client-id/--client-secret with --target)");
        return Err(Skipped("client-credentials needs a confidential client (--client-id/--client-secret)").into());
    }
    let workers: Vec<Worker> = match scenario {
        Scenario::Login => (0..concurrency).map(|i| (i, constant(Op::Login))).collect(),
        Scenario::Refresh => (0..concurrency).map(|i| (i, constant(Op::Refresh))).collect(),
        Scenario::ClientCredentials => (0..concurrency).map(|i| (i, constant(Op::ClientCredentials))).collect(),
        Scenario::Me => (0..concurrency).map(|i| (i, constant(Op::Me))).collect(),
        Scenario::Jwks => (0..concurrency).map(|i| (i, constant(Op::Jwks))).collect(),
        Scenario::CodeFlow => (0..concurrency).map(|i| (i, constant(Op::CodeFlow))).collect(),
        Scenario::SignInPage => (0..concurrency).map(|i| (i, constant(Op::SignInPage))).collect(),
        Scenario::Passkey => (0..concurrency).map(|i| (i, constant(Op::Passkey))).collect(),
        Scenario::DpopClientCredentials => (0..concurrency).map(|i| (i, constant(Op::DpopClientCredentials))).collect(),
        Scenario::DpopRefresh => (0..concurrency).map(|i| (i, constant(Op::DpopRefresh))).collect(),
        Scenario::Mixed => {
            // 1 login : 20 refresh : 200 me, interleaved on every connection.
            let pick: Picker = Arc::new(|n| match n % 221 {
                0 => Op::Login,
                1..=20 => Op::Refresh,
                _ => Op::Me,
            });
            (0..concurrency).map(|i| (i, pick.clone())).collect()
        }
    };
    let cpu_before = pid.map(server::cpu_seconds);
    if let Some(pid) = pid {
        server::reset_peak_rss(pid);
    }
    let page_before = match scenario {
        Scenario::SignInPage => Some(server_latency(&fixture, SIGN_IN_ROUTE).await?),
        _ => None,
    };
    let started = Instant::now();
    let (tallies, window) = drive(&fixture, workers, warmup, window).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = pid.zip(cpu_before).map(|(pid, before)| (server::cpu_seconds(pid) - before) / elapsed * 100.0);
    let rss = pid.map(|pid| server::memory_mib(pid).1);
    let all: Vec<&Tally> = tallies.iter().map(|(_, t)| t).collect();
    let name = scenario.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    let mut outcomes = vec![outcome(&name, &all, window, cpu, rss)];
    if scenario == Scenario::Mixed {
        if let Some((_, me)) = tallies.iter().find(|(op, _)| *op == Op::Me) {
            outcomes.push(outcome("mixed: me only", &[me], window, None, None));
        }
        outcomes.extend(me_while_logins_saturate(&fixture, concurrency, warmup, window, pid).await?);
    }
    if let Some(before) = page_before {
        let after = server_latency(&fixture, SIGN_IN_ROUTE).await?;
        if after.is_empty() {
            bail!("the server's /metrics has no request-duration histogram for GET {SIGN_IN_ROUTE}");
        }
        outcomes.push(server_side_outcome("sign-in page, server", &before, &after, started.elapsed()));
    }
    Ok(outcomes)
}

/// The hosted sign-in page's route in the server's request-duration histogram.
const SIGN_IN_ROUTE: &str = "/ui/signin";

/// The server's own request-duration histogram of `GET route`: cumulative counts by
/// upper bound (seconds), from its `/metrics`. The client's latency at 32 connections
/// on two shared cores is mostly waiting for a core (Little's law: the mean time in
/// the system is connections ÷ rate); the server's histogram measures what the page
/// itself costs under the same load, from the moment the request is read to the
/// response.
async fn server_latency(fixture: &Fixture, route: &str) -> anyhow::Result<Vec<(f64, u64)>> {
    let text = fixture.http.get(format!("{}/metrics", fixture.base)).send().await?.error_for_status()?.text().await?;
    let series = format!("latchkey_http_request_duration_seconds_bucket{{method=\"GET\",route=\"{route}\",le=\"");
    let mut buckets = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&series) else { continue };
        let Some((le, count)) = rest.split_once("\"} ") else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().context("a histogram bound")? };
        buckets.push((le, count.trim().parse().context("a histogram count")?));
    }
    Ok(buckets)
}

/// The smallest bucket bound (ms) holding `quantile` of the requests between two scrapes.
fn bucket_quantile_ms(before: &[(f64, u64)], after: &[(f64, u64)], quantile: f64) -> f64 {
    let delta = |le: f64, count: u64| count - before.iter().find(|(b, _)| *b == le).map_or(0, |(_, c)| *c);
    let total = after.last().map_or(0, |&(le, count)| delta(le, count));
    if total == 0 {
        return f64::NAN;
    }
    after
        .iter()
        .find(|&&(le, count)| delta(le, count) as f64 >= quantile * total as f64)
        .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
}

/// A row from the server's histogram: its quantiles are bucket bounds (an upper bound
/// on the true value), its rate the requests the server answered in `elapsed` (warm-up
/// included, whatever their status: the client's row counts the errors).
fn server_side_outcome(name: &str, before: &[(f64, u64)], after: &[(f64, u64)], elapsed: Duration) -> Outcome {
    let count = after.last().map_or(0, |a| a.1) - before.last().map_or(0, |b| b.1);
    Outcome {
        scenario: name.to_string(),
        requests: count,
        errors: 0,
        per_sec: count as f64 / elapsed.as_secs_f64(),
        p50_ms: bucket_quantile_ms(before, after, 0.50),
        p99_ms: bucket_quantile_ms(before, after, 0.99),
        server_cpu_pct: None,
        server_peak_rss_mib: None,
        bound: None,
        bound_per_sec: None,
        ratio_to_bound: None,
    }
}

/// A scenario that could not run against this target; `--smoke` treats it as a failure.
#[derive(Debug, thiserror::Error)]
#[error("scenario skipped: {0}")]
pub struct Skipped(pub &'static str);

/// `me` latency while enough logins run to keep every Argon2 slot busy.
async fn me_while_logins_saturate(
    fixture: &Arc<Fixture>,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
    pid: Option<u32>,
) -> anyhow::Result<Vec<Outcome>> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let login_workers = cores * 4;
    let mut workers: Vec<Worker> = (0..login_workers).map(|i| (i, constant(Op::Login))).collect();
    workers.extend((0..concurrency.min(8)).map(|i| (i + login_workers, constant(Op::Me))));
    let cpu_before = pid.map(server::cpu_seconds);
    let started = Instant::now();
    let (tallies, window) = drive(fixture, workers, warmup, window).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = pid.zip(cpu_before).map(|(pid, before)| (server::cpu_seconds(pid) - before) / elapsed * 100.0);
    let rss = pid.map(|pid| server::memory_mib(pid).1);
    let mut out = Vec::new();
    if let Some((_, logins)) = tallies.iter().find(|(op, _)| *op == Op::Login) {
        out.push(outcome("saturating logins", &[logins], window, cpu, rss));
    }
    if let Some((_, me)) = tallies.iter().find(|(op, _)| *op == Op::Me) {
        out.push(outcome("me while logins saturate", &[me], window, None, None));
    }
    Ok(out)
}

/// Prints the table: each row beside the ceiling measured just before it ran.
pub fn print_table(outcomes: &[Outcome]) {
    println!();
    println!(
        "{:<26} {:>9} {:>8} {:>8} {:>7} {:>8} {:>9}  {:<32} {:>6}",
        "scenario",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "srv CPU",
        "peak RSS",
        "bound (measured just before)",
        "ratio"
    );
    for o in outcomes {
        println!(
            "{:<26} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>8} {:>9}  {:<32} {:>6}",
            o.scenario,
            o.per_sec,
            o.p50_ms,
            o.p99_ms,
            o.errors,
            o.server_cpu_pct.map_or("-".into(), |c| format!("{c:.0}%")),
            o.server_peak_rss_mib.map_or("-".into(), |r| format!("{r:.1} MiB")),
            o.bound.as_deref().unwrap_or("HTTP stack"),
            o.ratio_to_bound.map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
        );
    }
}

/// DPoP's price beside the same grant without it, in the same run: each DPoP row's rate
/// as a fraction of its bearer twin's (the target: at least 85%).
pub fn print_dpop_overhead(outcomes: &[Outcome], ceilings: &crate::ceilings::Ceilings) {
    let rate = |name: &str| outcomes.iter().find(|o| o.scenario == name).map(|o| o.per_sec);
    // What a proof costs at the least: the client's ES256 signature (the load generator
    // shares these cores) and the server's verification, in CPU-seconds.
    let proof_cpu = 1.0 / ceilings.es256_sign_per_sec.one_core + 1.0 / ceilings.es256_verify_per_sec.one_core;
    for (bearer, dpop) in [("client-credentials", "dpop-client-credentials"), ("refresh", "dpop-refresh")] {
        if let (Some(plain), Some(bound)) = (rate(bearer), rate(dpop)) {
            // The bearer request's CPU on this machine, plus the proof's signatures only.
            let floor = ceilings.cores as f64 / (ceilings.cores as f64 / plain + proof_cpu);
            println!(
                "DPoP: {dpop} {bound:.0}/s = {:.0}% of {bearer} {plain:.0}/s (overhead {:.0}%; the proof's \
                 ES256 signature and verification alone cap it at {floor:.0}/s here, overhead {:.0}%)",
                bound / plain * 100.0,
                (1.0 - bound / plain) * 100.0,
                (1.0 - floor / plain) * 100.0,
            );
        }
    }
}

/// The ceilings a scenario's rows are compared with.
pub fn bounds_of(scenario: Scenario) -> &'static [Bound] {
    match scenario {
        Scenario::Jwks => &[],
        Scenario::Me => &[Bound::Verify],
        Scenario::ClientCredentials | Scenario::Refresh => &[Bound::Sign],
        Scenario::DpopClientCredentials | Scenario::DpopRefresh => &[Bound::Sign],
        Scenario::Login => &[Bound::Argon2],
        Scenario::Mixed => &[Bound::Verify, Bound::Argon2],
        Scenario::CodeFlow => &[Bound::Sign],
        Scenario::SignInPage => &[],
        Scenario::Passkey => &[Bound::Sign],
    }
}

/// Signatures one operation of a row costs (a code exchange signs two tokens).
fn signatures_per_op(row: &str) -> f64 {
    if row.starts_with("code-flow") { 2.0 } else { 1.0 }
}

/// The ceiling bounding a result row (scale rows, "refresh @ 1000 users", like their scenario).
fn bound_of_row(row: &str) -> Option<Bound> {
    match row.split(" @ ").next().unwrap_or(row) {
        "login" | "saturating logins" => Some(Bound::Argon2),
        "refresh" | "client-credentials" | "code-flow" | "passkey" | "dpop-refresh" | "dpop-client-credentials" => {
            Some(Bound::Sign)
        }
        "me" | "mixed: me only" => Some(Bound::Verify),
        _ => None,
    }
}

/// Labels each row with its ceiling from `measured` and its rate as a fraction of it.
pub fn attach_bounds(outcomes: &mut [Outcome], measured: &[(Bound, f64)], cores: usize) {
    for outcome in outcomes {
        let Some(bound) = bound_of_row(&outcome.scenario) else { continue };
        let Some(&(_, signatures)) = measured.iter().find(|(b, _)| *b == bound) else { continue };
        let per_op = signatures_per_op(&outcome.scenario);
        let per_sec = signatures / per_op;
        let name = match bound {
            Bound::Sign if per_op > 1.0 => "RS256 sign ÷ 2",
            Bound::Sign => "RS256 sign",
            Bound::Verify => "RS256 verify",
            Bound::ProofSign => "ES256 sign",
            Bound::ProofVerify => "ES256 verify",
            Bound::Argon2 => "Argon2id",
        };
        outcome.bound = Some(format!("{name} {per_sec:.0}/s ({cores} cores)"));
        outcome.bound_per_sec = Some(per_sec);
        outcome.ratio_to_bound = Some(outcome.per_sec / per_sec);
    }
}
