//! Passkeys: the users' registered WebAuthn credentials, and the ceremonies in progress
//! (registration or sign-in), each taken once by the finish that answers it.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};

use super::audit::{self, NewAuditEvent};
use super::entities::{passkeys, users, webauthn_ceremonies};
use super::{Db, Starts, StoreResult, begin_write};

pub use passkeys::Model as PasskeyRow;
pub use webauthn_ceremonies::Model as CeremonyRow;

/// Stores a new ceremony.
pub async fn create_ceremony(db: &Db, row: CeremonyRow) -> StoreResult<()> {
    webauthn_ceremonies::ActiveModel {
        id: Set(row.id),
        purpose: Set(row.purpose),
        user_id: Set(row.user_id),
        state: Set(row.state),
        created_at: Set(row.created_at),
        expires_at: Set(row.expires_at),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Takes the ceremony `id` for `purpose` if it is live: it is deleted, so of two finishes
/// racing on one challenge exactly one gets it, and a failed answer spends it too.
pub async fn take_ceremony(db: &Db, id: &str, purpose: &str, now: i64) -> StoreResult<Option<CeremonyRow>> {
    let taken = webauthn_ceremonies::Entity::delete_many()
        .filter(webauthn_ceremonies::Column::Id.eq(id))
        .exec_with_returning(db)
        .await?;
    Ok(taken.into_iter().next().filter(|row| row.purpose == purpose && row.expires_at > now))
}

/// A user's passkeys, oldest first.
pub async fn of_user(db: &impl ConnectionTrait, user_id: &str) -> StoreResult<Vec<PasskeyRow>> {
    Ok(passkeys::Entity::find()
        .filter(passkeys::Column::UserId.eq(user_id))
        .order_by_asc(passkeys::Column::CreatedAt)
        .order_by_asc(passkeys::Column::Id)
        .all(db)
        .await?)
}

/// How many passkeys a user has.
pub async fn count_of_user(db: &impl ConnectionTrait, user_id: &str) -> StoreResult<u64> {
    Ok(passkeys::Entity::find().filter(passkeys::Column::UserId.eq(user_id)).count(db).await?)
}

/// The passkey with this credential id (base64url), whoever's it is.
pub async fn by_credential_id(db: &impl ConnectionTrait, credential_id: &str) -> StoreResult<Option<PasskeyRow>> {
    Ok(passkeys::Entity::find().filter(passkeys::Column::CredentialId.eq(credential_id)).one(db).await?)
}

/// Registers a passkey, with its audit event, unless its user holds `max` already
/// (counted under the user's row lock, so registrations racing cannot pass it): false
/// then. A credential id registered already (to anyone) is a [`StoreError::Conflict`].
pub async fn insert(db: &Db, row: PasskeyRow, max: usize, event: NewAuditEvent) -> StoreResult<bool> {
    let txn = begin_write(db, Starts::WithRead).await?;
    let locked = users::Entity::find_by_id(row.user_id.clone()).lock_exclusive().one(&*txn).await?;
    if locked.is_none() || count_of_user(&*txn, &row.user_id).await? >= max as u64 {
        txn.rollback().await?;
        return Ok(false);
    }
    passkeys::ActiveModel {
        id: Set(row.id),
        user_id: Set(row.user_id),
        credential_id: Set(row.credential_id),
        name: Set(row.name),
        credential: Set(row.credential),
        sign_count: Set(row.sign_count),
        backup_eligible: Set(row.backup_eligible),
        backup_state: Set(row.backup_state),
        created_at: Set(row.created_at),
        last_used_at: Set(None),
    }
    .insert(&*txn)
    .await?;
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(true)
}

/// What a successful use of a passkey changes on it.
pub struct PasskeyUse<'a> {
    pub id: &'a str,
    /// The credential as it now is (the library's JSON, counter and flags updated).
    pub credential: &'a str,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub now: i64,
}

/// Records a use in one statement with its audit event: the counter only ever moves up
/// (of two uses racing, the higher counter stays), the flags and the time of use are the
/// latest. With `refuse_stale`, a use whose counter is not past the stored one (a
/// counting authenticator; counter 0 means it does not count) changes nothing, so two
/// clones answering at once cannot both pass the check made before. False when nothing
/// was recorded: that, or the passkey was deleted meanwhile.
pub async fn record_use(db: &Db, used: PasskeyUse<'_>, refuse_stale: bool, event: NewAuditEvent) -> StoreResult<bool> {
    let txn = begin_write(db, Starts::WithWrite).await?;
    // The counter only moves up; the credential (the library's copy of counter and
    // flags) is replaced unless this use is older than one already recorded.
    let moves_up = Expr::col(passkeys::Column::SignCount).lt(used.sign_count);
    let not_older = Expr::col(passkeys::Column::SignCount).lte(used.sign_count);
    let mut update = passkeys::Entity::update_many()
        .col_expr(passkeys::Column::LastUsedAt, Expr::value(used.now))
        .col_expr(passkeys::Column::BackupEligible, Expr::value(used.backup_eligible))
        .col_expr(passkeys::Column::BackupState, Expr::value(used.backup_state))
        .col_expr(
            passkeys::Column::SignCount,
            Expr::case(moves_up.clone(), used.sign_count).finally(Expr::col(passkeys::Column::SignCount)).into(),
        )
        .col_expr(
            passkeys::Column::Credential,
            Expr::case(not_older, used.credential).finally(Expr::col(passkeys::Column::Credential)).into(),
        )
        .filter(passkeys::Column::Id.eq(used.id));
    if refuse_stale {
        let not_counting = Expr::col(passkeys::Column::SignCount).eq(0).and(Expr::value(used.sign_count).eq(0));
        update = update.filter(Expr::col(passkeys::Column::SignCount).lt(used.sign_count).or(not_counting));
    }
    let recorded = update.exec(&*txn).await?.rows_affected;
    if recorded != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(true)
}

/// Renames one of `user_id`'s passkeys; false when it has none with this id.
pub async fn rename(db: &Db, user_id: &str, id: &str, name: &str, event: NewAuditEvent) -> StoreResult<bool> {
    let txn = begin_write(db, Starts::WithWrite).await?;
    let renamed = passkeys::Entity::update_many()
        .col_expr(passkeys::Column::Name, Expr::value(name))
        .filter(passkeys::Column::Id.eq(id))
        .filter(passkeys::Column::UserId.eq(user_id))
        .exec(&*txn)
        .await?
        .rows_affected;
    if renamed != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(true)
}

/// How a deletion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Done,
    NotFound,
    /// It was the last second factor of an account that must keep one.
    LastFactor,
}

/// Deletes one of `user_id`'s passkeys. With `keep_a_factor`, the user's row is locked
/// first and the deletion refused when it would leave the account with neither TOTP nor
/// a passkey, so two deletions racing cannot both remove "the other one".
pub async fn delete(
    db: &Db,
    user_id: &str,
    id: &str,
    keep_a_factor: bool,
    event: NewAuditEvent,
) -> StoreResult<Deleted> {
    let txn = begin_write(db, Starts::WithRead).await?;
    if keep_a_factor {
        let Some(user) = users::Entity::find_by_id(user_id.to_string()).lock_exclusive().one(&*txn).await? else {
            txn.rollback().await?;
            return Ok(Deleted::NotFound);
        };
        if !user.totp_enabled && count_of_user(&*txn, user_id).await? <= 1 {
            txn.rollback().await?;
            return Ok(Deleted::LastFactor);
        }
    }
    let deleted = passkeys::Entity::delete_many()
        .filter(passkeys::Column::Id.eq(id))
        .filter(passkeys::Column::UserId.eq(user_id))
        .exec(&*txn)
        .await?
        .rows_affected;
    if deleted != 1 {
        txn.rollback().await?;
        return Ok(Deleted::NotFound);
    }
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(Deleted::Done)
}
