//! Shared server state: configuration, database pool, key ring, password hasher,
//! master key and clock. Cheap to clone.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::security::master_key::MasterKey;
use crate::security::password::PasswordHasher;
use crate::security::rate_limit::Limiters;
use crate::store::Db;
use crate::tokens::KeyRing;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    /// The engine's implementation of the token paths' storage seam.
    pub tokens: crate::store::Engine,
    pub keys: KeyRing,
    pub passwords: PasswordHasher,
    pub limits: Limiters,
    pub metrics: crate::metrics::Metrics,
    /// Names this process in job leases.
    pub node_id: String,
    pub master_key: MasterKey,
    pub clock: SharedClock,
    /// The WebAuthn relying party; `None` when passkeys are off (see `config.passkeys`).
    pub webauthn: Option<webauthn_rs::Webauthn>,
    /// Where mail goes; `None` when no mail is configured (see `config.mail`).
    pub mailer: Option<Box<dyn crate::mail::Mailer>>,
    /// Password reset lookups running after their answers (see `domain::reset`).
    pub reset_lookups: std::sync::Arc<tokio::sync::Semaphore>,
    /// DPoP nonces, under a key every node derives from the master key.
    pub dpop_nonces: crate::security::dpop::Nonces,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    pub fn now(&self) -> i64 {
        self.0.clock.now()
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
