//! Liveness and readiness probes.

use latchkey_codes::ErrorCode;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::models::HealthResponse;
use crate::state::AppState;
use crate::store;

#[derive(Default)]
pub struct OpsApi;

#[derive(ApiResponse)]
enum Health {
    #[oai(status = 200)]
    Ok(Json<HealthResponse>),
}

#[OpenApi(tag = "ApiTags::Operations")]
impl OpsApi {
    /// The process is up.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Health {
        Health::Ok(Json(HealthResponse { status: "ok".into() }))
    }

    /// The server can serve requests: the database answers.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&AppState>) -> ApiResult<Health> {
        match store::ping(&state.db).await {
            Ok(()) => Ok(Health::Ok(Json(HealthResponse { status: "ready".into() }))),
            Err(e) => {
                tracing::warn!(error = %e, "readiness check failed");
                Err(ApiError::Unavailable(ErrorBody::new(ErrorCode::Unavailable, "database unavailable"), 1))
            }
        }
    }
}
