//! `/admin/audit`.

use chrono::{DateTime, Utc};
use poem_openapi::OpenApi;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;

use super::AdminAuth;
use super::models::{AuditChainResponse, AuditPage};
use crate::api::ApiTags;
use crate::api::error::ApiResult;
use crate::domain::audit;
use crate::domain::rbac::Permission;
use crate::store::audit::AuditFilter;

#[derive(Default)]
pub struct AdminAuditApi;

#[OpenApi(prefix_path = "/admin/audit", tag = "ApiTags::Admin")]
impl AdminAuditApi {
    /// Audit events, newest first. `after_id` returns only newer events (to follow the log).
    #[oai(path = "/", method = "get", operation_id = "adminListAuditEvents")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: AdminAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] page_size: Query<Option<u64>>,
        #[oai(validator(max_length = 256))] actor: Query<Option<String>>,
        #[oai(validator(max_length = 256))] action: Query<Option<String>>,
        #[oai(validator(max_length = 256))] target: Query<Option<String>>,
        since: Query<Option<DateTime<Utc>>>,
        until: Query<Option<DateTime<Utc>>>,
        after_id: Query<Option<i64>>,
    ) -> ApiResult<Json<AuditPage>> {
        auth.require(Permission::AuditRead)?;
        let page = super::page(page.0, page_size.0);
        let filter = AuditFilter {
            actor: actor.0,
            action: action.0,
            target: target.0,
            since: since.0.map(|t| t.timestamp()),
            until: until.0.map(|t| t.timestamp()),
            after_id: after_id.0,
        };
        let (items, total) = audit::list(auth.state(), &filter, page).await?;
        Ok(Json(AuditPage::of(items, total, page)))
    }

    /// The ends of the audit log's hash chain: the head to record elsewhere, and the
    /// anchor the chain starts from after the retention purge.
    #[oai(path = "/chain", method = "get", operation_id = "adminAuditChain")]
    async fn chain(&self, auth: AdminAuth) -> ApiResult<Json<AuditChainResponse>> {
        auth.require(Permission::AuditRead)?;
        Ok(Json(audit::chain_ends(auth.state()).await?.into()))
    }
}
