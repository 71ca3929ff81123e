//! Configuration: an optional TOML file plus `LATCHKEY_*` environment overrides, parsed
//! strictly into [`RawConfig`] and then validated into the checked [`Config`] the rest
//! of the server uses. Nothing outside this module sees unvalidated settings.
//!
//! Environment variables name nested keys with a double underscore:
//! `LATCHKEY_TOKENS__ACCESS_TOKEN_TTL_SECS=300` sets `[tokens] access_token_ttl_secs`.
//! `DATABASE_URL` is honoured as well, as most deployment tooling sets it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use url::Url;

/// A configuration problem, reported as one line and exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn invalid(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid value for `{key}`: {why}"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Address the HTTP server binds.
    pub listen: String,
    /// The externally visible base URL; it is the token issuer (`iss`).
    pub public_url: String,
    /// `sqlite://…` or `postgres://…`. Defaults to a SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// Where the default SQLite database lives; created on first start.
    pub data_dir: PathBuf,
    pub db_pool_size: u32,
    /// SQLite's `synchronous` in WAL mode: `normal` (a commit survives the process
    /// crashing; the WAL is fsynced at checkpoints) or `full` (every commit is fsynced, so
    /// it survives a power cut too, at the cost of an fsync per write).
    pub sqlite_synchronous: SqliteSynchronousMode,
    /// Run pending migrations when the server starts.
    pub run_migrations: bool,
    /// File holding the 256-bit master key that encrypts private keys at rest.
    pub master_key_file: PathBuf,
    /// Default `aud` of access tokens.
    pub audience: String,
    /// Whether `POST /auth/register` is open to anyone.
    pub registration_enabled: bool,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// `human` or `json`.
    pub log_format: String,
    /// Origins allowed to call the API from a browser with credentials.
    pub cors_allowed_origins: Vec<String>,
    pub tokens: RawTokens,
    pub keys: RawKeys,
    pub passwords: RawPasswords,
    pub cookie: RawCookie,
    pub rate_limits: RawRateLimits,
    pub lockout: RawLockout,
    pub mfa: RawMfa,
    pub operations: RawOperations,
    pub connections: RawConnections,
    pub sso: RawSso,
    pub branding: RawBranding,
    pub backchannel_logout: RawBackchannelLogout,
    pub passkeys: RawPasskeys,
    pub registration: RawRegistration,
    pub dpop: RawDpop,
    /// Outgoing mail (password reset, address verification). Off when absent.
    pub mail: Option<RawMail>,
}

/// What self-registration (`POST /auth/register`) demands beyond `registration_enabled`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRegistration {
    /// A self-registered account gives an email address and cannot sign in until it
    /// has followed the link mailed to it (needs `mail`).
    pub require_verified_email: bool,
}

/// How mail leaves: an SMTP relay, or (development only) files in a directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMail {
    /// `smtp` or `file`.
    pub transport: String,
    /// The sender, e.g. `Latchkey <no-reply@example.com>`.
    pub from: String,
    /// `smtp://host:port` (`smtps://` for implicit TLS).
    pub smtp_url: Option<String>,
    /// `starttls` (the default for smtp://), `implicit` (smtps://, port 465) or `none`
    /// (plain text, allowed only to a loopback relay).
    pub tls: Option<String>,
    pub username: Option<String>,
    /// A file holding the SMTP password (never the password itself in the config).
    pub password_file: Option<PathBuf>,
    /// How long connecting to and talking with the relay may take, per message.
    pub timeout_secs: u64,
    /// Where the `file` transport writes its messages (one `.eml` file each, mode 0600).
    pub dir: Option<PathBuf>,
    /// Attempts before a message is given up (marked dead and audited).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each, with jitter.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// Messages one address may be sent per hour by reset and verification requests
    /// (across all nodes), so the forms cannot be used to mail-bomb someone.
    pub per_address_per_hour: u32,
}

impl Default for RawMail {
    fn default() -> Self {
        Self {
            transport: "smtp".into(),
            from: String::new(),
            smtp_url: None,
            tls: None,
            username: None,
            password_file: None,
            timeout_secs: 10,
            dir: None,
            max_attempts: 8,
            retry_base_secs: 30,
            retry_max_secs: 3600,
            per_address_per_hour: 5,
        }
    }
}

/// Limits on client connections (slowloris and descriptor exhaustion).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConnections {
    /// A request's headers must arrive within this long of its first byte (and a new
    /// connection's first request within this long of connecting).
    pub header_read_timeout_secs: u64,
    /// A keep-alive connection with no traffic for this long is closed.
    pub keep_alive_idle_secs: u64,
    /// Open connections in all; more are closed as they arrive. Keep it below the
    /// process's descriptor limit (`LimitNOFILE`).
    pub max_connections: usize,
    /// Open connections from one client address (trusted proxies are exempt).
    pub max_connections_per_ip: usize,
}

impl Default for RawConnections {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            keep_alive_idle_secs: 75,
            max_connections: 4096,
            max_connections_per_ip: 128,
        }
    }
}

/// How hard SQLite pushes each commit to disk.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronousMode {
    #[default]
    Normal,
    Full,
}

impl SqliteSynchronousMode {
    /// The pragma's value.
    pub fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// The one header a trusted proxy writes with the client's address.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    #[default]
    XForwardedFor,
    Forwarded,
    XRealIp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOperations {
    /// Serve `/metrics` on this separate address instead of the main listener.
    pub metrics_listen: Option<String>,
    /// On SIGTERM/Ctrl-C, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// How often the purge job runs (on one node at a time).
    pub purge_interval_secs: u64,
    /// Rows deleted per statement, so the job never holds long locks.
    pub purge_batch_size: u64,
    /// Ended sessions (revoked or expired) are kept this long for the admin's view.
    pub ended_session_retention_days: u64,
    /// Audit events older than this are deleted (0 keeps them forever).
    pub audit_retention_days: u64,
}

impl Default for RawOperations {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            shutdown_grace_secs: 10,
            purge_interval_secs: 600,
            purge_batch_size: 1000,
            ended_session_retention_days: 7,
            audit_retention_days: 365,
        }
    }
}

/// A token bucket: `per_minute` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub per_minute: u32,
    pub burst: u32,
}

impl Quota {
    pub const fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimits {
    /// Per client IP: `/auth/login`, `/auth/login/mfa`.
    pub login: Quota,
    /// Per client IP: `/auth/register`.
    pub register: Quota,
    /// Per client IP: `/oauth2/token`, `/oauth2/revoke`, `/oauth2/introspect`.
    pub token: Quota,
    /// Per client IP: `/auth/refresh`.
    pub refresh: Quota,
    /// Per client IP: `/auth/totp/*`.
    pub totp: Quota,
    /// Per client IP: `/auth/password`, completing a password reset.
    pub password_change: Quota,
    /// Per client IP: requests that send mail (password reset, address verification).
    pub mail: Quota,
    /// Per normalised username: password and TOTP attempts, from any IP.
    pub username: Quota,
    /// Proxies (CIDRs) whose client-address header is believed.
    pub trusted_proxies: Vec<String>,
    /// The header those proxies write: `x-forwarded-for` (the default), `forwarded`
    /// or `x-real-ip`. Only this header is ever read.
    pub client_ip_header: ClientIpHeader,
    /// Idle buckets are evicted; this caps how many keys each limiter holds between sweeps.
    pub max_tracked_keys: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLockout {
    /// Consecutive failures before the account is locked (0 disables lockout).
    pub threshold: u32,
    /// First lock duration; it doubles with every further failure.
    pub base_secs: u64,
    pub max_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMfa {
    /// Issuer shown in authenticator apps.
    pub totp_issuer: String,
    /// Lifetime of the `mfa_token` between password and code.
    pub challenge_ttl_secs: u64,
    /// Users holding any of these roles must have a second factor (TOTP or a passkey):
    /// one without is sent to enrol a passkey at the hosted sign-in, and refused with
    /// `mfa_enrolment_required` by the JSON login and the password grant. Empty by
    /// default, so the first admin the CLI makes keeps the console.
    pub require_for_roles: Vec<String>,
}

/// DPoP (RFC 9449): sender-constrained tokens for clients that send proofs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDpop {
    /// Every proof must carry a nonce this server issued (`DPoP-Nonce`), so a proof
    /// cannot be made ahead of time and kept (§8). A client without one is answered
    /// `use_dpop_nonce` with a fresh nonce, once.
    pub require_nonce: bool,
    /// A nonce is handed out for this long and accepted for one more such period.
    pub nonce_window_secs: u64,
}

impl Default for RawDpop {
    fn default() -> Self {
        Self { require_nonce: true, nonce_window_secs: 60 }
    }
}

/// Passkeys (WebAuthn).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPasskeys {
    pub enabled: bool,
    /// The relying party id passkeys are bound to: by default the host of `public_url`.
    /// It may be a registrable suffix of that host (`example.com` for
    /// `login.example.com`). Changing it later orphans every registered passkey.
    pub rp_id: Option<String>,
    /// Origins besides `public_url`'s whose pages may use the passkeys (the SPA's), each
    /// on the relying party id's domain.
    pub extra_origins: Vec<String>,
    /// How long a ceremony (registration or sign-in) may take.
    pub ceremony_ttl_secs: u64,
    /// Refuse a sign-in whose signature counter did not move past the stored one (a
    /// possible cloned authenticator). It is audited either way.
    pub refuse_counter_regression: bool,
}

impl Default for RawPasskeys {
    fn default() -> Self {
        Self {
            enabled: true,
            rp_id: None,
            extra_origins: Vec::new(),
            ceremony_ttl_secs: 300,
            refuse_counter_regression: true,
        }
    }
}

impl Default for RawRateLimits {
    fn default() -> Self {
        Self {
            login: Quota::new(30, 10),
            register: Quota::new(10, 5),
            token: Quota::new(1200, 200),
            refresh: Quota::new(600, 100),
            totp: Quota::new(30, 10),
            password_change: Quota::new(10, 5),
            mail: Quota::new(5, 3),
            username: Quota::new(10, 10),
            trusted_proxies: Vec::new(),
            client_ip_header: ClientIpHeader::XForwardedFor,
            max_tracked_keys: 100_000,
        }
    }
}

impl Default for RawLockout {
    fn default() -> Self {
        Self { threshold: 5, base_secs: 30, max_secs: 3600 }
    }
}

impl Default for RawMfa {
    fn default() -> Self {
        Self { totp_issuer: "Latchkey".into(), challenge_ttl_secs: 300, require_for_roles: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    pub access_token_ttl_secs: u64,
    pub session_idle_timeout_secs: u64,
    pub session_absolute_lifetime_secs: u64,
    /// After a rotation, the rotated token presented again within this window is
    /// answered with its child again while the child is unused (a lost answer), else
    /// with a distinct error, instead of revoking the session (0 = strict; at most
    /// [`MAX_REFRESH_GRACE_SECS`], since whoever holds the parent can obtain the unused
    /// child for that long).
    pub refresh_grace_secs: u64,
    /// Leeway for `exp`/`nbf` checks of our own tokens.
    pub clock_skew_secs: u64,
    /// Lifetime of id_tokens (OpenID Connect Core §2).
    pub id_token_ttl_secs: u64,
}

/// The browser's login session at the hosted pages (`lk_sso`), which signs the user in
/// to a second relying party without a password prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSso {
    pub cookie_name: String,
    pub idle_timeout_secs: u64,
    pub absolute_lifetime_secs: u64,
    /// How long a sign-in started at `/oauth2/authorize` may take to finish.
    pub sign_in_timeout_secs: u64,
    /// Whether a relying party's session granted `offline_access` outlives the browser
    /// session it was made through (a sign-out there leaves it), as the scope means.
    pub offline_sessions_outlive_browser: bool,
}

/// The delivery of back-channel logout tokens to relying parties (from the outbox).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBackchannelLogout {
    /// How long one POST to a relying party may take, connecting included.
    pub timeout_secs: u64,
    /// Attempts before a message is given up (marked dead and audited).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each (with up to half
    /// again of random jitter), up to `retry_max_secs`.
    pub retry_base_secs: u64,
    pub retry_max_secs: u64,
    /// Deliveries one node makes at once.
    pub concurrency: usize,
}

impl Default for RawBackchannelLogout {
    fn default() -> Self {
        Self { timeout_secs: 5, max_attempts: 8, retry_base_secs: 10, retry_max_secs: 3600, concurrency: 16 }
    }
}

/// What the hosted pages show of the operator's brand, without forking templates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBranding {
    pub product_name: String,
    /// An https (or same-origin path) URL of a logo image.
    pub logo_url: Option<String>,
    /// An extra stylesheet, loaded after ours.
    pub extra_css_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKeys {
    pub rsa_bits: u32,
    /// How long verifiers may cache the JWKS. A new key is published this long before it
    /// signs anything.
    pub jwks_max_age_secs: u64,
    /// Scheduled rotation: a new key every this many days (0 turns it off).
    pub rotation_interval_days: u64,
    /// How often each node re-reads the key set and runs due transitions.
    pub poll_interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPasswords {
    pub min_length: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Concurrent Argon2 computations; 0 means one per CPU core.
    pub hashing_threads: usize,
    /// Password checks that may wait for a hashing thread; beyond it, 503. 0 = 64 per thread.
    pub max_queued: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCookie {
    pub name: String,
    pub path: String,
    /// May be false only while `public_url` is http://localhost or a loopback address.
    pub secure: bool,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            database_url: None,
            data_dir: "data".into(),
            db_pool_size: 10,
            sqlite_synchronous: SqliteSynchronousMode::Normal,
            run_migrations: true,
            master_key_file: "keys/master.key".into(),
            audience: "latchkey".into(),
            registration_enabled: true,
            max_body_bytes: 64 * 1024,
            log_format: "human".into(),
            cors_allowed_origins: Vec::new(),
            tokens: RawTokens::default(),
            keys: RawKeys::default(),
            passwords: RawPasswords::default(),
            cookie: RawCookie::default(),
            rate_limits: RawRateLimits::default(),
            lockout: RawLockout::default(),
            mfa: RawMfa::default(),
            operations: RawOperations::default(),
            connections: RawConnections::default(),
            sso: RawSso::default(),
            branding: RawBranding::default(),
            backchannel_logout: RawBackchannelLogout::default(),
            passkeys: RawPasskeys::default(),
            registration: RawRegistration::default(),
            dpop: RawDpop::default(),
            mail: None,
        }
    }
}

impl Default for RawSso {
    fn default() -> Self {
        Self {
            cookie_name: "lk_sso".into(),
            idle_timeout_secs: 8 * 3600,
            absolute_lifetime_secs: 7 * 24 * 3600,
            sign_in_timeout_secs: 10 * 60,
            offline_sessions_outlive_browser: true,
        }
    }
}

impl Default for RawBranding {
    fn default() -> Self {
        Self { product_name: "Latchkey".into(), logo_url: None, extra_css_url: None }
    }
}

impl Default for RawTokens {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 15 * 60,
            session_idle_timeout_secs: 14 * 24 * 3600,
            session_absolute_lifetime_secs: 30 * 24 * 3600,
            refresh_grace_secs: 10,
            clock_skew_secs: 30,
            id_token_ttl_secs: 5 * 60,
        }
    }
}

impl Default for RawKeys {
    fn default() -> Self {
        Self { rsa_bits: 2048, jwks_max_age_secs: 300, rotation_interval_days: 30, poll_interval_secs: 10 }
    }
}

impl Default for RawPasswords {
    fn default() -> Self {
        // OWASP's recommended Argon2id parameters (m=19 MiB, t=2, p=1).
        Self {
            min_length: 8,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hashing_threads: 0,
            max_queued: 0,
        }
    }
}

impl Default for RawCookie {
    fn default() -> Self {
        Self { name: "lk_refresh".into(), path: "/auth".into(), secure: true }
    }
}

/// Checked configuration. Every field holds a value the server can use as it is; the
/// sections mirror the file's, each checked by its own `TryFrom` of its raw section.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Issuer: `public_url` without a trailing slash.
    pub issuer: String,
    pub database_url: String,
    pub db_pool_size: u32,
    pub sqlite_synchronous: SqliteSynchronousMode,
    pub run_migrations: bool,
    pub master_key_file: PathBuf,
    pub audience: String,
    pub registration_enabled: bool,
    pub max_body_bytes: usize,
    pub log_json: bool,
    /// Origins (scheme://host[:port]) allowed by CORS and the CSRF check.
    pub allowed_origins: Vec<String>,
    pub tokens: Tokens,
    pub keys: Keys,
    pub passwords: Passwords,
    pub cookie: Cookie,
    pub rate_limits: RateLimits,
    pub lockout: Lockout,
    pub mfa: Mfa,
    pub operations: Operations,
    pub connections: Connections,
    pub sso: Sso,
    pub branding: Branding,
    pub backchannel_logout: BackchannelLogout,
    /// `None` when passkeys are off.
    pub passkeys: Option<Passkeys>,
    /// Self-registered accounts must verify their address before they sign in.
    pub require_verified_email: bool,
    /// `None` when no mail is configured: what needs mail is off.
    pub mail: Option<Mail>,
    pub dpop: Dpop,
}

/// Checked DPoP settings.
#[derive(Debug, Clone, Copy)]
pub struct Dpop {
    pub require_nonce: bool,
    pub nonce_window_secs: i64,
}

/// Checked mail settings.
#[derive(Debug, Clone)]
pub struct Mail {
    pub transport: MailTransport,
    /// `public_url`'s host: the name the SMTP client greets with and the domain of every
    /// Message-ID.
    pub host: String,
    pub from: lettre::message::Mailbox,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub per_address_per_hour: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTransport {
    Smtp {
        host: String,
        port: u16,
        tls: SmtpTls,
        username: Option<String>,
        password_file: Option<PathBuf>,
    },
    /// Development: each message becomes a file in `dir`.
    File {
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte (SMTPS).
    Implicit,
    /// Plain connection upgraded with STARTTLS, which is required.
    StartTls,
    /// No TLS: a relay on this machine only.
    None,
}

/// Where passkeys work: the relying party id and the origins whose pages may use them.
#[derive(Debug, Clone)]
pub struct Passkeys {
    pub rp_id: String,
    /// `public_url`'s origin first.
    pub origins: Vec<url::Url>,
    pub ceremony_ttl: Duration,
    pub refuse_counter_regression: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct BackchannelLogout {
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub concurrency: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    pub access_token_ttl: Duration,
    pub session_idle_timeout: Duration,
    pub session_absolute_lifetime: Duration,
    pub refresh_grace: Duration,
    pub clock_skew: Duration,
    pub id_token_ttl: Duration,
}

impl Tokens {
    /// The longest any token we sign stays valid: a retired key stays published this
    /// long (plus the skew) after it last signed.
    pub fn longest_signed_ttl(&self) -> Duration {
        self.access_token_ttl.max(self.id_token_ttl)
    }
}

#[derive(Debug, Clone)]
pub struct Sso {
    pub cookie_name: String,
    pub idle_timeout: Duration,
    pub absolute_lifetime: Duration,
    pub sign_in_timeout: Duration,
    pub offline_sessions_outlive_browser: bool,
}

#[derive(Debug, Clone)]
pub struct Branding {
    pub product_name: String,
    pub logo_url: Option<String>,
    pub extra_css_url: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Keys {
    pub rsa_bits: u32,
    pub jwks_max_age: Duration,
    /// Zero when scheduled rotation is off.
    pub rotation_interval: Duration,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Passwords {
    pub min_length: usize,
    pub argon2: Argon2Settings,
    pub hashing_threads: usize,
    pub max_queued: usize,
}

#[derive(Debug, Clone)]
pub struct Cookie {
    pub name: String,
    pub path: String,
    pub secure: bool,
}

#[derive(Debug, Clone)]
pub struct Mfa {
    pub totp_issuer: String,
    pub challenge_ttl: Duration,
    pub require_for_roles: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Operations {
    pub metrics_listen: Option<SocketAddr>,
    pub shutdown_grace: Duration,
    pub purge_interval: Duration,
    pub purge_batch_size: u64,
    pub ended_session_retention: Duration,
    /// Zero keeps audit events forever.
    pub audit_retention: Duration,
}

#[derive(Debug, Clone)]
pub struct RateLimits {
    pub login: Quota,
    pub register: Quota,
    pub token: Quota,
    pub refresh: Quota,
    pub totp: Quota,
    pub password_change: Quota,
    pub mail: Quota,
    pub username: Quota,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub client_ip_header: ClientIpHeader,
    pub max_tracked_keys: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Connections {
    pub header_read_timeout: Duration,
    pub keep_alive_idle: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    pub threshold: u32,
    pub base_secs: u64,
    pub max_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// Passwords longer than this are refused before hashing, to bound the work per request.
pub const PASSWORD_MAX_LENGTH: usize = 128;

impl RawConfig {
    /// Reads the optional TOML file, then the environment, rejecting unknown keys.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!("config file {} does not exist or is not a file", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database_url".into())).merge(
            // LATCHKEY_ADMIN_* belongs to the console (`latchkey-admin`), not the server.
            Env::prefixed("LATCHKEY_")
                .ignore(&["CONFIG"])
                .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("admin_"))
                .split("__"),
        );
        figment.extract().map_err(|e| ConfigError(describe_figment_error(e)))
    }

    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen: SocketAddr =
            self.listen.parse().map_err(|e| invalid("listen", format!("{:?}: {e}", self.listen)))?;
        let public_url =
            Url::parse(&self.public_url).map_err(|e| invalid("public_url", format!("{:?}: {e}", self.public_url)))?;
        if !matches!(public_url.scheme(), "http" | "https") || public_url.host().is_none() {
            return Err(invalid("public_url", "must be an http(s) URL with a host"));
        }
        if public_url.query().is_some() || public_url.fragment().is_some() {
            return Err(invalid("public_url", "must not have a query or fragment"));
        }
        let issuer = public_url.as_str().trim_end_matches('/').to_string();

        let database_url = match self.database_url {
            Some(url) => url,
            None => {
                let path = self.data_dir.join("latchkey.db");
                format!("sqlite://{}?mode=rwc", path.display())
            }
        };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid("database_url", "must start with sqlite:, postgres:// or postgresql://"));
        }
        if database_url.starts_with("postgres") {
            Url::parse(&database_url).map_err(|e| invalid("database_url", e))?;
        } else if sqlite_path(&database_url).is_none() || database_url.contains("mode=memory") {
            // Each connection of an in-memory database sees a database of its own, so
            // the pool and the inline connections would not share one.
            return Err(invalid("database_url", "an in-memory SQLite database is not supported; name a file"));
        }
        if self.db_pool_size == 0 {
            return Err(invalid("db_pool_size", "must be at least 1"));
        }
        if self.audience.trim().is_empty() {
            return Err(invalid("audience", "must not be empty"));
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid("max_body_bytes", "must be at least 1024"));
        }
        let log_json = match self.log_format.as_str() {
            "human" => false,
            "json" => true,
            other => {
                return Err(invalid("log_format", format!("{other:?} (expected human or json)")));
            }
        };
        let mut allowed_origins = Vec::new();
        for origin in &self.cors_allowed_origins {
            allowed_origins.push(normalise_origin(origin).ok_or_else(|| {
                invalid("cors_allowed_origins", format!("{origin:?} is not an origin like https://app.example.com"))
            })?);
        }

        Ok(Config {
            listen,
            issuer,
            database_url,
            db_pool_size: self.db_pool_size,
            sqlite_synchronous: self.sqlite_synchronous,
            run_migrations: self.run_migrations,
            master_key_file: self.master_key_file,
            audience: self.audience,
            registration_enabled: self.registration_enabled,
            max_body_bytes: self.max_body_bytes,
            log_json,
            allowed_origins,
            tokens: Tokens::try_from(&self.tokens)?,
            keys: Keys::try_from(&self.keys)?,
            passwords: Passwords::try_from(&self.passwords)?,
            cookie: Cookie::checked(&self.cookie, &public_url)?,
            rate_limits: RateLimits::try_from(&self.rate_limits)?,
            lockout: Lockout::try_from(&self.lockout)?,
            mfa: Mfa::try_from(&self.mfa)?,
            operations: Operations::try_from(&self.operations)?,
            connections: Connections::try_from(&self.connections)?,
            sso: Sso::checked(&self.sso, &self.cookie)?,
            branding: Branding::try_from(&self.branding)?,
            backchannel_logout: BackchannelLogout::try_from(&self.backchannel_logout)?,
            passkeys: Passkeys::checked(&self.passkeys, &public_url)?,
            require_verified_email: self.registration.require_verified_email,
            mail: self.mail.as_ref().map(|m| Mail::checked(m, &public_url)).transpose()?,
            dpop: Dpop::try_from(&self.dpop)?,
        })
        .and_then(|config| {
            if config.require_verified_email && config.mail.is_none() {
                return Err(invalid("registration.require_verified_email", "needs mail to be configured"));
            }
            Ok(config)
        })
    }
}

/// The longest refresh grace window accepted: long enough for a client to retry a lost
/// answer, short enough that a rotated token is not a second credential.
pub const MAX_REFRESH_GRACE_SECS: u64 = 60;

/// A number of seconds that must not be zero, as a duration.
fn positive(key: &str, secs: u64) -> Result<Duration, ConfigError> {
    if secs == 0 { Err(invalid(key, "must be greater than 0")) } else { Ok(Duration::from_secs(secs)) }
}

const DAY: u64 = 24 * 3600;

impl TryFrom<&RawTokens> for Tokens {
    type Error = ConfigError;

    fn try_from(t: &RawTokens) -> Result<Self, ConfigError> {
        let session_idle_timeout = positive("tokens.session_idle_timeout_secs", t.session_idle_timeout_secs)?;
        let session_absolute_lifetime =
            positive("tokens.session_absolute_lifetime_secs", t.session_absolute_lifetime_secs)?;
        if session_idle_timeout > session_absolute_lifetime {
            return Err(invalid(
                "tokens.session_idle_timeout_secs",
                "must not exceed tokens.session_absolute_lifetime_secs",
            ));
        }
        if t.refresh_grace_secs > MAX_REFRESH_GRACE_SECS {
            return Err(invalid(
                "tokens.refresh_grace_secs",
                format!(
                    "must be at most {MAX_REFRESH_GRACE_SECS} (whoever holds a rotated token can use it that long)"
                ),
            ));
        }
        Ok(Tokens {
            access_token_ttl: positive("tokens.access_token_ttl_secs", t.access_token_ttl_secs)?,
            session_idle_timeout,
            session_absolute_lifetime,
            refresh_grace: Duration::from_secs(t.refresh_grace_secs),
            clock_skew: Duration::from_secs(t.clock_skew_secs),
            id_token_ttl: positive("tokens.id_token_ttl_secs", t.id_token_ttl_secs)?,
        })
    }
}

impl TryFrom<&RawKeys> for Keys {
    type Error = ConfigError;

    fn try_from(k: &RawKeys) -> Result<Self, ConfigError> {
        if !matches!(k.rsa_bits, 2048 | 3072 | 4096) {
            return Err(invalid("keys.rsa_bits", "must be 2048, 3072 or 4096"));
        }
        Ok(Keys {
            rsa_bits: k.rsa_bits,
            jwks_max_age: positive("keys.jwks_max_age_secs", k.jwks_max_age_secs)?,
            rotation_interval: Duration::from_secs(k.rotation_interval_days * DAY),
            poll_interval: positive("keys.poll_interval_secs", k.poll_interval_secs)?,
        })
    }
}

impl TryFrom<&RawPasswords> for Passwords {
    type Error = ConfigError;

    fn try_from(p: &RawPasswords) -> Result<Self, ConfigError> {
        if !(8..=PASSWORD_MAX_LENGTH).contains(&p.min_length) {
            return Err(invalid("passwords.min_length", format!("must be between 8 and {PASSWORD_MAX_LENGTH}")));
        }
        let argon2 = Argon2Settings {
            memory_kib: p.argon2_memory_kib,
            iterations: p.argon2_iterations,
            parallelism: p.argon2_parallelism,
        };
        argon2::Params::new(argon2.memory_kib, argon2.iterations, argon2.parallelism, None)
            .map_err(|e| invalid("passwords.argon2_*", e))?;
        let hashing_threads = match p.hashing_threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        };
        let max_queued = match p.max_queued {
            0 => hashing_threads * 64,
            n => n,
        };
        Ok(Passwords { min_length: p.min_length, argon2, hashing_threads, max_queued })
    }
}

impl Cookie {
    /// `secure = false` is allowed only for a loopback `public_url`.
    fn checked(c: &RawCookie, public_url: &Url) -> Result<Self, ConfigError> {
        if c.name.is_empty() || !c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-".contains(ch)) {
            return Err(invalid("cookie.name", "must be non-empty ASCII letters, digits, '_' or '-'"));
        }
        if !c.path.starts_with('/') {
            return Err(invalid("cookie.path", "must start with '/'"));
        }
        if !c.secure && !is_loopback_http(public_url) {
            return Err(invalid(
                "cookie.secure",
                "may be false only when public_url is http://localhost or a loopback address",
            ));
        }
        Ok(Cookie { name: c.name.clone(), path: c.path.clone(), secure: c.secure })
    }
}

impl Sso {
    fn checked(s: &RawSso, refresh_cookie: &RawCookie) -> Result<Self, ConfigError> {
        if s.cookie_name.is_empty() || !s.cookie_name.chars().all(|ch| ch.is_ascii_alphanumeric() || "_-".contains(ch))
        {
            return Err(invalid("sso.cookie_name", "must be non-empty ASCII letters, digits, '_' or '-'"));
        }
        if s.cookie_name == refresh_cookie.name || s.cookie_name == crate::api::pages::BROWSER_COOKIE {
            return Err(invalid("sso.cookie_name", "must differ from the other cookies' names"));
        }
        let idle_timeout = positive("sso.idle_timeout_secs", s.idle_timeout_secs)?;
        let absolute_lifetime = positive("sso.absolute_lifetime_secs", s.absolute_lifetime_secs)?;
        if idle_timeout > absolute_lifetime {
            return Err(invalid("sso.idle_timeout_secs", "must not exceed sso.absolute_lifetime_secs"));
        }
        Ok(Sso {
            cookie_name: s.cookie_name.clone(),
            idle_timeout,
            absolute_lifetime,
            sign_in_timeout: positive("sso.sign_in_timeout_secs", s.sign_in_timeout_secs)?,
            offline_sessions_outlive_browser: s.offline_sessions_outlive_browser,
        })
    }
}

impl TryFrom<&RawBranding> for Branding {
    type Error = ConfigError;

    fn try_from(b: &RawBranding) -> Result<Self, ConfigError> {
        let name = b.product_name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(invalid("branding.product_name", "must be 1-64 characters"));
        }
        // The pages' Content-Security-Policy allows these origins for images and styles.
        let check = |key: &str, url: &Option<String>| -> Result<Option<String>, ConfigError> {
            let Some(url) = url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else { return Ok(None) };
            let parsed = Url::parse(url).map_err(|_| invalid(key, "must be an absolute https URL"))?;
            if parsed.scheme() != "https" && !is_loopback_http(&parsed) {
                return Err(invalid(key, "must be an https URL"));
            }
            Ok(Some(parsed.to_string()))
        };
        Ok(Branding {
            product_name: name.to_string(),
            logo_url: check("branding.logo_url", &b.logo_url)?,
            extra_css_url: check("branding.extra_css_url", &b.extra_css_url)?,
        })
    }
}

impl TryFrom<&RawRateLimits> for RateLimits {
    type Error = ConfigError;

    fn try_from(r: &RawRateLimits) -> Result<Self, ConfigError> {
        for (key, quota) in [
            ("login", r.login),
            ("register", r.register),
            ("token", r.token),
            ("refresh", r.refresh),
            ("totp", r.totp),
            ("password_change", r.password_change),
            ("mail", r.mail),
            ("username", r.username),
        ] {
            if quota.per_minute == 0 || quota.burst == 0 {
                return Err(invalid(&format!("rate_limits.{key}"), "per_minute and burst must be greater than 0"));
            }
        }
        let mut trusted_proxies = Vec::new();
        for cidr in &r.trusted_proxies {
            let net = cidr
                .parse::<ipnet::IpNet>()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid("rate_limits.trusted_proxies", format!("{cidr:?} is not an IP address or CIDR"))
                })?;
            trusted_proxies.push(net);
        }
        Ok(RateLimits {
            login: r.login,
            register: r.register,
            token: r.token,
            refresh: r.refresh,
            totp: r.totp,
            password_change: r.password_change,
            mail: r.mail,
            username: r.username,
            trusted_proxies,
            client_ip_header: r.client_ip_header,
            max_tracked_keys: r.max_tracked_keys.max(1000),
        })
    }
}

impl TryFrom<&RawConnections> for Connections {
    type Error = ConfigError;

    fn try_from(n: &RawConnections) -> Result<Self, ConfigError> {
        if n.max_connections == 0 || n.max_connections_per_ip == 0 {
            return Err(invalid("connections", "max_connections and max_connections_per_ip must be greater than 0"));
        }
        Ok(Connections {
            header_read_timeout: positive("connections.header_read_timeout_secs", n.header_read_timeout_secs)?,
            keep_alive_idle: positive("connections.keep_alive_idle_secs", n.keep_alive_idle_secs)?,
            max_connections: n.max_connections,
            max_connections_per_ip: n.max_connections_per_ip,
        })
    }
}

impl TryFrom<&RawLockout> for Lockout {
    type Error = ConfigError;

    fn try_from(l: &RawLockout) -> Result<Self, ConfigError> {
        if l.threshold > 0 && (l.base_secs == 0 || l.max_secs < l.base_secs) {
            return Err(invalid("lockout", "base_secs must be > 0 and max_secs >= base_secs"));
        }
        Ok(Lockout { threshold: l.threshold, base_secs: l.base_secs, max_secs: l.max_secs })
    }
}

impl TryFrom<&RawMfa> for Mfa {
    type Error = ConfigError;

    fn try_from(m: &RawMfa) -> Result<Self, ConfigError> {
        if m.totp_issuer.is_empty() || m.totp_issuer.contains(':') {
            return Err(invalid("mfa.totp_issuer", "must be non-empty and contain no ':'"));
        }
        Ok(Mfa {
            totp_issuer: m.totp_issuer.clone(),
            challenge_ttl: positive("mfa.challenge_ttl_secs", m.challenge_ttl_secs)?,
            require_for_roles: m.require_for_roles.clone(),
        })
    }
}

impl Passkeys {
    /// Passkeys where `public_url` allows them: WebAuthn binds them to a domain, so a
    /// public URL on an IP address (the default `http://127.0.0.1:8080`) leaves them off
    /// unless `rp_id` names one, which would then have to be the host the browser uses.
    fn checked(p: &RawPasskeys, public_url: &url::Url) -> Result<Option<Self>, ConfigError> {
        if !p.enabled {
            return Ok(None);
        }
        let ceremony_ttl = positive("passkeys.ceremony_ttl_secs", p.ceremony_ttl_secs)?;
        if ceremony_ttl > Duration::from_secs(3600) {
            return Err(invalid("passkeys.ceremony_ttl_secs", "must be at most 3600"));
        }
        let Some(host) = public_url.domain() else {
            if p.rp_id.is_some() {
                return Err(invalid("passkeys.rp_id", "public_url must name a domain, not an IP address"));
            }
            return Ok(None);
        };
        let rp_id = p.rp_id.clone().unwrap_or_else(|| host.to_ascii_lowercase());
        let on_rp_id = |url: &url::Url| {
            url.domain().is_some_and(|d| {
                let d = d.to_ascii_lowercase();
                d == rp_id || d.ends_with(&format!(".{rp_id}"))
            })
        };
        if rp_id.is_empty() || rp_id.contains(['/', ':']) || !on_rp_id(public_url) {
            return Err(invalid("passkeys.rp_id", format!("{rp_id:?} is not public_url's host or a suffix of it")));
        }
        let mut origins = vec![origin_url(public_url)];
        for origin in &p.extra_origins {
            let url = normalise_origin(origin).and_then(|o| url::Url::parse(&o).ok()).filter(|u| on_rp_id(u));
            let url = url.ok_or_else(|| {
                invalid("passkeys.extra_origins", format!("{origin:?} is not an origin on the domain {rp_id}"))
            })?;
            origins.push(url);
        }
        Ok(Some(Passkeys { rp_id, origins, ceremony_ttl, refuse_counter_regression: p.refuse_counter_regression }))
    }
}

impl Mail {
    fn checked(m: &RawMail, public_url: &Url) -> Result<Self, ConfigError> {
        let from: lettre::message::Mailbox =
            m.from.parse().map_err(|e| invalid("mail.from", format!("{:?} is not a mailbox: {e}", m.from)))?;
        if !(1..=30).contains(&m.max_attempts) {
            return Err(invalid("mail.max_attempts", "must be 1-30"));
        }
        if m.timeout_secs > 120 {
            return Err(invalid("mail.timeout_secs", "must be at most 120"));
        }
        if m.per_address_per_hour == 0 {
            return Err(invalid("mail.per_address_per_hour", "must be greater than 0"));
        }
        let retry_base = positive("mail.retry_base_secs", m.retry_base_secs)?;
        let retry_max = positive("mail.retry_max_secs", m.retry_max_secs)?;
        if retry_base > retry_max || retry_max > Duration::from_secs(7 * DAY) {
            return Err(invalid("mail.retry_base_secs", "must not exceed retry_max_secs (at most 7 days)"));
        }
        let transport = match m.transport.as_str() {
            "file" => {
                // Development only: the messages (reset links among them) lie on disk.
                if !is_loopback_http(public_url) {
                    return Err(invalid(
                        "mail.transport",
                        "\"file\" is allowed only when public_url is http://localhost or a loopback address",
                    ));
                }
                let dir = m.dir.clone().ok_or_else(|| invalid("mail.dir", "the file transport needs a directory"))?;
                MailTransport::File { dir }
            }
            "smtp" => {
                let raw = m.smtp_url.as_deref().ok_or_else(|| invalid("mail.smtp_url", "is required for smtp"))?;
                let url = Url::parse(raw).map_err(|e| invalid("mail.smtp_url", e))?;
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(invalid("mail.smtp_url", "must not hold credentials: use username and password_file"));
                }
                let host =
                    url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| invalid("mail.smtp_url", "needs a host"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
                let (default_tls, default_port) = match url.scheme() {
                    "smtp" => (SmtpTls::StartTls, 587),
                    "smtps" => (SmtpTls::Implicit, 465),
                    other => {
                        return Err(invalid("mail.smtp_url", format!("scheme {other:?} (expected smtp or smtps)")));
                    }
                };
                let tls = match m.tls.as_deref() {
                    None => default_tls,
                    Some("implicit") => SmtpTls::Implicit,
                    Some("starttls") => SmtpTls::StartTls,
                    Some("none") => SmtpTls::None,
                    Some(other) => {
                        return Err(invalid("mail.tls", format!("{other:?} (expected implicit, starttls or none)")));
                    }
                };
                let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if tls == SmtpTls::None && !loopback {
                    return Err(invalid("mail.tls", "\"none\" (plain text) is allowed only to a relay on loopback"));
                }
                if m.username.is_some() != m.password_file.is_some() {
                    return Err(invalid("mail.username", "username and password_file go together"));
                }
                if m.username.is_some() && tls == SmtpTls::None {
                    return Err(invalid("mail.tls", "a password is never sent without TLS"));
                }
                MailTransport::Smtp {
                    host,
                    port: url.port().unwrap_or(default_port),
                    tls,
                    username: m.username.clone(),
                    password_file: m.password_file.clone(),
                }
            }
            other => return Err(invalid("mail.transport", format!("{other:?} (expected smtp or file)"))),
        };
        Ok(Mail {
            transport,
            host: public_url.host_str().unwrap_or("localhost").trim_matches(['[', ']']).to_string(),
            from,
            timeout: positive("mail.timeout_secs", m.timeout_secs)?,
            max_attempts: m.max_attempts,
            retry_base,
            retry_max,
            per_address_per_hour: m.per_address_per_hour,
        })
    }
}

/// The origin (scheme, host, port) of `url`, as a URL.
fn origin_url(url: &url::Url) -> url::Url {
    url::Url::parse(&url.origin().ascii_serialization()).unwrap_or_else(|_| url.clone())
}

impl TryFrom<&RawDpop> for Dpop {
    type Error = ConfigError;

    fn try_from(d: &RawDpop) -> Result<Self, ConfigError> {
        // A proof's iat may be 300 s old; a nonce that outlived that would add nothing.
        if !(10..=300).contains(&d.nonce_window_secs) {
            return Err(invalid("dpop.nonce_window_secs", "must be 10-300"));
        }
        Ok(Self { require_nonce: d.require_nonce, nonce_window_secs: d.nonce_window_secs as i64 })
    }
}

impl TryFrom<&RawBackchannelLogout> for BackchannelLogout {
    type Error = ConfigError;

    fn try_from(b: &RawBackchannelLogout) -> Result<Self, ConfigError> {
        if !(1..=30).contains(&b.max_attempts) {
            return Err(invalid("backchannel_logout.max_attempts", "must be 1-30"));
        }
        if !(1..=256).contains(&b.concurrency) {
            return Err(invalid("backchannel_logout.concurrency", "must be 1-256"));
        }
        if b.timeout_secs > 60 {
            return Err(invalid("backchannel_logout.timeout_secs", "must be at most 60"));
        }
        let retry_base = positive("backchannel_logout.retry_base_secs", b.retry_base_secs)?;
        let retry_max = positive("backchannel_logout.retry_max_secs", b.retry_max_secs)?;
        if retry_max > Duration::from_secs(7 * DAY) {
            return Err(invalid("backchannel_logout.retry_max_secs", "must be at most 7 days (604800)"));
        }
        if retry_base > retry_max {
            return Err(invalid("backchannel_logout.retry_base_secs", "must not exceed retry_max_secs"));
        }
        Ok(BackchannelLogout {
            timeout: positive("backchannel_logout.timeout_secs", b.timeout_secs)?,
            max_attempts: b.max_attempts,
            retry_base,
            retry_max,
            concurrency: b.concurrency,
        })
    }
}

impl TryFrom<&RawOperations> for Operations {
    type Error = ConfigError;

    fn try_from(o: &RawOperations) -> Result<Self, ConfigError> {
        let metrics_listen = match &o.metrics_listen {
            Some(addr) => Some(
                addr.parse::<SocketAddr>()
                    .map_err(|e| invalid("operations.metrics_listen", format!("{addr:?}: {e}")))?,
            ),
            None => None,
        };
        if o.purge_batch_size == 0 {
            return Err(invalid("operations.purge_batch_size", "must be greater than 0"));
        }
        Ok(Operations {
            metrics_listen,
            shutdown_grace: Duration::from_secs(o.shutdown_grace_secs),
            purge_interval: positive("operations.purge_interval_secs", o.purge_interval_secs)?,
            purge_batch_size: o.purge_batch_size,
            ended_session_retention: Duration::from_secs(o.ended_session_retention_days * DAY),
            audit_retention: Duration::from_secs(o.audit_retention_days * DAY),
        })
    }
}

impl Config {
    /// Loads and validates in one step, as every command does.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        RawConfig::load(file)?.validate()
    }

    /// The SQLite file's directory, if the database is a SQLite file, so it can be created.
    pub fn sqlite_parent_dir(&self) -> Option<PathBuf> {
        self.sqlite_file()?.parent().filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf)
    }

    /// The SQLite database file, if the database is a SQLite file.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        sqlite_path(&self.database_url)
    }
}

/// The file of a `sqlite:` URL; `None` for another engine or an in-memory database.
fn sqlite_path(database_url: &str) -> Option<PathBuf> {
    let rest = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// `scheme://host[:port]` exactly as browsers send it in `Origin`, or `None`.
pub fn normalise_origin(origin: &str) -> Option<String> {
    let url = Url::parse(origin).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

fn is_loopback_http(url: &Url) -> bool {
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn describe_figment_error(error: figment::Error) -> String {
    // figment reports one error per problem; name each key and where it came from.
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() { String::new() } else { format!(" at `{}`", e.path.join(".")) };
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(src) => format!(" (from {} {src})", m.name),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            format!("{}{key}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let config = RawConfig::default().validate().expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.issuer, "http://127.0.0.1:8080");
        assert!(config.database_url.starts_with("sqlite://data/latchkey.db"));
        assert_eq!(config.tokens.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.passwords.argon2, Argon2Settings { memory_kib: 19_456, iterations: 2, parallelism: 1 });
    }

    #[test]
    fn the_refresh_grace_window_is_bounded() {
        let mut raw = RawConfig::default();
        raw.tokens.refresh_grace_secs = MAX_REFRESH_GRACE_SECS;
        assert!(raw.clone().validate().is_ok());
        raw.tokens.refresh_grace_secs = MAX_REFRESH_GRACE_SECS + 1;
        assert!(raw.validate().unwrap_err().0.contains("tokens.refresh_grace_secs"));
    }

    #[test]
    fn in_memory_sqlite_is_refused() {
        for url in ["sqlite::memory:", "sqlite://:memory:", "sqlite:", "sqlite://file.db?mode=memory"] {
            let raw = RawConfig { database_url: Some(url.into()), ..Default::default() };
            let err = raw.validate().unwrap_err();
            assert!(err.0.contains("in-memory"), "{url}: {err}");
        }
        let raw = RawConfig { database_url: Some("sqlite://data/x.db?mode=rwc".into()), ..Default::default() };
        assert!(raw.validate().is_ok());
    }

    #[test]
    fn zero_ttl_is_rejected_with_its_key() {
        let mut raw = RawConfig::default();
        raw.tokens.access_token_ttl_secs = 0;
        let err = raw.validate().unwrap_err();
        assert!(err.0.contains("tokens.access_token_ttl_secs"), "{err}");
    }

    fn mail(transport: &str) -> RawMail {
        RawMail { transport: transport.into(), from: "Latchkey <no-reply@example.com>".into(), ..Default::default() }
    }

    #[test]
    fn mail_is_checked_and_plain_smtp_goes_to_loopback_only() {
        let with = |m: RawMail, public_url: &str| {
            RawConfig { mail: Some(m), public_url: public_url.into(), ..Default::default() }.validate()
        };
        let local = "http://127.0.0.1:8080";
        let smtp = |url: &str, tls: Option<&str>| RawMail {
            smtp_url: Some(url.into()),
            tls: tls.map(str::to_string),
            ..mail("smtp")
        };
        let checked = with(smtp("smtp://127.0.0.1:2525", Some("none")), local).unwrap().mail.unwrap();
        assert_eq!(
            checked.transport,
            MailTransport::Smtp {
                host: "127.0.0.1".into(),
                port: 2525,
                tls: SmtpTls::None,
                username: None,
                password_file: None
            }
        );
        let relay = with(smtp("smtps://mail.example.com", None), local).unwrap().mail.unwrap();
        assert!(matches!(relay.transport, MailTransport::Smtp { port: 465, tls: SmtpTls::Implicit, .. }));
        let relay = with(smtp("smtp://mail.example.com", None), local).unwrap().mail.unwrap();
        assert!(matches!(relay.transport, MailTransport::Smtp { port: 587, tls: SmtpTls::StartTls, .. }));
        for (m, key) in [
            (smtp("smtp://mail.example.com", Some("none")), "mail.tls"),
            (smtp("smtp://user:pw@mail.example.com", None), "mail.smtp_url"),
            (smtp("http://mail.example.com", None), "mail.smtp_url"),
            (RawMail { username: Some("u".into()), ..smtp("smtp://mail.example.com", None) }, "mail.username"),
            (RawMail { from: "not a mailbox".into(), ..smtp("smtp://mail.example.com", None) }, "mail.from"),
            (mail("smtp"), "mail.smtp_url"),
            (mail("pigeon"), "mail.transport"),
            (mail("file"), "mail.dir"),
        ] {
            let err = with(m, local).unwrap_err();
            assert!(err.0.contains(key), "{key}: {err}");
        }
        let file = RawMail { dir: Some("outbox".into()), ..mail("file") };
        assert!(with(file.clone(), local).is_ok());
        assert!(with(file, "https://auth.example.com").unwrap_err().0.contains("mail.transport"));
        let needs_mail =
            RawConfig { registration: RawRegistration { require_verified_email: true }, ..Default::default() };
        assert!(needs_mail.validate().unwrap_err().0.contains("registration.require_verified_email"));
    }

    #[test]
    fn insecure_cookie_only_on_loopback() {
        let mut raw = RawConfig::default();
        raw.cookie.secure = false;
        assert!(raw.clone().validate().is_ok());
        raw.public_url = "http://auth.example.com".into();
        assert!(raw.validate().unwrap_err().0.contains("cookie.secure"));
    }

    #[test]
    fn origins_are_normalised() {
        assert_eq!(normalise_origin("https://App.example.com").as_deref(), Some("https://app.example.com"));
        assert_eq!(normalise_origin("http://127.0.0.1:5173/").as_deref(), Some("http://127.0.0.1:5173"));
        assert_eq!(normalise_origin("https://a.example.com/path"), None);
        assert_eq!(normalise_origin("*"), None);
    }

    #[test]
    fn sqlite_parent_dir_is_found() {
        let config = RawConfig::default().validate().unwrap();
        assert_eq!(config.sqlite_parent_dir(), Some(PathBuf::from("data")));
    }
}
