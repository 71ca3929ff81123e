//! `/admin/users`.

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::AdminAuth;
use super::models::{
    CreateUserRequest, CreatedUserResponse, RevokedCount, SessionPage, SetPasswordRequest, SetRolesRequest,
    UpdateUserRequest, UserPage,
};
use crate::api::ApiTags;
use crate::api::error::ApiResult;
use crate::api::models::UserResponse;
use crate::domain::rbac::Permission;
use crate::domain::{sessions, users};
use crate::security::Secret;
use crate::state::AppState;
use crate::store::sessions::SessionFilter;
use crate::store::users::UserFilter;

pub struct AdminUsersApi;

#[derive(ApiResponse)]
enum ListResponse {
    #[oai(status = 200)]
    Ok(Json<UserPage>),
}

#[derive(ApiResponse)]
enum CreatedResponse {
    #[oai(status = 201)]
    Created(Json<CreatedUserResponse>),
}

#[derive(ApiResponse)]
enum UserResult {
    #[oai(status = 200)]
    Ok(Json<UserResponse>),
}

#[derive(ApiResponse)]
enum NoContent {
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
enum SessionsResult {
    #[oai(status = 200)]
    Ok(Json<SessionPage>),
}

#[derive(ApiResponse)]
enum RevokedResult {
    #[oai(status = 200)]
    Ok(Json<RevokedCount>),
}

#[OpenApi(prefix_path = "/admin/users", tag = "ApiTags::Admin")]
impl AdminUsersApi {
    /// List users, filtered by text (username or email), role and status.
    #[oai(path = "/", method = "get", operation_id = "adminListUsers")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] page_size: Query<Option<u64>>,
        #[oai(validator(max_length = 256))] q: Query<Option<String>>,
        #[oai(validator(max_length = 256))] role: Query<Option<String>>,
        #[oai(validator(max_length = 256))] status: Query<Option<String>>,
    ) -> ApiResult<ListResponse> {
        auth.require(Permission::UsersRead)?;
        let page = super::page(page.0, page_size.0);
        let status = status.0.as_deref().map(users::parse_status).transpose()?;
        let filter = UserFilter { text: q.0, role: role.0, status };
        let (items, total) = users::list(&state, &filter, page).await?;
        Ok(ListResponse::Ok(Json(UserPage::of(items, total, page))))
    }

    /// Create a user with a password, or with a generated one-time password.
    #[oai(path = "/", method = "post", operation_id = "adminCreateUser")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        body: Json<CreateUserRequest>,
    ) -> ApiResult<CreatedResponse> {
        let admin = auth.require(Permission::UsersWrite)?;
        let body = body.0;
        let (user, one_time) = users::admin_create(
            &state,
            body.username,
            body.email,
            body.password.map(Secret::new),
            body.roles,
            &admin.grantor(),
        )
        .await?;
        Ok(CreatedResponse::Created(Json(CreatedUserResponse {
            user: user.into(),
            one_time_password: one_time.map(|p| p.expose().clone()),
        })))
    }

    #[oai(path = "/:id", method = "get", operation_id = "adminGetUser")]
    async fn get(&self, state: Data<&AppState>, auth: AdminAuth, id: Path<String>) -> ApiResult<UserResult> {
        auth.require(Permission::UsersRead)?;
        users::check_id(&id.0)?;
        Ok(UserResult::Ok(Json(users::get(&state, &id.0).await?.into())))
    }

    /// Change email and/or status; disabling ends every session of the user at once.
    #[oai(path = "/:id", method = "patch", operation_id = "adminUpdateUser")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<UpdateUserRequest>,
    ) -> ApiResult<UserResult> {
        let admin = auth.require(Permission::UsersWrite)?;
        let body = body.0;
        let email = if body.email.is_undefined() { None } else { Some(body.email.take()) };
        let user = users::admin_update(&state, &id.0, email, body.status, &admin.grantor()).await?;
        Ok(UserResult::Ok(Json(user.into())))
    }

    /// Delete a user and everything it owns (sessions, role assignments).
    #[oai(path = "/:id", method = "delete", operation_id = "adminDeleteUser")]
    async fn delete(&self, state: Data<&AppState>, auth: AdminAuth, id: Path<String>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::UsersWrite)?;
        users::admin_delete(&state, &id.0, &admin.grantor()).await?;
        Ok(NoContent::Done)
    }

    /// Set a new password; the user's sessions end.
    #[oai(path = "/:id/password", method = "put", operation_id = "adminSetUserPassword")]
    async fn set_password(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<SetPasswordRequest>,
    ) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::UsersWrite)?;
        users::admin_set_password(&state, &id.0, &Secret::new(body.0.password), &admin.grantor()).await?;
        Ok(NoContent::Done)
    }

    /// Replace the user's roles (tokens carry them from the next refresh on).
    #[oai(path = "/:id/roles", method = "put", operation_id = "adminSetUserRoles")]
    async fn set_roles(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        id: Path<String>,
        body: Json<SetRolesRequest>,
    ) -> ApiResult<UserResult> {
        let admin = auth.require(Permission::UsersWrite)?;
        let user = users::admin_set_roles(&state, &id.0, body.0.roles, &admin.grantor()).await?;
        Ok(UserResult::Ok(Json(user.into())))
    }

    /// Clear the user's lockouts (password and TOTP).
    #[oai(path = "/:id/unlock", method = "post", operation_id = "adminUnlockUser")]
    async fn unlock(&self, state: Data<&AppState>, auth: AdminAuth, id: Path<String>) -> ApiResult<UserResult> {
        let admin = auth.require(Permission::UsersWrite)?;
        Ok(UserResult::Ok(Json(users::admin_unlock(&state, &id.0, &admin.grantor()).await?.into())))
    }

    /// Remove the user's TOTP and recovery codes (lost device); audited.
    #[oai(path = "/:id/totp", method = "delete", operation_id = "adminResetUserTotp")]
    async fn reset_totp(&self, state: Data<&AppState>, auth: AdminAuth, id: Path<String>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::UsersWrite)?;
        crate::domain::mfa::admin_reset(&state, &id.0, &admin.grantor()).await?;
        Ok(NoContent::Done)
    }

    /// The user's live sessions.
    #[oai(path = "/:id/sessions", method = "get", operation_id = "adminListUserSessions")]
    async fn sessions(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        id: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] page_size: Query<Option<u64>>,
    ) -> ApiResult<SessionsResult> {
        auth.require(Permission::SessionsRead)?;
        let page = super::page(page.0, page_size.0);
        users::check_id(&id.0)?;
        users::get(&state, &id.0).await?;
        let filter = SessionFilter { user_id: Some(id.0), client_id: None };
        let (items, total) = sessions::admin_list(&state, &filter, page).await?;
        Ok(SessionsResult::Ok(Json(SessionPage::of(items, total, page))))
    }

    /// Revoke every session of the user.
    #[oai(path = "/:id/sessions", method = "delete", operation_id = "adminRevokeUserSessions")]
    async fn revoke_sessions(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        id: Path<String>,
    ) -> ApiResult<RevokedResult> {
        let admin = auth.require(Permission::SessionsRevoke)?;
        let revoked = sessions::admin_revoke_all(&state, &id.0, admin.actor()).await?;
        Ok(RevokedResult::Ok(Json(RevokedCount { revoked })))
    }
}
