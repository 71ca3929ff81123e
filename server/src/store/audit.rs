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

impl NewAuditEvent {
    /// A successful action by `actor` on `target`, with no details yet.
    pub fn success(occurred_at: i64, actor: &str, action: &'static str, target: &str) -> Self {
        Self {
            occurred_at,
            actor: actor.to_string(),
            action,
            target: Some(target.to_string()),
            ip: None,
            outcome: "success",
            details: serde_json::json!({}),
        }
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }

    pub fn outcome(mut self, outcome: &'static str) -> Self {
        self.outcome = outcome;
        self
    }
}

/// Longest actor, target or IP kept in an event (characters): events are written for
/// unauthenticated requests too, so nothing they carry may grow the table at will.
pub const FIELD_MAX_CHARS: usize = 256;
/// Longest serialised `details` kept (bytes); longer ones are replaced by a marker.
pub const DETAILS_MAX_BYTES: usize = 4096;

fn bounded(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(FIELD_MAX_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn bounded_details(details: &serde_json::Value) -> String {
    let text = details.to_string();
    if text.len() <= DETAILS_MAX_BYTES {
        text
    } else {
        serde_json::json!({ "truncated": true, "bytes": text.len() }).to_string()
    }
}

/// An event as it is stored: every field bounded, the details serialised. The engines'
/// inline writers ([`super::sqlite`]) insert this; [`record`] inserts it through sea-orm.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub occurred_at: i64,
    pub actor: String,
    pub action: &'static str,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub outcome: &'static str,
    pub details: String,
}

impl From<NewAuditEvent> for StoredEvent {
    fn from(event: NewAuditEvent) -> Self {
        Self {
            occurred_at: event.occurred_at,
            actor: bounded(event.actor),
            action: event.action,
            target: event.target.map(bounded),
            ip: event.ip.map(bounded),
            outcome: event.outcome,
            details: bounded_details(&event.details),
        }
    }
}

pub async fn record(db: &impl ConnectionTrait, event: NewAuditEvent) -> StoreResult<()> {
    let event = StoredEvent::from(event);
    audit_events::ActiveModel {
        occurred_at: Set(event.occurred_at),
        actor: Set(event.actor),
        action: Set(event.action.to_string()),
        target: Set(event.target),
        ip: Set(event.ip),
        outcome: Set(event.outcome.to_string()),
        details: Set(event.details),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Newest first; used by tests now and by the admin API.
pub async fn list_recent(db: &impl ConnectionTrait, limit: u64) -> StoreResult<Vec<audit_events::Model>> {
    use sea_orm::{EntityTrait, QueryOrder, QuerySelect};
    Ok(audit_events::Entity::find().order_by_desc(audit_events::Column::Id).limit(limit).all(db).await?)
}

pub use audit_events::Model as AuditRow;

/// Filters of the audit list; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    /// Only events newer than this id (for following the log).
    pub after_id: Option<i64>,
}

/// Newest first, one page, with the total.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &AuditFilter,
    page: super::Page,
) -> StoreResult<(Vec<AuditRow>, u64)> {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
    let mut query = audit_events::Entity::find();
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_events::Column::Actor.eq(actor.as_str()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_events::Column::Action.eq(action.as_str()));
    }
    if let Some(target) = &filter.target {
        query = query.filter(audit_events::Column::Target.eq(target.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::Column::OccurredAt.gte(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::Column::OccurredAt.lt(until));
    }
    if let Some(after) = filter.after_id {
        query = query.filter(audit_events::Column::Id.gt(after));
    }
    let total = query.clone().count(db).await?;
    let rows = query.order_by_desc(audit_events::Column::Id).offset(page.offset()).limit(page.size).all(db).await?;
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded_whatever_a_request_carried() {
        let long = "é".repeat(60_000);
        let kept = bounded(long);
        assert_eq!(kept.chars().count(), FIELD_MAX_CHARS + 1, "cut at a character boundary, marked");
        assert!(kept.ends_with('…'));
        assert_eq!(bounded("short".into()), "short");
        let details = serde_json::json!({ "username": "x".repeat(10_000) });
        let text = bounded_details(&details);
        assert!(text.len() < 100, "{text}");
        assert!(text.contains("\"truncated\":true"));
    }
}
