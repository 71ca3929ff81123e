//! `/admin/roles`.

use poem_openapi::OpenApi;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;

use super::models::{CreateRoleRequest, RoleResponse, UpdateRoleRequest};
use super::{AdminAuth, Created, NoContent};
use crate::api::ApiTags;
use crate::api::documented::strings;
use crate::api::error::ApiResult;
use crate::domain::rbac::{self, Permission};

#[derive(Default)]
pub struct AdminRolesApi;

#[OpenApi(prefix_path = "/admin/roles", tag = "ApiTags::Admin")]
impl AdminRolesApi {
    /// Every role with its permissions and number of users.
    #[oai(path = "/", method = "get", operation_id = "adminListRoles")]
    async fn list(&self, auth: AdminAuth) -> ApiResult<Json<Vec<RoleResponse>>> {
        auth.require(Permission::RolesRead)?;
        let roles = rbac::list_roles(auth.state()).await?;
        Ok(Json(roles.into_iter().map(Into::into).collect()))
    }

    /// Create a role; its permissions are free-form `resource:action` strings.
    #[oai(path = "/", method = "post", operation_id = "adminCreateRole")]
    async fn create(&self, auth: AdminAuth, body: Json<CreateRoleRequest>) -> ApiResult<Created<RoleResponse>> {
        let admin = auth.require(Permission::RolesWrite)?;
        let body = body.0;
        let role = rbac::create_role(
            auth.state(),
            &body.name.0,
            &body.description,
            &strings(body.permissions),
            &admin.grantor(),
        )
        .await?;
        Ok(Created::New(Json(role.into())))
    }

    #[oai(path = "/:name", method = "get", operation_id = "adminGetRole")]
    async fn get(&self, auth: AdminAuth, name: Path<String>) -> ApiResult<Json<RoleResponse>> {
        auth.require(Permission::RolesRead)?;
        Ok(Json(rbac::get_role(auth.state(), &name.0).await?.into()))
    }

    /// Change the description and/or replace the permissions.
    #[oai(path = "/:name", method = "patch", operation_id = "adminUpdateRole")]
    async fn update(
        &self,
        auth: AdminAuth,
        name: Path<String>,
        body: Json<UpdateRoleRequest>,
    ) -> ApiResult<Json<RoleResponse>> {
        let admin = auth.require(Permission::RolesWrite)?;
        let body = body.0;
        let role = rbac::update_role(
            auth.state(),
            &name.0,
            body.description.as_deref(),
            body.permissions.map(strings).as_deref(),
            &admin.grantor(),
        )
        .await?;
        Ok(Json(role.into()))
    }

    /// Delete a role (409 for built-in roles); its assignments go with it.
    #[oai(path = "/:name", method = "delete", operation_id = "adminDeleteRole")]
    async fn delete(&self, auth: AdminAuth, name: Path<String>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::RolesWrite)?;
        rbac::delete_role(auth.state(), &name.0, &admin.grantor()).await?;
        Ok(NoContent::Done)
    }
}
