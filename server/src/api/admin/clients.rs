//! `/admin/clients`.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::models::{
    BackchannelDeliveryResponse, ClientPage, ClientResponse, ClientSecretResponse, CreateClientRequest,
    CreatedClientResponse, RequeuedCount, UpdateClientRequest,
};
use super::{AdminAuth, Created, NoContent};
use crate::api::ApiTags;
use crate::api::documented::strings;
use crate::api::error::ApiResult;
use crate::domain::clients::{self, ClientUpdate, NewClient};
use crate::domain::rbac::Permission;

#[derive(Default)]
pub struct AdminClientsApi;

#[derive(ApiResponse)]
enum SecretResult {
    #[oai(status = 200)]
    Ok(Json<ClientSecretResponse>, #[oai(header = "Cache-Control")] String),
}

#[OpenApi(prefix_path = "/admin/clients", tag = "ApiTags::Admin")]
impl AdminClientsApi {
    #[oai(path = "/", method = "get", operation_id = "adminListClients")]
    async fn list(
        &self,
        auth: AdminAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))] page_size: Query<Option<u64>>,
    ) -> ApiResult<Json<ClientPage>> {
        auth.require(Permission::ClientsRead)?;
        let page = super::page(page.0, page_size.0);
        let (items, total) = clients::list(auth.state(), page).await?;
        Ok(Json(ClientPage::of(items, total, page)))
    }

    /// Create a client. A confidential client's secret is in the response, once.
    #[oai(path = "/", method = "post", operation_id = "adminCreateClient")]
    async fn create(
        &self,
        auth: AdminAuth,
        body: Json<CreateClientRequest>,
    ) -> ApiResult<Created<CreatedClientResponse>> {
        let admin = auth.require(Permission::ClientsWrite)?;
        let body = body.0;
        let new = NewClient {
            client_id: body.client_id.0,
            name: body.name,
            confidential: body.confidential,
            grant_types: body.grant_types,
            scopes: strings(body.scopes),
            audience: body.audience,
            roles: strings(body.roles),
            redirect_uris: body.redirect_uris,
            post_logout_redirect_uris: body.post_logout_redirect_uris,
            first_party: body.first_party,
            allowed_origins: body.allowed_origins,
            visible_roles: body.visible_roles.map(strings),
            token_endpoint_auth_method: body.token_endpoint_auth_method.map(|m| m.0),
            backchannel_logout_uri: body.backchannel_logout_uri,
            backchannel_logout_session_required: body.backchannel_logout_session_required,
            dpop_bound_access_tokens: body.dpop_bound_access_tokens,
        };
        let (client, secret) = clients::create(auth.state(), new, &admin.grantor()).await?;
        Ok(Created::New(Json(CreatedClientResponse {
            client: client.into(),
            client_secret: secret.map(|s| s.expose().clone()),
        })))
    }

    #[oai(path = "/:client_id", method = "get", operation_id = "adminGetClient")]
    async fn get(&self, auth: AdminAuth, client_id: Path<String>) -> ApiResult<Json<ClientResponse>> {
        auth.require(Permission::ClientsRead)?;
        Ok(Json(clients::get(auth.state(), &client_id.0).await?.into()))
    }

    #[oai(path = "/:client_id", method = "patch", operation_id = "adminUpdateClient")]
    async fn update(
        &self,
        auth: AdminAuth,
        client_id: Path<String>,
        body: Json<UpdateClientRequest>,
    ) -> ApiResult<Json<ClientResponse>> {
        let admin = auth.require(Permission::ClientsWrite)?;
        let body = body.0;
        let update = ClientUpdate {
            name: body.name,
            grant_types: body.grant_types,
            scopes: body.scopes.map(strings),
            audience: if body.audience.is_undefined() { None } else { Some(body.audience.take()) },
            roles: body.roles.map(strings),
            redirect_uris: body.redirect_uris,
            post_logout_redirect_uris: body.post_logout_redirect_uris,
            first_party: body.first_party,
            allowed_origins: body.allowed_origins,
            visible_roles: if body.visible_roles.is_undefined() {
                None
            } else {
                Some(body.visible_roles.take().map(strings))
            },
            token_endpoint_auth_method: body.token_endpoint_auth_method.map(|m| m.0),
            backchannel_logout_uri: if body.backchannel_logout_uri.is_undefined() {
                None
            } else {
                Some(body.backchannel_logout_uri.take())
            },
            backchannel_logout_session_required: body.backchannel_logout_session_required,
            dpop_bound_access_tokens: body.dpop_bound_access_tokens,
        };
        let client = clients::update(auth.state(), &client_id.0, update, &admin.grantor()).await?;
        Ok(Json(client.into()))
    }

    /// Replace a confidential client's secret; the old one stops working at once.
    #[oai(path = "/:client_id/secret", method = "post", operation_id = "adminRotateClientSecret")]
    async fn rotate_secret(&self, auth: AdminAuth, client_id: Path<String>) -> ApiResult<SecretResult> {
        let admin = auth.require(Permission::ClientsWrite)?;
        let secret = clients::rotate_secret(auth.state(), &client_id.0, &admin.grantor()).await?;
        Ok(SecretResult::Ok(
            Json(ClientSecretResponse { client_id: client_id.0, client_secret: secret.expose().clone() }),
            "no-store".into(),
        ))
    }

    /// Delete a client and its sessions (the built-in `spa` and `latchkey-admin` refuse).
    #[oai(path = "/:client_id", method = "delete", operation_id = "adminDeleteClient")]
    async fn delete(&self, auth: AdminAuth, client_id: Path<String>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::ClientsWrite)?;
        clients::delete(auth.state(), &client_id.0, &admin.grantor()).await?;
        Ok(NoContent::Done)
    }

    /// How the client's back-channel logout tokens are delivered: counts by state, the
    /// last delivery, and its most recent messages.
    #[oai(path = "/:client_id/backchannel-logout", method = "get", operation_id = "adminGetClientBackchannelLogout")]
    async fn backchannel(
        &self,
        auth: AdminAuth,
        client_id: Path<String>,
    ) -> ApiResult<Json<BackchannelDeliveryResponse>> {
        auth.require(Permission::ClientsRead)?;
        Ok(Json(clients::backchannel(auth.state(), &client_id.0).await?.into()))
    }

    /// Queue the client's dead logout tokens again (after its endpoint was fixed).
    #[oai(
        path = "/:client_id/backchannel-logout/retry",
        method = "post",
        operation_id = "adminRetryClientBackchannelLogout"
    )]
    async fn retry_backchannel(&self, auth: AdminAuth, client_id: Path<String>) -> ApiResult<Json<RequeuedCount>> {
        let admin = auth.require(Permission::ClientsWrite)?;
        let requeued = clients::retry_dead_logouts(auth.state(), &client_id.0, &admin.grantor()).await?;
        Ok(Json(RequeuedCount { requeued }))
    }
}
