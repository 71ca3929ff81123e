//! Discovery documents (RFC 8414 and its OpenID Connect twin) and the JWKS (RFC 7517).

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::models::{JsonWebKeySet, PreSerialized, ServerMetadata};
use crate::domain::authorize::KNOWN_SCOPES;
use crate::domain::oauth::GrantType;
use crate::state::AppState;

#[derive(Default)]
pub struct DiscoveryApi;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";

#[derive(ApiResponse)]
enum MetadataResponse {
    #[oai(status = 200)]
    Ok(Json<ServerMetadata>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
enum JwksResponse {
    /// Public keys that verify access tokens. Cache for `max-age` seconds.
    #[oai(status = 200)]
    Ok(PreSerialized<JsonWebKeySet>, #[oai(header = "Cache-Control")] String),
}

fn metadata(state: &AppState) -> MetadataResponse {
    let issuer = &state.config.issuer;
    let auth_methods = || vec!["client_secret_basic".to_string(), "client_secret_post".into(), "none".into()];
    let words = |list: &[&str]| list.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let doc = ServerMetadata {
        issuer: issuer.clone(),
        jwks_uri: format!("{issuer}{JWKS_PATH}"),
        token_endpoint: format!("{issuer}/oauth2/token"),
        revocation_endpoint: format!("{issuer}/oauth2/revoke"),
        introspection_endpoint: format!("{issuer}/oauth2/introspect"),
        userinfo_endpoint: format!("{issuer}/oauth2/userinfo"),
        authorization_endpoint: format!("{issuer}/oauth2/authorize"),
        end_session_endpoint: format!("{issuer}/oauth2/logout"),
        backchannel_logout_supported: true,
        backchannel_logout_session_supported: true,
        frontchannel_logout_supported: false,
        grant_types_supported: GrantType::ALL.iter().map(|g| g.as_str().to_string()).collect(),
        response_types_supported: words(&["code"]),
        response_modes_supported: words(&["query"]),
        code_challenge_methods_supported: words(&["S256"]),
        dpop_signing_alg_values_supported: words(&crate::security::dpop::ALGORITHMS),
        subject_types_supported: words(&["public"]),
        id_token_signing_alg_values_supported: words(&["RS256"]),
        token_endpoint_auth_methods_supported: auth_methods(),
        revocation_endpoint_auth_methods_supported: auth_methods(),
        introspection_endpoint_auth_methods_supported: words(&["client_secret_basic", "client_secret_post"]),
        scopes_supported: words(&KNOWN_SCOPES),
        claims_supported: words(&[
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "sid",
            "azp",
            "at_hash",
            "preferred_username",
            "name",
            "updated_at",
            "email",
            "email_verified",
            "roles",
        ]),
        prompt_values_supported: words(&["none", "login", "consent", "select_account"]),
        acr_values_supported: words(&["1", "2"]),
        authorization_response_iss_parameter_supported: true,
        claims_parameter_supported: false,
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
    };
    MetadataResponse::Ok(Json(doc), "public, max-age=3600".into())
}

#[OpenApi(tag = "ApiTags::Discovery")]
impl DiscoveryApi {
    /// OpenID Connect-style discovery document.
    #[oai(path = "/.well-known/openid-configuration", method = "get", operation_id = "getOpenidConfiguration")]
    async fn openid_configuration(&self, state: Data<&AppState>) -> MetadataResponse {
        metadata(&state)
    }

    /// OAuth 2.0 authorization server metadata (RFC 8414).
    #[oai(
        path = "/.well-known/oauth-authorization-server",
        method = "get",
        operation_id = "getAuthorizationServerMetadata"
    )]
    async fn authorization_server(&self, state: Data<&AppState>) -> MetadataResponse {
        metadata(&state)
    }

    /// The JSON Web Key Set: every key that may have signed a live token.
    #[oai(path = "/.well-known/jwks.json", method = "get", operation_id = "getJwks")]
    async fn jwks(&self, state: Data<&AppState>) -> JwksResponse {
        let keys = state.keys.current();
        let body = PreSerialized::new(keys.jwks_json.clone());
        JwksResponse::Ok(body, format!("public, max-age={}", state.config.keys.jwks_max_age.as_secs()))
    }
}
