//! Signing-key lifecycle: `pending → active → retired` (or `revoked` in an emergency).
//!
//! - A new key (scheduled rotation, `latchkey keys rotate`, `POST /admin/keys/rotate`,
//!   `latchkey keys import`) starts `pending`: published in the JWKS but not signing.
//! - After `jwks_max_age` (the time verifiers may cache the JWKS) it becomes `active`
//!   and the previous key `retired`, so no verifier meets a `kid` it has not seen.
//! - A retired key stays published for the longest access-token lifetime plus clock
//!   skew — until every token it signed has expired — then leaves the JWKS, and its
//!   private part is erased.
//! - A `revoked` key leaves the JWKS at once; tokens it signed stop verifying.
//!
//! Every node runs [`maintain`] on a timer: transitions are compare-and-swap updates
//! guarded by unique indexes (one active, one pending), so exactly one node performs
//! each, and every node reloads the key set, so all pick up changes within one poll.

use crate::config::Config;
use crate::security::master_key::MasterKey;
use crate::state::AppState;
use crate::store::audit::NewAuditEvent;
use crate::store::entities::KeyState;
use crate::store::keys::{self, SigningKeyRow};
use crate::store::{Db, StoreError};
use crate::tokens::keys::{KeyError, KeyMaterial, KeySet, PublishedKey};
use latchkey_codes::ErrorCode;

use super::Error;

#[derive(Debug, thiserror::Error)]
pub enum KeySetupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "cannot decrypt signing key {kid}: the master key does not match the one this database was created with \
         (check master_key_file)"
    )]
    WrongMasterKey { kid: String },
}

fn encryption_context(kid: &str) -> String {
    format!("latchkey:signing_key:{kid}")
}

/// Generates, encrypts and stores a key in `state`.
pub async fn create_key(
    db: &Db,
    master_key: &MasterKey,
    bits: u32,
    state: KeyState,
    now: i64,
) -> Result<SigningKeyRow, KeySetupError> {
    let material =
        tokio::task::spawn_blocking(move || KeyMaterial::generate(bits)).await.map_err(|_| KeyError::Generation)??;
    store_key(db, master_key, &material, state, now).await
}

async fn store_key(
    db: &Db,
    master_key: &MasterKey,
    material: &KeyMaterial,
    state: KeyState,
    now: i64,
) -> Result<SigningKeyRow, KeySetupError> {
    let der = material.pkcs8_der()?;
    let (n, e) = material.public_components();
    let row = SigningKeyRow {
        kid: material.kid().to_string(),
        algorithm: "RS256".into(),
        bits: material.bits() as i32,
        state,
        public_n: n.into(),
        public_e: e.into(),
        private_key_encrypted: master_key.encrypt(&encryption_context(material.kid()), &der),
        created_at: now,
        activated_at: (state == KeyState::Active).then_some(now),
        retired_at: None,
    };
    keys::insert(db, row.clone()).await?;
    Ok(row)
}

/// On first start there is no key: create the first one directly active (no token can
/// have been issued, so no verifier needs it in advance). Returns whether one was made.
pub async fn ensure_active_key(db: &Db, master_key: &MasterKey, bits: u32, now: i64) -> Result<bool, KeySetupError> {
    if keys::active(db).await?.is_some() {
        return Ok(false);
    }
    match create_key(db, master_key, bits, KeyState::Active, now).await {
        Ok(_) => Ok(true),
        // Another node won the race; the unique index keeps a single active key.
        Err(KeySetupError::Store(StoreError::Conflict)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The timing rules of the lifecycle, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// 0 = no scheduled rotation.
    pub rotation_interval_secs: i64,
    /// How long verifiers may cache the JWKS.
    pub jwks_max_age_secs: i64,
    /// The longest access-token lifetime.
    pub token_ttl_secs: i64,
    pub clock_skew_secs: i64,
}

/// What one maintenance pass must do, decided from the key rows and `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Start a scheduled rotation (a new pending key).
    pub create_pending: bool,
    /// Activate this pending key (retiring the active one).
    pub activate: Option<String>,
    /// Erase the private part of keys retired before this time.
    pub wipe_retired_before: i64,
}

impl Lifecycle {
    pub fn of(config: &Config) -> Self {
        Self {
            rotation_interval_secs: config.keys.rotation_interval.as_secs() as i64,
            jwks_max_age_secs: config.keys.jwks_max_age.as_secs() as i64,
            token_ttl_secs: config.tokens.longest_signed_ttl().as_secs() as i64,
            clock_skew_secs: config.tokens.clock_skew.as_secs() as i64,
        }
    }

    /// Until when a key retired at `retired_at` must stay published: every token it
    /// signed has expired by then, even on a verifier whose clock runs `clock_skew`
    /// behind.
    pub fn published_until(&self, retired_at: i64) -> i64 {
        retired_at + self.token_ttl_secs + self.clock_skew_secs
    }

    /// When a pending key created at `created_at` may start signing.
    pub fn activation_due(&self, created_at: i64) -> i64 {
        created_at + self.jwks_max_age_secs
    }

    pub fn is_published(&self, row: &SigningKeyRow, now: i64) -> bool {
        match row.state {
            KeyState::Pending | KeyState::Active => true,
            KeyState::Retired => row.retired_at.is_none_or(|at| now < self.published_until(at)),
            _ => false,
        }
    }

    /// The transitions due at `now`. A key created by this plan is activated by the
    /// next pass that finds it due (at once when `jwks_max_age` is zero).
    pub fn plan(&self, rows: &[SigningKeyRow], now: i64) -> Plan {
        let active = rows.iter().find(|k| k.state == KeyState::Active);
        let pending = rows.iter().find(|k| k.state == KeyState::Pending);
        let rotation_due = self.rotation_interval_secs > 0
            && active.is_some_and(|k| k.activated_at.unwrap_or(k.created_at) + self.rotation_interval_secs <= now);
        Plan {
            create_pending: pending.is_none() && rotation_due,
            activate: pending.filter(|p| self.activation_due(p.created_at) <= now).map(|p| p.kid.clone()),
            wipe_retired_before: now - self.published_until(0),
        }
    }
}

/// The rows verifiers need now: the active key (if any) and every published key.
async fn published_rows(
    db: &Db,
    config: &Config,
    now: i64,
) -> Result<(Option<SigningKeyRow>, Vec<PublishedKey>), KeySetupError> {
    let lifecycle = Lifecycle::of(config);
    let mut active = None;
    let mut published = Vec::new();
    for row in keys::list(db).await? {
        if !lifecycle.is_published(&row, now) {
            continue;
        }
        published.push(PublishedKey { kid: row.kid.clone(), n: row.public_n.clone(), e: row.public_e.clone() });
        if row.state == KeyState::Active && active.is_none() {
            active = Some(row);
        }
    }
    Ok((active, published))
}

fn build_key_set(
    master_key: &MasterKey,
    active: Option<SigningKeyRow>,
    published: &[PublishedKey],
) -> Result<KeySet, KeySetupError> {
    let signer = match active {
        Some(row) => {
            let der = master_key
                .decrypt(&encryption_context(&row.kid), &row.private_key_encrypted)
                .map_err(|_| KeySetupError::WrongMasterKey { kid: row.kid.clone() })?;
            Some(KeyMaterial::from_pkcs8(&der)?)
        }
        None => None,
    };
    Ok(KeySet::new(signer, published)?)
}

/// Reads all keys, decrypts the active one, and publishes the keys verifiers need now.
pub async fn load_key_set(db: &Db, master_key: &MasterKey, config: &Config, now: i64) -> Result<KeySet, KeySetupError> {
    let (active, published) = published_rows(db, config, now).await?;
    build_key_set(master_key, active, &published)
}

/// Re-reads the key set into the running server; keys are decrypted and parsed again
/// only when the set has changed (this runs on every node every poll interval).
pub async fn reload(state: &AppState) -> Result<(), Error> {
    let (active, published) = published_rows(&state.db, &state.config, state.now()).await.map_err(setup_error)?;
    let wanted = KeySet::fingerprint(active.as_ref().map(|r| r.kid.as_str()), published.iter().map(|k| k.kid.as_str()));
    if wanted == state.keys.current().current_fingerprint() {
        return Ok(());
    }
    let set = build_key_set(&state.master_key, active, &published).map_err(setup_error)?;
    state.keys.replace(set);
    Ok(())
}

fn setup_error(err: KeySetupError) -> Error {
    match err {
        KeySetupError::Store(e) => e.into(),
        other => Error::Internal(other.to_string()),
    }
}

fn key_event(now: i64, actor: &str, action: &'static str, kid: &str) -> NewAuditEvent {
    NewAuditEvent::success(now, actor, action, kid)
}

fn pending_exists() -> Error {
    Error::Conflict {
        code: ErrorCode::RotationInProgress,
        description: "a pending key exists already; it becomes active after the JWKS cache lifetime".into(),
    }
}

/// Starts a rotation: a new pending key, published now, signing after `jwks_max_age`.
pub async fn rotate(state: &AppState, actor: &str) -> Result<SigningKeyRow, Error> {
    let now = state.now();
    let row = match create_key(&state.db, &state.master_key, state.config.keys.rsa_bits, KeyState::Pending, now).await {
        Ok(row) => row,
        Err(KeySetupError::Store(StoreError::Conflict)) => return Err(pending_exists()),
        Err(e) => return Err(setup_error(e)),
    };
    crate::store::audit::record_alone(&state.db, key_event(now, actor, "key.rotate", &row.kid)).await?;
    reload(state).await?;
    Ok(row)
}

/// Brings an operator's own RSA private key (PEM: PKCS#8 `PRIVATE KEY` or PKCS#1
/// `RSA PRIVATE KEY`) in as a pending key.
pub async fn import_pem(db: &Db, master_key: &MasterKey, pem: &str, now: i64) -> Result<SigningKeyRow, KeySetupError> {
    let material = parse_pem(pem)?;
    if keys::find(db, material.kid()).await?.is_some() {
        return Err(KeySetupError::Key(KeyError::Rejected("this key is already in the database".into())));
    }
    store_key(db, master_key, &material, KeyState::Pending, now).await
}

/// A private key from PEM (`PRIVATE KEY` or `RSA PRIVATE KEY`), RSA of at least 2048 bits.
pub fn parse_pem(pem: &str) -> Result<KeyMaterial, KeySetupError> {
    use base64::Engine;
    let rejected = |why: &str| KeySetupError::Key(KeyError::Rejected(why.into()));
    let label = pem
        .lines()
        .find_map(|l| l.trim().strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")))
        .ok_or_else(|| rejected("no PEM block found"))?
        .to_string();
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END "))
        .collect();
    let der = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| rejected("the PEM body is not base64"))?,
    );
    let material = match label.as_str() {
        "PRIVATE KEY" => KeyMaterial::from_pkcs8(&der)?,
        "RSA PRIVATE KEY" => KeyMaterial::from_pkcs1(&der)?,
        other => return Err(rejected(&format!("unsupported PEM block {other:?}; expected an RSA private key"))),
    };
    if material.bits() < 2048 {
        return Err(rejected("RSA keys must have at least 2048 bits"));
    }
    Ok(material)
}

/// Emergency revoke of a compromised key: it leaves the JWKS at once and its tokens stop
/// verifying. If it was the active key, signing moves to a key at once too: the pending
/// one if there is one, else a freshly generated one.
pub async fn revoke(state: &AppState, kid: &str, actor: &str) -> Result<(), Error> {
    let now = state.now();
    let row = keys::find(&state.db, kid).await?.ok_or(Error::NotFound("signing key"))?;
    if !keys::revoke(&state.db, kid, now, key_event(now, actor, "key.revoke", kid)).await? {
        return Err(Error::Conflict {
            code: ErrorCode::AlreadyRevoked,
            description: "that key is already revoked".into(),
        });
    }
    if row.state == KeyState::Active {
        let replacement = match keys::list(&state.db).await?.into_iter().find(|k| k.state == KeyState::Pending) {
            Some(pending) => pending.kid,
            None => {
                match create_key(&state.db, &state.master_key, state.config.keys.rsa_bits, KeyState::Pending, now).await
                {
                    Ok(row) => row.kid,
                    Err(e) => return Err(setup_error(e)),
                }
            }
        };
        keys::promote(&state.db, &replacement, now, key_event(now, actor, "key.activate", &replacement)).await?;
    }
    reload(state).await
}

/// What one maintenance pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub created: Option<String>,
    pub activated: Option<String>,
    pub wiped: u64,
}

/// One pass of the lifecycle, run by every node on a timer (and by tests directly):
/// start a scheduled rotation, activate a pending key whose time has come, erase
/// expired private keys, and reload the key set.
pub async fn maintain(state: &AppState) -> Result<Maintenance, Error> {
    let now = state.now();
    let lifecycle = Lifecycle::of(&state.config);
    let mut plan = lifecycle.plan(&keys::list(&state.db).await?, now);
    let mut done = Maintenance::default();
    if plan.create_pending {
        match create_key(&state.db, &state.master_key, state.config.keys.rsa_bits, KeyState::Pending, now).await {
            Ok(row) => {
                crate::store::audit::record_alone(&state.db, key_event(now, "system", "key.rotate", &row.kid)).await?;
                if lifecycle.activation_due(row.created_at) <= now {
                    plan.activate = Some(row.kid.clone());
                }
                done.created = Some(row.kid);
            }
            // Another node created it first.
            Err(KeySetupError::Store(StoreError::Conflict)) => {}
            Err(e) => return Err(setup_error(e)),
        }
    }
    if let Some(kid) = plan.activate
        && keys::promote(&state.db, &kid, now, key_event(now, "system", "key.activate", &kid)).await?
    {
        tracing::info!(%kid, "signing key activated");
        done.activated = Some(kid);
    }
    done.wiped = keys::wipe_expired_private_keys(&state.db, plan.wipe_retired_before).await?;
    reload(state).await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const LIFECYCLE: Lifecycle =
        Lifecycle { rotation_interval_secs: 1000, jwks_max_age_secs: 300, token_ttl_secs: 900, clock_skew_secs: 60 };

    fn key(
        kid: &str,
        state: KeyState,
        created_at: i64,
        activated_at: Option<i64>,
        retired_at: Option<i64>,
    ) -> SigningKeyRow {
        SigningKeyRow {
            kid: kid.into(),
            algorithm: "RS256".into(),
            bits: 2048,
            state,
            public_n: String::new(),
            public_e: String::new(),
            private_key_encrypted: String::new(),
            created_at,
            activated_at,
            retired_at,
        }
    }

    #[test]
    fn a_scheduled_rotation_starts_when_the_active_key_is_old_enough_and_none_is_pending() {
        let active = key("a", KeyState::Active, NOW - 5000, Some(NOW - 1000), None);
        assert!(LIFECYCLE.plan(std::slice::from_ref(&active), NOW).create_pending);
        assert!(!LIFECYCLE.plan(std::slice::from_ref(&active), NOW - 1).create_pending, "one second early");
        let pending = key("p", KeyState::Pending, NOW - 10, None, None);
        assert!(!LIFECYCLE.plan(&[active.clone(), pending], NOW).create_pending, "a rotation is under way");
        let never = Lifecycle { rotation_interval_secs: 0, ..LIFECYCLE };
        assert!(!never.plan(&[active], NOW + 1_000_000).create_pending, "0 disables the schedule");
    }

    #[test]
    fn a_pending_key_activates_once_every_verifier_can_have_fetched_it() {
        let rows = [
            key("a", KeyState::Active, NOW - 5000, Some(NOW - 100), None),
            key("p", KeyState::Pending, NOW, None, None),
        ];
        assert_eq!(LIFECYCLE.plan(&rows, NOW + 299).activate, None);
        assert_eq!(LIFECYCLE.plan(&rows, NOW + 300).activate.as_deref(), Some("p"));
    }

    #[test]
    fn a_retired_key_stays_published_until_its_last_token_expired_even_on_a_slow_clock() {
        let retired = key("r", KeyState::Retired, NOW - 5000, Some(NOW - 4000), Some(NOW));
        assert!(LIFECYCLE.is_published(&retired, NOW + 959));
        assert!(!LIFECYCLE.is_published(&retired, NOW + 960));
        assert_eq!(LIFECYCLE.plan(&[], NOW + 960).wipe_retired_before, NOW, "its private part goes then too");
        assert!(LIFECYCLE.is_published(&key("p", KeyState::Pending, NOW, None, None), NOW));
        assert!(!LIFECYCLE.is_published(&key("x", KeyState::Revoked, NOW, None, None), NOW), "revoked: gone at once");
    }
}
