//! Starts the real server in-process on 127.0.0.1:0 with a temporary SQLite file — or,
//! when `TEST_DATABASE_URL` names a PostgreSQL server, a fresh database created on it —
//! and a manual clock the test can move.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use latchkey_server::clock::ManualClock;
use latchkey_server::config::RawConfig;
use latchkey_server::state::AppState;
use reqwest::header::{HeaderMap, SET_COOKIE};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const SPA_ORIGIN: &str = "http://127.0.0.1:5173";
pub const PASSWORD: &str = "correct horse battery";

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Sending a request the way every test does: a request that cannot be sent, or a body
/// that is not the JSON expected, fails the test on the spot.
pub trait Fetch {
    /// Sends the request; the response, whatever its status.
    fn sent(self) -> impl std::future::Future<Output = reqwest::Response>;
    /// Sends the request and parses its JSON body, whatever the status.
    fn fetch_json<T: serde::de::DeserializeOwned>(self) -> impl std::future::Future<Output = T>;
}

impl Fetch for reqwest::RequestBuilder {
    async fn sent(self) -> reqwest::Response {
        self.send().await.expect("the request reaches the server")
    }

    async fn fetch_json<T: serde::de::DeserializeOwned>(self) -> T {
        self.sent().await.json().await.expect("a JSON body of the expected shape")
    }
}

/// Which engine this run tests, named in assertion messages.
pub fn backend() -> &'static str {
    if postgres_admin_url().is_some() { "postgres" } else { "sqlite" }
}

/// Fails a test whose prerequisite is missing. Such tests are `#[ignore]`d with the
/// reason, so a plain `cargo test` reports them as ignored; the passes that provide the
/// prerequisite run them with `--include-ignored`, and there a missing one is a failure,
/// never a silent pass.
pub fn missing_prerequisite(test: &str, what: &str) -> ! {
    panic!("{test} needs {what} (see .ci/run for how CI provides it)");
}

pub fn postgres_admin_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// A database URL for one test: a temp SQLite file, or a new PostgreSQL database.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match postgres_admin_url() {
        None => format!("sqlite://{}?mode=rwc", dir.join("latchkey.db").display()),
        Some(admin_url) => fresh_postgres_database(&admin_url).await,
    }
}

/// A database for server processes the test starts itself, in a fresh temporary
/// directory (which also holds their key files): (that directory, the database URL).
pub async fn database_for_nodes() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = fresh_database_url(dir.path()).await;
    (dir, url)
}

/// A new, empty database on the PostgreSQL server at `admin_url`.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    {
        {
            let name = format!(
                "latchkey_it_{}_{}_{}",
                std::process::id(),
                DB_COUNTER.fetch_add(1, Ordering::SeqCst),
                uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap()
            );
            let admin = Database::connect(admin_url).await.expect("connect to the PostgreSQL server");
            admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
            admin.close().await.ok();
            let mut url = url::Url::parse(admin_url).expect("a PostgreSQL URL");
            url.set_path(&format!("/{name}"));
            url.to_string()
        }
    }
}

/// Test configuration: cheap (but real) Argon2id so tests stay fast.
pub fn test_config(dir: &std::path::Path, database_url: String) -> RawConfig {
    let mut raw = RawConfig {
        listen: "127.0.0.1:0".into(),
        database_url: Some(database_url),
        master_key_file: dir.join("master.key"),
        cors_allowed_origins: vec![SPA_ORIGIN.into()],
        db_pool_size: 8,
        ..Default::default()
    };
    // Rate limits have their own tests; elsewhere they must not get in the way.
    let generous = latchkey_server::config::Quota::new(1_000_000, 100_000);
    set_ip_quotas(&mut raw, generous);
    raw.rate_limits.username = generous;
    raw.passwords.argon2_memory_kib = 1024;
    raw.passwords.argon2_iterations = 1;
    raw
}

/// Sets every per-IP bucket (not the per-username one) to `quota`.
pub fn set_ip_quotas(raw: &mut RawConfig, quota: latchkey_server::config::Quota) {
    let limits = &mut raw.rate_limits;
    for bucket in [
        &mut limits.login,
        &mut limits.register,
        &mut limits.token,
        &mut limits.refresh,
        &mut limits.totp,
        &mut limits.password_change,
        &mut limits.mail,
    ] {
        *bucket = quota;
    }
}

/// `POST /auth/refresh` with `cookie` as the refresh cookie, to any node.
pub async fn refresh_at(http: &reqwest::Client, base: &str, cookie: &str) -> reqwest::Response {
    http.post(format!("{base}/auth/refresh"))
        .header("x-requested-with", "latchkey")
        .header("cookie", format!("lk_refresh={cookie}"))
        .sent()
        .await
}

/// The public URL [`TestServer::start_on_localhost`] asks for, before the port is known.
const LOCALHOST: &str = "http://localhost";

pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut RawConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database_url(dir.path()).await;
        let mut raw = test_config(dir.path(), url);
        adjust(&mut raw);
        Self::start_raw(raw, dir).await
    }

    /// A server whose public URL is `http://localhost:<port>`: WebAuthn needs a domain
    /// for its relying party id, and refuses an IP address.
    pub async fn start_on_localhost(adjust: impl FnOnce(&mut RawConfig)) -> Self {
        Self::start_with(|raw| {
            raw.public_url = LOCALHOST.into();
            adjust(raw);
        })
        .await
    }

    pub async fn start_raw(raw: RawConfig, dir: tempfile::TempDir) -> Self {
        Self::start_node(raw, dir, None).await
    }

    /// Another node of this server: the same database, master key and public URL (so
    /// the same issuer), its own listener, state and clock.
    pub async fn second_node(&self) -> Self {
        self.second_node_with(|_| {}).await
    }

    /// [`Self::second_node`] with its configuration adjusted first.
    pub async fn second_node_with(&self, adjust: impl FnOnce(&mut RawConfig)) -> Self {
        let mut raw = test_config(self._dir.path(), self.state.config.database_url.clone());
        adjust(&mut raw);
        let node = Self::start_node(raw, tempfile::tempdir().unwrap(), Some(self.state.config.issuer.clone())).await;
        node.clock.set(self.clock.now_secs());
        node
    }

    async fn start_node(raw: RawConfig, dir: tempfile::TempDir, public_url: Option<String>) -> Self {
        let clock = ManualClock::starting_now();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut raw = raw;
        let raw_public_is_localhost = url::Url::parse(public_url.as_deref().unwrap_or(&raw.public_url))
            .is_ok_and(|u| u.host_str() == Some("localhost"));
        raw.public_url = public_url.unwrap_or_else(|| match raw.public_url.as_str() {
            LOCALHOST => format!("http://localhost:{}", addr.port()),
            _ => format!("http://{addr}"),
        });
        let config = raw.validate().expect("test config is valid");
        let state = latchkey_server::build_state(config, clock.clone()).await.expect("server state");
        let (tx, rx) = oneshot::channel::<()>();
        let serve_state = state.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            latchkey_server::serve(listener, serve_state, shutdown, Duration::from_secs(5)).await.unwrap();
        });
        // A localhost server is reached by its name, as a browser would (the issuer in
        // every redirect and token is that name).
        let base = if raw_public_is_localhost { state.config.issuer.clone() } else { format!("http://{addr}") };
        Self {
            base,
            http: reqwest::Client::builder().build().unwrap(),
            state,
            clock,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path))
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path))
    }

    /// A POST as the SPA sends it: with the CSRF header cookie endpoints require.
    pub fn spa_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.post(path).header("x-requested-with", "latchkey")
    }

    /// A POST to a cookie endpoint as the SPA sends it: the CSRF header and the refresh cookie.
    pub fn cookie_post(&self, path: &str, cookie: &str) -> reqwest::RequestBuilder {
        self.spa_post(path).header("cookie", format!("lk_refresh={cookie}"))
    }

    /// The SQLite database file, when the suite runs on SQLite.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        postgres_admin_url().is_none().then(|| self._dir.path().join("latchkey.db"))
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub async fn register(&self, username: &str) -> Value {
        let resp = self.try_register(username, PASSWORD).await;
        assert_eq!(resp.status(), 201, "register {username} on {}", backend());
        resp.json().await.unwrap()
    }

    /// Logs in through the SPA endpoint; returns (access token, refresh cookie value).
    pub async fn login(&self, username: &str) -> (String, String) {
        let resp =
            self.spa_post("/auth/login").json(&json!({ "username": username, "password": PASSWORD })).sent().await;
        assert_eq!(resp.status(), 200, "login {username} on {}", backend());
        let cookie = refresh_cookie(resp.headers()).expect("login sets the refresh cookie");
        let body: Value = resp.json().await.unwrap();
        (body["access_token"].as_str().unwrap().to_string(), cookie)
    }

    /// `POST /auth/register`, whatever the answer.
    pub async fn try_register(&self, username: &str, password: &str) -> reqwest::Response {
        self.post("/auth/register").json(&json!({ "username": username, "password": password })).sent().await
    }

    /// Registers `username` and logs it in: (access token, refresh cookie value).
    pub async fn signed_in(&self, username: &str) -> (String, String) {
        self.register(username).await;
        self.login(username).await
    }

    /// The status of a login with `password`.
    pub async fn login_status(&self, username: &str, password: &str) -> u16 {
        self.spa_post("/auth/login")
            .json(&json!({ "username": username, "password": password }))
            .sent()
            .await
            .status()
            .as_u16()
    }

    /// POST /auth/refresh with a cookie; returns the raw response.
    pub async fn refresh(&self, cookie: &str) -> reqwest::Response {
        refresh_at(&self.http, &self.base, cookie).await
    }

    pub async fn me(&self, access_token: &str) -> reqwest::Response {
        self.get("/auth/me").bearer_auth(access_token).sent().await
    }

    /// Creates an OAuth client directly through the domain (as the CLI does).
    pub async fn create_client(
        &self,
        client_id: &str,
        confidential: bool,
        grants: &[&str],
        roles: &[&str],
    ) -> Option<String> {
        let new = latchkey_server::domain::clients::NewClient {
            client_id: client_id.into(),
            name: client_id.into(),
            confidential,
            grant_types: grants.iter().map(|s| s.to_string()).collect(),
            scopes: vec!["openid".into(), "profile".into(), "billing".into()],
            audience: None,
            roles: roles.iter().map(|s| s.to_string()).collect(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            // Ours, like every client made before third-party clients existed: its
            // tokens carry our audience.
            first_party: true,
            allowed_origins: Vec::new(),
            visible_roles: None,
            token_endpoint_auth_method: None,
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            dpop_bound_access_tokens: false,
        };
        let (_, secret) = latchkey_server::domain::clients::create(
            &self.state,
            new,
            &latchkey_server::domain::rbac::Grantor::operator("test"),
        )
        .await
        .unwrap();
        secret.map(|s| s.expose().clone())
    }

    pub async fn audit_actions(&self) -> Vec<(String, Option<String>)> {
        latchkey_server::store::audit::list_recent(&self.state.db, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.target))
            .collect()
    }
}

/// Creates a user directly (as the CLI does) with extra roles, and logs it in:
/// (user id, access token).
pub async fn user_with_roles(server: &TestServer, name: &str, roles: &[&str]) -> (String, String) {
    let account = latchkey_server::domain::users::NewAccount {
        username: name.into(),
        password: latchkey_server::security::Secret::new(PASSWORD.into()),
        email: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    let operator = latchkey_server::domain::rbac::Grantor::operator("test");
    let user = latchkey_server::domain::users::create(&server.state, account, &operator, None).await.unwrap();
    let (access, _) = server.login(name).await;
    (user.id, access)
}

/// One JSON call with a bearer token: (status, body or `null`).
pub async fn call(
    server: &TestServer,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server.http.request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.sent().await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Enrols `username` (logged in with [`PASSWORD`]) in TOTP: (otpauth URI, recovery codes).
pub async fn enable_totp(server: &TestServer, username: &str) -> (String, Vec<String>) {
    let (access, _) = server.login(username).await;
    let setup = server.post("/auth/totp/setup").bearer_auth(&access).json(&json!({"password": PASSWORD})).sent().await;
    assert_eq!(setup.status(), 200);
    let uri = setup.json::<Value>().await.unwrap()["otpauth_uri"].as_str().unwrap().to_string();
    let code = totp_rs::Totp::from_url(&uri).unwrap().generate(server.clock.now_secs() as u64).to_string();
    let confirmed = server.post("/auth/totp/confirm").bearer_auth(&access).json(&json!({"code": code})).sent().await;
    assert_eq!(confirmed.status(), 200);
    let codes = confirmed.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (uri, codes)
}

/// A password login for an account with TOTP: its `mfa_token`.
pub async fn mfa_token(server: &TestServer, username: &str) -> String {
    let resp = server.spa_post("/auth/login").json(&json!({"username": username, "password": PASSWORD})).sent().await;
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["mfa_token"].as_str().expect("an MFA challenge").to_string()
}

/// `POST /auth/login/mfa` with the given factor (`{"code": …}` or `{"recovery_code": …}`).
pub async fn finish_mfa(server: &TestServer, mfa_token: &str, factor: Value) -> reqwest::Response {
    let mut body = factor;
    body["mfa_token"] = json!(mfa_token);
    server.spa_post("/auth/login/mfa").json(&body).sent().await
}

/// Asserts a JSON error answer: its status and its stable `error` code.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) {
    let actual = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(actual, status, "status on {}: {body}", backend());
    let error: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(error["error"], code, "error code on {}: {body}", backend());
}

/// Waits for `condition` for up to `limit`, polling; fails naming `what` when it never holds.
pub async fn eventually<F, Fut>(what: &str, limit: std::time::Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

/// The refresh cookie's value from `Set-Cookie`, if set (an empty value means cleared).
pub fn refresh_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let value = v.strip_prefix("lk_refresh=")?.split(';').next()?;
        (!value.is_empty()).then(|| value.to_string())
    })
}

pub fn set_cookie_header(headers: &HeaderMap) -> String {
    headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}
