//! Reading the audit log (writing happens in the same transaction as each change).

use crate::state::AppState;
use crate::store::Page;
use crate::store::audit::{self, AuditFilter, AuditRow};

use super::Result;

pub async fn list(state: &AppState, filter: &AuditFilter, page: Page) -> Result<(Vec<AuditRow>, u64)> {
    Ok(audit::list(&state.db, filter, page).await?)
}
