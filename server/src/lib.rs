//! Latchkey server.
//!
//! Layout (each module's docs say what it owns):
//! - [`api`]: poem-openapi handlers (thin), the error → response mapping, the route facts
//!   (CSRF, rate-limit buckets) each operation declares, the OpenAPI document.
//! - [`domain`]: the rules — login and lockout, sessions and refresh rotation, key
//!   lifecycle, OAuth grants. No HTTP; the decisions are pure functions of their inputs
//!   and `now`, unit-tested beside them.
//! - [`store`]: sea-orm entities and every query; transactions live here. The token
//!   paths go through one trait ([`store::TokenStore`]) with one module per engine.
//! - [`tokens`], [`security`]: cryptography — JWTs and keys; passwords, secrets, master key.
//! - [`config`], [`clock`], [`state`]: checked settings, injectable time, shared state.
//! - [`cli`]: the `latchkey` command line.
//! - [`listener`]: connection caps and the request-header deadline.
//! - [`mail`]: what each mail message says, and the transports it leaves by.
//!
//! [`serve`] takes a listener the caller bound, so tests bind `127.0.0.1:0`.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod fuzzing;
pub mod listener;
pub mod mail;
pub mod metrics;
pub mod security;
pub mod state;
pub mod store;
pub mod tokens;

use std::future::Future;
use std::time::Duration;

use poem::listener::{Acceptor, TcpAcceptor};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::security::master_key::{MasterKey, MasterKeyError};
use crate::security::password::{HashError, PasswordHasher};
use crate::security::rate_limit::Limiters;
use crate::state::{AppState, Inner};
use crate::tokens::KeyRing;

/// Why the server could not start. Each renders as one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error("cannot open database: {0}")]
    Database(sea_orm::DbErr),
    #[error("cannot open the database's inline connections: {0}")]
    Store(store::StoreError),
    #[error("database migration failed: {0}")]
    Migration(sea_orm::DbErr),
    #[error("the database needs {0} migration(s); run `latchkey migrate` or enable run_migrations")]
    PendingMigrations(usize),
    #[error(transparent)]
    Keys(#[from] domain::keys::KeySetupError),
    #[error("password hasher: {0}")]
    Hasher(#[from] HashError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("start-up check failed: {0}")]
    Startup(domain::Error),
}

impl StartupError {
    /// Exit code: 2 for problems the operator fixes in configuration or files.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Config(_) | StartupError::MasterKey(_) | StartupError::PendingMigrations(_) => 2,
            StartupError::Keys(domain::keys::KeySetupError::WrongMasterKey { .. }) => 2,
            _ => 1,
        }
    }
}

/// Opens the database (running migrations if configured) and returns the pool.
pub async fn open_database(config: &Config) -> Result<store::Db, StartupError> {
    let db = store::connect(config).await.map_err(StartupError::Database)?;
    if config.run_migrations {
        store::migrate_up(&db).await.map_err(StartupError::Migration)?;
    } else {
        let pending = store::pending_migrations(&db).await.map_err(StartupError::Database)?;
        if pending > 0 {
            return Err(StartupError::PendingMigrations(pending));
        }
    }
    Ok(db)
}

/// Builds the shared state: master key, database, signing keys, password hasher.
pub async fn build_state(config: Config, clock: SharedClock) -> Result<AppState, StartupError> {
    let (master_key, created) = MasterKey::load_or_create(&config.master_key_file)?;
    if created {
        tracing::info!(path = %config.master_key_file.display(), "generated a new master key");
    }
    let db = open_database(&config).await?;
    if domain::keys::ensure_active_key(&db, &master_key, config.keys.rsa_bits, clock.now()).await? {
        tracing::info!(bits = config.keys.rsa_bits, "generated the first signing key");
    }
    let key_set = domain::keys::load_key_set(&db, &master_key, &config, clock.now()).await?;
    let passwords =
        PasswordHasher::new(config.passwords.argon2, config.passwords.hashing_threads, config.passwords.max_queued)?;
    let limits = Limiters::new(&config.rate_limits, clock.clone());
    let metrics = metrics::Metrics::new()?;
    // One reader per core that can run a request at once, and two to spare.
    let readers = std::thread::available_parallelism().map_or(2, |n| n.get()) + 2;
    let tokens = store::Engine::for_database(&db, readers, &config, &metrics).map_err(StartupError::Store)?;
    let webauthn = match &config.passkeys {
        Some(passkeys) => Some(
            security::passkeys::relying_party(passkeys, &config.branding.product_name)
                .map_err(|e| StartupError::Config(config::ConfigError(format!("invalid `passkeys`: {e}"))))?,
        ),
        None => None,
    };
    let mailer = match &config.mail {
        Some(mail) => Some(
            mail::mailer(mail)
                .map_err(|e| StartupError::Config(config::ConfigError(format!("invalid `mail`: {e}"))))?,
        ),
        None => None,
    };
    let dpop_nonces = security::dpop::Nonces::new(
        master_key.hmac_key(security::dpop::NONCE_KEY_PURPOSE),
        config.dpop.nonce_window_secs,
    );
    let state = AppState::new(Inner {
        config,
        db,
        tokens,
        keys: KeyRing::new(key_set),
        passwords,
        limits,
        master_key,
        clock,
        metrics,
        node_id: uuid::Uuid::new_v4().to_string(),
        webauthn,
        mailer,
        reset_lookups: std::sync::Arc::new(tokio::sync::Semaphore::new(domain::reset::LOOKUPS_AT_ONCE)),
        dpop_nonces,
    });
    domain::users::check_confusables_at_startup(&state).await.map_err(StartupError::Startup)?;
    domain::passkeys::check_policy_roles_at_startup(&state).await.map_err(StartupError::Startup)?;
    Ok(state)
}

/// Serves until `shutdown` resolves, then drains in-flight requests for up to
/// `drain` before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    if let Some(addr) = acceptor.local_addr().first().and_then(|a| a.as_socket_addr().copied()) {
        tracing::info!(%addr, issuer = %state.config.issuer, "listening");
    }
    let db = state.db.clone();
    // The server, not the CLI (whose public URL may be another), knows the issuer.
    if let Err(e) = domain::clients::ensure_account_client(&state).await {
        tracing::warn!(error = %e, "the account page's client could not be pointed at this issuer");
    }
    let jobs = tokio::spawn(domain::maintenance::run_forever(state.clone()));
    let deliveries = tokio::spawn(domain::backchannel::run_forever(state.clone()));
    let mail = state.mailer.is_some().then(|| tokio::spawn(domain::mail::run_forever(state.clone())));
    let metrics_server = match state.config.operations.metrics_listen {
        Some(addr) => {
            let listener = poem::listener::TcpListener::bind(addr);
            let app = api::metrics_app(state.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = poem::Server::new(listener).run(app).await {
                    tracing::error!(error = %e, %addr, "metrics listener failed");
                }
            }))
        }
        None => None,
    };
    let connections = state.config.connections;
    let acceptor = listener::LimitedAcceptor::new(
        acceptor,
        listener::ConnectionLimits {
            header_read_timeout: connections.header_read_timeout,
            max_connections: connections.max_connections,
            max_connections_per_ip: connections.max_connections_per_ip,
            trusted_proxies: state.config.rate_limits.trusted_proxies.clone(),
        },
    );
    let result = poem::Server::new_with_acceptor(acceptor)
        .idle_timeout(connections.keep_alive_idle)
        .run_with_graceful_shutdown(api::app(state), shutdown, Some(drain))
        .await;
    jobs.abort();
    deliveries.abort();
    if let Some(task) = mail {
        task.abort();
    }
    if let Some(task) = metrics_server {
        task.abort();
    }
    if let Err(e) = db.close().await {
        tracing::warn!(error = %e, "closing the database pool failed");
    }
    result
}
