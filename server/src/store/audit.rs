//! The append-only audit log.

use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};

use super::StoreResult;
use super::entities::audit_events;

/// One event to append. `details` is a small JSON object and never holds secrets.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub occurred_at: i64,
    pub actor: String,
    pub action: &'static str,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub outcome: &'static str,
    pub details: serde_json::Value,
}

pub async fn record(db: &impl ConnectionTrait, event: NewAuditEvent) -> StoreResult<()> {
    audit_events::ActiveModel {
        occurred_at: Set(event.occurred_at),
        actor: Set(event.actor),
        action: Set(event.action.to_string()),
        target: Set(event.target),
        ip: Set(event.ip),
        outcome: Set(event.outcome.to_string()),
        details: Set(event.details.to_string()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Newest first; used by tests now and by the admin API.
pub async fn list_recent(
    db: &impl ConnectionTrait,
    limit: u64,
) -> StoreResult<Vec<audit_events::Model>> {
    use sea_orm::{EntityTrait, QueryOrder, QuerySelect};
    Ok(audit_events::Entity::find()
        .order_by_desc(audit_events::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}
