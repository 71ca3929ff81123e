//! Roles and their permissions.

use std::collections::BTreeSet;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};

use super::StoreResult;
use super::audit::{self, NewAuditEvent};
use super::entities::{role_permissions, roles, user_roles};

/// The names among `names` that are not roles.
pub async fn missing(db: &impl ConnectionTrait, names: &[String]) -> StoreResult<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let found: BTreeSet<String> = roles::Entity::find()
        .select_only()
        .column(roles::Column::Name)
        .filter(roles::Column::Name.is_in(names.iter().cloned()))
        .into_tuple::<String>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(names.iter().filter(|n| !found.contains(*n)).cloned().collect())
}

/// Union of the permissions of `role_names`.
pub async fn permissions_of(db: &impl ConnectionTrait, role_names: &[String]) -> StoreResult<BTreeSet<String>> {
    if role_names.is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(role_permissions::Entity::find()
        .select_only()
        .column(role_permissions::Column::Permission)
        .filter(role_permissions::Column::RoleName.is_in(role_names.iter().cloned()))
        .into_tuple::<String>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

pub use roles::Model as RoleRow;

/// A role with its permissions and how many users hold it.
#[derive(Debug, Clone)]
pub struct RoleDetails {
    pub row: RoleRow,
    pub permissions: Vec<String>,
    pub user_count: u64,
}

pub async fn list(db: &impl ConnectionTrait) -> StoreResult<Vec<RoleDetails>> {
    let rows = roles::Entity::find().order_by_asc(roles::Column::Name).all(db).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(details(db, row).await?);
    }
    Ok(out)
}

pub async fn get(db: &impl ConnectionTrait, name: &str) -> StoreResult<Option<RoleDetails>> {
    match roles::Entity::find_by_id(name.to_string()).one(db).await? {
        Some(row) => Ok(Some(details(db, row).await?)),
        None => Ok(None),
    }
}

async fn details(db: &impl ConnectionTrait, row: RoleRow) -> StoreResult<RoleDetails> {
    let permissions = permissions_of(db, std::slice::from_ref(&row.name)).await?.into_iter().collect();
    let user_count =
        user_roles::Entity::find().filter(user_roles::Column::RoleName.eq(row.name.as_str())).count(db).await?;
    Ok(RoleDetails { row, permissions, user_count })
}

async fn replace_permissions(
    txn: &sea_orm::DatabaseTransaction,
    name: &str,
    permissions: &[String],
) -> StoreResult<()> {
    role_permissions::Entity::delete_many().filter(role_permissions::Column::RoleName.eq(name)).exec(txn).await?;
    if !permissions.is_empty() {
        role_permissions::Entity::insert_many(
            permissions.iter().map(|p| role_permissions::ActiveModel {
                role_name: Set(name.to_string()),
                permission: Set(p.clone()),
            }),
        )
        .exec(txn)
        .await?;
    }
    Ok(())
}

pub async fn create(
    db: &super::Db,
    name: &str,
    description: &str,
    permissions: &[String],
    now: i64,
    event: NewAuditEvent,
) -> StoreResult<()> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    roles::ActiveModel {
        name: Set(name.to_string()),
        description: Set(description.to_string()),
        builtin: Set(false),
        created_at: Set(now),
    }
    .insert(&*txn)
    .await?;
    replace_permissions(&txn, name, permissions).await?;
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(())
}

pub async fn update(
    db: &super::Db,
    name: &str,
    description: Option<&str>,
    permissions: Option<&[String]>,
    event: NewAuditEvent,
) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithRead).await?;
    let Some(row) = roles::Entity::find_by_id(name.to_string()).one(&*txn).await? else {
        return Ok(false);
    };
    if let Some(description) = description {
        let mut active: roles::ActiveModel = row.into();
        active.description = Set(description.to_string());
        active.update(&*txn).await?;
    }
    if let Some(permissions) = permissions {
        replace_permissions(&txn, name, permissions).await?;
    }
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(true)
}

/// Deletes a non-built-in role; assignments to users and clients cascade.
pub async fn delete(db: &super::Db, name: &str, event: NewAuditEvent) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let deleted = roles::Entity::delete_many()
        .filter(roles::Column::Name.eq(name))
        .filter(roles::Column::Builtin.eq(false))
        .exec(&*txn)
        .await?
        .rows_affected;
    if deleted == 1 {
        audit::record(&txn, event).await?;
    }
    txn.commit().await?;
    Ok(deleted == 1)
}
