//! Signing keys at rest. The private part arrives here already encrypted.

use crate::store::entities::KeyState;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::StoreResult;
use super::entities::signing_keys;

pub use signing_keys::Model as SigningKeyRow;

pub async fn list(db: &impl ConnectionTrait) -> StoreResult<Vec<SigningKeyRow>> {
    Ok(signing_keys::Entity::find().order_by_desc(signing_keys::Column::CreatedAt).all(db).await?)
}

pub async fn active(db: &impl ConnectionTrait) -> StoreResult<Option<SigningKeyRow>> {
    Ok(signing_keys::Entity::find()
        .filter(signing_keys::Column::State.eq(KeyState::Active))
        .order_by_desc(signing_keys::Column::ActivatedAt)
        .one(db)
        .await?)
}

pub async fn insert(db: &impl ConnectionTrait, row: SigningKeyRow) -> StoreResult<()> {
    signing_keys::ActiveModel {
        kid: Set(row.kid),
        algorithm: Set(row.algorithm),
        bits: Set(row.bits),
        state: Set(row.state),
        public_n: Set(row.public_n),
        public_e: Set(row.public_e),
        private_key_encrypted: Set(row.private_key_encrypted),
        created_at: Set(row.created_at),
        activated_at: Set(row.activated_at),
        retired_at: Set(row.retired_at),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub async fn find(db: &impl ConnectionTrait, kid: &str) -> StoreResult<Option<SigningKeyRow>> {
    Ok(signing_keys::Entity::find_by_id(kid.to_string()).one(db).await?)
}

/// Retires the active key and activates `kid` (which must still be pending), atomically.
/// Returns false when another node did it first (nothing changes then).
pub async fn promote(db: &super::Db, kid: &str, now: i64, event: super::audit::NewAuditEvent) -> StoreResult<bool> {
    use sea_orm::sea_query::Expr;
    let txn = super::begin_write(db, super::Starts::WithWrite).await?.changes_no_cached_rows();
    // Retire first: the unique index allows only one active key at any moment.
    signing_keys::Entity::update_many()
        .col_expr(signing_keys::Column::State, Expr::value(KeyState::Retired))
        .col_expr(signing_keys::Column::RetiredAt, Expr::value(now))
        .filter(signing_keys::Column::State.eq(KeyState::Active))
        .filter(signing_keys::Column::Kid.ne(kid))
        .exec(&*txn)
        .await?;
    let activated = signing_keys::Entity::update_many()
        .col_expr(signing_keys::Column::State, Expr::value(KeyState::Active))
        .col_expr(signing_keys::Column::ActivatedAt, Expr::value(now))
        .filter(signing_keys::Column::Kid.eq(kid))
        .filter(signing_keys::Column::State.eq(KeyState::Pending))
        .exec(&*txn)
        .await?
        .rows_affected;
    if activated != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    super::audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(true)
}

/// Emergency: the key is withdrawn from the JWKS at once.
pub async fn revoke(db: &super::Db, kid: &str, now: i64, event: super::audit::NewAuditEvent) -> StoreResult<bool> {
    use sea_orm::sea_query::Expr;
    let txn = super::begin_write(db, super::Starts::WithWrite).await?.changes_no_cached_rows();
    let revoked = signing_keys::Entity::update_many()
        .col_expr(signing_keys::Column::State, Expr::value(KeyState::Revoked))
        .col_expr(signing_keys::Column::RetiredAt, Expr::value(now))
        .col_expr(signing_keys::Column::PrivateKeyEncrypted, Expr::value(""))
        .filter(signing_keys::Column::Kid.eq(kid))
        .filter(signing_keys::Column::State.ne(KeyState::Revoked))
        .exec(&*txn)
        .await?
        .rows_affected;
    if revoked == 1 {
        super::audit::record(&txn, event).await?;
    }
    txn.commit().await?;
    Ok(revoked == 1)
}

/// Erases the private part of retired keys whose tokens have all expired: they can
/// never be needed again, so they should not sit in the database.
/// On SQLite the old row lives on in the WAL until a checkpoint: the connections run
/// with `secure_delete = FAST` (freed cell space zeroed in the page), and a truncating
/// checkpoint follows, so the ciphertext leaves the files too.
pub async fn wipe_expired_private_keys(db: &super::Db, retired_before: i64) -> StoreResult<u64> {
    use sea_orm::sea_query::Expr;
    let wiped = signing_keys::Entity::update_many()
        .col_expr(signing_keys::Column::PrivateKeyEncrypted, Expr::value(""))
        .filter(signing_keys::Column::State.eq(KeyState::Retired))
        .filter(signing_keys::Column::RetiredAt.lt(retired_before))
        .filter(signing_keys::Column::PrivateKeyEncrypted.ne(""))
        .exec(db)
        .await?
        .rows_affected;
    if wiped > 0 && !super::is_postgres(db) {
        super::checkpoint_truncate(db).await?;
    }
    Ok(wiped)
}
