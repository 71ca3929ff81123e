//! Reading the audit log (writing happens in the same transaction as each change).

use crate::state::AppState;
use crate::store::Page;
use crate::store::audit::{self, AuditFilter, AuditRow};

use super::Result;

/// An audit event with the usernames of the users it names, for readers (the console
/// shows names, not ids). A name is absent when the id is not a user's (a client, a
/// session, a key) or the user has been deleted since.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub row: AuditRow,
    pub actor_name: Option<String>,
    pub target_name: Option<String>,
}

pub async fn list(state: &AppState, filter: &AuditFilter, page: Page) -> Result<(Vec<AuditEntry>, u64)> {
    let (rows, total) = audit::list(&state.db, filter, page).await?;
    let mut ids: Vec<String> = rows
        .iter()
        .flat_map(|row| std::iter::once(&row.actor).chain(row.target.as_ref()))
        .filter(|id| uuid::Uuid::try_parse(id).is_ok())
        .cloned()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let names = crate::store::users::usernames_of(&state.db, &ids).await?;
    let entries = rows
        .into_iter()
        .map(|row| AuditEntry {
            actor_name: names.get(&row.actor).cloned(),
            target_name: row.target.as_ref().and_then(|t| names.get(t)).cloned(),
            row,
        })
        .collect();
    Ok((entries, total))
}
