//! Recovery codes (hashed, single use) and MFA login challenges (hashed, single use,
//! short-lived).

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

use super::StoreResult;
use super::entities::{mfa_challenges, recovery_codes};

pub use mfa_challenges::Model as ChallengeRow;

pub async fn replace_recovery_codes(
    db: &impl ConnectionTrait,
    user_id: &str,
    code_hashes: &[String],
    now: i64,
) -> StoreResult<()> {
    recovery_codes::Entity::delete_many().filter(recovery_codes::Column::UserId.eq(user_id)).exec(db).await?;
    if !code_hashes.is_empty() {
        recovery_codes::Entity::insert_many(code_hashes.iter().map(|hash| recovery_codes::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            user_id: Set(user_id.to_string()),
            code_hash: Set(hash.clone()),
            created_at: Set(now),
            used_at: Set(None),
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

/// Marks the code used if it is the user's and unused; exactly one caller can win.
pub async fn use_recovery_code(
    db: &impl ConnectionTrait,
    user_id: &str,
    code_hash: &str,
    now: i64,
) -> StoreResult<bool> {
    let used = recovery_codes::Entity::update_many()
        .col_expr(recovery_codes::Column::UsedAt, Expr::value(now))
        .filter(recovery_codes::Column::UserId.eq(user_id))
        .filter(recovery_codes::Column::CodeHash.eq(code_hash))
        .filter(recovery_codes::Column::UsedAt.is_null())
        .exec(db)
        .await?
        .rows_affected;
    Ok(used == 1)
}

pub async fn unused_recovery_codes(db: &impl ConnectionTrait, user_id: &str) -> StoreResult<u64> {
    Ok(recovery_codes::Entity::find()
        .filter(recovery_codes::Column::UserId.eq(user_id))
        .filter(recovery_codes::Column::UsedAt.is_null())
        .count(db)
        .await?)
}

pub async fn create_challenge(db: &impl ConnectionTrait, row: ChallengeRow) -> StoreResult<()> {
    mfa_challenges::ActiveModel {
        id: Set(row.id),
        token_hash: Set(row.token_hash),
        user_id: Set(row.user_id),
        client_id: Set(row.client_id),
        created_at: Set(row.created_at),
        expires_at: Set(row.expires_at),
        used_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The live (unused, unexpired) challenge with this hash.
pub async fn find_live_challenge(
    db: &impl ConnectionTrait,
    token_hash: &str,
    now: i64,
) -> StoreResult<Option<ChallengeRow>> {
    Ok(mfa_challenges::Entity::find()
        .filter(mfa_challenges::Column::TokenHash.eq(token_hash))
        .filter(mfa_challenges::Column::UsedAt.is_null())
        .filter(mfa_challenges::Column::ExpiresAt.gt(now))
        .one(db)
        .await?)
}

/// Ends every pending login challenge of the user (password changed, TOTP replaced,
/// account disabled).
pub async fn delete_challenges_of(db: &impl ConnectionTrait, user_id: &str) -> StoreResult<u64> {
    Ok(mfa_challenges::Entity::delete_many()
        .filter(mfa_challenges::Column::UserId.eq(user_id))
        .exec(db)
        .await?
        .rows_affected)
}

/// What a second factor claims once its code has been checked.
#[derive(Debug, Clone, Copy)]
pub enum FactorClaim<'a> {
    /// This TOTP time step, which no earlier login may have used.
    TotpStep(i64),
    /// The recovery code with this hash, unused.
    RecoveryCode(&'a str),
}

/// How a claim ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    Accepted,
    /// The step was used already, or the recovery code is not the user's or spent.
    Rejected,
    /// Another request consumed (or the clock expired) the login challenge first.
    ChallengeSpent,
}

/// Claims a TOTP step or a recovery code; with a login challenge, consumes the challenge
/// first in the same transaction, so of two completions racing on one challenge only
/// one touches its code (the loser spends nothing), and a rejected code leaves the
/// challenge usable.
pub async fn claim_factor(
    db: &super::Db,
    user_id: &str,
    claim: FactorClaim<'_>,
    challenge_id: Option<&str>,
    now: i64,
) -> StoreResult<Claimed> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    if let Some(id) = challenge_id
        && !consume_challenge(&*txn, id, now).await?
    {
        txn.rollback().await?;
        return Ok(Claimed::ChallengeSpent);
    }
    let accepted = match claim {
        FactorClaim::TotpStep(step) => super::users::claim_totp_step(&*txn, user_id, step).await?,
        FactorClaim::RecoveryCode(hash) => use_recovery_code(&*txn, user_id, hash, now).await?,
    };
    if accepted {
        txn.commit().await?;
        Ok(Claimed::Accepted)
    } else {
        txn.rollback().await?;
        Ok(Claimed::Rejected)
    }
}

/// Consumes a challenge; exactly one caller can win.
pub async fn consume_challenge(db: &impl ConnectionTrait, id: &str, now: i64) -> StoreResult<bool> {
    let used = mfa_challenges::Entity::update_many()
        .col_expr(mfa_challenges::Column::UsedAt, Expr::value(now))
        .filter(mfa_challenges::Column::Id.eq(id))
        .filter(mfa_challenges::Column::UsedAt.is_null())
        .filter(mfa_challenges::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?
        .rows_affected;
    Ok(used == 1)
}
