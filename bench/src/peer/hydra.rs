//! `--peer hydra`: Ory Hydra v2.3.0, built by `bench/peer/hydra/build.sh` from the wrapper
//! module beside it (cached under ~/.cache), migrated with `hydra migrate sql` on a database
//! of its own on the run's PostgreSQL, then `hydra serve all` on loopback with JWT access
//! tokens (`strategies.access_token: jwt`). The bench creates the clients over the admin
//! API, gives the access-token key set a 2048-bit RSA key (Hydra would generate 4096-bit
//! ones; Latchkey signs with 2048), and mints each refresh token through the
//! authorization-code flow, accepting the login and consent requests over the admin API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_lc_rs::encoding::AsDer;
use base64::Engine as _;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use super::{
    Context, Endpoints, Peer, PeerKind, PeerProcess, RefreshClient, Startup, free_port, prepare, setup_client,
};
use crate::postgres::Database;

const SERVICE_ID: &str = "bench-svc";
const WEB_ID: &str = "bench-web";
/// Never visited: the bench reads the challenge from the redirect and accepts it itself.
const LOGIN_URL: &str = "http://127.0.0.1:9/login";
const CONSENT_URL: &str = "http://127.0.0.1:9/consent";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const ACCESS_TOKEN_KEYS: &str = "hydra.jwt.access-token";

const NOTE: &str = "Hydra checks each client secret against a PBKDF2-SHA256 hash (25,000 iterations, its \
default; Latchkey's generated secrets are stored as SHA-256), stores every token's session in PostgreSQL (the \
JWT access tokens' too) and reads its signing key from the database for each token; a 2048-bit RSA key was \
imported for its access tokens (it generates 4096-bit ones); four database connections per load connection \
(a smaller pool deadlocks), Latchkey 16";

fn binary() -> anyhow::Result<PathBuf> {
    let out = prepare("hydra/build.sh")?;
    let path = out.lines().last().map(PathBuf::from).context("build.sh printed no path")?;
    if !path.is_file() {
        bail!("build.sh printed {}, which is not a file", path.display());
    }
    Ok(path)
}

/// The DSN Hydra takes: its own database, and a pool of four connections per connection
/// of the load. A token request holds one pooled connection in a transaction while it takes
/// another (the signing key is read outside the transaction), so a pool smaller than the
/// concurrent requests deadlocks: with 16 for 32 connections every connection sat idle in
/// a transaction and no request finished.
fn dsn(database: &Database, concurrency: usize) -> anyhow::Result<String> {
    let mut url = url::Url::parse(&database.url())?;
    let pool = (4 * concurrency).max(16).to_string();
    url.query_pairs_mut().append_pair("sslmode", "disable").append_pair("max_conns", &pool);
    Ok(url.to_string())
}

fn write_config(dir: &Path, public_port: u16, admin_port: u16) -> anyhow::Result<PathBuf> {
    let secret = uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string();
    let config = format!(
        "serve:\n  public: {{host: 127.0.0.1, port: {public_port}}}\n  admin: {{host: 127.0.0.1, port: {admin_port}}}\n\
         urls:\n  self: {{issuer: 'http://127.0.0.1:{public_port}/'}}\n  login: '{LOGIN_URL}'\n  consent: '{CONSENT_URL}'\n\
         secrets:\n  system: ['{secret}']\n\
         strategies:\n  access_token: jwt\n\
         ttl:\n  access_token: 15m\n  refresh_token: 336h\n\
         log:\n  level: warn\n"
    );
    let path = dir.join("hydra.yaml");
    std::fs::write(&path, config)?;
    Ok(path)
}

struct Instance {
    process: PeerProcess,
    public: String,
    admin: String,
}

async fn launch(ctx: &Context<'_>, binary: &Path, dsn: &str) -> anyhow::Result<(Instance, Duration)> {
    let (public_port, admin_port) = (free_port()?, free_port()?);
    let config = write_config(ctx.dir, public_port, admin_port)?;
    let mut command = Command::new(binary);
    // --dev: the issuer is plain HTTP on loopback.
    command.args(["serve", "all", "--dev", "--config"]).arg(&config).env("DSN", dsn);
    let started = Instant::now();
    let mut process = PeerProcess::spawn("hydra", command, &ctx.dir.join("hydra.log"))?;
    let admin = format!("http://127.0.0.1:{admin_port}");
    let public = format!("http://127.0.0.1:{public_port}");
    let http = setup_client()?;
    process.wait_ready(&http, &format!("{public}/health/ready"), Duration::from_secs(60)).await?;
    Ok((Instance { process, public, admin }, started.elapsed()))
}

fn migrate(binary: &Path, dsn: &str) -> anyhow::Result<()> {
    let out = Command::new(binary).args(["migrate", "sql", "--read-from-env", "--yes"]).env("DSN", dsn).output()?;
    if !out.status.success() {
        bail!("hydra migrate sql failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

async fn expect_json(resp: reqwest::Response, what: &str) -> anyhow::Result<serde_json::Value> {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.with_context(|| format!("{what}: not JSON"))?;
    if !status.is_success() {
        bail!("{what} answered {status}: {body}");
    }
    Ok(body)
}

/// Creates the two clients; returns the service client's secret and the web client's.
async fn create_clients(http: &reqwest::Client, admin: &str) -> anyhow::Result<(String, String)> {
    let service = serde_json::json!({
        "client_id": SERVICE_ID,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "api",
    });
    let web = serde_json::json!({
        "client_id": WEB_ID,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "offline_access api",
    });
    let mut secrets = Vec::new();
    for client in [service, web] {
        let body =
            expect_json(http.post(format!("{admin}/admin/clients")).json(&client).send().await?, "creating a client")
                .await?;
        secrets.push(body["client_secret"].as_str().context("no client_secret in Hydra's answer")?.to_string());
    }
    let web = secrets.pop().context("no web client")?;
    let service = secrets.pop().context("no service client")?;
    Ok((service, web))
}

/// Puts a 2048-bit RSA key in the access-token key set before Hydra generates its own.
fn import_signing_key(binary: &Path, dir: &Path, admin: &str) -> anyhow::Result<()> {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
    let der = pair.as_der().map_err(|_| anyhow::anyhow!("encoding the RSA key failed"))?;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
    let path = dir.join("hydra-access-token-key.pem");
    std::fs::write(&path, pem)?;
    let out = Command::new(binary)
        .args(["import", "jwk", ACCESS_TOKEN_KEYS])
        .arg(&path)
        .args(["--alg", "RS256", "--use", "sig", "--endpoint", admin])
        .output()?;
    if !out.status.success() {
        bail!("hydra import jwk failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A cookie jar for one browser walking the authorization-code flow.
#[derive(Default)]
struct Cookies(Vec<(String, String)>);

impl Cookies {
    fn take(&mut self, resp: &reqwest::Response) {
        for value in resp.headers().get_all(SET_COOKIE) {
            let Some(pair) = value.to_str().ok().and_then(|v| v.split(';').next()) else { continue };
            let Some((name, value)) = pair.split_once('=') else { continue };
            self.0.retain(|(n, _)| n != name);
            self.0.push((name.trim().to_string(), value.to_string()));
        }
    }

    fn header(&self) -> String {
        self.0.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
    }
}

/// GETs `url` as the browser; returns where it redirects to.
async fn follow(http: &reqwest::Client, cookies: &mut Cookies, url: &str) -> anyhow::Result<url::Url> {
    let resp = http.get(url).header(COOKIE, cookies.header()).send().await?;
    cookies.take(&resp);
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .with_context(|| format!("{url} answered {} without a redirect", resp.status()))?;
    Ok(url::Url::parse(url)?.join(location)?)
}

fn query(url: &url::Url, name: &str) -> anyhow::Result<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .with_context(|| format!("no {name} in {url}"))
}

/// Walks the authorization-code flow for `subject`: authorize, accept login and consent
/// over the admin API, exchange the code.
async fn mint_refresh_token(
    http: &reqwest::Client,
    instance: &Instance,
    web_secret: &str,
    subject: &str,
) -> anyhow::Result<String> {
    let mut cookies = Cookies::default();
    let state = uuid::Uuid::new_v4().simple().to_string();
    let mut authorize = url::Url::parse(&format!("{}/oauth2/auth", instance.public))?;
    authorize
        .query_pairs_mut()
        .append_pair("client_id", WEB_ID)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT_URI)
        // No `openid`: no id_token is signed, here or on refresh.
        .append_pair("scope", "offline_access api")
        .append_pair("state", &state);
    let login = follow(http, &mut cookies, authorize.as_str()).await?;
    let accepted = expect_json(
        http.put(format!("{}/admin/oauth2/auth/requests/login/accept", instance.admin))
            .query(&[("login_challenge", query(&login, "login_challenge")?)])
            .json(&serde_json::json!({"subject": subject, "remember": false}))
            .send()
            .await?,
        "accepting the login request",
    )
    .await?;
    let verifier = accepted["redirect_to"].as_str().context("no redirect_to after the login")?;
    let consent = follow(http, &mut cookies, verifier).await?;
    let accepted = expect_json(
        http.put(format!("{}/admin/oauth2/auth/requests/consent/accept", instance.admin))
            .query(&[("consent_challenge", query(&consent, "consent_challenge")?)])
            .json(&serde_json::json!({"grant_scope": ["offline_access", "api"], "remember": false}))
            .send()
            .await?,
        "accepting the consent request",
    )
    .await?;
    let verifier = accepted["redirect_to"].as_str().context("no redirect_to after the consent")?;
    let callback = follow(http, &mut cookies, verifier).await?;
    if !callback.as_str().starts_with(REDIRECT_URI) {
        bail!("the flow ended at {callback}, not at the client's redirect URI");
    }
    let tokens = expect_json(
        http.post(format!("{}/oauth2/token", instance.public))
            .basic_auth(WEB_ID, Some(web_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &query(&callback, "code")?),
                ("redirect_uri", REDIRECT_URI),
            ])
            .send()
            .await?,
        "exchanging the code",
    )
    .await?;
    Ok(tokens["refresh_token"].as_str().context("no refresh_token from the code exchange")?.to_string())
}

/// Checks that Hydra signs its access tokens with the imported 2048-bit key: one
/// client_credentials token, its `kid` looked up in the JWKS.
async fn check_signing_key(http: &reqwest::Client, instance: &Instance, service_secret: &str) -> anyhow::Result<()> {
    let tokens = expect_json(
        http.post(format!("{}/oauth2/token", instance.public))
            .basic_auth(SERVICE_ID, Some(service_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?,
        "client_credentials",
    )
    .await?;
    let token = tokens["access_token"].as_str().context("no access_token")?;
    let header = token.split('.').next().context("the access token is not a JWT")?;
    let header: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header)?)?;
    let kid = header["kid"].as_str().context("no kid in the access token")?;
    let jwks =
        expect_json(http.get(format!("{}/.well-known/jwks.json", instance.public)).send().await?, "JWKS").await?;
    let modulus = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .and_then(|k| k["n"].as_str())
        .with_context(|| format!("the JWKS has no key {kid}"))?;
    let bits = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(modulus)?.len() * 8;
    if header["alg"] != "RS256" || bits != 2048 {
        bail!("Hydra signs its access tokens with {} and a {bits}-bit key, not RS256 and 2048 bits", header["alg"]);
    }
    Ok(())
}

fn version(binary: &Path) -> String {
    let out = Command::new(binary).arg("version").output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let tag = text.lines().find_map(|l| l.trim().strip_prefix("Version:")).map(str::trim).unwrap_or("?");
    format!("Ory Hydra {tag} (Go {})", go_version())
}

fn go_version() -> String {
    Command::new("go")
        .arg("env")
        .arg("GOVERSION")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("go").to_string())
        .unwrap_or_else(|_| "?".into())
}

pub async fn start(ctx: &Context<'_>) -> anyhow::Result<Peer> {
    let postgres = ctx.postgres(PeerKind::Hydra)?;
    let binary = binary()?;
    let database = postgres.create_database("hydra_bench").await?;
    let dsn = dsn(&database, ctx.concurrency)?;
    let migrating = Instant::now();
    migrate(&binary, &dsn)?;
    let migrated = migrating.elapsed();
    let (first, first_ready) = launch(ctx, &binary, &dsn).await?;
    drop(first);
    let (instance, existing) = launch(ctx, &binary, &dsn).await?;
    let http = setup_client()?;
    let (service_secret, web_secret) = create_clients(&http, &instance.admin).await?;
    import_signing_key(&binary, ctx.dir, &instance.admin)?;
    check_signing_key(&http, &instance, &service_secret).await?;
    let mut refresh_tokens = Vec::with_capacity(ctx.concurrency);
    for i in 0..ctx.concurrency {
        refresh_tokens.push(mint_refresh_token(&http, &instance, &web_secret, &format!("bench-user-{i}")).await?);
    }
    Ok(Peer {
        version: version(&binary),
        note: NOTE,
        endpoints: Endpoints {
            token_url: format!("{}/oauth2/token", instance.public),
            jwks_url: format!("{}/.well-known/jwks.json", instance.public),
            service: (SERVICE_ID.into(), service_secret),
            refresh_client: RefreshClient::Confidential { id: WEB_ID.into(), secret: web_secret },
            refresh_scope: None,
        },
        refresh_tokens,
        startup: Startup { fresh: Some(migrated + first_ready), existing: Some(existing) },
        process: instance.process,
        database: Some(database),
    })
}
