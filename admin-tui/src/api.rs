//! A typed client of Latchkey's admin API. Its request and response types mirror the
//! schemas in `openapi/openapi.json`; a test compares their field names with the
//! committed document, so they cannot drift apart silently.

pub use latchkey_codes::ErrorCode;
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The console's OAuth client, seeded by the server's migrations.
pub const CLIENT_ID: &str = "latchkey-admin";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    /// The server answered with an error body; `code` is `None` for a code this
    /// build does not know (a newer server) or a body without one.
    #[error("{message}")]
    Server { status: u16, code: Option<ErrorCode>, message: String },
    /// The password was right; the account needs a TOTP code.
    #[error("a TOTP code is required")]
    MfaRequired,
    /// The session is over (refresh failed): log in again.
    #[error("session expired, please log in again")]
    SessionExpired,
    /// No answer at all (server down, network).
    #[error("cannot reach the server: {0}")]
    Connection(String),
    #[error("unexpected response: {0}")]
    Decode(String),
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    /// Whether the address was proved (a mailed link followed, or an admin's word).
    #[serde(default)]
    pub email_verified: bool,
    pub status: String,
    pub roles: Vec<String>,
    pub created_at: String,
    pub totp_enabled: bool,
    pub failed_logins: i32,
    pub locked_until: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub page: u64,
    pub page_size: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct CreatedUser {
    pub user: User,
    pub one_time_password: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub builtin: bool,
    pub permissions: Vec<String>,
    pub user_count: u64,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub client_id: String,
    pub created_at: String,
    pub last_used_at: String,
    pub idle_expires_at: String,
    pub absolute_expires_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub client_type: String,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub roles: Vec<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    pub first_party: bool,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub visible_roles: Option<Vec<String>>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// Its token requests must carry a DPoP proof.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// How a client's back-channel logout tokens are delivered.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct BackchannelDelivery {
    pub client_id: String,
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: bool,
    pub pending: u64,
    pub failing: u64,
    pub delivered: u64,
    pub dead: u64,
    #[serde(default)]
    pub last_delivered_at: Option<String>,
    pub recent: Vec<OutboxMessage>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: String,
    pub state: String,
    pub attempts: u32,
    pub created_at: String,
    #[serde(default)]
    pub next_attempt_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Requeued {
    pub requeued: u64,
}

/// A remembered consent of a user's to a third-party application.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Consent {
    pub client_id: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    pub granted_at: String,
}

/// A user's registered passkey (WebAuthn).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Passkey {
    pub id: String,
    pub name: String,
    pub created_at: String,
    #[serde(default)]
    pub last_used_at: Option<String>,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub sign_count: i64,
}

/// A user's browser login session at the hosted sign-in pages (SSO).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct BrowserSession {
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub idle_expires_at: String,
    pub absolute_expires_at: String,
    pub auth_time: String,
    pub amr: Vec<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct CreatedClient {
    pub client: Client,
    pub client_secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct ClientSecret {
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: String,
    pub bits: i32,
    pub state: String,
    pub created_at: String,
    pub activated_at: Option<String>,
    pub retired_at: Option<String>,
    pub published: bool,
    pub activates_at: Option<String>,
    pub unpublished_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AuditEvent {
    pub id: i64,
    pub occurred_at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub outcome: String,
    pub details: Value,
    /// The actor's username or client id, when the server knows it (newer servers).
    /// Serialised only when present, as the server omits it: the spec test compares the
    /// fields a value carries with the committed schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// The target's username or client id, when the server knows it (newer servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// Its place in the server's audit hash chain (servers that keep one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_seq: Option<i64>,
    /// Its link in that chain (hex SHA-256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_hash: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct TotpSetup {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct RevokedCount {
    pub revoked: u64,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    error_description: String,
}

/// Tokens live in memory only, never on disk.
#[derive(Default)]
struct Tokens {
    access: Option<String>,
    refresh: Option<String>,
}

impl Drop for Tokens {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access.zeroize();
        self.refresh.zeroize();
    }
}

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    tokens: Arc<Mutex<Tokens>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("base", &self.base).finish_non_exhaustive()
    }
}

fn connection(err: reqwest::Error) -> ApiError {
    ApiError::Connection(err.to_string())
}

impl ApiClient {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { base: base.trim_end_matches('/').to_string(), http, tokens: Arc::new(Mutex::new(Tokens::default())) }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn set_tokens(&self, access: Option<String>, refresh: Option<String>) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.access = access;
            tokens.refresh = refresh;
        }
    }

    fn access_token(&self) -> Option<String> {
        self.tokens.lock().ok().and_then(|t| t.access.clone())
    }

    pub fn logged_in(&self) -> bool {
        self.access_token().is_some()
    }

    pub fn logout(&self) {
        self.set_tokens(None, None);
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<(), ApiError> {
        let resp = self.http.post(format!("{}/oauth2/token", self.base)).form(form).send().await.map_err(connection)?;
        let status = resp.status();
        if status.is_success() {
            let tokens: TokenResponse = resp.json().await.map_err(|e| ApiError::Decode(e.to_string()))?;
            self.set_tokens(Some(tokens.access_token), tokens.refresh_token);
            return Ok(());
        }
        Err(error_from(status, resp).await)
    }

    /// Password grant of the `latchkey-admin` client; `totp` when the account has it.
    pub async fn login(&self, username: &str, password: &str, totp: Option<&str>) -> Result<(), ApiError> {
        let mut form =
            vec![("grant_type", "password"), ("client_id", CLIENT_ID), ("username", username), ("password", password)];
        if let Some(code) = totp {
            form.push(("totp", code));
        }
        match self.token_request(&form).await {
            Err(ApiError::Server { code: Some(ErrorCode::MfaRequired), .. }) => Err(ApiError::MfaRequired),
            other => other,
        }
    }

    /// Rotates the refresh token for a fresh access token. A refresh whose answer is
    /// lost (the connection drops, a proxy answers 5xx) is retried once with the same
    /// token: the server answers a retry within its grace window with the child it
    /// already committed, so the retry neither strands the session nor forks it.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        let Some(refresh) = self.tokens.lock().ok().and_then(|t| t.refresh.clone()) else {
            return Err(ApiError::SessionExpired);
        };
        let form = [("grant_type", "refresh_token"), ("client_id", CLIENT_ID), ("refresh_token", refresh.as_str())];
        let mut result = self.token_request(&form).await;
        if matches!(result, Err(ApiError::Connection(_)) | Err(ApiError::Server { status: 500..=599, .. })) {
            result = self.token_request(&form).await;
        }
        match result {
            Ok(()) => Ok(()),
            Err(ApiError::Server { status: 400 | 401, .. }) => {
                self.logout();
                Err(ApiError::SessionExpired)
            }
            Err(e) => Err(e),
        }
    }

    /// One authenticated call; on 401 it refreshes once and retries.
    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<Value>) -> Result<T, ApiError> {
        for attempt in 0..2 {
            let token = self.access_token().ok_or(ApiError::SessionExpired)?;
            let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(token);
            if let Some(body) = &body {
                req = req.json(body);
            }
            let resp = req.send().await.map_err(connection)?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.refresh().await?;
                continue;
            }
            if status == StatusCode::NO_CONTENT {
                return serde_json::from_value(Value::Null).map_err(|e| ApiError::Decode(e.to_string()));
            }
            if status.is_success() {
                return resp.json().await.map_err(|e| ApiError::Decode(e.to_string()));
            }
            return Err(error_from(status, resp).await);
        }
        Err(ApiError::SessionExpired)
    }

    pub async fn users(&self, query: &str, page: u64, page_size: u64) -> Result<Page<User>, ApiError> {
        let q = encode(query);
        self.call(Method::GET, &format!("/admin/users?page={page}&page_size={page_size}&q={q}"), None).await
    }

    pub async fn create_user(
        &self,
        username: &str,
        email: Option<&str>,
        password: Option<&str>,
    ) -> Result<CreatedUser, ApiError> {
        self.call(
            Method::POST,
            "/admin/users",
            Some(json!({"username": username, "email": email, "password": password})),
        )
        .await
    }

    pub async fn set_user_email(&self, id: &str, email: Option<&str>) -> Result<User, ApiError> {
        self.call(Method::PATCH, &format!("/admin/users/{id}"), Some(json!({ "email": email }))).await
    }

    pub async fn set_user_status(&self, id: &str, status: &str) -> Result<User, ApiError> {
        self.call(Method::PATCH, &format!("/admin/users/{id}"), Some(json!({ "status": status }))).await
    }

    pub async fn set_user_roles(&self, id: &str, roles: &[String]) -> Result<User, ApiError> {
        self.call(Method::PUT, &format!("/admin/users/{id}/roles"), Some(json!({ "roles": roles }))).await
    }

    pub async fn set_user_password(&self, id: &str, password: &str) -> Result<(), ApiError> {
        self.call(Method::PUT, &format!("/admin/users/{id}/password"), Some(json!({ "password": password }))).await
    }

    pub async fn set_email_verified(&self, id: &str, verified: bool) -> Result<User, ApiError> {
        self.call(Method::PATCH, &format!("/admin/users/{id}"), Some(json!({ "email_verified": verified }))).await
    }

    /// Mails the user a verification link (`reset: false`) or a password reset link.
    pub async fn send_user_link(&self, id: &str, reset: bool) -> Result<(), ApiError> {
        let what = if reset { "reset-mail" } else { "verification-mail" };
        self.call(Method::POST, &format!("/admin/users/{id}/{what}"), None).await
    }

    pub async fn unlock_user(&self, id: &str) -> Result<User, ApiError> {
        self.call(Method::POST, &format!("/admin/users/{id}/unlock"), None).await
    }

    pub async fn reset_user_totp(&self, id: &str) -> Result<(), ApiError> {
        self.call(Method::DELETE, &format!("/admin/users/{id}/totp"), None).await
    }

    pub async fn delete_user(&self, id: &str) -> Result<(), ApiError> {
        self.call(Method::DELETE, &format!("/admin/users/{id}"), None).await
    }

    pub async fn roles(&self) -> Result<Vec<Role>, ApiError> {
        self.call(Method::GET, "/admin/roles", None).await
    }

    pub async fn create_role(&self, name: &str, description: &str, permissions: &[String]) -> Result<Role, ApiError> {
        let body = json!({"name": name, "description": description, "permissions": permissions});
        self.call(Method::POST, "/admin/roles", Some(body)).await
    }

    pub async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        permissions: Option<&[String]>,
    ) -> Result<Role, ApiError> {
        let body = json!({"description": description, "permissions": permissions});
        self.call(Method::PATCH, &format!("/admin/roles/{}", encode(name)), Some(body)).await
    }

    pub async fn delete_role(&self, name: &str) -> Result<(), ApiError> {
        self.call(Method::DELETE, &format!("/admin/roles/{}", encode(name)), None).await
    }

    pub async fn sessions(&self, user_id: Option<&str>, page: u64, page_size: u64) -> Result<Page<Session>, ApiError> {
        let filter = user_id.map(|u| format!("&user_id={}", encode(u))).unwrap_or_default();
        self.call(Method::GET, &format!("/admin/sessions?page={page}&page_size={page_size}{filter}"), None).await
    }

    pub async fn revoke_session(&self, id: &str) -> Result<(), ApiError> {
        self.call(Method::DELETE, &format!("/admin/sessions/{id}"), None).await
    }

    pub async fn revoke_user_sessions(&self, user_id: &str) -> Result<RevokedCount, ApiError> {
        self.call(Method::DELETE, &format!("/admin/users/{user_id}/sessions"), None).await
    }

    pub async fn clients(&self, page: u64, page_size: u64) -> Result<Page<Client>, ApiError> {
        self.call(Method::GET, &format!("/admin/clients?page={page}&page_size={page_size}"), None).await
    }

    pub async fn create_client(
        &self,
        client_id: &str,
        confidential: bool,
        grants: &[String],
        redirect_uris: &[String],
    ) -> Result<CreatedClient, ApiError> {
        let body = json!({
            "client_id": client_id, "name": client_id, "confidential": confidential, "grant_types": grants,
            "redirect_uris": redirect_uris,
        });
        self.call(Method::POST, "/admin/clients", Some(body)).await
    }

    /// A user's live browser sessions, newest first.
    pub async fn user_browser_sessions(&self, user_id: &str) -> Result<Vec<BrowserSession>, ApiError> {
        self.call(Method::GET, &format!("/admin/users/{}/browser-sessions", encode(user_id)), None).await
    }

    /// Ends one browser session of a user (and the app sessions made through it).
    pub async fn end_user_browser_session(&self, user_id: &str, session_id: &str) -> Result<(), ApiError> {
        let path = format!("/admin/users/{}/browser-sessions/{}", encode(user_id), encode(session_id));
        self.call(Method::DELETE, &path, None).await
    }

    /// A user's passkeys, oldest first.
    pub async fn user_passkeys(&self, user_id: &str) -> Result<Vec<Passkey>, ApiError> {
        self.call(Method::GET, &format!("/admin/users/{}/passkeys", encode(user_id)), None).await
    }

    /// Deletes one of a user's passkeys (a lost device).
    pub async fn delete_user_passkey(&self, user_id: &str, passkey_id: &str) -> Result<(), ApiError> {
        let path = format!("/admin/users/{}/passkeys/{}", encode(user_id), encode(passkey_id));
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn user_consents(&self, user_id: &str) -> Result<Vec<Consent>, ApiError> {
        self.call(Method::GET, &format!("/admin/users/{}/consents", encode(user_id)), None).await
    }

    /// Withdraws a user's consent (the app's sessions of theirs end too).
    pub async fn revoke_user_consent(&self, user_id: &str, client_id: &str) -> Result<(), ApiError> {
        let path = format!("/admin/users/{}/consents/{}", encode(user_id), encode(client_id));
        self.call(Method::DELETE, &path, None).await
    }

    /// Replaces where the code flow may send users back to.
    pub async fn set_client_redirect_uris(&self, client_id: &str, uris: &[String]) -> Result<Client, ApiError> {
        self.update_client(client_id, json!({ "redirect_uris": uris })).await
    }

    /// Makes a client first-party (skips consent) or third-party.
    pub async fn set_client_first_party(&self, client_id: &str, first_party: bool) -> Result<Client, ApiError> {
        self.update_client(client_id, json!({ "first_party": first_party })).await
    }

    async fn update_client(&self, client_id: &str, changes: serde_json::Value) -> Result<Client, ApiError> {
        self.call(Method::PATCH, &format!("/admin/clients/{}", encode(client_id)), Some(changes)).await
    }

    pub async fn rotate_client_secret(&self, client_id: &str) -> Result<ClientSecret, ApiError> {
        self.call(Method::POST, &format!("/admin/clients/{}/secret", encode(client_id)), None).await
    }

    pub async fn client_backchannel(&self, client_id: &str) -> Result<BackchannelDelivery, ApiError> {
        self.call(Method::GET, &format!("/admin/clients/{}/backchannel-logout", encode(client_id)), None).await
    }

    /// Queues the client's dead logout tokens again.
    pub async fn retry_client_backchannel(&self, client_id: &str) -> Result<Requeued, ApiError> {
        self.call(Method::POST, &format!("/admin/clients/{}/backchannel-logout/retry", encode(client_id)), None).await
    }

    pub async fn delete_client(&self, client_id: &str) -> Result<(), ApiError> {
        self.call(Method::DELETE, &format!("/admin/clients/{}", encode(client_id)), None).await
    }

    pub async fn keys(&self) -> Result<Vec<SigningKey>, ApiError> {
        self.call(Method::GET, "/admin/keys", None).await
    }

    pub async fn rotate_keys(&self) -> Result<SigningKey, ApiError> {
        self.call(Method::POST, "/admin/keys/rotate", None).await
    }

    pub async fn audit(&self, action: Option<&str>, page: u64, page_size: u64) -> Result<Page<AuditEvent>, ApiError> {
        let filter = action.filter(|a| !a.is_empty()).map(|a| format!("&action={}", encode(a))).unwrap_or_default();
        self.call(Method::GET, &format!("/admin/audit?page={page}&page_size={page_size}{filter}"), None).await
    }

    pub async fn totp_setup(&self, password: &str) -> Result<TotpSetup, ApiError> {
        self.call(Method::POST, "/auth/totp/setup", Some(json!({ "password": password }))).await
    }

    pub async fn totp_confirm(&self, code: &str) -> Result<RecoveryCodes, ApiError> {
        self.call(Method::POST, "/auth/totp/confirm", Some(json!({ "code": code }))).await
    }
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

async fn error_from(status: StatusCode, resp: reqwest::Response) -> ApiError {
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => ApiError::Server {
            status: status.as_u16(),
            code: ErrorCode::parse(&body.error),
            message: body.error_description,
        },
        Err(_) => ApiError::Server { status: status.as_u16(), code: None, message: format!("HTTP {status}") },
    }
}
