//! `/admin/sessions`.

use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;

use super::models::SessionPage;
use super::{AdminAuth, NoContent};
use crate::api::ApiTags;
use crate::api::documented::IdWord;
use crate::api::error::ApiResult;
use crate::domain::rbac::Permission;
use crate::domain::sessions;
use crate::store::sessions::SessionFilter;

#[derive(Default)]
pub struct AdminSessionsApi;

#[OpenApi(prefix_path = "/admin/sessions", tag = "ApiTags::Admin")]
impl AdminSessionsApi {
    /// All live sessions, most recently used first; filter by user or client.
    #[oai(path = "/", method = "get", operation_id = "adminListSessions")]
    async fn list(
        &self,
        auth: AdminAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] page_size: Query<Option<u64>>,
        user_id: Query<Option<IdWord>>,
        #[oai(validator(max_length = 256))] client_id: Query<Option<String>>,
    ) -> ApiResult<Json<SessionPage>> {
        auth.require(Permission::SessionsRead)?;
        let page = super::page(page.0, page_size.0);
        let filter = SessionFilter { user_id: user_id.0.map(String::from), client_id: client_id.0 };
        let (items, total) = sessions::admin_list(auth.state(), &filter, page).await?;
        Ok(Json(SessionPage::of(items, total, page)))
    }

    /// Revoke a session: its refresh tokens die, and its access tokens fail the
    /// session check here at once (offline verifiers accept them until `exp`).
    #[oai(path = "/:id", method = "delete", operation_id = "adminRevokeSession")]
    async fn revoke(&self, auth: AdminAuth, id: Path<IdWord>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::SessionsRevoke)?;
        sessions::admin_revoke(auth.state(), &id.0.0, admin.actor()).await?;
        Ok(NoContent::Done)
    }
}
