//! `/admin/users`.

use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;

use super::models::{
    CreateUserRequest, CreatedUserResponse, RevokedCount, SessionPage, SetPasswordRequest, SetRolesRequest,
    UpdateUserRequest, UserPage,
};
use super::{AdminAuth, Created, NoContent};
use crate::api::ApiTags;
use crate::api::documented::{ClientIdWord, IdWord, StatusWord, strings};
use crate::api::error::ApiResult;
use crate::api::models::{BrowserSessionResponse, ConsentResponse, PasskeyResponse, UserResponse};
use crate::domain::auth::RequestContext;
use crate::domain::rbac::Permission;
use crate::domain::{grants, sessions, users};
use crate::security::Secret;
use crate::store::sessions::SessionFilter;
use crate::store::users::UserFilter;

#[derive(Default)]
pub struct AdminUsersApi;

#[OpenApi(prefix_path = "/admin/users", tag = "ApiTags::Admin")]
impl AdminUsersApi {
    /// List users, filtered by text (username or email), role and status.
    #[oai(path = "/", method = "get", operation_id = "adminListUsers")]
    async fn list(
        &self,
        auth: AdminAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] page_size: Query<Option<u64>>,
        #[oai(validator(max_length = 256))] q: Query<Option<String>>,
        #[oai(validator(max_length = 256))] role: Query<Option<String>>,
        status: Query<Option<StatusWord>>,
    ) -> ApiResult<Json<UserPage>> {
        auth.require(Permission::UsersRead)?;
        let page = super::page(page.0, page_size.0);
        let status = status.0.map(|word| users::parse_status(&word.0)).transpose()?;
        let filter = UserFilter { text: q.0, role: role.0, status };
        let (items, total) = users::list(auth.state(), &filter, page).await?;
        Ok(Json(UserPage::of(items, total, page)))
    }

    /// Create a user with a password, or with a generated one-time password.
    #[oai(path = "/", method = "post", operation_id = "adminCreateUser")]
    async fn create(&self, auth: AdminAuth, body: Json<CreateUserRequest>) -> ApiResult<Created<CreatedUserResponse>> {
        let admin = auth.require(Permission::UsersWrite)?;
        let body = body.0;
        let (user, one_time) = users::admin_create(
            auth.state(),
            body.username.0,
            body.email,
            body.password.map(|p| Secret::new(p.0)),
            strings(body.roles),
            &admin.grantor(),
        )
        .await?;
        Ok(Created::New(Json(CreatedUserResponse {
            user: user.into(),
            one_time_password: one_time.map(|p| p.expose().clone()),
        })))
    }

    #[oai(path = "/:id", method = "get", operation_id = "adminGetUser")]
    async fn get(&self, auth: AdminAuth, id: Path<IdWord>) -> ApiResult<Json<UserResponse>> {
        auth.require(Permission::UsersRead)?;
        users::check_id(&id.0.0)?;
        Ok(Json(users::get(auth.state(), &id.0.0).await?.into()))
    }

    /// Change email, its verified mark and/or status; disabling ends every session of
    /// the user at once. A new address is unverified unless `email_verified: true` comes
    /// with it; 409 `email_taken` when another account has verified that address.
    #[oai(path = "/:id", method = "patch", operation_id = "adminUpdateUser")]
    async fn update(
        &self,
        auth: AdminAuth,
        id: Path<IdWord>,
        body: Json<UpdateUserRequest>,
    ) -> ApiResult<Json<UserResponse>> {
        let admin = auth.require(Permission::UsersWrite)?;
        let body = body.0;
        let update = users::AdminUpdate {
            email: if body.email.is_undefined() { None } else { Some(body.email.take()) },
            email_verified: body.email_verified,
            status: body.status.map(|s| s.0),
        };
        let user = users::admin_update(auth.state(), &id.0.0, update, &admin.grantor()).await?;
        Ok(Json(user.into()))
    }

    /// Mail the user a link that verifies its current address (replacing an earlier
    /// one). 403 `mail_not_configured` without mail, 400 `no_email` without an address,
    /// 429 past the address's hourly limit.
    #[oai(path = "/:id/verification-mail", method = "post", operation_id = "adminSendUserVerification")]
    async fn send_verification(&self, auth: AdminAuth, id: Path<IdWord>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::UsersWrite)?;
        users::admin_send_link(auth.state(), &id.0.0, false, &admin.grantor()).await?;
        Ok(NoContent::Done)
    }

    /// Mail the user a password reset link (valid 30 minutes, replacing an earlier one)
    /// at its address. Errors as for the verification mail.
    #[oai(path = "/:id/reset-mail", method = "post", operation_id = "adminSendUserPasswordReset")]
    async fn send_reset(&self, auth: AdminAuth, id: Path<IdWord>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::UsersWrite)?;
        users::admin_send_link(auth.state(), &id.0.0, true, &admin.grantor()).await?;
        Ok(NoContent::Done)
    }

    /// Delete a user and everything it owns (sessions, role assignments).
    #[oai(path = "/:id", method = "delete", operation_id = "adminDeleteUser")]
    async fn delete(&self, auth: AdminAuth, id: Path<IdWord>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::UsersWrite)?;
        users::admin_delete(auth.state(), &id.0.0, &admin.grantor()).await?;
        Ok(NoContent::Done)
    }

    /// Set a new password; the user's sessions end.
    #[oai(path = "/:id/password", method = "put", operation_id = "adminSetUserPassword")]
    async fn set_password(
        &self,
        auth: AdminAuth,
        id: Path<IdWord>,
        body: Json<SetPasswordRequest>,
    ) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::UsersWrite)?;
        users::admin_set_password(auth.state(), &id.0.0, &Secret::new(body.0.password.0), &admin.grantor()).await?;
        Ok(NoContent::Done)
    }

    /// Replace the user's roles (tokens carry them from the next refresh on).
    #[oai(path = "/:id/roles", method = "put", operation_id = "adminSetUserRoles")]
    async fn set_roles(
        &self,
        auth: AdminAuth,
        id: Path<IdWord>,
        body: Json<SetRolesRequest>,
    ) -> ApiResult<Json<UserResponse>> {
        let admin = auth.require(Permission::UsersWrite)?;
        let user = users::admin_set_roles(auth.state(), &id.0.0, strings(body.0.roles), &admin.grantor()).await?;
        Ok(Json(user.into()))
    }

    /// Clear the user's lockouts (password and TOTP).
    #[oai(path = "/:id/unlock", method = "post", operation_id = "adminUnlockUser")]
    async fn unlock(&self, auth: AdminAuth, id: Path<IdWord>) -> ApiResult<Json<UserResponse>> {
        let admin = auth.require(Permission::UsersWrite)?;
        Ok(Json(users::admin_unlock(auth.state(), &id.0.0, &admin.grantor()).await?.into()))
    }

    /// Remove the user's TOTP and recovery codes (lost device); audited.
    #[oai(path = "/:id/totp", method = "delete", operation_id = "adminResetUserTotp")]
    async fn reset_totp(&self, auth: AdminAuth, id: Path<IdWord>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::UsersWrite)?;
        crate::domain::mfa::admin_reset(auth.state(), &id.0.0, &admin.grantor()).await?;
        Ok(NoContent::Done)
    }

    /// The user's live sessions.
    #[oai(path = "/:id/sessions", method = "get", operation_id = "adminListUserSessions")]
    async fn sessions(
        &self,
        auth: AdminAuth,
        id: Path<IdWord>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<SessionPage>> {
        auth.require(Permission::SessionsRead)?;
        let page = super::page(page.0, page_size.0);
        users::check_id(&id.0.0)?;
        users::get(auth.state(), &id.0.0).await?;
        let filter = SessionFilter { user_id: Some(id.0.0), client_id: None };
        let (items, total) = sessions::admin_list(auth.state(), &filter, page).await?;
        Ok(Json(SessionPage::of(items, total, page)))
    }

    /// The user's passkeys.
    #[oai(path = "/:id/passkeys", method = "get", operation_id = "adminListUserPasskeys")]
    async fn passkeys(&self, auth: AdminAuth, id: Path<IdWord>) -> ApiResult<Json<Vec<PasskeyResponse>>> {
        auth.require(Permission::UsersRead)?;
        users::check_id(&id.0.0)?;
        users::get(auth.state(), &id.0.0).await?;
        let views = crate::domain::passkeys::list(auth.state(), &id.0.0).await?;
        Ok(Json(views.into_iter().map(Into::into).collect()))
    }

    /// Delete one of the user's passkeys (a lost device). Even the last one: an account
    /// whose roles require a second factor enrols a new one at its next sign-in.
    #[oai(path = "/:id/passkeys/:passkey_id", method = "delete", operation_id = "adminDeleteUserPasskey")]
    async fn delete_passkey(
        &self,
        auth: AdminAuth,
        id: Path<IdWord>,
        passkey_id: Path<IdWord>,
    ) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::UsersWrite)?;
        crate::domain::passkeys::admin_delete(auth.state(), &id.0.0, &passkey_id.0.0, &admin.grantor()).await?;
        Ok(NoContent::Done)
    }

    /// The user's live browser sessions at the hosted sign-in pages (SSO).
    #[oai(path = "/:id/browser-sessions", method = "get", operation_id = "adminListUserBrowserSessions")]
    async fn browser_sessions(
        &self,
        auth: AdminAuth,
        id: Path<IdWord>,
    ) -> ApiResult<Json<Vec<BrowserSessionResponse>>> {
        auth.require(Permission::SessionsRead)?;
        users::check_id(&id.0.0)?;
        users::get(auth.state(), &id.0.0).await?;
        let rows = grants::browser_sessions(auth.state(), &id.0.0).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// End one of the user's browser sessions.
    #[oai(path = "/:id/browser-sessions/:session_id", method = "delete", operation_id = "adminEndUserBrowserSession")]
    async fn end_browser_session(
        &self,
        auth: AdminAuth,
        id: Path<IdWord>,
        session_id: Path<IdWord>,
    ) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::SessionsRevoke)?;
        let ctx = RequestContext::internal(auth.state().now());
        grants::end_browser_session(auth.state(), &id.0.0, &session_id.0.0, admin.actor(), &ctx).await?;
        Ok(NoContent::Done)
    }

    /// The applications the user consented to.
    #[oai(path = "/:id/consents", method = "get", operation_id = "adminListUserConsents")]
    async fn consents(&self, auth: AdminAuth, id: Path<IdWord>) -> ApiResult<Json<Vec<ConsentResponse>>> {
        auth.require(Permission::UsersRead)?;
        users::check_id(&id.0.0)?;
        users::get(auth.state(), &id.0.0).await?;
        let views = grants::consents(auth.state(), &id.0.0).await?;
        Ok(Json(views.into_iter().map(Into::into).collect()))
    }

    /// Withdraw the user's consent to an application.
    #[oai(path = "/:id/consents/:client_id", method = "delete", operation_id = "adminRevokeUserConsent")]
    async fn revoke_consent(
        &self,
        auth: AdminAuth,
        id: Path<IdWord>,
        client_id: Path<ClientIdWord>,
    ) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::UsersWrite)?;
        let ctx = RequestContext::internal(auth.state().now());
        grants::revoke_consent(auth.state(), &id.0.0, &client_id.0.0, admin.actor(), &ctx).await?;
        Ok(NoContent::Done)
    }

    /// Revoke every session of the user.
    #[oai(path = "/:id/sessions", method = "delete", operation_id = "adminRevokeUserSessions")]
    async fn revoke_sessions(&self, auth: AdminAuth, id: Path<IdWord>) -> ApiResult<Json<RevokedCount>> {
        let admin = auth.require(Permission::SessionsRevoke)?;
        let revoked = sessions::admin_revoke_all(auth.state(), &id.0.0, admin.actor()).await?;
        Ok(Json(RevokedCount { revoked }))
    }
}
