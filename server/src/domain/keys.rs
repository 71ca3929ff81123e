//! Signing-key lifecycle: make sure one active key exists, and build the in-memory
//! key set (signer + published verification keys) from the database.

use crate::security::master_key::MasterKey;
use crate::store::keys::{self, STATE_ACTIVE, STATE_PENDING, STATE_RETIRED, SigningKeyRow};
use crate::store::{Db, StoreError};
use crate::tokens::keys::{KeyError, KeyMaterial, KeySet, PublishedKey};

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
    state: &str,
    now: i64,
) -> Result<SigningKeyRow, KeySetupError> {
    let material =
        tokio::task::spawn_blocking(move || KeyMaterial::generate(bits)).await.map_err(|_| KeyError::Generation)??;
    let der = material.pkcs8_der()?;
    let (n, e) = material.public_components();
    let row = SigningKeyRow {
        kid: material.kid().to_string(),
        algorithm: "RS256".into(),
        bits: material.bits() as i32,
        state: state.into(),
        public_n: n.into(),
        public_e: e.into(),
        private_key_encrypted: master_key.encrypt(&encryption_context(material.kid()), &der),
        created_at: now,
        activated_at: (state == STATE_ACTIVE).then_some(now),
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
    match create_key(db, master_key, bits, STATE_ACTIVE, now).await {
        Ok(_) => Ok(true),
        // Another node won the race; the unique index keeps a single active key.
        Err(KeySetupError::Store(StoreError::Conflict)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads all keys, decrypts the active one, and publishes pending, active and retired keys.
pub async fn load_key_set(db: &Db, master_key: &MasterKey) -> Result<KeySet, KeySetupError> {
    let rows = keys::list(db).await?;
    let mut active = None;
    let mut published = Vec::new();
    for row in rows {
        if ![STATE_PENDING, STATE_ACTIVE, STATE_RETIRED].contains(&row.state.as_str()) {
            continue;
        }
        if row.state == STATE_ACTIVE && active.is_none() {
            let der = master_key
                .decrypt(&encryption_context(&row.kid), &row.private_key_encrypted)
                .map_err(|_| KeySetupError::WrongMasterKey { kid: row.kid.clone() })?;
            active = Some(KeyMaterial::from_pkcs8(&der)?);
        }
        published.push(PublishedKey { kid: row.kid, n: row.public_n, e: row.public_e });
    }
    Ok(KeySet::new(active, &published)?)
}
