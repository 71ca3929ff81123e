//! OAuth clients and the roles their `client_credentials` tokens carry.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};

use super::audit::{self, NewAuditEvent};
use super::entities::{client_roles, clients};
use super::{Page, StoreError, StoreResult};

pub use clients::Model as ClientRow;

pub async fn find(db: &impl ConnectionTrait, client_id: &str) -> StoreResult<Option<ClientRow>> {
    Ok(clients::Entity::find_by_id(client_id.to_string()).one(db).await?)
}

pub async fn role_names(db: &impl ConnectionTrait, client_id: &str) -> StoreResult<Vec<String>> {
    Ok(role_names_of(db, &[client_id.to_string()]).await?.remove(client_id).unwrap_or_default())
}

pub async fn role_names_of(
    db: &impl ConnectionTrait,
    client_ids: &[String],
) -> StoreResult<HashMap<String, Vec<String>>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    if client_ids.is_empty() {
        return Ok(map);
    }
    let rows = client_roles::Entity::find()
        .filter(client_roles::Column::ClientId.is_in(client_ids.iter().cloned()))
        .order_by_asc(client_roles::Column::RoleName)
        .all(db)
        .await?;
    for row in rows {
        map.entry(row.client_id).or_default().push(row.role_name);
    }
    Ok(map)
}

/// Whether some client lists `origin` among its allowed browser origins.
pub async fn origin_allowed(db: &impl ConnectionTrait, origin: &str) -> StoreResult<bool> {
    // LIKE narrows the rows; the exact check is on the split list (LIKE's `_` and `%`).
    let rows = clients::Entity::find().filter(clients::Column::AllowedOrigins.contains(origin)).all(db).await?;
    Ok(rows.iter().any(|row| row.allowed_origins.split_ascii_whitespace().any(|o| o == origin)))
}

pub async fn list(db: &impl ConnectionTrait, page: Page) -> StoreResult<(Vec<ClientRow>, u64)> {
    let total = clients::Entity::find().count(db).await?;
    let rows = clients::Entity::find()
        .order_by_asc(clients::Column::ClientId)
        .offset(page.offset())
        .limit(page.size)
        .all(db)
        .await?;
    Ok((rows, total))
}

async fn replace_roles(txn: &sea_orm::DatabaseTransaction, client_id: &str, roles: &[String]) -> StoreResult<()> {
    if let Some(role) = super::roles::missing(txn, roles).await?.into_iter().next() {
        return Err(StoreError::Missing(format!("role {role:?}")));
    }
    client_roles::Entity::delete_many().filter(client_roles::Column::ClientId.eq(client_id)).exec(txn).await?;
    if !roles.is_empty() {
        client_roles::Entity::insert_many(roles.iter().map(|role| client_roles::ActiveModel {
            client_id: Set(client_id.to_string()),
            role_name: Set(role.clone()),
        }))
        .exec(txn)
        .await?;
    }
    Ok(())
}

/// Inserts the client, its roles and the audit event in one transaction.
pub async fn insert(db: &super::Db, row: ClientRow, roles: &[String], event: NewAuditEvent) -> StoreResult<ClientRow> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let client_id = row.client_id.clone();
    let row = clients::ActiveModel {
        client_id: Set(row.client_id),
        name: Set(row.name),
        client_type: Set(row.client_type),
        secret_hash: Set(row.secret_hash),
        grant_types: Set(row.grant_types),
        scopes: Set(row.scopes),
        audience: Set(row.audience),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
        redirect_uris: Set(row.redirect_uris),
        post_logout_redirect_uris: Set(row.post_logout_redirect_uris),
        first_party: Set(row.first_party),
        allowed_origins: Set(row.allowed_origins),
        role_filter: Set(row.role_filter),
        token_endpoint_auth_method: Set(row.token_endpoint_auth_method),
        backchannel_logout_uri: Set(row.backchannel_logout_uri),
        backchannel_logout_session_required: Set(row.backchannel_logout_session_required),
        dpop_bound_access_tokens: Set(row.dpop_bound_access_tokens),
    }
    .insert(&*txn)
    .await?;
    replace_roles(&txn, &client_id, roles).await?;
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(row)
}

/// What an admin changes on a client; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ClientChanges {
    pub name: Option<String>,
    pub grant_types: Option<String>,
    pub scopes: Option<String>,
    pub audience: Option<Option<String>>,
    pub secret_hash: Option<String>,
    pub roles: Option<Vec<String>>,
    pub redirect_uris: Option<String>,
    pub post_logout_redirect_uris: Option<String>,
    pub first_party: Option<bool>,
    pub allowed_origins: Option<String>,
    pub role_filter: Option<Option<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub backchannel_logout_uri: Option<Option<String>>,
    pub backchannel_logout_session_required: Option<bool>,
    pub dpop_bound_access_tokens: Option<bool>,
}

pub async fn update(
    db: &super::Db,
    client_id: &str,
    changes: ClientChanges,
    now: i64,
    event: NewAuditEvent,
) -> StoreResult<Option<ClientRow>> {
    let txn = super::begin_write(db, super::Starts::WithRead).await?;
    let Some(row) = find(&*txn, client_id).await? else {
        return Ok(None);
    };
    let mut active: clients::ActiveModel = row.into();
    if let Some(name) = changes.name {
        active.name = Set(name);
    }
    if let Some(grants) = changes.grant_types {
        active.grant_types = Set(grants);
    }
    if let Some(scopes) = changes.scopes {
        active.scopes = Set(scopes);
    }
    if let Some(audience) = changes.audience {
        active.audience = Set(audience);
    }
    if let Some(hash) = changes.secret_hash {
        active.secret_hash = Set(Some(hash));
    }
    if let Some(uris) = changes.redirect_uris {
        active.redirect_uris = Set(uris);
    }
    if let Some(uris) = changes.post_logout_redirect_uris {
        active.post_logout_redirect_uris = Set(uris);
    }
    if let Some(first_party) = changes.first_party {
        active.first_party = Set(first_party);
    }
    if let Some(origins) = changes.allowed_origins {
        active.allowed_origins = Set(origins);
    }
    if let Some(filter) = changes.role_filter {
        active.role_filter = Set(filter);
    }
    if let Some(method) = changes.token_endpoint_auth_method {
        active.token_endpoint_auth_method = Set(method);
    }
    if let Some(uri) = changes.backchannel_logout_uri {
        active.backchannel_logout_uri = Set(uri);
    }
    if let Some(required) = changes.backchannel_logout_session_required {
        active.backchannel_logout_session_required = Set(required);
    }
    if let Some(required) = changes.dpop_bound_access_tokens {
        active.dpop_bound_access_tokens = Set(required);
    }
    active.updated_at = Set(now);
    let row = active.update(&*txn).await?;
    if let Some(roles) = changes.roles {
        replace_roles(&txn, client_id, &roles).await?;
    }
    audit::record(&txn, event).await?;
    txn.commit().await?;
    Ok(Some(row))
}

/// Sets a built-in client's redirect URIs (the account page's, from the issuer), when
/// they differ; whether it changed them.
pub async fn set_builtin_redirect_uris(db: &super::Db, client_id: &str, uris: &str) -> StoreResult<bool> {
    use sea_orm::sea_query::Expr;
    let updated = clients::Entity::update_many()
        .col_expr(clients::Column::RedirectUris, Expr::value(uris))
        .filter(clients::Column::ClientId.eq(client_id))
        .filter(clients::Column::RedirectUris.ne(uris))
        .exec(db)
        .await?
        .rows_affected;
    Ok(updated == 1)
}

/// Deletes a client; its sessions and their refresh tokens cascade.
pub async fn delete(db: &super::Db, client_id: &str, event: NewAuditEvent) -> StoreResult<bool> {
    let txn = super::begin_write(db, super::Starts::WithWrite).await?;
    let deleted = clients::Entity::delete_by_id(client_id.to_string()).exec(&*txn).await?.rows_affected;
    if deleted == 1 {
        audit::record(&txn, event).await?;
    }
    txn.commit().await?;
    Ok(deleted == 1)
}
