//! DPoP proofs seen lately (see `security::dpop`): one row per proof, so each is
//! accepted once, on any node.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, Set};

use super::StoreResult;
use super::entities::dpop_proofs;

/// Records the proof `proof_key` names, kept until `expires_at`: true the first time,
/// false when any node has seen it before (a replay). One statement: of two nodes that
/// see the same proof at once, exactly one gets true.
pub async fn first_use(db: &impl ConnectionTrait, proof_key: &str, expires_at: i64) -> StoreResult<bool> {
    let row = dpop_proofs::ActiveModel { proof_key: Set(proof_key.to_string()), expires_at: Set(expires_at) };
    let inserted = dpop_proofs::Entity::insert(row)
        .on_conflict(OnConflict::column(dpop_proofs::Column::ProofKey).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(inserted == 1)
}
