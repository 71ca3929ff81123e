//! `/admin/keys`: the signing-key lifecycle.

use crate::store::entities::KeyState;
use chrono::{DateTime, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{AdminAuth, NoContent};
use crate::api::ApiTags;
use crate::api::error::ApiResult;
use crate::clock::to_datetime;
use crate::domain::keys;
use crate::domain::rbac::Permission;
use crate::state::AppState;
use crate::store::keys::SigningKeyRow;

#[derive(Default)]
pub struct AdminKeysApi;

#[derive(Debug, Object)]
pub struct SigningKeyResponse {
    /// RFC 7638 thumbprint, the JWT `kid`.
    pub kid: String,
    pub algorithm: String,
    pub bits: i32,
    /// `pending`, `active`, `retired` or `revoked`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub activated_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub retired_at: Option<DateTime<Utc>>,
    /// In the JWKS now.
    pub published: bool,
    /// For a pending key: when it starts signing.
    #[oai(skip_serializing_if_is_none)]
    pub activates_at: Option<DateTime<Utc>>,
    /// For a retired key: when it leaves the JWKS (its last token has expired).
    #[oai(skip_serializing_if_is_none)]
    pub unpublished_at: Option<DateTime<Utc>>,
}

fn response(state: &AppState, row: SigningKeyRow) -> SigningKeyResponse {
    let lifecycle = keys::Lifecycle::of(&state.config);
    SigningKeyResponse {
        published: lifecycle.is_published(&row, state.now()),
        activates_at: (row.state == KeyState::Pending).then(|| to_datetime(lifecycle.activation_due(row.created_at))),
        unpublished_at: (row.state == KeyState::Retired)
            .then(|| row.retired_at.map(|at| to_datetime(lifecycle.published_until(at))))
            .flatten(),
        kid: row.kid,
        algorithm: row.algorithm,
        bits: row.bits,
        created_at: to_datetime(row.created_at),
        activated_at: row.activated_at.map(to_datetime),
        retired_at: row.retired_at.map(to_datetime),
        state: row.state.as_str().into(),
    }
}

#[derive(ApiResponse)]
enum Rotated {
    /// The new key, pending: published now, signing from `activates_at`.
    #[oai(status = 201)]
    Created(Json<SigningKeyResponse>),
}

#[OpenApi(prefix_path = "/admin/keys", tag = "ApiTags::Admin")]
impl AdminKeysApi {
    /// Every signing key with its state and dates, newest first.
    #[oai(path = "/", method = "get", operation_id = "adminListKeys")]
    async fn list(&self, auth: AdminAuth) -> ApiResult<Json<Vec<SigningKeyResponse>>> {
        auth.require(Permission::KeysRead)?;
        let rows = crate::store::keys::list(&auth.state().db).await.map_err(crate::domain::Error::from)?;
        Ok(Json(rows.into_iter().map(|r| response(auth.state(), r)).collect()))
    }

    /// Start a rotation: a new key is published now and signs after the JWKS cache
    /// lifetime; the current key is then retired (409 if a rotation is under way).
    #[oai(path = "/rotate", method = "post", operation_id = "adminRotateKeys")]
    async fn rotate(&self, auth: AdminAuth) -> ApiResult<Rotated> {
        let admin = auth.require(Permission::KeysRotate)?;
        let row = keys::rotate(auth.state(), admin.actor()).await?;
        Ok(Rotated::Created(Json(response(auth.state(), row))))
    }

    /// Emergency: withdraw a compromised key from the JWKS at once. Tokens it signed stop
    /// verifying; if it was signing, another key takes over immediately.
    #[oai(path = "/:kid/revoke", method = "post", operation_id = "adminRevokeKey")]
    async fn revoke(&self, auth: AdminAuth, kid: Path<String>) -> ApiResult<NoContent> {
        let admin = auth.require(Permission::KeysRotate)?;
        keys::revoke(auth.state(), &kid.0, admin.actor()).await?;
        Ok(NoContent::Done)
    }
}
