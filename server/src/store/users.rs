//! Users and their role assignments.

use crate::store::entities::UserStatus;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entities::{user_roles, username_skeletons, users};
use super::{StoreError, StoreResult};

pub use users::Model as UserRow;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub username_normalized: String,
    /// Its confusable skeleton; unique across users (see `username_skeletons`).
    pub skeleton: String,
    pub email: Option<String>,
    pub password_hash: String,
    /// Made by `POST /auth/register` (see `registration.require_verified_email`).
    pub self_registered: bool,
    pub now: i64,
}

pub async fn find_by_username(db: &impl ConnectionTrait, normalized: &str) -> StoreResult<Option<UserRow>> {
    Ok(users::Entity::find().filter(users::Column::UsernameNormalized.eq(normalized)).one(db).await?)
}

pub async fn find_by_id(db: &impl ConnectionTrait, id: &str) -> StoreResult<Option<UserRow>> {
    Ok(users::Entity::find_by_id(id.to_string()).one(db).await?)
}

pub async fn role_names(db: &impl ConnectionTrait, user_id: &str) -> StoreResult<Vec<String>> {
    Ok(user_roles::Entity::find()
        .select_only()
        .column(user_roles::Column::RoleName)
        .filter(user_roles::Column::UserId.eq(user_id))
        .order_by_asc(user_roles::Column::RoleName)
        .into_tuple::<String>()
        .all(db)
        .await?)
}

/// Inserts the user, its roles, its first verification link with its mail (when given)
/// and the audit event in one transaction. Fails with `Conflict` when the
/// normalised username is taken and `Missing` when a role does not exist.
pub async fn create(
    db: &super::Db,
    user: NewUser,
    roles: &[String],
    verification: Option<(super::mail::NewEmailToken, Vec<super::mail::QueuedMail>)>,
    event: super::audit::NewAuditEvent,
) -> StoreResult<UserRow> {
    let txn = super::begin_write(db, super::Starts::WithRead).await?;
    if let Some(role) = super::roles::missing(&*txn, roles).await?.into_iter().next() {
        return Err(StoreError::Missing(format!("role {role:?}")));
    }
    let row = users::ActiveModel {
        id: Set(user.id.clone()),
        username: Set(user.username),
        username_normalized: Set(user.username_normalized),
        email: Set(user.email),
        password_hash: Set(user.password_hash),
        self_registered: Set(user.self_registered),
        status: Set(UserStatus::Active),
        created_at: Set(user.now),
        updated_at: Set(user.now),
        ..Default::default()
    }
    .insert(&*txn)
    .await?;
    // Its primary key refuses a look-alike of an existing name (Conflict, as a taken name).
    username_skeletons::ActiveModel { skeleton: Set(user.skeleton), user_id: Set(user.id.clone()) }
        .insert(&*txn)
        .await?;
    if !roles.is_empty() {
        user_roles::Entity::insert_many(
            roles
                .iter()
                .map(|role| user_roles::ActiveModel { user_id: Set(user.id.clone()), role_name: Set(role.clone()) }),
        )
        .exec(&*txn)
        .await?;
    }
    if let Some((token, mails)) = verification {
        super::mail::insert_token(&*txn, token, None, &mails).await?;
    }
    super::audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(row)
}

/// Accounts created before skeletons were kept (or whose names were normalised another
/// way then), for the start-up backfill: (id, login name).
pub async fn without_skeleton(db: &impl ConnectionTrait) -> StoreResult<Vec<(String, String)>> {
    use sea_orm::sea_query::Query;
    let has_one =
        Query::select().column(username_skeletons::Column::UserId).from(username_skeletons::Entity).to_owned();
    Ok(users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .column(users::Column::UsernameNormalized)
        .filter(users::Column::Id.not_in_subquery(has_one))
        .order_by_asc(users::Column::CreatedAt)
        .into_tuple()
        .all(db)
        .await?)
}

/// Records skeletons of accounts that lack one, skipping any that another account holds
/// already (a confusable pair from before the guard, left for the operator to resolve).
pub async fn insert_missing_skeletons(db: &super::Db, rows: &[(String, String)]) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    username_skeletons::Entity::insert_many(rows.iter().map(|(user_id, skeleton)| username_skeletons::ActiveModel {
        skeleton: Set(skeleton.clone()),
        user_id: Set(user_id.clone()),
    }))
    .on_conflict_do_nothing()
    .exec(&*txn)
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The account holding `skeleton`, if any: (id, username).
pub async fn holder_of_skeleton(db: &impl ConnectionTrait, skeleton: &str) -> StoreResult<Option<(String, String)>> {
    let Some(row) = username_skeletons::Entity::find_by_id(skeleton.to_string()).one(db).await? else {
        return Ok(None);
    };
    Ok(find_by_id(db, &row.user_id).await?.map(|u| (u.id, u.username)))
}

/// Every account as (id, username, login name), oldest first, for the confusables report.
pub async fn all_login_names(db: &impl ConnectionTrait) -> StoreResult<Vec<(String, String, String)>> {
    Ok(users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .column(users::Column::Username)
        .column(users::Column::UsernameNormalized)
        .order_by_asc(users::Column::CreatedAt)
        .into_tuple()
        .all(db)
        .await?)
}

/// Whether any active user holds `role`.
pub async fn any_active_with_role(db: &impl ConnectionTrait, role: &str) -> StoreResult<bool> {
    use sea_orm::sea_query::Query;
    let holders = Query::select()
        .column(user_roles::Column::UserId)
        .from(user_roles::Entity)
        .and_where(user_roles::Column::RoleName.eq(role))
        .to_owned();
    let found = users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .filter(users::Column::Id.in_subquery(holders))
        .filter(users::Column::Status.eq(UserStatus::Active))
        .into_tuple::<String>()
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// Filters of the admin user list.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Substring of the username or email, case-insensitive.
    pub text: Option<String>,
    pub role: Option<String>,
    pub status: Option<UserStatus>,
}

/// One page of users ordered by normalised username (then id), and the total count.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &UserFilter,
    page: super::Page,
) -> StoreResult<(Vec<UserRow>, u64)> {
    use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
    use sea_orm::{Condition, PaginatorTrait};
    let mut condition = Condition::all();
    if let Some(text) = filter.text.as_deref().filter(|t| !t.trim().is_empty()) {
        let pattern = super::like_pattern(text.trim());
        condition = condition.add(
            Condition::any()
                .add(Expr::col(users::Column::UsernameNormalized).like(LikeExpr::new(pattern.clone()).escape('\\')))
                .add(
                    Expr::expr(Func::lower(Expr::col(users::Column::Email))).like(LikeExpr::new(pattern).escape('\\')),
                ),
        );
    }
    if let Some(status) = &filter.status {
        condition = condition.add(users::Column::Status.eq(status.as_str()));
    }
    if let Some(role) = &filter.role {
        let holders = Query::select()
            .column(user_roles::Column::UserId)
            .from(user_roles::Entity)
            .and_where(user_roles::Column::RoleName.eq(role.as_str()))
            .to_owned();
        condition = condition.add(users::Column::Id.in_subquery(holders));
    }
    let query = users::Entity::find().filter(condition);
    let total = query.clone().count(db).await?;
    let rows = query
        .order_by_asc(users::Column::UsernameNormalized)
        .order_by_asc(users::Column::Id)
        .offset(page.offset())
        .limit(page.size)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// Role names of many users at once, for list pages.
pub async fn role_names_of(
    db: &impl ConnectionTrait,
    user_ids: &[String],
) -> StoreResult<std::collections::HashMap<String, Vec<String>>> {
    let mut map: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    if user_ids.is_empty() {
        return Ok(map);
    }
    let rows = user_roles::Entity::find()
        .filter(user_roles::Column::UserId.is_in(user_ids.iter().cloned()))
        .order_by_asc(user_roles::Column::RoleName)
        .all(db)
        .await?;
    for row in rows {
        map.entry(row.user_id).or_default().push(row.role_name);
    }
    Ok(map)
}

/// Serialises every change that could remove the last admin: it writes to the `admin`
/// role row first, which takes a row lock on PostgreSQL and the write lock on SQLite, so
/// two such changes never interleave their check and update.
async fn lock_admin_changes(txn: &sea_orm::DatabaseTransaction) -> StoreResult<()> {
    use super::entities::roles;
    use sea_orm::sea_query::Expr;
    roles::Entity::update_many()
        .col_expr(roles::Column::Builtin, Expr::col(roles::Column::Builtin))
        .filter(roles::Column::Name.eq(ADMIN_ROLE))
        .exec(txn)
        .await?;
    Ok(())
}

pub const ADMIN_ROLE: &str = "admin";

/// Fails if the change inside `txn` took away the last active admin (an installation
/// that had none yet is left alone).
async fn ensure_an_admin_remains(txn: &sea_orm::DatabaseTransaction, had_admin: bool) -> StoreResult<()> {
    if !had_admin || any_active_with_role(txn, ADMIN_ROLE).await? { Ok(()) } else { Err(StoreError::LastAdmin) }
}

/// What an admin changes on a user; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    /// A new address: unverified, unless `email_verified` marks it in the same change.
    pub email: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub status: Option<UserStatus>,
    pub password_hash: Option<String>,
    pub roles: Option<Vec<String>>,
    /// When the change ends the user's sessions, keep this one (the caller's own).
    pub keep_session: Option<String>,
    /// …or this browser login session (the account page's own).
    pub keep_sso_session: Option<String>,
}

/// Applies `changes` in one transaction guarded against losing the last admin. Disabling
/// a user or setting its password revokes all its sessions in the same transaction.
/// Returns the updated row, or `None` if the user does not exist.
pub async fn update(
    db: &super::Db,
    user_id: &str,
    changes: UserChanges,
    now: i64,
    event: super::audit::NewAuditEvent,
) -> StoreResult<Option<UserRow>> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    lock_admin_changes(&txn).await?;
    let had_admin = any_active_with_role(&*txn, ADMIN_ROLE).await?;
    // Locked: a verification completing at the same time waits, and then sees this.
    let Some(row) = users::Entity::find_by_id(user_id.to_string()).lock_exclusive().one(&*txn).await? else {
        return Ok(None);
    };
    let current_email = row.email.clone();
    let mut active: users::ActiveModel = row.into();
    let mut end_sessions = false;
    if let Some(email) = changes.email {
        let same = match (&current_email, &email) {
            (Some(current), Some(new)) => current.eq_ignore_ascii_case(new),
            (None, None) => true,
            _ => false,
        };
        active.email = Set(email);
        if !same {
            active.email_verified = Set(false);
            // Links mailed to the old address (or for an address asked for before) die.
            super::mail::delete_tokens_of(&*txn, user_id).await?;
        }
    }
    if let Some(verified) = changes.email_verified {
        active.email_verified = Set(verified);
    }
    if let Some(status) = changes.status {
        end_sessions |= status == UserStatus::Disabled;
        active.status = Set(status);
    }
    if let Some(hash) = changes.password_hash {
        end_sessions = true;
        active.password_hash = Set(hash);
    }
    active.updated_at = Set(now);
    let row = active.update(&*txn).await?;
    if let Some(roles) = changes.roles {
        if let Some(role) = super::roles::missing(&*txn, &roles).await?.into_iter().next() {
            return Err(StoreError::Missing(format!("role {role:?}")));
        }
        user_roles::Entity::delete_many().filter(user_roles::Column::UserId.eq(user_id)).exec(&*txn).await?;
        if !roles.is_empty() {
            user_roles::Entity::insert_many(roles.iter().map(|role| user_roles::ActiveModel {
                user_id: Set(user_id.to_string()),
                role_name: Set(role.clone()),
            }))
            .exec(&*txn)
            .await?;
        }
    }
    ensure_an_admin_remains(&txn, had_admin).await?;
    if end_sessions {
        let by_user = changes.keep_session.is_some() || changes.keep_sso_session.is_some();
        let reason = if by_user { "password_changed" } else { "user_changed_by_admin" };
        let keep = super::sessions::Keep {
            session: changes.keep_session.as_deref(),
            sso_session: changes.keep_sso_session.as_deref(),
        };
        super::sessions::revoke_all_in(&*txn, user_id, keep, reason, now).await?;
        // A login half done with the old password (or by the now disabled user) ends too.
        super::authorization::end_sign_ins_in_progress(&*txn, user_id).await?;
    }
    super::audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(Some(row))
}

/// Deletes a user (sessions and role links cascade), unless it is the last admin.
pub async fn delete(db: &super::Db, user_id: &str, event: super::audit::NewAuditEvent) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    lock_admin_changes(&txn).await?;
    let had_admin = any_active_with_role(&*txn, ADMIN_ROLE).await?;
    // Its sessions cascade with it: they are revoked first, in this transaction, so
    // their relying parties are told. The user's row is locked before (FOR UPDATE on
    // PostgreSQL; SQLite's writer lock is held already), so no session can be made for
    // it between the revocation and the delete and vanish untold.
    use sea_orm::QuerySelect;
    users::Entity::find_by_id(user_id.to_string()).lock_exclusive().one(&*txn).await?;
    super::sessions::revoke_all_in(&*txn, user_id, Default::default(), "user_deleted", event.occurred_at).await?;
    let deleted = users::Entity::delete_by_id(user_id.to_string()).exec(&*txn).await?.rows_affected;
    if deleted == 0 {
        return Ok(false);
    }
    ensure_an_admin_remains(&txn, had_admin).await?;
    super::audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(true)
}

/// Usernames by id, for list pages of other records.
pub async fn usernames_of(
    db: &impl ConnectionTrait,
    user_ids: &[String],
) -> StoreResult<std::collections::HashMap<String, String>> {
    if user_ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(String, String)> = users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .column(users::Column::Username)
        .filter(users::Column::Id.is_in(user_ids.iter().cloned()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Which failure counter an attempt belongs to; passwords and TOTP count separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Password,
    Totp,
}

/// One step of the lockout backoff: reaching `failures` locks for `lock_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockStep {
    pub failures: u32,
    pub lock_secs: u64,
}

/// An attempt reserved before its secret was checked: it already counts as a failure
/// (a success clears it), and `locked_until` is set when this attempt engaged the lock.
#[derive(Debug, Clone, Copy)]
pub struct Reservation {
    pub failures: i32,
    pub locked_until: Option<i64>,
}

fn factor_columns(factor: Factor) -> (users::Column, users::Column) {
    match factor {
        Factor::Password => (users::Column::FailedLogins, users::Column::LockedUntil),
        Factor::Totp => (users::Column::TotpFailures, users::Column::TotpLockedUntil),
    }
}

/// Reserves one attempt of `factor` before its secret is checked, in one conditional
/// statement: unless the account is locked, the counter goes up by one and, when it reaches
/// the threshold, the lock (with its backoff for that count) is set in the same statement.
/// However many requests arrive at once, on however many nodes, at most `threshold`
/// reservations succeed before the lock engages; the rest get `None` (as an unknown
/// account does), and a success clears counter and lock with [`record_success`].
pub async fn reserve_attempt(
    db: &super::Db,
    user_id: &str,
    factor: Factor,
    now: i64,
    schedule: &[LockStep],
) -> StoreResult<Option<Reservation>> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    let (counter, lock) = factor_columns(factor);
    let next = Expr::col(counter).add(1);
    // The lock for the counter this attempt reaches: one arm per step, highest first,
    // so the first matching arm is the right backoff.
    let lock_expr = if schedule.is_empty() {
        Expr::col(lock)
    } else {
        let mut case = sea_orm::sea_query::CaseStatement::new();
        for step in schedule.iter().rev() {
            case = case.case(next.clone().gte(i64::from(step.failures)), Expr::value(now + step.lock_secs as i64));
        }
        case.finally(Expr::col(lock)).into()
    };
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let rows = users::Entity::update_many()
        .col_expr(counter, next)
        .col_expr(lock, lock_expr)
        .filter(users::Column::Id.eq(user_id))
        .filter(Condition::any().add(lock.is_null()).add(lock.lte(now)))
        .exec_with_returning(&*txn)
        .await?;
    txn.commit().await?;
    Ok(rows.into_iter().next().map(|row| {
        let (failures, locked_until) = match factor {
            Factor::Password => (row.failed_logins, row.locked_until),
            Factor::Totp => (row.totp_failures, row.totp_locked_until),
        };
        Reservation { failures, locked_until: locked_until.filter(|until| *until > now) }
    }))
}

/// A successful attempt clears that factor's counter and lock.
pub async fn record_success(db: &impl ConnectionTrait, user_id: &str, factor: Factor) -> StoreResult<()> {
    use sea_orm::sea_query::Expr;
    let (counter, lock) = factor_columns(factor);
    users::Entity::update_many()
        .col_expr(counter, Expr::value(0))
        .col_expr(lock, Expr::value(Option::<i64>::None))
        .filter(users::Column::Id.eq(user_id))
        .filter(Condition::any().add(counter.ne(0)).add(lock.is_not_null()))
        .exec(db)
        .await?;
    Ok(())
}

/// Clears both lockouts (admin unlock) and audits it; `false` if the user is unknown.
pub async fn unlock(db: &super::Db, user_id: &str, event: super::audit::NewAuditEvent) -> StoreResult<bool> {
    use sea_orm::sea_query::Expr;
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let updated = users::Entity::update_many()
        .col_expr(users::Column::FailedLogins, Expr::value(0))
        .col_expr(users::Column::LockedUntil, Expr::value(Option::<i64>::None))
        .col_expr(users::Column::TotpFailures, Expr::value(0))
        .col_expr(users::Column::TotpLockedUntil, Expr::value(Option::<i64>::None))
        .filter(users::Column::Id.eq(user_id))
        .exec(&*txn)
        .await?
        .rows_affected;
    if updated == 1 {
        super::audit::record(&txn, event).await?;
    }
    txn.commit().await?;
    Ok(updated == 1)
}

/// Stores a not-yet-confirmed TOTP secret (encrypted by the caller).
pub async fn set_pending_totp(db: &impl ConnectionTrait, user_id: &str, encrypted: &str) -> StoreResult<()> {
    use sea_orm::sea_query::Expr;
    users::Entity::update_many()
        .col_expr(users::Column::TotpPendingEncrypted, Expr::value(encrypted))
        .filter(users::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Accepts TOTP step `step` for the user only if it is newer than every step accepted
/// before (compare-and-swap), so a code can never be used twice, even across nodes.
pub async fn claim_totp_step(db: &impl ConnectionTrait, user_id: &str, step: i64) -> StoreResult<bool> {
    use sea_orm::sea_query::Expr;
    let claimed = users::Entity::update_many()
        .col_expr(users::Column::TotpLastStep, Expr::value(step))
        .filter(users::Column::Id.eq(user_id))
        .filter(Condition::any().add(users::Column::TotpLastStep.is_null()).add(users::Column::TotpLastStep.lt(step)))
        .exec(db)
        .await?
        .rows_affected;
    Ok(claimed == 1)
}

/// Turns TOTP on (pending secret becomes the secret) or off, and replaces the recovery
/// codes, in one transaction with its audit event.
pub async fn set_totp(
    db: &super::Db,
    user_id: &str,
    enabled: Option<(String, i64)>,
    recovery_code_hashes: &[String],
    now: i64,
    event: super::audit::NewAuditEvent,
) -> StoreResult<()> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    write_totp(&txn, user_id, enabled, recovery_code_hashes, now, event).await?;
    txn.commit().await?;
    Ok(())
}

/// Turns TOTP off (no recovery codes, no pending challenges). With `keep_a_factor` the
/// user's row is locked first and nothing changes when the account has no passkey: the
/// same lock [`super::passkeys::delete`] takes, so turning TOTP off and deleting the
/// last passkey cannot both pass. False when refused.
pub async fn disable_totp(
    db: &super::Db,
    user_id: &str,
    keep_a_factor: bool,
    now: i64,
    event: super::audit::NewAuditEvent,
) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithRead).await?;
    if keep_a_factor {
        let locked = users::Entity::find_by_id(user_id.to_string()).lock_exclusive().one(&*txn).await?;
        if locked.is_none() || super::passkeys::count_of_user(&*txn, user_id).await? == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
    }
    write_totp(&txn, user_id, None, &[], now, event).await?;
    txn.commit().await?;
    Ok(true)
}

async fn write_totp(
    txn: &super::WriteTxn,
    user_id: &str,
    enabled: Option<(String, i64)>,
    recovery_code_hashes: &[String],
    now: i64,
    event: super::audit::NewAuditEvent,
) -> StoreResult<()> {
    use sea_orm::sea_query::Expr;
    let (secret, step) = match enabled {
        Some((secret, step)) => (Some(secret), Some(step)),
        None => (None, None),
    };
    users::Entity::update_many()
        .col_expr(users::Column::TotpEnabled, Expr::value(secret.is_some()))
        .col_expr(users::Column::TotpSecretEncrypted, Expr::value(secret))
        .col_expr(users::Column::TotpPendingEncrypted, Expr::value(Option::<String>::None))
        .col_expr(users::Column::TotpLastStep, Expr::value(step))
        .col_expr(users::Column::TotpFailures, Expr::value(0))
        .col_expr(users::Column::TotpLockedUntil, Expr::value(Option::<i64>::None))
        .filter(users::Column::Id.eq(user_id))
        .exec(&**txn)
        .await?;
    super::mfa::replace_recovery_codes(&**txn, user_id, recovery_code_hashes, now).await?;
    // A pending login challenge was issued under the factor being replaced.
    super::mfa::delete_challenges_of(&**txn, user_id).await?;
    super::audit::record(txn, event).await?;
    Ok(())
}
