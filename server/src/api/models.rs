//! Request and response schemas of the HTTP API. These are the public contract (they
//! generate `openapi/openapi.json`); storage types never appear here.

use chrono::{DateTime, Utc};
use poem_openapi::Object;

use crate::api::documented::{NewPassword, NewUsername};
use crate::clock::to_datetime;
use crate::domain::grants::ConsentView;
use crate::domain::users::UserView;
use crate::store::authorization::SsoSessionRow;
use crate::store::sessions::SessionRow;

// No Debug: it carries secrets.
#[derive(Object)]
pub struct RegisterRequest {
    /// Compared case-insensitively after trimming.
    pub username: NewUsername,
    /// Any Unicode.
    pub password: NewPassword,
    #[oai(skip_serializing_if_is_none, validator(max_length = 254))]
    pub email: Option<String>,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct LoginRequest {
    #[oai(validator(max_length = 256))]
    pub username: String,
    #[oai(validator(max_length = 1024))]
    pub password: String,
}

/// Which account forgot its password.
#[derive(Debug, Object)]
pub struct PasswordResetRequest {
    /// A username, or the account's verified email address.
    #[oai(validator(min_length = 1, max_length = 254))]
    pub login: String,
}

/// The same answer whatever the request named.
#[derive(Debug, Object)]
pub struct MailAccepted {
    /// Always `accepted`.
    pub status: String,
    pub description: String,
}

/// A reset link's token and the new password.
// No Debug: it carries secrets.
#[derive(Object)]
pub struct PasswordResetCompleteRequest {
    /// The `token` of the link's query (`lk_pr_…`).
    #[oai(validator(min_length = 1, max_length = 128))]
    pub token: String,
    pub password: NewPassword,
}

/// A verification link's token.
// No Debug: it carries a secret.
#[derive(Object)]
pub struct EmailVerifyRequest {
    /// The `token` of the link's query (`lk_ev_…`).
    #[oai(validator(min_length = 1, max_length = 128))]
    pub token: String,
}

/// A new address for the signed-in user, with the current password.
// No Debug: it carries a secret.
#[derive(Object)]
pub struct EmailChangeRequest {
    #[oai(validator(min_length = 3, max_length = 254))]
    pub email: String,
    #[oai(validator(max_length = 1024))]
    pub password: String,
}

/// The result of a password login: tokens, or a second-factor challenge.
// No Debug: it carries secrets.
#[derive(Object)]
pub struct LoginResponse {
    /// True when the account has TOTP: complete with `POST /auth/login/mfa`.
    pub mfa_required: bool,
    #[oai(skip_serializing_if_is_none)]
    pub mfa_token: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub access_token: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub token_type: Option<String>,
    /// Lifetime in seconds of the access token, or of the `mfa_token`.
    pub expires_in: u64,
    #[oai(skip_serializing_if_is_none)]
    pub scope: Option<String>,
    /// With `mfa_required`: the second factors the account can complete with, `totp`
    /// (`POST /auth/login/mfa`) and `passkey` (`POST /auth/webauthn/login/start` with
    /// the `mfa_token`).
    #[oai(skip_serializing_if_is_none)]
    pub mfa_methods: Option<Vec<String>>,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct MfaLoginRequest {
    #[oai(validator(max_length = 128))]
    pub mfa_token: String,
    /// The current 6-digit TOTP code…
    #[oai(skip_serializing_if_is_none, validator(max_length = 16))]
    pub code: Option<String>,
    /// …or one of the recovery codes.
    #[oai(skip_serializing_if_is_none, validator(max_length = 64))]
    pub recovery_code: Option<String>,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct PasswordRequest {
    #[oai(validator(max_length = 1024))]
    pub password: String,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct TotpSetupResponse {
    /// Base32 secret, for typing into an authenticator app.
    pub secret: String,
    pub otpauth_uri: String,
    /// The otpauth URI as a QR code (SVG document).
    pub qr_svg: String,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct TotpCodeRequest {
    #[oai(validator(max_length = 16))]
    pub code: String,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct TotpDisableRequest {
    #[oai(validator(max_length = 1024))]
    pub password: String,
    #[oai(skip_serializing_if_is_none, validator(max_length = 16))]
    pub code: Option<String>,
    #[oai(skip_serializing_if_is_none, validator(max_length = 64))]
    pub recovery_code: Option<String>,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct RecoveryCodesResponse {
    /// Single-use codes, shown this once; each replaces a TOTP code one time.
    pub recovery_codes: Vec<String>,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct ChangePasswordRequest {
    #[oai(validator(max_length = 1024))]
    pub current_password: String,
    pub new_password: NewPassword,
}

/// An access token for the browser. The refresh token travels only in the HttpOnly
/// cookie and never appears in this body.
// No Debug: it carries secrets.
#[derive(Object)]
pub struct AccessTokenResponse {
    pub access_token: String,
    /// `Bearer`, or `DPoP` when the request carried a DPoP proof: the session is then
    /// bound to that key, and so is the access token.
    pub token_type: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
    pub scope: String,
}

#[derive(Debug, Object)]
pub struct UserResponse {
    pub id: String,
    pub username: String,
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    /// Whether `email` was proved: a mailed link followed, or an admin's word.
    pub email_verified: bool,
    /// `active` or `disabled`.
    pub status: String,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub totp_enabled: bool,
    /// Consecutive failed password or TOTP attempts.
    pub failed_logins: i32,
    /// Set while the account is locked out after repeated failures.
    #[oai(skip_serializing_if_is_none)]
    pub locked_until: Option<DateTime<Utc>>,
}

impl From<UserView> for UserResponse {
    fn from(user: UserView) -> Self {
        Self {
            id: user.id,
            username: user.username,
            email: user.email,
            email_verified: user.email_verified,
            status: user.status.as_str().into(),
            roles: user.roles,
            created_at: to_datetime(user.created_at),
            totp_enabled: user.totp_enabled,
            failed_logins: user.failed_logins,
            locked_until: user.locked_until.map(to_datetime),
        }
    }
}

#[derive(Debug, Object)]
pub struct SessionResponse {
    pub id: String,
    pub client_id: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    /// When the session ends if unused (idle timeout), never after its absolute lifetime.
    pub idle_expires_at: DateTime<Utc>,
    pub absolute_expires_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub ip: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub user_agent: Option<String>,
    /// True for the session of the access token making this request.
    pub current: bool,
}

/// A browser login session at the hosted pages (SSO): it signs the user in to the next
/// relying party without a password until it ends.
#[derive(Debug, Object)]
pub struct BrowserSessionResponse {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub absolute_expires_at: DateTime<Utc>,
    /// When the user last proved who they are in this browser.
    pub auth_time: DateTime<Utc>,
    /// How (RFC 8176): `pwd`, `otp`.
    pub amr: Vec<String>,
    #[oai(skip_serializing_if_is_none)]
    pub ip: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub user_agent: Option<String>,
}

impl From<SsoSessionRow> for BrowserSessionResponse {
    fn from(row: SsoSessionRow) -> Self {
        Self {
            amr: row.amr.split_ascii_whitespace().map(str::to_string).collect(),
            id: row.id,
            created_at: to_datetime(row.created_at),
            last_seen_at: to_datetime(row.last_seen_at),
            idle_expires_at: to_datetime(row.idle_expires_at),
            absolute_expires_at: to_datetime(row.absolute_expires_at),
            auth_time: to_datetime(row.auth_time),
            ip: row.ip,
            user_agent: row.user_agent,
        }
    }
}

/// The scopes a user let a third-party application have; it is not asked again for them.
#[derive(Debug, Object)]
pub struct ConsentResponse {
    pub client_id: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    pub granted_at: DateTime<Utc>,
}

impl From<ConsentView> for ConsentResponse {
    fn from(view: ConsentView) -> Self {
        Self {
            scopes: view.row.scope.split_ascii_whitespace().map(str::to_string).collect(),
            client_id: view.row.client_id,
            client_name: view.client_name,
            granted_at: to_datetime(view.row.granted_at),
        }
    }
}

impl SessionResponse {
    pub fn new(row: SessionRow, current_sid: Option<&str>) -> Self {
        Self {
            current: current_sid == Some(row.id.as_str()),
            id: row.id,
            client_id: row.client_id,
            created_at: to_datetime(row.created_at),
            last_used_at: to_datetime(row.last_used_at),
            idle_expires_at: to_datetime(row.idle_expires_at),
            absolute_expires_at: to_datetime(row.absolute_expires_at),
            ip: row.ip,
            user_agent: row.user_agent,
        }
    }
}

/// RFC 6749 §5.1 token response.
// No Debug: it carries secrets.
#[derive(Object)]
pub struct TokenResponse {
    pub access_token: String,
    /// `Bearer`, or `DPoP` when the request carried a DPoP proof (RFC 9449 §5).
    pub token_type: String,
    pub expires_in: u64,
    #[oai(skip_serializing_if_is_none)]
    pub refresh_token: Option<String>,
    pub scope: String,
    /// OpenID Connect: from the code exchange when `openid` was granted.
    #[oai(skip_serializing_if_is_none)]
    pub id_token: Option<String>,
}

/// RFC 7662 §2.2 introspection response; only `active` is present for inactive tokens.
#[derive(Debug, Object)]
pub struct IntrospectionResponse {
    pub active: bool,
    #[oai(skip_serializing_if_is_none)]
    pub token_type: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub client_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub sub: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub username: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub scope: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub exp: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub iat: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub nbf: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub aud: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub iss: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub jti: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub sid: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub roles: Option<Vec<String>>,
    /// A DPoP-bound access token's key (RFC 9449 §6.2).
    #[oai(skip_serializing_if_is_none)]
    pub cnf: Option<ConfirmationClaim>,
}

/// `cnf` of a DPoP-bound token: the SHA-256 thumbprint (RFC 7638) of its key.
#[derive(Debug, Object)]
pub struct ConfirmationClaim {
    pub jkt: String,
}

/// OpenID Connect userinfo (Core §5.3): `sub`, and the claims the token's scopes
/// release (`profile`: `preferred_username`, `name`, `updated_at`; `email`: `email`,
/// `email_verified`; `roles`: `roles`).
#[derive(Debug, Object)]
pub struct UserInfoResponse {
    pub sub: String,
    #[oai(skip_serializing_if_is_none)]
    pub preferred_username: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
    /// When the profile last changed (Unix seconds).
    #[oai(skip_serializing_if_is_none)]
    pub updated_at: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub email_verified: Option<bool>,
    #[oai(skip_serializing_if_is_none)]
    pub roles: Option<Vec<String>>,
}

/// RFC 8414 authorization server metadata (also served as OpenID discovery). Only
/// endpoints and features that exist are listed.
#[derive(Debug, Object)]
pub struct ServerMetadata {
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub userinfo_endpoint: String,
    pub authorization_endpoint: String,
    /// RP-Initiated Logout 1.0: where a relying party sends the browser to sign out.
    pub end_session_endpoint: String,
    /// Back-Channel Logout 1.0: relying parties with a `backchannel_logout_uri` are sent
    /// a logout token when a session of theirs ends.
    pub backchannel_logout_supported: bool,
    /// Logout tokens carry `sid` (for sessions made through a browser sign-in).
    pub backchannel_logout_session_supported: bool,
    /// Front-Channel Logout is not offered: it needs third-party iframes, which browsers
    /// now block.
    pub frontchannel_logout_supported: bool,
    pub grant_types_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub response_modes_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9449 §5.1: the algorithms a DPoP proof may be signed with.
    pub dpop_signing_alg_values_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub claims_supported: Vec<String>,
    pub prompt_values_supported: Vec<String>,
    pub acr_values_supported: Vec<String>,
    pub authorization_response_iss_parameter_supported: bool,
    pub claims_parameter_supported: bool,
    pub request_parameter_supported: bool,
    pub request_uri_parameter_supported: bool,
}

/// RFC 7517 JSON Web Key (RSA public key).
#[derive(Debug, Object)]
pub struct JsonWebKey {
    pub kty: String,
    #[oai(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub kid: String,
    pub n: String,
    pub e: String,
}

#[derive(Debug, Object)]
pub struct JsonWebKeySet {
    pub keys: Vec<JsonWebKey>,
}

/// A JSON body serialised ahead of time, documented in the spec as `T`. The JWKS is
/// the same bytes for every request until the keys change, so it is built once.
pub struct PreSerialized<T> {
    json: bytes::Bytes,
    _schema: std::marker::PhantomData<fn() -> T>,
}

impl<T> PreSerialized<T> {
    /// `json` must be `T` as JSON; the spec promises that shape.
    pub fn new(json: bytes::Bytes) -> Self {
        Self { json, _schema: std::marker::PhantomData }
    }
}

const JSON: &str = "application/json; charset=utf-8";

impl<T: poem_openapi::types::Type> poem_openapi::payload::Payload for PreSerialized<T> {
    const CONTENT_TYPE: &'static str = JSON;

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        T::register(registry);
    }
}

impl<T> poem::IntoResponse for PreSerialized<T> {
    fn into_response(self) -> poem::Response {
        poem::Response::builder().content_type(JSON).body(self.json)
    }
}

#[derive(Debug, Object)]
pub struct HealthResponse {
    pub status: String,
}

/// A passkey ceremony started: pass `options` to `navigator.credentials.create()` or
/// `.get()` (after `PublicKeyCredential.parseCreationOptionsFromJSON` /
/// `parseRequestOptionsFromJSON` on its `publicKey`, or decoding its base64url members),
/// and send the answer back with `ceremony_id` before `expires_in` seconds have passed.
#[derive(Debug, Object)]
pub struct PasskeyCeremonyResponse {
    pub ceremony_id: String,
    /// `{"publicKey": …}`: WebAuthn's `PublicKeyCredentialCreationOptionsJSON` (a
    /// registration) or `PublicKeyCredentialRequestOptionsJSON` (a sign-in).
    pub options: serde_json::Value,
    pub expires_in: u64,
}

impl From<crate::domain::passkeys::Ceremony> for PasskeyCeremonyResponse {
    fn from(ceremony: crate::domain::passkeys::Ceremony) -> Self {
        Self { ceremony_id: ceremony.id, options: ceremony.options, expires_in: ceremony.expires_in }
    }
}

// No Debug: it carries secrets.
#[derive(Object, Default)]
pub struct PasskeyLoginStartRequest {
    /// The `mfa_token` of a password login, to use a passkey as its second factor;
    /// without it, a usernameless sign-in (any of the user's discoverable passkeys).
    #[oai(skip_serializing_if_is_none, validator(max_length = 128))]
    pub mfa_token: Option<String>,
}

// No Debug: it carries secrets.
#[derive(Object)]
pub struct PasskeyLoginFinishRequest {
    #[oai(validator(max_length = 64))]
    pub ceremony_id: String,
    /// The assertion: `PublicKeyCredential.toJSON()` of what `navigator.credentials.get()` returned.
    pub credential: serde_json::Value,
    /// The same `mfa_token` the ceremony was started with, if any.
    #[oai(skip_serializing_if_is_none, validator(max_length = 128))]
    pub mfa_token: Option<String>,
}

#[derive(Debug, Object)]
pub struct PasskeyRegisterFinishRequest {
    #[oai(validator(max_length = 64))]
    pub ceremony_id: String,
    /// What the user calls this passkey (1-64 characters, not only spaces, no control characters).
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub name: String,
    /// `PublicKeyCredential.toJSON()` of what `navigator.credentials.create()` returned.
    pub credential: serde_json::Value,
}

#[derive(Debug, Object)]
pub struct PasskeyRenameRequest {
    /// 1-64 characters, not only spaces, no control characters.
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    ))]
    pub name: String,
}

/// A registered passkey. Its private key never leaves the authenticator.
#[derive(Debug, Object)]
pub struct PasskeyResponse {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// The authenticator may back the key up (a synced passkey)…
    pub backup_eligible: bool,
    /// …and has.
    pub backup_state: bool,
    /// The highest signature counter seen (0 for authenticators that do not count).
    pub sign_count: i64,
}

impl From<crate::domain::passkeys::PasskeyView> for PasskeyResponse {
    fn from(view: crate::domain::passkeys::PasskeyView) -> Self {
        Self {
            id: view.id,
            name: view.name,
            created_at: to_datetime(view.created_at),
            last_used_at: view.last_used_at.map(to_datetime),
            backup_eligible: view.backup_eligible,
            backup_state: view.backup_state,
            sign_count: view.sign_count,
        }
    }
}
