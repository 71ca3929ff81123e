//! Signing keys at rest. The private part arrives here already encrypted.

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::StoreResult;
use super::entities::signing_keys;

pub use signing_keys::Model as SigningKeyRow;

pub const STATE_PENDING: &str = "pending";
pub const STATE_ACTIVE: &str = "active";
pub const STATE_RETIRED: &str = "retired";

pub async fn list(db: &impl ConnectionTrait) -> StoreResult<Vec<SigningKeyRow>> {
    Ok(signing_keys::Entity::find().order_by_desc(signing_keys::Column::CreatedAt).all(db).await?)
}

pub async fn active(db: &impl ConnectionTrait) -> StoreResult<Option<SigningKeyRow>> {
    Ok(signing_keys::Entity::find()
        .filter(signing_keys::Column::State.eq(STATE_ACTIVE))
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
