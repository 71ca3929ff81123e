//! `/admin/roles`.

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::AdminAuth;
use super::models::{CreateRoleRequest, RoleResponse, UpdateRoleRequest};
use crate::api::ApiTags;
use crate::api::error::ApiResult;
use crate::domain::rbac::{self, Permission};
use crate::state::AppState;

pub struct AdminRolesApi;

#[derive(ApiResponse)]
enum RoleList {
    #[oai(status = 200)]
    Ok(Json<Vec<RoleResponse>>),
}

#[derive(ApiResponse)]
enum RoleResult {
    #[oai(status = 200)]
    Ok(Json<RoleResponse>),
    #[oai(status = 201)]
    Created(Json<RoleResponse>),
}

#[derive(ApiResponse)]
enum NoContent {
    #[oai(status = 204)]
    Done,
}

#[OpenApi(prefix_path = "/admin/roles", tag = "ApiTags::Admin")]
impl AdminRolesApi {
    /// Every role with its permissions and number of users.
    #[oai(path = "/", method = "get", operation_id = "adminListRoles")]
    async fn list(&self, state: Data<&AppState>, auth: AdminAuth) -> ApiResult<RoleList> {
        auth.require(Permission::RolesRead)?;
        let roles = rbac::list_roles(&state).await?;
        Ok(RoleList::Ok(Json(roles.into_iter().map(Into::into).collect())))
    }

    /// Create a role; its permissions are free-form `resource:action` strings.
    #[oai(path = "/", method = "post", operation_id = "adminCreateRole")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        body: Json<CreateRoleRequest>,
    ) -> ApiResult<RoleResult> {
        let admin = auth.require(Permission::RolesWrite)?;
        let body = body.0;
        let role =
            rbac::create_role(&state, &body.name, &body.description, &body.permissions, &admin.grantor()).await?;
        Ok(RoleResult::Created(Json(role.into())))
    }

    #[oai(path = "/:name", method = "get", operation_id = "adminGetRole")]
    async fn get(&self, state: Data<&AppState>, auth: AdminAuth, name: Path<String>) -> ApiResult<RoleResult> {
        auth.require(Permission::RolesRead)?;
        Ok(RoleResult::Ok(Json(rbac::get_role(&state, &name.0).await?.into())))
    }

    /// Change the description and/or replace the permissions.
    #[oai(path = "/:name", method = "patch", operation_id = "adminUpdateRole")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        name: Path<String>,
        body: Json<UpdateRoleRequest>,
    ) -> ApiResult<RoleResult> {
        let admin = auth.require(Permission::RolesWrite)?;
        let body = body.0;
        let role = rbac::update_role(
            &state,
            &name.0,
            body.description.as_deref(),
            body.permissions.as_deref(),
            &admin.grantor(),
        )
        .await?;
        Ok(RoleResult::Ok(Json(role.into())))
    }

    /// Delete a role (409 for built-in roles); its assignments go with it.
    #[oai(path = "/:name", method = "delete", operation_id = "adminDeleteRole")]
    async fn delete(&self, state: Data<&AppState>, auth: AdminAuth, name: Path<String>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::RolesWrite)?;
        rbac::delete_role(&state, &name.0, &admin.grantor()).await?;
        Ok(NoContent::Done)
    }
}
