//! Users and their role assignments.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};

use super::entities::{user_roles, users};
use super::{StoreError, StoreResult};

pub use users::Model as UserRow;

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_DISABLED: &str = "disabled";

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub username_normalized: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub now: i64,
}

pub async fn find_by_username(
    db: &impl ConnectionTrait,
    normalized: &str,
) -> StoreResult<Option<UserRow>> {
    Ok(users::Entity::find()
        .filter(users::Column::UsernameNormalized.eq(normalized))
        .one(db)
        .await?)
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

/// Inserts the user, its roles and the audit event in one transaction. Fails with `Conflict` when the
/// normalised username is taken and `Missing` when a role does not exist.
pub async fn create(
    db: &super::Db,
    user: NewUser,
    roles: &[String],
    event: super::audit::NewAuditEvent,
) -> StoreResult<UserRow> {
    let txn = db.begin().await?;
    if let Some(role) = super::roles::missing(&txn, roles).await?.into_iter().next() {
        return Err(StoreError::Missing(format!("role {role:?}")));
    }
    let row = users::ActiveModel {
        id: Set(user.id.clone()),
        username: Set(user.username),
        username_normalized: Set(user.username_normalized),
        email: Set(user.email),
        password_hash: Set(user.password_hash),
        status: Set(STATUS_ACTIVE.into()),
        created_at: Set(user.now),
        updated_at: Set(user.now),
    }
    .insert(&txn)
    .await?;
    if !roles.is_empty() {
        user_roles::Entity::insert_many(roles.iter().map(|role| user_roles::ActiveModel {
            user_id: Set(user.id.clone()),
            role_name: Set(role.clone()),
        }))
        .exec(&txn)
        .await?;
    }
    super::audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(row)
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
        .filter(users::Column::Status.eq(STATUS_ACTIVE))
        .into_tuple::<String>()
        .one(db)
        .await?;
    Ok(found.is_some())
}
