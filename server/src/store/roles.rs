//! Roles and their permissions.

use std::collections::BTreeSet;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use super::StoreResult;
use super::entities::{role_permissions, roles};

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
    Ok(names
        .iter()
        .filter(|n| !found.contains(*n))
        .cloned()
        .collect())
}

/// Union of the permissions of `role_names`.
pub async fn permissions_of(
    db: &impl ConnectionTrait,
    role_names: &[String],
) -> StoreResult<BTreeSet<String>> {
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
