//! OAuth clients.

use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set, TransactionTrait};

use super::StoreResult;
use super::entities::clients;

pub use clients::Model as ClientRow;

pub const TYPE_PUBLIC: &str = "public";
pub const TYPE_CONFIDENTIAL: &str = "confidential";

pub async fn find(db: &impl ConnectionTrait, client_id: &str) -> StoreResult<Option<ClientRow>> {
    Ok(clients::Entity::find_by_id(client_id.to_string())
        .one(db)
        .await?)
}

/// Inserts the client and its audit event in one transaction.
pub async fn insert(
    db: &super::Db,
    row: ClientRow,
    event: super::audit::NewAuditEvent,
) -> StoreResult<ClientRow> {
    let txn = db.begin().await?;
    let row = clients::ActiveModel {
        client_id: Set(row.client_id),
        name: Set(row.name),
        client_type: Set(row.client_type),
        secret_hash: Set(row.secret_hash),
        grant_types: Set(row.grant_types),
        scopes: Set(row.scopes),
        audience: Set(row.audience),
        roles: Set(row.roles),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
    }
    .insert(&txn)
    .await?;
    super::audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(row)
}
